#!/usr/bin/env bash
# Learning-phase speed of ddpg.py, td3.py and sac.py on Hopper-v4, comparable to the CleanRL numbers in
# shared/notes/anchors.md: 5,000 random steps, then one gradient step per env step. The SPS printed is
# (env steps) / (wall seconds) from the end of the first epoch to the end of the run, test episodes
# (one per epoch) included. Run it on a quiet machine, one script at a time.
#   bash benchmark/offpolicy_speed.sh [TOTAL_STEPS] [EXTRA FLAGS...]
#   bash benchmark/offpolicy_speed.sh 20000 --batch-size 100 --torch-threads 2
set -euo pipefail
cd "$(dirname "$0")/.."
TOTAL=${1:-20000}
shift $(( $# > 0 ? 1 : 0 )) || true
OUT=$(mktemp -d)
for algo in ddpg td3 sac; do
  python "$algo.py" --env-id Hopper-v4 --total-timesteps "$TOTAL" --steps-per-epoch 5000 --start-steps 5000 \
    --update-after 5000 --num-test-episodes 1 --no-cuda --data-dir "$OUT/$algo" "$@" > "$OUT/$algo.log" 2>&1
  python - "$OUT/$algo" "$algo" "$*" <<'EOF'
import csv, glob, sys
rows = list(csv.DictReader(open(glob.glob(f"{sys.argv[1]}/*/progress.csv")[0])))
(s0, t0), (s1, t1) = [(int(r["global_step"]), float(r["time"])) for r in (rows[0], rows[-1])]
print(f"{sys.argv[2]} {sys.argv[3]}: {(s1 - s0) / (t1 - t0):.0f} env steps/s in the learning phase ({s1 - s0} steps)")
EOF
done
rm -rf "$OUT"
