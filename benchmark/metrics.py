"""The benchmark table's two metrics, per env, from finished run directories.

    python benchmark/metrics.py benchmark/results/ppo [--last 100]

Strict metric, per seed (the one our tables lead with):
- on-policy runs (no test return logged): the mean return of the last `--last` (default 100) training
  episodes, read one by one from the run's episodes.csv or else its TensorBoard events, as CleanRL reports
  (`--write-episodes` writes episodes.csv from the events, so a results folder can keep only that);
- off-policy runs: the mean of the last `--last-tests` (default 10) deterministic test returns
  (progress.csv eval_episodic_return, one per epoch).
Lenient metric, per env (the one Tianshou and the TD3 paper report): the maximum over epochs of the
seed-mean curve, where the curve is progress.csv's per-epoch episodic_return (on-policy: the mean of
the epoch's training episodes) or eval_episodic_return (off-policy), averaged over the seeds at each
global_step that every seed logged.

Give the runs of one experiment (one script and setting) per logdir: runs are keyed by logdir, env and seed.
Prints a markdown table: [logdir |] env | seed 1 .. seed n | mean ± std (population std over seeds) | lenient.
Exit code 2 with a one-line error when a directory holds no runs.
"""

import os
import sys
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import tyro

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from plot import PlotError, Run, find_runs  # noqa: E402  (plot.py lives in the repo root)


@dataclass
class Args:
    logdirs: Annotated[tuple[str, ...], tyro.conf.Positional, tyro.conf.arg(metavar="LOGDIR...")]
    """directories (or path prefixes) holding run directories, as for plot.py"""
    last: int = 100
    """on-policy: training episodes averaged per seed"""
    last_tests: int = 10
    """off-policy: test returns (epochs) averaged per seed"""
    write_episodes: bool = False
    """also write each on-policy run's training episodes to <run>/episodes.csv (from its TensorBoard events)"""


def training_episodes(run: Run) -> np.ndarray:
    """Every training episode as rows (global_step, return, length) [E, 3] float64, in logged order: from
    the run's episodes.csv if it has one, else from its TensorBoard events (charts/episodic_return and
    charts/episodic_length). Raises PlotError when neither holds the episodes."""
    path = os.path.join(run.path, "episodes.csv")
    if os.path.exists(path):
        return np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(run.path, size_guidance={"scalars": 0})
    acc.Reload()
    tags = ("charts/episodic_return", "charts/episodic_length")
    if not set(tags) <= set(acc.Tags().get("scalars", [])):
        raise PlotError(f"{run.path} has no episodes.csv and no per-episode returns in TensorBoard events")
    rets, lens = (acc.Scalars(tag) for tag in tags)
    return np.array([(r.step, r.value, n.value) for r, n in zip(rets, lens, strict=True)], dtype=np.float64)


def write_episodes(run: Run) -> str:
    """Write the run's training episodes (from its TensorBoard events) to <run>/episodes.csv; return its path."""
    rows, path = training_episodes(run), os.path.join(run.path, "episodes.csv")
    np.savetxt(
        path,
        rows,
        fmt=["%d", "%.6g", "%d"],
        delimiter=",",
        header="global_step,episodic_return,episodic_length",
        comments="",
    )
    return path


def strict(run: Run, args: Args) -> float:
    """The per-seed metric of `run` (see the module docstring), a return in the env's reward units.
    Raises PlotError when an on-policy run has neither episodes.csv nor per-episode TensorBoard events."""
    if "eval_episodic_return" in run.data:
        tests = run.data["eval_episodic_return"]
        return float(np.mean(tests[np.isfinite(tests)][-args.last_tests :]))
    return float(np.mean(training_episodes(run)[-args.last :, 1]))


def lenient(runs: list[Run]) -> float:
    """Max over the global_steps that every run in `runs` (the seeds of one env) logged of the seed-mean
    per-epoch return (NaN cells skipped by nanmax); NaN when the runs share no step."""
    col = "eval_episodic_return" if "eval_episodic_return" in runs[0].data else "episodic_return"
    curves = [dict(zip(r.data["global_step"], r.data[col], strict=True)) for r in runs]
    common = sorted(set.intersection(*(set(c) for c in curves)))
    means = np.array([np.mean([c[s] for c in curves]) for s in common])
    return float(np.nanmax(means)) if len(means) else float("nan")


def table(args: Args) -> str:
    """The markdown table of the module docstring: one row per logdir and env, one column per seed found (one
    run per logdir, env and seed: a later one replaces an earlier); with several logdirs (one per setting, e.g.
    the path prefixes results/td3_defaults/Hopper-v4__td3su and ..._td3au) a first column names the logdir.
    Raises PlotError as plot.find_runs does."""
    groups: dict[tuple[str, str], dict[int, Run]] = {}
    for logdir in args.logdirs:
        for run in find_runs((logdir,)):
            if args.write_episodes and "eval_episodic_return" not in run.data:
                write_episodes(run)
            groups.setdefault((logdir, run.env_id), {})[run.seed] = run
    seeds = sorted({seed for runs in groups.values() for seed in runs})
    first = ["logdir", "env"] if len(args.logdirs) > 1 else ["env"]
    lines = ["| " + " | ".join(first + [f"seed {s}" for s in seeds]) + " | mean ± std | max of seed-mean |"]
    lines.append("|---" * (len(first) + len(seeds) + 2) + "|")
    order = {logdir: i for i, logdir in enumerate(args.logdirs)}
    for (logdir, env_id), runs in sorted(groups.items(), key=lambda kv: (order[kv[0][0]], kv[0][1])):
        vals = {seed: strict(run, args) for seed, run in runs.items()}
        cells = [logdir, env_id][-len(first) :] + [f"{vals[s]:.0f}" if s in vals else "" for s in seeds]
        mean, std, best = np.mean(list(vals.values())), np.std(list(vals.values())), lenient(list(runs.values()))
        lines.append(f"| {' | '.join(cells)} | **{mean:.0f} ± {std:.0f}** | {best:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    try:
        print(table(tyro.cli(Args)))
    except PlotError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
