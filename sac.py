"""SAC: Soft Actor-Critic with twin Q-functions and a tanh-squashed Gaussian policy, on envpool.

Pseudocode (after Spinning Up's SAC page, https://spinningup.openai.com/en/latest/algorithms/sac.html):

    L1  Input: initial policy parameters theta, Q-function parameters phi_1, phi_2, an empty replay buffer D.
    L2  Set the target parameters equal to the main ones: phi_targ,i <- phi_i for i = 1, 2.
    L3  repeat
    L4      Observe the state s and pick an action a ~ pi_theta(.|s)
            (uniformly at random for the first start_steps steps).
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
    L14             Update the policy by one ascent step on mean_B (min_i Q_phi_i(s, a~) - alpha log pi_theta(a~|s)),
                    a~ ~ pi_theta(.|s) reparameterised; if alpha is tuned, one descent step on its loss
                    mean_B -alpha (log pi_theta(a~|s) + target entropy).
    L15             Update the targets by polyak averaging: phi_targ,i <- rho phi_targ,i + (1 - rho) phi_i
                    (there is no target policy: a' of L12 is drawn from pi_theta itself).
    L16         end for
    L17     end if
    L18 until the step budget is spent

Sources: Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and Applications" (arXiv 1812.05905), eqs. 5-7
(Q, policy), 18 (alpha), 21 (tanh log-prob); the first SAC paper: Haarnoja et al. 2018 (arXiv 1801.01290).

Usage:
    python sac.py --env-id Hopper-v4          # 1M steps; TensorBoard logs in runs/
    python sac.py --resume runs/<run dir>     # continue an interrupted run

The algorithm ends at the line `# ==== plumbing`; below it is what runs the experiment and is not RL (input
checks, envs, resume, the deterministic test, logs, checkpoints), the same text in ddpg.py, td3.py and sac.py.
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
    """environment steps to train for, summed over all envs"""
    num_envs: int = 1
    """parallel environments stepped together by envpool (sync mode)"""
    cuda: bool = False
    """train on a CUDA GPU; off by default, as networks this small train faster on the CPU (launch-bound GPU)"""
    torch_threads: int = 2
    """torch CPU threads (the 256-wide updates run 1.2-1.4x faster on two cores than on one; ppo.py uses one)"""
    data_dir: str = "runs"
    """directory under which each run gets its own directory"""
    save_every: int = 20
    """write the checkpoint and the policy artifact every this many epochs (and at the end)"""
    resume: str | None = None
    """run directory to continue: its saved config is used; pass --total-timesteps to extend it"""
    # ---- algorithm (Spinning Up names) ----
    steps_per_epoch: int = 5_000
    """env steps per epoch, summed over envs; each epoch ends with the deterministic test (a multiple of num_envs)"""
    replay_size: int = 1_000_000
    """capacity of the replay buffer D in transitions [L7, L11]"""
    gamma: float = 0.99
    """discount factor gamma [L12]"""
    polyak: float = 0.995
    """rho of the target update p_targ <- rho p_targ + (1 - rho) p [L15] (tau = 1 - rho)"""
    lr: float = 1e-3
    """Adam learning rate of the Q-functions and the policy [L13, L14] (Spinning Up's, Tianshou's)"""
    alpha: float = 0.2
    """entropy coefficient alpha [L12, L14]; with --autotune, its initial value"""
    autotune: bool = False
    """tune alpha towards target_entropy [L14]; off (fixed alpha): the best 1M results on Hopper/HalfCheetah/Walker2d"""
    target_entropy: float | None = None
    """target entropy of --autotune [L14]; None: -act_dim"""
    alpha_lr: float = 3e-4
    """Adam learning rate of log alpha with --autotune [L14]"""
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
    max_episode_steps: int | None = None
    """time limit of an episode (truncation); None keeps the env's own"""
    save_buffer: bool = False
    """[impl] save the replay buffer in checkpoint.pt (1M Hopper steps: 108 MB); off: a resumed run refills it"""


ALGO = "sac"  # its name in config.json and checkpoint.pt; BOUNDS: valid values, checked before anything runs
BOUNDS = dict.fromkeys(("lr", "alpha_lr"), "(0, inf)")  # and those of check_args
BOUNDS |= dict.fromkeys(("alpha",), "[0, inf)")
LINE = (  # the epoch line, from the epoch's progress.csv row
    "step {global_step:>8d} | ret {episodic_return:8.1f} len {episodic_length:6.1f}"
    " | test {eval_episodic_return:8.1f} len {eval_episodic_length:6.1f}"
    " | q {qf1_values:8.2f} lq {qf1_loss:8.4f} pi {actor_loss:+9.3f} alpha {alpha:.3f} | sps {SPS}"
)


def mlp(sizes: list[int], output_activation: type[nn.Module] = nn.Identity) -> nn.Sequential:
    """ReLU MLP with layer sizes `sizes` (input first), PyTorch's default init, `output_activation` last."""
    layers = []
    for i in range(len(sizes) - 1):
        layers += [nn.Linear(sizes[i], sizes[i + 1]), nn.ReLU() if i < len(sizes) - 2 else output_activation()]
    return nn.Sequential(*layers)


class EnsembleLinear(nn.Module):
    """k independent linear layers run as one batched matmul: x [m, B, in] -> [m, B, out] with the first m <= k.

    Each member is initialised as nn.Linear is, U(-1/sqrt(in), 1/sqrt(in)) for weights and biases.
    """

    def __init__(self, k: int, in_features: int, out_features: int):
        super().__init__()
        bound = in_features**-0.5
        self.weight = nn.Parameter(torch.empty(k, in_features, out_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(k, 1, out_features).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = len(x)
        return torch.baddbmm(self.bias[:m], x, self.weight[:m])


class TwinQ(nn.Module):
    """Q_phi_1 and Q_phi_2 as one batched ReLU MLP: one forward/backward computes both critics.

    `forward(obs [B, obs_dim], act [B, act_dim], num=2)` -> [num, B] float32: row i is Q_phi_(i+1)(obs, act);
    num=1 computes Q_phi_1 alone (TD3's policy loss [L14]).
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...]):
        super().__init__()
        sizes, layers = [obs_dim + act_dim, *hidden, 1], []
        for i in range(len(sizes) - 1):
            layers += [EnsembleLinear(2, sizes[i], sizes[i + 1]), nn.ReLU()]
        self.net = nn.Sequential(*layers[:-1])

    def forward(self, obs: torch.Tensor, act: torch.Tensor, num: int = 2) -> torch.Tensor:
        x = torch.cat([obs, act], dim=-1)
        return self.net(x.expand(num, *x.shape)).squeeze(-1)


class Actor(nn.Module):
    """pi_theta(.|s): a = scale * tanh(u) + bias with u ~ N(mu(s), diag(std(s)^2)), scaled to [low, high].

    `forward(obs [B, obs_dim] float32)` -> (mu, log_std), [B, act_dim] each; `sample(obs)` -> (act, log pi(act|obs)).
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...], low: np.ndarray, high: np.ndarray):
        super().__init__()
        self.net = mlp([obs_dim, *hidden], output_activation=nn.ReLU)
        self.head = nn.Linear(hidden[-1], 2 * act_dim)  # mu and log_std side by side
        self.register_buffer("act_scale", torch.as_tensor((high - low) / 2, dtype=torch.float32))
        self.register_buffer("act_bias", torch.as_tensor((high + low) / 2, dtype=torch.float32))

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_std = self.head(self.net(obs)).chunk(2, dim=-1)
        return mu, log_std.clamp(-20.0, 2.0)  # Spinning Up's clamp of the log std

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_std = self(obs)
        u = mu + log_std.exp() * torch.randn_like(mu)
        return self.act_scale * torch.tanh(u) + self.act_bias, squashed_gaussian_logp(u, mu, log_std, self.act_scale)


class ExportedPolicy(nn.Module):
    """The deployable policy: `forward(obs[B, obs_dim] float32, noise[B, act_dim] float32) -> act[B, act_dim]`.

    act = scale * tanh(mu + std * noise) + bias, noise ~ N(0, 1): a sample of pi_theta(.|s) [L4].
    Zero noise gives the deterministic test action. Saved with torch.export, so loading it runs no Python.
    """

    def __init__(self, actor: Actor):
        super().__init__()
        self.actor = actor

    def forward(self, obs: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        mu, log_std = self.actor(obs)
        return self.actor.act_scale * torch.tanh(mu + log_std.exp() * noise) + self.actor.act_bias


def gaussian_logp(act: torch.Tensor, mu: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log N(act; mu, diag(exp(log_std)^2)) summed over the last dim: [B, k] -> [B]."""
    z = (act - mu) / log_std.exp()
    return (-0.5 * z.pow(2) - log_std - 0.5 * np.log(2 * np.pi)).sum(-1)


def squashed_gaussian_logp(u: torch.Tensor, mu: torch.Tensor, log_std: torch.Tensor, scale: torch.Tensor):
    """log pi(a|s) [B] of a = scale tanh(u) + bias, u ~ N(mu, exp(log_std)^2) [B, k]: log N(u) - sum log(1 - tanh(u)^2)
    - sum log scale (Haarnoja et al. 2018, eq. 21), log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)): finite."""
    log_det_tanh = 2.0 * (np.log(2.0) - u - torch.nn.functional.softplus(-2.0 * u))
    return gaussian_logp(u, mu, log_std) - log_det_tanh.sum(-1) - torch.log(scale).sum(-1)


def td_target(rew: torch.Tensor, term: torch.Tensor, next_value: torch.Tensor, gamma: float) -> torch.Tensor:
    """y = r + gamma (1 - d) V(s') [L12]: all [B]; d = term only, so a truncated s' is bootstrapped."""
    return rew + gamma * (1.0 - term) * next_value


@torch.no_grad()
def polyak_update(targ_params: list[torch.Tensor], params: list[torch.Tensor], polyak: float) -> None:
    """In place, for each pair: p_targ <- polyak p_targ + (1 - polyak) p [L15] (one fused foreach lerp)."""
    torch._foreach_lerp_(targ_params, params, 1.0 - polyak)


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


def train(args: Args) -> dict:
    """Train by the pseudocode above; return Run.metrics(). Raises ConfigError on bad input or on divergence."""
    if args.autotune and args.alpha <= 0:  # [impl] checked before anything runs: log alpha starts at log(alpha)
        raise ConfigError("--autotune needs a positive initial --alpha")
    run = Run(args, ALGO, BOUNDS, LINE)  # [impl] --resume, seeds, envs, the run directory: below the line
    args, device, envs, N = run.args, run.device, run.envs, run.args.num_envs
    obs_dim, act_dim, low, high = run.obs_dim, run.act_dim, run.low, run.high

    # [L1] policy theta, Q-functions phi_1, phi_2 (one batched module), an empty replay buffer D
    pi = Actor(obs_dim, act_dim, args.hidden_sizes, low, high).to(device)
    qf = TwinQ(obs_dim, act_dim, args.hidden_sizes).to(device)
    # [L2] target parameters phi_targ,i <- phi_i; they only change by polyak averaging [L15]
    qf_targ = copy.deepcopy(qf).requires_grad_(False)
    pi_opt = torch.optim.Adam(pi.parameters(), lr=args.lr, fused=True)  # [impl] fused: one kernel per step
    qf_opt = torch.optim.Adam(qf.parameters(), lr=args.lr, fused=True)
    log_alpha = torch.tensor(np.log(max(args.alpha, 1e-38)), dtype=torch.float32, device=device, requires_grad=True)
    alpha_opt = torch.optim.Adam([log_alpha], lr=args.alpha_lr)
    target_entropy = -float(act_dim) if args.target_entropy is None else args.target_entropy
    buf = ReplayBuffer(obs_dim, act_dim, args.replay_size, device)
    policy = ExportedPolicy(pi)  # [impl] training and test act with the exported function
    state = {"pi": pi, "qf": qf, "qf_targ": qf_targ, "pi_opt": pi_opt, "qf_opt": qf_opt, "alpha_opt": alpha_opt}
    run.restore({**state, "log_alpha": log_alpha, **({"buffer": buf} if args.save_buffer else {})}, policy)

    params, targ_params = list(qf.parameters()), list(qf_targ.parameters())
    ep_ret, ep_len = np.zeros(N), np.zeros(N, dtype=np.int64)
    names = ("qf1_loss", "qf2_loss", "actor_loss", "qf1_values", "qf2_values", "logp_pi", "alpha", "alpha_loss")
    stats, num_updates = torch.zeros(len(names), device=device), 0  # [impl] summed on the device, read once per epoch
    obs = np.asarray(envs.reset()[0], dtype=np.float32).reshape(N, obs_dim)
    with run:  # [impl] Ctrl-C / SIGTERM: finish this env step and its updates, save, exit with code 130
        while not run.stop and run.global_step < run.total_steps:  # [L3] repeat ... [L18] until the budget is spent
            # [L4] a ~ pi(.|s); uniformly random in [low, high] for the first start_steps steps
            if run.global_step < args.start_steps:
                act = (low + (high - low) * torch.rand(N, act_dim, dtype=torch.float64).numpy()).astype(np.float32)
            else:
                with torch.inference_mode():
                    o = torch.from_numpy(obs).to(device)
                    act = policy(o, torch.randn(N, act_dim, device=device)).cpu().numpy()
            # [L5] [L6] execute a; observe s', r and the done signals (term: s' is terminal; trunc: time limit)
            next_obs, rew, term, trunc, _ = envs.step(act.astype(np.float64))
            next_obs = np.asarray(next_obs, dtype=np.float32).reshape(N, obs_dim)
            # [L7] store (s, a, r, s', d) with d = term: (!) a time-limit truncation is not terminal, so the
            # target of [L12] still bootstraps from its s'
            buf.store(obs, act, rew, next_obs, term)
            ep_ret, ep_len, obs, done = ep_ret + rew, ep_len + 1, next_obs, term | trunc
            run.end_step(ep_ret[done], ep_len[done])  # [impl] counts the N steps, logs the episodes that ended
            if done.any():
                # [L8] (!) reset the ended envs now: envpool would reset them on the *next* step and ignore its
                # action. So no reset step is ever stored, and the stored s' of an ended episode is its final obs.
                ids = np.flatnonzero(done)
                obs = obs.copy()
                obs[ids] = np.asarray(envs.reset(ids)[0], dtype=np.float32).reshape(len(ids), obs_dim)
                ep_ret[ids], ep_len[ids] = 0.0, 0

            # [L9] time to update: every update_every env steps once D holds update_after transitions
            if run.global_step % args.update_every == 0 and buf.size >= args.update_after:
                batches = buf.sample(args.update_every, args.batch_size)  # [L11] all the round's draws at once
                for j in range(args.update_every):  # [L10] one gradient step per env step
                    o, a, r, o2, d = (batches[k][j] for k in ReplayBuffer.FIELDS)
                    alpha = log_alpha.detach().exp()
                    # [L12] y = r + gamma (1 - d) (min_i Q_targ,i(s', a') - alpha log pi(a'|s')), a' ~ pi(.|s')
                    with torch.no_grad():
                        a2, logp_a2 = pi.sample(o2)
                        backup = td_target(r, d, qf_targ(o2, a2).min(0).values - alpha * logp_a2, args.gamma)
                    # [L13] the Q-function(s): one Adam step on the (summed) mean squared error(s)
                    q = qf(o, a)
                    qf_losses = (q - backup).pow(2).mean(1)
                    qf_opt.zero_grad(set_to_none=True)
                    qf_losses.sum().backward()
                    qf_opt.step()
                    # [L14] policy: ascend min_i Q_i(s, a~) - alpha log pi(a~|s); the Q parameters are frozen meanwhile
                    qf.requires_grad_(False)
                    a_pi, logp_pi = pi.sample(o)
                    loss_pi = (alpha * logp_pi - qf(o, a_pi).min(0).values).mean()
                    pi_opt.zero_grad(set_to_none=True)
                    loss_pi.backward()
                    pi_opt.step()
                    qf.requires_grad_(True)
                    # [L14] alpha: descend -alpha (log pi + target entropy) (the SAC paper's eq. 18, on alpha)
                    loss_alpha = -(log_alpha.exp() * (logp_pi.detach() + target_entropy)).mean()
                    if args.autotune:
                        alpha_opt.zero_grad(set_to_none=True)
                        loss_alpha.backward()
                        alpha_opt.step()
                    # [L15] the targets <- rho (theirs) + (1 - rho) (the main ones)
                    polyak_update(targ_params, params, args.polyak)
                    row_stats = (*qf_losses, loss_pi, q[0].mean(), q[1].mean(), logp_pi.mean(), alpha, loss_alpha)
                    stats += torch.stack(row_stats).detach()
                    num_updates += 1
                # [L16] [L17] end of the update round

            if run.global_step % args.steps_per_epoch == 0:  # [impl] end of epoch: deterministic test, log, save
                logged = names if args.autotune else names[:-1]  # alpha_loss only when alpha is tuned
                run.end_epoch(dict(zip(logged, (stats / num_updates).tolist()[: len(logged)], strict=True)))  # nan: 0
                stats, num_updates = torch.zeros_like(stats), 0
    return run.metrics()


# ==== plumbing: running the experiment, not RL. The same text in ddpg.py, td3.py and sac.py.
class ConfigError(ValueError):
    """Bad input (unknown env, impossible sizes, an unwritable run directory) or a diverged run: one line, exit 2."""


def check_args(args: Args, bounds: dict[str, str]) -> None:
    """Raise ConfigError unless sizes are positive, fields lie in their `bounds` and the step counts divide."""
    sizes = ("total_timesteps", "num_envs", "torch_threads", "save_every", "steps_per_epoch", "replay_size")
    sizes += ("batch_size", "update_every", "num_test_episodes")
    common = {**dict.fromkeys(sizes, "(0, inf)"), **dict.fromkeys(("start_steps", "update_after"), "[0, inf)")}
    for name, interval in {**common, "gamma": "(0, 1]", "polyak": "[0, 1)", **bounds}.items():
        value, (low, high) = getattr(args, name), (float(x) for x in interval[1:-1].split(","))
        above = value > low or (interval[0] == "[" and value == low)
        if not (above and (value < high or (interval[-1] == "]" and value == high))):
            want = {"(0, inf)": "positive", "[0, inf)": ">= 0"}.get(interval, f"in {interval}")
            raise ConfigError(f"--{name.replace('_', '-')} must be {want}, got {value}")
    if min(args.hidden_sizes, default=0) <= 0 or (args.max_episode_steps or 1) <= 0:
        raise ConfigError("--hidden-sizes (at least one) and --max-episode-steps must be positive")
    for name in ("steps_per_epoch", "update_every"):
        if getattr(args, name) % args.num_envs:
            raise ConfigError(f"--{name.replace('_', '-')} must be a multiple of --num-envs ({args.num_envs})")
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


def env_seeds(seed: int, num_envs: int, stream: int = 0) -> list[int]:
    """Per-env int32 seeds from `seed`; streams never share seeds (train 0, eval 1, k-th resume 2 + k)."""
    return (np.random.SeedSequence([seed, stream]).generate_state(num_envs) % 2**31).tolist()


def evaluate(policy: nn.Module, envs, num_episodes: int, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """The deterministic test, policy(obs, 0): the first episode of each env; (returns, lengths) [num_episodes]."""
    obs = envs.reset()[0]
    ret, length, ended = np.zeros(num_episodes), np.zeros(num_episodes, dtype=np.int64), np.zeros(num_episodes, bool)
    noise = torch.zeros(num_episodes, policy.actor.act_scale.numel(), device=device)
    while not ended.all():
        with torch.inference_mode():
            o = torch.as_tensor(np.asarray(obs, dtype=np.float32).reshape(num_episodes, -1), device=device)
            act = policy(o, noise).cpu().numpy()
        obs, rew, term, trunc, _ = envs.step(act.astype(np.float64))
        ret, length, ended = ret + rew * ~ended, length + ~ended, ended | term | trunc
    return ret, length


class Run:
    """One run: resume, seeds, envs, and <data_dir>/<env_id>__<exp_name>__<seed>__<unix time>/ with config.json,
    TensorBoard events (CleanRL's keys), progress.csv, checkpoint.pt, policy.pt2 and policies/policy_<step>.pt2.
    Inside `with run:` Ctrl-C / SIGTERM stops after the env step and its updates, and saves; a second stops now."""

    TB_KEYS = {"SPS": "charts/SPS", **{f"eval_{k}": f"eval/{k}" for k in ("episodic_return", "episodic_length")}}

    def __init__(self, args: Args, algo: str, bounds: dict[str, str], line: str):
        args, self.ckpt = load_resume(args) if args.resume else (args, None)
        check_args(args, bounds)
        random.seed(args.seed)
        np.random.seed(args.seed)
        torch.manual_seed(args.seed)
        torch.set_num_threads(args.torch_threads)
        self.args, self.algo, self.line, self.script = args, algo, line, os.path.basename(__file__)
        self.device = torch.device("cuda" if args.cuda and torch.cuda.is_available() else "cpu")
        self.global_step = self.ckpt["global_step"] if self.ckpt else 0
        self.total_steps = args.total_timesteps // args.steps_per_epoch * args.steps_per_epoch  # whole epochs only
        self.saved_step = self.global_step if self.ckpt else None
        self.episodes, self.recent = (self.ckpt or {}).get("episodes", 0), (self.ckpt or {}).get("recent", [])
        self.ep_rets, self.ep_lens = [], []  # of the episodes ended in this epoch
        self.stop, self.extra, self.test_ret = False, {}, np.full(1, np.nan)
        self.run_dir = args.resume or f"{args.data_dir}/{args.env_id}__{args.exp_name}__{args.seed}__{int(time.time())}"
        while self.ckpt is None and os.path.exists(self.run_dir):  # two runs started in the same second
            self.run_dir += "_"
        seeds = env_seeds(args.seed, args.num_envs, 2 + len(self.ckpt["resumes"]) if self.ckpt else 0)  # fresh: resume
        self.stack = contextlib.ExitStack()  # what __exit__ closes, newest first
        self.envs = make_envs(args.env_id, args.num_envs, seeds, args.max_episode_steps)
        self.stack.callback(self.envs.close)
        space = self.envs.action_space
        if not isinstance(space, gym.spaces.Box) or not np.all(np.isfinite(space.low) & np.isfinite(space.high)):
            self.stack.close()
            raise ConfigError(f"{args.env_id}: {self.script} needs a Box action space with finite bounds, not {space}")
        seeds = env_seeds(args.seed, args.num_test_episodes, stream=1)
        self.test_envs = make_envs(args.env_id, args.num_test_episodes, seeds, args.max_episode_steps)
        self.stack.callback(self.test_envs.close)
        self.obs_dim, self.act_dim = int(np.prod(self.envs.observation_space.shape)), int(np.prod(space.shape))
        self.low, self.high = space.low.reshape(-1).astype(np.float64), space.high.reshape(-1).astype(np.float64)

    def restore(self, state: dict, policy: nn.Module) -> dict:
        """Resume `state` (name -> tensor or object with load_state_dict) and the RNG, or make the run directory;
        policy is what save() exports. Returns the checkpoint ({} for a new run)."""
        self.state, self.policy, csv_path = state, policy, os.path.join(self.run_dir, "progress.csv")
        if self.ckpt is not None:
            for key, obj in state.items():
                if isinstance(obj, torch.Tensor):  # SAC's log alpha
                    obj.data.copy_(self.ckpt[key])
                else:
                    obj.load_state_dict(self.ckpt[key])
            random.setstate(self.ckpt["rng"]["python"])
            torch.set_rng_state(self.ckpt["rng"]["torch"])
            if self.device.type == "cuda" and "cuda" in self.ckpt["rng"]:
                torch.cuda.set_rng_state(self.ckpt["rng"]["cuda"])
            if os.path.exists(csv_path):  # drop the rows logged after the checkpoint
                with open(csv_path) as f:
                    rows = f.readlines()
                with open(csv_path, "w") as f:
                    f.writelines(rows[:1] + [row for row in rows[1:] if int(row.split(",")[0]) <= self.saved_step])
        else:
            policy = {"file": "policy.pt2", "obs_dim": self.obs_dim, "noise_dim": self.act_dim, "discrete": False}
            config = {"algo": self.algo, "args": asdict(self.args), "policy": {**policy, "noise": "normal"}}
            try:
                os.makedirs(self.run_dir)
                with open(os.path.join(self.run_dir, "config.json"), "w") as f:
                    json.dump({**config, "versions": versions()}, f, indent=2)
            except OSError as e:
                self.stack.close()
                raise ConfigError(f"cannot create the run directory {self.run_dir!r}: {e.strerror or e}") from None
        self.writer = self.stack.enter_context(SummaryWriter(self.run_dir))
        return self.ckpt or {}

    def __enter__(self):
        for s in (signal.SIGINT, signal.SIGTERM):  # restored on exit
            self.stack.callback(signal.signal, s, signal.signal(s, self.on_signal))
        self.bar = self.stack.enter_context(tqdm(total=self.total_steps, initial=self.global_step, unit="step"))
        self.start_time = time.time() - (self.ckpt or {}).get("time", 0.0)  # a resumed run: its clock goes on
        return self

    def on_signal(self, signum, frame) -> None:
        if self.stop:
            raise KeyboardInterrupt  # a second Ctrl-C stops at once
        self.stop = True

    def __exit__(self, kind, value, traceback) -> bool:
        if kind is KeyboardInterrupt or (kind is None and self.stop):  # saved at the env step reached
            resume = f"python {self.script} --resume {self.run_dir}"
            self.bar.write(f"interrupted: saved step {self.global_step}; continue with: {resume}")
            self.save()
            self.stop = True
        self.stack.close()
        return kind is KeyboardInterrupt

    def end_step(self, rets: np.ndarray, lens: np.ndarray) -> None:
        """Count the N env steps just taken and log the episodes that ended in them (returns rets, lengths lens)."""
        self.global_step += self.args.num_envs
        for ret, length in zip(rets.tolist(), lens.tolist(), strict=True):
            self.writer.add_scalar("charts/episodic_return", ret, self.global_step)
            self.writer.add_scalar("charts/episodic_length", length, self.global_step)
        self.ep_rets, self.ep_lens = self.ep_rets + rets.tolist(), self.ep_lens + lens.tolist()
        self.recent, self.episodes = (self.recent + rets.tolist())[-100:], self.episodes + len(rets)
        self.bar.update(self.args.num_envs)

    def end_epoch(self, stats: dict) -> None:
        """The deterministic test, then the epoch's log (stats: the algorithm's numbers, TensorBoard losses/<name>)
        and the checkpoint on schedule. Raises ConfigError, writing nothing, when a parameter is not finite."""
        modules = {k: m for k, m in self.state.items() if isinstance(m, nn.Module)}
        bad = [f"{k} parameters" for k, m in modules.items() if not all(p.isfinite().all() for p in m.parameters())]
        if bad:
            rates = [k for k, v in asdict(self.args).items() if k.endswith("lr") and isinstance(v, float)]
            lrs = ", ".join(f"--{k.replace('_', '-')}" for k in rates)
            kept = f"checkpoint.pt of step {self.saved_step} kept" if self.saved_step is not None else "nothing saved"
            raise ConfigError(f"diverged at step {self.global_step}: {', '.join(bad)} not finite; lower {lrs} ({kept})")
        self.test_ret, test_len = evaluate(self.policy, self.test_envs, self.args.num_test_episodes, self.device)
        rets, lens = (float(np.mean(x)) if x else float("nan") for x in (self.ep_rets, self.ep_lens))
        elapsed = time.time() - self.start_time
        row = {"global_step": self.global_step, "epoch": self.global_step // self.args.steps_per_epoch}
        row |= {"episodes": self.episodes, "episodic_return": rets, "episodic_length": lens}
        row |= {"eval_episodic_return": float(np.mean(self.test_ret)), "eval_episodic_length": float(np.mean(test_len))}
        row |= {**stats, "time": elapsed, "SPS": int(self.global_step / elapsed)}
        for key, value in row.items():
            if key in self.TB_KEYS or key in stats:
                self.writer.add_scalar(self.TB_KEYS.get(key, f"losses/{key}"), value, self.global_step)
        with open(os.path.join(self.run_dir, "progress.csv"), "a") as f:  # a new file starts with the header
            f.write(("" if f.tell() else ",".join(row) + "\n") + ",".join(map(str, row.values())) + "\n")
        self.bar.write(self.line.format(**row))
        self.ep_rets, self.ep_lens = [], []
        if row["epoch"] % self.args.save_every == 0 or self.global_step == self.total_steps:
            self.save()

    def save(self) -> None:
        """checkpoint.pt (everything to resume), then policy.pt2 and policies/policy_<step>.pt2."""
        ckpt = {k: v.detach().cpu() if isinstance(v, torch.Tensor) else v.state_dict() for k, v in self.state.items()}
        rng = {"python": random.getstate(), "torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state()
        resumes = self.ckpt["resumes"] + [self.ckpt["global_step"]] if self.ckpt else []
        ckpt |= {"algo": self.algo, "epoch": self.global_step // self.args.steps_per_epoch, "resumes": resumes}
        ckpt |= {"global_step": self.global_step, "rng": rng, "time": time.time() - self.start_time, **self.extra}
        ckpt |= {"episodes": self.episodes, "recent": self.recent}  # the counts go on over a resume
        path = os.path.join(self.run_dir, "")
        torch.save(ckpt, path + "checkpoint.tmp")
        os.replace(path + "checkpoint.tmp", path + "checkpoint.pt")
        batch = torch.export.Dim("batch", min=1)  # any number of observations
        example, dims = (torch.zeros(2, self.obs_dim), torch.zeros(2, self.act_dim)), [{0: batch}] * 2
        program = torch.export.export(copy.deepcopy(self.policy).cpu().eval(), example, dynamic_shapes=dims)
        os.makedirs(path + "policies", exist_ok=True)
        torch.export.save(program, f"{path}policies/policy_{self.global_step}.pt2")
        torch.export.save(program, path + "policy.tmp.pt2")  # torch.export wants the .pt2 suffix
        os.replace(path + "policy.tmp.pt2", path + "policy.pt2")
        self.saved_step = self.global_step

    def metrics(self) -> dict:
        """What train() returns; episodic_return is the mean of recent_returns, the last 100 episodes' returns."""
        sps = int(self.global_step / max(time.time() - self.start_time, 1e-9))
        metrics = {"global_step": self.global_step, "epochs": self.global_step // self.args.steps_per_epoch}
        metrics |= {"episodes": self.episodes, "episodic_return": float(np.mean(self.recent or [np.nan]))}
        metrics |= {"recent_returns": self.recent, "eval_episodic_return": float(np.mean(self.test_ret))}
        return {**metrics, "run_dir": self.run_dir, "interrupted": self.stop, "SPS": sps}


def load_resume(args: Args) -> tuple[Args, dict]:
    """The Args saved in `args.resume` (but cuda, torch_threads, save_every and a given total_timesteps) and its
    checkpoint; ConfigError when they are unreadable."""
    try:
        with open(os.path.join(args.resume, "config.json")) as f:
            saved = {k: v for k, v in json.load(f)["args"].items() if k in Args.__dataclass_fields__}
        ckpt = torch.load(os.path.join(args.resume, "checkpoint.pt"), weights_only=True)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise ConfigError(f"cannot resume from {args.resume!r}: {e}") from None
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
