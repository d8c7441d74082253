#!/usr/bin/env bash
# Tuned Frappe_x1 rows for LR, FM, AFM (FM-pretrained) and NFM through `recforge tune`.
# Usage: benchmarks/tune_frappe.sh /path/to/frappe/nfm-split [models...]
# Each study selects on validation AUC only and tests its best config once; the FM study runs
# first because AFM's trials start from its best FM (model.params.pretrained_fm). The warm-up
# epochs before pruning are those of the measured runs (benchmarks/results/bars_frappe_tuned.md).
# A study stopped early continues (or is finalised with a smaller --trials) by running its
# command again.
set -euo pipefail
DATA=${1:?path to the Frappe NFM/AFM split}
shift
MODELS=${*:-lr fm afm nfm}
PY=${PYTHON:-.venv/bin/python}
export OMP_NUM_THREADS=1
declare -A EXTRA=(
  [lr]="--sampler grid --prune-warmup 1"
  [fm]="--sampler grid --prune-warmup 1"
  [afm]="--trials ${AFM_TRIALS:-12} --prune-warmup 5 model.params.pretrained_fm=runs/tune/frappe_fm/best/bundle"
  [nfm]="--trials ${NFM_TRIALS:-12} --prune-warmup 5"
)
for m in $MODELS; do
  # shellcheck disable=SC2086
  nice -n 5 "$PY" -m recforge.cli tune -c "configs/tune/frappe_$m.yaml" \
    --space "configs/tune/frappe_$m.space.yaml" --output "runs/tune/frappe_$m" ${EXTRA[$m]} \
    "data.path=$DATA" train.threads=1
done
