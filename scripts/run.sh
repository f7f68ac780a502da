#!/usr/bin/env bash
# The main job, end to end on real data:
#   embed (cached) -> train SASRec and LLM-ESR-SASRec -> evaluate both -> comparison table + chart;
#   then ours, ESR-Fuse: its two members (LLMInit, LLM-ESR with its member switches) and their fusion,
#   compared with the two above.
#   bash scripts/run.sh                 # Amazon Beauty from ../shared/data/beauty
#   bash scripts/run.sh --data PATH     # any dataset in a supported format (yelp: + configs/yelp.yaml)
#   bash scripts/run.sh --quick         # 3 epochs per model, to see the pipeline finish
#   bash scripts/run.sh --paper         # the paper's training setup (BCE-1, max length 200, batch 128)
#   bash scripts/run.sh --no-ours       # SASRec and LLM-ESR only (ESR-Fuse trains two more models)
# Other arguments go to both `llmesr train` calls (e.g. --set seed=7). Reruns resume / reuse.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
data=beauty quick=() rest=() preset=ce ours=1
while [ $# -gt 0 ]; do
  case "$1" in
    --data) data="$2"; shift 2 ;;
    --quick) quick=(--set epochs=3); shift ;;
    --paper) preset=paper; shift ;;
    --no-ours) ours=0; shift ;;
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
compared=("SASRec=runs/${name}_sasrec" "LLM-ESR-SASRec=runs/${name}_llmesr")
if [ "$ours" = 1 ]; then
  # ESR-Fuse's members train at the same settings as LLM-ESR above (the paper preset: BCE-1).
  $llmesr train --data "$data" --config "$llmesr_cfg" "${overlay[@]}" --set model=llminit --out "runs/${name}_llminit" "${quick[@]}" "${rest[@]}"
  $llmesr train --data "$data" --config "$llmesr_cfg" --config configs/esrfuse_member_llmesr.yaml "${overlay[@]}" --out "runs/${name}_llmesr_member" "${quick[@]}" "${rest[@]}"
  $llmesr train --data "$data" --config "$llmesr_cfg" "${overlay[@]}" --set model=esrfuse \
    --set "fusion_esr_run=runs/${name}_llmesr_member" --set "fusion_init_run=runs/${name}_llminit" --out "runs/${name}_esrfuse" "${rest[@]}"
  compared+=("LLMInit-SASRec=runs/${name}_llminit" "ESR-Fuse-SASRec=runs/${name}_esrfuse")
fi
$llmesr compare "${compared[@]}" --out "runs/${name}_compare"
$llmesr recommend "runs/${name}_llmesr" --split test --k 100 --out "runs/${name}_llmesr/recs_test.csv"
echo "runs: ${compared[*]#*=}; comparison: runs/${name}_compare/comparison.{md,csv,png}"
