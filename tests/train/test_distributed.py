"""Distributed data parallel: sharding, equality with one process, gathered metrics, recovery.

Multi-process runs go through the command line (``python -m recforge train --nproc 2``: two
gloo processes on CPU, one thread each); the single-process references run in this process.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from recforge import metrics
from recforge.config import load_run_config
from recforge.data.loader import BatchLoader
from recforge.data.pipeline import encode_run
from recforge.data.store import load_encoded, save_encoded
from recforge.distributed.ddp import shard_bounds
from recforge.features import EncodedData
from recforge.run import partial_folder, train_from_config
from recforge.serve.bundle import load_bundle

# 1280 training rows in global batches of 99: every step splits 49/50 across two ranks and the
# last batch (92 rows) too, so the loss weighting of unequal shards is exercised throughout
BASE = {
    "data": {
        "dataset": "synthetic",
        "options": {"rows": 1600, "seed": 0, "n_users": 40, "n_items": 60},
    },
    "train": {
        "batch_size": 99,
        "lr": 0.01,
        "patience": 0,
        "lr_patience": 0,
        "device": "cpu",
        "threads": 1,
        "progress": False,
    },
}
DNN = {
    "name": "dnn",
    "params": {"hidden": [32, 16], "dropout": 0.0, "sparse": True, "batch_norm": False},
}  # per-rank batch norm would differ from one process
FM = {"name": "fm", "params": {}}
WORKER_TIMEOUT_S = 120


def _write_config(root: Path, name: str, model: dict, **train: object) -> Path:
    cfg = json.loads(json.dumps(BASE))
    cfg["data"]["cache_dir"] = str(root / "cache")
    cfg["train"].update(train)
    cfg["model"] = model
    cfg["output_dir"] = str(root / name)
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "recforge", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=WORKER_TIMEOUT_S,
    )


def _weights(output_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(output_dir / "checkpoint.pt", weights_only=False)["model"]


def _assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    # N ranks average N half-batch gradients where one process takes one mean: float32 rounding
    # of the two sums, which Adam's normalisation lifts to ~1e-5 on rarely-updated rows after a
    # few epochs (measured up to 1.3e-5); a wrong shard or a lost gradient moves weights ~1e-2
    assert a.keys() == b.keys()
    for key in a:
        diff = float((a[key].double() - b[key].double()).abs().max())
        assert diff < 5e-5, (key, diff)


# ---- sharding (no processes) ---------------------------------------------------------------
def _rows(n: int) -> EncodedData:
    return EncodedData(
        sparse=np.arange(n, dtype=np.int32)[:, None],
        dense=np.zeros((n, 0), dtype=np.float32),
        label=np.zeros(n, dtype=np.float32),
    )


@pytest.mark.parametrize("mmap", [False, True])
@pytest.mark.parametrize("n, batch, world", [(103, 10, 3), (101, 25, 2), (52, 25, 4)])
def test_rank_shards_partition_the_single_process_batches(n, batch, world, mmap, tmp_path):
    data = _rows(n)
    if mmap:  # memory-mapped batches are gathered in sorted order: ranks must keep that order
        save_encoded(data, tmp_path / "rows")
        data = load_encoded(tmp_path / "rows", mmap=True)
    single = [b.sparse[:, 0].tolist() for b in BatchLoader(data, batch, shuffle=True, seed=5)]
    shards = [
        [b.sparse[:, 0].tolist() for b in BatchLoader(data, batch, True, 5, False, r, world)]
        for r in range(world)
    ]
    # a last global batch with fewer rows than ranks is skipped (every rank needs a row)
    expected = [b for b in single if len(b) >= world]
    assert all(len(s) == len(expected) for s in shards)
    for step, rows in enumerate(expected):
        assert sum((shards[r][step] for r in range(world)), []) == rows
        sizes = [len(shards[r][step]) for r in range(world)]
        assert max(sizes) - min(sizes) <= 1


def test_shard_bounds_cover_rows_in_order():
    for n in (0, 1, 7, 100):
        bounds = [shard_bounds(n, r, 3) for r in range(3)]
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(bounds[r][1] == bounds[r + 1][0] for r in range(2))
        sizes = [hi - lo for lo, hi in bounds]
        assert max(sizes) - min(sizes) <= 1  # balanced, not all rows on one rank


# ---- two processes against one -------------------------------------------------------------
@pytest.fixture(scope="module")
def dnn_runs(tmp_path_factory):
    """A sparse-embedding DNN (dropout 0, batch-row embedding L2) trained 2 epochs both ways."""
    root = tmp_path_factory.mktemp("ddp_dnn")
    extra = {"epochs": 2, "embedding_l2": 1e-4}
    single = train_from_config(load_run_config(_write_config(root, "one", DNN, **extra)))
    proc = _cli(
        "train", "-c", str(_write_config(root, "two", DNN, **extra)), "--nproc", "2", cwd=root
    )
    assert proc.returncode == 0, proc.stderr
    return root, single, json.loads(proc.stdout)


def test_two_gloo_processes_match_one_process(dnn_runs):
    root, single, printed = dnn_runs
    _assert_same_weights(_weights(root / "one"), _weights(root / "two"))
    history_one = json.loads((root / "one" / "history.json").read_text())
    history_two = json.loads((root / "two" / "history.json").read_text())
    for a, b in zip(history_one, history_two, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
    # both runs trained (equal untrained weights would also match)
    assert len(history_one) >= 2 and history_one[-1]["train_loss"] < history_one[0]["train_loss"]
    assert printed["test"]["auc"] == pytest.approx(single.test_metrics["auc"], abs=1e-4)


def test_cli_rank_zero_writes_one_bundle(dnn_runs):
    root, _, printed = dnn_runs
    out = root / "two"
    assert printed["output_dir"] == str(out)
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["processes"] == 2
    assert (out / "bundle").is_dir() and (out / "config.yaml").exists()
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            "bundle",
            "checkpoint.pt",
            "config.yaml",
            "history.json",
            "learning_curve.png",
            "metrics.json",
        ]
    )


def test_metrics_gathered_across_ranks_equal_single_process_metrics(dnn_runs):
    root, _, _ = dnn_runs
    cfg = load_run_config(root / "two.yaml")
    test = encode_run(cfg.data, seed=cfg.train.seed).test
    scores = load_bundle(root / "two" / "bundle").predict_encoded(test, logits=True)
    labels, groups = np.asarray(test.label), np.asarray(test.extras["group"])
    reference = metrics.compute(["auc", "logloss", "gauc"], labels, scores, groups=groups)
    gathered = json.loads((root / "two" / "metrics.json").read_text())["test"]
    for name, value in reference.items():
        assert gathered[name] == pytest.approx(value, abs=1e-6), name
    # the test can tell gathering from averaging per-rank metrics
    halves = [slice(*shard_bounds(len(labels), r, 2)) for r in range(2)]
    averaged = np.mean([metrics.auc(labels[h], scores[h]) for h in halves])
    assert abs(averaged - reference["auc"]) > 1e-3


# ---- a rank killed mid-run -----------------------------------------------------------------
def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:  # fields after the command: state, ppid, ...
            out.append(int(stat.parent.name))
    return out


def _workers(pid: int) -> list[int]:
    workers = []
    for child in _children(pid):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            workers.append(child)
    return sorted(workers)


def test_killed_rank_fails_cleanly_and_resumes_to_the_uninterrupted_result(tmp_path):
    """SIGKILL one of two ranks after the first epoch's checkpoint: the job exits with an
    error (no hang), and ``--resume --nproc 2`` continues from the saved epoch and ends with
    the weights of an uninterrupted run (single process, same global batch and seed)."""
    epochs = 4
    extra = {"epochs": epochs, "embedding_l2": 1e-3, "embedding_l2_scope": "table"}
    reference = tmp_path / "reference"
    train_from_config(load_run_config(_write_config(tmp_path, "reference", FM, **extra)))
    config = _write_config(tmp_path, "ddp", FM, **extra)
    out = tmp_path / "ddp"
    job = subprocess.Popen(
        [sys.executable, "-m", "recforge", "train", "-c", str(config), "--nproc", "2"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    deadline = time.monotonic() + WORKER_TIMEOUT_S
    partial = partial_folder(out)  # a run writes here until it has finished
    while not (partial / "checkpoint.pt").exists() and job.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    workers = _workers(job.pid)
    assert len(workers) == 2, workers
    os.kill(workers[-1], signal.SIGKILL)
    _, stderr = job.communicate(timeout=WORKER_TIMEOUT_S)
    assert job.returncode != 0
    assert "distributed run failed" in stderr, stderr
    assert not out.exists()  # an interrupted run publishes nothing
    saved = torch.load(partial / "checkpoint.pt", weights_only=False)
    assert 1 <= saved["epoch"] < epochs and saved["world_size"] == 2

    proc = _cli("train", "-c", str(config), "--nproc", "2", "--resume", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    history = json.loads((out / "history.json").read_text())
    assert [int(r["epoch"]) for r in history] == list(range(epochs))
    assert history[: saved["epoch"]] == saved["history"]  # earlier epochs were not retrained
    _assert_same_weights(_weights(reference), _weights(out))


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_machines_on_localhost_match_one_process(dnn_runs):
    """``--nnodes 2``: two agents (one process each, as on two machines) meet at one c10d
    rendezvous and train as the single process did; only global rank 0 reports and writes."""
    root, single, _ = dnn_runs
    config = _write_config(root, "nodes", DNN, epochs=2, embedding_l2=1e-4)
    endpoint = f"127.0.0.1:{_free_port()}"
    args = [sys.executable, "-m", "recforge", "train", "-c", str(config), "--nnodes", "2",
            "--rdzv-endpoint", endpoint]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    machines = [
        subprocess.Popen(
            args, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )  # fmt: skip
        for _ in range(2)
    ]
    outputs = [m.communicate(timeout=WORKER_TIMEOUT_S) for m in machines]
    assert [m.returncode for m in machines] == [0, 0], [err for _, err in outputs]
    printed = [json.loads(out) for out, _ in outputs if out.strip()]
    assert len(printed) == 1  # one machine holds global rank 0
    assert json.loads((root / "nodes" / "metrics.json").read_text())["processes"] == 2
    _assert_same_weights(_weights(root / "one"), _weights(root / "nodes"))
    assert printed[0]["test"]["auc"] == pytest.approx(single.test_metrics["auc"], abs=1e-4)


def test_several_machines_need_a_rendezvous_endpoint(tmp_path):
    from recforge.config import RunConfig
    from recforge.run import train_job

    with pytest.raises(ValueError, match="--nnodes > 1 needs --rdzv-endpoint"):
        train_job(RunConfig(output_dir=str(tmp_path / "out")), nnodes=2)
    with pytest.raises(ValueError, match="HOST:PORT"):
        train_job(RunConfig(output_dir=str(tmp_path / "out")), nnodes=2, rdzv_endpoint="x")


def test_nproc_below_one_is_an_error(tmp_path):
    from recforge.config import RunConfig
    from recforge.run import train_job

    with pytest.raises(ValueError, match="--nproc must be at least 1"):
        train_job(RunConfig(output_dir=str(tmp_path / "out")), nproc=0)
    assert not (tmp_path / "out").exists()


def test_ddp_wrapper_coalesces_sparse_embedding_gradients_until_unwrapped(tmp_path):
    import torch.distributed as dist
    from torch import nn

    from recforge.distributed.ddp import unwrap_ddp, wrap_ddp

    class Tiny(nn.Module):
        own_objective = False  # the RecModel hook the wrapper reads

        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(10, 3, sparse=True)

        def forward_train(self, ids: torch.Tensor):  # noqa: ANN202
            return self.emb(ids).sum(), None

    ids = torch.tensor([1, 1, 4, 1, 4])  # duplicate rows: an uncoalesced grad has 5 entries
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    ddp = None
    try:
        model = Tiny()
        ddp = wrap_ddp(model)
        ddp(ids)[0].backward()
        grad = model.emb.weight.grad
        assert grad.is_coalesced() and grad._nnz() == 2
        torch.testing.assert_close(grad.to_dense()[[1, 4]], torch.tensor([[3.0] * 3, [2.0] * 3]))
        unwrap_ddp(ddp)
        model.emb.weight.grad = None
        model.forward_train(ids)[0].backward()
        assert model.emb.weight.grad._nnz() == 5  # the hook is gone
    finally:
        # free DDP's reducer (it holds the process group) before the group goes: a gloo group
        # destroyed first can leave the reducer's destructor joining a thread that never ends
        ddp = None
        gc.collect()
        dist.destroy_process_group()


def test_streamed_files_without_cache_two_ranks_equal_one_process(tmp_path):
    # streaming writes its arrays to the cache folder even with --no-cache; under DDP rank 0
    # streams alone and the other rank maps the result (a simultaneous stream into the same
    # folder is a race this small file rarely hits, so this checks the path and the equality)
    from recforge.data.sources.synthetic import click_log_schema, make_click_log, write_click_log

    table, _ = make_click_log(rows=1600, seed=0, n_users=40, n_items=60)
    write_click_log(table, tmp_path / "log.csv")
    (tmp_path / "schema.json").write_text(click_log_schema().to_json())
    cfg = json.loads(json.dumps(BASE))
    cfg["data"] = {
        "dataset": "files",
        "train": str(tmp_path / "log.csv"),
        "schema": str(tmp_path / "schema.json"),
        "streaming": "always",
        "chunk_rows": 300,
        "cache_dir": str(tmp_path / "cache"),
    }
    cfg["model"], cfg["train"]["epochs"] = FM, 1
    paths = {}
    for name in ("one", "two"):
        cfg["output_dir"] = str(tmp_path / name)
        paths[name] = tmp_path / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump(cfg))
    two = _cli("train", "-c", str(paths["two"]), "--nproc", "2", "--no-cache", cwd=tmp_path)
    assert two.returncode == 0, two.stderr[-2000:]
    assert json.loads((tmp_path / "two" / "metrics.json").read_text())["processes"] == 2
    one = _cli("train", "-c", str(paths["one"]), "--no-cache", cwd=tmp_path)
    assert one.returncode == 0, one.stderr[-2000:]
    _assert_same_weights(_weights(tmp_path / "one"), _weights(tmp_path / "two"))
