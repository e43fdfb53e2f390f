#!/usr/bin/env bash
# Train td3.py on the MuJoCo benchmark envs over seeds, in parallel, one torch thread per worker.
#   bash benchmark/td3.sh [SEEDS] [WORKERS] [ENVS...]
#   bash benchmark/td3.sh "1 2 3" 2 Hopper-v4 HalfCheetah-v4 Walker2d-v4   (the defaults)
# Runs go to benchmark/runs/td3; logs to benchmark/logs. Summarise with:
#   python plot.py benchmark/runs/td3 --table --out benchmark/td3.png
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${1:-"1 2 3"}
WORKERS=${2:-2}
shift $(( $# > 2 ? 2 : $# )) || true
ENVS=${*:-"Hopper-v4 HalfCheetah-v4 Walker2d-v4"}
mkdir -p benchmark/logs benchmark/runs/td3
for seed in $SEEDS; do for env in $ENVS; do echo "$env $seed"; done; done |
  OMP_NUM_THREADS=1 xargs -P "$WORKERS" -L 1 sh -c \
    'python td3.py --env-id "$0" --seed "$1" --torch-threads 1 --data-dir benchmark/runs/td3 > "benchmark/logs/td3_$0_$1.log" 2>&1 && echo "done $0 seed $1"'
