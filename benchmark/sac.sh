#!/usr/bin/env bash
# Train sac.py on the MuJoCo benchmark envs over seeds, in parallel, one torch thread per worker.
#   bash benchmark/sac.sh [SEEDS] [WORKERS] [ENVS...]
#   bash benchmark/sac.sh "1 2 3" 2 Hopper-v4 HalfCheetah-v4 Walker2d-v4   (the defaults)
# Runs go to benchmark/runs/sac; logs to benchmark/logs. Summarise with:
#   python plot.py benchmark/runs/sac --table --out benchmark/sac.png
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${1:-"1 2 3"}
WORKERS=${2:-2}
shift $(( $# > 2 ? 2 : $# )) || true
ENVS=${*:-"Hopper-v4 HalfCheetah-v4 Walker2d-v4"}
mkdir -p benchmark/logs benchmark/runs/sac
for seed in $SEEDS; do for env in $ENVS; do echo "$env $seed"; done; done |
  OMP_NUM_THREADS=1 xargs -P "$WORKERS" -L 1 sh -c \
    'python sac.py --env-id "$0" --seed "$1" --torch-threads 1 --data-dir benchmark/runs/sac > "benchmark/logs/sac_$0_$1.log" 2>&1 && echo "done $0 seed $1"'
