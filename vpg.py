"""VPG: vanilla policy gradient with a learned value baseline and GAE-Lambda advantages, on envpool.

Pseudocode (after Spinning Up's VPG page, https://spinningup.openai.com/en/latest/algorithms/vpg.html):

    L1  Input: initial policy parameters theta_0, initial value function parameters phi_0.
    L2  for k = 0, 1, 2, ... do
    L3      Collect a set of trajectories D_k by running the policy pi_k = pi(theta_k) in the envs.
    L4      Compute the rewards-to-go R_t (the value targets).
    L5      Compute advantage estimates A_t with GAE-Lambda, using the current value function V_phi_k.
    L6      Estimate the policy gradient g_k = mean_t grad_theta log pi_theta(a_t | s_t) A_t at theta_k.
    L7      Update the policy with one gradient ascent step on g_k (here: one Adam step on the batch).
    L8      Fit the value function by regression on mean-squared error (V_phi(s_t) - R_t)^2,
            with minibatch Adam steps.
    L9  end for

Sources: Williams 1992 (REINFORCE); Sutton et al. 2000, "Policy Gradient Methods for Reinforcement
Learning with Function Approximation", theorem 1; GAE: Schulman et al. 2016 (arXiv 1506.02438), eq. 16.

Usage:
    python vpg.py --env-id Hopper-v4          # 1M steps; TensorBoard logs in runs/
    python vpg.py --env-id CartPole-v1 --total-timesteps 200_000
    python vpg.py --resume runs/<run dir>     # continue an interrupted run

The algorithm ends at the line `# ==== plumbing`; below it is what runs the experiment and is not RL (input
checks, envs, MPI, resume, logs, checkpoints), the same text in vpg.py, ppo.py and trpo.py.
"""

import contextlib
import copy
import difflib
import json
import os
import random
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import asdict, dataclass

import envpool
import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import tyro
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm


@dataclass
class Args:
    # ---- experiment (the same fields, in the same order, in all six scripts) ----
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """name of this experiment; the run directory is <data_dir>/<env_id>__<exp_name>__<seed>__<time>"""
    env_id: str = "Hopper-v4"
    """envpool task id (or a gymnasium id that envpool does not know)"""
    seed: int = 1
    """seed of python, numpy, torch and the per-env seeds of envpool"""
    total_timesteps: int = 1_000_000
    """environment steps to train for, summed over all envs (and all MPI ranks)"""
    num_envs: int = 16
    """parallel environments stepped together by envpool (sync mode), per MPI rank"""
    cuda: bool = False
    """train on a CUDA GPU; off by default, as networks this small train faster on the CPU (launch-bound GPU)"""
    torch_threads: int = 1
    """torch CPU threads (small networks run fastest on one; envpool has its own threads)"""
    data_dir: str = "runs"
    """directory under which each run gets its own directory"""
    save_every: int = 100
    """write the checkpoint and the policy artifact every this many epochs (and at the end)"""
    resume: str | None = None
    """run directory to continue: its saved config is used; pass --total-timesteps to extend it"""
    # ---- algorithm (Spinning Up names) ----
    steps_per_epoch: int = 800
    """env steps per epoch summed over envs and MPI ranks: the batch D_k of [L3] (a multiple of num_envs x ranks)"""
    gamma: float = 0.99
    """discount factor gamma [L4, L5]"""
    lam: float = 0.95
    """GAE lambda [L5]; the value targets R_t are lambda-returns (lam=1: plain rewards-to-go) [L4]"""
    pi_lr: float = 3e-3
    """policy Adam learning rate: one step per epoch [L7]"""
    vf_lr: float = 1e-3
    """value function Adam learning rate [L8]"""
    train_v_iters: int = 10
    """passes (epochs) over the batch for the value function [L8]"""
    num_minibatches: int = 8
    """minibatches per value function pass (1 = full-batch steps as in Spinning Up) [L8]"""
    hidden_sizes: tuple[int, ...] = (64, 64)
    """hidden layer sizes of the policy and value networks (tanh)"""
    max_episode_steps: int | None = None
    """time limit of an episode (truncation); None keeps the env's own"""
    norm_obs: bool = True
    """[impl] normalise observations with running mean/std (saved with the model, frozen at test)"""
    norm_rew: bool = True
    """[impl] scale rewards by the running std of the discounted return"""
    norm_adv: bool = True
    """[impl] normalise advantages to mean 0, std 1 over the batch"""
    max_grad_norm: float | None = 0.5
    """[impl] clip each network's gradient norm to this; None disables"""
    anneal_lr: bool = True
    """[impl] anneal both learning rates linearly to 0 over the run"""


ALGO = "vpg"  # its name in config.json and checkpoint.pt; BOUNDS: valid values, checked before anything runs
BOUNDS = dict.fromkeys(("pi_lr",), "(0, inf)")  # and those of check_args
LINE = (  # the epoch line, from the epoch's progress.csv row
    "step {global_step:>8d} | ret {episodic_return:8.1f} [{episodic_return_min:.0f}, {episodic_return_max:.0f}]"
    " len {episodic_length:6.1f} | pi {policy_loss:+.4f} v {value_loss:.4f} ent {entropy:.3f}"
    " kl {approx_kl:.4f} | sps {SPS}"
)


def mlp(sizes: list[int], out_gain: float = 1.0) -> nn.Sequential:
    """Tanh MLP with layer sizes `sizes` (input first), orthogonal weights (gain sqrt 2, last out_gain)."""
    layers = []
    for i in range(len(sizes) - 1):
        layer = nn.Linear(sizes[i], sizes[i + 1])
        last = i == len(sizes) - 2
        nn.init.orthogonal_(layer.weight, out_gain if last else np.sqrt(2))
        nn.init.zeros_(layer.bias)
        layers += [layer] if last else [layer, nn.Tanh()]
    return nn.Sequential(*layers)


class Actor(nn.Module):
    """pi(a|s), a diagonal Gaussian with state-independent log std (Box) or a Categorical (Discrete):
    forward(obs [B, obs_dim] float32) is the mean [B, act_dim] or the logits [B, n]. The log std starts at
    -0.5 (std 0.61, as in Spinning Up), not 0: the initial std matters most (Andrychowicz et al. 2021)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...], discrete: bool):
        super().__init__()
        self.discrete = discrete
        self.net = mlp([obs_dim, *hidden, act_dim], out_gain=0.01)
        self.log_std = nn.Parameter(torch.full((act_dim,), -0.5), requires_grad=not discrete)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)

    def logp_entropy(self, obs: torch.Tensor, act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """log pi(act|obs) [B] and the entropy [B] of pi(.|obs)."""
        out = self(obs)
        if self.discrete:
            return categorical_logp(out, act), categorical_entropy(out)
        return gaussian_logp(act, out, self.log_std), gaussian_entropy(self.log_std).expand(len(obs))


def gaussian_logp(act: torch.Tensor, mu: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log N(act; mu, diag(exp(log_std)^2)) summed over the last dim: [B, k] -> [B]."""
    z = (act - mu) / log_std.exp()
    return (-0.5 * z.pow(2) - log_std - 0.5 * np.log(2 * np.pi)).sum(-1)


def gaussian_entropy(log_std: torch.Tensor) -> torch.Tensor:
    """Entropy of a diagonal Gaussian, sum_i (log_std_i + 0.5 log(2 pi e)): [k] -> scalar."""
    return (log_std + 0.5 * np.log(2 * np.pi * np.e)).sum(-1)


def categorical_logp(logits: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[act]: logits [B, n], act [B] (integer-valued) -> [B]."""
    return torch.log_softmax(logits, -1).gather(-1, act.long().unsqueeze(-1)).squeeze(-1)


def categorical_entropy(logits: torch.Tensor) -> torch.Tensor:
    """-sum_a p(a) log p(a): [B, n] -> [B]."""
    logp = torch.log_softmax(logits, -1)
    return -(logp.exp() * logp).sum(-1)


def gae(rew, v, next_v, term, done, gamma: float, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """GAE-Lambda advantages and lambda-returns over a rollout [T, N] (Schulman et al. 2016, eq. 16): v = V(s_t),
    next_v = V(s'_t) of the true next state (the final obs where an episode ended). delta_t = r_t + gamma (1 - term_t)
    next_v_t - v_t, so truncation and the rollout's end bootstrap; A_t = delta_t + gamma lam (1 - done_t) A_t+1.
    Returns float32 (adv, ret = adv + v); with lam = 1, ret is the rewards-to-go bootstrapped at truncation."""
    adv = np.zeros_like(rew, dtype=np.float32)
    delta = rew + gamma * (1.0 - term) * next_v - v
    last = np.zeros(rew.shape[1], dtype=np.float32)
    for t in reversed(range(len(rew))):
        last = delta[t] + gamma * lam * (1.0 - done[t]) * last
        adv[t] = last
    return adv, adv + v


class RolloutBuffer:
    """One epoch's rollout D_k, float32 arrays [T, N, ...] (time, env): obs and next_obs as the policy saw them
    (normalised; next_obs the true s', the final obs where the episode ended), raw_obs (for the normaliser), act
    [T, N, act_dim] or [T, N], logp = log pi_k(act|obs), raw rew, term and done (term | trunc) as 1.0, disc_ret."""

    FIELDS = ("obs", "raw_obs", "next_obs", "act", "logp", "rew", "term", "done", "disc_ret")

    def __init__(self, T: int, N: int, obs_dim: int, act_shape: tuple[int, ...]):
        for key in self.FIELDS:
            shape = (T, N, obs_dim) if "obs" in key else (T, N, *act_shape) if key == "act" else (T, N)
            setattr(self, key, np.zeros(shape, dtype=np.float32))

    def store(self, t: int, *row: np.ndarray) -> None:
        """Write the N-row arrays of step t, given in the order of FIELDS."""
        for key, value in zip(self.FIELDS, row, strict=True):
            getattr(self, key)[t] = value


def train(args: Args) -> dict:
    """Train by the pseudocode above; return Run.metrics(). Raises ConfigError on bad input or on divergence."""
    run = Run(args, ALGO, BOUNDS, LINE)  # [impl] --resume, MPI, seeds, envs, the run directory: below the line
    args, comm, device, world, envs = run.args, run.comm, run.device, run.world, run.envs
    obs_dim, act_dim, discrete, low, high = run.obs_dim, run.act_dim, run.discrete, run.low, run.high
    T, N = args.steps_per_epoch // (args.num_envs * world), args.num_envs  # [impl] rollout shape, per MPI rank
    num_epochs, mb_size = args.total_timesteps // args.steps_per_epoch, T * N // args.num_minibatches

    # [L1] initial policy parameters theta_0 and value function parameters phi_0
    pi = Actor(obs_dim, act_dim, args.hidden_sizes, discrete).to(device)
    vf = mlp([obs_dim, *args.hidden_sizes, 1]).to(device)
    pi_opt = torch.optim.Adam(pi.parameters(), lr=args.pi_lr, eps=1e-5, fused=True)
    vf_opt = torch.optim.Adam(vf.parameters(), lr=args.vf_lr, eps=1e-5, fused=True)
    # [impl] the observation normaliser (the identity with --no-norm-obs) and the reward scale
    obs_rms = RunningMeanStd((obs_dim,)) if args.norm_obs else RunningMeanStd((obs_dim,), eps=0.0, clip=np.inf)
    ret_rms = RunningMeanStd(())
    state = {"pi": pi, "vf": vf, "pi_opt": pi_opt, "vf_opt": vf_opt, "obs_rms": obs_rms, "ret_rms": ret_rms}
    run.restore(state, policy=lambda: ExportedPolicy(pi, obs_rms, low, high))

    pi_params, vf_params = list(pi.parameters()), list(vf.parameters())  # [impl] listed once, used every step
    buf = RolloutBuffer(T, N, obs_dim, () if discrete else (act_dim,))
    ep_ret, ep_len, disc_ret = np.zeros(N), np.zeros(N, dtype=np.int64), np.zeros(N)
    norm, raw_obs = obs_rms.normalize, np.asarray(envs.reset()[0], dtype=np.float32).reshape(N, obs_dim)
    with run:  # [impl] Ctrl-C / SIGTERM: finish the rollout, keep the last full epoch, exit with code 130
        for epoch in range(run.epoch, num_epochs):  # [L2] [L9] for k = 0, 1, 2, ... end for
            if args.anneal_lr:  # [impl] linear learning-rate annealing
                frac = 1.0 - epoch / num_epochs
                pi_opt.param_groups[0]["lr"], vf_opt.param_groups[0]["lr"] = frac * args.pi_lr, frac * args.vf_lr
            # [L3] collect D_k by running pi_k; the observation normaliser stays frozen during the rollout
            ended = []  # (return, length, global step) of each episode that ends in this rollout
            for t in range(T):
                obs = norm(raw_obs)
                with torch.inference_mode():
                    out = pi(torch.from_numpy(obs).to(device))
                    if discrete:
                        act = torch.multinomial(torch.softmax(out, -1), 1).squeeze(-1)
                        logp = categorical_logp(out, act)
                    else:
                        act = out + pi.log_std.exp() * torch.randn_like(out)
                        logp = gaussian_logp(act, out, pi.log_std)
                act = act.cpu().numpy()
                # [impl] Box actions are clipped to the env's bounds when sent, but (!) logp stays the log-prob
                # of the unclipped sample: the ratio r_t of [L6] compares densities of that same sample
                env_act = act if discrete else np.clip(act, low, high).astype(np.float64)
                next_raw, rew, term, trunc, _ = envs.step(env_act)
                next_raw = np.asarray(next_raw, dtype=np.float32).reshape(N, obs_dim)
                done = term | trunc  # (!) only term stops bootstrapping in gae(); trunc (a time limit) bootstraps
                disc_ret = disc_ret * args.gamma + rew  # [impl] discounted return, for the reward scale
                buf.store(t, obs, raw_obs, norm(next_raw), act, logp.cpu().numpy(), rew, term, done, disc_ret)
                ep_ret, ep_len, raw_obs = ep_ret + rew, ep_len + 1, next_raw
                if done.any():
                    # [impl] (!) reset the ended envs now: envpool would reset them on the *next* step and ignore
                    # its action. So every stored transition is real, and next_obs above is the true final obs.
                    ids = np.flatnonzero(done)
                    raw_obs = raw_obs.copy()
                    raw_obs[ids] = np.asarray(envs.reset(ids)[0], dtype=np.float32).reshape(len(ids), obs_dim)
                    ended += [(ep_ret[i], ep_len[i], run.global_step + (t + 1) * N * world) for i in ids]
                    ep_ret[ids], ep_len[ids], disc_ret[ids] = 0.0, 0, 0.0
            run.end_rollout(ended)  # [impl] logs the episodes (of every MPI rank); Ctrl-C stops here

            # [L4] [L5] values of s_t and of the true s'_t, then GAE advantages and lambda-return targets
            if args.norm_rew:  # [impl] reward scale: std of the discounted return, updated once per epoch
                ret_rms.update(buf.disc_ret, comm)
            rew = buf.rew / np.sqrt(ret_rms.var + ret_rms.eps) if args.norm_rew else buf.rew
            with torch.inference_mode():
                v_all = vf(torch.from_numpy(np.concatenate([buf.obs, buf.next_obs])).to(device)).squeeze(-1)
            v, next_v = np.split(v_all.cpu().numpy(), 2)
            adv, ret = gae(rew, v, next_v, buf.term, buf.done, args.gamma, args.lam)
            if args.norm_adv:  # [impl] advantage normalisation over the (global) batch, as in Spinning Up
                total, total_sq, count = mpi_sum(comm, [adv.sum(), (adv**2).sum(), adv.size])
                adv = (adv - total / count) / (np.sqrt(max(total_sq / count - (total / count) ** 2, 0.0)) + 1e-8)
            if args.norm_obs:  # [impl] update the normaliser once per epoch, after the batch is fixed
                obs_rms.update(buf.raw_obs.reshape(-1, obs_dim), comm)
            flat = [x.reshape(T * N, *x.shape[2:]) for x in (buf.obs, buf.act, buf.logp, adv.astype(np.float32), ret)]
            b_obs, b_act, b_logp_old, b_adv, b_ret = (torch.from_numpy(x).to(device) for x in flat)

            # [L6] policy gradient estimate g_k: the gradient of mean_t log pi(a_t|s_t) A_t at theta_k
            logp, _ = pi.logp_entropy(b_obs, b_act)
            loss_pi = -(logp * b_adv).mean()
            pi_opt.zero_grad(set_to_none=True)
            loss_pi.backward()
            mpi_average_grads(comm, pi_params)  # [impl] MPI: the gradient of the global batch on all ranks
            if args.max_grad_norm is not None:  # [impl] gradient-norm clipping
                nn.utils.clip_grad_norm_(pi_params, args.max_grad_norm)
            # [L7] one gradient ascent step (Adam) on the whole batch
            pi_opt.step()
            with torch.no_grad():  # [impl] approx KL(pi_k || pi_k+1) on the batch, E[(r - 1) - log r]
                logp, ent = pi.logp_entropy(b_obs, b_act)
                log_ratio = logp - b_logp_old
                approx_kl = float(mpi_sum(comm, ((log_ratio.exp() - 1) - log_ratio).mean().item())) / world

            # [L8] value function: regression on (V(s_t) - R_t)^2 with minibatch Adam
            for _ in range(args.train_v_iters):
                for idx in torch.randperm(T * N, device=device).split(mb_size):
                    loss_v = (vf(b_obs[idx]).squeeze(-1) - b_ret[idx]).pow(2).mean()
                    vf_opt.zero_grad(set_to_none=True)
                    loss_v.backward()
                    mpi_average_grads(comm, vf_params)
                    if args.max_grad_norm is not None:
                        nn.utils.clip_grad_norm_(vf_params, args.max_grad_norm)
                    vf_opt.step()

            with torch.no_grad():  # [impl] the epoch's numbers: the epoch line, progress.csv, TensorBoard
                loss_v = (vf(b_obs).squeeze(-1) - b_ret).pow(2).mean().item()
            stats = {"policy_loss": loss_pi.item(), "value_loss": loss_v, "entropy": ent.mean().item()}
            stats |= {"approx_kl": approx_kl}
            stats |= {"explained_variance": float(1 - np.var(ret - v) / np.var(ret)) if np.var(ret) else float("nan")}
            run.end_epoch({**stats, "learning_rate": pi_opt.param_groups[0]["lr"]})  # [impl] saves on schedule
    return run.metrics()


# ==== plumbing: running the experiment, not RL. The same text in vpg.py, ppo.py and trpo.py.
class ConfigError(ValueError):
    """Bad input (unknown env, impossible sizes, an unwritable run directory) or a diverged run: one line, exit 2."""


def check_args(args: Args, bounds: dict[str, str], world: int) -> None:
    """Raise ConfigError unless sizes are positive, fields lie in their `bounds` and the batch splits over ranks."""
    sizes = ("total_timesteps", "num_envs", "torch_threads", "save_every", "steps_per_epoch", "vf_lr", "train_v_iters")
    common = {**dict.fromkeys((*sizes, "num_minibatches"), "(0, inf)"), "gamma": "(0, 1]", "lam": "[0, 1]"}
    for name, interval in {**common, **bounds}.items():
        value, (low, high) = getattr(args, name), (float(x) for x in interval[1:-1].split(","))
        above = value > low or (interval[0] == "[" and value == low)
        if not (above and (value < high or (interval[-1] == "]" and value == high))):
            want = "positive" if interval == "(0, inf)" else f"in {interval}"
            raise ConfigError(f"--{name.replace('_', '-')} must be {want}, got {value}")
    if min(args.hidden_sizes, default=1) <= 0 or (args.max_episode_steps or 1) <= 0:
        raise ConfigError("--hidden-sizes and --max-episode-steps must be positive")
    if args.steps_per_epoch % (args.num_envs * world) or args.steps_per_epoch < args.num_minibatches * world:
        batch = f"a multiple of --num-envs ({args.num_envs}) x {world} MPI ranks"
        least = f"at least --num-minibatches ({args.num_minibatches}) x ranks"
        raise ConfigError(f"--steps-per-epoch ({args.steps_per_epoch}) must be {batch} and {least}")
    if args.total_timesteps < args.steps_per_epoch:
        epoch = f"(--steps-per-epoch {args.steps_per_epoch})"
        raise ConfigError(f"--total-timesteps ({args.total_timesteps}) is smaller than one epoch {epoch}")


class GymnasiumPool:
    """envpool's sync interface (reset(env_ids) resets and returns only those) on gymnasium's, autoreset off."""

    def __init__(self, env_id: str, num_envs: int, seeds: list[int], **kw):
        no_autoreset = {"autoreset_mode": gym.vector.AutoresetMode.DISABLED}
        self.envs = gym.make_vec(env_id, num_envs, vectorization_mode="sync", vector_kwargs=no_autoreset, **kw)
        self.seeds, self.step, self.close = seeds, self.envs.step, self.envs.close
        self.observation_space, self.action_space = self.envs.single_observation_space, self.envs.single_action_space

    def reset(self, env_ids: np.ndarray | None = None):
        every = np.arange(self.envs.num_envs)
        ids = every if env_ids is None else np.asarray(env_ids)
        obs, info = self.envs.reset(seed=self.seeds, options={"reset_mask": np.isin(every, ids)})
        self.seeds = None  # the first reset seeds every env; later resets continue their RNGs
        return obs[ids], info


def make_envs(env_id: str, num_envs: int, seeds: list[int], max_episode_steps: int | None = None, threads: int = 0):
    """num_envs envs of env_id (one int32 seed each) with envpool's sync interface (envpool.readthedocs.io): envpool
    itself, or gymnasium for an id envpool does not know; ConfigError for an id neither knows, naming close ones."""
    warnings.filterwarnings("ignore", message=".*precision lowered by casting.*")  # envpool's float32 Box
    kw = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
    if env_id in envpool.list_all_envs():
        kw |= {"batch_size": num_envs, "num_threads": threads}
        return envpool.make_gymnasium(env_id, num_envs=num_envs, seed=seeds, **kw)
    if env_id in gym.registry:
        return GymnasiumPool(env_id, num_envs, seeds, **kw)
    close = difflib.get_close_matches(env_id, set(envpool.list_all_envs()) | set(gym.registry), n=5, cutoff=0.5)
    raise ConfigError(f"unknown env id {env_id!r}; closest known ids: {', '.join(close) or '(none)'}")


class RunningMeanStd:
    """Running float64 mean and variance of `shape`-vectors (Chan et al. 1979); normalize() clips to +-clip."""

    def __init__(self, shape=(), eps: float = 1e-8, clip: float = 10.0):
        self.mean, self.var, self.count, self.eps, self.clip = np.zeros(shape), np.ones(shape), 0.0, eps, clip

    def update(self, x: np.ndarray, comm=None) -> None:
        """Merge the batch x [B, *shape] (and, under MPI, every rank's batch, in rank order)."""
        x = np.asarray(x, dtype=np.float64).reshape(-1, *self.mean.shape)
        batch = (x.mean(0), x.var(0), x.shape[0])
        for b_mean, b_var, b_count in comm.allgather(batch) if comm is not None else [batch]:
            delta, total = b_mean - self.mean, self.count + b_count
            m2 = self.var * self.count + b_var * b_count + delta**2 * self.count * b_count / total
            self.mean, self.var = np.asarray(self.mean + delta * b_count / total), np.asarray(m2 / total)
            self.count = total

    def normalize(self, x: np.ndarray) -> np.ndarray:
        return np.clip((x - self.mean) / np.sqrt(self.var + self.eps), -self.clip, self.clip).astype(np.float32)

    def state_dict(self) -> dict:
        return {"mean": torch.tensor(self.mean), "var": torch.tensor(self.var), "count": self.count}

    def load_state_dict(self, d: dict) -> None:
        self.mean, self.var, self.count = d["mean"].numpy().copy(), d["var"].numpy().copy(), float(d["count"])


class ExportedPolicy(nn.Module):
    """policy.pt2: forward(obs [B, obs_dim], noise [B, k]) -> act, the obs normaliser inside. Box: clip(mu + std *
    noise, low, high), noise ~ N(0, 1); Discrete: argmax(logits + noise), noise ~ Gumbel. Zero noise: the mode."""

    def __init__(self, actor: nn.Module, obs_rms: RunningMeanStd, low: np.ndarray, high: np.ndarray):
        super().__init__()
        self.actor, self.discrete, self.clip = actor, actor.discrete, obs_rms.clip
        std = np.sqrt(obs_rms.var + obs_rms.eps)  # (the identity normaliser with --no-norm-obs: eps 0, clip inf)
        for name, value in (("obs_mean", obs_rms.mean), ("obs_std", std), ("low", low), ("high", high)):
            self.register_buffer(name, torch.as_tensor(value, dtype=torch.float32))

    def forward(self, obs: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        out = self.actor(torch.clamp((obs - self.obs_mean) / self.obs_std, -self.clip, self.clip))
        if self.discrete:
            return torch.argmax(out + noise, dim=-1)
        return torch.clamp(out + self.actor.log_std.exp() * noise, self.low, self.high)


def mpi_comm():
    """MPI.COMM_WORLD under mpiexec/srun with more than one process, else None (and mpi4py need not be installed)."""
    if int(os.environ.get("PMI_SIZE") or os.environ.get("OMPI_COMM_WORLD_SIZE") or 1) <= 1:
        return None
    from mpi4py import MPI

    return MPI.COMM_WORLD


def mpi_sum(comm, x) -> np.ndarray:
    """Elementwise sum over ranks of a small float64 array (x itself without MPI)."""
    return np.asarray(x, dtype=np.float64) if comm is None else comm.allreduce(np.asarray(x, dtype=np.float64))


def mpi_average_grads(comm, params: list[nn.Parameter]) -> None:
    """Each .grad := its mean over ranks: the gradient of the mean loss over all ranks' (equal) minibatch shares."""
    params = [p for p in params if p.grad is not None] if comm is not None else []  # None: a Categorical log_std
    if params:
        flat = mpi_sum(comm, torch.cat([p.grad.reshape(-1) for p in params]).cpu().numpy()) / comm.Get_size()
        for p, g in zip(params, torch.from_numpy(flat).float().split([p.numel() for p in params]), strict=True):
            p.grad.copy_(g.view_as(p))


class Run:
    """One run: resume, MPI, seeds, the envs and the directory <data_dir>/<env_id>__<exp_name>__<seed>__<time>/
    that MPI rank 0 writes: config.json, TensorBoard events (CleanRL's keys), progress.csv, checkpoint.pt (loads
    with weights_only=True), policy.pt2 (torch.export) and policies/policy_<step>.pt2. Inside `with run:` a first
    Ctrl-C / SIGTERM stops every rank after the rollout and saves the last full epoch; a second stops at once."""

    def __init__(self, args: Args, algo: str, bounds: dict[str, str], line: str):
        self.comm, self.algo, self.line, self.script = mpi_comm(), algo, line, os.path.basename(__file__)
        self.rank, self.world = (self.comm.Get_rank(), self.comm.Get_size()) if self.comm is not None else (0, 1)
        args, self.ckpt = load_resume(args, self.world) if args.resume else (args, None)
        check_args(args, bounds, self.world)
        random.seed(args.seed)
        np.random.seed(args.seed)
        torch.manual_seed(args.seed + 10_000 * self.rank)
        torch.set_num_threads(args.torch_threads)
        self.args, self.device = args, torch.device("cuda" if args.cuda and torch.cuda.is_available() else "cpu")
        self.epoch = self.ckpt["epoch"] if self.ckpt else 0
        self.num_epochs = args.total_timesteps // args.steps_per_epoch
        self.global_step = self.epoch * args.steps_per_epoch
        self.saved_step, self.ended, self.stop = self.ckpt["global_step"] if self.ckpt else None, [], False
        self.episodes, self.recent = (self.ckpt or {}).get("episodes", 0), (self.ckpt or {}).get("recent", [])
        self.run_dir = args.resume or f"{args.data_dir}/{args.env_id}__{args.exp_name}__{args.seed}__{int(time.time())}"
        while self.ckpt is None and os.path.exists(self.run_dir):  # two runs started in the same second
            self.run_dir += "_"
        stream = 2 + len(self.ckpt["resumes"]) if self.ckpt else 0  # fresh env seeds for each resume and rank
        seeds = np.random.SeedSequence([args.seed, stream, self.rank]).generate_state(args.num_envs) % 2**31
        threads = 0 if self.comm is None else max(1, (os.cpu_count() or 1) // self.world)  # no oversubscription
        self.envs = make_envs(args.env_id, args.num_envs, seeds.tolist(), args.max_episode_steps, threads)
        self.stack, space = contextlib.ExitStack(), self.envs.action_space  # what __exit__ closes, newest first
        self.stack.callback(self.envs.close)
        self.discrete = isinstance(space, gym.spaces.Discrete)
        if not self.discrete and not isinstance(space, gym.spaces.Box):
            self.stack.close()
            raise ConfigError(f"{args.env_id}: {self.script} needs a Box or Discrete action space, not {space}")
        self.obs_dim = int(np.prod(self.envs.observation_space.shape))
        self.act_dim = int(space.n) if self.discrete else int(np.prod(space.shape))
        self.low, self.high = (np.zeros(1), np.zeros(1)) if self.discrete else (space.low, space.high)

    def restore(self, state: dict, policy) -> None:
        """Resume `state` (name -> object with load_state_dict) and the RNG, or make the run directory; then every
        MPI rank takes rank 0's networks. policy() builds the module that save() exports."""
        self.state, self.policy, error, csv_path = state, policy, None, os.path.join(self.run_dir, "progress.csv")
        if self.ckpt is not None:
            for key, obj in state.items():
                obj.load_state_dict(self.ckpt[key])
            random.setstate(self.ckpt["rng"]["python"])
            torch.set_rng_state(self.ckpt["rng"]["torch"])
        if self.rank == 0 and self.ckpt is not None and os.path.exists(csv_path):  # drop rows after the checkpoint
            with open(csv_path) as f:
                rows = f.readlines()
            with open(csv_path, "w") as f:
                f.writelines(rows[:1] + [row for row in rows[1:] if int(row.split(",")[0]) <= self.saved_step])
        elif self.rank == 0 and self.ckpt is None:
            policy = {"file": "policy.pt2", "obs_dim": self.obs_dim, "noise_dim": self.act_dim}
            policy |= {"discrete": self.discrete, "noise": "gumbel" if self.discrete else "normal"}
            config = {"algo": self.algo, "args": asdict(self.args), "policy": policy, "mpi_ranks": self.world}
            try:
                os.makedirs(self.run_dir)
                with open(os.path.join(self.run_dir, "config.json"), "w") as f:
                    json.dump({**config, "versions": versions()}, f, indent=2)
            except OSError as e:
                error = f"cannot create the run directory {self.run_dir!r}: {e.strerror or e}"
        if self.comm is not None:
            self.run_dir, error = self.comm.bcast((self.run_dir, error))
            for module in (obj for obj in state.values() if isinstance(obj, nn.Module)):
                module.load_state_dict(self.comm.bcast(module.state_dict()))
        if error is not None:
            self.stack.close()
            raise ConfigError(error)
        self.writer = self.stack.enter_context(SummaryWriter(self.run_dir)) if self.rank == 0 else None

    def __enter__(self):
        for s in (signal.SIGINT, signal.SIGTERM):  # restored on exit
            self.stack.callback(signal.signal, s, signal.signal(s, self.on_signal))
        total, disable = self.num_epochs * self.args.steps_per_epoch, None if self.rank == 0 else True
        self.bar = self.stack.enter_context(tqdm(total=total, initial=self.global_step, unit="step", disable=disable))
        self.start_time = time.time() - (self.ckpt or {}).get("time", 0.0)  # a resumed run: its clock goes on
        return self

    def on_signal(self, signum, frame) -> None:
        if self.stop:
            raise KeyboardInterrupt  # a second Ctrl-C stops at once
        self.stop = True

    def __exit__(self, kind, value, traceback) -> bool:
        if kind is KeyboardInterrupt:  # the interrupted rollout is dropped: saved as after the last full epoch
            self.save()
            resume = f"python {self.script} --resume {self.run_dir}"
            if self.rank == 0:
                print(f"interrupted: saved epoch {self.epoch} of {self.run_dir}; continue with: {resume}")
            self.stop = True
        self.stack.close()
        return kind is KeyboardInterrupt

    def end_rollout(self, ended: list[tuple]) -> None:
        """Log the ended episodes (return, length, step) of all ranks; all raise KeyboardInterrupt if one got Ctrl-C."""
        self.ended = [e for part in self.comm.allgather(ended) for e in part] if self.comm is not None else ended
        if mpi_sum(self.comm, self.stop) > 0:
            raise KeyboardInterrupt
        for ret, length, step in self.ended:
            if self.writer is not None:
                self.writer.add_scalar("charts/episodic_return", ret, step)
                self.writer.add_scalar("charts/episodic_length", length, step)
        self.recent = (self.recent + [float(ret) for ret, _, _ in self.ended])[-100:]
        self.episodes, self.global_step = self.episodes + len(self.ended), self.global_step + self.args.steps_per_epoch
        self.bar.update(self.args.steps_per_epoch)

    def end_epoch(self, stats: dict) -> None:
        """Log the epoch's stats (TensorBoard: losses/<name>), save on schedule; ConfigError when training diverged."""
        bad = [k for k, v in stats.items() if "loss" in k and not np.isfinite(v)]
        modules = {k: m for k, m in self.state.items() if isinstance(m, nn.Module)}
        bad += [f"{k} parameters" for k, m in modules.items() if not all(p.isfinite().all() for p in m.parameters())]
        if bad:
            rates = [k for k, v in asdict(self.args).items() if k.endswith("lr") and isinstance(v, float)]
            lrs = ", ".join(f"--{k.replace('_', '-')}" for k in rates)
            kept = f"checkpoint.pt of step {self.saved_step} kept" if self.saved_step is not None else "nothing saved"
            raise ConfigError(f"diverged at step {self.global_step}: {', '.join(bad)} not finite; lower {lrs} ({kept})")
        rets, lens = [float(e[0]) for e in self.ended] or [np.nan], [int(e[1]) for e in self.ended] or [np.nan]
        self.epoch, elapsed = self.epoch + 1, time.time() - self.start_time
        row = {"global_step": self.global_step, "epoch": self.epoch, "episodes": self.episodes}
        row |= {"episodic_return": np.mean(rets), "episodic_return_min": min(rets), "episodic_return_max": max(rets)}
        row |= {"episodic_length": np.mean(lens), **stats, "time": elapsed, "SPS": int(self.global_step / elapsed)}
        if self.rank == 0:
            for key, value in {**stats, "SPS": row["SPS"]}.items():
                tag = f"charts/{key}" if key in ("SPS", "learning_rate") else f"losses/{key}"
                self.writer.add_scalar(tag, value, self.global_step)
            with open(os.path.join(self.run_dir, "progress.csv"), "a") as f:  # a new file starts with the header
                f.write(("" if f.tell() else ",".join(row) + "\n") + ",".join(map(str, row.values())) + "\n")
            self.bar.write(self.line.format(**row))
        if self.epoch % self.args.save_every == 0 or self.epoch == self.num_epochs:
            self.save()

    def save(self) -> None:
        """Rank 0: checkpoint.pt (everything to resume), then policy.pt2 and policies/policy_<step>.pt2."""
        self.saved_step, path = self.epoch * self.args.steps_per_epoch, os.path.join(self.run_dir, "")
        if self.rank != 0:
            return
        ckpt = {key: obj.state_dict() for key, obj in self.state.items()}
        resumes = self.ckpt["resumes"] + [self.ckpt["global_step"]] if self.ckpt else []
        ckpt |= {"algo": self.algo, "epoch": self.epoch, "global_step": self.saved_step, "resumes": resumes}
        ckpt |= {"rng": {"python": random.getstate(), "torch": torch.get_rng_state()}, "world": self.world}
        ckpt |= {"time": time.time() - self.start_time, "episodes": self.episodes, "recent": self.recent}  # resume
        torch.save(ckpt, path + "checkpoint.tmp")
        os.replace(path + "checkpoint.tmp", path + "checkpoint.pt")
        batch = torch.export.Dim("batch", min=1)  # any number of observations
        example, dims = (torch.zeros(2, self.obs_dim), torch.zeros(2, self.act_dim)), [{0: batch}] * 2
        program = torch.export.export(copy.deepcopy(self.policy()).cpu().eval(), example, dynamic_shapes=dims)
        os.makedirs(path + "policies", exist_ok=True)
        torch.export.save(program, f"{path}policies/policy_{self.saved_step}.pt2")
        torch.export.save(program, path + "policy.tmp.pt2")  # torch.export wants the .pt2 suffix
        os.replace(path + "policy.tmp.pt2", path + "policy.pt2")

    def metrics(self) -> dict:
        """What train() returns; episodic_return is the mean of recent_returns, the last 100 episodes' returns."""
        end_step = self.epoch * self.args.steps_per_epoch
        sps = int(end_step / max(time.time() - self.start_time, 1e-9))
        metrics = {"global_step": end_step, "epochs": self.epoch, "episodes": self.episodes, "run_dir": self.run_dir}
        metrics["episodic_return"] = float(np.mean(self.recent)) if self.recent else float("nan")
        return {**metrics, "recent_returns": self.recent, "interrupted": self.stop, "SPS": sps}


def load_resume(args: Args, world: int) -> tuple[Args, dict]:
    """The Args saved in `args.resume` (but cuda, torch_threads, save_every and a given total_timesteps) and its
    checkpoint; ConfigError when they are unreadable or the run had another number of MPI ranks."""
    try:
        with open(os.path.join(args.resume, "config.json")) as f:
            saved = {k: v for k, v in json.load(f)["args"].items() if k in Args.__dataclass_fields__}
        ckpt = torch.load(os.path.join(args.resume, "checkpoint.pt"), weights_only=True)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise ConfigError(f"cannot resume from {args.resume!r}: {e}") from None
    if ckpt.get("world", 1) != world:
        raise ConfigError(f"{args.resume} was trained on {ckpt.get('world', 1)} MPI ranks; resume it with as many")
    keep = {k: getattr(args, k) for k in ("cuda", "torch_threads", "save_every", "resume")}
    keep |= {"total_timesteps": args.total_timesteps} if args.total_timesteps != Args.total_timesteps else {}
    return Args(**{**saved, "hidden_sizes": tuple(saved["hidden_sizes"]), **keep}), ckpt


def versions() -> dict:
    """Versions of python and the libraries, this file's git commit (None outside git) and the command."""
    try:
        git = ["git", "-C", os.path.dirname(os.path.abspath(__file__)), "rev-parse", "HEAD"]
        commit = subprocess.run(git, capture_output=True, text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    libs = {"python": sys.version.split()[0], **{m.__name__: m.__version__ for m in (torch, envpool, gym, np)}}
    return {**libs, "git_commit": commit, "command": " ".join(sys.argv)}


if __name__ == "__main__":
    try:
        metrics = train(tyro.cli(Args))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    sys.exit(130 if metrics["interrupted"] else 0)  # 130: the shell's code for a Ctrl-C'd program
