"""What every algorithm script promises, whatever its algorithm: run directory, determinism,
interrupt and resume, running as a lone copy, and clear errors on bad input.

Add a script to SCRIPTS with tiny settings for a discrete or continuous task it supports.
"""

import csv
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import OFF_POLICY, ROOT, assert_one_line_error, run_script

# script -> (tiny Args for a quick run, the same as CLI flags)
SCRIPTS = {
    "ppo": {"env_id": "CartPole-v1", "total_timesteps": 4096, "steps_per_epoch": 1024, "num_envs": 4},
    "vpg": {"env_id": "CartPole-v1", "total_timesteps": 4096, "steps_per_epoch": 1024, "num_envs": 4},
    "trpo": {"env_id": "CartPole-v1", "total_timesteps": 4096, "steps_per_epoch": 1024, "num_envs": 4},
    "ddpg": OFF_POLICY,
    "td3": OFF_POLICY,
    "sac": OFF_POLICY,
}


def cli_flags(kwargs: dict) -> list[str]:
    return [x for k, v in kwargs.items() for x in (f"--{k.replace('_', '-')}", str(v))]


def tiny_run(name: str, data_dir, **overrides) -> dict:
    module = importlib.import_module(name)
    return module.train(module.Args(**{**SCRIPTS[name], "data_dir": str(data_dir), "cuda": False, **overrides}))


@pytest.mark.parametrize("name", SCRIPTS)
def test_run_directory_has_every_file(name, tmp_path):
    metrics = tiny_run(name, tmp_path, save_every=2)
    run_dir = metrics["run_dir"]
    args = SCRIPTS[name]
    assert os.path.dirname(run_dir) == str(tmp_path)
    assert os.path.basename(run_dir).startswith(f"{args['env_id']}__{name}__1__")
    config = json.load(open(os.path.join(run_dir, "config.json")))
    assert config["args"]["env_id"] == args["env_id"] and config["algo"] == name
    for key in ("python", "torch", "envpool", "gymnasium", "numpy", "git_commit"):
        assert key in config["versions"]
    rows = list(csv.DictReader(open(os.path.join(run_dir, "progress.csv"))))
    epochs = args["total_timesteps"] // args["steps_per_epoch"]
    assert [int(r["global_step"]) for r in rows] == [args["steps_per_epoch"] * (i + 1) for i in range(epochs)]
    acc = EventAccumulator(run_dir)
    acc.Reload()
    keys = ["charts/episodic_return", "charts/episodic_length", "charts/SPS"]
    keys += ["losses/qf1_loss", "eval/episodic_return"] if "qf1_loss" in rows[0] else ["losses/value_loss"]
    for key in keys:
        assert key in acc.Tags()["scalars"], key
    ckpt = torch.load(os.path.join(run_dir, "checkpoint.pt"), weights_only=True)
    assert ckpt["global_step"] == metrics["global_step"] == args["total_timesteps"]
    snapshots = sorted(os.listdir(os.path.join(run_dir, "policies")))
    assert snapshots == sorted(f"policy_{args['steps_per_epoch'] * e}.pt2" for e in range(2, epochs + 1, 2))
    policy = torch.export.load(os.path.join(run_dir, config["policy"]["file"])).module()
    obs = torch.zeros(3, config["policy"]["obs_dim"])
    assert policy(obs, torch.zeros(3, config["policy"]["noise_dim"])).shape[0] == 3
    assert not [f for f in os.listdir(run_dir) if "tmp" in f]


@pytest.mark.parametrize("name", SCRIPTS)
def test_same_seed_same_metrics_other_seed_differs(name, tmp_path):
    drop = ("SPS", "run_dir")
    a, b, c = (tiny_run(name, tmp_path / str(i), seed=s) for i, s in enumerate((3, 3, 4)))
    assert {k: v for k, v in a.items() if k not in drop} == {k: v for k, v in b.items() if k not in drop}
    assert a["recent_returns"] != c["recent_returns"]


@pytest.mark.parametrize("name", SCRIPTS)
def test_a_lone_copy_runs_stops_on_ctrl_c_and_resumes(name, tmp_path):
    """The script copied alone into an empty folder runs there (into ./runs); a Ctrl-C after two epochs saves a
    checkpoint and exits 130; --resume with a new --total-timesteps finishes the run in the same directory,
    the time column going on from the checkpoint's. The first run is far too long to end by itself
    before the Ctrl-C, however slow or fast the machine."""
    shutil.copy(os.path.join(ROOT, f"{name}.py"), tmp_path)
    spe = SCRIPTS[name]["steps_per_epoch"]
    flags = cli_flags({**SCRIPTS[name], "total_timesteps": 10_000 * spe, "save_every": 1000})
    proc = subprocess.Popen(
        [sys.executable, f"{name}.py", *flags, "--no-cuda"],
        cwd=tmp_path,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    deadline, runs = time.time() + 120, []
    while time.time() < deadline:  # wait until two epochs are logged
        runs = list((tmp_path / "runs").glob("*"))
        progress = runs[0] / "progress.csv" if runs else None
        if progress and progress.exists() and len(progress.read_text().splitlines()) >= 3:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert "Traceback" not in out and "--resume" in out
    run_dir = str(runs[0])
    stopped = torch.load(os.path.join(run_dir, "checkpoint.pt"), weights_only=True)["global_step"]
    assert stopped >= 2 * spe, stopped  # at least the epochs logged before the Ctrl-C (off-policy: mid-epoch)
    total = (stopped // spe + 2) * spe
    resumed = run_script(
        f"{name}.py", "--resume", run_dir, "--total-timesteps", str(total), "--no-cuda", cwd=str(tmp_path)
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    final = torch.load(os.path.join(run_dir, "checkpoint.pt"), weights_only=True)
    rows = list(csv.DictReader(open(os.path.join(run_dir, "progress.csv"))))
    steps, times = [int(r["global_step"]) for r in rows], [float(r["time"]) for r in rows]
    assert steps == sorted(set(steps)) and steps[-1] == total == final["global_step"]
    assert times == sorted(times) and final["time"] >= times[-1]  # the clock goes on over the resume
    episodes = [int(r["episodes"]) for r in rows]  # and so does the episode count
    assert 0 < episodes[0] and episodes == sorted(episodes) and final["episodes"] == episodes[-1], episodes
    assert sorted(os.listdir(tmp_path)) == sorted([f"{name}.py", "runs"]) and len(os.listdir(tmp_path / "runs")) == 1


@pytest.mark.parametrize("name", SCRIPTS)
def test_unknown_env_id_is_one_line_naming_close_ids(name, tmp_path):
    result = run_script(f"{name}.py", "--env-id", "Hoper-v4", "--data-dir", str(tmp_path), "--no-cuda")
    assert_one_line_error(result, "unknown env id 'Hoper-v4'")
    close = result.stderr.strip().split("closest known ids: ")[1].split(", ")
    assert close[0] == "Hopper-v4" and len(close) == len(set(close)), close  # the best first, each id once
    assert not list(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize("name", SCRIPTS)
@pytest.mark.parametrize(
    "bad, message",
    [({"num_envs": 0}, "--num-envs must be positive"), ({"total_timesteps": 100}, "smaller than one epoch")],
)
def test_impossible_sizes_are_refused_before_anything_is_written(name, bad, message, tmp_path):
    """In-process (a subprocess costs seconds): the ConfigError that the command line prints as the one-line
    error of the test above, raised before anything is written."""
    module = importlib.import_module(name)
    with pytest.raises(module.ConfigError, match=message):
        module.train(module.Args(**bad, data_dir=str(tmp_path), cuda=False))
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_documents_every_field(name):
    module = importlib.import_module(name)
    result = run_script(f"{name}.py", "--help")
    assert result.returncode == 0
    for field in module.Args.__dataclass_fields__:
        assert f"--{field.replace('_', '-')}" in result.stdout, field
