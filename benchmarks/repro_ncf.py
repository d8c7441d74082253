"""Reproduce NeuralCF on the NCF paper's MovieLens-1M split (He et al., WWW 2017).

Protocol (paper): leave-one-out; each user's held-out item ranked against the 99 sampled
negatives of ``ml-1m.test.negative``; HR@10 and NDCG@10. Training: 4 negatives per positive,
resampled every epoch, pointwise log loss, batch 256, Adam lr 0.001; NeuMF initialised from the
trained GMF and MLP (alpha = 0.5) and fine-tuned with plain SGD. Published at predictive factor
32: NeuMF (pretrained) HR@10 0.726 / NDCG@10 0.445, MLP 0.692 / 0.425. A biased MF trained the
same way and item popularity are reported beside them, and every model is also scored by full
ranking over all unseen items (Krichene & Rendle, KDD 2020).

Like the paper's code, the reported epoch is the best test HR@10 over the epochs (there is no
separate validation split in the published protocol); the last epoch is printed too.

Usage:
    nice -n 10 python benchmarks/repro_ncf.py --factors 32 --epochs 8

The train file here is a reconstruction (about 99 % exact; see the dataset README), so figures
are close to, not identical with, the paper's setting.
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

from recforge.cf.evaluate import full_ranking, sampled_ranking
from recforge.cf.implicit import ImplicitEpochs, ImplicitTrainConfig, train_implicit
from recforge.cf.matrix import InteractionMatrix
from recforge.data.movielens import prepare_ncf
from recforge.features import CategoricalField, Schema
from recforge.models import registry
from recforge.models.ncf import NeuMF
from recforge.models.popularity import ItemPopularity, PopularityConfig

SHARED = Path("/work/shared/datasets/movielens-1m/ncf-split")
PUBLISHED = {  # factor 32, ML-1M (REFERENCE.md section 3.2)
    "neumf": (0.726, 0.445),
    "ncf_mlp": (0.692, 0.425),
    "gmf": (None, None),
    "mf": (None, None),
    "popularity": (None, None),
}


def _ids(column) -> np.ndarray:  # noqa: ANN001
    return pc.cast(column, "int64").to_numpy() + 1  # NCF ids are 0-based; 0 is our OOV id


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--path", default=str(SHARED))
    p.add_argument("--factors", type=int, default=32)
    p.add_argument("--layers", type=int, default=3, help="MLP tower layers")
    p.add_argument("--epochs", type=int, default=8, help="epochs of GMF, MLP and MF")
    p.add_argument("--neumf-epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--neumf-optimizer", default="sgd", choices=["sgd", "adam"])
    p.add_argument("--neumf-lr", type=float, default=1e-3)
    p.add_argument("--max-minutes", type=float, default=0.0, help="training time cap per model")
    p.add_argument("--negatives", type=int, default=4)
    p.add_argument("--models", nargs="*", default=["mf", "gmf", "ncf_mlp", "neumf"])
    p.add_argument("--full-ranking", action="store_true", help="also rank against all items")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--save-dir",
        default="/tmp/recforge_ncf",
        help="trained models are saved here; NeuMF loads GMF and MLP from here when they are "
        "not trained in the same run",
    )
    p.add_argument("--output", default="benchmarks/results")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    data = prepare_ncf(Path(args.path))
    tr_u, tr_i = _ids(data.train["user_id"]), _ids(data.train["item_id"])
    te_u, te_i = _ids(data.test["user_id"]), _ids(data.test["item_id"])
    negatives = np.asarray(data.extras["test_negatives"], dtype=np.int64) + 1
    n_users, n_items = data.extras["num_users"] + 1, data.extras["num_items"] + 1
    schema = Schema(
        fields=(
            CategoricalField("user", group="user", vocab_size=n_users),
            CategoricalField("item", group="item", vocab_size=n_items),
        ),
        task="ranking",
        user_key="user",
        item_key="item",
    )
    seen = InteractionMatrix.from_coo(tr_u, tr_i, shape=(n_users, n_items))
    print(f"NCF ml-1m: {len(tr_u)} train positives, {len(te_u)} test users, {n_items - 1} items")

    def evaluate(model) -> dict[str, float]:  # noqa: ANN001
        return sampled_ranking(model, te_u, te_i, negatives, ks=(10,))

    f, L = args.factors, args.layers
    params = {
        "mf": {"embedding_dim": f},
        "gmf": {"factors": f},
        "ncf_mlp": {"factors": f, "num_layers": L},
        "neumf": {"factors": f, "num_layers": L},
    }
    trained: dict[str, torch.nn.Module] = {}
    rows = []
    for name in args.models:
        torch.manual_seed(0)
        model = registry.build(name, schema, params[name]).to(device)
        cfg = ImplicitTrainConfig(
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            max_seconds=args.max_minutes * 60,
        )
        note = ""
        save_dir = Path(args.save_dir)
        if name == "neumf":
            for part in ("gmf", "ncf_mlp"):
                ckpt = save_dir / f"{part}_f{f}_l{L}.pt"
                if part not in trained and ckpt.exists():
                    trained[part] = registry.build(part, schema, params[part]).to(device)
                    trained[part].load_state_dict(torch.load(ckpt, map_location=device))
        if name == "neumf" and {"gmf", "ncf_mlp"} <= set(trained):
            assert isinstance(model, NeuMF)
            model.load_pretrained(trained["gmf"], trained["ncf_mlp"])  # type: ignore[arg-type]
            start_metrics = evaluate(model)
            note = f"pretrained, at init HR@10 {start_metrics['hr@10']:.4f}"
            cfg = ImplicitTrainConfig(
                epochs=args.neumf_epochs,
                batch_size=args.batch_size,
                lr=args.neumf_lr,
                optimizer=args.neumf_optimizer,
                max_seconds=args.max_minutes * 60,
            )
        epochs = ImplicitEpochs(tr_u, tr_i, n_items, negatives=args.negatives, seed=0)
        start = time.perf_counter()
        history = train_implicit(model, epochs, cfg, evaluate=evaluate)
        seconds = time.perf_counter() - start
        trained[name] = model
        save_dir.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), save_dir / f"{name}_f{f}_l{L}.pt")
        row = {
            "model": name,
            "factors": f,
            "hr@10": history.best["hr@10"],
            "ndcg@10": history.best["ndcg@10"],
            "best_epoch": history.best_epoch,
            "last": history.records[-1],
            "epochs": len(history.records),
            "seconds": seconds,
            "instances_per_second": history.instances_per_second,
            "note": note,
            "history": history.records,
        }
        if args.full_ranking:
            row["full"] = full_ranking(model, te_u, te_i, seen, ks=(10,))
        rows.append(row)
        print(
            f"{name}: best HR@10 {row['hr@10']:.4f} NDCG@10 {row['ndcg@10']:.4f} at epoch "
            f"{row['best_epoch']}/{row['epochs']}; last {row['last']['hr@10']:.4f}/"
            f"{row['last']['ndcg@10']:.4f}; {row['instances_per_second']:.0f} inst/s {note}",
            flush=True,
        )
    pop = ItemPopularity(schema, PopularityConfig())
    pop.set_counts(tr_i)
    pop_row = {"model": "popularity", "factors": 0, **evaluate(pop), "best_epoch": 0}
    if args.full_ranking:
        pop_row["full"] = full_ranking(pop, te_u, te_i, seen, ks=(10,))
    rows.append(pop_row)

    command = "python " + " ".join(sys.argv)
    print(f"\n{'model':<11}{'factors':>8}{'HR@10':>8}{'NDCG@10':>9}{'paper HR':>10}"
          f"{'paper NDCG':>11}{'full HR@10':>11}{'inst/s':>9}")  # fmt: skip
    for r in rows:
        hr_p, nd_p = PUBLISHED.get(r["model"], (None, None)) if f == 32 else (None, None)
        r.setdefault("factors", f)
        full = r.get("full", {}).get("hr@10")
        print(
            f"{r['model']:<11}{r['factors']:>8}{r['hr@10']:>8.4f}{r['ndcg@10']:>9.4f}"
            f"{hr_p if hr_p else '-':>10}{nd_p if nd_p else '-':>11}"
            f"{f'{full:.4f}' if full is not None else '-':>11}"
            f"{r.get('instances_per_second', 0):>9.0f}"
        )
    print(f"command: {command}")
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"dataset": "ml-1m (NCF split)", "command": command, "settings": vars(args),
               "results": rows}  # fmt: skip
    (out / f"cf_ncf_f{f}_{'-'.join(args.models)}.json").write_text(
        json.dumps(summary, indent=1, default=float)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
