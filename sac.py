"""SAC: Soft Actor-Critic with twin Q-functions and a tanh-squashed Gaussian policy, on envpool.

Pseudocode (after Spinning Up's SAC page, https://spinningup.openai.com/en/latest/algorithms/sac.html):

    L1  Input: initial policy parameters theta, Q-function parameters phi_1, phi_2, an empty replay buffer D.
    L2  Set the target parameters equal to the main ones: phi_targ,i <- phi_i for i = 1, 2.
    L3  repeat
    L4      Observe the state s and pick an action a ~ pi_theta(.|s) (uniformly at random for the
            first start_steps steps).
    L5      Execute a in the environment.
    L6      Observe the next state s', the reward r and the done signal d (1 only if s' is terminal).
    L7      Store (s, a, r, s', d) in D.
    L8      If the episode ended, reset the environment.
    L9      if it is time to update then
    L10         for j in range(however many updates) do
    L11             Sample a batch B = {(s, a, r, s', d)} from D uniformly at random.
    L12             Compute the targets y = r + gamma (1 - d) (min_i Q_phi_targ,i(s', a') - alpha log pi_theta(a'|s')),
                    with a fresh a' ~ pi_theta(.|s').
    L13             Update each Q-function by one gradient descent step on mean_B (Q_phi_i(s, a) - y)^2.
    L14             Update the policy by one gradient ascent step on
                        mean_B (min_i Q_phi_i(s, a~_theta(s)) - alpha log pi_theta(a~_theta(s)|s)),
                    where a~_theta(s) is sampled with the reparameterisation trick (differentiable in theta).
    L15             If alpha is tuned: one gradient descent step on mean_B -alpha (log pi(a~|s) + target entropy).
    L16             Update the targets by polyak averaging: phi_targ,i <- rho phi_targ,i + (1 - rho) phi_i.
    L17         end for
    L18     end if
    L19 until the step budget is spent

Sources: Haarnoja et al. 2018, "Soft Actor-Critic: Off-Policy Maximum Entropy Deep RL with a Stochastic
Actor" (arXiv 1801.01290); the twin-Q, alpha-tuning version: Haarnoja et al. 2018, "Soft Actor-Critic
Algorithms and Applications" (arXiv 1812.05905), eqs. 5-7 (Q, policy), 18 (alpha), 21 (tanh log-prob).

Usage:
    python sac.py --env-id Hopper-v4          # 1M steps; TensorBoard logs in runs/
    python sac.py --env-id Pendulum-v1 --total-timesteps 20_000 --autotune
    python sac.py --resume runs/<run dir>     # continue an interrupted run
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
import torch.nn.functional as F
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
    num_envs: int = 1
    """parallel environments stepped together by envpool (sync mode)"""
    cuda: bool = True
    """use a CUDA GPU when one is present (--no-cuda forces the CPU)"""
    torch_threads: int = 2
    """torch CPU threads (the 256-wide updates run 1.2-1.4x faster on two cores than on one; ppo.py uses one)"""
    data_dir: str = "runs"
    """directory under which each run gets its own directory"""
    save_every: int = 20
    """write the checkpoint and the policy artifact every this many epochs (and at the end)"""
    resume: Optional[str] = None
    """run directory to continue: its saved config is used; pass --total-timesteps to extend it"""
    # ---- algorithm (Spinning Up names) ----
    steps_per_epoch: int = 5_000
    """env steps per epoch, summed over envs; each epoch ends with the deterministic test (a multiple of num_envs)"""
    replay_size: int = 1_000_000
    """capacity of the replay buffer D in transitions [L7, L11]"""
    gamma: float = 0.99
    """discount factor gamma [L12]"""
    polyak: float = 0.995
    """rho of the target update phi_targ <- rho phi_targ + (1 - rho) phi [L16] (tau = 1 - rho)"""
    lr: float = 1e-3
    """Adam learning rate of the Q-functions and the policy [L13, L14] (Spinning Up's, Tianshou's)"""
    alpha: float = 0.2
    """entropy coefficient alpha [L12, L14]; with --autotune, its initial value"""
    autotune: bool = False
    """tune alpha towards target_entropy [L15]; off (fixed alpha): the best 1M results on Hopper/HalfCheetah/Walker2d"""
    target_entropy: Optional[float] = None
    """target entropy of --autotune [L15]; None: -act_dim"""
    alpha_lr: float = 3e-4
    """Adam learning rate of log alpha with --autotune [L15]"""
    batch_size: int = 100
    """transitions per gradient step [L11] (Spinning Up's 100: ~1.6x faster per step on a CPU than 256)"""
    start_steps: int = 10_000
    """env steps (summed over envs) of uniformly random actions before the policy acts [L4]"""
    update_after: int = 1_000
    """no update before the buffer holds this many transitions [L9]"""
    update_every: int = 50
    """env steps (summed over envs) between rounds of update_every gradient steps [L9, L10] (a multiple of num_envs)"""
    num_test_episodes: int = 10
    """deterministic test episodes (the mean action) at the end of every epoch, on separately seeded envs"""
    hidden_sizes: tuple[int, ...] = (256, 256)
    """hidden layer sizes of the policy and the Q-functions (ReLU)"""
    max_episode_steps: Optional[int] = None
    """time limit of an episode (truncation); None keeps the env's own"""
    save_buffer: bool = False
    """[impl] save the replay buffer in checkpoint.pt (1M Hopper steps: 108 MB); off: a resumed run refills it"""


class ConfigError(ValueError):
    """Bad user input (unknown env, impossible sizes): printed as one line, exit code 2."""


def check_args(args: Args) -> None:
    """Raise ConfigError when a size is not positive, a rate is out of range or a step count does not divide."""
    positive = "total_timesteps num_envs torch_threads save_every steps_per_epoch replay_size batch_size"
    for name in (positive + " update_every num_test_episodes").split():
        if getattr(args, name) <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if min(args.hidden_sizes, default=0) <= 0 or (args.max_episode_steps or 1) <= 0:
        raise ConfigError("--hidden-sizes (at least one) and --max-episode-steps must be positive")
    if min(args.start_steps, args.update_after) < 0:
        raise ConfigError("--start-steps and --update-after must be >= 0")
    if not (0 < args.gamma <= 1 and 0 <= args.polyak < 1 and min(args.lr, args.alpha_lr) > 0 and args.alpha >= 0):
        raise ConfigError("need 0 < gamma <= 1, 0 <= polyak < 1, alpha >= 0 and positive learning rates")
    if args.autotune and args.alpha <= 0:
        raise ConfigError("--autotune needs a positive initial --alpha")
    for name in ("steps_per_epoch", "update_every"):
        if getattr(args, name) % args.num_envs:
            raise ConfigError(f"--{name.replace('_', '-')} must be a multiple of --num-envs ({args.num_envs})")
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


def env_seeds(seed: int, num_envs: int, stream: int = 0) -> list[int]:
    """Per-env int32 seeds from `seed`; streams never share seeds (train 0, eval 1, k-th resume 2 + k)."""
    return (np.random.SeedSequence([seed, stream]).generate_state(num_envs) % 2**31).tolist()


# ------------------------------------------------------------------ replay buffer
class ReplayBuffer:
    """The replay buffer D: the last `size` transitions as preallocated float32 tensors on `device`.

    obs, next_obs [size, obs_dim]; act [size, act_dim]; rew, term [size]. next_obs is the true s'
    (the final observation when the episode ended there); term is 1.0 only where s' is terminal
    (a time-limit truncation stores 0). Full: the oldest transitions are overwritten first.
    """

    FIELDS = ("obs", "act", "rew", "next_obs", "term")

    def __init__(self, obs_dim: int, act_dim: int, size: int, device: torch.device):
        self.obs, self.next_obs = (torch.zeros(size, obs_dim, device=device) for _ in range(2))
        self.act = torch.zeros(size, act_dim, device=device)
        self.rew, self.term = (torch.zeros(size, device=device) for _ in range(2))
        self.ptr, self.size, self.max_size, self.device = 0, 0, size, device

    def store(self, *row: np.ndarray) -> None:
        """Append N transitions given in the order of FIELDS, each an array with N rows."""
        n = len(row[0])
        idx = torch.arange(self.ptr, self.ptr + n, device=self.device) % self.max_size
        for key, value in zip(self.FIELDS, row, strict=True):
            getattr(self, key)[idx] = torch.as_tensor(value, dtype=torch.float32).to(self.device)
        self.ptr, self.size = (self.ptr + n) % self.max_size, min(self.size + n, self.max_size)

    def sample(self, num_batches: int, batch_size: int) -> dict[str, torch.Tensor]:
        """`num_batches` batches drawn uniformly with replacement at once: fields [num_batches, batch_size, ...]."""
        idx = torch.randint(0, self.size, (num_batches, batch_size), device=self.device)
        return {key: getattr(self, key)[idx] for key in self.FIELDS}

    def state_dict(self) -> dict:
        """ptr, size and CPU copies of the filled rows (torch.save of a view would write all max_size rows)."""
        rows = {k: getattr(self, k)[: self.size].to("cpu", copy=True) for k in self.FIELDS}
        return {"ptr": self.ptr, "size": self.size, **rows}

    def load_state_dict(self, d: dict) -> None:
        self.ptr, self.size = d["ptr"] % self.max_size, min(d["size"], self.max_size)
        for key in self.FIELDS:
            getattr(self, key)[: self.size] = d[key][: self.size].to(self.device)


# ------------------------------------------------------------------ networks
def mlp(sizes: list[int], output_activation: type[nn.Module] = nn.Identity) -> nn.Sequential:
    """ReLU MLP with layer sizes `sizes` (input first), PyTorch's default init, `output_activation` last."""
    layers = []
    for i in range(len(sizes) - 1):
        layers += [nn.Linear(sizes[i], sizes[i + 1]), nn.ReLU() if i < len(sizes) - 2 else output_activation()]
    return nn.Sequential(*layers)


class EnsembleLinear(nn.Module):
    """k independent linear layers run as one batched matmul: x [k, B, in] -> [k, B, out] (torch.baddbmm).

    Each member is initialised as nn.Linear is, U(-1/sqrt(in), 1/sqrt(in)) for weights and biases.
    """

    def __init__(self, k: int, in_features: int, out_features: int):
        super().__init__()
        bound = in_features**-0.5
        self.weight = nn.Parameter(torch.empty(k, in_features, out_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(k, 1, out_features).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class TwinQ(nn.Module):
    """Q_phi_1 and Q_phi_2 as one batched ReLU MLP: one forward/backward computes both critics.

    `forward(obs [B, obs_dim], act [B, act_dim])` -> [2, B] float32: row i is Q_phi_i(obs, act).
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...]):
        super().__init__()
        sizes, layers = [obs_dim + act_dim, *hidden, 1], []
        for i in range(len(sizes) - 1):
            layers += [EnsembleLinear(2, sizes[i], sizes[i + 1]), nn.ReLU()]
        self.net = nn.Sequential(*layers[:-1])

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        x = torch.cat([obs, act], dim=-1)
        return self.net(x.expand(2, *x.shape)).squeeze(-1)


LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # Spinning Up's clamp of the policy's log std


class SquashedGaussianActor(nn.Module):
    """pi_theta(.|s): a = scale * tanh(u) + bias with u ~ N(mu(s), diag(std(s)^2)), scaled to [low, high].

    `forward(obs [B, obs_dim])` -> (mu, log_std), each [B, act_dim] float32 (log_std clamped to [-20, 2]);
    `sample(obs)` -> (act [B, act_dim], log pi(act|obs) [B]), reparameterised (differentiable in theta).
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...], low: np.ndarray, high: np.ndarray):
        super().__init__()
        self.net = mlp([obs_dim, *hidden], output_activation=nn.ReLU)
        self.head = nn.Linear(hidden[-1], 2 * act_dim)  # mu and log_std side by side
        self.register_buffer("act_scale", torch.as_tensor((high - low) / 2, dtype=torch.float32))
        self.register_buffer("act_bias", torch.as_tensor((high + low) / 2, dtype=torch.float32))

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_std = self.head(self.net(obs)).chunk(2, dim=-1)
        return mu, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_std = self(obs)
        u = mu + log_std.exp() * torch.randn_like(mu)
        return self.act_scale * torch.tanh(u) + self.act_bias, squashed_gaussian_logp(u, mu, log_std, self.act_scale)


class ExportedPolicy(nn.Module):
    """The deployable policy: `forward(obs[B, obs_dim] float32, noise[B, act_dim] float32) -> act[B, act_dim]`.

    act = scale * tanh(mu + std * noise) + bias with noise ~ N(0, 1) a sample of pi; zeros give the
    deterministic test action scale * tanh(mu) + bias. Saved with torch.export, so loading runs no Python.
    """

    def __init__(self, actor: SquashedGaussianActor):
        super().__init__()
        self.actor = actor

    def forward(self, obs: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        mu, log_std = self.actor(obs)
        return self.actor.act_scale * torch.tanh(mu + log_std.exp() * noise) + self.actor.act_bias


# ------------------------------------------------------------------ pure math
def gaussian_logp(act: torch.Tensor, mu: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log N(act; mu, diag(exp(log_std)^2)) summed over the last dim: [B, k] -> [B]."""
    z = (act - mu) / log_std.exp()
    return (-0.5 * z.pow(2) - log_std - 0.5 * np.log(2 * np.pi)).sum(-1)


def squashed_gaussian_logp(u: torch.Tensor, mu: torch.Tensor, log_std: torch.Tensor, scale: torch.Tensor):
    """log pi(a|s) of a = scale * tanh(u) + bias, u ~ N(mu, diag(exp(log_std)^2)): [B, k] -> [B].

    Change of variables (Haarnoja et al. 2018, arXiv 1812.05905, eq. 21, plus the affine scaling):
    log pi(a) = log N(u) - sum_i log(1 - tanh(u_i)^2) - sum_i log scale_i, where
    log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)) stays finite for any u (tanh(u)^2 rounds to 1
    in float32 from |u| ~ 9 on). scale [k] > 0.
    """
    log_det_tanh = 2.0 * (np.log(2.0) - u - F.softplus(-2.0 * u))
    return gaussian_logp(u, mu, log_std) - log_det_tanh.sum(-1) - torch.log(scale).sum(-1)


def td_target(rew: torch.Tensor, term: torch.Tensor, next_value: torch.Tensor, gamma: float) -> torch.Tensor:
    """y = r + gamma (1 - d) V(s') [L12]: all [B]; d = term only, so a truncated s' is bootstrapped."""
    return rew + gamma * (1.0 - term) * next_value


@torch.no_grad()
def polyak_update(targ_params: list[torch.Tensor], params: list[torch.Tensor], polyak: float) -> None:
    """In place, for each pair: p_targ <- polyak p_targ + (1 - polyak) p [L16] (one fused foreach lerp)."""
    torch._foreach_lerp_(targ_params, params, 1.0 - polyak)


# ------------------------------------------------------------------ evaluation
def evaluate(policy: nn.Module, envs, num_episodes: int, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic test: one episode in each of the `num_episodes` envs of `envs`, acting policy(obs, 0).

    Each env's first episode counts once (later steps of an env that already ended are ignored).
    Returns (returns, lengths), float64 and int64 arrays of shape [num_episodes].
    """
    obs = envs.reset()[0]
    ret, length, ended = np.zeros(num_episodes), np.zeros(num_episodes, dtype=np.int64), np.zeros(num_episodes, bool)
    noise = None
    while not ended.all():
        with torch.inference_mode():
            o = torch.as_tensor(np.asarray(obs, dtype=np.float32).reshape(num_episodes, -1), device=device)
            noise = torch.zeros(num_episodes, policy.actor.act_scale.numel(), device=device) if noise is None else noise
            act = policy(o, noise).cpu().numpy()
        obs, rew, term, trunc, _ = envs.step(act.astype(np.float64))
        ret, length, ended = ret + rew * ~ended, length + ~ended, ended | term | trunc
    return ret, length


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
        "step {global_step:>8d} | ret {episodic_return:8.1f} len {episodic_length:6.1f}"
        " | test {eval_episodic_return:8.1f} len {eval_episodic_length:6.1f}"
        " | q {qf1_values:8.2f} lq {qf1_loss:8.4f} pi {actor_loss:+9.3f} alpha {alpha:.3f} | sps {SPS}"
    )  # the epoch line
    TB_KEYS = {
        "SPS": "charts/SPS",
        "eval_episodic_return": "eval/episodic_return",
        "eval_episodic_length": "eval/episodic_length",
    }  # others: losses/<column>
    NOT_LOGGED = ("global_step", "epoch", "episodes", "time")

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
        self.writer = SummaryWriter(run_dir)

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
    """Train SAC as configured by `args`; return the final metrics.

    Returns a dict: global_step, epochs, episodes, episodic_return (mean of the last 100 training
    episodes), recent_returns (their list), eval_episodic_return (the last test's mean), SPS, run_dir,
    interrupted. Raises ConfigError on bad input.
    """
    args, ckpt = load_resume(args) if args.resume else (args, None)  # [impl] --resume: the run's own config
    check_args(args)
    # [impl] seeding: python, numpy, torch, and explicit per-env seeds for envpool (fresh ones on resume)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.torch_threads)
    device = torch.device("cuda" if args.cuda and torch.cuda.is_available() else "cpu")
    seeds = env_seeds(args.seed, args.num_envs, stream=2 + len(ckpt["resumes"]) if ckpt else 0)
    envs = make_envs(args.env_id, args.num_envs, seeds, args.max_episode_steps)
    space = envs.action_space
    if not isinstance(space, gym.spaces.Box) or not np.all(np.isfinite(space.low) & np.isfinite(space.high)):
        envs.close()
        raise ConfigError(f"{args.env_id}: sac.py needs a Box action space with finite bounds, not {space}")
    test_seeds = env_seeds(args.seed, args.num_test_episodes, stream=1)
    test_envs = make_envs(args.env_id, args.num_test_episodes, test_seeds, args.max_episode_steps)
    obs_dim, act_dim = int(np.prod(envs.observation_space.shape)), int(np.prod(space.shape))
    low, high = space.low.reshape(-1).astype(np.float64), space.high.reshape(-1).astype(np.float64)
    N, steps_per_epoch = args.num_envs, args.steps_per_epoch
    end_step = args.total_timesteps // steps_per_epoch * steps_per_epoch  # [impl] whole epochs only

    # [L1] policy theta, Q-functions phi_1, phi_2 (one batched module), an empty replay buffer D
    pi = SquashedGaussianActor(obs_dim, act_dim, args.hidden_sizes, low, high).to(device)
    qf = TwinQ(obs_dim, act_dim, args.hidden_sizes).to(device)
    # [L2] target parameters phi_targ,i <- phi_i; they only ever change by polyak averaging [L16]
    qf_targ = copy.deepcopy(qf).requires_grad_(False)
    pi_opt = torch.optim.Adam(pi.parameters(), lr=args.lr, fused=True)  # [impl] fused: one kernel per step
    qf_opt = torch.optim.Adam(qf.parameters(), lr=args.lr, fused=True)
    log_alpha = torch.tensor(np.log(max(args.alpha, 1e-38)), dtype=torch.float32, device=device, requires_grad=True)
    alpha_opt = torch.optim.Adam([log_alpha], lr=args.alpha_lr)
    target_entropy = -float(act_dim) if args.target_entropy is None else args.target_entropy
    buf = ReplayBuffer(obs_dim, act_dim, args.replay_size, device)
    state = {"pi": pi, "qf": qf, "qf_targ": qf_targ, "pi_opt": pi_opt, "qf_opt": qf_opt, "alpha_opt": alpha_opt}
    if ckpt is None:
        run_dir = os.path.join(args.data_dir, f"{args.env_id}__{args.exp_name}__{args.seed}__{int(time.time())}")
        while os.path.exists(run_dir):  # [impl] two runs started in the same second get distinct dirs
            run_dir += "_"
        policy_info = {"file": "policy.pt2", "obs_dim": obs_dim, "noise_dim": act_dim, "discrete": False}
        log = RunLogger(run_dir, {"algo": "sac", "args": asdict(args), "policy": {**policy_info, "noise": "normal"}})
        global_step, resumes = 0, []
    else:
        run_dir = args.resume
        log = RunLogger(run_dir, resume_step=ckpt["global_step"])
        for key, obj in state.items():
            obj.load_state_dict(ckpt[key])
        with torch.no_grad():
            log_alpha.copy_(ckpt["log_alpha"])
        if "buffer" in ckpt:
            buf.load_state_dict(ckpt["buffer"])
        random.setstate(ckpt["rng"]["python"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        if device.type == "cuda" and "cuda" in ckpt["rng"]:
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"])
        global_step, resumes = ckpt["global_step"], ckpt["resumes"] + [ckpt["global_step"]]

    def save() -> None:  # [impl] checkpoint (resume) and policy artifact (deployment)
        checkpoint = {k: v.state_dict() for k, v in state.items()}
        rng = {"python": random.getstate(), "torch": torch.get_rng_state()}
        rng.update({"cuda": torch.cuda.get_rng_state()} if device.type == "cuda" else {})
        checkpoint.update(algo="sac", epoch=global_step // steps_per_epoch, global_step=global_step)
        checkpoint.update(resumes=resumes, rng=rng, log_alpha=log_alpha.detach().cpu())
        if args.save_buffer:
            checkpoint["buffer"] = buf.state_dict()
        exported = ExportedPolicy(copy.deepcopy(pi).cpu())
        log.save(checkpoint, exported, (torch.zeros(2, obs_dim), torch.zeros(2, act_dim)))

    # [impl] Ctrl-C / SIGTERM: finish the current env step and its updates, save, exit cleanly
    stop = {"signal": None}

    def on_signal(signum, frame):
        if stop["signal"] is not None:
            raise KeyboardInterrupt  # a second Ctrl-C aborts at once
        stop["signal"] = signum

    old_handlers = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}

    qf_params, qf_targ_params = list(qf.parameters()), list(qf_targ.parameters())
    policy = ExportedPolicy(pi)  # [impl] training and test act with the exported function
    ep_ret, ep_len, ep_done_ret, ep_done_len = np.zeros(N), np.zeros(N, dtype=np.int64), [], []
    recent, episodes, test_ret = deque(maxlen=100), 0, np.full(1, np.nan)
    stats, num_updates = torch.zeros(8, device=device), 0  # [impl] summed on the device, read once per epoch
    obs = np.asarray(envs.reset()[0], dtype=np.float32).reshape(N, obs_dim)  # [impl] reset before stepping
    start_step, start_time = global_step, time.time()
    bar = tqdm(total=end_step, initial=global_step, unit="step", disable=None)
    try:
        while global_step < end_step:  # [L3] repeat
            # [L4] a ~ pi(.|s); uniformly random in [low, high] for the first start_steps steps
            if global_step < args.start_steps:
                act = (low + (high - low) * torch.rand(N, act_dim, dtype=torch.float64).numpy()).astype(np.float32)
            else:
                with torch.inference_mode():
                    o = torch.from_numpy(obs).to(device)
                    act = policy(o, torch.randn(N, act_dim, device=device)).cpu().numpy()
            # [L5] [L6] execute a; observe s', r and the done signals (term: s' is terminal; trunc: time limit)
            next_obs, rew, term, trunc, _ = envs.step(act.astype(np.float64))
            next_obs = np.asarray(next_obs, dtype=np.float32).reshape(N, obs_dim)  # [impl] float64 -> float32 once
            # [L7] store (s, a, r, s', d) with d = term: a time-limit truncation still bootstraps from s'
            buf.store(obs, act, rew, next_obs, term)
            ep_ret, ep_len, obs = ep_ret + rew, ep_len + 1, next_obs
            done = term | trunc
            if done.any():
                # [L8] reset the ended envs now: envpool would do it on the *next* step (ignoring its action),
                # so no reset step is ever stored and the stored s' of an ended episode is its final obs
                ids = np.flatnonzero(done)
                obs = obs.copy()
                obs[ids] = np.asarray(envs.reset(ids)[0], dtype=np.float32).reshape(len(ids), obs_dim)
                for i in ids:  # [impl] episode statistics, counted by the script
                    ep_done_ret.append(ep_ret[i]), ep_done_len.append(ep_len[i]), recent.append(ep_ret[i])
                    log.episode(ep_ret[i], ep_len[i], global_step + N)
                episodes, ep_ret[ids], ep_len[ids] = episodes + len(ids), 0.0, 0
            global_step += N
            bar.update(N)

            # [L9] time to update: every update_every env steps once D holds update_after transitions
            if global_step % args.update_every == 0 and buf.size >= args.update_after:
                batches = buf.sample(args.update_every, args.batch_size)  # [L11] all the round's draws at once
                for j in range(args.update_every):  # [L10] one gradient step per env step
                    o, a, r, o2, d = (batches[k][j] for k in ReplayBuffer.FIELDS)
                    alpha = log_alpha.detach().exp()
                    # [L12] y = r + gamma (1 - d) (min_i Q_targ,i(s', a') - alpha log pi(a'|s')), a' ~ pi(.|s')
                    with torch.no_grad():
                        a2, logp_a2 = pi.sample(o2)
                        backup = td_target(r, d, qf_targ(o2, a2).min(0).values - alpha * logp_a2, args.gamma)
                    # [L13] both Q-functions: one Adam step on the summed mean squared errors
                    q = qf(o, a)
                    qf_losses = (q - backup).pow(2).mean(1)
                    qf_opt.zero_grad(set_to_none=True)
                    qf_losses.sum().backward()
                    qf_opt.step()
                    # [L14] policy: ascend min_i Q_i(s, a~) - alpha log pi(a~|s), a~ reparameterised; the
                    # Q parameters are frozen meanwhile (no gradient computed for them)
                    qf.requires_grad_(False)
                    a_pi, logp_pi = pi.sample(o)
                    loss_pi = (alpha * logp_pi - qf(o, a_pi).min(0).values).mean()
                    pi_opt.zero_grad(set_to_none=True)
                    loss_pi.backward()
                    pi_opt.step()
                    qf.requires_grad_(True)
                    # [L15] alpha: descend -alpha (log pi + target entropy) (the SAC paper's eq. 18, on alpha)
                    loss_alpha = -(log_alpha.exp() * (logp_pi.detach() + target_entropy)).mean()
                    if args.autotune:
                        alpha_opt.zero_grad(set_to_none=True)
                        loss_alpha.backward()
                        alpha_opt.step()
                    # [L16] phi_targ,i <- rho phi_targ,i + (1 - rho) phi_i
                    polyak_update(qf_targ_params, qf_params, args.polyak)
                    row_stats = (*qf_losses, loss_pi, q[0].mean(), q[1].mean(), logp_pi.mean(), alpha, loss_alpha)
                    stats += torch.stack(row_stats).detach()
                    num_updates += 1
                # [L17] [L18] end of the update round

            if global_step % steps_per_epoch == 0:  # [impl] end of epoch: deterministic test, log, save
                test_ret, test_len = evaluate(policy, test_envs, args.num_test_episodes, device)
                mean = lambda x: float(np.mean(x)) if len(x) else float("nan")  # noqa: E731
                row = {"global_step": global_step, "epoch": global_step // steps_per_epoch, "episodes": episodes}
                row.update(episodic_return=mean(ep_done_ret), episodic_length=mean(ep_done_len))
                row.update(eval_episodic_return=mean(test_ret), eval_episodic_length=mean(test_len))
                names = ("qf1_loss", "qf2_loss", "actor_loss", "qf1_values", "qf2_values", "logp_pi", "alpha")
                values = (stats / num_updates).tolist() if num_updates else [float("nan")] * len(stats)
                row.update(zip(names + ("alpha_loss",), values, strict=True))
                if not args.autotune:
                    del row["alpha_loss"]
                row.update(time=time.time() - start_time)
                row.update(SPS=int((global_step - start_step) / row["time"]))
                bar.write(log.epoch(row))
                ep_done_ret, ep_done_len, stats, num_updates = [], [], torch.zeros_like(stats), 0
                if row["epoch"] % args.save_every == 0 or global_step == end_step:
                    save()
            if stop["signal"] is not None:
                raise KeyboardInterrupt
        # [L19] until the step budget is spent
    except KeyboardInterrupt:
        # [impl] saved at the last finished env step (and its update round): resuming continues from there
        bar.write(f"interrupted: saved step {global_step}; continue with: python sac.py --resume {run_dir}")
        save()
        stop["signal"] = stop["signal"] or signal.SIGINT
    finally:
        bar.close(), log.close(), envs.close(), test_envs.close()
        for s, h in old_handlers.items():
            signal.signal(s, h)
    metrics = {"global_step": global_step, "epochs": global_step // steps_per_epoch, "episodes": episodes}
    metrics.update(episodic_return=float(np.mean(recent)) if recent else float("nan"))
    metrics.update(recent_returns=[float(r) for r in recent], eval_episodic_return=float(np.mean(test_ret)))
    metrics.update(run_dir=run_dir, interrupted=stop["signal"] is not None)
    return {**metrics, "SPS": int((global_step - start_step) / max(time.time() - start_time, 1e-9))}


if __name__ == "__main__":
    try:
        metrics = train(tyro.cli(Args))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    sys.exit(130 if metrics["interrupted"] else 0)  # [impl] 130: the shell's code for a Ctrl-C'd program
