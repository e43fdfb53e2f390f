"""ppo.py: its math against independent references, envpool handling on real envs, and learning."""

import os

import numpy as np
import pytest
import torch

import ppo


def segment(done, t, n):
    """Rows t, t+1, ..., k of env n up to the end of its episode (done) or of the rollout."""
    k = t
    while not done[k, n] and k < len(done) - 1:
        k += 1
    return range(t, k + 1)


def reference_gae(rew, v, next_v, term, done, gamma, lam):
    """Plain per-env, per-episode reference: A_t = sum_l (gamma lam)^l delta_{t+l} within the episode
    segment, with delta_t = r_t + gamma (1 - term_t) V(s'_t) - V(s_t). Forward sums, no recursion."""
    delta = rew + gamma * (1 - term) * next_v - v
    adv = np.zeros(rew.shape)
    for t, n in np.ndindex(rew.shape):
        adv[t, n] = sum((gamma * lam) ** (k - t) * delta[k, n] for k in segment(done, t, n))
    return adv


def reference_rewards_to_go(rew, next_v, term, done, gamma):
    """Discounted sum of rewards to the end of the episode segment, plus gamma^(len) V(final s') when the
    segment was cut by truncation or by the end of the rollout (not by termination)."""
    ret = np.zeros(rew.shape)
    for t, n in np.ndindex(rew.shape):
        rows = segment(done, t, n)
        ret[t, n] = sum(gamma ** (k - t) * rew[k, n] for k in rows)
        if not term[rows[-1], n]:  # truncated or cut: bootstrap from V of the true next state
            ret[t, n] += gamma ** len(rows) * next_v[rows[-1], n]
    return ret


def random_rollout(rng, T=40, N=3):
    rew, v, next_v = (rng.normal(size=(T, N)).astype(np.float32) for _ in range(3))
    term = (rng.random((T, N)) < 0.08).astype(np.float32)
    trunc = ((rng.random((T, N)) < 0.08) & (term == 0)).astype(np.float32)
    done = np.maximum(term, trunc)
    # inside an episode the next state is the following row's state: V(s'_t) = V(s_{t+1})
    next_v[:-1] = np.where(done[:-1] == 1, next_v[:-1], v[1:])
    assert term.any() and trunc.any()
    return rew, v, next_v, term, done


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gae_matches_per_episode_reference(seed):
    rew, v, next_v, term, done = random_rollout(np.random.default_rng(seed))
    adv, ret = ppo.gae(rew, v, next_v, term, done, gamma=0.99, lam=0.95)
    np.testing.assert_allclose(adv, reference_gae(rew, v, next_v, term, done, 0.99, 0.95), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ret, adv + v, rtol=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_lambda_one_targets_are_bootstrapped_rewards_to_go(seed):
    rew, v, next_v, term, done = random_rollout(np.random.default_rng(seed))
    _, ret = ppo.gae(rew, v, next_v, term, done, gamma=0.9, lam=1.0)
    np.testing.assert_allclose(ret, reference_rewards_to_go(rew, next_v, term, done, 0.9), rtol=1e-4, atol=1e-4)


def test_truncation_bootstraps_and_termination_does_not():
    # one env, episode of 2 steps truncated, then one of 1 step terminated
    rew = np.array([[1.0], [1.0], [1.0]], dtype=np.float32)
    v = np.zeros((3, 1), dtype=np.float32)
    next_v = np.array([[0.0], [10.0], [10.0]], dtype=np.float32)
    term = np.array([[0.0], [0.0], [1.0]], dtype=np.float32)
    done = np.array([[0.0], [1.0], [1.0]], dtype=np.float32)
    _, ret = ppo.gae(rew, v, next_v, term, done, gamma=0.5, lam=1.0)
    np.testing.assert_allclose(ret[:, 0], [1 + 0.5 * (1 + 0.5 * 10), 1 + 0.5 * 10, 1.0])


def test_gaussian_logp_and_entropy_match_torch_distributions():
    torch.manual_seed(0)
    mu, log_std = torch.randn(64, 4), torch.randn(4)
    act = mu + 3 * torch.randn(64, 4)
    ref = torch.distributions.Normal(mu, log_std.exp())
    torch.testing.assert_close(ppo.gaussian_logp(act, mu, log_std), ref.log_prob(act).sum(-1))
    torch.testing.assert_close(ppo.gaussian_entropy(log_std).expand(64), ref.entropy().sum(-1))


def test_categorical_logp_and_entropy_match_torch_distributions():
    torch.manual_seed(0)
    logits, act = 5 * torch.randn(64, 6), torch.randint(0, 6, (64,))
    ref = torch.distributions.Categorical(logits=logits)
    torch.testing.assert_close(ppo.categorical_logp(logits, act.float()), ref.log_prob(act))
    torch.testing.assert_close(ppo.categorical_entropy(logits), ref.entropy())


def test_running_mean_std_matches_numpy():
    rng = np.random.default_rng(0)
    data = rng.normal(3.0, 2.0, size=(1000, 5)) * np.arange(1, 6)
    rms = ppo.RunningMeanStd((5,))
    for chunk in np.array_split(data, [1, 7, 100, 513]):
        rms.update(chunk)
    np.testing.assert_allclose(rms.mean, data.mean(0), rtol=1e-10)
    np.testing.assert_allclose(rms.var, data.var(0), rtol=1e-10)
    assert rms.count == 1000
    expected = np.clip((data - data.mean(0)) / np.sqrt(data.var(0) + rms.eps), -10, 10)
    np.testing.assert_allclose(rms.normalize(data), expected, rtol=1e-5, atol=1e-6)


class RecordingEnvs:
    """Wraps the real envs and records every step() and reset() the script makes."""

    def __init__(self, envs):
        self.envs, self.steps, self.resets = envs, [], []
        self.observation_space, self.action_space = envs.observation_space, envs.action_space

    def reset(self, env_ids=None):
        obs, info = self.envs.reset(env_ids)
        self.resets.append((len(self.steps), None if env_ids is None else np.array(env_ids), obs.copy()))
        return obs, info

    def step(self, act):
        obs, rew, term, trunc, info = self.envs.step(act)
        self.steps.append((obs.copy(), rew.copy(), term.copy(), trunc.copy(), info["elapsed_step"].copy()))
        return obs, rew, term, trunc, info

    def close(self):
        self.envs.close()


@pytest.mark.parametrize("env_id, max_steps", [("CartPole-v1", None), ("Hopper-v4", 50)])
def test_envpool_transitions_are_real_and_episode_stats_match(monkeypatch, tmp_path, env_id, max_steps):
    recorders, stored = [], []
    make_envs = ppo.make_envs
    monkeypatch.setattr(
        ppo, "make_envs", lambda *a, **k: recorders.append(RecordingEnvs(make_envs(*a, **k))) or recorders[-1]
    )

    class RecordingBuffer(ppo.RolloutBuffer):
        def store(self, t, *row):
            super().store(t, *row)
            stored.append({k: np.array(v, copy=True) for k, v in zip(self.FIELDS, row, strict=True)})

    monkeypatch.setattr(ppo, "RolloutBuffer", RecordingBuffer)
    metrics = ppo.train(
        ppo.Args(
            env_id=env_id,
            total_timesteps=4096,
            steps_per_epoch=2048,
            num_envs=4,
            max_episode_steps=max_steps,
            norm_obs=False,
            data_dir=str(tmp_path),
            cuda=False,
        )
    )
    rec = recorders[0]
    assert len(rec.steps) == len(stored) == 4096 // 4
    # no step the script took was envpool's hidden reset step (elapsed_step 0, action ignored)
    assert min(s[4].min() for s in rec.steps) >= 1
    ended = 0
    for i, ((obs, _, term, trunc, _), row) in enumerate(zip(rec.steps, stored, strict=True)):
        # the stored next_obs is what the step returned: the true final observation where an episode ended
        np.testing.assert_array_equal(row["next_obs"], obs.astype(np.float32))
        np.testing.assert_array_equal(row["term"], term)
        np.testing.assert_array_equal(row["done"], term | trunc)
        done = np.flatnonzero(term | trunc)
        ended += len(done)
        if i + 1 < len(stored) and len(done):
            # the next stored obs of an ended env is the first obs of its new episode, not the final one
            _, ids, reset_obs = next(r for r in rec.resets if r[0] == i + 1)
            np.testing.assert_array_equal(ids, done)
            np.testing.assert_array_equal(stored[i + 1]["obs"][done], reset_obs.astype(np.float32))
    assert ended > 0
    # episode returns and lengths counted independently from the recorded steps
    ret, length, returns = np.zeros(4), np.zeros(4, dtype=int), []
    for _, rew, term, trunc, elapsed in rec.steps:
        ret, length = ret + rew, length + 1
        np.testing.assert_array_equal(elapsed, length)
        for n in np.flatnonzero(term | trunc):
            returns.append(ret[n])
            if max_steps is not None:
                assert length[n] <= max_steps and (not trunc[n] or length[n] == max_steps)
            ret[n], length[n] = 0.0, 0
    assert metrics["episodes"] == len(returns) == ended
    np.testing.assert_allclose(metrics["recent_returns"], returns[-100:], rtol=1e-6)


def test_exported_policy_matches_the_trained_actor(hopper_run):
    """policy.pt2 with zero noise gives clip(mean action) of the checkpointed actor on normalised obs."""
    run_dir = hopper_run["run_dir"]
    ckpt = torch.load(f"{run_dir}/checkpoint.pt", weights_only=True)
    actor = ppo.Actor(11, 3, (64, 64), discrete=False)
    actor.load_state_dict(ckpt["pi"])
    policy = torch.export.load(f"{run_dir}/policy.pt2").module()
    obs = torch.randn(7, 11) * 3
    mean, var = ckpt["obs_rms"]["mean"], ckpt["obs_rms"]["var"]
    norm = torch.clamp((obs - mean.float()) / torch.sqrt(var.float() + 1e-8), -10, 10)
    with torch.no_grad():
        torch.testing.assert_close(policy(obs, torch.zeros(7, 3)), torch.clamp(actor(norm), -1, 1))
        noisy = policy(obs, torch.randn(7, 3))
    assert noisy.shape == (7, 3) and noisy.abs().max() <= 1.0


def test_gymnasium_fallback_runs_a_registered_env(tmp_path):
    import gymnasium as gym

    gym.register(
        "PpoFallbackPendulum-v0",
        entry_point="gymnasium.envs.classic_control.pendulum:PendulumEnv",
        max_episode_steps=40,
    )
    assert "PpoFallbackPendulum-v0" not in ppo.envpool.list_all_envs()
    metrics = ppo.train(
        ppo.Args(
            env_id="PpoFallbackPendulum-v0",
            total_timesteps=1024,
            steps_per_epoch=512,
            num_envs=4,
            data_dir=str(tmp_path),
            cuda=False,
        )
    )
    assert metrics["global_step"] == 1024 and metrics["episodes"] == 1024 // 40 // 4 * 4


def test_learns_cartpole(tmp_path):
    """CartPole-v1: mean return of the last 20 training episodes >= 450 within 49k steps (seed 1 holds 500 from 20k)."""
    metrics = ppo.train(ppo.Args(env_id="CartPole-v1", total_timesteps=49_152, data_dir=str(tmp_path), cuda=False))
    assert np.mean(metrics["recent_returns"][-20:]) >= 450, metrics["recent_returns"][-20:]


def test_short_hopper_run_writes_every_file(hopper_run):
    run_dir = hopper_run["run_dir"]
    files = set(os.listdir(run_dir))
    assert {"config.json", "progress.csv", "checkpoint.pt", "policy.pt2", "policies"} <= files
    assert any(f.startswith("events.out.tfevents") for f in files)
    assert sorted(os.listdir(os.path.join(run_dir, "policies"))) == ["policy_2048.pt2", "policy_4096.pt2"]
    assert hopper_run["global_step"] == 4096 and hopper_run["episodes"] > 0  # 50-step episodes ended
