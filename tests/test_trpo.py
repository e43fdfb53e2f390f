"""trpo.py: conjugate gradient, the KL and its Hessian-vector product against independent references,
the trust-region update on real batches, and learning."""

import copy
import csv
import os

import numpy as np
import pytest
import torch
from torch.distributions import Categorical, Independent, Normal, kl_divergence

import trpo


def small_policy(discrete: bool, seed: int = 0) -> trpo.Actor:
    """A float64 policy with 3 inputs, one hidden layer of 5 and 2 outputs, parameters moved off their init."""
    torch.manual_seed(seed)
    pi = trpo.Actor(3, 2, (5,), discrete).double()
    with torch.no_grad():
        for p in pi.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return pi


def dist(pi: trpo.Actor, obs: torch.Tensor):
    """pi(.|obs) as a torch.distributions object: the independent reference for logp and the KL."""
    out = pi(obs)
    return Categorical(logits=out) if pi.discrete else Independent(Normal(out, pi.log_std.exp()), 1)


def trainable(pi: trpo.Actor) -> list:
    return [p for p in pi.parameters() if p.requires_grad]


@pytest.mark.parametrize("n", [2, 7, 30])
def test_conjugate_gradient_solves_spd_systems(n):
    gen = torch.Generator().manual_seed(n)
    for _ in range(5):
        q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
        A = q @ torch.diag(torch.logspace(-0.5, 0.5, n, dtype=torch.float64)) @ q.T  # SPD, condition number 10
        b = torch.randn(n, generator=gen, dtype=torch.float64)
        x_ref = torch.linalg.solve(A, b)
        x = trpo.conjugate_gradient(A.matmul, b, iters=n, tol=1e-30)  # exact in n steps, up to rounding
        torch.testing.assert_close(x, x_ref, rtol=1e-6, atol=1e-9)
        # each iteration lowers the error in the A-norm (CG's optimality property), from x = 0
        xs = [trpo.conjugate_gradient(A.matmul, b, iters=k, tol=1e-30) for k in range(min(n, 6) + 1)]
        err = [((x - x_ref) @ A @ (x - x_ref)).item() for x in xs]
        assert all(e1 < e0 for e0, e1 in zip(err[:-1], err[1:], strict=True)), err


def test_kl_functions_match_torch_distributions_old_first():
    torch.manual_seed(0)
    mu_old, mu, log_std_old, log_std = torch.randn(64, 3), torch.randn(64, 3), torch.randn(3), torch.randn(3)
    old, new = Independent(Normal(mu_old, log_std_old.exp()), 1), Independent(Normal(mu, log_std.exp()), 1)
    kl = trpo.gaussian_kl(mu_old, log_std_old, mu, log_std)
    torch.testing.assert_close(kl, kl_divergence(old, new))
    assert not torch.allclose(kl, kl_divergence(new, old), rtol=0.01)  # the direction matters here
    logits_old, logits = 3 * torch.randn(64, 5), 3 * torch.randn(64, 5)
    kl = trpo.categorical_kl(logits_old, logits)
    torch.testing.assert_close(kl, kl_divergence(Categorical(logits=logits_old), Categorical(logits=logits)))
    assert not torch.allclose(kl, kl_divergence(Categorical(logits=logits), Categorical(logits=logits_old)), rtol=0.01)


@pytest.mark.parametrize("discrete", [False, True])
def test_mean_kl_is_kl_old_to_new_for_both_action_spaces(discrete):
    pi_old, obs = small_policy(discrete), torch.randn(32, 3, dtype=torch.float64)
    pi = copy.deepcopy(pi_old)
    with torch.no_grad():
        old = (pi_old(obs), pi_old.log_std.clone())
        for p in trainable(pi):
            p.add_(0.5 * torch.randn_like(p))
        kl = trpo.mean_kl(pi, obs, old)
        forward, reverse = (
            kl_divergence(dist(pi_old, obs), dist(pi, obs)),
            kl_divergence(dist(pi, obs), dist(pi_old, obs)),
        )
    torch.testing.assert_close(kl, forward.mean())
    assert abs(kl - reverse.mean()) > 1e-3 * kl
    assert trpo.mean_kl(pi_old, obs, old).abs() < 1e-12  # zero at theta_old


@pytest.mark.parametrize("discrete", [False, True])
def test_kl_hessian_vector_product_matches_explicit_hessian(discrete):
    pi, obs = small_policy(discrete), torch.randn(16, 3, dtype=torch.float64)
    with torch.no_grad():
        old = (pi(obs), pi.log_std.clone())
    names = [n for n, p in pi.named_parameters() if p.requires_grad]
    theta0 = trpo.get_flat(trainable(pi))

    def kl_of(theta):  # the same mean KL, as a function of the flat parameter vector, via torch.distributions
        sizes = [p.numel() for p in trainable(pi)]
        params = {n: t.view_as(p) for n, t, p in zip(names, theta.split(sizes), trainable(pi), strict=True)}
        out = torch.func.functional_call(pi, params, (obs,))
        new = Categorical(logits=out) if discrete else Independent(Normal(out, params["log_std"].exp()), 1)
        ref = Categorical(logits=old[0]) if discrete else Independent(Normal(old[0], old[1].exp()), 1)
        return kl_divergence(ref, new).mean()

    H = torch.autograd.functional.hessian(kl_of, theta0)
    assert H.shape == (len(theta0), len(theta0)) and torch.linalg.eigvalsh(H).min() > -1e-10  # PSD: a Fisher matrix
    hvp = trpo.kl_hvp(pi, obs, old, damping=0.1)
    for v in (torch.randn_like(theta0), torch.eye(len(theta0), dtype=torch.float64)[3]):
        torch.testing.assert_close(hvp(v), H @ v + 0.1 * v, rtol=1e-9, atol=1e-12)


def test_line_search_keeps_the_first_step_inside_the_trust_region():
    params = [torch.zeros(2)]

    def evaluate():  # kl = theta_0^2, surrogate = theta_0
        return params[0][0].item() ** 2, params[0][0].item()

    accepted, j, kl, surr = trpo.line_search(params, torch.tensor([1.0, 0.0]), evaluate, 0.0, 0.5, 0.8, 10)
    assert accepted and j == 2 and np.isclose(kl, 0.64**2) and np.isclose(surr, 0.64)  # 0.8^2 is the first <= 0.707
    torch.testing.assert_close(params[0], torch.tensor([0.64, 0.0]))


class Recorder:
    """Wraps trpo.trpo_update in a real training run and keeps, per call, the policy before and after and the batch."""

    def __init__(self):
        self.calls, self.real = [], trpo.trpo_update

    def __call__(self, pi, batch, **hp):
        before = copy.deepcopy(pi)
        stats = self.real(pi, batch, **hp)
        batch = [x.clone() for x in batch]  # the script's tensors share memory with its rollout buffer
        self.calls.append({"before": before, "after": copy.deepcopy(pi), "batch": batch, "hp": hp, "stats": stats})
        return stats


def record_updates(monkeypatch, tmp_path, env_id: str, **kw) -> list[dict]:
    rec = Recorder()
    monkeypatch.setattr(trpo, "trpo_update", rec)
    args = {"total_timesteps": 3072, "steps_per_epoch": 1024, "num_envs": 4, "data_dir": str(tmp_path), **kw}
    trpo.train(trpo.Args(env_id=env_id, max_episode_steps=200, cuda=False, **args))
    assert len(rec.calls) == 3
    return rec.calls


def surrogate_ref(pi, obs, act, adv, logp_old) -> float:
    """mean exp(log pi(a|s) - logp_old) A with log pi from torch.distributions."""
    with torch.no_grad():
        return float((torch.exp(dist(pi, obs).log_prob(act.long() if pi.discrete else act) - logp_old) * adv).mean())


@pytest.mark.parametrize("env_id", ["Hopper-v4", "CartPole-v1"])
def test_update_on_real_batches_stays_in_trust_region_and_improves(monkeypatch, tmp_path, env_id):
    for call in record_updates(monkeypatch, tmp_path, env_id):
        (obs, act, adv, logp_old), delta, stats = call["batch"], call["hp"]["delta"], call["stats"]
        assert stats["accepted"] == 1.0, stats
        with torch.no_grad():
            kl = kl_divergence(dist(call["before"], obs), dist(call["after"], obs)).mean().item()
        assert 0 < kl <= delta * (1 + 1e-4) and np.isclose(kl, stats["kl"], rtol=1e-4, atol=1e-7)
        surr_old = surrogate_ref(call["before"], obs, act, adv, logp_old)
        surr_new = surrogate_ref(call["after"], obs, act, adv, logp_old)
        assert surr_new > surr_old and np.isclose(surr_new, stats["surr"], rtol=1e-4, atol=1e-6)
        assert stats["backtrack_iters"] < 10


def test_failed_line_search_leaves_parameters_unchanged(monkeypatch, tmp_path):
    call = record_updates(monkeypatch, tmp_path, "Hopper-v4")[-1]
    obs, act, adv, logp_old = call["batch"]
    pi = copy.deepcopy(call["before"])
    theta_old = trpo.get_flat(trainable(pi))
    step = trpo.get_flat(trainable(call["after"])) - theta_old
    with torch.no_grad():
        old = (pi(obs), pi.log_std.clone())
        surr_old = trpo.surrogate(pi, obs, act, adv, logp_old).item()

    def evaluate():
        return trpo.mean_kl(pi, obs, old).item(), trpo.surrogate(pi, obs, act, adv, logp_old).item()

    # the accepted step reversed: every backtracked point lowers the surrogate, so none is accepted
    accepted, j, kl, surr = trpo.line_search(trainable(pi), -step, evaluate, surr_old, 0.01, 0.8, 10)
    assert not accepted and j == 10 and kl == 0.0 and surr == surr_old
    assert torch.equal(trpo.get_flat(trainable(pi)), theta_old)
    # zero advantages: no step improves the surrogate, so trpo_update keeps theta_k
    hp = {"delta": 0.01, "damping": 0.1, "cg_iters": 10, "backtrack_iters": 10, "backtrack_coeff": 0.8}
    stats = trpo.trpo_update(pi, (obs, act, torch.zeros_like(adv), logp_old), **hp, npg=False, comm=None)
    assert stats["accepted"] == 0.0 and stats["backtrack_iters"] == 10
    assert torch.equal(trpo.get_flat(trainable(pi)), theta_old)


def test_npg_always_takes_the_full_step(monkeypatch, tmp_path):
    calls = record_updates(monkeypatch, tmp_path, "Hopper-v4", algo="npg")
    for call in calls:
        assert call["stats"]["accepted"] == 1.0 and call["stats"]["backtrack_iters"] == 0
    run_dir = os.path.join(tmp_path, os.listdir(tmp_path)[0])
    rows = list(csv.DictReader(open(os.path.join(run_dir, "progress.csv"))))
    assert [float(r["accepted"]) for r in rows] == [1.0] * 3 and {r["backtrack_iters"] for r in rows} == {"0"}


def test_learns_cartpole(tmp_path):
    """CartPole-v1: mean return of the last 20 training episodes >= 450."""
    metrics = trpo.train(trpo.Args(env_id="CartPole-v1", total_timesteps=40_000, data_dir=str(tmp_path), cuda=False))
    assert np.mean(metrics["recent_returns"][-20:]) >= 450, metrics["recent_returns"][-20:]
