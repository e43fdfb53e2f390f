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
"""

import copy
import csv
import difflib
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections import deque
from dataclasses import asdict, dataclass, fields
from typing import Optional

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
    cuda: bool = True
    """use a CUDA GPU when one is present (--no-cuda forces the CPU)"""
    torch_threads: int = 1
    """torch CPU threads (small networks run fastest on one; envpool has its own threads)"""
    data_dir: str = "runs"
    """directory under which each run gets its own directory"""
    save_every: int = 100
    """write the checkpoint and the policy artifact every this many epochs (and at the end)"""
    resume: Optional[str] = None
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
    max_episode_steps: Optional[int] = None
    """time limit of an episode (truncation); None keeps the env's own"""
    norm_obs: bool = True
    """[impl] normalise observations with running mean/std (saved with the model, frozen at test)"""
    norm_rew: bool = True
    """[impl] scale rewards by the running std of the discounted return"""
    norm_adv: bool = True
    """[impl] normalise advantages to mean 0, std 1 over the batch"""
    max_grad_norm: Optional[float] = 0.5
    """[impl] clip each network's gradient norm to this; None disables"""
    anneal_lr: bool = True
    """[impl] anneal both learning rates linearly to 0 over the run"""


class ConfigError(ValueError):
    """Bad user input (unknown env, impossible sizes): printed as one line, exit code 2."""


def check_args(args: Args, world: int = 1) -> None:
    """Raise ConfigError when a size is not positive, a rate is out of range or the batch cannot be split."""
    positive = "total_timesteps num_envs torch_threads save_every steps_per_epoch train_v_iters num_minibatches"
    for name in positive.split():
        if getattr(args, name) <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if min(args.hidden_sizes, default=1) <= 0 or (args.max_episode_steps or 1) <= 0:
        raise ConfigError("--hidden-sizes and --max-episode-steps must be positive")
    if not (0 < args.gamma <= 1 and 0 <= args.lam <= 1 and min(args.pi_lr, args.vf_lr) > 0):
        raise ConfigError("need 0 < gamma <= 1, 0 <= lam <= 1 and positive learning rates")
    if args.steps_per_epoch % (args.num_envs * world) or args.steps_per_epoch < args.num_minibatches * world:
        raise ConfigError(
            f"--steps-per-epoch ({args.steps_per_epoch}) must be a multiple of --num-envs ({args.num_envs}) x "
            f"{world} MPI ranks and at least --num-minibatches ({args.num_minibatches}) x ranks"
        )
    if args.total_timesteps < args.steps_per_epoch:
        raise ConfigError(
            f"--total-timesteps ({args.total_timesteps}) is smaller than one epoch "
            f"(--steps-per-epoch {args.steps_per_epoch})"
        )


# ------------------------------------------------------------------ environments
class GymnasiumPool:
    """envpool's sync interface over `gymnasium.make_vec` with autoreset disabled.

    For ids that envpool does not know (a user's registered env). `reset(env_ids)` resets only those
    envs and returns their rows, as envpool does; `step(act)` returns (obs, rew, term, trunc, info).
    """

    def __init__(self, env_id: str, num_envs: int, seeds: list[int], max_episode_steps: Optional[int]):
        kw = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
        no_autoreset = {"autoreset_mode": gym.vector.AutoresetMode.DISABLED}
        self.envs = gym.make_vec(env_id, num_envs, vectorization_mode="sync", vector_kwargs=no_autoreset, **kw)
        self.seeds, self.num_envs = seeds, num_envs
        self.observation_space = self.envs.single_observation_space
        self.action_space = self.envs.single_action_space

    def reset(self, env_ids: Optional[np.ndarray] = None):
        if self.seeds is not None:  # the first reset seeds every env; later resets continue their RNGs
            obs, info = self.envs.reset(seed=self.seeds)
            self.seeds = None
            return obs, info
        ids = np.arange(self.num_envs) if env_ids is None else np.asarray(env_ids)
        mask = np.zeros(self.num_envs, dtype=bool)
        mask[ids] = True
        obs, info = self.envs.reset(options={"reset_mask": mask})
        return obs[ids], info

    def step(self, act):
        return self.envs.step(act)

    def close(self):
        self.envs.close()


def make_envs(env_id: str, num_envs: int, seeds: list[int], max_episode_steps: Optional[int] = None, threads: int = 0):
    """Build `num_envs` envs of `env_id` in sync mode, envpool first, gymnasium as a fallback.

    seeds: one int32 seed per env; threads: envpool worker threads (0: envpool's choice). Returns an
    object with envpool's gymnasium interface: `reset(env_ids=None) -> (obs[len(ids), ...], info)`,
    `step(act) -> (obs, rew, term, trunc, info)`,
    single-env `observation_space`/`action_space`. Raises ConfigError for an id neither knows,
    naming the closest known ids. envpool docs: https://envpool.readthedocs.io/en/latest/
    """
    warnings.filterwarnings("ignore", message=".*precision lowered by casting.*")  # [impl] envpool's float32 Box
    if env_id in envpool.list_all_envs():
        kw = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
        return envpool.make_gymnasium(
            env_id, num_envs=num_envs, batch_size=num_envs, seed=seeds, num_threads=threads, **kw
        )
    if env_id in gym.registry:
        return GymnasiumPool(env_id, num_envs, seeds, max_episode_steps)
    close = difflib.get_close_matches(env_id, list(envpool.list_all_envs()) + list(gym.registry), n=5, cutoff=0.5)
    raise ConfigError(f"unknown env id {env_id!r}; closest known ids: {', '.join(close) or '(none)'}")


def env_seeds(seed: int, num_envs: int, stream: int = 0, rank: int = 0) -> list[int]:
    """Per-env int32 seeds from `seed`; streams (train 0, eval 1, k-th resume 2 + k) and MPI ranks never share."""
    return (np.random.SeedSequence([seed, stream, rank]).generate_state(num_envs) % 2**31).tolist()


# ------------------------------------------------------------------ statistics
class RunningMeanStd:
    """Running mean and variance of vectors of shape `shape` (float64), merged batch by batch.

    Uses the parallel-variance formula of Chan et al. (1979); `normalize` returns float32
    (x - mean) / sqrt(var + eps), clipped to +-clip. Frozen simply by not calling `update`.
    """

    def __init__(self, shape=(), eps: float = 1e-8, clip: float = 10.0):
        self.mean, self.var, self.count = np.zeros(shape), np.ones(shape), 0.0
        self.eps, self.clip = eps, clip

    def update(self, x: np.ndarray, comm=None) -> None:
        """Merge the batch x [B, *shape] (and, under MPI, every rank's batch, in rank order)."""
        x = np.asarray(x, dtype=np.float64).reshape(-1, *self.mean.shape)
        batches = [(x.mean(0), x.var(0), x.shape[0])]
        for b_mean, b_var, b_count in comm.allgather(batches[0]) if comm is not None else batches:
            delta, total = b_mean - self.mean, self.count + b_count
            m2 = self.var * self.count + b_var * b_count + delta**2 * self.count * b_count / total
            self.mean, self.var, self.count = (
                np.asarray(self.mean + delta * b_count / total),
                np.asarray(m2 / total),
                total,
            )

    def normalize(self, x: np.ndarray) -> np.ndarray:
        return np.clip((x - self.mean) / np.sqrt(self.var + self.eps), -self.clip, self.clip).astype(np.float32)

    def state_dict(self) -> dict:
        return {"mean": torch.tensor(self.mean), "var": torch.tensor(self.var), "count": self.count}

    def load_state_dict(self, d: dict) -> None:
        self.mean, self.var, self.count = d["mean"].numpy().copy(), d["var"].numpy().copy(), float(d["count"])


class RolloutBuffer:
    """One epoch's rollout D_k as float32 arrays of shape [T, N, ...] (time, env).

    obs / next_obs: normalised observations as the policy saw them (next_obs is the true s', the
    final observation when the episode ended at t); raw_obs: unnormalised obs (for the normaliser);
    act [T, N, act_dim] (Box) or [T, N] (Discrete); logp: log pi_k(act|obs); rew: raw rewards;
    term / done: 1.0 where the episode terminated / ended (term | trunc) at t; disc_ret: running
    discounted return (for reward scaling).
    """

    def __init__(self, T: int, N: int, obs_dim: int, act_shape: tuple[int, ...]):
        self.obs, self.next_obs, self.raw_obs = (np.zeros((T, N, obs_dim), dtype=np.float32) for _ in range(3))
        self.act = np.zeros((T, N, *act_shape), dtype=np.float32)
        T_N = np.zeros((T, N), dtype=np.float32)
        self.logp, self.rew, self.term, self.done, self.disc_ret = (T_N.copy() for _ in range(5))

    FIELDS = ("obs", "raw_obs", "next_obs", "act", "logp", "rew", "term", "done", "disc_ret")

    def store(self, t: int, *row: np.ndarray) -> None:
        """Write the N-row arrays of step t, given in the order of FIELDS."""
        for key, value in zip(self.FIELDS, row, strict=True):
            getattr(self, key)[t] = value


# ------------------------------------------------------------------ networks
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
    """pi(a|s): a diagonal Gaussian with state-independent log std (Box) or a Categorical (Discrete).

    `forward(obs[B, obs_dim] float32)` returns the mean [B, act_dim] or the logits [B, n].
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...], discrete: bool):
        super().__init__()
        self.discrete = discrete
        self.net = mlp([obs_dim, *hidden, act_dim], out_gain=0.01)
        self.log_std = nn.Parameter(torch.zeros(act_dim), requires_grad=not discrete)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)

    def logp_entropy(self, obs: torch.Tensor, act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """log pi(act|obs) [B] and the entropy [B] of pi(.|obs)."""
        out = self(obs)
        if self.discrete:
            return categorical_logp(out, act), categorical_entropy(out)
        return gaussian_logp(act, out, self.log_std), gaussian_entropy(self.log_std).expand(len(obs))


class ExportedPolicy(nn.Module):
    """The deployable policy: `forward(obs[B, obs_dim] float32, noise[B, k] float32) -> act[B, ...]`.

    Holds the frozen observation normaliser. Box: act = clip(mu + std * noise, low, high) with
    noise ~ N(0, 1) (zeros: the mean action). Discrete: act = argmax(logits + noise) with standard
    Gumbel noise (zeros: the most likely action). Saved with torch.export, so loading runs no Python.
    """

    def __init__(self, actor: Actor, obs_rms: Optional[RunningMeanStd], low: np.ndarray, high: np.ndarray):
        super().__init__()
        self.actor, self.discrete = actor, actor.discrete
        mean = obs_rms.mean if obs_rms is not None else np.zeros(actor.net[0].in_features)
        std = np.sqrt(obs_rms.var + obs_rms.eps) if obs_rms is not None else np.ones_like(mean)
        self.clip = obs_rms.clip if obs_rms is not None else float("inf")
        self.register_buffer("obs_mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("obs_std", torch.as_tensor(std, dtype=torch.float32))
        self.register_buffer("low", torch.as_tensor(low, dtype=torch.float32))
        self.register_buffer("high", torch.as_tensor(high, dtype=torch.float32))

    def forward(self, obs: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        out = self.actor(torch.clamp((obs - self.obs_mean) / self.obs_std, -self.clip, self.clip))
        if self.discrete:
            return torch.argmax(out + noise, dim=-1)
        return torch.clamp(out + self.actor.log_std.exp() * noise, self.low, self.high)


# ------------------------------------------------------------------ pure math
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


def gae(
    rew: np.ndarray, v: np.ndarray, next_v: np.ndarray, term: np.ndarray, done: np.ndarray, gamma: float, lam: float
) -> tuple[np.ndarray, np.ndarray]:
    """GAE-Lambda advantages and lambda-return targets over a rollout of shape [T, N] (time, env).

    v[t] = V(s_t); next_v[t] = V(s'_t) of the true next state (the final observation when the
    episode ended at t). delta_t = r_t + gamma (1 - term_t) next_v_t - v_t, so a truncated episode
    and the rollout's last step bootstrap from V(s'); A_t = delta_t + gamma lam (1 - done_t) A_{t+1}.
    Returns (adv, ret = adv + v), float32 [T, N]; with lam = 1, ret is the discounted
    rewards-to-go bootstrapped at truncation. Source: Schulman et al. 2016, eq. 16.
    """
    adv = np.zeros_like(rew, dtype=np.float32)
    delta = rew + gamma * (1.0 - term) * next_v - v
    last = np.zeros(rew.shape[1], dtype=np.float32)
    for t in reversed(range(len(rew))):
        last = delta[t] + gamma * lam * (1.0 - done[t]) * last
        adv[t] = last
    return adv, adv + v


def explained_variance(pred: np.ndarray, target: np.ndarray) -> float:
    """1 - Var[target - pred] / Var[target]; nan when the target is constant."""
    var = np.var(target)
    return float("nan") if var == 0 else float(1 - np.var(target - pred) / var)


# ------------------------------------------------------------------ MPI data parallelism
def mpi_comm():
    """MPI.COMM_WORLD when started by mpiexec/srun with more than one process, else None.

    mpi4py is imported only under such a launch (PMI_SIZE or OMPI_COMM_WORLD_SIZE > 1), so a plain
    `python vpg.py` never loads MPI and runs where mpi4py is missing or cannot load.
    """
    if int(os.environ.get("PMI_SIZE") or os.environ.get("OMPI_COMM_WORLD_SIZE") or 1) <= 1:
        return None
    from mpi4py import MPI

    return MPI.COMM_WORLD


def mpi_sum(comm, x) -> np.ndarray:
    """Elementwise sum over ranks of a small float64 array (x itself without MPI)."""
    x = np.asarray(x, dtype=np.float64)
    return x if comm is None else comm.allreduce(x)


def mpi_average_grads(comm, params: list[nn.Parameter]) -> None:
    """Replace every .grad by its mean over ranks, in place, with one Allreduce of the flat gradient.

    Each rank's loss is a mean over its equal-sized share of the minibatch, so the averaged gradient
    equals the gradient of the mean loss over the concatenated minibatch.
    """
    if comm is None:
        return
    params = [p for p in params if p.grad is not None]  # e.g. the unused log_std of a Categorical policy
    flat = torch.cat([p.grad.reshape(-1) for p in params]).cpu().numpy().astype(np.float64)
    total = np.empty_like(flat)
    comm.Allreduce(flat, total)  # buffer-based sum
    flat = torch.from_numpy(total / comm.Get_size()).float()
    for p, g in zip(params, flat.split([p.numel() for p in params]), strict=True):
        p.grad.copy_(g.view_as(p))


# ------------------------------------------------------------------ run directory
class RunLogger:
    """The run directory `<data_dir>/<env_id>__<exp_name>__<seed>__<unix time>/` and what goes in it.

    config.json (args, versions, git commit, how to call the policy), TensorBoard events under
    CleanRL's keys, progress.csv (one row per epoch, the numbers of the epoch line), checkpoint.pt
    (torch.save of tensors and plain types: loads with weights_only=True) and policy.pt2 (torch.export,
    runs no Python when loaded) plus its snapshots policies/policy_<step>.pt2. Files are replaced
    atomically (written to a temporary name, then renamed). `resume_step` reopens an existing run and
    drops progress.csv rows past that step.
    """

    LINE = (
        "step {global_step:>8d} | ret {episodic_return:8.1f} [{episodic_return_min:.0f}, {episodic_return_max:.0f}]"
        " len {episodic_length:6.1f} | pi {policy_loss:+.4f} v {value_loss:.4f} ent {entropy:.3f}"
        " kl {approx_kl:.4f} | sps {SPS}"
    )  # the epoch line
    TB_KEYS = {"SPS": "charts/SPS", "learning_rate": "charts/learning_rate"}  # others: losses/<column>
    NOT_LOGGED = ("global_step", "epoch", "episodes", "time", "episodic_return_min", "episodic_return_max")

    def __init__(self, run_dir: str, config: Optional[dict] = None, resume_step: Optional[int] = None):
        self.dir, self.csv_path = run_dir, os.path.join(run_dir, "progress.csv")
        if config is not None:
            os.makedirs(run_dir)
            with open(os.path.join(run_dir, "config.json"), "w") as f:
                json.dump({**config, "versions": self.versions()}, f, indent=2)
        if resume_step is not None and os.path.exists(self.csv_path):
            with open(self.csv_path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["global_step"]) <= resume_step]
            self.write_csv(rows)
        self.writer, self.csv_rows = SummaryWriter(run_dir), None

    @staticmethod
    def versions() -> dict:
        """Versions of python and the libraries, the command, and this file's git commit (None outside git)."""
        here = os.path.dirname(os.path.abspath(__file__))
        try:
            git = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
            commit = git.stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            commit = None
        libs = {"torch": torch, "envpool": envpool, "gymnasium": gym, "numpy": np}
        return {
            "python": platform.python_version(),
            **{k: m.__version__ for k, m in libs.items()},
            "git_commit": commit,
            "command": " ".join(sys.argv),
        }

    def write_csv(self, rows: list[dict]) -> None:
        with open(self.csv_path + ".tmp", "w", newline="") as f:
            if rows:
                w = csv.DictWriter(f, fieldnames=list(rows[0]))
                w.writeheader()
                w.writerows(rows)
        os.replace(self.csv_path + ".tmp", self.csv_path)

    def episode(self, ret: float, length: int, step: int) -> None:
        self.writer.add_scalar("charts/episodic_return", ret, step)
        self.writer.add_scalar("charts/episodic_length", length, step)

    def epoch(self, row: dict) -> str:
        """Log one epoch: a progress.csv row and its TensorBoard scalars at row["global_step"]; return its line."""
        for key, value in row.items():
            if key not in self.NOT_LOGGED and not key.startswith("episodic"):
                self.writer.add_scalar(self.TB_KEYS.get(key, f"losses/{key}"), value, row["global_step"])
        new = not os.path.exists(self.csv_path) or os.path.getsize(self.csv_path) == 0
        with open(self.csv_path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(row))
            if new:
                w.writeheader()
            w.writerow(row)
        return self.LINE.format(**row)

    def save(self, checkpoint: dict, policy: nn.Module, example: tuple) -> None:
        """Write checkpoint.pt, then torch.export `policy` (dynamic batch dim) to policy.pt2 and a snapshot."""
        path = os.path.join(self.dir, "checkpoint.pt")
        torch.save(checkpoint, path + ".tmp")
        os.replace(path + ".tmp", path)
        batch = torch.export.Dim("batch", min=1)
        program = torch.export.export(policy.eval(), example, dynamic_shapes=[{0: batch}] * len(example))
        path = os.path.join(self.dir, "policy.pt2")
        torch.export.save(program, path + ".tmp.pt2")  # torch.export wants the .pt2 suffix
        os.replace(path + ".tmp.pt2", path)
        os.makedirs(os.path.join(self.dir, "policies"), exist_ok=True)
        shutil.copyfile(path, os.path.join(self.dir, "policies", f"policy_{checkpoint['global_step']}.pt2"))

    def close(self) -> None:
        self.writer.close()


def load_resume(args: Args) -> tuple[Args, dict]:
    """The saved Args of the run in `args.resume` and its checkpoint; raises ConfigError if unreadable.

    The run's own config wins, except cuda, torch_threads, save_every and, when given, total_timesteps.
    """
    try:
        with open(os.path.join(args.resume, "config.json")) as f:
            saved = json.load(f)["args"]
        ckpt = torch.load(os.path.join(args.resume, "checkpoint.pt"), weights_only=True)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise ConfigError(f"cannot resume from {args.resume!r}: {e}") from None
    keep = {k: getattr(args, k) for k in ("cuda", "torch_threads", "save_every", "resume")}
    if args.total_timesteps != Args.total_timesteps:
        keep["total_timesteps"] = args.total_timesteps
    saved = {f.name: saved[f.name] for f in fields(Args) if f.name in saved}
    return Args(**{**saved, "hidden_sizes": tuple(saved["hidden_sizes"]), **keep}), ckpt


# ------------------------------------------------------------------ training
def train(args: Args) -> dict:
    """Train VPG as configured by `args`; return the final metrics.

    Returns a dict: global_step, epochs, episodes, episodic_return (mean of the last 100 training
    episodes), recent_returns (their list), SPS, run_dir, interrupted. Raises ConfigError on bad input.
    """
    args, ckpt = load_resume(args) if args.resume else (args, None)  # [impl] --resume: the run's own config
    comm = mpi_comm()  # [impl] MPI data parallelism: None unless launched by mpiexec/srun with > 1 process
    rank, world = (comm.Get_rank(), comm.Get_size()) if comm is not None else (0, 1)
    check_args(args, world)
    if ckpt is not None and ckpt.get("world", 1) != world:
        raise ConfigError(f"{args.resume} was trained on {ckpt.get('world', 1)} MPI ranks; resume it with as many")
    # [impl] seeding: python, numpy, torch, and explicit per-env seeds for envpool (fresh ones on resume)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed + 10_000 * rank)
    torch.set_num_threads(args.torch_threads)
    device = torch.device("cuda" if args.cuda and torch.cuda.is_available() else "cpu")
    seeds = env_seeds(args.seed, args.num_envs, stream=2 + len(ckpt["resumes"]) if ckpt else 0, rank=rank)
    threads = max(1, (os.cpu_count() or 1) // world) if comm is not None else 0  # [impl] no oversubscription
    envs = make_envs(args.env_id, args.num_envs, seeds, args.max_episode_steps, threads)
    discrete = isinstance(envs.action_space, gym.spaces.Discrete)
    if not discrete and not isinstance(envs.action_space, gym.spaces.Box):
        raise ConfigError(f"{args.env_id}: vpg.py needs a Box or Discrete action space, not {envs.action_space}")
    obs_dim = int(np.prod(envs.observation_space.shape))
    act_dim = int(envs.action_space.n) if discrete else int(np.prod(envs.action_space.shape))
    low, high = (np.zeros(1), np.zeros(1)) if discrete else (envs.action_space.low, envs.action_space.high)
    T, N = args.steps_per_epoch // (args.num_envs * world), args.num_envs  # [impl] derived sizes, per rank
    num_epochs, mb_size = args.total_timesteps // args.steps_per_epoch, T * N // args.num_minibatches

    # [L1] initial policy parameters theta_0 and value function parameters phi_0
    pi = Actor(obs_dim, act_dim, args.hidden_sizes, discrete).to(device)
    vf = mlp([obs_dim, *args.hidden_sizes, 1]).to(device)
    pi_params, vf_params = list(pi.parameters()), list(vf.parameters())
    pi_opt = torch.optim.Adam(pi_params, lr=args.pi_lr, eps=1e-5, fused=True)
    vf_opt = torch.optim.Adam(vf_params, lr=args.vf_lr, eps=1e-5, fused=True)
    obs_rms, ret_rms = RunningMeanStd((obs_dim,)), RunningMeanStd(())
    state = {"pi": pi, "vf": vf, "pi_opt": pi_opt, "vf_opt": vf_opt, "obs_rms": obs_rms, "ret_rms": ret_rms}
    if ckpt is None:
        run_dir = os.path.join(args.data_dir, f"{args.env_id}__{args.exp_name}__{args.seed}__{int(time.time())}")
        while os.path.exists(run_dir):  # [impl] two runs started in the same second get distinct dirs
            run_dir += "_"
        policy_info = {"file": "policy.pt2", "obs_dim": obs_dim, "noise_dim": act_dim, "discrete": discrete}
        policy_info["noise"] = "gumbel" if discrete else "normal"
        config = {"algo": "vpg", "args": asdict(args), "policy": policy_info, "mpi_ranks": world}
        log = RunLogger(run_dir, config) if rank == 0 else None  # [impl] only rank 0 writes files
        start_epoch, resumes = 0, []
    else:
        run_dir = args.resume
        log = RunLogger(run_dir, resume_step=ckpt["global_step"]) if rank == 0 else None
        for key, obj in state.items():
            obj.load_state_dict(ckpt[key])
        random.setstate(ckpt["rng"]["python"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        start_epoch, resumes = ckpt["epoch"], ckpt["resumes"] + [ckpt["global_step"]]
    if comm is not None:  # [impl] MPI: every rank starts from rank 0's parameters and run directory
        run_dir = comm.bcast(run_dir)
        for module in (pi, vf):
            module.load_state_dict(comm.bcast(module.state_dict()))

    def save(epoch: int) -> None:  # [impl] checkpoint (resume) and policy artifact (deployment)
        checkpoint = {k: v.state_dict() for k, v in state.items()}
        rng = {"python": random.getstate(), "torch": torch.get_rng_state()}
        checkpoint.update(algo="vpg", epoch=epoch, global_step=epoch * args.steps_per_epoch, resumes=resumes, rng=rng)
        checkpoint["world"] = world
        if rank != 0:
            return
        policy = ExportedPolicy(copy.deepcopy(pi).cpu(), obs_rms if args.norm_obs else None, low, high)
        log.save(checkpoint, policy, (torch.zeros(2, obs_dim), torch.zeros(2, act_dim)))

    # [impl] Ctrl-C / SIGTERM: finish the rollout, save the last full epoch, exit cleanly
    stop = {"signal": None}

    def on_signal(signum, frame):
        if stop["signal"] is not None:
            raise KeyboardInterrupt  # a second Ctrl-C aborts at once
        stop["signal"] = signum

    old_handlers = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}

    buf = RolloutBuffer(T, N, obs_dim, () if discrete else (act_dim,))
    ep_ret, ep_len, disc_ret = np.zeros(N), np.zeros(N, dtype=np.int64), np.zeros(N)
    recent, episodes = deque(maxlen=100), 0
    norm = obs_rms.normalize if args.norm_obs else (lambda x: x)
    raw_obs = np.asarray(envs.reset()[0], dtype=np.float32).reshape(N, obs_dim)  # [impl] reset before stepping
    epoch = start_epoch
    global_step = start_step = start_epoch * args.steps_per_epoch
    start_time = time.time()
    bar = tqdm(total=num_epochs * args.steps_per_epoch, initial=global_step, unit="step", disable=rank or None)
    try:
        for epoch in range(start_epoch, num_epochs):  # [L2] [L9] for k = 0, 1, 2, ... end for
            if args.anneal_lr:  # [impl] linear learning-rate annealing
                frac = 1.0 - epoch / num_epochs
                pi_opt.param_groups[0]["lr"], vf_opt.param_groups[0]["lr"] = frac * args.pi_lr, frac * args.vf_lr
            # [L3] collect D_k by running pi_k; the observation normaliser stays frozen during the rollout
            ep_done = []  # (return, length, global step) of the episodes that ended in this rollout
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
                # [impl] Box actions are clipped to the env's bounds when sent; logp is of the unclipped sample
                env_act = act if discrete else np.clip(act, low, high).astype(np.float64)
                next_raw, rew, term, trunc, _ = envs.step(env_act)
                next_raw = np.asarray(next_raw, dtype=np.float32).reshape(N, obs_dim)  # [impl] float64 -> float32 once
                done = term | trunc  # [impl] trunc: time limit; only term stops bootstrapping
                disc_ret = disc_ret * args.gamma + rew  # [impl] discounted return, for the reward scale
                logp = logp.cpu().numpy()
                buf.store(t, obs, raw_obs, norm(next_raw), act, logp, rew, term, done, disc_ret)
                ep_ret, ep_len, raw_obs = ep_ret + rew, ep_len + 1, next_raw
                if done.any():
                    # [impl] envpool would reset these envs on the *next* step (ignoring its action);
                    # reset them now so every stored transition is real and next_obs is the final obs
                    ids = np.flatnonzero(done)
                    raw_obs = raw_obs.copy()
                    raw_obs[ids] = np.asarray(envs.reset(ids)[0], dtype=np.float32).reshape(len(ids), obs_dim)
                    for i in ids:  # [impl] episode statistics, counted by the script
                        ep_done.append((float(ep_ret[i]), int(ep_len[i]), global_step + (t + 1) * N * world))
                    ep_ret[ids], ep_len[ids], disc_ret[ids] = 0.0, 0, 0.0
                bar.update(N * world)
            # [impl] MPI: gather every rank's episodes; all ranks stop together when any one got Ctrl-C/SIGTERM
            ep_done = sum(comm.allgather(ep_done), []) if comm is not None else ep_done
            if mpi_sum(comm, stop["signal"] is not None) > 0:
                raise KeyboardInterrupt
            for ret_i, len_i, step_i in ep_done if log is not None else ():
                log.episode(ret_i, len_i, step_i)
            episodes, global_step = episodes + len(ep_done), global_step + args.steps_per_epoch
            recent.extend(r for r, _, _ in ep_done)

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
                adv_mean = total / count
                adv = (adv - adv_mean) / (np.sqrt(max(total_sq / count - adv_mean**2, 0.0)) + 1e-8)
            if args.norm_obs:  # [impl] update the normaliser once per epoch, after the batch is fixed
                obs_rms.update(buf.raw_obs.reshape(-1, obs_dim), comm)
            b_obs, b_act = (torch.from_numpy(x.reshape(T * N, *x.shape[2:])).to(device) for x in (buf.obs, buf.act))
            b_adv = adv.astype(np.float32)
            b_logp_old, b_adv, b_ret = (torch.from_numpy(x.reshape(-1)).to(device) for x in (buf.logp, b_adv, ret))

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

            # [impl] logging: the epoch line, progress.csv and TensorBoard carry the same numbers
            with torch.no_grad():
                loss_v = (vf(b_obs).squeeze(-1) - b_ret).pow(2).mean().item()
            rets, lens = [r for r, _, _ in ep_done] or [float("nan")], [n for _, n, _ in ep_done] or [float("nan")]
            row = {"global_step": global_step, "epoch": epoch + 1, "episodes": episodes}
            row.update(
                episodic_return=np.mean(rets), episodic_return_min=np.min(rets), episodic_return_max=np.max(rets)
            )
            row.update(episodic_length=np.mean(lens))
            row.update(policy_loss=loss_pi.item(), value_loss=loss_v, entropy=ent.mean().item(), approx_kl=approx_kl)
            row.update(explained_variance=explained_variance(v.reshape(-1), ret.reshape(-1)))
            row.update(learning_rate=pi_opt.param_groups[0]["lr"], time=time.time() - start_time)
            row.update(SPS=int((global_step - start_step) / row["time"]))
            if log is not None:
                bar.write(log.epoch(row))
            if (epoch + 1) % args.save_every == 0 or epoch + 1 == num_epochs:
                save(epoch + 1)
        epoch = num_epochs
    except KeyboardInterrupt:
        # [impl] the interrupted epoch's partial rollout is dropped; networks are as after the last full epoch
        save(epoch)
        if rank == 0:
            print(f"interrupted: saved epoch {epoch} of {run_dir}; continue with: python vpg.py --resume {run_dir}")
        stop["signal"] = stop["signal"] or signal.SIGINT
    finally:
        bar.close(), envs.close(), log is not None and log.close()
        for s, h in old_handlers.items():
            signal.signal(s, h)
    end_step = epoch * args.steps_per_epoch
    metrics = {"global_step": end_step, "epochs": epoch, "episodes": episodes, "run_dir": run_dir}
    metrics.update(episodic_return=float(np.mean(recent)) if recent else float("nan"))
    metrics.update(recent_returns=[float(r) for r in recent], interrupted=stop["signal"] is not None)
    return {**metrics, "SPS": int((end_step - start_step) / max(time.time() - start_time, 1e-9))}


if __name__ == "__main__":
    try:
        metrics = train(tyro.cli(Args))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    sys.exit(130 if metrics["interrupted"] else 0)  # [impl] 130: the shell's code for a Ctrl-C'd program
