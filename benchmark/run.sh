#!/usr/bin/env bash
# Train one algorithm script on the MuJoCo benchmark envs over seeds, WORKERS runs at a time, one torch
# thread per run. Each benchmark/<algo>.sh calls this with its algorithm's name.
#   bash benchmark/run.sh ALGO [SEEDS] [WORKERS] [ENVS...]
#   bash benchmark/run.sh ppo "1 2 3" 2 Hopper-v4 HalfCheetah-v4 Walker2d-v4   (the defaults after ALGO)
# Runs go to benchmark/runs/ALGO; logs to benchmark/logs/ALGO_<env>_<seed>.log. Summarise with:
#   python plot.py benchmark/runs/ALGO --table --out benchmark/ALGO.png
set -euo pipefail
cd "$(dirname "$0")/.."
ALGO=$1
SEEDS=${2:-"1 2 3"}
WORKERS=${3:-2}
shift $(( $# > 3 ? 3 : $# )) || true
ENVS=${*:-"Hopper-v4 HalfCheetah-v4 Walker2d-v4"}
mkdir -p benchmark/logs "benchmark/runs/$ALGO"
for seed in $SEEDS; do for env in $ENVS; do echo "$ALGO $env $seed"; done; done |
  OMP_NUM_THREADS=1 xargs -P "$WORKERS" -L 1 sh -c \
    'python "$0.py" --env-id "$1" --seed "$2" --torch-threads 1 --data-dir "benchmark/runs/$0" \
       > "benchmark/logs/$0_$1_$2.log" 2>&1 && echo "done $0 $1 seed $2"'
