"""Run under `mpiexec -n K` by tests/test_mpi.py; prints one JSON line per rank.

python tests/mpi_worker.py train <script> <data_dir>   # a tiny run: parameter checksum, env steps taken
python tests/mpi_worker.py grad <script>               # averaged gradient vs the full-batch gradient
"""

import hashlib
import importlib
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class CountingEnvs:
    """The script's envs, counting every env step taken."""

    steps = 0

    def __init__(self, envs):
        self.envs = envs

    def __getattr__(self, name):
        return getattr(self.envs, name)

    def step(self, act):
        CountingEnvs.steps += len(act)
        return self.envs.step(act)


def train(module, data_dir: str) -> dict:
    """Train briefly; record every network the script builds and every env step it takes."""
    modules = []
    for name in ("Actor", "mlp"):  # wrap the constructors to keep the networks
        original = getattr(module, name)
        setattr(module, name, lambda *a, _f=original, **k: modules.append(_f(*a, **k)) or modules[-1])
    make_envs = module.make_envs
    module.make_envs = lambda *a, **k: CountingEnvs(make_envs(*a, **k))
    args = module.Args(env_id="CartPole-v1", total_timesteps=4096, steps_per_epoch=1024, num_envs=4,
                       data_dir=data_dir, cuda=False)  # fmt: skip
    metrics = module.train(args)
    digest = hashlib.sha256()
    for net in modules:
        for tensor in net.state_dict().values():
            digest.update(tensor.detach().cpu().numpy().tobytes())
    return {"checksum": digest.hexdigest(), "env_steps": CountingEnvs.steps, "global_step": metrics["global_step"]}


def grad(module) -> dict:
    """Each rank takes half of a fixed batch; compare the MPI-averaged gradient to the full-batch one."""
    comm = module.mpi_comm()
    rank, world = comm.Get_rank(), comm.Get_size()
    torch.manual_seed(0)  # the same network and batch on every rank
    net = module.mlp([5, 16, 16, 2])
    x, y = torch.randn(8 * world, 5), torch.randn(8 * world, 2)
    loss = lambda xb, yb: (net(xb) - yb).pow(2).mean()  # noqa: E731
    full = torch.autograd.grad(loss(x, y), list(net.parameters()))
    net.zero_grad()
    loss(x[rank * 8 : (rank + 1) * 8], y[rank * 8 : (rank + 1) * 8]).backward()
    module.mpi_average_grads(comm, list(net.parameters()))
    err = max((p.grad - g).abs().max().item() for p, g in zip(net.parameters(), full, strict=True))
    return {"max_abs_error": err}


if __name__ == "__main__":
    mode, script, out_dir = sys.argv[1:4]
    module = importlib.import_module(script)
    result = train(module, os.path.join(out_dir, "runs")) if mode == "train" else grad(module)
    rank = module.mpi_comm().Get_rank() if module.mpi_comm() is not None else 0
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump({"rank": rank, **result}, f)
