#!/usr/bin/env bash
# MPI scaling of an on-policy script at a fixed global batch: steps per second and return for 1, 2, 4, ... ranks.
#   bash benchmark/mpi_scaling.sh [SCRIPT] [RANKS] [TOTAL_TIMESTEPS] [ENV]
#   bash benchmark/mpi_scaling.sh ppo "1 2" 1000000 Hopper-v4          (the defaults; a 2-core machine)
#   bash benchmark/mpi_scaling.sh ppo "1 2 4 8 16" 1000000 Hopper-v4   (a 16-core machine)
# The global batch stays at --steps-per-epoch 4000 with 16 envs in all: num_envs per rank = 16 / ranks.
# Prints a markdown table: ranks, SPS (mean over the run, as logged in charts/SPS), scaling efficiency
# (SPS_n / (n * SPS_1)), mean return of the last 100 episodes (from TensorBoard).
set -euo pipefail
cd "$(dirname "$0")/.."
SCRIPT=${1:-ppo}
RANKS=${2:-"1 2"}
TOTAL=${3:-1000000}
ENV=${4:-Hopper-v4}
OUT=benchmark/runs/mpi_scaling
mkdir -p "$OUT" benchmark/logs
echo "| ranks | envs per rank | SPS | efficiency | return (last 100 episodes) |"
echo "|---|---|---|---|---|"
base=""
for n in $RANKS; do
  envs=$(( 16 / n > 0 ? 16 / n : 1 ))
  OMP_NUM_THREADS=1 mpiexec -n "$n" python "$SCRIPT.py" --env-id "$ENV" --total-timesteps "$TOTAL" \
    --num-envs "$envs" --steps-per-epoch 4000 --exp-name "${SCRIPT}_mpi$n" --data-dir "$OUT" --no-cuda \
    > "benchmark/logs/${SCRIPT}_mpi$n.log" 2>&1
  run=$(ls -dt "$OUT"/"$ENV"__"${SCRIPT}_mpi$n"__* | head -1)
  python - "$run" "$n" "$envs" "${base:-0}" <<'PY'
import csv, sys
import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
run, n, envs, base = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
sps = float(list(csv.DictReader(open(f"{run}/progress.csv")))[-1]["SPS"])
acc = EventAccumulator(run, size_guidance={"scalars": 0})
acc.Reload()
ret = np.mean([e.value for e in acc.Scalars("charts/episodic_return")][-100:])
eff = sps / (n * base) if base else 1.0
print(f"| {n} | {envs} | {sps:.0f} | {eff:.0%} | {ret:.0f} |")
open("/tmp/.mpi_scaling_base", "w").write(str(sps if n == 1 else base))
PY
  base=$(cat /tmp/.mpi_scaling_base)
done
