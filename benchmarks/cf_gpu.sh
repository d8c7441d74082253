#!/usr/bin/env bash
# Collaborative-filtering reproductions at the papers' settings, for a GPU machine.
#
# The shared 2-core CPU of the development machine is too slow for these protocols (I-AutoRec on
# ML-1M needs ~100+ epochs at ~20 s each there; NCF at batch 256 is ~19,500 steps per epoch).
# Run from the repository root:  bash benchmarks/cf_gpu.sh [quick]
# Results land in benchmarks/results/cf_*.json; each script prints ours next to published.
# Rough GPU budget: AutoRec ~1 min per seed, NCF factor 32 ~10-15 s per epoch per model.
# CPU evidence (benchmarks/results/cf_summary.md): on ML-1M lambda 200, lr 1e-3 gave 0.838.
set -euo pipefail
DEV=${DEVICE:-cuda}
DATA=${DATA:-/work/shared/datasets}
OUT=${OUT:-benchmarks/results}
if [[ "${1:-}" == "quick" ]]; then
  SEEDS=1; NCF_EPOCHS=6; FACTORS="32"
else
  SEEDS=5; NCF_EPOCHS=20; FACTORS="32 8 16 64"
fi

# AutoRec (Sedhain et al. 2015): random 90/10 split, 5% of train for model selection.
python benchmarks/repro_autorec.py --dataset ml-1m --path "$DATA/movielens-1m" --device "$DEV" \
  --seeds "$SEEDS" --epochs 300 --patience 20 --eval-every 2 --l2 200 --lr 1e-3 --output "$OUT"
python benchmarks/repro_autorec.py --dataset ml-1m --path "$DATA/movielens-1m" --device "$DEV" \
  --user-based --seeds 1 --epochs 300 --patience 20 --eval-every 2 --l2 200 --lr 1e-3 --output "$OUT"
python benchmarks/repro_autorec.py --dataset ml-100k --path "$DATA/movielens-100k" \
  --device "$DEV" --seeds "$SEEDS" --epochs 300 --patience 20 --eval-every 2 --l2 20 \
  --output "$OUT"

# NeuralCF (He et al. 2017): NCF ml-1m split, batch 256, Adam 1e-3, 4 negatives, pretrained
# NeuMF fine-tuned with SGD; MF beside it; full ranking too.
for F in $FACTORS; do
  python benchmarks/repro_ncf.py --path "$DATA/movielens-1m/ncf-split" --device "$DEV" \
    --factors "$F" --epochs "$NCF_EPOCHS" --neumf-epochs 5 --full-ranking --output "$OUT" \
    --save-dir "/tmp/recforge_ncf"
done
