#!/usr/bin/env bash
# Train one algorithm script on the MuJoCo benchmark envs over seeds, WORKERS runs at a time: one torch
# thread per run when WORKERS > 1, the script's own default (--torch-threads) when WORKERS = 1. Each benchmark/<algo>.sh calls this with its algorithm's name.
#   bash benchmark/run.sh ALGO [SEEDS] [WORKERS] [ENVS...]
#   bash benchmark/run.sh ppo "1 2 3" 2 Hopper-v4 HalfCheetah-v4 Walker2d-v4   (the defaults after ALGO)
# Extra flags for every run go in the FLAGS environment variable (the off-policy wrappers set
# FLAGS=--save-buffer so that a stopped run resumes with its replay buffer).
# Runs go to benchmark/runs/ALGO; logs to benchmark/logs/ALGO_<env>_<seed>.log. Summarise with:
#   python plot.py benchmark/runs/ALGO --table --out benchmark/ALGO.png
set -euo pipefail
cd "$(dirname "$0")/.."
ALGO=$1
SEEDS=${2:-"1 2 3"}
WORKERS=${3:-2}
shift $(( $# > 3 ? 3 : $# )) || true
ENVS=${*:-"Hopper-v4 HalfCheetah-v4 Walker2d-v4"}
export FLAGS=${FLAGS:-}
export THREAD_FLAG=""  # one run at a time: the script's own --torch-threads default
[ "$WORKERS" -gt 1 ] && THREAD_FLAG="--torch-threads 1"
mkdir -p benchmark/logs "benchmark/runs/$ALGO"
for seed in $SEEDS; do for env in $ENVS; do echo "$ALGO $env $seed"; done; done |
  xargs -P "$WORKERS" -L 1 sh -c \
    'python "$0.py" --env-id "$1" --seed "$2" $THREAD_FLAG $FLAGS --data-dir "benchmark/runs/$0" \
       > "benchmark/logs/$0_$1_$2.log" 2>&1 && echo "done $0 $1 seed $2"'
