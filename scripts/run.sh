#!/usr/bin/env bash
# The main job, end to end on real data: embed (cached) -> train -> evaluate -> report.
#   bash scripts/run.sh                 # Amazon Beauty from ../shared/data/beauty
#   bash scripts/run.sh --data PATH     # any dataset in a supported format
#   bash scripts/run.sh --quick         # a short run to see the pipeline finish
# Extra arguments go to `llmesr train` (e.g. --set loss=bce). Runs resume when rerun.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
data=beauty quick=() rest=()
while [ $# -gt 0 ]; do
  case "$1" in
    --data) data="$2"; shift 2 ;;
    --quick) quick=(--set epochs=5); shift ;;
    *) rest+=("$1"); shift ;;
  esac
done
name="$(basename "$data")"
.venv/bin/llmesr embed --data "$data"
out="runs/${name}_sasrec${quick:+_quick}"
.venv/bin/llmesr train --data "$data" --config configs/sasrec_ce.yaml --out "$out" "${quick[@]}" "${rest[@]}"
echo "run folder: $out (metrics.json, log.jsonl, best.pt); top-100 lists: $out/recs_test.csv"
.venv/bin/llmesr recommend "$out" --split test --k 100 --out "$out/recs_test.csv"
