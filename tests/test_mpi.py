"""MPI data parallelism of the on-policy scripts, run under `mpiexec -n 2` (the mpich wheel's mpiexec)."""

import csv
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, run_script

MPI_SCRIPTS = ["ppo", "vpg", "trpo"]
MPIEXEC = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")
pytestmark = pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec: pip install -r requirements.txt provides it")


def mpiexec(mode: str, script: str, out_dir, n: int = 2) -> list[dict]:
    """Run tests/mpi_worker.py under mpiexec -n n; return each rank's result, ordered by rank."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    worker = os.path.join(ROOT, "tests", "mpi_worker.py")
    cmd = [MPIEXEC, "-n", str(n), sys.executable, worker, mode, script, str(out_dir)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return [json.load(open(os.path.join(out_dir, f"rank{r}.json"))) for r in range(n)]


@pytest.fixture(scope="module", params=MPI_SCRIPTS)
def mpi_run(request, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp(f"mpi_{request.param}")
    return request.param, out_dir / "runs", mpiexec("train", request.param, out_dir)


def test_ranks_hold_identical_parameters(mpi_run):
    _, _, results = mpi_run
    assert results[0]["checksum"] == results[1]["checksum"]


def test_only_rank_zero_writes_and_steps_add_up(mpi_run):
    _, data_dir, results = mpi_run
    runs = list(data_dir.iterdir())
    assert len(runs) == 1  # one run directory, written by rank 0
    assert json.load(open(runs[0] / "config.json"))["mpi_ranks"] == 2
    logged = [int(r["global_step"]) for r in csv.DictReader(open(runs[0] / "progress.csv"))]
    assert logged[-1] == results[0]["global_step"] == sum(r["env_steps"] for r in results) == 4096
    assert results[0]["env_steps"] == results[1]["env_steps"] == 2048  # each rank stepped its share
    assert torch.load(runs[0] / "checkpoint.pt", weights_only=True)["world"] == 2


def test_resume_with_another_number_of_ranks_is_refused(mpi_run):
    name, data_dir, _ = mpi_run
    result = run_script(f"{name}.py", "--resume", str(next(data_dir.iterdir())), "--no-cuda")
    assert result.returncode != 0 and "MPI ranks" in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("name", MPI_SCRIPTS)
def test_averaged_gradient_equals_full_batch_gradient(name, tmp_path):
    results = mpiexec("grad", name, tmp_path)
    assert all(r["max_abs_error"] < 1e-6 for r in results), results


@pytest.mark.parametrize("name", MPI_SCRIPTS)
def test_runs_without_mpi4py(name, tmp_path):
    """With mpi4py unimportable (and no mpiexec), the script trains single-process as before."""
    block = "import sys, runpy; sys.modules['mpi4py'] = None; sys.argv = sys.argv[1:]; "
    code = block + "runpy.run_path(sys.argv[0], run_name='__main__')"
    argv = [f"{name}.py", "--env-id", "CartPole-v1", "--total-timesteps", "2048", "--steps-per-epoch", "1024",
            "--num-envs", "4", "--data-dir", str(tmp_path), "--no-cuda"]  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code, *argv], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(list(tmp_path.iterdir())) == 1
