"""The shape every algorithm script promises: the RL part above one plumbing line, the plumbing below it the same
text in each family, the line budgets, siblings that differ in little more than their algorithms; and the three
things the plumbing adds: a diverging run stops, an unwritable run directory is refused, the GPU is opt-in."""

import csv
import difflib
import importlib
import json
import os
import shutil
import subprocess

import pytest
import torch
from test_contract import SCRIPTS, tiny_run

from conftest import ROOT, assert_one_line_error, run_script

FAMILIES = (("vpg", "ppo", "trpo"), ("ddpg", "td3", "sac"))
MARKER = "# ==== plumbing"
ABOVE = {"ppo": 350, "trpo": 450}  # lines above the plumbing line; 400 for the others
TOTAL = {"trpo": 750}  # lines in the file; 650 for the others
SIBLING_DIFF = {("vpg", "ppo"): 100, ("ddpg", "td3"): 120, ("td3", "sac"): 160}  # lines diff marks < or >


def lines(name: str) -> list[str]:
    with open(os.path.join(ROOT, f"{name}.py")) as f:
        return f.read().splitlines()


def marker_index(text: list[str]) -> int:
    """The index of the one line that starts with the plumbing marker."""
    found = [i for i, line in enumerate(text) if line.startswith(MARKER)]
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize("family", FAMILIES, ids=["on-policy", "off-policy"])
def test_plumbing_is_the_same_text_in_each_family(family):
    below = {name: lines(name)[marker_index(lines(name)) :] for name in family}
    for name in family[1:]:
        assert below[name] == below[family[0]], f"{name}.py's plumbing differs from {family[0]}.py's"
    assert below[family[0]][-1].startswith("    sys.exit(") and 'if __name__ == "__main__":' in below[family[0]]


@pytest.mark.parametrize("name", [n for family in FAMILIES for n in family])
def test_line_budgets(name):
    text = lines(name)
    above, start = marker_index(text), next(i for i, line in enumerate(text) if line.startswith("def train("))
    end = max(i for i in range(start, above) if text[i].strip())  # the last line of train()
    assert above <= ABOVE.get(name, 400) and len(text) <= TOTAL.get(name, 650) and end - start + 1 <= 150
    assert start < above and 'if __name__ == "__main__":' not in "\n".join(text[:above])


@pytest.mark.parametrize("a, b", SIBLING_DIFF)
def test_siblings_differ_little(a, b):
    if shutil.which("diff"):  # what `diff a.py b.py` marks with < and >
        out = subprocess.run(["diff", f"{a}.py", f"{b}.py"], cwd=ROOT, capture_output=True, text=True).stdout
        changed = sum(line[:1] in "<>" for line in out.splitlines())
    else:
        ops = difflib.SequenceMatcher(None, lines(a), lines(b), autojunk=False).get_opcodes()
        changed = sum(i2 - i1 + j2 - j1 for op, i1, i2, j1, j2 in ops if op != "equal")
    assert 0 < changed <= SIBLING_DIFF[(a, b)], changed


def test_a_diverging_run_stops_with_one_line_and_writes_no_nan(tmp_path):
    """The command of a new user's first experiment with huge learning rates (issue 11), two epochs long."""
    flags = ["--pi-lr", "10", "--vf-lr", "10", "--max-grad-norm", "None", "--no-norm-obs", "--total-timesteps", "4096"]
    result = run_script("ppo.py", "--env-id", "Hopper-v4", *flags, "--data-dir", str(tmp_path))
    assert_one_line_error(result, "diverged at step 2048", "not finite", "lower --pi-lr, --vf-lr")  # no MuJoCo flood
    (run_dir,) = tmp_path.iterdir()
    assert not [f for f in os.listdir(run_dir) if f.endswith((".pt", ".pt2", ".csv"))]  # no NaN checkpoint or row


@pytest.mark.parametrize("name", ["ppo", "sac"])
def test_divergence_keeps_the_last_finite_checkpoint(monkeypatch, tmp_path, name):
    """The policy turns NaN in the third epoch, as a diverging update leaves it: the run stops there, and the
    checkpoint, policy and progress.csv stay those of epoch 2."""
    module = importlib.import_module(name)
    end_epoch, calls, spe = module.Run.end_epoch, [], SCRIPTS[name]["steps_per_epoch"]

    def poisoned(run, stats):
        calls.append(stats)
        if len(calls) == 3:
            with torch.no_grad():
                next(run.state["pi"].parameters()).fill_(float("nan"))
        return end_epoch(run, stats)

    monkeypatch.setattr(module.Run, "end_epoch", poisoned)
    with pytest.raises(module.ConfigError, match=f"diverged at step {3 * spe}: pi parameters not finite; lower --"):
        tiny_run(name, tmp_path, total_timesteps=5 * spe, save_every=1)
    (run_dir,) = tmp_path.iterdir()
    ckpt = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert ckpt["global_step"] == 2 * spe and all(torch.isfinite(p).all() for p in ckpt["pi"].values())
    assert [int(r["global_step"]) for r in csv.DictReader(open(run_dir / "progress.csv"))] == [spe, 2 * spe]
    assert sorted(os.listdir(run_dir / "policies")) == sorted([f"policy_{spe}.pt2", f"policy_{2 * spe}.pt2"])
    config = json.load(open(run_dir / "config.json"))["policy"]
    policy = torch.export.load(run_dir / "policy.pt2").module()
    assert torch.isfinite(policy(torch.ones(4, config["obs_dim"]), torch.ones(4, config["noise_dim"])).float()).all()


@pytest.mark.parametrize("name", SCRIPTS)
def test_unwritable_run_directory_is_refused_and_nothing_is_lost(name, tmp_path):
    """In-process (the one-line path of ConfigError is test_contract's): train raises before writing anything."""
    (tmp_path / "a_file").write_text("keep me")
    module = importlib.import_module(name)
    with pytest.raises(module.ConfigError, match="cannot create the run directory .*a_file"):
        tiny_run(name, tmp_path / "a_file" / "runs")
    assert os.listdir(tmp_path) == ["a_file"] and (tmp_path / "a_file").read_text() == "keep me"


def test_the_gpu_is_opt_in(tmp_path):
    """--cuda is off by default in every script; asked for, a run goes on (on the CPU where there is no GPU)."""
    assert all(importlib.import_module(name).Args().cuda is False for name in SCRIPTS)
    for name in ("ppo", "sac"):
        metrics = tiny_run(name, tmp_path / name, cuda=True)
        assert metrics["global_step"] == SCRIPTS[name]["total_timesteps"] and not metrics["interrupted"]
