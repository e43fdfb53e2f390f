"""vpg.py: one policy gradient step per epoch, the math copied from ppo.py (in vpg.py and trpo.py) against
the same independent references as ppo.py's, and learning."""

import os

import numpy as np
import pytest
import torch
from test_ppo import random_rollout, reference_gae, reference_rewards_to_go

import trpo
import vpg


@pytest.mark.parametrize("module", [vpg, trpo], ids=["vpg", "trpo"])
def test_gae_and_log_probs_match_references(module):
    for seed in range(3):
        rew, v, next_v, term, done = random_rollout(np.random.default_rng(seed))
        adv, ret = module.gae(rew, v, next_v, term, done, gamma=0.99, lam=0.95)
        np.testing.assert_allclose(adv, reference_gae(rew, v, next_v, term, done, 0.99, 0.95), rtol=1e-4, atol=1e-4)
        _, ret = module.gae(rew, v, next_v, term, done, gamma=0.9, lam=1.0)
        np.testing.assert_allclose(ret, reference_rewards_to_go(rew, next_v, term, done, 0.9), rtol=1e-4, atol=1e-4)
    torch.manual_seed(0)
    mu, log_std, logits = torch.randn(64, 4), torch.randn(4), 5 * torch.randn(64, 6)
    act, cat_act = mu + 3 * torch.randn(64, 4), torch.randint(0, 6, (64,))
    normal, cat = torch.distributions.Normal(mu, log_std.exp()), torch.distributions.Categorical(logits=logits)
    torch.testing.assert_close(module.gaussian_logp(act, mu, log_std), normal.log_prob(act).sum(-1))
    torch.testing.assert_close(module.gaussian_entropy(log_std).expand(64), normal.entropy().sum(-1))
    torch.testing.assert_close(module.categorical_logp(logits, cat_act.float()), cat.log_prob(cat_act))
    torch.testing.assert_close(module.categorical_entropy(logits), cat.entropy())


def test_one_policy_step_per_epoch_and_the_value_fit(tmp_path):
    """Spinning Up's VPG: a single Adam step on the whole batch per epoch; the value function gets
    train_v_iters passes of num_minibatches steps."""
    args = vpg.Args(
        env_id="Hopper-v4", total_timesteps=3000, steps_per_epoch=1000, num_envs=4, data_dir=str(tmp_path), cuda=False
    )
    metrics = vpg.train(args)
    ckpt = torch.load(os.path.join(metrics["run_dir"], "checkpoint.pt"), weights_only=True)
    assert {int(s["step"]) for s in ckpt["pi_opt"]["state"].values()} == {3}
    assert {int(s["step"]) for s in ckpt["vf_opt"]["state"].values()} == {3 * args.train_v_iters * args.num_minibatches}


def test_learns_cartpole(tmp_path):
    """CartPole-v1: mean return of the last 20 training episodes >= 195."""
    metrics = vpg.train(vpg.Args(env_id="CartPole-v1", total_timesteps=60_000, data_dir=str(tmp_path), cuda=False))
    assert np.mean(metrics["recent_returns"][-20:]) >= 195, metrics["recent_returns"][-20:]
