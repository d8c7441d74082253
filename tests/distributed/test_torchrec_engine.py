"""``train.engine=torchrec``: sharded training equals one process; bad input gives one line.

Two-rank runs go through the command line (gloo on CPU, one thread per rank); each is compared
with a one-process run of the same engine (a one-rank ``DistributedModelParallel``, the same
FBGEMM optimizer, the same seeded global batches of 99 rows, so every step splits 49/50 and
the row-wise padding is exercised). Skipped when TorchRec cannot be imported.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from recforge import cli
from recforge.config import load_run_config
from recforge.distributed.torchrec_bridge import torchrec_available
from recforge.run import partial_folder, train_from_config
from recforge.serve.bundle import load_bundle

if not torchrec_available():  # also when fbgemm's kernels do not load for this torch
    # never a skip: the README's test command installs TorchRec, and a skip would prove nothing
    raise ImportError(
        "TorchRec does not import: run scripts/install_torchrec.sh (the README's test command does)"
    )

from recforge.distributed.torchrec_engine import column_width  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BASE = {
    "data": {
        "dataset": "synthetic",
        "options": {"rows": 1600, "seed": 0, "n_users": 40, "n_items": 60},
    },
    "train": {
        "batch_size": 99,
        "lr": 0.02,
        "epochs": 2,
        "patience": 0,
        "lr_patience": 0,
        "device": "cpu",
        "threads": 1,
        "progress": False,
        "engine": "torchrec",
    },
}
# every sharding type in one plan (site is split column-wise over both ranks)
MIXED = {
    "user_id": "row_wise",
    "item_id": "row_wise",
    "site": "column_wise",
    "item_category": "table_wise",
    "user_segment": "table_wise",
    "device": "data_parallel",
    "hour": "data_parallel",
}
MODELS = {
    "dnn": {"name": "dnn", "params": {"hidden": [32, 16], "dropout": 0.0, "batch_norm": False}},
    "deepfm": {"name": "deepfm", "params": {"hidden": [16], "dropout": 0.0, "batch_norm": False}},
    "dcn": {"name": "dcn", "params": {"hidden": [16], "dropout": 0.0, "batch_norm": False}},
    "wide_deep": {
        "name": "wide_deep",
        "params": {"hidden": [16], "dropout": 0.0, "batch_norm": False},
    },
    # Dice (the default activation) keeps batch statistics: synchronised over the ranks.
    # softmax=False is the paper's unnormalised attention (Eq. 3); see test_din_softmax_...
    "din": {"name": "din", "params": {"hidden": [16], "dropout": 0.0, "softmax": False}},
    "din_softmax": {"name": "din", "params": {"hidden": [16], "dropout": 0.0}},
}
TIMEOUT_S = 180


def _config(root: Path, name: str, model: dict, **train: object) -> Path:
    cfg = json.loads(json.dumps(BASE))
    cfg["data"]["cache_dir"] = str(root / "cache")
    cfg["train"].update(train)
    cfg["model"] = model
    cfg["output_dir"] = str(root / name)
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run ``args`` in a session of its own; on a timeout the whole session (the agent and
    its ranks) is killed, so no rank outlives the test."""
    proc = subprocess.Popen(
        args, cwd=cwd, env=_env(), text=True, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(args[:4])} ...: no result in {TIMEOUT_S} s\n{err[-3000:]}")
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def _one_process(path: Path) -> Path:
    cfg = load_run_config(str(path), [])
    train_from_config(cfg)
    return Path(cfg.output_dir)


def _compare(one: Path, two: Path, atol: float = 1e-5, free: tuple[str, ...] = ()) -> None:
    """Bundle weights within ``atol`` (``free`` weights unchecked) and test metrics within 1e-5."""
    a, b = load_bundle(one / "bundle"), load_bundle(two / "bundle")
    # the bundle is the ordinary one: fused tables, no TorchRec module left in it
    assert type(b.model.embedding).__name__ in ("FeatureEmbedding", "StackedInput")
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        if key not in free:
            assert torch.allclose(sa[key].float(), sb[key].float(), atol=atol, rtol=0), key
    ma = json.loads((one / "metrics.json").read_text())
    mb = json.loads((two / "metrics.json").read_text())
    for key, value in ma["test"].items():
        assert abs(value - mb["test"][key]) < 1e-5, key


@pytest.fixture(scope="module")
def mixed_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """DNN with every sharding type: the two-rank CLI run and its one-process reference."""
    root = tmp_path_factory.mktemp("torchrec_mixed")
    params = {"hidden": [32, 16], "dropout": 0.0, "batch_norm": False}
    model = {"name": "dnn", "params": params}
    two = _config(root, "two", model, sharding=MIXED, optimizer="adagrad")
    proc = _run([sys.executable, "-m", "recforge", "train", "-c", str(two), "--nproc", "2"], root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one = _one_process(_config(root, "one", model, sharding=MIXED, optimizer="adagrad"))
    return root, one, root / "two"


def test_every_sharding_type_on_two_ranks_matches_one_process(mixed_runs) -> None:
    _, one, two = mixed_runs
    _compare(one, two)
    # each rank wrote its own shards
    assert (two / "checkpoint.pt").exists() and (two / "checkpoint.rank1.pt").exists()
    rank1 = torch.load(two / "checkpoint.rank1.pt", weights_only=True)
    assert rank1["engine"] == "torchrec" and rank1["world_size"] == 2
    # row-wise: each rank holds about half of user_id's 41 rows
    (shard,) = rank1["model"]["embedding.collection.embedding_bags.user_id.weight"]
    assert shard.shape[0] in (20, 21)


def test_ctr_models_on_two_ranks_match_one_process(tmp_path: Path) -> None:
    """DeepFM (row-wise), DCN (table-wise), Wide & Deep (column-wise), DIN (row-wise, unpooled
    histories on the shared item table, Dice): one torchrun job."""
    plans = {
        "deepfm": "row_wise",
        "dcn": "table_wise",
        "wide_deep": "column_wise",
        "din": "row_wise",
        "din_softmax": "table_wise",
    }
    # row-wise Adagrad keeps one accumulator per row of each column shard: element-wise
    # Adagrad for the column-wise plan, whose one-process run has one shard of all columns
    optimizer = {"wide_deep": "adagrad"}
    optimizer = {m: optimizer.get(m, "adam") for m in plans}
    twos = [
        _config(tmp_path, f"{m}_two", MODELS[m], sharding={"*": k}, optimizer=optimizer[m])
        for m, k in plans.items()
    ]
    job = str(ROOT / "tests" / "distributed" / "torchrec_job.py")
    proc = _run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         job, *map(str, twos)],
        tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    for m, kind in plans.items():
        cfg = _config(tmp_path, f"{m}_one", MODELS[m], sharding={"*": kind}, optimizer=optimizer[m])
        if m != "din_softmax":
            _compare(_one_process(cfg), tmp_path / f"{m}_two")
            continue
        # softmax attention is invariant to a shift of the scores: the score bias has a zero
        # gradient, so what Adam steps it by is normalised float rounding, which differs between
        # one rank's sum and two ranks' all-reduced halves (measured 3.7e-4 after 2 epochs); it
        # changes no prediction. The near-invariant candidate-only directions of the unit move
        # the rest by up to 2.5e-5 (measured); the predictions' metrics still agree within 1e-5
        bias = "attention.unit.mlp.net.2.bias"
        _compare(_one_process(cfg), tmp_path / f"{m}_two", atol=1e-4, free=(bias,))


def test_resume_with_another_world_size_is_one_line(mixed_runs, capsys) -> None:
    root, _, _ = mixed_runs
    code = cli.main(["train", "-c", str(root / "two.yaml"), "--resume"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("recforge: error: ")
    assert "sharded over 2 rank(s), this run has 1" in err[-1]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.sharding={site: diagonal}", "unknown sharding type 'diagonal'"),
        ("train.sharding={nosuch: row_wise}", "train.sharding.nosuch: no such table"),
        ("train.fused_optimizer=adam", "FBGEMM's CPU kernels offer only"),
        ("model={name: autorec, params: {}}", "train.engine=torchrec trains binary and"),
    ],
)
def test_bad_torchrec_input_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, override: str, message: str
) -> None:
    path = _config(tmp_path, "bad", MODELS["dnn"])
    args = [override] if override.startswith("train.") else []
    if not args:  # a model the engine cannot shard
        raw = yaml.safe_load(path.read_text())
        raw["model"] = {"name": "autorec", "params": {}}
        path.write_text(yaml.safe_dump(raw))
    code = cli.main(["train", "-c", str(path), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert err[-1].startswith("recforge: error: ") and message in err[-1], err[-1]


def test_column_width_splits_over_every_rank() -> None:
    assert column_width(16, 2) == 8
    assert column_width(16, 3) == 8  # 16/3 -> the next divisor
    assert column_width(12, 8) == 2
    assert column_width(8, 1) == 8


def _workers(pid: int) -> list[int]:
    """The spawned ranks under the launching process ``pid``."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and b"spawn_main" in cmdline:
            out.append(int(stat.parent.name))
    return sorted(out)


def test_killed_rank_stops_the_job_and_the_sharded_checkpoint_resumes(tmp_path: Path) -> None:
    """SIGKILL rank 1 after a sharded checkpoint: the job exits (no hang); ``--resume --nproc 2``
    continues from each rank's own shards and ends at the uninterrupted one-rank result."""
    epochs = 4
    model = MODELS["dnn"]
    extra = {"sharding": MIXED, "epochs": epochs, "optimizer": "adagrad"}
    one = _one_process(_config(tmp_path, "one", model, **extra))
    config = _config(tmp_path, "two", model, **extra)
    job = subprocess.Popen(
        [sys.executable, "-m", "recforge", "train", "-c", str(config), "--nproc", "2"],
        cwd=tmp_path, env=_env(), text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    partial = partial_folder(tmp_path / "two")
    deadline = time.monotonic() + TIMEOUT_S
    while not (partial / "checkpoint.rank1.pt").exists() and job.poll() is None:
        assert time.monotonic() < deadline, "no sharded checkpoint appeared"
        time.sleep(0.02)
    workers = _workers(job.pid)
    assert len(workers) == 2, workers
    os.kill(workers[-1], signal.SIGKILL)
    _, stderr = job.communicate(timeout=TIMEOUT_S)
    assert job.returncode == 2 and "recforge: error: distributed run failed" in stderr
    epochs_saved = {
        torch.load(partial / name, weights_only=True)["epoch"]
        for name in ("checkpoint.pt", "checkpoint.rank1.pt")
    }
    resumed = _run(
        [sys.executable, "-m", "recforge", "train", "-c", str(config), "--nproc", "2", "--resume"],
        tmp_path,
    )
    if len(epochs_saved) > 1:  # killed between the two ranks' writes: refused in one line
        assert resumed.returncode == 2 and "different epochs" in resumed.stderr
        return
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    (saved,) = epochs_saved
    assert 1 <= saved < epochs
    history = json.loads((tmp_path / "two" / "history.json").read_text())
    assert [int(r["epoch"]) for r in history] == list(range(epochs))
    _compare(one, tmp_path / "two")
