"""Resident memory of a DeepFM job, phase by phase (issue 16).

Two paths on the peer harness's Criteo-shaped CSV (``benchmarks/peers/gen_data.py``):

* ``--path python``: the in-memory Python API, as ``benchmarks/peers/run_recforge.py`` uses it
  (``read_table`` with the schema, the harness's log1p, ``Preprocessor`` fit/transform), then
  a DeepFM (400-400-400) trained one epoch with Adam; RSS after every phase.
* ``--path front-door``: ``encode_run`` with ``dataset: files``, what ``recforge train`` runs
  (streams when the file is large for ``memory_budget_mb``); peak and resident after.

    python benchmarks/peers/gen_data.py --rows 1000000 --seed 0 --out /tmp/criteo_1m.csv
    python benchmarks/memory_profile.py /tmp/criteo_1m.csv --path python [--no-train]
    python benchmarks/memory_profile.py /tmp/criteo_1m.csv --path front-door
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parent / "peers"))
import bench_common as bc  # noqa: E402  (the harness's column names and split)

from recforge import CategoricalField, NumericField, Schema  # noqa: E402


def memory() -> dict[str, int]:
    """VmRSS and VmHWM (peak) in MB, and the Arrow pool's allocation."""
    out = {"arrow_mb": pa.total_allocated_bytes() >> 20}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS", "VmHWM")):
            out[line.split(":")[0].replace("Vm", "").lower() + "_mb"] = int(line.split()[1]) >> 10
    return out


def schema() -> Schema:
    fields = tuple(NumericField(c, fill_value=0.0, transform="minmax") for c in bc.DENSE_COLS)
    fields += tuple(CategoricalField(c) for c in bc.CAT_COLS)
    return Schema(fields=fields, label=bc.LABEL, embedding_dim=16)


def python_path(data: str, train: bool) -> None:
    import torch

    from recforge.config import TrainConfig
    from recforge.data.encode.preprocess import Preprocessor
    from recforge.data.read.readers import read_table
    from recforge.data.read.stream import release_memory
    from recforge.models import registry
    from recforge.train.trainer import Trainer, seed_everything

    def report(phase: str, start: float) -> None:
        print(json.dumps({"phase": phase, "s": round(time.time() - start, 2), **memory()}))

    report("imports", time.time())
    t = time.time()
    table = read_table(data, schema=schema())
    report("read_table", t)
    for c in bc.DENSE_COLS:
        col = pc.log1p(pc.max_element_wise(pc.fill_null(table.column(c), 0.0), 0.0))
        table = table.set_column(table.schema.get_field_index(c), c, col)
    cut = bc.split_point(table.num_rows)
    train_raw, test_raw = table.slice(0, cut), table.slice(cut)
    t = time.time()
    pre = Preprocessor(schema()).fit(train_raw)
    report("fit", t)
    t = time.time()
    encoded, test = pre.transform(train_raw), pre.transform(test_raw)
    report("transform", t)
    del table, train_raw, test_raw
    t = time.time()
    release_memory()
    report("release_memory", t)
    if not train:
        return
    seed_everything(0)
    params = {"hidden": [400, 400, 400], "dropout": 0.0}  # recforge's defaults otherwise
    model = registry.build("deepfm", pre.schema, params)
    cfg = TrainConfig(epochs=1, batch_size=4096, lr=1e-3, patience=0, lr_patience=0,
                      threads=2, progress=False, eval_batch_size=4096)  # fmt: skip
    trainer = Trainer(model, cfg)
    t = time.time()
    trainer.fit(encoded)
    report("train 1 epoch", t)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    state = sum(
        v.numel() * v.element_size()
        for opt in trainer.optimizers
        for per_param in opt.state.values()
        for v in per_param.values()
        if isinstance(v, torch.Tensor)
    )
    data = sum(a.nbytes for a in encoded.arrays().values()) + sum(
        a.nbytes for a in test.arrays().values()
    )
    print(json.dumps({"model_mb": weights >> 20, "optimizer_state_mb": state >> 20,
                      "gradients_mb": weights >> 20, "encoded_data_mb": data >> 20}))  # fmt: skip
    t = time.time()
    trainer.predict(test)
    report("predict", t)


def front_door(data: str) -> None:
    from recforge.config import DataConfig
    from recforge.data.pipeline import encode_run

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "schema.json"
        path.write_text(schema().to_json())
        cfg = DataConfig(dataset="files", train=data, schema=str(path), cache_dir=tmp)
        t = time.time()
        run = encode_run(cfg, seed=0, use_cache=False)
        print(json.dumps({"phase": "encode_run", "s": round(time.time() - t, 2),
                          "rows": len(run.train), **memory()}))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--path", choices=["python", "front-door"], default="python")
    parser.add_argument("--no-train", action="store_true")
    args = parser.parse_args()
    if args.path == "python":
        python_path(args.data, train=not args.no_train)
    else:
        front_door(args.data)


if __name__ == "__main__":
    main()
