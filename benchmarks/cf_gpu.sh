#!/usr/bin/env bash
# The collaborative-filtering reproductions at the papers' settings, for a machine with a GPU.
# Every run goes through `recforge train` with a shipped config (benchmarks/repro.py collects
# the table). DATA: the folder holding movielens-1m/ (and its ncf-split/).
set -euo pipefail
DATA=${DATA:-../shared/datasets}
DEV=${DEV:-cuda}
python benchmarks/repro.py --name cf_autorec_ml1m configs/repro/autorec_ml1m.yaml \
  configs/repro/u_autorec_ml1m.yaml --seeds 0 1 2 3 4 \
  --set data.path="$DATA/movielens-1m" train.device="$DEV"
python benchmarks/repro.py --name cf_ncf_ml1m configs/models/gmf.yaml configs/models/ncf_mlp.yaml \
  configs/models/neumf.yaml --set data.path="$DATA/movielens-1m/ncf-split" train.device="$DEV"
