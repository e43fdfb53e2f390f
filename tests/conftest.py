"""Shared fixtures: short real runs of the algorithm scripts, made once per test session."""

import importlib
import os
import subprocess
import sys

import pytest

import ppo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_script(script: str, *argv: str, cwd: str = ROOT, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `python <script> argv...` in `cwd` with one torch thread; return the finished process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, script, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def tiny_ppo_run(tmp_path_factory, env_id: str, **kwargs) -> dict:
    """train()'s metrics of a short ppo.py run in a fresh directory, saving every epoch."""
    data_dir = tmp_path_factory.mktemp(env_id.split("-")[0].lower())
    return ppo.train(ppo.Args(env_id=env_id, save_every=1, data_dir=str(data_dir), cuda=False, **kwargs))


@pytest.fixture(scope="session")
def cartpole_run(tmp_path_factory) -> dict:
    """A finished 8,192-step ppo.py run on CartPole-v1 (2 epochs)."""
    return tiny_ppo_run(tmp_path_factory, "CartPole-v1", total_timesteps=8192, steps_per_epoch=4096)


@pytest.fixture(scope="session")
def hopper_run(tmp_path_factory) -> dict:
    """A finished 4,096-step ppo.py run on Hopper-v4 with 50-step episodes (2 epochs)."""
    return tiny_ppo_run(tmp_path_factory, "Hopper-v4", total_timesteps=4096, steps_per_epoch=2048, max_episode_steps=50)


# tiny Pendulum-v1 runs of the off-policy scripts: 50-step episodes, short random phase, 2 test episodes
OFF_POLICY = {"env_id": "Pendulum-v1", "total_timesteps": 400, "steps_per_epoch": 100, "start_steps": 100}
OFF_POLICY.update(update_after=100, batch_size=32, num_test_episodes=2, max_episode_steps=50)
# script -> tiny Args of a run on a Box task; test_policy's tests replay one run of every entry
BOX_RUNS = {
    "ppo": None,  # the hopper_run fixture
    "vpg": {"env_id": "Hopper-v4", "total_timesteps": 1600, "steps_per_epoch": 800, "max_episode_steps": 50},
    "trpo": {"env_id": "Hopper-v4", "total_timesteps": 1600, "steps_per_epoch": 800, "max_episode_steps": 50},
}
BOX_RUNS.update(ddpg=OFF_POLICY, td3=OFF_POLICY, sac=OFF_POLICY)


@pytest.fixture(scope="session", params=sorted(BOX_RUNS))
def algo_run(request, tmp_path_factory) -> dict:
    """train()'s metrics of a tiny Box-task run of each script in BOX_RUNS (parametrised by script name)."""
    if BOX_RUNS[request.param] is None:
        return request.getfixturevalue("hopper_run")
    module = importlib.import_module(request.param)
    data_dir = tmp_path_factory.mktemp(f"box_{request.param}")
    return module.train(module.Args(**BOX_RUNS[request.param], save_every=1, data_dir=str(data_dir), cuda=False))


def assert_one_line_error(proc: subprocess.CompletedProcess, *words: str) -> None:
    """`proc` exited with code 2 and a single stderr line 'error: ...' containing `words`, no traceback."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for w in words:
        assert w in lines[0], lines[0]
