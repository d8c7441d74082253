"""Core speed benchmark (issue 2): FM and a DNN (3 x 400 ReLU) on a Criteo-shaped synthetic log.

26 categorical + 13 numeric fields, 1M rows, vocabularies up to 1e6 (``make_wide_log``),
embedding 16, batch 4096, fp32 and bf16 autocast. Prints generation time, preprocessing rows/s,
train and predict samples/s, test AUC, peak RSS per phase, the speed of the MLP math alone on
precomputed inputs (the ceiling for the DNN), and a breakdown of a training step (timed phases
and a cProfile) giving the share of time spent outside model math.

Run (the issue's scale; ~5 min on 2 idle cores)::

    nice -n 10 python benchmarks/bench_core.py --threads 2

Results go to ``benchmarks/results/bench_core.json``. Reference (issue 2, 2 cores, embedding 16,
batch 4096): the fastest existing PyTorch CTR library trains a DeepFM of this shape at ~20k
samples/s, predicts ~70k/s, preprocesses 1M rows in ~10 s, peaks at ~1.8 GB; the MLP math alone
trains at ~55k samples/s (fp32) and ~110k (bf16). Target: DNN >= 60k samples/s fp32.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import importlib
import json
import platform
import pstats
import time
from pathlib import Path

import numpy as np
import torch

from recforge import metrics
from recforge.config import TrainConfig
from recforge.data.encode.preprocess import Preprocessor
from recforge.data.loader import BatchLoader
from recforge.data.sources.synthetic import make_wide_log
from recforge.train.trainer import Trainer, seed_everything

RESULTS = Path(__file__).resolve().parent / "results"


# ---- memory ------------------------------------------------------------------------------
def _status_kb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return float(line.split()[1])
    return float("nan")


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) so each phase reports its own peak."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_mb() -> float:
    return _status_kb("VmHWM") / 1024.0


def rss_mb() -> float:
    return _status_kb("VmRSS") / 1024.0


# ---- models --------------------------------------------------------------------------------
def model_spec(name: str):
    """The registry entry, or the module's SPEC when the registry cannot load (work in progress)."""
    try:
        from recforge.models import registry

        return registry.get(name), "registry"
    except Exception as exc:  # a half-written model elsewhere must not stop the benchmark
        print(
            f"# registry unavailable for {name!r} ({type(exc).__name__}: {exc}); importing module"
        )
        return importlib.import_module(f"recforge.models.{name}").SPEC, "module"


def build(name: str, schema, dim: int, sparse: bool, seed: int):
    spec, source = model_spec(name)
    seed_everything(seed)
    cfg = spec.config(embedding_dim=dim, sparse=sparse)
    return spec.model(schema, cfg), source


def train_config(args: argparse.Namespace, bf16: bool) -> TrainConfig:
    return TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=1e-3,
        patience=0,
        lr_patience=0,
        seed=args.seed,
        bf16=bf16,
        device="cpu",
        threads=args.threads,
        progress=False,
        eval_batch_size=args.batch_size * 4,
    )


# ---- phases --------------------------------------------------------------------------------
def mlp_alone(in_dim: int, batch: int, bf16: bool, steps: int) -> float:
    """Samples/s of the 3 x 400 MLP trained on precomputed inputs (the model-math ceiling)."""
    torch.manual_seed(0)
    layers: list[torch.nn.Module] = []
    width = in_dim
    for h in (400, 400, 400):
        layers += [torch.nn.Linear(width, h), torch.nn.ReLU()]
        width = h
    mlp = torch.nn.Sequential(*layers, torch.nn.Linear(width, 1))
    opt = torch.optim.Adam(mlp.parameters(), lr=1e-3)
    x = torch.randn(batch, in_dim)
    y = (torch.rand(batch) < 0.25).float()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = mlp(x).squeeze(-1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(out.float(), y)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - start)


def timed_steps(trainer: Trainer, data, steps: int) -> dict[str, float]:
    """Wall time per phase of ``steps`` training steps, replicating the trainer's loop."""
    loader = BatchLoader(data, trainer.cfg.batch_size, shuffle=True, seed=0)
    generator = torch.Generator().manual_seed(0)
    phases = dict.fromkeys(("batching", "forward+loss", "backward", "optimizer", "other"), 0.0)
    trainer.model.train()
    it = iter(loader)
    total_start = time.perf_counter()
    for _ in range(steps):
        t0 = time.perf_counter()
        batch = next(it).to(trainer.device)
        t1 = time.perf_counter()
        for opt in trainer.optimizers:
            opt.zero_grad(set_to_none=True)
        t2 = time.perf_counter()
        loss = trainer._loss(batch, generator)
        t3 = time.perf_counter()
        loss.backward()
        t4 = time.perf_counter()
        for opt in trainer.optimizers:
            opt.step()
        t5 = time.perf_counter()
        float(loss.detach())
        t6 = time.perf_counter()
        phases["batching"] += t1 - t0
        phases["forward+loss"] += t3 - t2
        phases["backward"] += t4 - t3
        phases["optimizer"] += t5 - t4
        phases["other"] += (t2 - t1) + (t6 - t5)
    total = time.perf_counter() - total_start
    out = {k: v / total for k, v in phases.items()}
    out["outside_model_math"] = out["batching"] + out["other"]
    out["samples_per_s"] = steps * trainer.cfg.batch_size / total
    return out


def profile_steps(trainer: Trainer, data, steps: int) -> dict[str, object]:
    """cProfile of ``steps`` steps of the trainer's own epoch loop, grouped by phase."""
    subset = data.take(np.arange(min(len(data), steps * trainer.cfg.batch_size)))
    loader = BatchLoader(subset, trainer.cfg.batch_size, shuffle=True, seed=0)
    profiler = cProfile.Profile()
    profiler.enable()
    trainer._train_epoch(loader, torch.Generator().manual_seed(0), 0)
    profiler.disable()
    stats = pstats.Stats(profiler)
    entries = stats.stats  # (file, line, func) -> (cc, nc, tottime, cumtime, callers)

    def cum(pred) -> float:
        return sum(v[3] for k, v in entries.items() if pred(*k))

    total = cum(lambda f, _l, fn: fn == "_train_epoch")
    groups = {
        "batching (loader + to_batch + Batch.to)": cum(
            lambda f, _l, fn: (
                (f.endswith("loader.py") and fn == "__iter__")
                or (f.endswith("features.py") and fn == "to")
            )
        ),
        "forward+loss (Trainer._loss)": cum(lambda f, _l, fn: fn == "_loss"),
        "backward": cum(lambda f, _l, fn: f.endswith("_tensor.py") and fn == "backward"),
        "optimizer step": cum(lambda f, _l, fn: "optim" in f and fn == "wrapper"),
        "zero_grad": cum(lambda f, _l, fn: "optim" in f and fn == "zero_grad"),
    }
    shares = {k: v / total for k, v in groups.items()}
    math = sum(shares[k] for k in ("forward+loss (Trainer._loss)", "backward", "optimizer step"))
    top = sorted(entries.items(), key=lambda kv: kv[1][2], reverse=True)[:12]
    return {
        "total_s": total,
        "shares": shares,
        "outside_model_math": 1.0 - math,
        "top_tottime": [
            {"function": f"{Path(k[0]).name}:{k[1]}({k[2]})", "tottime_s": round(v[2], 4)}
            for k, v in top
        ],
    }


# ---- main ----------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--max-vocab", type=int, default=1_000_000)
    parser.add_argument("--models", default="fm,dnn")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--embedding-dim", type=int, default=16)
    parser.add_argument("--dense-embeddings", action="store_true", help="dense Adam on tables")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--train-rows", type=int, default=0, help="train on the first N encoded rows (0: all)"
    )
    parser.add_argument("--profile-steps", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS / "bench_core.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sparse = not args.dense_embeddings
    report: dict[str, object] = {
        "command": "python benchmarks/bench_core.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out"),
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{args.threads} threads",
        "sparse_embeddings": sparse,
    }
    can_reset = reset_peak()

    t = time.perf_counter()
    table, schema = make_wide_log(rows=args.rows, max_vocab=args.max_vocab, seed=args.seed)
    report["generate_s"] = time.perf_counter() - t
    n_train = int(args.rows * 0.9)
    train_raw, test_raw = table.slice(0, n_train), table.slice(n_train)
    print(f"generated {args.rows:,} rows in {report['generate_s']:.1f} s; peak {peak_mb():.0f} MB")

    gc.collect()
    reset_peak()
    t = time.perf_counter()
    pre = Preprocessor(schema).fit(train_raw)
    fit_s = time.perf_counter() - t
    train = pre.transform(train_raw)
    test = pre.transform(test_raw)
    prep_s = time.perf_counter() - t
    vocab = [f.vocab_size for f in pre.schema.sparse_fields]
    report["preprocess"] = {
        "fit_s": fit_s,
        "fit_transform_s": prep_s,
        "rows_per_s": args.rows / prep_s,
        "peak_mb": peak_mb(),
        "vocab_total": int(sum(vocab)),
        "vocab_max": int(max(vocab)),
    }
    print(
        f"preprocess: fit {fit_s:.1f} s, fit+transform {prep_s:.1f} s "
        f"({args.rows / prep_s:,.0f} rows/s); vocab total {sum(vocab):,}, max {max(vocab):,}; "
        f"peak {peak_mb():.0f} MB"
    )
    del table, train_raw, test_raw
    if 0 < args.train_rows < len(train):
        train = train.take(np.arange(args.train_rows))  # throughput is per sample
    gc.collect()

    in_dim = (len(pre.schema.sparse_fields) + len(pre.schema.dense_fields)) * args.embedding_dim
    report["mlp_alone"] = {
        p: mlp_alone(in_dim, args.batch_size, p == "bf16", steps=10)
        for p in args.precisions.split(",")
    }
    for p, v in report["mlp_alone"].items():
        print(f"MLP math alone ({in_dim} -> 3x400), {p}: {v:,.0f} samples/s")

    runs = []
    for name in args.models.split(","):
        for precision in args.precisions.split(","):
            gc.collect()
            reset_peak()
            model, source = build(
                name, pre.schema, args.embedding_dim, sparse=sparse, seed=args.seed
            )
            trainer = Trainer(model, train_config(args, bf16=precision == "bf16"))
            history = trainer.fit(train)
            t = time.perf_counter()
            scores = trainer.predict(test)
            predict_s = time.perf_counter() - t
            auc = metrics.auc(np.asarray(test.label), scores)
            run = {
                "model": name,
                "source": source,
                "precision": precision,
                "train_samples_per_s": history[-1]["train_samples_per_s"],
                "predict_samples_per_s": len(test) / predict_s,
                "test_auc": auc,
                "peak_mb": peak_mb(),
                "parameters": sum(p.numel() for p in model.parameters()),
            }
            if precision == "fp32":
                run["timed_phases"] = timed_steps(trainer, train, steps=args.profile_steps)
                run["profile"] = profile_steps(trainer, train, steps=args.profile_steps)
            runs.append(run)
            print(
                f"{name:>4} {precision}: train {run['train_samples_per_s']:,.0f} samples/s, "
                f"predict {run['predict_samples_per_s']:,.0f} samples/s, AUC {auc:.4f}, "
                f"peak {run['peak_mb']:.0f} MB ({source})"
            )
            if "timed_phases" in run:
                phases = run["timed_phases"]
                print(
                    "      step breakdown (timed): "
                    + ", ".join(f"{k} {v:.1%}" for k, v in phases.items() if k != "samples_per_s")
                )
                prof = run["profile"]
                print(
                    "      cProfile: "
                    + ", ".join(f"{k} {v:.1%}" for k, v in prof["shares"].items())
                    + f"; outside model math {prof['outside_model_math']:.1%}"
                )
            del model, trainer
    report["runs"] = runs
    report["peak_reset_supported"] = can_reset
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
