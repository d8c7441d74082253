"""The command line end to end, through subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.csv as pacsv
import pytest

from recforge.data.sources.synthetic import make_click_log, write_click_log


def _run(*args: str, env_dir: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "RECFORGE_CACHE": str(env_dir / "cache")}
    proc = subprocess.run(
        [sys.executable, "-m", "recforge.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=env_dir,
        timeout=600,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"recforge {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("cli")


def test_models_lists_papers(workdir):
    out = _run("models", env_dir=workdir).stdout
    assert "fm" in out and "Rendle" in out


def test_demo_prints_a_leaderboard(workdir):
    proc = _run(
        "demo", "--rows", "4000", "--models", "popularity", "lr", "fm", "din", "--epochs", "1",
        "--output", "demo", env_dir=workdir,
    )  # fmt: skip
    out = proc.stdout
    # between the generator's ceiling and the floor, grouped by the chapter's lines
    ceiling = float(out.split("oracle AUC ")[1].split()[0])
    floor = float(out.split("popularity ")[1].split()[0].rstrip(","))
    assert 0.6 < ceiling < 1.0 and 0.4 < floor < ceiling
    assert "### 4 FM goes deep: pairwise interactions" in out
    assert "### 5 attention: interest match" in out
    assert "| fm |" in out and "| lr |" in out and "| din |" in out
    assert "model 4/4: din" in proc.stderr  # the progress line
    assert (workdir / "demo" / "lineage.png").stat().st_size > 10_000
    assert (workdir / "demo" / "leaderboard.md").read_text().startswith("recforge demo:")


def test_train_evaluate_predict_on_files(workdir):
    table, schema = make_click_log(rows=3000, seed=1, n_users=200, n_items=300)
    write_click_log(table.slice(0, 2400), workdir / "train.csv")
    write_click_log(table.slice(2400), workdir / "test.csv")
    (workdir / "schema.json").write_text(schema.to_json())
    out = _run(
        "train",
        "data.dataset=files",
        "data.train=train.csv",
        "data.test=test.csv",
        "data.schema=schema.json",
        "model.name=fm",
        "train.epochs=2",
        "train.batch_size=256",
        "train.progress=false",
        "output_dir=run",
        env_dir=workdir,
    ).stdout
    result = json.loads(out[out.index("{") :])
    assert 0.0 < result["test"]["auc"] < 1.0
    assert (workdir / "run" / "config.yaml").exists()
    assert (workdir / "run" / "bundle" / "meta.json").exists()

    evaluated = json.loads(_run("evaluate", "run/bundle", "test.csv", env_dir=workdir).stdout)
    assert evaluated["rows"] == 600 and evaluated["auc"] == pytest.approx(
        result["test"]["auc"], abs=1e-4
    )

    unlabelled = table.slice(2400).drop_columns(["label"])
    write_click_log(unlabelled, workdir / "serve.csv")
    _run(
        "predict",
        "run/bundle",
        "serve.csv",
        "-o",
        "scores.csv",
        "--keep",
        "user_id",
        env_dir=workdir,
    )
    scores = pacsv.read_csv(workdir / "scores.csv")
    assert scores.num_rows == 600 and scores.column_names == ["user_id", "score"]


def test_bad_input_gets_a_located_error(workdir):
    (workdir / "bad.csv").write_text("user_id,label\nu1,1\nu2,7\n")
    proc = _run("evaluate", "run/bundle", "bad.csv", env_dir=workdir, check=False)
    assert proc.returncode == 2
    assert "bad.csv" in proc.stderr and "missing" in proc.stderr


def test_unknown_override_is_an_error(workdir):
    proc = _run("train", "train.nope=1", env_dir=workdir, check=False)
    assert proc.returncode == 2 and "unknown key" in proc.stderr
