#!/usr/bin/env bash
# ddpg.py on Hopper-v4, HalfCheetah-v4 and Walker2d-v4 over seeds: bash benchmark/ddpg.sh [SEEDS] [WORKERS] [ENVS...]
# (see benchmark/run.sh; e.g. bash benchmark/ddpg.sh "1 2 3" 1 Hopper-v4)
# --save-buffer: a run stopped with Ctrl-C resumes with its replay buffer (python ddpg.py --resume RUN_DIR)
FLAGS=${FLAGS:-"--save-buffer"} exec bash "$(dirname "$0")/run.sh" ddpg "$@"
