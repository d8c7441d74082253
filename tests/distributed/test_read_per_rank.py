"""Per-rank reading: each rank of a job reads only its files / row groups of a folder or a
Parquet file, the ranks add up their counts, and every rank ends with what one process
encodes (the same preprocessor, the same arrays) and trains to the same weights.

The collectives of :func:`recforge.data.pipeline.encode_per_rank` run here between threads
(:class:`ThreadExchange`); one test goes through ``recforge train --nproc 2``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from recforge.config import DataConfig, load_run_config
from recforge.data.pipeline import EncodedRun, encode_per_rank, encode_run, reads_per_rank
from recforge.data.read.parts import Part, assign_parts, list_parts
from recforge.data.read.readers import DataError
from recforge.data.sources.synthetic import click_log_schema, make_click_log, write_click_log
from recforge.run import train_from_config

ROOT = Path(__file__).resolve().parents[2]
ROWS = 1600


class ThreadExchange:
    """:class:`recforge.data.read.parts.Exchange` between threads of one process."""

    def __init__(self, rank: int, board: dict) -> None:
        self.rank, self.size, self.board = rank, board["size"], board

    def all_gather_bytes(self, data: bytes) -> list[bytes]:
        self.board["slots"][self.rank] = data
        self.board["barrier"].wait()
        out = list(self.board["slots"])
        self.board["barrier"].wait()
        return out


def _ranks(cfg: DataConfig, size: int) -> list[EncodedRun]:
    board = {"size": size, "slots": [b""] * size, "barrier": threading.Barrier(size, timeout=60)}
    with ThreadPoolExecutor(size) as pool:
        futures = [
            pool.submit(encode_per_rank, cfg, 0, ThreadExchange(r, board)) for r in range(size)
        ]
        return [f.result() for f in futures]


@pytest.fixture(scope="module")
def log_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("per_rank")
    table, _ = make_click_log(rows=ROWS, seed=0, n_users=40, n_items=60)
    (root / "schema.json").write_text(click_log_schema().to_json())
    folder = root / "csv"
    folder.mkdir()
    for k, lo in enumerate(range(0, ROWS, 400)):  # 4 files of 400 rows
        write_click_log(table.slice(lo, 400), folder / f"part-{k}.csv")
    (folder / "_SUCCESS").write_text("")
    pq.write_table(table, root / "log.parquet", row_group_size=300)  # 6 row groups
    return root


def _cfg(root: Path, train: str, **extra: object) -> DataConfig:
    return DataConfig(dataset="files", train=str(root / train),
                      schema=str(root / "schema.json"), **extra)  # fmt: skip


def _assert_same_run(a: EncodedRun, b: EncodedRun) -> None:
    assert a.schema == b.schema
    assert a.preprocessor.vocabs.keys() == b.preprocessor.vocabs.keys()
    for name, vocab in a.preprocessor.vocabs.items():
        assert vocab.equals(b.preprocessor.vocabs[name]), name
    for name, state in a.preprocessor.numeric.items():
        other = b.preprocessor.numeric[name]
        assert state.keys() == other.keys()
        for key, value in state.items():
            np.testing.assert_allclose(value, other[key], rtol=1e-12, atol=0, err_msg=name)
    for split in ("train", "valid", "test"):
        x, y = getattr(a, split).arrays(), getattr(b, split).arrays()
        assert x.keys() == y.keys(), split
        for key in x:
            np.testing.assert_allclose(x[key], y[key], rtol=1e-6, err_msg=f"{split} {key}")


# ---- parts and their assignment --------------------------------------------------------------
def test_folder_files_are_shared_out_contiguously(log_files: Path) -> None:
    found = list_parts(log_files / "csv", 2)
    assert [p.path.name for p in found] == [f"part-{k}.csv" for k in range(4)]  # _SUCCESS skipped
    shares = [assign_parts(found, r, 2) for r in range(2)]
    assert [[p.path.name for p in s] for s in shares] == [
        ["part-0.csv", "part-1.csv"],
        ["part-2.csv", "part-3.csv"],
    ]
    three = [[p.path.name for p in assign_parts(found, r, 3)] for r in range(3)]
    assert sum(three, []) == [p.path.name for p in found]  # in order, each file once


def test_fewer_files_than_ranks_falls_back_to_row_groups(log_files: Path) -> None:
    found = list_parts(log_files / "log.parquet", 2)
    assert [p.row_groups for p in found] == [(g,) for g in range(6)]
    shares = [assign_parts(found, r, 2) for r in range(2)]
    assert [s[0].row_groups for s in shares] == [(0, 1, 2), (3, 4, 5)]  # adjacent groups merged
    # a whole CSV cannot be cut: the second rank reads nothing, and the job is not per-rank
    one_csv = [Part(log_files / "csv" / "part-0.csv", None, 10)]
    assert assign_parts(one_csv, 1, 2) == []
    assert not reads_per_rank(_cfg(log_files, "csv/part-0.csv"), 2)
    assert reads_per_rank(_cfg(log_files, "log.parquet"), 2)
    assert not reads_per_rank(_cfg(log_files, "csv", split="time"), 2)


# ---- two ranks (threads) against one process -------------------------------------------------
@pytest.mark.parametrize("train", ["csv", "log.parquet"])
def test_two_ranks_read_disjoint_shares_and_get_the_one_process_run(log_files, train) -> None:
    cfg = _cfg(log_files, train)
    one = encode_run(cfg, seed=0, use_cache=False)  # one process reads the whole folder / file
    assert len(one.train) + len(one.valid) + len(one.test) == ROWS
    runs = _ranks(cfg, 2)
    for run in runs:
        _assert_same_run(one, run)
    shares = runs[0].shares
    assert shares == runs[1].shares and [s["rank"] for s in shares] == [0, 1]
    read = [s["parts"]["train"] for s in shares]
    assert read[0] and read[1] and not set(read[0]) & set(read[1])
    # four 400-row files, or row groups of 300 rows (the last one 100) split by bytes
    assert [s["rows"]["train"] for s in shares] == ([800, 800] if train == "csv" else [900, 700])


def test_four_ranks_with_three_idle_parts_still_equal_one_process(log_files: Path) -> None:
    # 4 files for 4 ranks, and valid/test given as files: every input is shared out
    cfg = _cfg(log_files, "csv", valid=str(log_files / "csv" / "part-3.csv"),
               test=str(log_files / "csv" / "part-2.csv"))  # fmt: skip
    one = encode_run(cfg, seed=0, use_cache=False)
    runs = _ranks(cfg, 4)
    _assert_same_run(one, runs[3])
    assert [s["rows"]["train"] for s in runs[0].shares] == [400] * 4
    assert [s["rows"]["valid"] for s in runs[0].shares] == [400, 0, 0, 0]


# ---- through the front door -------------------------------------------------------------------
def test_train_nproc_2_reads_per_rank_and_matches_one_process(log_files, tmp_path) -> None:
    model = {
        "name": "dnn",
        "params": {"hidden": [32, 16], "dropout": 0.0, "sparse": True, "batch_norm": False},
    }
    paths = {}
    for name in ("one", "two"):
        cfg = {
            "data": {"dataset": "files", "train": str(log_files / "csv"),
                     "schema": str(log_files / "schema.json"),
                     "cache_dir": str(tmp_path / f"cache_{name}")},
            "model": model,
            "train": {"batch_size": 99, "lr": 0.01, "epochs": 2, "patience": 0,
                      "lr_patience": 0, "device": "cpu", "threads": 1, "progress": False},
            "output_dir": str(tmp_path / name),
        }  # fmt: skip
        paths[name] = tmp_path / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    two = subprocess.run(
        [sys.executable, "-m", "recforge", "train", "-c", str(paths["two"]), "--nproc", "2"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=180,
    )  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]
    summary = json.loads((tmp_path / "two" / "metrics.json").read_text())
    shares = summary["data_per_rank"]
    assert [s["parts"]["train"] for s in shares] == [
        ["part-0.csv", "part-1.csv"],
        ["part-2.csv", "part-3.csv"],
    ]
    train_from_config(load_run_config(str(paths["one"]), []))
    a = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=False)["model"]
    assert a.keys() == b.keys()
    for key in a:  # the DDP tests' tolerance (float32 sums of half batches, through Adam)
        assert float((a[key].double() - b[key].double()).abs().max()) < 5e-5, key
    one_test = json.loads((tmp_path / "one" / "metrics.json").read_text())["test"]
    for metric, value in one_test.items():
        assert abs(summary["test"][metric] - value) < 1e-5, metric
    # rank 0 wrote the cache: a second two-rank run reads no file
    assert any((tmp_path / "cache_two").rglob("complete"))


def test_a_folder_streams_in_one_process_like_it_reads(log_files: Path, tmp_path: Path) -> None:
    # data.streaming reads a folder file after file; the arrays equal the in-memory path's
    cfg = _cfg(log_files, "csv", chunk_rows=300, cache_dir=str(tmp_path / "cache"))
    streamed = encode_run(dataclasses.replace(cfg, streaming="always"), seed=0, use_cache=False)
    _assert_same_run(encode_run(cfg, seed=0, use_cache=False), streamed)


def test_a_folder_without_data_files_is_one_line(tmp_path: Path, log_files: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "_SUCCESS").write_text("")
    cfg = DataConfig(dataset="files", train=str(tmp_path / "empty"),
                     schema=str(log_files / "schema.json"))  # fmt: skip
    with pytest.raises(DataError, match="the folder holds no data files"):
        encode_run(cfg, seed=0, use_cache=False)
