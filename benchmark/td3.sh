#!/usr/bin/env bash
# td3.py on Hopper-v4, HalfCheetah-v4 and Walker2d-v4 over seeds: bash benchmark/td3.sh [SEEDS] [WORKERS] [ENVS...]
# (see benchmark/run.sh; e.g. bash benchmark/td3.sh "1 2 3" 1 Hopper-v4)
# --save-buffer: a run stopped with Ctrl-C resumes with its replay buffer (python td3.py --resume RUN_DIR)
FLAGS=${FLAGS:-"--save-buffer"} exec bash "$(dirname "$0")/run.sh" td3 "$@"
