"""plot.py: run discovery, CSV and TensorBoard reading, aggregation over seeds, the figure's objects, errors."""

import csv
import json
import math
import os

import matplotlib.image
import numpy as np
import pytest
from torch.utils.tensorboard import SummaryWriter

import plot
from conftest import assert_one_line_error, run_script

STEPS = [100 * k for k in range(1, 11)]


def write_run(root, env_id: str, exp_name: str, seed: int, columns: dict, stamp: int = 1_700_000_000) -> str:
    """A synthetic run directory as the scripts write it: config.json and progress.csv (NaN: an empty cell)."""
    path = os.path.join(str(root), f"{env_id}__{exp_name}__{seed}__{stamp}")
    os.makedirs(path)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump({"algo": exp_name, "args": {"env_id": env_id, "exp_name": exp_name, "seed": seed}}, f)
    with open(os.path.join(path, "progress.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(list(columns))
        for row in zip(*columns.values(), strict=True):
            w.writerow(["" if isinstance(v, float) and math.isnan(v) else v for v in row])
    return path


@pytest.fixture
def synthetic(tmp_path):
    """Two envs x two exp_names x three seeds. Seed s of exp "fast" returns 2k + s at step 100k, "slow" k + s;
    seed 3 stops at step 600 (unequal lengths), seed 1 of "slow" has an empty cell at step 300 and one run
    ends with a half-written row."""
    for env_id in ("EnvA-v0", "EnvB-v0"):
        for exp_name, slope in (("fast", 2.0), ("slow", 1.0)):
            for seed in (1, 2, 3):
                n = 10 if seed < 3 else 6
                ret = [slope * k + seed for k in range(1, n + 1)]
                if exp_name == "slow" and seed == 1:
                    ret[2] = math.nan
                cols = {"global_step": STEPS[:n], "epoch": list(range(1, n + 1)), "episodic_return": ret}
                cols["value_loss"] = [1.0 / k for k in range(1, n + 1)]
                path = write_run(tmp_path, env_id, exp_name, seed, cols)
    with open(os.path.join(path, "progress.csv"), "a") as f:
        f.write("1100,11")  # a row being written: fewer cells than the header
    return tmp_path


def panel(fig, env_id):
    (ax,) = [ax for ax in fig.axes if ax.get_title() == env_id]
    return ax


def line(ax, label):
    (ln,) = [ln for ln in ax.get_lines() if ln.get_label() == label]
    return ln


def band_at(ax, label, x):
    """(low, high) of the band of group `label` at x, read from the polygon's vertices."""
    (coll,) = [c for c in ax.collections if c.get_label() == f"_band {label}"]
    v = coll.get_paths()[0].vertices
    at = v[np.isclose(v[:, 0], x), 1]
    return at.min(), at.max()


def test_panels_lines_and_std_bands(synthetic):
    runs = plot.find_runs((str(synthetic),))
    assert len(runs) == 12 and {r.source for r in runs} == {"progress.csv"}
    fig = plot.make_figure(runs)
    assert sorted(ax.get_title() for ax in fig.axes if ax.get_visible()) == ["EnvA-v0", "EnvB-v0"]
    for env_id in ("EnvA-v0", "EnvB-v0"):
        ax = panel(fig, env_id)
        assert sorted(ln.get_label() for ln in ax.get_lines()) == ["fast (n=3)", "slow (n=3)"]
        assert ax.get_xlabel() == "global_step" and ax.get_ylabel() == "episodic_return"
        for label, slope in (("fast", 2.0), ("slow", 1.0)):
            ln = line(ax, f"{label} (n=3)")
            np.testing.assert_array_equal(ln.get_xdata(), STEPS)
            k = np.arange(1, 11)
            # three seeds (offsets 1, 2, 3) up to step 600, then seeds 1 and 2
            mean = np.where(k <= 6, slope * k + 2, slope * k + 1.5)
            std = np.where(k <= 6, np.std([1, 2, 3]), 0.5)
            np.testing.assert_allclose(ln.get_ydata(), mean)
            for x, m, s in zip(STEPS, mean, std, strict=True):
                np.testing.assert_allclose(band_at(ax, label, x), (m - s, m + s))
    assert panel(fig, "EnvA-v0").get_lines()[0].get_color() == panel(fig, "EnvB-v0").get_lines()[0].get_color()


def test_count_draws_one_line_per_seed(synthetic):
    fig = plot.make_figure(plot.find_runs((str(synthetic),)), count=True)
    ax = panel(fig, "EnvA-v0")
    assert len(ax.get_lines()) == 6 and not ax.collections
    np.testing.assert_allclose(line(ax, "fast seed 3").get_ydata(), [2 * k + 3 for k in range(1, 7)])
    assert len(line(ax, "slow seed 1").get_xdata()) == 9  # the empty cell is left out


def test_smooth_estimators_and_bootstrap_band():
    np.testing.assert_allclose(plot.smooth(np.array([0.0, 0, 3, 0, 0]), 3), [0, 1, 1, 1, 0])
    np.testing.assert_allclose(plot.smooth(np.array([1.0, 2, 3]), 1), [1, 2, 3])
    rng = np.random.default_rng(0)
    x = np.arange(5.0)
    curves = [(x, rng.normal(size=5)) for _ in range(8)]
    ys = np.array([y for _, y in curves])
    med = plot.aggregate(curves, est="median", band="none")
    np.testing.assert_allclose(med["center"], np.median(ys, 0))
    np.testing.assert_array_equal(med["low"], med["center"])
    a, b = plot.aggregate(curves, band="ci", ci=90, n_boot=500), plot.aggregate(curves, band="ci", ci=90, n_boot=500)
    np.testing.assert_array_equal(a["low"], b["low"])  # seeded resampling
    assert np.all(a["low"] <= a["center"]) and np.all(a["center"] <= a["high"])
    assert np.all(a["low"] >= ys.min(0)) and np.all(a["high"] <= ys.max(0))
    assert np.all(a["high"] - a["low"] < 2 * ys.std(0))  # the CI of the mean is narrower than +-1 std
    # curves on different x grids: each is interpolated inside its own range only
    agg = plot.aggregate([(np.array([0.0, 2.0]), np.array([0.0, 2.0])), (np.array([1.0, 3.0]), np.array([5.0, 5.0]))])
    np.testing.assert_allclose(agg["x"], [0, 1, 2, 3])
    np.testing.assert_allclose(agg["center"], [0, 3, 3.5, 5])
    np.testing.assert_array_equal(agg["n"], [1, 2, 2, 1])


def test_legend_select_exclude_and_xaxis(tmp_path):
    for d, seed in (("a", 1), ("a", 2), ("b", 1)):
        write_run(tmp_path / d, "EnvA-v0", "ppo", seed, {"global_step": STEPS[:3], "episodic_return": [1.0, 2, 3]})
    runs = plot.find_runs((str(tmp_path / "a"), str(tmp_path / "b")), legend=("lr 1", "lr 2"))
    assert [r.label for r in runs] == ["lr 1", "lr 1", "lr 2"]
    ax = plot.make_figure(runs).axes[0]
    assert sorted(ln.get_label() for ln in ax.get_lines()) == ["lr 1 (n=2)", "lr 2 (n=1)"]
    assert [r.seed for r in plot.find_runs((str(tmp_path),), select=("__2__",))] == [2]
    assert len(plot.find_runs((str(tmp_path),), exclude=("__2__", "/b/"))) == 1
    assert len(plot.find_runs((str(tmp_path / "a" / "EnvA-v0__ppo__"),))) == 2  # a prefix
    with pytest.raises(plot.PlotError, match="one per logdir"):
        plot.find_runs((str(tmp_path / "a"),), legend=("x", "y"))


def test_performance_is_the_test_return_where_logged(tmp_path):
    cols = {"global_step": STEPS[:3], "episodic_return": [1.0, 2, 3], "eval_episodic_return": [10.0, 20, 30]}
    write_run(tmp_path, "EnvA-v0", "sac", 1, cols)
    write_run(tmp_path, "EnvB-v0", "ppo", 1, {"global_step": STEPS[:3], "episodic_return": [1.0, 2, 3]})
    fig = plot.make_figure(plot.find_runs((str(tmp_path),)))
    np.testing.assert_allclose(panel(fig, "EnvA-v0").get_lines()[0].get_ydata(), [10, 20, 30])
    np.testing.assert_allclose(panel(fig, "EnvB-v0").get_lines()[0].get_ydata(), [1, 2, 3])
    assert panel(fig, "EnvA-v0").get_ylabel().startswith("test return")


def test_tensorboard_only_run(tmp_path):
    run_dir = tmp_path / "EnvA-v0__ppo__1__1"
    os.makedirs(run_dir)
    (run_dir / "config.json").write_text(json.dumps({"args": {"env_id": "EnvA-v0", "exp_name": "ppo", "seed": 1}}))
    writer = SummaryWriter(str(run_dir))
    for step, ret in ((10, 1.0), (30, 3.0), (30, 5.0), (50, 6.0)):
        writer.add_scalar("charts/episodic_return", ret, step)
    writer.add_scalar("eval/episodic_return", 7.0, 50)
    writer.add_scalar("losses/value_loss", 0.5, 50)
    writer.close()
    (run,) = plot.find_runs((str(tmp_path),))
    assert run.source == "tensorboard"
    np.testing.assert_array_equal(run.data["global_step"], [10, 30, 50])
    np.testing.assert_array_equal(run.data["episodic_return"], [1, 4, 6])  # two episodes at step 30: their mean
    np.testing.assert_array_equal(run.data["eval_episodic_return"][-1], 7)
    assert np.isnan(run.data["value_loss"][0]) and run.data["time"][0] >= 0
    ax = plot.make_figure([run], value="episodic_return").axes[0]
    np.testing.assert_array_equal(ax.get_lines()[0].get_ydata(), [1, 4, 6])


def test_table_and_outputs(synthetic, capsys):
    table = plot.final_table(plot.find_runs((str(synthetic),)), plot.PERFORMANCE, "global_step")
    last = [2 * 10 + 1, 2 * 10 + 2, 2 * 6 + 3]  # each seed's last point
    assert f"| EnvA-v0 | fast | episodic_return | {np.mean(last):.2f} ± {np.std(last):.2f} | 3 | 600–1000 |" in table
    assert plot.main([str(synthetic), "--value", "performance", "value_loss", "--out", str(synthetic / "c.svg")]) == 0
    assert (synthetic / "c_performance.svg").exists() and (synthetic / "c_value_loss.svg").exists()
    assert plot.main([str(synthetic), "--table", "--xaxis", "epoch", "--smooth", "3"]) == 0
    out = capsys.readouterr().out
    assert (synthetic / "plot.png").exists() and "| EnvB-v0 | slow |" in out
    figs = plot.plot(plot.Args(logdirs=(str(synthetic),), out=str(synthetic / "d.pdf"), band="none"))
    assert (synthetic / "d.pdf").exists() and not figs["performance"].axes[0].collections


def test_real_run_image_size(cartpole_run, tmp_path):
    out = tmp_path / "real.png"
    assert plot.main([cartpole_run["run_dir"], "--out", str(out), "--dpi", "80"]) == 0
    assert matplotlib.image.imread(str(out)).shape[:2] == (round(3.8 * 80), 5 * 80)  # one panel: 5 x 3.8 inches


def test_bad_input(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    broken = write_run(tmp_path / "broken", "EnvA-v0", "ppo", 1, {"global_step": [1]})
    (tmp_path / "broken" / "other").mkdir()
    (tmp_path / "broken" / "other" / "config.json").write_text("{not json")
    open(os.path.join(broken, "progress.csv"), "w").close()
    cases = [
        ([str(tmp_path / "nope")], "no such directory"),
        ([str(tmp_path / "empty")], "no runs"),
        ([str(tmp_path / "broken"), "--legend", "a", "b"], "one per logdir"),
        ([str(tmp_path / "broken")], "no run with logs left"),
    ]
    for argv, words in cases:
        assert plot.main(argv) == 2
        err = capsys.readouterr().err
        assert err.splitlines()[-1].startswith("error: ") and words in err, err
    assert "warning: skipping" in err and "bad config.json" in err and "is empty" in err
    good = write_run(tmp_path / "good", "EnvA-v0", "ppo", 1, {"global_step": [1], "episodic_return": [1.0]})
    assert plot.main([good, "--value", "nope"]) == 2 and "no run logged 'nope'" in capsys.readouterr().err
    assert plot.main([good, "--xaxis", "epoch"]) == 2 and "no run logged 'epoch'" in capsys.readouterr().err
    assert plot.main([good, "--out", "x.jpg"]) == 2 and "--out must end in" in capsys.readouterr().err
    assert_one_line_error(run_script("plot.py", str(tmp_path / "empty")), "no runs")
