"""Reproduce I-AutoRec / U-AutoRec rating prediction (Sedhain et al., WWW 2015).

Protocol (paper): random 90/10 train/test split of the ratings, a share of the training ratings
held out for model selection, mean test RMSE over seeds; unseen users/items predicted as 3.
Published RMSE on MovieLens-1M: I-AutoRec 0.831, U-AutoRec 0.874 (BiasedMF 0.845).

Usage:
    nice -n 10 python benchmarks/repro_autorec.py --dataset ml-1m --seeds 1
    nice -n 10 python benchmarks/repro_autorec.py --dataset ml-100k --seeds 3

Prints one line per seed and a summary next to the published figure; writes
benchmarks/results/cf_autorec_<dataset>.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import torch

from recforge.cf.autorec_train import AutoRecTrainConfig, train_autorec
from recforge.cf.evaluate import rating_metrics
from recforge.data.movielens import prepare_1m, prepare_100k
from recforge.features import CategoricalField, Schema
from recforge.models.autorec import AutoRec, AutoRecConfig

SHARED = Path("/work/shared/datasets")
PUBLISHED = {("ml-1m", True): 0.831, ("ml-1m", False): 0.874}


def load(dataset: str, path: str | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All ratings as (users, items, ratings) with local ids starting at 1."""
    if dataset == "ml-1m":
        prepared = prepare_1m(Path(path or SHARED / "movielens-1m"), side_features=False)
    else:
        prepared = prepare_100k(Path(path or SHARED / "movielens-100k"), side_features=False)
    table = prepared.train
    users = np.unique(pc.cast(table["user_id"], "string").to_numpy(False), return_inverse=True)[1]
    items = np.unique(pc.cast(table["item_id"], "string").to_numpy(False), return_inverse=True)[1]
    ratings = table["rating"].to_numpy().astype(np.float32)
    return users.astype(np.int64) + 1, items.astype(np.int64) + 1, ratings


def run_seed(data, seed: int, args: argparse.Namespace) -> dict[str, float]:
    users, items, ratings = data
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(users))
    n_test = int(round(0.1 * len(users)))
    test, train = order[:n_test], order[n_test:]
    n_valid = int(round(args.valid_share * len(train)))
    valid, fit = train[:n_valid], train[n_valid:]
    schema = Schema(
        fields=(
            CategoricalField("user", group="user", vocab_size=int(users.max()) + 1),
            CategoricalField("item", group="item", vocab_size=int(items.max()) + 1),
        ),
        task="regression",
        user_key="user",
        item_key="item",
    )
    torch.manual_seed(seed)
    cfg = AutoRecConfig(
        hidden=args.hidden,
        item_based=not args.user_based,
        l2_lambda=args.l2,
        fallback_rating=3.0,
    )
    model = AutoRec(schema, cfg).to(args.device)
    model.set_ratings(users[fit], items[fit], ratings[fit])
    train_cfg = AutoRecTrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        optimizer=args.optimizer,
        patience=args.patience,
        seed=seed,
        eval_every=args.eval_every,
        max_seconds=args.max_minutes * 60,
    )
    start = time.perf_counter()
    history = train_autorec(model, train_cfg, valid=(users[valid], items[valid], ratings[valid]))
    seconds = time.perf_counter() - start
    # like the paper, the selected model predicts from the training ratings it was fitted on
    result = rating_metrics(model, users[test], items[test], ratings[test])
    result.update(
        seed=seed,
        best_epoch=history.best_epoch,
        valid_rmse=history.best_rmse,
        epochs_run=len(history.records),
        seconds=seconds,
        rows_per_second=history.rows_per_second,
        ratings_per_second=history.rows_per_second * model.matrix.nnz / max(model.n_rows, 1),
    )
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", choices=["ml-1m", "ml-100k"], default="ml-1m")
    p.add_argument("--path", help="local dataset folder (default: /work/shared/datasets/...)")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--first-seed", type=int, default=0, help="seeds are first..first+seeds-1")
    p.add_argument("--user-based", action="store_true", help="U-AutoRec instead of I-AutoRec")
    p.add_argument("--hidden", type=int, default=500)
    p.add_argument("--l2", type=float, default=20.0, help="lambda")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--optimizer", default="adam", choices=["adam", "rprop", "lbfgs"])
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--eval-every", type=int, default=2)
    p.add_argument("--max-minutes", type=float, default=0.0, help="training time cap per seed")
    p.add_argument("--valid-share", type=float, default=0.05)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--output", default="benchmarks/results")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    data = load(args.dataset, args.path)
    name = "U-AutoRec" if args.user_based else "I-AutoRec"
    results = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        r = run_seed(data, seed, args)
        results.append(r)
        print(
            f"{name} {args.dataset} seed {seed}: test RMSE {r['rmse']:.4f} MAE {r['mae']:.4f} "
            f"(valid {r['valid_rmse']:.4f} at epoch {r['best_epoch']}, {r['seconds']:.0f}s, "
            f"{r['rows_per_second']:.0f} rows/s)",
            flush=True,
        )
    rmse = np.array([r["rmse"] for r in results])
    published = PUBLISHED.get((args.dataset, not args.user_based))
    command = "python " + " ".join(sys.argv)
    summary = {
        "model": name,
        "dataset": args.dataset,
        "rmse_mean": float(rmse.mean()),
        "rmse_std": float(rmse.std()),
        "seeds": args.seeds,
        "published_rmse": published,
        "command": command,
        "settings": vars(args),
        "runs": results,
    }
    print(
        f"{'model':<10} {'dataset':<8} {'ours RMSE':>10} {'published':>10} seeds  command\n"
        f"{name:<10} {args.dataset:<8} {rmse.mean():>10.4f} "
        f"{published if published else '-':>10} {args.seeds:>5}  {command}"
    )
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    suffix = "_u" if args.user_based else ""
    (out / f"cf_autorec_{args.dataset}{suffix}.json").write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
