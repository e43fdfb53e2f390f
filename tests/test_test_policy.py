"""test_policy.py: per-episode results of real runs, reproducibility, video, a moved script, bad and unsafe input."""

import json
import os
import pathlib
import pickle
import re
import shutil
import zipfile
from typing import Optional

import gymnasium as gym
import imageio.v3 as iio
import numpy as np
import pytest
import tyro

import test_policy as tp
from conftest import assert_one_line_error, run_script


def evaluate(run: dict, *flags: str) -> dict:
    """test_policy's evaluate() on a fixture's run, with CLI flags."""
    return tp.evaluate(tyro.cli(tp.Args, args=[run["run_dir"], *flags]))


def printed_returns(stdout: str) -> list[float]:
    return [float(x) for x in re.findall(r"return +(-?[\d.]+) +length", stdout)]


def copy_run(run: dict, dst) -> str:
    """A copy of a fixture's run directory (so a test can damage it)."""
    return shutil.copytree(run["run_dir"], os.path.join(str(dst), os.path.basename(run["run_dir"])))


def rewrite_archive(path: str, program=None, weights=None, extra: Optional[dict] = None) -> None:
    """Rewrite the .pt2 archive at `path`: edit models/model.json or the weights config in place, add files."""
    with zipfile.ZipFile(path) as z:
        files = {n: z.read(n) for n in z.namelist()}
    for suffix, edit in (("models/model.json", program), ("weights_config.json", weights)):
        for name in files:
            if edit is not None and name.endswith(suffix):
                obj = json.loads(files[name])
                edit(obj)
                files[name] = json.dumps(obj).encode()
    root = next(iter(files)).split("/")[0]
    files.update({f"{root}/{k}": v for k, v in (extra or {}).items()})
    with zipfile.ZipFile(path, "w") as z:
        for name, body in files.items():
            z.writestr(name, body)


def test_episodes_are_reported_and_reproducible(cartpole_run, capsys):
    a = evaluate(cartpole_run, "--episodes", "3")
    assert len(a["returns"]) == len(a["lengths"]) == 3 and a["deterministic"]
    assert a["returns"] == [float(n) for n in a["lengths"]]  # CartPole: reward 1 per step
    assert a["mean"] == pytest.approx(np.mean(a["returns"])) and a["min"] <= a["mean"] <= a["max"]
    out = capsys.readouterr().out
    assert printed_returns(out) == pytest.approx(a["returns"], abs=0.01)
    assert "3 deterministic episodes of policy.pt2 on CartPole-v1" in out and "±" in out
    assert evaluate(cartpole_run, "--episodes", "3")["returns"] == a["returns"]
    s1 = evaluate(cartpole_run, "--episodes", "3", "--stochastic", "--seed", "7")
    s2 = evaluate(cartpole_run, "--episodes", "3", "--stochastic", "--seed", "7")
    assert s1["returns"] == s2["returns"] and not s1["deterministic"]
    # evaluation seeds differ from training's (stream 0) and between base seeds
    train_seed = int(np.random.SeedSequence([1, 0]).generate_state(1)[0] % 2**31)
    assert len({a["env_seed"], s1["env_seed"], train_seed}) == 3
    assert max(evaluate(cartpole_run, "--episodes", "2", "--len", "5")["lengths"]) == 5


def test_snapshot_selection(cartpole_run):
    snaps = sorted(int(n[7:-4]) for n in os.listdir(os.path.join(cartpole_run["run_dir"], "policies")))
    r = evaluate(cartpole_run, "--episodes", "1", "--itr", str(snaps[0]))
    assert r["policy"].endswith(f"policies/policy_{snaps[0]}.pt2")
    with pytest.raises(tp.RunError, match=f"saved steps: {', '.join(map(str, snaps))}"):
        evaluate(cartpole_run, "--itr", "3")


def test_every_script_box_policy(algo_run):
    a = evaluate(algo_run, "--episodes", "2", "--stochastic")
    assert len(a["returns"]) == 2 and all(0 < n <= 50 for n in a["lengths"])  # the run's 50-step time limit
    assert evaluate(algo_run, "--episodes", "2", "--stochastic")["returns"] == a["returns"]
    assert evaluate(algo_run, "--episodes", "2")["returns"] != a["returns"]


def test_gymnasium_fallback(cartpole_run, tmp_path):
    """An id that only gymnasium knows (a user's registered env) runs on gymnasium."""
    gym.register("TestOnlyCartPole-v0", entry_point="gymnasium.envs.classic_control:CartPoleEnv", max_episode_steps=30)
    run_dir = copy_run(cartpole_run, tmp_path)
    config = json.load(open(os.path.join(run_dir, "config.json")))
    config["args"]["env_id"] = "TestOnlyCartPole-v0"
    json.dump(config, open(os.path.join(run_dir, "config.json"), "w"))
    r = evaluate({"run_dir": run_dir}, "--episodes", "2")
    assert len(r["returns"]) == 2 and max(r["lengths"]) <= 30


def test_video_frames_and_unchanged_physics(hopper_run, tmp_path):
    """mp4 of the first episode: one frame after the reset and one per step; the returns equal those without video."""
    out = tmp_path / "v.mp4"
    flags = ["--episodes", "2", "--len", "12", "--width", "96", "--height", "64"]
    proc = run_script("test_policy.py", hopper_run["run_dir"], *flags, "--video", str(out))
    if proc.returncode != 0 and "rendering needs EGL" in proc.stderr:  # libEGL missing or unusable
        pytest.skip(f"no GL backend for envpool's renderer: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    frames = list(iio.imiter(str(out)))
    plain = evaluate(hopper_run, *flags)
    assert len(frames) == plain["lengths"][0] + 1 and frames[0].shape == (64, 96, 3)
    assert len({f.tobytes() for f in frames}) > 1  # the hopper moves
    assert printed_returns(proc.stdout) == pytest.approx(plain["returns"], abs=0.01)


def test_gif_keeps_every_kth_frame(tmp_path):
    writer = tp.VideoWriter(str(tmp_path / "v.gif"), fps=125)  # k = ceil(125 / 50) = 3
    for i in range(10):
        writer(np.full((8, 8, 3), 20 * i, dtype=np.uint8))
    writer.close()
    assert writer.written == 4 and len(list(iio.imiter(str(tmp_path / "v.gif")))) == 4
    assert tp.real_time_fps("Hopper-v4") == 125 and tp.real_time_fps("CartPole-v1") == 50


def test_moved_script_and_run_need_nothing_else(cartpole_run, tmp_path):
    """A copy of test_policy.py elsewhere, on a copied run, where ppo.py cannot be imported."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(tp.__file__, elsewhere / "test_policy.py")
    run_dir = copy_run(cartpole_run, tmp_path)
    code = (
        "import sys, test_policy; rc = test_policy.main([sys.argv[1], '--episodes', '2']); "
        "assert 'ppo' not in sys.modules; sys.exit(rc)"
    )
    proc = run_script("-c", code, run_dir, cwd=str(elsewhere))
    assert proc.returncode == 0, proc.stderr
    assert printed_returns(proc.stdout) == evaluate(cartpole_run, "--episodes", "2")["returns"]
    assert run_script("-c", "import ppo", cwd=str(elsewhere)).returncode != 0


def test_bad_input(cartpole_run, tmp_path, capsys):
    def fails(run_dir, *flags):
        assert tp.main([str(run_dir), *flags]) == 2
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and err.startswith("error: ")
        return err

    (tmp_path / "empty").mkdir()
    assert "no such run directory" in fails(tmp_path / "nope")
    assert "is not a run directory" in fails(tmp_path / "empty")
    run_dir = copy_run(cartpole_run, tmp_path)
    assert "--episodes must be positive" in fails(run_dir, "--episodes", "0")
    assert "--video must end in .mp4 or .gif" in fails(run_dir, "--video", "x.avi")
    policy = os.path.join(run_dir, "policy.pt2")
    good = open(policy, "rb").read()
    open(policy, "wb").write(good[: len(good) // 2])
    assert "cannot load" in fails(run_dir)
    open(policy, "wb").write(b"\x00" * 100)
    assert "not a torch.export archive" in fails(run_dir)
    os.remove(policy)
    assert "has no saved policy yet" in fails(run_dir)
    open(os.path.join(run_dir, "config.json"), "w").write("{")
    assert "is not a valid run config" in fails(run_dir)
    if "DISPLAY" not in os.environ:
        assert "needs a display" in fails(cartpole_run["run_dir"], "--render")
    assert_one_line_error(run_script("test_policy.py", str(tmp_path / "empty")), "is not a run directory")


def test_unsafe_archives_are_refused(cartpole_run, tmp_path, capsys):
    """torch.export.load would run code from such files (sympify of a shape, exec of a guard, unpickling)."""
    marker = tmp_path / "ran"
    payload = f"__import__('pathlib').Path({str(marker)!r}).touch()"

    def shape(p):
        p["graph_module"]["graph"]["tensor_values"]["obs"]["sizes"][0]["as_expr"]["expr_str"] = payload

    def guard(p):
        p["guards_code"] = [payload]

    def op(p):
        p["graph_module"]["graph"]["nodes"][0]["target"] = "torch.os.system"

    def pickled(w):
        next(iter(w["config"].values()))["use_pickle"] = True

    class Touch:  # unpickling it touches the marker file
        def __reduce__(self):
            return pathlib.Path.touch, (marker,)

    cases = [
        ({"program": shape}, "symbolic shape"),
        ({"program": guard}, "guard"),
        ({"program": op}, "operator 'torch.os.system'"),
        ({"weights": pickled}, "not stored as raw tensor bytes"),
        ({"extra": {"data/aotinductor/model/model.so": b"\x7fELF"}}, "unexpected file"),
        ({"extra": {"data/sample_inputs/model.pt": pickle.dumps(Touch())}}, "not plain tensors"),
    ]
    for i, (edit, words) in enumerate(cases):
        run_dir = copy_run(cartpole_run, tmp_path / str(i))
        rewrite_archive(os.path.join(run_dir, "policy.pt2"), **edit)
        assert tp.main([run_dir, "--episodes", "1"]) == 2
        assert words in capsys.readouterr().err
    assert not marker.exists()
    with open(os.path.join(cartpole_run["run_dir"], "policy.pt2"), "rb") as f:
        clean = zipfile.ZipFile(tp.safe_archive(f.read()))
    program = json.loads(clean.read(next(n for n in clean.namelist() if n.endswith("models/model.json"))))
    assert all(n["metadata"] == {} for n in program["graph_module"]["graph"]["nodes"])  # debug info dropped
