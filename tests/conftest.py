"""Shared fixtures: short real runs of the algorithm scripts, made once per test session."""

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


@pytest.fixture(scope="session")
def cartpole_run(tmp_path_factory) -> dict:
    """A finished 8,192-step ppo.py run on CartPole-v1 (2 epochs); returns train()'s metrics."""
    data_dir = tmp_path_factory.mktemp("cartpole")
    return ppo.train(
        ppo.Args(
            env_id="CartPole-v1",
            total_timesteps=8192,
            steps_per_epoch=4096,
            save_every=1,
            data_dir=str(data_dir),
            cuda=False,
        )
    )


@pytest.fixture(scope="session")
def hopper_run(tmp_path_factory) -> dict:
    """A finished 4,096-step ppo.py run on Hopper-v4 with 50-step episodes; returns train()'s metrics."""
    data_dir = tmp_path_factory.mktemp("hopper")
    return ppo.train(
        ppo.Args(
            env_id="Hopper-v4",
            total_timesteps=4096,
            steps_per_epoch=2048,
            save_every=1,
            max_episode_steps=50,
            data_dir=str(data_dir),
            cuda=False,
        )
    )
