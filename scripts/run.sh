#!/usr/bin/env bash
# The main job, end to end on real data:
#   embed (cached) -> train SASRec and LLM-ESR-SASRec -> evaluate both -> comparison table + chart.
#   bash scripts/run.sh                 # Amazon Beauty from ../shared/data/beauty
#   bash scripts/run.sh --data PATH     # any dataset in a supported format (yelp: + configs/yelp.yaml)
#   bash scripts/run.sh --quick         # 3 epochs per model, to see the pipeline finish
#   bash scripts/run.sh --paper         # the paper's training setup (BCE-1, max length 200, batch 128)
# Other arguments go to both `llmesr train` calls (e.g. --set seed=7). Reruns resume / reuse.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
data=beauty quick=() rest=() preset=ce
while [ $# -gt 0 ]; do
  case "$1" in
    --data) data="$2"; shift 2 ;;
    --quick) quick=(--set epochs=3); shift ;;
    --paper) preset=paper; shift ;;
    *) rest+=("$1"); shift ;;
  esac
done
if [ "$preset" = paper ]; then
  sasrec_cfg=configs/sasrec_paper.yaml llmesr_cfg=configs/llmesr_sasrec_paper.yaml
else
  sasrec_cfg=configs/sasrec_ce.yaml llmesr_cfg=configs/llmesr_sasrec_ce.yaml
fi
name="$(basename "$data")_${preset}${quick:+_quick}"
# A dataset with its own overlay (configs/yelp.yaml: the business item prompt) gets it on every step.
overlay=(); [ -f "configs/$(basename "$data").yaml" ] && overlay=(--config "configs/$(basename "$data").yaml")
llmesr=.venv/bin/llmesr
$llmesr embed --data "$data" "${overlay[@]}"
$llmesr train --data "$data" --config "$sasrec_cfg" "${overlay[@]}" --out "runs/${name}_sasrec" "${quick[@]}" "${rest[@]}"
$llmesr train --data "$data" --config "$llmesr_cfg" "${overlay[@]}" --out "runs/${name}_llmesr" "${quick[@]}" "${rest[@]}"
$llmesr compare "SASRec=runs/${name}_sasrec" "LLM-ESR-SASRec=runs/${name}_llmesr" --out "runs/${name}_compare"
$llmesr recommend "runs/${name}_llmesr" --split test --k 100 --out "runs/${name}_llmesr/recs_test.csv"
echo "runs: runs/${name}_sasrec, runs/${name}_llmesr; comparison: runs/${name}_compare/comparison.{md,csv,png}"
