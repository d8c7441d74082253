"""Predict speed of an exported DeepFM: eager PyTorch vs TorchScript vs ONNX Runtime (CPU).

A DeepFM (recforge defaults, embedding 16) on a Criteo-shaped synthetic log (26 categorical +
13 numeric fields, ``make_wide_log``), saved as a bundle and exported with ``export_bundle``
(TorchScript, ONNX via the torch.export-based exporter and via the legacy one). Each engine
scores the same pre-encoded batches of 4096 rows (model time only, preprocessing excluded);
figures are the median records/s over ``--reps`` timed passes after warm-up, engines taking
turns pass by pass.
Scores are checked to agree with eager within 1e-5 before timing.

Run::

    nice -n 10 python benchmarks/bench_export.py --threads 1

Results go to ``benchmarks/results/bench_export.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from recforge.data.encode.preprocess import Preprocessor
from recforge.data.loader import BatchLoader
from recforge.data.sources.synthetic import make_wide_log
from recforge.models import registry
from recforge.serve.bundle import save_bundle
from recforge.serve.export import encoded_inputs, export_bundle, load_exported
from recforge.train import seed_everything


def interleaved_rates(
    engines: dict[str, tuple[Callable, list]], reps: int, warmup: int = 2
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Median records/s of each engine over ``reps`` passes (one pass = every batch once).

    The engines take turns pass by pass, so load from other processes on a shared machine
    hits them alike.
    """
    outs: dict[str, np.ndarray] = {}
    for name, (fn, batches) in engines.items():
        for _ in range(warmup):
            outs[name] = np.concatenate([fn(b) for b in batches])
    rates: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(reps):
        for name, (fn, batches) in engines.items():
            t = time.perf_counter()
            for b in batches:
                fn(b)
            rates[name].append(len(outs[name]) / (time.perf_counter() - t))
    return {k: float(np.median(v)) for k, v in rates.items()}, outs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000, help="rows to fit the vocabularies on")
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--batches", type=int, default=8, help="distinct batches per pass")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/results/bench_export.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    table, schema = make_wide_log(rows=args.rows, seed=0)
    pre = Preprocessor(schema).fit(table)
    seed_everything(0)
    model = registry.build("deepfm", pre.schema, {"embedding_dim": 16}).eval()
    data = pre.transform(table.slice(0, args.batch * args.batches), with_label=False)
    tmp = Path(tempfile.mkdtemp(prefix="bench_export."))
    bundle = save_bundle(tmp / "deepfm", "deepfm", model, pre)

    export_s = {}
    exports = {}
    for key, fmt, exporter in (
        ("torchscript", "torchscript", "dynamo"),
        ("onnx_dynamo", "onnx", "dynamo"),
        ("onnx_legacy", "onnx", "legacy"),
    ):
        t = time.perf_counter()
        exports[key] = export_bundle(bundle, tmp / key, fmt, exporter)
        export_s[key] = round(time.perf_counter() - t, 2)

    torch_batches = list(BatchLoader(data, args.batch))
    inputs = encoded_inputs(data, pre.schema)
    np_batches = [
        {k: v[i : i + args.batch] for k, v in inputs.items()}
        for i in range(0, len(data), args.batch)
    ]

    def eager(batch):
        with torch.inference_mode():
            return torch.sigmoid(model(batch)).numpy()

    engines: dict[str, tuple[Callable, list]] = {"eager": (eager, torch_batches)}
    for key, folder in exports.items():
        run = load_exported(folder, threads=args.threads).run
        engines[key] = (lambda b, run=run: run(b)["scores"], np_batches)
    results, outs = interleaved_rates(engines, args.reps)
    max_diff = {k: float(np.abs(outs[k] - outs["eager"]).max()) for k in exports}
    assert all(d < 1e-5 for d in max_diff.values()), max_diff

    for key, r in results.items():
        speedup = r / results["eager"]
        print(f"DeepFM batch {args.batch} {key:12s} {r:12,.0f} records/s  x{speedup:.2f} vs eager")
    print(f"export seconds: {export_s}; max |score - eager|: {max_diff}")
    payload = {
        "what": "DeepFM predict records/s on pre-encoded batches (model time only), CPU",
        "command": "nice -n 10 python benchmarks/bench_export.py "
        f"--threads {args.threads} --rows {args.rows} --batch {args.batch} --reps {args.reps}",
        "schema": {"categorical": 26, "numeric": 13, "embedding_dim": 16, "fit_rows": args.rows},
        "batch_size": args.batch,
        "threads": args.threads,
        "records_per_s": {k: round(v) for k, v in results.items()},
        "speedup_vs_eager": {k: round(v / results["eager"], 3) for k, v in results.items()},
        "max_abs_score_diff_vs_eager": max_diff,
        "export_seconds": export_s,
        "versions": {
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
            "python": platform.python_version(),
        },
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch thread(s), shared",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(payload, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
