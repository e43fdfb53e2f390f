"""benchmark/metrics.py: the strict per-seed metric and the lenient max of the seed-mean curve, by hand."""

import importlib.util
import os

import numpy as np
import pytest
from test_plot import write_run
from torch.utils.tensorboard import SummaryWriter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
spec = importlib.util.spec_from_file_location("metrics", os.path.join(ROOT, "benchmark", "metrics.py"))
metrics = importlib.util.module_from_spec(spec)
spec.loader.exec_module(metrics)


def on_policy_run(root, seed: int, episodes: list[float], epoch_means: list[float]) -> None:
    path = write_run(root, "EnvA-v0", "ppo", seed, {"global_step": [100, 200, 300], "episodic_return": epoch_means})
    writer = SummaryWriter(path)
    for i, ret in enumerate(episodes):
        writer.add_scalar("charts/episodic_return", ret, i)  # several episodes may share a step in real runs
        writer.add_scalar("charts/episodic_length", 0, i)
    writer.close()


def test_on_policy_last_episodes_and_lenient(tmp_path):
    on_policy_run(tmp_path, 1, [0.0] * 50 + [10.0] * 100, [1.0, 5.0, 3.0])
    on_policy_run(tmp_path, 2, [7.0] * 120 + [1.0, 3.0], [3.0, 1.0, 9.0])
    table = metrics.table(metrics.Args(logdirs=(str(tmp_path),), last=100))
    s1, s2 = 10.0, (7.0 * 98 + 1.0 + 3.0) / 100  # the last 100 episodes of each seed
    mean, std = np.mean([s1, s2]), np.std([s1, s2])
    lenient = max((1 + 3) / 2, (5 + 1) / 2, (3 + 9) / 2)  # the seed-mean curve's best epoch: 6
    assert table.splitlines()[0] == "| env | seed 1 | seed 2 | mean ± std | max of seed-mean |"
    assert table.splitlines()[2] == f"| EnvA-v0 | 10 | {s2:.0f} | **{mean:.0f} ± {std:.0f}** | {lenient:.0f} |"
    # episodes.csv, written from the events, replaces them: same table without any events file
    assert metrics.table(metrics.Args(logdirs=(str(tmp_path),), write_episodes=True)) == table
    for root, _, files in os.walk(tmp_path):
        for name in files:
            if name.startswith("events.out"):
                os.remove(os.path.join(root, name))
    assert metrics.table(metrics.Args(logdirs=(str(tmp_path),))) == table
    (run,) = [r for r in metrics.find_runs((str(tmp_path),)) if r.seed == 2]
    np.testing.assert_array_equal(metrics.training_episodes(run)[-2:], [[120, 1.0, 0], [121, 3.0, 0]])


def test_off_policy_last_tests_skip_nan(tmp_path):
    steps = [1000 * k for k in range(1, 13)]
    for seed, offset in ((1, 0.0), (3, 100.0)):
        tests = [offset + k for k in range(12)]
        tests[5] = float("nan")
        write_run(tmp_path, "EnvB-v0", "sac", seed, {"global_step": steps, "eval_episodic_return": tests})
    (row,) = metrics.table(metrics.Args(logdirs=(str(tmp_path),), last_tests=4)).splitlines()[2:]
    # per seed: mean of the last 4 finite tests, 8..11 (+100 for seed 3); lenient: the last epoch, 61
    assert row == "| EnvB-v0 | 10 | 110 | **60 ± 50** | 61 |"


def test_one_row_per_logdir_when_settings_share_an_env(tmp_path):
    for name, offset in (("su", 0.0), ("au", 50.0)):
        for seed in (1, 2):
            tests = [offset + seed, offset + 10 * seed]
            write_run(
                tmp_path, "EnvC-v0", f"td3{name}_s{seed}", seed, {"global_step": [1, 2], "eval_episodic_return": tests}
            )
    su, au = (str(tmp_path / f"EnvC-v0__td3{name}") for name in ("su", "au"))
    rows = metrics.table(metrics.Args(logdirs=(su, au), last_tests=1)).splitlines()
    assert rows[0] == "| logdir | env | seed 1 | seed 2 | mean ± std | max of seed-mean |"
    assert rows[2:] == [
        f"| {su} | EnvC-v0 | 10 | 20 | **15 ± 5** | 15 |",
        f"| {au} | EnvC-v0 | 60 | 70 | **65 ± 5** | 65 |",
    ]


def test_no_runs_is_a_one_line_error(tmp_path):
    with pytest.raises(metrics.PlotError, match="no runs"):
        metrics.table(metrics.Args(logdirs=(str(tmp_path),)))
