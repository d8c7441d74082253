"""TorchRec sharded training against DDP, and a planner simulation of a Criteo-1TB-sized job.

Two parts (both need TorchRec: ``pip install recforge[torchrec]``, see docs/SCALING.md):

``--part ranks`` trains a DNN through ``recforge train`` on 2 gloo CPU ranks (one thread each)
with ``train.engine=ddp`` and ``train.engine=torchrec`` (row-wise and table-wise), for an
embedding table set 4x and 16x the size of the dense layers (the MLP is sized to hit the
ratio). It reports samples/s and what each rank holds of the tables (weights and optimizer
state, read from the run's checkpoints: every rank's own shards for TorchRec, the whole tables
for DDP), and the same row-wise run on 1 rank, to show row-wise memory falling as 1/N::

    python benchmarks/bench_torchrec.py --part ranks

``--part plan`` asks TorchRec's ``EmbeddingShardingPlanner`` (a fake ``Topology`` of N CUDA
devices, no processes) for a plan per sharding type at 8, 64 and 512 ranks, for DLRM's Criteo
1TB tables (the 26 sizes of TorchRec's published DLRM run, 128 dims) and for the same tables
scaled to ~1e9 rows, and reports the planner's own estimates: memory per rank (HBM + host DDR
of the largest rank) and the bytes each rank sends and receives per step (its input and output
all-to-all sizes), plus its estimated step time::

    python benchmarks/bench_torchrec.py --part plan

Results go to ``benchmarks/results/torchrec_ranks.md`` and ``torchrec_plan.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

# TorchRec's DLRM on Criteo 1TB (facebookresearch/dlrm torchrec_dlrm/README.MD): 26 tables,
# 128 dims, "collective size of embedding tables 91.10 GiB"; 8 x A100 40GB: ~1,671,168
# records/s at local batch 2048, ~5,373,952 at 8192
CRITEO_1TB_ROWS = [
    45833188, 36746, 17245, 7413, 20243, 3, 7114, 1441, 62, 29275261, 1572176, 345138, 10,
    2209, 11267, 128, 4, 974, 14, 48937457, 11316796, 40094537, 452104, 12606, 104, 35,
]  # fmt: skip
DIM = 128


# ---- part 1: 2 CPU ranks ------------------------------------------------------------------
def _base(root: Path, rows: int, n_items: int) -> dict:
    return {
        "data": {
            "dataset": "synthetic",
            "options": {"rows": rows, "seed": 0, "n_users": 2000, "n_items": n_items},
            "cache_dir": str(root / "cache"),
        },
        "train": {
            "batch_size": 2048,
            "lr": 0.05,
            "epochs": 1,
            "patience": 0,
            "lr_patience": 0,
            "optimizer": "adagrad",
            "device": "cpu",
            "threads": 1,
            "progress": False,
            "eval_batch_size": 8192,
        },
    }


def _schema_sizes(cfg: dict, dim: int) -> tuple[int, int]:
    """(embedding parameters, width of the flat embedding input) of the run's schema."""
    from recforge.config import load_run_config
    from recforge.data.pipeline import encode_run

    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump({**cfg, "model": {"name": "dnn", "params": {}}}, f)
    run_cfg = load_run_config(f.name, [])
    schema = encode_run(run_cfg.data, seed=run_cfg.train.seed).preprocessor.schema
    owners = list(schema.sparse_fields) + [
        s for s in schema.sequence_fields if not s.share_embedding_with
    ]
    rows = sum(int(f.vocab_size) for f in owners)
    fields = len(schema.sparse_fields) + len(schema.dense_fields) + len(schema.sequence_fields)
    return rows * dim + len(schema.dense_fields) * dim, fields * dim


def _hidden_for(dense_params: float, width: int) -> list[int]:
    """Two layers ``[h, h // 2]`` whose parameters come closest to ``dense_params``."""

    def count(h: int) -> int:
        return width * h + h + h * (h // 2) + h // 2 + h // 2 + 1

    best = min(range(2, 4096, 2), key=lambda h: abs(count(h) - dense_params))
    return [best, best // 2]


def _bytes(tree: object) -> int:
    if isinstance(tree, torch.Tensor):
        return tree.numel() * tree.element_size()
    if isinstance(tree, dict):
        return sum(_bytes(v) for v in tree.values())
    if isinstance(tree, (list, tuple)):
        return sum(_bytes(v) for v in tree)
    return 0


def _per_rank_table_bytes(out: Path, engine: str, nproc: int) -> list[tuple[int, int]]:
    """(table weight bytes, table optimizer-state bytes) each rank holds."""
    if engine == "ddp":  # every rank holds the whole tables and their Adagrad sums
        state = torch.load(out / "checkpoint.pt", weights_only=True)
        tables = {k: v for k, v in state["model"].items() if k.endswith("embedding.weight")}
        shapes = {tuple(v.shape) for k, v in tables.items() if k.startswith("embedding.")}
        weights = sum(_bytes(v) for k, v in tables.items() if k.startswith("embedding."))
        opt = sum(
            _bytes(t)
            for o in state["optimizers"]
            for s in o["state"].values()
            for t in s.values()
            if isinstance(t, torch.Tensor) and tuple(t.shape) in shapes
        )
        return [(weights, opt)] * nproc
    out_list = []
    for rank in range(nproc):
        name = "checkpoint.pt" if rank == 0 else f"checkpoint.rank{rank}.pt"
        state = torch.load(out / name, weights_only=True)
        weights = sum(
            _bytes(v) for k, v in state["model"].items() if ".collection.embedding_bags." in k
        )
        out_list.append((weights, _bytes(state["engine_state"]["state"])))
    return out_list


def _train(root: Path, name: str, cfg: dict, nproc: int) -> dict:
    path = root / f"{name}.yaml"
    cfg = {**cfg, "output_dir": str(root / name)}
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "recforge", "train", "-c", str(path), "--nproc", str(nproc)],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    if proc.returncode:
        raise RuntimeError(f"{name} failed:\n{proc.stderr[-3000:]}")
    history = json.loads((root / name / "history.json").read_text())
    return {
        "samples_per_s": history[-1]["train_samples_per_s"],
        "wall_s": time.perf_counter() - start,
        "per_rank": _per_rank_table_bytes(root / name, cfg["train"]["engine"], nproc),
    }


def part_ranks(rows: int, n_items: int, dim: int) -> str:
    root = Path(tempfile.mkdtemp(prefix="bench_torchrec_"))
    base = _base(root, rows, n_items)
    emb_params, width = _schema_sizes(base, dim)
    lines = [
        "# TorchRec sharded training vs DDP on 2 CPU ranks",
        "",
        "`python benchmarks/bench_torchrec.py --part ranks "
        f"--rows {rows} --n-items {n_items} --dim {dim}`"
        f" (DNN, embedding dim {dim}, synthetic click log of {rows:,} rows, global batch 2048,"
        " one epoch, Adagrad, gloo, one thread per rank on the shared 2-core build machine).",
        f"Tables: {emb_params:,} parameters ({emb_params * 4 / 2**20:.1f} MiB fp32); the MLP is"
        " sized so the tables are 4x or 16x the dense parameters. Per-rank bytes are the table"
        " weights and their optimizer state each rank holds (TorchRec: its own shards, read"
        " from its sharded checkpoint; DDP: the whole tables).",
        "",
        "| tables / dense | engine (plan) | ranks | samples/s | table weights per rank (MiB)"
        " | optimizer state per rank (MiB) |",
        "|---|---|---|---|---|---|",
    ]
    records = []
    for ratio in (4, 16):
        hidden = _hidden_for(emb_params / ratio, width)
        runs = [
            ("ddp", None, 2),
            ("torchrec", "row_wise", 2),
            ("torchrec", "table_wise", 2),
            ("torchrec", "row_wise", 1),
        ]
        for engine, plan, nproc in runs:
            cfg = json.loads(json.dumps(base))
            cfg["model"] = {
                "name": "dnn",
                "params": {"hidden": hidden, "dropout": 0.0, "embedding_dim": dim, "sparse": True},
            }
            cfg["train"]["engine"] = engine
            if plan:
                cfg["train"]["sharding"] = {"*": plan}
            name = f"r{ratio}_{engine}_{plan}_{nproc}"
            logging.info("running %s (hidden %s)", name, hidden)
            result = _train(root, name, cfg, nproc)
            records.append({"ratio": ratio, "engine": engine, "plan": plan, "nproc": nproc,
                            "hidden": hidden, **result})  # fmt: skip
            weights = " / ".join(f"{w / 2**20:.2f}" for w, _ in result["per_rank"])
            opt = " / ".join(f"{o / 2**20:.2f}" for _, o in result["per_rank"])
            label = engine if plan is None else f"torchrec ({plan})"
            lines.append(
                f"| {ratio}x (MLP {hidden}) | {label} | {nproc} | "
                f"{result['samples_per_s']:,.0f} | {weights} | {opt} |"
            )
    (RESULTS / "torchrec_ranks.json").write_text(json.dumps(records, indent=1))
    return "\n".join(lines) + "\n"


# ---- part 2: the planner's estimates for a Criteo-1TB-sized job ---------------------------
def _plan_stats(rows: list[int], world: int, kind: str, batch: int) -> dict | None:
    import torchrec
    from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
    from torchrec.distributed.planner import EmbeddingShardingPlanner, Topology
    from torchrec.distributed.planner.shard_estimators import _calculate_shard_io_sizes
    from torchrec.distributed.planner.types import ParameterConstraints, PlannerError

    tables = [
        torchrec.EmbeddingBagConfig(
            name=f"t{i}", num_embeddings=n, embedding_dim=DIM, feature_names=[f"f{i}"]
        )
        for i, n in enumerate(rows)
    ]
    ebc = torchrec.EmbeddingBagCollection(tables=tables, device=torch.device("meta"))
    constraints = None
    if kind != "auto":
        # the forced type for every table that can take it; tiny tables left to the planner
        constraints = {
            t.name: ParameterConstraints(sharding_types=[kind])
            for t in tables
            if t.num_embeddings >= world
        }
    topology = Topology(world_size=world, compute_device="cuda", local_world_size=8)
    planner = EmbeddingShardingPlanner(topology=topology, batch_size=batch, constraints=constraints)
    try:
        planner.plan(ebc, [EmbeddingBagCollectionSharder()])
    except PlannerError:
        return None
    best = planner._best_plan  # the ShardingOptions of the chosen plan, with estimates
    assert best is not None
    hbm = [0.0] * world
    ddr = [0.0] * world
    sent = [0.0] * world
    recv = [0.0] * world
    perf = [0.0] * world
    kinds: dict[str, int] = {}
    for option in best:
        kinds[option.sharding_type] = kinds.get(option.sharding_type, 0) + 1
        ins, outs = _calculate_shard_io_sizes(
            sharding_type=option.sharding_type,
            batch_sizes=[option.batch_size] * option.num_inputs,
            world_size=world,
            local_world_size=topology.local_world_size,
            input_lengths=option.input_lengths,
            emb_dim=option.tensor.shape[1],
            shard_sizes=[s.size for s in option.shards],
            input_data_type_size=8,
            output_data_type_size=option.tensor.element_size(),
            num_poolings=[1.0] * option.num_inputs,
            is_pooled=option.is_pooled,
        )
        for shard, i_size, o_size in zip(option.shards, ins, outs, strict=True):
            r = shard.rank
            hbm[r] += shard.storage.hbm
            ddr[r] += shard.storage.ddr
            recv[r] += i_size  # ids sent to the shard's owner
            sent[r] += o_size  # pooled embeddings it sends back (gradients the same way)
            perf[r] += shard.perf.total
    top = max(range(world), key=lambda r: hbm[r] + ddr[r])
    return {
        "kinds": kinds,
        "hbm_gib": hbm[top] / 2**30,
        "ddr_gib": ddr[top] / 2**30,
        "in_mib": max(recv) / 2**20,
        "out_mib": max(sent) / 2**20,
        "step_ms": max(perf),
    }


def part_plan(batch: int) -> str:
    logging.getLogger("torchrec").setLevel(logging.ERROR)
    total = sum(CRITEO_1TB_ROWS)
    scale = 1e9 / total
    sets = {
        f"DLRM Criteo 1TB tables ({total / 1e6:.0f}M rows)": CRITEO_1TB_ROWS,
        f"x{scale:.1f} ({1e9 / 1e6:,.0f}M rows)": [max(int(n * scale), 1) for n in CRITEO_1TB_ROWS],
    }
    lines = [
        "# Planner estimates for a Criteo-1TB-sized job",
        "",
        f"`python benchmarks/bench_torchrec.py --part plan --batch {batch}`: TorchRec 1.8.0's"
        " `EmbeddingShardingPlanner` on a fake `Topology(world_size=N, compute_device='cuda',"
        " local_world_size=8)` (its defaults: 32 GiB HBM and 128 GiB host DDR per device,"
        " 600 GB/s within a node, 12.5 GB/s across nodes), 26 pooled tables of dim 128 (fp32),"
        f" one id per feature, local batch {batch}. The sharding type is forced on every table"
        " with at least N rows (`auto`: the planner chooses). Memory: the rank holding most"
        " (weights, optimizer state and the planner's working buffers); comms: the largest"
        " per-rank all-to-all input (ids) and output (pooled vectors) per step, forward (the"
        " backward sends the gradients of the output back); step: the planner's perf estimate"
        " for the slowest rank. `no plan`: the planner finds no placement that fits.",
        "",
        "| tables | N | plan | HBM per rank (GiB) | DDR per rank (GiB) | ids in per rank (MiB)"
        " | pooled out per rank (MiB) | est. step (ms) | types chosen |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, rows in sets.items():
        weights = sum(rows) * DIM * 4 / 2**30
        for world in (8, 64, 512):
            for kind in ("auto", "table_wise", "row_wise", "column_wise", "table_row_wise"):
                t0 = time.perf_counter()
                stats = _plan_stats(rows, world, kind, batch)
                logging.info("%s N=%d %s: %.1fs", label, world, kind, time.perf_counter() - t0)
                if stats is None:
                    lines.append(f"| {label}, {weights:.1f} GiB | {world} | {kind} | no plan |"
                                 " | | | | |")  # fmt: skip
                    continue
                chosen = ", ".join(f"{k}: {v}" for k, v in sorted(stats["kinds"].items()))
                lines.append(
                    f"| {label}, {weights:.1f} GiB | {world} | {kind} | {stats['hbm_gib']:.2f} | "
                    f"{stats['ddr_gib']:.2f} | {stats['in_mib']:.2f} | {stats['out_mib']:.2f} | "
                    f"{stats['step_ms']:.2f} | {chosen} |"
                )
    lines += [
        "",
        "Published (TorchRec DLRM example, facebookresearch/dlrm `torchrec_dlrm/README.MD`): the"
        " same 26 tables at dim 128, 91.10 GiB of embedding tables, trained on one AWS"
        " p4d.24xlarge (8 x A100 40GB): ~1,671,168 records/s at local batch 2048 (global 16384),"
        " ~5,373,952 records/s at 8192; AUROC 0.8025 after one epoch.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=["ranks", "plan"], required=True)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--n-items", type=int, default=40_000)
    parser.add_argument("--dim", type=int, default=16)
    parser.add_argument("--batch", type=int, default=2048, help="local batch (plan part)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.part == "ranks":
        text = part_ranks(args.rows, args.n_items, args.dim)
        out = RESULTS / "torchrec_ranks.md"
    else:
        text = part_plan(args.batch)
        out = RESULTS / "torchrec_plan.md"
    out.write_text(text)
    print(text)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
