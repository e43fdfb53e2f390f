"""ddpg.py, td3.py, sac.py: their math against independent references and hand-computed cases, the replay
buffer on real envpool envs, resume, and learning on Pendulum-v1 (actions in [-2, 2], so every test on it
also exercises the action scaling)."""

import copy
import csv
import importlib
import os

import numpy as np
import pytest
import torch
from test_ppo import RecordingEnvs

NAMES = ("ddpg", "td3", "sac")
TINY = {  # a few seconds per run: 2 epochs of 200 steps, 50-step episodes, small networks
    "env_id": "Pendulum-v1",
    "total_timesteps": 400,
    "steps_per_epoch": 200,
    "start_steps": 100,
    "update_after": 100,
    "update_every": 50,
    "batch_size": 32,
    "hidden_sizes": (32, 32),
    "num_test_episodes": 2,
    "max_episode_steps": 50,
    "cuda": False,
}


def tiny_args(name: str, data_dir, **overrides):
    module = importlib.import_module(name)
    return module.Args(**{**TINY, "data_dir": str(data_dir), **overrides})


def train(name: str, data_dir, **overrides) -> dict:
    return importlib.import_module(name).train(tiny_args(name, data_dir, **overrides))


@pytest.fixture(scope="module", params=NAMES)
def tiny_run(request, tmp_path_factory) -> tuple[str, dict]:
    """(script name, train()'s metrics) of a finished tiny Pendulum run, once per script."""
    return request.param, train(request.param, tmp_path_factory.mktemp(request.param))


# ------------------------------------------------------------------ math
def test_squashed_gaussian_logp_matches_transformed_distribution():
    from torch.distributions import AffineTransform, Independent, Normal, TanhTransform, TransformedDistribution

    import sac

    torch.manual_seed(0)
    low, high = torch.tensor([-1.0, -0.4, 0.0, -3.0]), torch.tensor([1.0, 0.4, 5.0, 1.0])
    scale, bias = (high - low) / 2, (high + low) / 2
    mu, log_std = 3 * torch.randn(512, 4), torch.rand(512, 4) * 4 - 3
    u = mu + log_std.exp() * torch.randn(512, 4)
    u[:8] = torch.tensor([15.0, -20.0, 9.5, -12.0])  # tanh(u) rounds to +-1 in float32 here
    tanh, affine = TanhTransform(cache_size=1), AffineTransform(bias, scale, cache_size=1)
    ref = TransformedDistribution(Independent(Normal(mu, log_std.exp()), 1), [tanh, affine])
    act = affine(tanh(u))  # the caches hold u, so log_prob needs no atanh of a rounded +-1
    expected = ref.log_prob(act)
    got = sac.squashed_gaussian_logp(u, mu, log_std, scale)
    assert torch.isfinite(got).all() and torch.isfinite(expected).all()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_polyak_update_by_hand(name):
    module = importlib.import_module(name)
    targ, params = [torch.tensor([1.0, -2.0]), torch.tensor([[4.0]])], [torch.tensor([3.0, 2.0]), torch.tensor([[0.0]])]
    module.polyak_update(targ, params, polyak=0.75)  # 0.75 targ + 0.25 p
    torch.testing.assert_close(targ, [torch.tensor([1.5, -1.0]), torch.tensor([[3.0]])])
    torch.testing.assert_close(params, [torch.tensor([3.0, 2.0]), torch.tensor([[0.0]])])


@pytest.mark.parametrize("name", NAMES)
def test_td_target_bootstraps_truncation_not_termination(name):
    module = importlib.import_module(name)
    rew, next_value = torch.tensor([1.0, 1.0, -2.0]), torch.tensor([10.0, 10.0, 4.0])
    term = torch.tensor([0.0, 1.0, 0.0])  # a step inside an episode / terminal / truncated (stored as term=0)
    got = module.td_target(rew, term, next_value, gamma=0.5)
    torch.testing.assert_close(got, torch.tensor([1 + 0.5 * 10, 1.0, -2 + 0.5 * 4]))


def test_td3_target_smoothing_by_hand():
    import td3

    scale, bias = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 1.0])  # bounds [-1, 1] and [-1, 3]
    mu_targ = torch.tensor([[0.0, 1.0], [0.9, 2.5], [-0.2, -0.5]])
    eps = torch.tensor([[1.0, -1.0], [5.0, 0.5], [-10.0, -2.0]])  # one draw per sample and dimension
    got = td3.target_action(mu_targ, eps, target_noise=0.2, noise_clip=0.5, scale=scale, bias=bias)
    # noise = clip(0.2 eps, -0.5, 0.5) * scale, then clip to the bounds
    expected = torch.tensor([[0.2, 1.0 - 0.4], [min(0.9 + 0.5, 1.0), 2.5 + 0.2], [-0.2 - 0.5, max(-0.5 - 0.8, -1.0)]])
    torch.testing.assert_close(got, expected)


def test_td3_draws_target_noise_per_sample(monkeypatch, tmp_path):
    import td3

    seen = []
    target_action = td3.target_action
    monkeypatch.setattr(
        td3, "target_action", lambda mu, eps, *a: seen.append(eps.clone()) or target_action(mu, eps, *a)
    )
    train("td3", tmp_path)
    eps = torch.stack(seen)  # [updates, batch, act_dim]
    assert eps.shape == (350, TINY["batch_size"], 1)  # 7 rounds of 50 updates, at steps 100, 150, ..., 400
    assert len(torch.unique(eps[0])) == TINY["batch_size"]  # no sample shares its noise
    assert abs(eps.std().item() - 1) < 0.05 and abs(eps.mean().item()) < 0.05


@pytest.mark.parametrize("name", NAMES)
def test_replay_buffer_is_a_ring(name):
    module = importlib.import_module(name)
    buf = module.ReplayBuffer(obs_dim=2, act_dim=1, size=7, device=torch.device("cpu"))
    for k in range(5):  # 15 transitions of 3 rows into 7 slots: rows 8..14 survive
        rows = np.arange(3 * k, 3 * k + 3, dtype=np.float32)
        buf.store(np.stack([rows, -rows], 1), rows[:, None], rows, np.stack([rows + 1, -rows], 1), rows % 2 == 0)
    assert buf.size == 7 and buf.ptr == 15 % 7
    np.testing.assert_array_equal(buf.rew.numpy(), [14, 8, 9, 10, 11, 12, 13])
    np.testing.assert_array_equal(buf.term.numpy(), [1, 1, 0, 1, 0, 1, 0])
    batch = buf.sample(4, 100)
    assert batch["obs"].shape == (4, 100, 2) and batch["rew"].shape == (4, 100)
    np.testing.assert_array_equal(batch["obs"][..., 0], batch["rew"])  # fields of one draw stay aligned
    restored = module.ReplayBuffer(obs_dim=2, act_dim=1, size=7, device=torch.device("cpu"))
    restored.load_state_dict(buf.state_dict())
    for key in module.ReplayBuffer.FIELDS:
        torch.testing.assert_close(getattr(restored, key), getattr(buf, key))


# ------------------------------------------------------------------ envpool and the replay buffer
class ActionRecordingEnvs(RecordingEnvs):
    """RecordingEnvs (test_ppo.py) that also keeps every action sent."""

    def __init__(self, envs):
        super().__init__(envs)
        self.acts = []

    def step(self, act):
        self.acts.append(np.array(act, copy=True))
        return super().step(act)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("env_id, max_steps", [("Pendulum-v1", 30), ("Hopper-v4", 20)])
def test_buffer_holds_only_real_transitions(monkeypatch, tmp_path, name, env_id, max_steps):
    module = importlib.import_module(name)
    recorders, stored, buffers = [], [], []
    make_envs = module.make_envs
    monkeypatch.setattr(
        module, "make_envs", lambda *a, **k: recorders.append(ActionRecordingEnvs(make_envs(*a, **k))) or recorders[-1]
    )

    class RecordingBuffer(module.ReplayBuffer):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            buffers.append(self)

        def store(self, *row):
            super().store(*row)
            stored.append({k: np.array(v, copy=True) for k, v in zip(self.FIELDS, row, strict=True)})

    monkeypatch.setattr(module, "ReplayBuffer", RecordingBuffer)
    metrics = train(name, tmp_path, env_id=env_id, max_episode_steps=max_steps, num_envs=2)
    rec = recorders[0]  # the training envs (the test envs are made second)
    assert len(rec.steps) == len(stored) == TINY["total_timesteps"] // 2
    assert min(s[4].min() for s in rec.steps) >= 1  # never a step of envpool's hidden reset
    term_seen = trunc_seen = 0
    for i, ((obs, rew, term, trunc, _), row) in enumerate(zip(rec.steps, stored, strict=True)):
        np.testing.assert_array_equal(row["act"], rec.acts[i].astype(np.float32))
        np.testing.assert_array_equal(row["next_obs"], obs.astype(np.float32))  # the true s', final obs included
        np.testing.assert_array_equal(row["rew"], rew)
        np.testing.assert_array_equal(row["term"], term)  # truncation is not stored as terminal
        term_seen, trunc_seen = term_seen + term.sum(), trunc_seen + (trunc & ~term).sum()
        if i + 1 < len(stored):
            done = term | trunc
            next_obs = row["next_obs"].copy()
            if done.any():  # an ended env continues from its reset observation, reset right after the step
                _, ids, reset_obs = next(r for r in rec.resets if r[0] == i + 1)
                np.testing.assert_array_equal(ids, np.flatnonzero(done))
                next_obs[done] = reset_obs.astype(np.float32)
            np.testing.assert_array_equal(stored[i + 1]["obs"], next_obs)
    assert trunc_seen > 0 and (term_seen > 0 or env_id == "Pendulum-v1")
    assert metrics["episodes"] == sum(len(np.flatnonzero(s[2] | s[3])) for s in rec.steps)
    buf = buffers[0]  # the buffer holds exactly the stored rows, in order
    for key in module.ReplayBuffer.FIELDS:
        expected = np.concatenate([r[key] for r in stored]).astype(np.float32)
        np.testing.assert_array_equal(getattr(buf, key)[: buf.size].numpy().reshape(expected.shape), expected)


# ------------------------------------------------------------------ policy artifact, errors, resume
def test_exported_policy_matches_the_trained_actor(tiny_run):
    name, metrics = tiny_run
    module = importlib.import_module(name)
    ckpt = torch.load(os.path.join(metrics["run_dir"], "checkpoint.pt"), weights_only=True)
    low, high = np.array([-2.0]), np.array([2.0])
    if name == "sac":
        actor = module.Actor(3, 1, TINY["hidden_sizes"], low, high)
    else:
        actor = module.Actor(3, 1, TINY["hidden_sizes"], low, high)
    actor.load_state_dict(ckpt["pi"])
    policy = torch.export.load(os.path.join(metrics["run_dir"], "policy.pt2")).module()
    obs, noise = torch.randn(64, 3) * 3, torch.randn(64, 1) * 3
    with torch.no_grad():
        if name == "sac":
            (mu, log_std), scale = actor(obs), 2.0
            mean_act, noisy_act = scale * torch.tanh(mu), scale * torch.tanh(mu + log_std.exp() * noise)
        else:
            mean_act = actor(obs)
            noisy_act = torch.clamp(mean_act + 0.1 * 2.0 * noise, -2.0, 2.0)  # act_noise 0.1 of half the range
        torch.testing.assert_close(policy(obs, torch.zeros(64, 1)), mean_act)
        torch.testing.assert_close(policy(obs, noise), noisy_act)
    assert noisy_act.abs().max() <= 2.0 and (noisy_act.abs() > 1.0).any()  # scaled to Pendulum's [-2, 2]


@pytest.mark.parametrize("name", NAMES)
def test_discrete_action_space_is_refused(name, tmp_path):
    module = importlib.import_module(name)
    with pytest.raises(module.ConfigError, match="needs a Box action space"):
        train(name, tmp_path, env_id="CartPole-v1")
    assert not list(tmp_path.iterdir())


def assert_same(a, b, path="") -> None:
    """Equal nested state dicts: tensors bit for bit, everything else by ==."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            assert_same(a[key], b[key], f"{path}/{key}")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a.cpu(), b.cpu()), path
    else:
        assert a == b, path


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("save_buffer", [True, False])
def test_resume_restores_the_training_state(monkeypatch, tmp_path, name, save_buffer):
    module = importlib.import_module(name)
    extra = {"autotune": True, "alpha_lr": 0.01} if name == "sac" else {}
    first = train(name, tmp_path, save_buffer=save_buffer, **extra)
    saved = torch.load(os.path.join(first["run_dir"], "checkpoint.pt"), weights_only=True)
    seen, buffers, restore = {}, [], module.Run.restore

    class SpyBuffer(module.ReplayBuffer):  # keeps the buffer train() builds
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            buffers.append(self)

    def spy_restore(run, state, policy):  # Run.restore: where a resumed train() gets its state back
        restored = restore(run, state, policy)
        seen.update(
            {k: copy.deepcopy(v.detach() if isinstance(v, torch.Tensor) else v.state_dict()) for k, v in state.items()}
        )
        seen.update(rng=torch.get_rng_state(), step=run.global_step, buf=buffers[0].state_dict(), restored=restored)
        return restored

    monkeypatch.setattr(module, "ReplayBuffer", SpyBuffer)
    monkeypatch.setattr(module.Run, "restore", spy_restore)
    total = 2 * TINY["total_timesteps"]
    resumed = module.train(module.Args(resume=first["run_dir"], total_timesteps=total, cuda=False))
    assert resumed["run_dir"] == first["run_dir"] and resumed["global_step"] == total
    for key in ("pi", "qf", "pi_targ", "qf_targ", "pi_opt", "qf_opt", "alpha_opt", "log_alpha"):
        if key in saved:  # networks, targets, optimizers and alpha as saved
            assert_same(seen[key], saved[key], key)
    assert torch.equal(seen["rng"], saved["rng"]["torch"]) and seen["step"] == saved["global_step"] == 400
    if name == "sac":
        assert abs(saved["log_alpha"].item() - np.log(0.2)) > 0.1  # alpha was tuned, so restoring it matters
    if name == "td3":  # the policy delay's counter of Q updates continues: 7 rounds of 50 before the resume
        assert seen["restored"]["updates"] == saved["updates"] == 350
    if save_buffer:
        assert_same(seen["buf"], saved["buffer"], "buffer")
        for key in module.ReplayBuffer.FIELDS:  # only the 400 filled rows are written, not all of replay_size
            field = saved["buffer"][key]
            assert len(field) == 400 and field.untyped_storage().nbytes() == field.numel() * 4, key
    else:  # no buffer in the checkpoint: training continues from an empty one
        assert "buffer" not in saved and seen["buf"]["size"] == 0
    final = torch.load(os.path.join(first["run_dir"], "checkpoint.pt"), weights_only=True)
    assert final["resumes"] == [400] and final["global_step"] == total
    rows = list(csv.DictReader(open(os.path.join(first["run_dir"], "progress.csv"))))
    assert [int(r["global_step"]) for r in rows] == [200, 400, 600, 800]


@pytest.mark.parametrize("name", NAMES)
def test_gymnasium_fallback_runs_a_registered_env(name, tmp_path):
    import gymnasium as gym

    if "TestPendulum-v1" not in gym.registry:
        gym.register(
            "TestPendulum-v1", entry_point="gymnasium.envs.classic_control.pendulum:PendulumEnv", max_episode_steps=40
        )
    metrics = train(name, tmp_path, env_id="TestPendulum-v1", max_episode_steps=None, num_envs=2)
    assert metrics["global_step"] == 400 and metrics["episodes"] == 400 // 40
    assert -2000 < metrics["eval_episodic_return"] < 0


# ------------------------------------------------------------------ learning
LEARN = {  # per script: small networks and a short random phase keep each run under a minute on 2 CPU cores
    "sac": {"total_timesteps": 8_000},
    "ddpg": {"total_timesteps": 10_000},
    "td3": {"total_timesteps": 12_000},
}


@pytest.mark.parametrize("name", NAMES)
def test_learns_pendulum(name, tmp_path):
    """Pendulum-v1: the deterministic test return (5 episodes) reaches >= -300 in one of the last 3 epochs."""
    settings = {"steps_per_epoch": 1_000, "start_steps": 1_000, "update_after": 1_000, "max_episode_steps": None}
    settings.update(hidden_sizes=(64, 64), batch_size=64, num_test_episodes=5, **LEARN[name])
    metrics = train(name, tmp_path, **settings)
    rows = list(csv.DictReader(open(os.path.join(metrics["run_dir"], "progress.csv"))))
    test_returns = [float(r["eval_episodic_return"]) for r in rows]
    assert max(test_returns[-3:]) >= -300, test_returns
