"""Reproduce the CTR leaderboards: Frappe under the BARS Frappe_x1 protocol, the Criteo sample,
and FNN's convergence with FM initialisation against a random one.

Protocol (BARS / FuxiCTR x1, Zhu et al., SIGIR 2022): the NFM/AFM 7:2:1 libfm split, embedding
dimension 10, batch 4096, Adam lr 1e-3, early stopping on validation AUC with patience 2, the
learning rate divided by 10 on a plateau, best weights restored, test metrics reported once.
Model options (dropout, embedding L2, towers) are the per-model settings in ``FRAPPE_PARAMS``,
chosen on validation only.

Usage (from the repository root; each part prints its table and writes JSON/PNG/markdown under
``benchmarks/results/``)::

    nice -n 10 python benchmarks/repro_ctr.py frappe --path /work/shared/datasets/frappe/nfm-split
    nice -n 10 python benchmarks/repro_ctr.py criteo \
        --path /work/shared/datasets/criteo-kaggle-sample/train_head10k.txt.xz
    nice -n 10 python benchmarks/repro_ctr.py fnn-curve \
        --path /work/shared/datasets/frappe/nfm-split

``--models a b c`` restricts a part to some models; ``--epochs`` caps the epochs.

``frappe-grid`` is the tuned Frappe_x1 run: each model is trained (early stopping on validation
AUC, patience 2, best weights restored, at most ``--epochs`` epochs, ``--shallow-epochs`` for LR
and FM) for every ``--embedding-l2`` (x ``--dropout``) setting; the setting with the best
validation AUC is evaluated on test once. With ``--grid-models``, only those models are tuned and
the others reuse the L2 chosen by the first of them (a validation-only choice as well)::

    OMP_NUM_THREADS=2 nice -n 5 python benchmarks/repro_ctr.py frappe-grid \
        --path /work/shared/datasets/frappe/nfm-split --models deepfm dnn dcn dcn_v2 ipnn \
        --grid-models deepfm --embedding-l2 0.01 0.1 --epochs 30
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from recforge.commands.compare import resolve_models, train_one, write_leaderboard
from recforge.config import DataConfig, TrainConfig
from recforge.data.pipeline import EncodedRun, encode_run
from recforge.io import atomic_write, atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results"

# BARS Frappe_x1 test AUC / logloss (reczoo/BARS docs/CTR/leaderboard; /work/shared/REFERENCE.md)
BARS_FRAPPE: dict[str, dict[str, float]] = {
    "lr": {"auc": 0.9356, "logloss": 0.3076},
    "fm": {"auc": 0.9671, "logloss": 0.2065},
    "dnn": {"auc": 0.9833, "logloss": 0.1622},
    "wide_deep": {"auc": 0.9841, "logloss": 0.1490},
    "ipnn": {"auc": 0.9841, "logloss": 0.1540},
    "deepfm": {"auc": 0.9842, "logloss": 0.1482},
    "nfm": {"auc": 0.9804, "logloss": 0.2058},
    "afm": {"auc": 0.9697, "logloss": 0.2264},
    "dcn": {"auc": 0.9839, "logloss": 0.1527},
    "dcn_v2": {"auc": 0.9845, "logloss": 0.1491},
}

# BARS x1 protocol: the common FuxiCTR recipe
BARS_TRAIN = TrainConfig(
    epochs=100,
    batch_size=4096,
    lr=1e-3,
    optimizer="adam",
    patience=2,
    lr_patience=1,
    lr_factor=0.1,
    seed=2021,
    progress=False,
    eval_batch_size=65536,
)

# per-model options; towers follow the BARS Frappe_x1 configs (400-400-400 with batch norm and
# dropout for the deep models); the embedding L2 and dropout are chosen on the validation split
# (``frappe-grid``), never on test
_TOWER = {"hidden": [400, 400, 400], "dropout": 0.2, "batch_norm": True}
FRAPPE_PARAMS: dict[str, dict[str, Any]] = {
    "dnn": dict(_TOWER),
    "deepfm": dict(_TOWER),
    "dcn": dict(_TOWER),
    "dcn_v2": dict(_TOWER),
    "ipnn": dict(_TOWER),
    "opnn": dict(_TOWER),
    "pnn_star": dict(_TOWER),
    "wide_deep": dict(_TOWER),
    "fnn": {**_TOWER, "activation": "relu"},
    "deep_crossing": {"residual_hidden": [400, 400, 400], "dropout": 0.2, "batch_norm": True},
    "nfm": {"hidden": [400, 400, 400], "bi_dropout": 0.2, "dropout": 0.2, "batch_norm": False},
    "afm": {"attention_dim": 64, "dropout": 0.2},
}
FRAPPE_EMBEDDING_L2: dict[str, float] = {}
# the order of the frappe-grid run: the priority, then the models reported beside them
FRAPPE_PRIORITY = [
    "deepfm", "dnn", "dcn", "dcn_v2", "ipnn", "wide_deep", "nfm", "fm", "lr", "afm",
    "deep_crossing", "opnn", "pnn_star", "fnn",
]  # fmt: skip
SHALLOW = ("lr", "fm")  # cheap and slow to converge at lr 1e-3: the BARS cap of 100 epochs


def frappe_run(path: str) -> EncodedRun:
    return encode_run(DataConfig(dataset="frappe", path=path), seed=BARS_TRAIN.seed)


def criteo_run(path: str) -> EncodedRun:
    """The 10k-row Criteo head: random 8:1:1 split, log-transformed numerics."""
    cfg = DataConfig(dataset="criteo", path=path, split="random", valid_ratio=0.1, test_ratio=0.1)
    return encode_run(cfg, seed=BARS_TRAIN.seed)


def _command(part: str, args: argparse.Namespace, model: str) -> str:
    """The command line that reproduces one row (with this run's caps)."""
    extra = "".join(
        f" --{flag} {value}"
        for flag, value in (
            ("epochs", args.epochs),
            ("batch-size", args.batch_size),
            ("embedding-l2", args.embedding_l2[0]),
        )
        if value
    )
    return f"python benchmarks/repro_ctr.py {part} --path {args.path} --models {model}{extra}"


def _table(rows: list[dict[str, Any]], ref: bool, part: str, args: argparse.Namespace) -> str:
    head = "model | ours AUC | ours logloss"
    head += " | BARS AUC | BARS logloss | ΔAUC" if ref else ""
    head += " | epochs | seconds | command"
    lines = [head, "-" * len(head)]
    for r in rows:
        if r["auc"] is None:
            lines.append(f"{r['model']} | failed: {r['error']}")
            continue
        line = f"{r['model']} | {r['auc']:.4f} | {r['logloss']:.4f}"
        if ref:
            b = BARS_FRAPPE.get(r["model"])
            line += (
                f" | {b['auc']:.4f} | {b['logloss']:.4f} | {r['auc'] - b['auc']:+.4f}"
                if b
                else " | – | – | –"
            )
        line += f" | {r['epochs']} | {r['train_seconds']:.0f} | {_command(part, args, r['model'])}"
        lines.append(line)
    return "\n".join(lines)


def run_leaderboard(part: str, args: argparse.Namespace) -> None:
    run = frappe_run(args.path) if part == "frappe" else criteo_run(args.path)
    models = resolve_models(args.models or ["all"])
    cfg = replace(
        BARS_TRAIN,
        epochs=args.epochs or BARS_TRAIN.epochs,
        batch_size=args.batch_size or BARS_TRAIN.batch_size,
    )
    params = {m: dict(FRAPPE_PARAMS.get(m, {})) for m in models}
    stem = f"ctr_{part}" + (f"_{args.tag}" if args.tag else "")
    title = (
        f"{part}: BARS x1 protocol (emb 10, batch {cfg.batch_size}, Adam 1e-3, patience 2)"
        if part == "frappe"
        else f"{part}: 10k-row head, random 8:1:1, batch {cfg.batch_size}"
    )
    meta = {"train": asdict(cfg), "params": params, "embedding_l2": args.embedding_l2[0]}
    ref = BARS_FRAPPE if part == "frappe" else None
    results, fm = [], None
    for name in models:  # FNN starts from the FM trained just before it (its two stages)
        l2 = FRAPPE_EMBEDDING_L2.get(name, args.embedding_l2[0])
        result, trainer = train_one(
            name, params[name], run, replace(cfg, embedding_l2=l2), None, init_fm=fm
        )
        fm = trainer.model if name == "fm" else fm
        results.append(result)
        logging.info("%s: test %s (%d epochs)", name, result.test_metrics, len(result.history))
        # written after every model, so a run stopped by its time cap keeps what it finished
        write_leaderboard(results, RESULTS, title, reference=ref, meta=meta, stem=stem)
    rows = json.loads((RESULTS / f"{stem}.json").read_text())["results"]
    print(_table(rows, ref is not None, part, args))


def run_fnn_curve(args: argparse.Namespace) -> None:
    """FNN from a trained FM against FNN from a random initialisation: validation curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from recforge.models.fm import FM, FMConfig
    from recforge.models.fnn import FNN, FNNConfig
    from recforge.train import Trainer, seed_everything

    run = frappe_run(args.path)
    cfg = replace(BARS_TRAIN, epochs=args.curve_epochs, patience=0, lr_patience=0)
    seed_everything(cfg.seed)
    fm = FM(run.schema, FMConfig(embedding_dim=10))
    start = time.perf_counter()
    fm_cfg = replace(BARS_TRAIN, epochs=args.epochs or BARS_TRAIN.epochs)
    fm_hist = Trainer(fm, fm_cfg).fit(run.train, run.valid)
    fm_seconds = time.perf_counter() - start
    fnn_cfg = FNNConfig(embedding_dim=10, **{**FRAPPE_PARAMS["fnn"], "hidden": (400, 400, 400)})
    curves = {}
    for init in ("fm", "random"):
        seed_everything(cfg.seed)
        model = FNN.from_fm(fm, fnn_cfg) if init == "fm" else FNN(run.schema, fnn_cfg)
        trainer = Trainer(model, cfg)
        curves[init] = trainer.fit(run.train, run.valid)
        curves[init + "_test"] = trainer.evaluate(run.test)  # type: ignore[assignment]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for init, color in (("fm", "#c44e52"), ("random", "#4878a8")):
        hist = curves[init]
        ep = [h["epoch"] + 1 for h in hist]
        axes[0].plot(ep, [h["valid_auc"] for h in hist], "o-", color=color, label=f"FNN, {init}")
        axes[1].plot(ep, [h["valid_logloss"] for h in hist], "o-", color=color, label=init)
    fm_best = max(h["valid_auc"] for h in fm_hist)
    axes[0].axhline(fm_best, color="gray", ls="--", label="FM (stage 1)")
    axes[0].set_ylabel("validation AUC")
    axes[1].set_ylabel("validation logloss")
    for ax in axes:
        ax.set_xlabel("epoch (stage 2)")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle("FNN on Frappe: FM-initialised vs random embeddings (no early stop, no LR decay)")
    fig.tight_layout()
    atomic_write(RESULTS / "ctr_fnn_curve.png", lambda t: fig.savefig(t, dpi=110, format="png"))
    out = {
        "fm_history": fm_hist,
        "fm_seconds": fm_seconds,
        "fnn_fm_init": curves["fm"],
        "fnn_random_init": curves["random"],
        "test": {"fm_init": curves["fm_test"], "random_init": curves["random_test"]},
    }
    atomic_write_text(RESULTS / "ctr_fnn_curve.json", json.dumps(out, indent=1))
    print("epoch | valid AUC (FM init) | valid AUC (random init)")
    for a, b in zip(curves["fm"], curves["random"], strict=True):
        print(f"{int(a['epoch']) + 1} | {a['valid_auc']:.4f} | {b['valid_auc']:.4f}")
    print(f"test: FM init {curves['fm_test']}, random init {curves['random_test']}")


def _full_table_trainer(model: Any, cfg: TrainConfig, reg: float) -> Any:
    """A Trainer with FuxiCTR's ``embedding_regularizer``: ``(reg / 2) * ||E||^2`` over whole
    tables each step (``TrainConfig.embedding_l2_scope="table"``), the regulariser BARS tunes."""
    from recforge.train import Trainer

    return Trainer(model, replace(cfg, embedding_l2=reg, embedding_l2_scope="table"))


def _fit_setting(
    name: str,
    params: dict[str, Any],
    run: EncodedRun,
    cfg: TrainConfig,
    init_fm: Any,
    full_table: bool = False,
) -> tuple[Any, Any, float]:
    """Train one setting (no test evaluation); ``(model, trainer, seconds)``."""
    from recforge.models import registry
    from recforge.models.fnn import FNN
    from recforge.train import Trainer, seed_everything

    seed_everything(cfg.seed)
    model = registry.build(name, run.schema, params)
    if isinstance(model, FNN) and init_fm is not None:
        model.init_from_fm(init_fm)
    if full_table:
        trainer = _full_table_trainer(model, cfg, cfg.embedding_l2)
    else:
        trainer = Trainer(model, cfg)
    start = time.perf_counter()
    trainer.fit(run.train, run.valid)
    return model, trainer, time.perf_counter() - start


def _grid_command(
    args: argparse.Namespace, name: str, l2s: list[float], drops: list[float], grid: bool
) -> str:
    cmd = f"python benchmarks/repro_ctr.py frappe-grid --path {args.path} --models {name}"
    cmd += " --embedding-l2 " + " ".join(f"{v:g}" for v in l2s)
    if args.emb_reg == "full":
        cmd += " --emb-reg full"
    if args.grid_models and grid:
        cmd += " --grid-models " + " ".join(args.grid_models)
    if drops:
        cmd += " --dropout " + " ".join(f"{v:g}" for v in drops)
    if name in SHALLOW:
        return cmd + f" --shallow-epochs {args.shallow_epochs}"
    return cmd + f" --epochs {args.epochs}"


def _grid_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| model | ours AUC | ours logloss | BARS AUC | BARS logloss | ΔAUC | chosen params "
        "| valid AUC | epochs (best) | train s | command |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---|",
    ]
    for r in rows:
        b = BARS_FRAPPE.get(r["model"], {})
        ref_auc, ref_ll = b.get("auc"), b.get("logloss")
        delta = f"{r['auc'] - ref_auc:+.4f}" if ref_auc else "–"
        lines.append(
            f"| {r['model']} | {r['auc']:.4f} | {r['logloss']:.4f} | "
            f"{ref_auc or '–'} | {ref_ll or '–'} | {delta} | {r['chosen']} | "
            f"{r['valid_auc']:.4f} | {r['epochs']} ({r['best_epoch'] + 1}) | "
            f"{r['train_seconds']:.0f} | `{r['command']}` |"
        )
    return "\n".join(lines) + "\n"


def run_frappe_grid(args: argparse.Namespace) -> None:
    """Frappe_x1 with the embedding L2 (and optionally dropout) chosen on validation only.

    Every setting of the grid is trained with early stopping on validation AUC (patience 2, best
    weights restored); the setting with the best validation AUC is then evaluated on test, once.
    Results are written after every model, so a run stopped by its time cap keeps what it did.
    """
    from recforge.run import TrainResult, count_parameters

    run = frappe_run(args.path)
    models = resolve_models(args.models or FRAPPE_PRIORITY)
    stem = "ctr_frappe" + (f"_{args.tag}" if args.tag else "")
    title = "frappe: BARS x1 protocol (emb 10, batch 4096, Adam 1e-3, patience 2), grid on valid"
    meta: dict[str, Any] = {"train": asdict(BARS_TRAIN), "grid": {}}
    results, rows, fm = [], [], None
    transfer: float | None = None
    for name in models:
        epochs = args.shallow_epochs if name in SHALLOW else args.epochs
        cfg = replace(BARS_TRAIN, epochs=epochs)
        base = dict(FRAPPE_PARAMS.get(name, {}))
        drops = args.dropout if "dropout" in base and args.dropout else []
        settings = [(l2, d) for l2 in args.embedding_l2 for d in (drops or [None])]
        transferred = bool(args.grid_models) and name not in args.grid_models
        if transferred:
            # the embedding L2 chosen on validation by the first grid model (e.g. DeepFM)
            settings = [(transfer if transfer is not None else args.embedding_l2[0], None)]
        grid = []
        best: tuple[float, Any, Any, float, dict[str, Any], float] | None = None
        for l2, d in settings:
            params = {**base, **({"dropout": d} if d is not None else {})}
            model, trainer, secs = _fit_setting(
                name, params, run, replace(cfg, embedding_l2=l2), fm, args.emb_reg == "full"
            )
            value = float(trainer.best_value or 0.0)
            grid.append(
                {"embedding_l2": l2, "dropout": d, "valid_auc": value,
                 "best_epoch": trainer.best_epoch, "epochs": len(trainer.history),
                 "seconds": round(secs, 1)}
            )  # fmt: skip
            logging.info("%s l2=%g dropout=%s: valid AUC %.5f", name, l2, d, value)
            if best is None or value > best[0]:
                best = (value, model, trainer, secs, params, l2)
        assert best is not None
        value, model, trainer, secs, params, l2 = best
        test = trainer.evaluate(run.test)  # test once, for the setting chosen on validation
        fm = model if name == "fm" else fm
        chosen = {**params, "embedding_l2": l2}
        if args.emb_reg == "full":
            chosen = {**params, "embedding_regularizer (full table)": l2}
        if args.grid_models and name in args.grid_models and transfer is None:
            transfer = l2
        meta["grid"][name] = grid
        results.append(
            TrainResult(
                name, test, trainer.history, secs, count_parameters(model), None,
                {"params": chosen, "best_epoch": trainer.best_epoch,
                 "init": "fm (this run)" if name == "fnn" and fm is not None else "random"},
            )
        )  # fmt: skip
        l2s, grid_drops = ([l2], []) if transferred else (args.embedding_l2, drops)
        command = _grid_command(args, name, l2s, grid_drops, not transferred)
        rows.append(
            {"model": name, "auc": test["auc"], "logloss": test["logloss"], "valid_auc": value,
             "chosen": ", ".join(f"{k}={v}" for k, v in chosen.items()),
             "epochs": len(trainer.history), "best_epoch": trainer.best_epoch,
             "train_seconds": secs, "command": command}
        )  # fmt: skip
        logging.info("%s: chosen %s, test %s", name, chosen, test)
        paths = write_leaderboard(
            results, RESULTS, title, reference=BARS_FRAPPE, meta=meta, stem=stem
        )
        md = paths["md"].read_text() + "\n### Chosen settings (grid on validation)\n\n"
        atomic_write_text(paths["md"], md + _grid_table(rows))
    print(_grid_table(rows))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("part", choices=["frappe", "frappe-grid", "criteo", "fnn-curve"])
    p.add_argument("--path", required=True, help="dataset folder or file")
    p.add_argument("--models", nargs="*", help="subset of models (default: all)")
    p.add_argument("--epochs", type=int, default=0, help="epoch cap (0: protocol default)")
    p.add_argument("--batch-size", type=int, default=0, help="batch size (0: 4096)")
    p.add_argument("--curve-epochs", type=int, default=5, help="FNN epochs in fnn-curve")
    p.add_argument(
        "--embedding-l2", type=float, nargs="+", default=[0.0],
        help="embedding L2 (frappe-grid: the grid; other parts: the first value)",
    )  # fmt: skip
    p.add_argument(
        "--grid-models", nargs="*", default=[],
        help="frappe-grid: models tuned on the grid; the others reuse the L2 the first one chose",
    )  # fmt: skip
    p.add_argument(
        "--emb-reg", choices=["rows", "full"], default="rows",
        help="frappe-grid: L2 on the rows a batch uses (TrainConfig.embedding_l2) or FuxiCTR's "
        "full-table (reg/2)||E||^2",
    )  # fmt: skip
    p.add_argument("--dropout", type=float, nargs="*", default=[], help="frappe-grid: dropouts")
    p.add_argument(
        "--shallow-epochs", type=int, default=100, help="frappe-grid: epoch cap of LR and FM"
    )
    p.add_argument("--tag", default="", help="suffix of the result files")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.part == "fnn-curve":
        run_fnn_curve(args)
    elif args.part == "frappe-grid":
        args.epochs = args.epochs or 30
        run_frappe_grid(args)
    else:
        run_leaderboard(args.part, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
