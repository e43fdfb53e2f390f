"""Run a trained policy from a run directory: per-episode returns, and optionally a video or a window.

Works on the run directory that every algorithm script writes (config.json and the exported policy
policy.pt2, plus snapshots policies/policy_<global_step>.pt2). It imports no algorithm script, so it
keeps working when the training script is edited or moved, and it loads nothing that can run code:
config.json is JSON, and the policy archive is checked against an allow-list (tensors stored as raw
bytes, a graph of ATen ops only, symbolic shapes and guards of a fixed form) before torch.export
reads it. checkpoint.pt (a pickle) is never opened.

The env is rebuilt from config.json (`env_id`, `max_episode_steps`) with envpool, as in training
(gymnasium for ids envpool does not know), with its own seeds: by default the training seed with
the evaluation stream 1000, disjoint from the streams of training (0), of the scripts' own test
episodes (1) and of resumes (2 + k). Each episode ends at `terminated or truncated` (or at --len);
the single env is then reset explicitly, so envpool's next-step autoreset never plays a hidden step.

Frames (--video, --render) come from envpool's own renderer, on the very env the policy acts in,
so the physics the policy sees is the one it was trained on (returns with and without --video are
the same). On Linux envpool 1.2.5 always renders through EGL and ignores MUJOCO_GL; its MuJoCo finds
the GL functions only through a GL platform library loaded process-wide, which the EGL library
bundled in envpool's wheel is not. This script therefore loads the system's libEGL.so.1 with
RTLD_GLOBAL before it imports envpool (see `load_gl`). A headless Debian/Ubuntu machine needs the
packages libegl1, libegl-mesa0 and libgl1-mesa-dri (software rendering; a GPU driver's EGL works
too); OSMesa (libosmesa6) is not used by envpool. A GIF keeps every k-th frame, k = ceil(fps / 50),
as GIF viewers slow down shorter frame delays.

Usage:
    python test_policy.py runs/<run dir>                          # 10 deterministic episodes
    python test_policy.py runs/<run dir> --stochastic --episodes 5 --len 500
    python test_policy.py runs/<run dir> --itr 40960              # policies/policy_40960.pt2
    python test_policy.py runs/<run dir> --video hopper.mp4       # headless; the first episode
    python test_policy.py runs/<run dir> --render                 # a window, where a display exists
"""

import ctypes
import io
import json
import math
import os
import re
import sys
import time
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Optional

import gymnasium as gym
import numpy as np
import torch
import tyro

EVAL_STREAM = 1000
"""seed stream of test_policy (the scripts use 0 for training, 1 for their test episodes, 2 + k for resumes)"""

ActionMode = tyro.conf.create_mutex_group(required=False, title="actions (one of)")


@dataclass
class Args:
    run_dir: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="RUN_DIR")]
    """run directory written by a training script: <data_dir>/<env_id>__<exp_name>__<seed>__<time>"""
    episodes: int = 10
    """number of episodes to run"""
    len: Optional[int] = None
    """cap on the episode length in steps (None: the env's own time limit, as in training)"""
    deterministic: Annotated[
        bool, ActionMode, tyro.conf.FlagCreatePairsOff, tyro.conf.arg(help_behavior_hint="(the default)")
    ] = False
    """act deterministically: the mean action (Box) or the most likely one (Discrete)"""
    stochastic: Annotated[bool, ActionMode, tyro.conf.FlagCreatePairsOff] = False
    """sample actions from the policy: noise ~ N(0, 1) (Box) or standard Gumbel (Discrete)"""
    itr: Optional[int] = None
    """global step of a saved snapshot, policies/policy_<itr>.pt2 (None: policy.pt2, the latest)"""
    seed: Optional[int] = None
    """base seed of the env and the action noise, used with the evaluation stream 1000 (None: the run's seed)"""
    video: Optional[str] = None
    """write the first episode to this .mp4 or .gif file with envpool's renderer (headless: EGL)"""
    render: bool = False
    """show every episode in a window (needs a display)"""
    fps: Optional[float] = None
    """frames per second of the video and the window (None: the env's real time, from gymnasium's metadata)"""
    width: Optional[int] = None
    """frame width in pixels (None: the env's default, 480 for MuJoCo)"""
    height: Optional[int] = None
    """frame height in pixels (None: the env's default, 480 for MuJoCo)"""


class RunError(ValueError):
    """Bad input (missing or incomplete run, corrupt or unsafe policy, no GL): one line, exit code 2."""


# ------------------------------------------------------------------ the run directory
def load_config(run_dir: str) -> dict:
    """Read `run_dir`/config.json and check the fields test_policy needs.

    Returns the parsed dict (keys "algo", "args", "policy"). Raises RunError when the directory does
    not exist, is not a run directory or has a config without args.env_id or the policy section.
    """
    if not os.path.exists(run_dir):
        raise RunError(f"no such run directory: {run_dir}")
    if not os.path.isdir(run_dir):
        raise RunError(f"{run_dir} is not a directory; give a run directory (<data_dir>/<env_id>__<exp_name>__...)")
    path = os.path.join(run_dir, "config.json")
    if not os.path.exists(path):
        raise RunError(f"{run_dir} is not a run directory (it has no config.json)")
    try:
        with open(path) as f:
            config = json.load(f)
        args, spec = config["args"], config["policy"]
        if not isinstance(args["env_id"], str) or not isinstance(args["seed"], int):
            raise ValueError("args.env_id must be a string and args.seed an integer")
        if not isinstance(spec["file"], str) or spec["noise"] not in ("normal", "gumbel"):
            raise ValueError(f"policy.file {spec['file']!r} or policy.noise {spec['noise']!r}")
        spec["obs_dim"], spec["noise_dim"] = int(spec["obs_dim"]), int(spec["noise_dim"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise RunError(f"{path} is not a valid run config: {type(e).__name__}: {e}") from None
    return config


def policy_path(run_dir: str, config: dict, itr: Optional[int] = None) -> str:
    """Path of the policy artifact: policy.pt2, or the snapshot policies/policy_<itr>.pt2.

    Raises RunError when the run has saved no policy yet, or when snapshot `itr` does not exist
    (the message lists the saved global steps).
    """
    if itr is None:
        path = os.path.join(run_dir, config["policy"]["file"])
        if not os.path.exists(path):
            raise RunError(
                f"{run_dir} has no saved policy yet ({config['policy']['file']} is missing): a run saves it "
                "every --save-every epochs and at the end"
            )
        return path
    path = os.path.join(run_dir, "policies", f"policy_{itr}.pt2")
    if not os.path.exists(path):
        folder = os.path.join(run_dir, "policies")
        names = os.listdir(folder) if os.path.isdir(folder) else []
        saved = sorted(int(m.group(1)) for n in names if (m := re.fullmatch(r"policy_(\d+)\.pt2", n)))
        raise RunError(f"no snapshot at --itr {itr} in {run_dir}; saved steps: {', '.join(map(str, saved)) or 'none'}")
    return path


# ------------------------------------------------------------------ loading the policy safely
_ARCHIVE_FILES = re.compile(
    r"(archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id|models/model\.json"
    r"|data/weights/model_weights_config\.json|data/weights/weight_\d+|data/constants/model_constants_config\.json"
    r"|data/constants/tensor_\d+|data/sample_inputs/model\.pt)"
)
_SYMPY_NAMES = {"Symbol", "Integer", "Add", "Mul", "Pow", "Rational", "positive", "integer", "True", "False"}
_SYMPY_NAMES |= {"FloorDiv", "Mod", "PythonMod", "CleanDiv", "CeilDiv", "ModularIndexing", "Max", "Min"}
_GUARD_SIZE = r"L\['[A-Za-z_]\w*'\]\.size\(\)\[\d+\]"
_GUARD = re.compile(rf"{_GUARD_SIZE} (==|!=|<=|>=|<|>) ({_GUARD_SIZE}|-?\d+)")
_NAME_KEYS = {"name", "parameter_name", "buffer_name", "tensor_constant_name", "custom_obj_name"}
_DENIED_KEYS = {"as_custom_obj", "as_custom_objs", "as_graph", "as_operator", "as_operators"}


def _check_expr(expr: str) -> None:
    """Allow only sympy constructors, integers and symbol names like s0: sympify() evaluates the string as Python."""
    rest = re.sub(r"'[A-Za-z_]\w*'", "0", expr)
    if not re.fullmatch(r"[\w\s(),=+\-*/]*", rest) or "__" in rest:
        raise ValueError(f"symbolic shape {expr!r}")
    bad = {n for n in re.findall(r"[A-Za-z_]\w*", rest) if n not in _SYMPY_NAMES and not re.fullmatch(r"[a-z]\d+", n)}
    if bad:
        raise ValueError(f"symbolic shape {expr!r} uses {sorted(bad)}")


def _check_program(obj, key: str = "") -> None:
    """Walk models/model.json: ATen op targets, plain names, safe expressions and guards only."""
    if isinstance(obj, dict):
        if _DENIED_KEYS & obj.keys():
            raise ValueError(f"argument kind {sorted(_DENIED_KEYS & obj.keys())}")
        for k, v in obj.items():
            if k == "target" and isinstance(v, str):
                if not (v.startswith("torch.ops.aten.") or v == "_operator.getitem"):
                    raise ValueError(f"operator {v!r} (only torch.ops.aten ops are allowed)")
            elif k == "guards_code":
                for g in v:
                    if not _GUARD.fullmatch(g):
                        raise ValueError(f"guard {g!r}")
            elif k == "custom_obj_values" and v:
                raise ValueError("custom objects")
            else:
                _check_program(v, k)
    elif isinstance(obj, list):
        for v in obj:
            _check_program(v, key)
    elif isinstance(obj, str):
        if key == "expr_str":
            _check_expr(obj)
        elif key in _NAME_KEYS and (not re.fullmatch(r"[A-Za-z0-9_.]+", obj) or "__" in obj):
            raise ValueError(f"name {obj!r}")


def safe_archive(data: bytes) -> io.BytesIO:
    """Check a torch.export archive (the bytes of a .pt2 file) and return a sanitised copy to load.

    torch.export.load unpickles some payloads (legacy weights, tensor subclasses, custom objects,
    and the sample inputs when the safe unpickler fails), evaluates symbolic shapes with sympify,
    exec()s the guards and may load compiled AOTInductor libraries. This accepts only what the
    training scripts write: the known files, every tensor stored as raw bytes, sample inputs that
    torch.load(weights_only=True) reads, ATen ops, integer symbolic shapes and size guards. Node
    metadata (debug stack traces, copied into generated source as comments) is dropped.
    Raises ValueError naming the first thing that is not allowed.
    """
    try:
        zin = zipfile.ZipFile(io.BytesIO(data))
        names = [i.filename for i in zin.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError) as e:
        raise ValueError(f"not a torch.export archive ({e})") from None
    roots = {n.split("/", 1)[0] for n in names}
    if len(roots) != 1 or any("/" not in n for n in names):
        raise ValueError("not a torch.export archive (expected one top-level folder)")
    root = roots.pop()
    for n in names:
        if not _ARCHIVE_FILES.fullmatch(n[len(root) + 1 :]):
            raise ValueError(f"unexpected file {n!r} in the archive")
    try:
        for kind in ("weights", "constants"):
            config = json.loads(zin.read(f"{root}/data/{kind}/model_{kind}_config.json"))["config"]
            for fqn, meta in config.items():
                if meta.get("use_pickle") or not re.fullmatch(r"(weight|tensor)_\d+", meta.get("path_name", "")):
                    raise ValueError(f"{kind} entry {fqn!r} is not stored as raw tensor bytes")
        sample_inputs = zin.read(f"{root}/data/sample_inputs/model.pt")
        program = json.loads(zin.read(f"{root}/models/model.json"))
        _check_program(program)
        for node in program["graph_module"]["graph"]["nodes"]:
            node["metadata"] = {}
    except KeyError as e:
        raise ValueError(f"incomplete archive (no {e})") from None
    except (json.JSONDecodeError, zipfile.BadZipFile, OSError, EOFError, TypeError, AttributeError) as e:
        raise ValueError(f"damaged archive ({type(e).__name__}: {e})") from None
    try:  # torch.export.load would retry a failure here with the full unpickler
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.load(io.BytesIO(sample_inputs), weights_only=True)
    except Exception as e:  # [impl] UnpicklingError, RuntimeError, EOFError...
        raise ValueError(f"sample inputs that are not plain tensors ({type(e).__name__})") from None
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zout:
        for n in names:
            body = json.dumps(program).encode() if n.endswith("models/model.json") else zin.read(n)
            zout.writestr(n, body)
    out.seek(0)
    return out


def load_policy(path: str) -> torch.nn.Module:
    """Load an exported policy `act = policy(obs[B, obs_dim] float32, noise[B, noise_dim] float32)`.

    The file is read once, checked by `safe_archive`, then given to torch.export.load; nothing in it
    is unpickled or executed beyond the checked graph. Raises RunError for a damaged or unsafe file.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
        archive = safe_archive(data)
    except (OSError, ValueError) as e:
        raise RunError(f"cannot load {path}: {e}") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.export.load(archive).module()
    except Exception as e:  # [impl] torch raises many types on a damaged graph
        raise RunError(f"cannot load {path}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None


# ------------------------------------------------------------------ environment and rendering
def load_gl() -> None:
    """Make envpool's MuJoCo renderer find OpenGL: load libEGL.so.1 process-wide (Linux only).

    envpool 1.2.5 creates its own EGL context, but MuJoCo then looks up the GL functions through a
    platform library loaded with RTLD_GLOBAL; the renamed libEGL bundled in envpool's wheel is
    loaded locally, so render() aborts the process with "an OpenGL platform library has not been
    loaded into this process". Loading the system libEGL first fixes it. Must run before envpool is
    imported (afterwards MuJoCo aborts with "gladLoadGL error"); raises RunError if it is too late
    or libEGL is missing.
    """
    if not sys.platform.startswith("linux"):
        return
    if "envpool" in sys.modules:
        raise RunError("rendering needs libEGL loaded before envpool is imported: run test_policy.py as a program")
    try:
        ctypes.CDLL("libEGL.so.1", mode=ctypes.RTLD_GLOBAL)
    except OSError as e:
        raise RunError(
            f"rendering needs EGL ({e}); on Debian/Ubuntu: apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri"
        ) from None


class SingleEnv:
    """One env of `env_id` without a batch dimension: reset() -> obs, step(act) -> (obs, rew, done), render().

    Wraps envpool (a pool of one env in sync mode) or, for ids envpool does not know, gymnasium.
    obs is float32 [obs_dim]; done = terminated or truncated; render() gives uint8 [H, W, 3].
    """

    def __init__(self, env_id: str, seed: int, max_episode_steps: Optional[int], render: bool, size: dict):
        if render:
            load_gl()
        import envpool  # [impl] imported here, after load_gl(): the GL library must come first

        warnings.filterwarnings("ignore", message=".*precision lowered by casting.*")  # [impl] envpool's float32 Box
        kw = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
        self.envpool = env_id in envpool.list_all_envs()
        if self.envpool:
            if render:
                kw.update(render_mode="rgb_array", **{f"render_{k}": v for k, v in size.items()})
            self.env = envpool.make_gymnasium(env_id, num_envs=1, batch_size=1, seed=[seed], **kw)
        elif env_id in gym.registry:
            if render and not os.environ.get("DISPLAY"):
                os.environ.setdefault("MUJOCO_GL", "egl")  # [impl] gymnasium's MuJoCo renderer reads MUJOCO_GL
            self.env = gym.make(env_id, render_mode="rgb_array" if render else None, **kw, **size)
        else:
            raise RunError(f"unknown env id {env_id!r} (neither envpool nor gymnasium knows it)")
        self.seed = seed
        self.observation_space, self.action_space = self.env.observation_space, self.env.action_space

    def reset(self) -> np.ndarray:
        if self.envpool:
            obs = self.env.reset()[0][0]
        else:  # the first reset seeds the env; later ones continue its RNG, as envpool does
            obs = self.env.reset(seed=self.seed)[0]
            self.seed = None
        return np.asarray(obs, dtype=np.float32).reshape(-1)

    def step(self, act: np.ndarray) -> tuple[np.ndarray, float, bool]:
        obs, rew, term, trunc, _ = self.env.step(act[None] if self.envpool else act)
        if self.envpool:
            obs, rew, term, trunc = obs[0], rew[0], term[0], trunc[0]
        return np.asarray(obs, dtype=np.float32).reshape(-1), float(rew), bool(term or trunc)

    def render(self) -> np.ndarray:
        try:
            frame = self.env.render()
        except Exception as e:  # [impl] GL failures surface as RuntimeError, ImportError, mujoco errors...
            raise RunError(
                f"cannot render ({type(e).__name__}: {e}); headless rendering needs EGL: on Debian/Ubuntu "
                "apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri"
            ) from None
        return np.asarray(frame[0] if self.envpool else frame)

    def close(self) -> None:
        self.env.close()


def real_time_fps(env_id: str) -> float:
    """Frames per second of real time: gymnasium's `render_fps` for the same id (Hopper-v4: 125), else 30."""
    try:
        from gymnasium.envs.registration import load_env_creator

        fps = load_env_creator(gym.spec(env_id).entry_point).metadata.get("render_fps")
    except Exception:  # [impl] an id gymnasium does not know, or an env class that cannot be imported
        fps = None
    return float(fps) if fps else 30.0


class VideoWriter:
    """Stream frames to an .mp4 (ffmpeg, H.264) or .gif (Pillow) file with imageio.

    GIF delays are whole hundredths of a second and viewers slow down delays under 0.02 s, so a GIF
    keeps every k-th frame, k = ceil(fps / 50); Pillow also merges identical consecutive frames.
    """

    def __init__(self, path: str, fps: float):
        import imageio

        ext = os.path.splitext(path)[1].lower()
        self.every = math.ceil(fps / 50) if ext == ".gif" else 1
        self.count, self.written = 0, 0
        try:
            if ext == ".gif":
                self.writer = imageio.get_writer(path, duration=1000 * self.every / fps, loop=0)
            else:
                self.writer = imageio.get_writer(path, fps=fps, macro_block_size=1)
        except Exception as e:  # [impl] a bad folder, a missing ffmpeg
            raise RunError(f"cannot write {path}: {e}") from None

    def __call__(self, frame: np.ndarray) -> None:
        if self.count % self.every == 0:
            self.writer.append_data(frame)
            self.written += 1
        self.count += 1

    def close(self) -> None:
        self.writer.close()


class Window:
    """Show frames in a matplotlib window at about `fps` frames per second (needs a display)."""

    def __init__(self, title: str, fps: float):
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise RunError("--render needs a display (DISPLAY is not set); use --video out.mp4 on a headless machine")
        import matplotlib.pyplot as plt

        self.plt, self.title, self.dt, self.image, self.last = plt, title, 1.0 / fps, None, 0.0

    def __call__(self, frame: np.ndarray) -> None:
        if self.image is None:
            fig, ax = self.plt.subplots(num=self.title)
            ax.set_axis_off()
            self.image = ax.imshow(frame)
            fig.tight_layout()
            self.plt.show(block=False)
        elif not self.plt.fignum_exists(self.image.figure.number):
            return  # [impl] the window was closed: keep evaluating without showing
        self.image.set_data(frame)
        self.plt.pause(max(1e-3, self.dt - (time.time() - self.last)))
        self.last = time.time()

    def close(self) -> None:
        if self.image is not None:
            self.plt.close(self.image.figure)


# ------------------------------------------------------------------ evaluation
def run_episodes(
    policy: Callable,
    env: SingleEnv,
    noise: str,
    noise_dim: int,
    episodes: int,
    deterministic: bool,
    rng: np.random.Generator,
    max_len: Optional[int] = None,
    on_frame: Optional[Callable[[int, np.ndarray], None]] = None,
) -> tuple[list[float], list[int]]:
    """Run `episodes` episodes of `policy` in `env`; return (returns, lengths), one entry per episode.

    noise: "normal" (Box actions: noise ~ N(0, 1)) or "gumbel" (Discrete: standard Gumbel); zeros
    when `deterministic`. An episode ends at terminated or truncated, or after `max_len` steps.
    on_frame(episode, frame) is called with each frame: after the reset, then after every step.
    """
    returns, lengths = [], []
    for ep in range(episodes):
        obs, ep_ret, ep_len, done = env.reset(), 0.0, 0, False
        if on_frame is not None:
            on_frame(ep, env.render())
        while not done and (max_len is None or ep_len < max_len):
            if deterministic:
                eps = np.zeros((1, noise_dim), dtype=np.float32)
            elif noise == "normal":
                eps = rng.standard_normal((1, noise_dim), dtype=np.float32)
            else:
                eps = rng.gumbel(size=(1, noise_dim)).astype(np.float32)
            with torch.inference_mode():
                act = policy(torch.from_numpy(obs[None]), torch.from_numpy(eps))[0].numpy()
            obs, rew, done = env.step(act if noise == "gumbel" else act.astype(np.float64))
            ep_ret, ep_len = ep_ret + rew, ep_len + 1
            if on_frame is not None:
                on_frame(ep, env.render())
        returns.append(ep_ret)
        lengths.append(ep_len)
    return returns, lengths


def evaluate(args: Args) -> dict:
    """Load the run's policy, run `args.episodes` episodes and print each and a summary.

    Returns a dict: returns, lengths (lists, one per episode), mean, std, min, max (of the returns),
    env_seed, deterministic, policy (the file used), video (path or None), frames (video frames
    written). Raises RunError on bad input.
    """
    if args.deterministic and args.stochastic:
        raise RunError("--deterministic and --stochastic exclude each other")
    for name in ("episodes", "len", "fps", "width", "height"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            raise RunError(f"--{name} must be positive, got {getattr(args, name)}")
    if args.video is not None and os.path.splitext(args.video)[1].lower() not in (".mp4", ".gif"):
        raise RunError(f"--video must end in .mp4 or .gif, got {args.video!r}")
    run_dir = args.run_dir.rstrip("/") or "/"
    config = load_config(run_dir)
    path = policy_path(run_dir, config, args.itr)
    policy, spec, train = load_policy(path), config["policy"], config["args"]
    torch.set_num_threads(1)  # [impl] a small MLP runs fastest on one thread
    fps = args.fps or real_time_fps(train["env_id"])
    window = Window(f"{os.path.basename(run_dir)} ({os.path.basename(path)})", fps) if args.render else None
    base = train["seed"] if args.seed is None else args.seed
    env_seed = int(np.random.SeedSequence([base, EVAL_STREAM]).generate_state(1)[0] % 2**31)
    rng = np.random.default_rng([base, EVAL_STREAM, 1])
    size = {k: v for k, v in (("width", args.width), ("height", args.height)) if v is not None}
    env = SingleEnv(train["env_id"], env_seed, train.get("max_episode_steps"), bool(args.video or window), size)
    video = None
    try:
        obs_dim = int(np.prod(env.observation_space.shape))
        if obs_dim != spec["obs_dim"]:
            raise RunError(f"{train['env_id']} has {obs_dim}-dim observations, the policy expects {spec['obs_dim']}")
        video = VideoWriter(args.video, fps) if args.video is not None else None

        def on_frame(ep: int, frame: np.ndarray) -> None:
            if video is not None and ep == 0:
                video(frame)
            if window is not None:
                window(frame)

        returns, lengths = run_episodes(
            policy,
            env,
            spec["noise"],
            spec["noise_dim"],
            args.episodes,
            not args.stochastic,
            rng,
            args.len,
            on_frame if video or window else None,
        )
    finally:
        for sink in (video, window):
            if sink is not None:
                sink.close()
        env.close()
    for i, (r, n) in enumerate(zip(returns, lengths, strict=True)):
        print(f"episode {i + 1:3d}: return {r:10.2f}  length {n:5d}")
    print(
        f"{len(returns)} {'stochastic' if args.stochastic else 'deterministic'} episodes of "
        f"{os.path.basename(path)} on {train['env_id']} (env seed {env_seed}): return {np.mean(returns):.2f} "
        f"± {np.std(returns):.2f} (std), min {np.min(returns):.2f}, max {np.max(returns):.2f}; "
        f"length {np.mean(lengths):.1f}"
    )
    if video is not None:
        print(f"video: {args.video} ({video.written} frames at {fps / video.every:.4g} fps)")
    return {
        "returns": returns,
        "lengths": lengths,
        "mean": float(np.mean(returns)),
        "std": float(np.std(returns)),
        "min": float(np.min(returns)),
        "max": float(np.max(returns)),
        "env_seed": env_seed,
        "deterministic": not args.stochastic,
        "policy": path,
        "video": args.video,
        "frames": video.written if video is not None else 0,
    }


def main(argv: Optional[list[str]] = None) -> int:
    """Command-line entry: parse `argv` (default sys.argv[1:]), evaluate; 0 on success, 2 on bad input."""
    args = tyro.cli(Args, args=argv)
    try:
        evaluate(args)
    except RunError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
