"""PPO-Clip: Proximal Policy Optimization with a clipped surrogate objective, on envpool.

Pseudocode (after Spinning Up's PPO page, https://spinningup.openai.com/en/latest/algorithms/ppo.html):

    L1  Input: initial policy parameters theta_0, initial value function parameters phi_0.
    L2  for k = 0, 1, 2, ... do
    L3      Collect a set of trajectories D_k by running the policy pi_k = pi(theta_k) in the envs.
    L4      Compute the rewards-to-go R_t (the value targets).
    L5      Compute advantage estimates A_t with GAE-Lambda, using the current value function V_phi_k.
    L6      Update the policy by maximising the clipped surrogate objective
                mean_t min(r_t(theta) A_t, clip(r_t(theta), 1 - eps, 1 + eps) A_t),
                r_t(theta) = pi_theta(a_t | s_t) / pi_theta_k(a_t | s_t),
            with a few epochs of minibatch Adam steps; stop early when the approximate
            KL(pi_k || pi_theta) on the batch exceeds 1.5 * target_kl.
    L7      Fit the value function by regression on mean-squared error (V_phi(s_t) - R_t)^2,
            with minibatch Adam steps.
    L8  end for

Sources: Schulman et al. 2017, "Proximal Policy Optimization Algorithms" (arXiv 1707.06347), eq. 7;
GAE: Schulman et al. 2016 (arXiv 1506.02438), eq. 16.

Usage:
    python ppo.py --env-id Hopper-v4          # 1M steps; TensorBoard logs in runs/
    python ppo.py --env-id CartPole-v1 --total-timesteps 200_000
    python ppo.py --resume runs/<run dir>     # continue an interrupted run
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
    """environment steps to train for, summed over all envs"""
    num_envs: int = 8
    """parallel environments stepped together by envpool (sync mode)"""
    cuda: bool = True
    """use a CUDA GPU when one is present (--no-cuda forces the CPU)"""
    torch_threads: int = 1
    """torch CPU threads (small networks run fastest on one; envpool has its own threads)"""
    data_dir: str = "runs"
    """directory under which each run gets its own directory"""
    save_every: int = 25
    """write the checkpoint and the policy artifact every this many epochs (and at the end)"""
    resume: Optional[str] = None
    """run directory to continue: its saved config is used; pass --total-timesteps to extend it"""
    # ---- algorithm (Spinning Up names) ----
    steps_per_epoch: int = 4096
    """env steps per epoch, summed over envs: the batch D_k of [L3] (a multiple of num_envs)"""
    gamma: float = 0.99
    """discount factor gamma [L4, L5]"""
    lam: float = 0.95
    """GAE lambda [L5]; the value targets R_t are lambda-returns (lam=1: plain rewards-to-go) [L4]"""
    clip_ratio: float = 0.2
    """clipping epsilon of the surrogate objective [L6]"""
    pi_lr: float = 3e-4
    """policy Adam learning rate [L6]"""
    vf_lr: float = 1e-3
    """value function Adam learning rate [L7]"""
    train_pi_iters: int = 10
    """passes (epochs) over the batch for the policy [L6]"""
    train_v_iters: int = 10
    """passes (epochs) over the batch for the value function [L7]"""
    num_minibatches: int = 16
    """minibatches per pass (1 = full-batch steps as in Spinning Up) [L6, L7]"""
    target_kl: Optional[float] = 0.02
    """stop the policy passes when approx KL > 1.5 * target_kl [L6]; None disables the early stop"""
    hidden_sizes: tuple[int, ...] = (64, 64)
    """hidden layer sizes of the policy and value networks (tanh)"""
    max_episode_steps: Optional[int] = None
    """time limit of an episode (truncation); None keeps the env's own"""
    norm_obs: bool = True
    """[impl] normalise observations with running mean/std (saved with the model, frozen at test)"""
    norm_rew: bool = True
    """[impl] scale rewards by the running std of the discounted return"""
    norm_adv: bool = True
    """[impl] normalise advantages to mean 0, std 1 per minibatch"""
    max_grad_norm: Optional[float] = 0.5
    """[impl] clip each network's gradient norm to this; None disables"""
    anneal_lr: bool = True
    """[impl] anneal both learning rates linearly to 0 over the run"""


class ConfigError(ValueError):
    """Bad user input (unknown env, impossible sizes): printed as one line, exit code 2."""


def check_args(args: Args) -> None:
    """Raise ConfigError when a size is not positive or the batch cannot be split as asked."""
    for name in (
        "total_timesteps",
        "num_envs",
        "steps_per_epoch",
        "train_pi_iters",
        "train_v_iters",
        "num_minibatches",
        "save_every",
        "torch_threads",
    ):
        if getattr(args, name) <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if any(h <= 0 for h in args.hidden_sizes):
        raise ConfigError(f"--hidden-sizes must be positive, got {args.hidden_sizes}")
    if args.steps_per_epoch % args.num_envs:
        raise ConfigError(
            f"--steps-per-epoch ({args.steps_per_epoch}) must be a multiple of --num-envs ({args.num_envs})"
        )
    if args.total_timesteps < args.steps_per_epoch:
        raise ConfigError(
            f"--total-timesteps ({args.total_timesteps}) is smaller than one epoch "
            f"(--steps-per-epoch {args.steps_per_epoch})"
        )
    if args.steps_per_epoch < args.num_minibatches:
        raise ConfigError(f"--num-minibatches ({args.num_minibatches}) exceeds --steps-per-epoch")


# ------------------------------------------------------------------ environments
class GymnasiumPool:
    """envpool's sync interface over `gymnasium.make_vec` with autoreset disabled.

    For ids that envpool does not know (a user's registered env). `reset(env_ids)` resets only those
    envs and returns their rows, as envpool does; `step(act)` returns (obs, rew, term, trunc, info).
    """

    def __init__(self, env_id: str, num_envs: int, seeds: list[int], max_episode_steps: Optional[int]):
        kw = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
        self.envs = gym.make_vec(
            env_id,
            num_envs=num_envs,
            vectorization_mode="sync",
            vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.DISABLED},
            **kw,
        )
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


def make_envs(env_id: str, num_envs: int, seeds: list[int], max_episode_steps: Optional[int] = None):
    """Build `num_envs` envs of `env_id` in sync mode, envpool first, gymnasium as a fallback.

    seeds: one int32 seed per env. Returns an object with envpool's gymnasium interface:
    `reset(env_ids=None) -> (obs[len(ids), ...], info)`, `step(act) -> (obs, rew, term, trunc, info)`,
    single-env `observation_space`/`action_space`. Raises ConfigError for an id neither knows,
    naming the closest known ids. envpool docs: https://envpool.readthedocs.io/en/latest/
    """
    warnings.filterwarnings("ignore", message=".*precision lowered by casting.*")  # [impl] envpool's float32 Box
    if env_id in envpool.list_all_envs():
        kw = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
        return envpool.make_gymnasium(env_id, num_envs=num_envs, batch_size=num_envs, seed=seeds, **kw)
    if env_id in gym.registry:
        return GymnasiumPool(env_id, num_envs, seeds, max_episode_steps)
    close = difflib.get_close_matches(env_id, list(envpool.list_all_envs()) + list(gym.registry), n=5, cutoff=0.5)
    raise ConfigError(f"unknown env id {env_id!r}; closest known ids: {', '.join(close) or '(none)'}")


def env_seeds(seed: int, num_envs: int, stream: int = 0) -> list[int]:
    """Per-env int32 seeds from `seed`; streams never share seeds (train 0, eval 1, k-th resume 2 + k)."""
    return (np.random.SeedSequence([seed, stream]).generate_state(num_envs) % 2**31).tolist()


# ------------------------------------------------------------------ statistics
class RunningMeanStd:
    """Running mean and variance of vectors of shape `shape` (float64), merged batch by batch.

    Uses the parallel-variance formula of Chan et al. (1979); `normalize` returns float32
    (x - mean) / sqrt(var + eps), clipped to +-clip. Frozen simply by not calling `update`.
    """

    def __init__(self, shape=(), eps: float = 1e-8, clip: float = 10.0):
        self.mean, self.var, self.count = np.zeros(shape), np.ones(shape), 0.0
        self.eps, self.clip = eps, clip

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64).reshape(-1, *self.mean.shape)
        b_mean, b_var, b_count = x.mean(0), x.var(0), x.shape[0]
        delta, total = b_mean - self.mean, self.count + b_count
        m2 = self.var * self.count + b_var * b_count + delta**2 * self.count * b_count / total
        self.mean, self.var, self.count = np.asarray(self.mean + delta * b_count / total), np.asarray(m2 / total), total

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
        self.logp, self.rew, self.term, self.done, self.disc_ret = (
            np.zeros((T, N), dtype=np.float32) for _ in range(5)
        )

    def store(self, t: int, **row: np.ndarray) -> None:
        """Write the N-row arrays of step t (keys: the attribute names above)."""
        for key, value in row.items():
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


# ------------------------------------------------------------------ run directory
def run_info() -> dict:
    """Versions of python and the libraries, and the git commit of this file when there is one."""
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                cwd=os.path.dirname(os.path.abspath(__file__)),
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "envpool": envpool.__version__,
        "gymnasium": gym.__version__,
        "numpy": np.__version__,
        "git_commit": commit,
        "command": " ".join(sys.argv),
    }


def truncate_progress(path: str, global_step: int) -> None:
    """Drop rows of progress.csv past `global_step` (written after the checkpoint a resume starts from)."""
    if not os.path.exists(path):
        return
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    with open(path + ".tmp", "w", newline="") as f:
        if rows:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(r for r in rows if int(r["global_step"]) <= global_step)
    os.replace(path + ".tmp", path)


def save_atomic(obj, path: str) -> None:
    """torch.save to a temporary file, then rename over `path` (a crash never leaves half a file)."""
    torch.save(obj, path + ".tmp")
    os.replace(path + ".tmp", path)


def export_policy(policy: ExportedPolicy, obs_dim: int, noise_dim: int, path: str) -> None:
    """torch.export the policy with a dynamic batch dimension and save it atomically to `path`."""
    batch = torch.export.Dim("batch", min=1)
    example = (torch.zeros(2, obs_dim), torch.zeros(2, noise_dim))
    program = torch.export.export(policy.eval(), example, dynamic_shapes=({0: batch}, {0: batch}))
    torch.export.save(program, path[: -len(".pt2")] + ".tmp.pt2")
    os.replace(path[: -len(".pt2")] + ".tmp.pt2", path)


# ------------------------------------------------------------------ training
def train(args: Args) -> dict:
    """Train PPO-Clip as configured by `args`; return the final metrics.

    Returns a dict: global_step, epochs, episodes, episodic_return (mean of the last 100 training
    episodes), recent_returns (their list), SPS, run_dir, interrupted. Raises ConfigError on bad input.
    """
    # [impl] resuming continues the saved run: its config, run directory and checkpoint
    ckpt = None
    if args.resume is not None:
        run_dir = args.resume.rstrip("/")
        try:
            saved = json.load(open(os.path.join(run_dir, "config.json")))["args"]
            ckpt = torch.load(os.path.join(run_dir, "checkpoint.pt"), weights_only=True)
        except (OSError, ValueError, RuntimeError) as e:
            raise ConfigError(f"cannot resume from {run_dir!r}: {e}") from None
        keep = {k: getattr(args, k) for k in ("cuda", "torch_threads", "save_every")}
        if args.total_timesteps != Args.total_timesteps:
            keep["total_timesteps"] = args.total_timesteps
        saved = {f.name: saved[f.name] for f in fields(Args) if f.name in saved}
        saved["hidden_sizes"] = tuple(saved["hidden_sizes"])
        args = Args(**{**saved, **keep, "resume": run_dir})
        truncate_progress(os.path.join(run_dir, "progress.csv"), ckpt["global_step"])
    check_args(args)

    # [impl] seeding: python, numpy, torch, and explicit per-env seeds for envpool
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.torch_threads)
    device = torch.device("cuda" if args.cuda and torch.cuda.is_available() else "cpu")
    envs = make_envs(
        args.env_id,
        args.num_envs,
        env_seeds(args.seed, args.num_envs, stream=2 + len(ckpt["resumes"]) if ckpt else 0),
        args.max_episode_steps,
    )
    obs_space, act_space = envs.observation_space, envs.action_space
    discrete = isinstance(act_space, gym.spaces.Discrete)
    if not discrete and not isinstance(act_space, gym.spaces.Box):
        raise ConfigError(
            f"{args.env_id} has a {type(act_space).__name__} action space; ppo.py handles Box and Discrete"
        )
    obs_dim = int(np.prod(obs_space.shape))
    act_dim = int(act_space.n) if discrete else int(np.prod(act_space.shape))
    low = np.zeros(1) if discrete else act_space.low.astype(np.float64)
    high = np.zeros(1) if discrete else act_space.high.astype(np.float64)
    T, N = args.steps_per_epoch // args.num_envs, args.num_envs  # [impl] derived sizes
    num_epochs = args.total_timesteps // args.steps_per_epoch
    mb_size = args.steps_per_epoch // args.num_minibatches

    # [L1] initial policy parameters theta_0 and value function parameters phi_0
    pi = Actor(obs_dim, act_dim, args.hidden_sizes, discrete).to(device)
    vf = mlp([obs_dim, *args.hidden_sizes, 1]).to(device)
    pi_opt = torch.optim.Adam(pi.parameters(), lr=args.pi_lr, eps=1e-5, fused=True)
    vf_opt = torch.optim.Adam(vf.parameters(), lr=args.vf_lr, eps=1e-5, fused=True)
    obs_rms, ret_rms = RunningMeanStd((obs_dim,)), RunningMeanStd(())
    start_epoch, resumes = 0, []
    if ckpt is not None:
        pi.load_state_dict(ckpt["pi"]), vf.load_state_dict(ckpt["vf"])
        pi_opt.load_state_dict(ckpt["pi_opt"]), vf_opt.load_state_dict(ckpt["vf_opt"])
        obs_rms.load_state_dict(ckpt["obs_rms"]), ret_rms.load_state_dict(ckpt["ret_rms"])
        random.setstate(ckpt["rng"]["python"]), torch.set_rng_state(ckpt["rng"]["torch"])
        start_epoch, resumes = ckpt["epoch"], ckpt["resumes"] + [ckpt["global_step"]]
    else:
        run_dir = os.path.join(args.data_dir, f"{args.env_id}__{args.exp_name}__{args.seed}__{int(time.time())}")
        while os.path.exists(run_dir):  # [impl] two runs started in the same second get distinct dirs
            run_dir += "_"
        os.makedirs(run_dir)
        with open(os.path.join(run_dir, "config.json"), "w") as f:
            json.dump(
                {
                    "algo": "ppo",
                    "args": asdict(args),
                    "versions": run_info(),
                    "policy": {
                        "file": "policy.pt2",
                        "obs_dim": obs_dim,
                        "noise_dim": act_dim,
                        "noise": "gumbel" if discrete else "normal",
                        "discrete": discrete,
                    },
                },
                f,
                indent=2,
            )

    # [impl] logs: TensorBoard (CleanRL's keys), progress.csv (one row per epoch)
    writer = SummaryWriter(run_dir)
    csv_path = os.path.join(run_dir, "progress.csv")
    csv_file = open(csv_path, "a", newline="")
    csv_writer = None

    def save(epoch: int) -> None:
        """Write checkpoint.pt and policy.pt2 (plus policies/policy_<step>.pt2) of `epoch` atomically."""
        step = epoch * args.steps_per_epoch
        save_atomic(
            {
                "algo": "ppo",
                "epoch": epoch,
                "global_step": step,
                "resumes": resumes,
                "pi": pi.state_dict(),
                "vf": vf.state_dict(),
                "pi_opt": pi_opt.state_dict(),
                "vf_opt": vf_opt.state_dict(),
                "obs_rms": obs_rms.state_dict(),
                "ret_rms": ret_rms.state_dict(),
                "rng": {"python": random.getstate(), "torch": torch.get_rng_state()},
            },
            os.path.join(run_dir, "checkpoint.pt"),
        )
        policy = ExportedPolicy(copy.deepcopy(pi).cpu(), obs_rms if args.norm_obs else None, low, high)
        export_policy(policy, obs_dim, act_dim, os.path.join(run_dir, "policy.pt2"))
        os.makedirs(os.path.join(run_dir, "policies"), exist_ok=True)
        shutil.copyfile(os.path.join(run_dir, "policy.pt2"), os.path.join(run_dir, "policies", f"policy_{step}.pt2"))

    # [impl] Ctrl-C / SIGTERM: finish the current env step, save the last finished epoch, exit cleanly
    stop = {"signal": None}

    def on_signal(signum, frame):
        if stop["signal"] is not None:
            raise KeyboardInterrupt  # a second Ctrl-C aborts at once
        stop["signal"] = signum

    old_handlers = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}

    buf = RolloutBuffer(T, N, obs_dim, () if discrete else (act_dim,))
    ep_ret, ep_len, disc_ret = np.zeros(N), np.zeros(N, dtype=np.int64), np.zeros(N)
    recent = deque(maxlen=100)
    episodes, global_step = 0, start_epoch * args.steps_per_epoch
    norm = obs_rms.normalize if args.norm_obs else (lambda x: x)
    raw_obs = np.asarray(envs.reset()[0], dtype=np.float32).reshape(N, obs_dim)  # [impl] reset before stepping
    start_time, start_step, epoch = time.time(), global_step, start_epoch
    bar = tqdm(
        total=num_epochs * args.steps_per_epoch, initial=global_step, unit="step", disable=None, dynamic_ncols=True
    )
    try:
        for epoch in range(start_epoch, num_epochs):  # [L2] for k = 0, 1, 2, ...
            if args.anneal_lr:  # [impl] linear learning-rate annealing
                frac = 1.0 - epoch / num_epochs
                pi_opt.param_groups[0]["lr"], vf_opt.param_groups[0]["lr"] = frac * args.pi_lr, frac * args.vf_lr
            # [L3] collect D_k by running pi_k; the observation normaliser stays frozen during the rollout
            ep_done_ret, ep_done_len = [], []
            for t in range(T):
                obs = norm(raw_obs)
                with torch.no_grad():
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
                buf.store(
                    t,
                    obs=obs,
                    raw_obs=raw_obs,
                    next_obs=norm(next_raw),
                    act=act,
                    logp=logp.cpu().numpy(),
                    rew=rew,
                    term=term,
                    done=done,
                    disc_ret=disc_ret,
                )
                ep_ret, ep_len = ep_ret + rew, ep_len + 1
                raw_obs = next_raw
                if done.any():
                    # [impl] envpool would reset these envs on the *next* step (ignoring its action);
                    # reset them now so every stored transition is real and next_obs is the final obs
                    ids = np.flatnonzero(done)
                    reset_obs = np.asarray(envs.reset(ids)[0], dtype=np.float32).reshape(len(ids), obs_dim)
                    raw_obs = raw_obs.copy()
                    raw_obs[ids] = reset_obs
                    for i in ids:  # [impl] episode statistics, counted by the script
                        ep_done_ret.append(ep_ret[i]), ep_done_len.append(ep_len[i]), recent.append(ep_ret[i])
                        writer.add_scalar("charts/episodic_return", ep_ret[i], global_step + (t + 1) * N)
                        writer.add_scalar("charts/episodic_length", ep_len[i], global_step + (t + 1) * N)
                    episodes += len(ids)
                    ep_ret[ids], ep_len[ids] = 0.0, 0
                disc_ret[done] = 0.0
                bar.update(N)
                if stop["signal"] is not None:
                    raise KeyboardInterrupt
            global_step += args.steps_per_epoch

            # [L4, L5] values of s_t and of the true s'_t, then GAE advantages and lambda-return targets
            if args.norm_rew:  # [impl] reward scale: std of the discounted return, updated once per epoch
                ret_rms.update(buf.disc_ret)
            rew = buf.rew / np.sqrt(ret_rms.var + ret_rms.eps) if args.norm_rew else buf.rew
            with torch.no_grad():
                both = torch.from_numpy(np.concatenate([buf.obs, buf.next_obs])).to(device)
                v_all = vf(both).squeeze(-1).cpu().numpy()
            v, next_v = v_all[:T], v_all[T:]
            adv, ret = gae(rew, v, next_v, buf.term, buf.done, args.gamma, args.lam)
            if args.norm_obs:  # [impl] update the normaliser once per epoch, after the batch is fixed
                obs_rms.update(buf.raw_obs.reshape(-1, obs_dim))
            b_obs = torch.from_numpy(buf.obs.reshape(-1, obs_dim)).to(device)
            b_act = torch.from_numpy(
                buf.act.reshape(T * N, -1).squeeze(-1) if discrete else buf.act.reshape(-1, act_dim)
            ).to(device)
            b_logp_old, b_adv, b_ret = (torch.from_numpy(x.reshape(-1)).to(device) for x in (buf.logp, adv, ret))

            # [L6] policy: clipped surrogate, minibatch Adam, early stop on approx KL
            stop_iter, clipfracs = args.train_pi_iters, []
            for i in range(args.train_pi_iters):
                for idx in torch.randperm(args.steps_per_epoch, device=device).split(mb_size):
                    logp, ent = pi.logp_entropy(b_obs[idx], b_act[idx])
                    ratio = torch.exp(logp - b_logp_old[idx])
                    a = b_adv[idx]
                    if args.norm_adv:  # [impl] advantage normalisation per minibatch
                        a = (a - a.mean()) / (a.std() + 1e-8)
                    loss_pi = -torch.min(
                        ratio * a, torch.clamp(ratio, 1 - args.clip_ratio, 1 + args.clip_ratio) * a
                    ).mean()
                    pi_opt.zero_grad(set_to_none=True)
                    loss_pi.backward()
                    if args.max_grad_norm is not None:  # [impl] gradient-norm clipping
                        nn.utils.clip_grad_norm_(pi.parameters(), args.max_grad_norm)
                    pi_opt.step()
                    clipfracs.append(((ratio - 1).abs() > args.clip_ratio).float().mean())
                with torch.no_grad():  # approx KL(pi_k || pi_theta) on the whole batch, (r - 1) - log r
                    logp, ent = pi.logp_entropy(b_obs, b_act)
                    log_ratio = logp - b_logp_old
                    approx_kl = ((log_ratio.exp() - 1) - log_ratio).mean().item()
                if args.target_kl is not None and approx_kl > 1.5 * args.target_kl:
                    stop_iter = i + 1
                    break

            # [L7] value function: regression on (V(s_t) - R_t)^2 with minibatch Adam
            for _ in range(args.train_v_iters):
                for idx in torch.randperm(args.steps_per_epoch, device=device).split(mb_size):
                    loss_v = (vf(b_obs[idx]).squeeze(-1) - b_ret[idx]).pow(2).mean()
                    vf_opt.zero_grad(set_to_none=True)
                    loss_v.backward()
                    if args.max_grad_norm is not None:
                        nn.utils.clip_grad_norm_(vf.parameters(), args.max_grad_norm)
                    vf_opt.step()

            # [impl] logging: the epoch line, progress.csv and TensorBoard carry the same numbers
            with torch.no_grad():
                loss_v = (vf(b_obs).squeeze(-1) - b_ret).pow(2).mean().item()
                loss_pi = loss_pi.item()
            sps = int((global_step - start_step) / (time.time() - start_time))
            row = {
                "global_step": global_step,
                "epoch": epoch + 1,
                "episodes": episodes,
                "episodic_return": np.mean(ep_done_ret) if ep_done_ret else float("nan"),
                "episodic_return_min": np.min(ep_done_ret) if ep_done_ret else float("nan"),
                "episodic_return_max": np.max(ep_done_ret) if ep_done_ret else float("nan"),
                "episodic_length": np.mean(ep_done_len) if ep_done_len else float("nan"),
                "policy_loss": loss_pi,
                "value_loss": loss_v,
                "entropy": ent.mean().item(),
                "approx_kl": approx_kl,
                "clipfrac": torch.stack(clipfracs).mean().item(),
                "stop_iter": stop_iter,
                "explained_variance": explained_variance(v.reshape(-1), ret.reshape(-1)),
                "learning_rate": pi_opt.param_groups[0]["lr"],
                "SPS": sps,
                "time": time.time() - start_time,
            }
            for k in (
                "policy_loss",
                "value_loss",
                "entropy",
                "approx_kl",
                "clipfrac",
                "explained_variance",
                "stop_iter",
            ):
                writer.add_scalar(f"losses/{k}", row[k], global_step)
            writer.add_scalar("charts/learning_rate", row["learning_rate"], global_step)
            writer.add_scalar("charts/SPS", sps, global_step)
            if csv_writer is None:
                csv_writer = csv.DictWriter(csv_file, fieldnames=list(row))
                if csv_file.tell() == 0:
                    csv_writer.writeheader()
            csv_writer.writerow(row)
            csv_file.flush()
            bar.write(
                f"step {global_step:>8d} | ret {row['episodic_return']:8.1f} [{row['episodic_return_min']:.0f}, "
                f"{row['episodic_return_max']:.0f}] len {row['episodic_length']:6.1f} | pi {loss_pi:+.4f} "
                f"v {loss_v:.4f} ent {row['entropy']:.3f} kl {approx_kl:.4f} stop {stop_iter} | sps {sps}"
            )
            if (epoch + 1) % args.save_every == 0 or epoch + 1 == num_epochs:
                save(epoch + 1)
        epoch = num_epochs
    except KeyboardInterrupt:
        # [impl] the interrupted epoch's partial rollout is dropped; networks are as after the last full epoch
        bar.write(f"interrupted; saving epoch {epoch} to {run_dir}; continue with: python ppo.py --resume {run_dir}")
        save(epoch)
        stop["signal"] = stop["signal"] or signal.SIGINT
    finally:
        bar.close()
        writer.close()
        csv_file.close()
        envs.close()
        for s, h in old_handlers.items():
            signal.signal(s, h)
    return {
        "global_step": epoch * args.steps_per_epoch,
        "epochs": epoch,
        "episodes": episodes,
        "episodic_return": float(np.mean(recent)) if recent else float("nan"),
        "recent_returns": list(map(float, recent)),
        "SPS": int((epoch * args.steps_per_epoch - start_step) / max(time.time() - start_time, 1e-9)),
        "run_dir": run_dir,
        "interrupted": stop["signal"] is not None,
    }


if __name__ == "__main__":
    try:
        metrics = train(tyro.cli(Args))
    except ConfigError as e:
        sys.exit(f"error: {e}")
    sys.exit(130 if metrics["interrupted"] else 0)  # [impl] 130: the shell's code for a Ctrl-C'd program
