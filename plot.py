"""Plot learning curves from run directories, like Spinning Up's plot utility, without wandb.

Finds every run directory (one with a config.json) below the given directories or prefixes, groups
the runs by (env_id, exp_name) from config.json, and draws one panel per env: per group, the mean
over seeds with a shaded band (+-1 std over seeds, or a bootstrapped confidence interval), or one
line per seed with --count. Reads progress.csv (one row per epoch) with the csv module, or the
TensorBoard event files when a run has no progress.csv (tag charts/x becomes column x, eval/x
becomes eval_x; episodic values are then one point per episode). Headless: figures are drawn with
matplotlib's Agg renderer, no display needed.

Seeds are aggregated on the union of their x values: each seed is interpolated linearly inside
its own x range only (no extrapolation), so where runs have different lengths (or one is still
running) the tail is the estimate over the seeds that reached it; each line's legend gives the
number of seeds. --smooth is applied to each seed first: a centred moving average over that many
points, as Spinning Up does. The default value, "performance", is the test return
(eval_episodic_return) for runs that log one (off-policy scripts) and the training episodic_return
otherwise.

Usage:
    python plot.py runs/                                   # writes runs/plot.png
    python plot.py runs/Hopper-v4__ --smooth 5 --table     # a prefix; also prints final values
    python plot.py runs/ --value episodic_return value_loss --xaxis time --out curves.pdf
    python plot.py runs/a runs/b --legend "lr 3e-4" "lr 1e-3" --band ci
"""

import csv
import json
import math
import os
import sys
import warnings
from dataclasses import dataclass, field
from typing import Annotated, Literal, Optional

import numpy as np
import tyro
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter

PERFORMANCE = "performance"
"""the default value: eval_episodic_return where a run logs it, else episodic_return"""


@dataclass
class Args:
    logdirs: Annotated[tuple[str, ...], tyro.conf.Positional, tyro.conf.arg(metavar="LOGDIR...")]
    """directories to search for runs, or prefixes of their paths (runs/Hopper-v4__ matches runs/Hopper-v4__*)"""
    legend: tuple[str, ...] = ()
    """legend labels, one per logdir: the runs under the i-th logdir are grouped under the i-th label"""
    xaxis: str = "global_step"
    """column for the x axis (global_step, epoch, episodes, time, ...)"""
    value: tuple[str, ...] = (PERFORMANCE,)
    """columns to plot, one figure each; performance: the test return (off-policy) or episodic return (on-policy)"""
    count: bool = False
    """draw one line per seed instead of the aggregate over seeds"""
    smooth: int = 1
    """centred moving-average window in points (1: no smoothing), applied to each seed"""
    select: tuple[str, ...] = ()
    """keep only runs whose path contains all of these strings"""
    exclude: tuple[str, ...] = ()
    """leave out runs whose path contains any of these strings"""
    est: Literal["mean", "median", "max", "min"] = "mean"
    """estimator across seeds for the central line"""
    band: Literal["std", "ci", "none"] = "std"
    """shaded band: est +- population std over seeds (as Spinning Up), a bootstrap CI of est, or none"""
    ci: float = 95.0
    """confidence level of --band ci, in percent"""
    n_boot: int = 1000
    """bootstrap resamples of --band ci"""
    out: Optional[str] = None
    """.png, .svg or .pdf file; several values add _<value> before the suffix (None: plot.png in the first logdir)"""
    dpi: int = 100
    """resolution of PNG output"""
    table: bool = False
    """also print a markdown table: per group, mean +- std over seeds of each seed's last (smoothed) point"""


class PlotError(ValueError):
    """Bad input (no runs, unknown column, bad option): printed as one line, exit code 2."""


@dataclass
class Run:
    """One run directory: its identity from config.json and its logged columns."""

    path: str
    env_id: str
    exp_name: str
    seed: int
    label: str
    """legend label of its group: exp_name, or the --legend entry of its logdir"""
    data: dict[str, np.ndarray] = field(repr=False)
    """column name -> float64 values, one per row (NaN where nothing was logged)"""
    source: str = "progress.csv"
    """where data came from: progress.csv or tensorboard"""


# ------------------------------------------------------------------ reading runs
def read_progress(path: str) -> dict[str, np.ndarray]:
    """Columns of a progress.csv as float64 arrays (empty or non-numeric cells become NaN).

    Rows with fewer cells than the header (a row being written by a running script) are dropped.
    Raises PlotError for an empty file or one that is not CSV text.
    """
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise PlotError(f"cannot read {path}: {e}") from None
    if not rows or not rows[0]:
        raise PlotError(f"{path} is empty")
    header, body = rows[0], [r for r in rows[1:] if len(r) == len(rows[0])]

    def num(s: str) -> float:
        try:
            return float(s) if s else math.nan
        except ValueError:
            return math.nan

    return {h: np.array([num(r[i]) for r in body], dtype=np.float64) for i, h in enumerate(header)}


def read_tensorboard(run_dir: str) -> dict[str, np.ndarray]:
    """Scalars of the TensorBoard event files in `run_dir` as columns aligned on their steps.

    Tag "eval/x" becomes column "eval_x", any other "prefix/x" becomes "x" (the progress.csv names);
    "global_step" holds the sorted union of steps, "time" the seconds since the first event; a tag
    has NaN at steps where it was not logged, and the mean where it was logged more than once.
    Raises PlotError when there are no scalars.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(run_dir, size_guidance={"scalars": 0})  # 0: keep every event, no reservoir sampling
    acc.Reload()
    tags = acc.Tags().get("scalars", [])
    events = {tag: acc.Scalars(tag) for tag in tags}
    if not any(events.values()):
        raise PlotError(f"{run_dir} has no TensorBoard scalars")
    steps = np.unique([e.step for evs in events.values() for e in evs])
    t0 = min(e.wall_time for evs in events.values() for e in evs)
    data = {"global_step": steps.astype(np.float64)}
    wall = np.full(len(steps), np.inf)
    for tag, evs in events.items():
        prefix, _, name = tag.rpartition("/")
        idx = np.searchsorted(steps, [e.step for e in evs])
        total, n = np.zeros(len(steps)), np.zeros(len(steps))
        np.add.at(total, idx, [e.value for e in evs])
        np.add.at(n, idx, 1)
        np.minimum.at(wall, idx, [e.wall_time for e in evs])
        with np.errstate(invalid="ignore"):
            data["eval_" + name if prefix == "eval" else name] = total / n
    data["time"] = wall - t0
    return data


def find_runs(
    logdirs: tuple[str, ...], legend: tuple[str, ...] = (), select: tuple[str, ...] = (), exclude: tuple[str, ...] = ()
) -> list[Run]:
    """Every run directory (one with a config.json) below `logdirs`, in a stable order.

    Each logdir is a directory, or a path prefix (runs/Hopper matches runs/Hopper*). A run with an
    unreadable config or no logs yet is left out with a warning on stderr. Raises PlotError for a
    logdir that matches nothing, a legend of the wrong length, or when no run is left.
    """
    if not logdirs:
        raise PlotError("give at least one log directory (or prefix)")
    if legend and len(legend) != len(logdirs):
        raise PlotError(f"--legend has {len(legend)} labels for {len(logdirs)} logdirs; give one per logdir")
    runs, seen = [], set()
    for i, logdir in enumerate(logdirs):
        if os.path.isdir(logdir):
            bases = [logdir]
        else:
            parent, prefix = os.path.split(logdir)
            names = sorted(os.listdir(parent or ".")) if os.path.isdir(parent or ".") else []
            bases = [os.path.join(parent, n) for n in names if n.startswith(prefix)]
            if not bases:
                raise PlotError(f"no such directory, and no path starts with {logdir!r}")
        found = 0
        for base in bases:
            for root, dirs, files in os.walk(base):
                dirs.sort()
                if "config.json" not in files:
                    continue
                dirs.clear()  # [impl] a run's own sub-folders (policies/) hold no runs
                found += 1
                real = os.path.realpath(root)
                if real in seen or not all(s in root for s in select) or any(s in root for s in exclude):
                    continue
                seen.add(real)
                try:
                    runs.append(load_run(root, legend[i] if legend else None))
                except PlotError as e:
                    print(f"warning: skipping {root}: {e}", file=sys.stderr)
        if not found:
            raise PlotError(f"no runs (directories with a config.json) under {logdir!r}")
    if not runs:
        raise PlotError(f"no run with logs left under {', '.join(logdirs)} (after --select/--exclude)")
    return runs


def load_run(run_dir: str, label: Optional[str] = None) -> Run:
    """Read one run directory: config.json, then progress.csv or else the TensorBoard events.

    Raises PlotError when config.json is unreadable or lacks args.env_id, or there are no logs yet.
    """
    try:
        with open(os.path.join(run_dir, "config.json")) as f:
            args = json.load(f)["args"]
        env_id, exp_name, seed = str(args["env_id"]), str(args["exp_name"]), int(args["seed"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise PlotError(f"bad config.json ({type(e).__name__}: {e})") from None
    csv_path = os.path.join(run_dir, "progress.csv")
    if os.path.exists(csv_path):
        data, source = read_progress(csv_path), "progress.csv"
    elif any(n.startswith("events.out.tfevents") for n in os.listdir(run_dir)):
        data, source = read_tensorboard(run_dir), "tensorboard"
    else:
        raise PlotError("no progress.csv and no TensorBoard events yet")
    if not any(len(v) for v in data.values()):
        raise PlotError("no rows logged yet")
    return Run(run_dir, env_id, exp_name, seed, label or exp_name, data, source)


# ------------------------------------------------------------------ curves
def value_column(run: Run, value: str) -> str:
    """The column plotted for `value`: "performance" is eval_episodic_return if logged, else episodic_return."""
    if value != PERFORMANCE:
        return value
    return "eval_episodic_return" if "eval_episodic_return" in run.data else "episodic_return"


def smooth(y: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average of y [n] over `window` points, averaging fewer points at the edges (Spinning Up)."""
    if window <= 1 or len(y) == 0:
        return y
    k = np.ones(window)
    return np.convolve(y, k, "same") / np.convolve(np.ones_like(y), k, "same")


def series(run: Run, xaxis: str, value: str, window: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of one run: rows where both are finite, sorted by x, y smoothed over `window` points.

    Raises KeyError naming the column when the run did not log it.
    """
    col = value_column(run, value)
    for c in (xaxis, col):
        if c not in run.data:
            raise KeyError(c)
    x, y = run.data[xaxis], run.data[col]
    keep = np.isfinite(x) & np.isfinite(y)
    order = np.argsort(x[keep], kind="stable")
    return x[keep][order], smooth(y[keep][order], window)


_ESTIMATORS = {"mean": np.nanmean, "median": np.nanmedian, "max": np.nanmax, "min": np.nanmin}


def aggregate(
    curves: list[tuple[np.ndarray, np.ndarray]],
    est: str = "mean",
    band: str = "std",
    ci: float = 95.0,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Aggregate S curves (x_s [n_s], y_s [n_s]) onto a common grid of G points.

    The grid is the union of the x values (or 1000 evenly spaced points when that union exceeds
    2000); curve s is interpolated linearly inside [min x_s, max x_s] only. Returns x [G], center [G]
    (the `est` estimator over the curves present at each point), low [G] and high [G] (center -+ the
    population std for band "std", the bootstrap percentile interval of the estimator at level `ci`
    percent with `n_boot` resamples of the curves for "ci", center itself for "none") and n [G] (the
    number of curves present).
    """
    xs = [x for x, _ in curves if len(x)]
    grid = np.unique(np.concatenate(xs)) if xs else np.zeros(0)
    if len(grid) > 2000:  # [impl] per-episode TensorBoard steps differ between seeds
        grid = np.linspace(grid[0], grid[-1], 1000)
    Y = np.full((len(curves), len(grid)), np.nan)
    for s, (x, y) in enumerate(curves):
        if len(x):
            inside = (grid >= x[0]) & (grid <= x[-1])
            Y[s, inside] = np.interp(grid[inside], x, y)
    f = _ESTIMATORS[est]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # [impl] all-NaN columns of bootstrap resamples
        center = f(Y, axis=0)
        if band == "std":
            sd = np.nanstd(Y, axis=0)
            low, high = center - sd, center + sd
        elif band == "ci":
            rng = np.random.default_rng(seed)
            idx = rng.integers(0, len(curves), size=(n_boot, len(curves)))
            low, high = np.empty(len(grid)), np.empty(len(grid))
            step = max(1, 10_000_000 // max(1, n_boot * len(curves)))  # [impl] bound memory to ~80 MB
            for j in range(0, len(grid), step):
                stats = f(Y[:, j : j + step][idx], axis=1)  # [n_boot, chunk]
                low[j : j + step], high[j : j + step] = np.nanpercentile(stats, [50 - ci / 2, 50 + ci / 2], axis=0)
        else:
            low, high = center, center
    return {"x": grid, "center": center, "low": low, "high": high, "n": (~np.isnan(Y)).sum(0)}


def groups(runs: list[Run]) -> dict[tuple[str, str], list[Run]]:
    """Runs grouped by (env_id, label), in order of first appearance."""
    out: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        out.setdefault((run.env_id, run.label), []).append(run)
    return out


def curves_of(runs: list[Run], xaxis: str, value: str, window: int) -> tuple[list[Run], list[tuple]]:
    """The runs with at least one point of (`xaxis`, `value`), and their series; runs without either
    column are reported on stderr."""
    kept, curves = [], []
    for run in runs:
        try:
            x, y = series(run, xaxis, value, window)
        except KeyError as e:
            print(f"warning: {run.path} has no column {e.args[0]!r}; left out of the {value} plot", file=sys.stderr)
            continue
        if len(x):  # [impl] a run still in its first epochs may have no finished episode yet
            kept.append(run)
            curves.append((x, y))
    return kept, curves


def check_columns(runs: list[Run], xaxis: str, values: tuple[str, ...]) -> None:
    """Raise PlotError when no run logged `xaxis` or one of `values` (listing the columns there are)."""
    have = sorted({c for r in runs for c in r.data})
    for col in (xaxis, *values):
        if col != PERFORMANCE and not any(col in r.data for r in runs):
            raise PlotError(f"no run logged {col!r}; columns: {', '.join(have)}")
    if PERFORMANCE in values and not any(value_column(r, PERFORMANCE) in r.data for r in runs):
        raise PlotError(f"no run logged episodic_return or eval_episodic_return; columns: {', '.join(have)}")


def make_figure(
    runs: list[Run],
    value: str = PERFORMANCE,
    xaxis: str = "global_step",
    count: bool = False,
    window: int = 1,
    est: str = "mean",
    band: str = "std",
    ci: float = 95.0,
    n_boot: int = 1000,
) -> Figure:
    """One figure for `value`: a panel (Axes titled with the env id) per env, in a grid of up to 3 columns.

    Per group (env_id, label) a line labelled "<label> (n=<seeds>)" and, unless band is "none", a
    filled band labelled "_band <label>" (hidden from the legend); with `count`, one line per run
    labelled "<label> seed <seed>". Colors follow the order of the labels, the same in every panel.
    """
    envs = list(dict.fromkeys(r.env_id for r in runs))
    labels = list(dict.fromkeys(r.label for r in runs))
    keys = list(dict.fromkeys((r.label, r.seed) for r in runs)) if count else labels
    colors = {k: f"C{i % 10}" for i, k in enumerate(keys)}
    ncols = min(3, len(envs))
    nrows = math.ceil(len(envs) / ncols)
    fig = Figure(figsize=(5 * ncols, 3.8 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[len(envs) :]:
        ax.set_visible(False)
    ylabels = set()
    for (env_id, label), members in groups(runs).items():
        ax = axes[envs.index(env_id)]
        kept, curves = curves_of(members, xaxis, value, window)
        ylabels |= {value_column(r, value) for r in kept}
        if count:
            for run, (x, y) in zip(kept, curves, strict=True):
                ax.plot(x, y, color=colors[(label, run.seed)], lw=1.2, label=f"{label} seed {run.seed}")
        elif kept:
            agg = aggregate(curves, est, band, ci, n_boot)
            ax.plot(agg["x"], agg["center"], color=colors[label], lw=1.5, label=f"{label} (n={len(kept)})")
            if band != "none":
                ax.fill_between(
                    agg["x"], agg["low"], agg["high"], color=colors[label], alpha=0.2, lw=0, label=f"_band {label}"
                )
    ylabel = ylabels.pop() if len(ylabels) == 1 else "test return (off-policy) / episodic return"
    for env_id, ax in zip(envs, axes[: len(envs)], strict=True):
        ax.set_title(env_id)
        ax.set_xlabel(xaxis)
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))  # 200k, 1M
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize="small", frameon=False)
    return fig


def final_table(runs: list[Run], value: str, xaxis: str, window: int = 1) -> str:
    """Markdown table, one row per group: mean +- population std over seeds of each seed's last point
    (of the smoothed series), the number of seeds and the last x (a range when seeds differ)."""
    lines = [f"| env | experiment | value | final (mean ± std) | seeds | last {xaxis} |", "|---|---|---|---|---|---|"]
    for (env_id, label), members in groups(runs).items():
        kept, curves = curves_of(members, xaxis, value, window)
        if not curves:
            continue
        last_x, last_y = np.array([(x[-1], y[-1]) for x, y in curves]).T
        col = "/".join(sorted({value_column(r, value) for r in kept}))
        span = f"{last_x.min():g}" if last_x.min() == last_x.max() else f"{last_x.min():g}–{last_x.max():g}"
        lines.append(
            f"| {env_id} | {label} | {col} | {last_y.mean():.2f} ± {last_y.std():.2f} | {len(curves)} | {span} |"
        )
    return "\n".join(lines)


def output_paths(args: Args) -> dict[str, str]:
    """value -> file to write: --out (with _<value> before the suffix when there are several values),
    or plot.png in the first logdir (its parent folder when it is a prefix)."""
    out = args.out
    if out is None:
        first = args.logdirs[0]
        out = os.path.join(first if os.path.isdir(first) else os.path.dirname(first) or ".", "plot.png")
    stem, ext = os.path.splitext(out)
    if ext.lower() not in (".png", ".svg", ".pdf"):
        raise PlotError(f"--out must end in .png, .svg or .pdf, got {out!r}")
    if len(args.value) == 1:
        return {args.value[0]: out}
    return {v: f"{stem}_{v}{ext}" for v in args.value}


def plot(args: Args) -> dict[str, Figure]:
    """Find the runs, draw one figure per value, save each, print the table if asked; return the figures.

    Raises PlotError on bad input.
    """
    if args.smooth < 1 or args.n_boot < 1 or not 0 < args.ci < 100 or args.dpi < 1:
        raise PlotError("--smooth, --n-boot and --dpi must be positive and --ci in (0, 100)")
    if len(set(args.value)) != len(args.value) or not args.value:
        raise PlotError("give each --value once")
    runs = find_runs(args.logdirs, args.legend, args.select, args.exclude)
    check_columns(runs, args.xaxis, args.value)
    paths = output_paths(args)
    figures = {}
    for value in args.value:
        fig = make_figure(runs, value, args.xaxis, args.count, args.smooth, args.est, args.band, args.ci, args.n_boot)
        fig.suptitle(value)
        try:
            fig.savefig(paths[value], dpi=args.dpi)
        except (OSError, ValueError) as e:
            raise PlotError(f"cannot write {paths[value]}: {e}") from None
        print(f"wrote {paths[value]} ({len(runs)} runs)")
        if args.table:
            print(final_table(runs, value, args.xaxis, args.smooth))
        figures[value] = fig
    return figures


def main(argv: Optional[list[str]] = None) -> int:
    """Command-line entry: parse `argv` (default sys.argv[1:]) and plot; 0 on success, 2 on bad input."""
    try:
        plot(tyro.cli(Args, args=argv))
    except PlotError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
