"""``recforge compare --chart lineage``: the chapter's model lineage annotated with measured
figures; edges say whether the successor beat its predecessor."""

from __future__ import annotations

import json

import pytest

from recforge.cli import main
from recforge.commands.compare import (
    LINEAGE_EDGES,
    LINEAGE_LINES,
    Measured,
    edge_outcomes,
    lineage_layout,
    load_measured,
)
from recforge.models import registry


def test_the_lineage_names_registered_models_once():
    models = [m for _, ms in LINEAGE_LINES for m in ms]
    assert len(models) == len(set(models))
    assert set(models) <= set(registry.names())
    assert {m for edge in LINEAGE_EDGES for m in edge} <= set(models)


def test_successors_are_drawn_right_of_their_predecessors():
    models = [m for _, ms in LINEAGE_LINES for m in ms]
    pos = lineage_layout(models)
    for a, b in LINEAGE_EDGES:
        assert pos[b][0] > pos[a][0], (a, b)
    assert len(set(pos.values())) == len(pos)  # no two nodes on one spot


def test_edges_follow_the_metric_direction():
    measured = {"lr": Measured(0.93, 10.0), "fm": Measured(0.97, 20.0), "afm": Measured(0.96, 5)}
    shown = {"lr", "fm", "afm", "nfm"}
    assert edge_outcomes(measured, "auc", shown) == {
        ("lr", "fm"): True, ("fm", "nfm"): None, ("fm", "afm"): False,
    }  # fmt: skip
    # logloss: lower is better
    assert edge_outcomes(measured, "logloss", shown)[("lr", "fm")] is False


def test_results_in_every_saved_shape(tmp_path):
    board = tmp_path / "board.json"
    board.write_text(json.dumps({"results": [
        {"model": "fm", "auc": 0.97, "train_seconds": 12.0},
        {"model": "afm", "auc": None, "error": "failed"},
    ]}))  # fmt: skip
    repro = tmp_path / "repro.json"
    repro.write_text(json.dumps([
        {"model": "gmf", "mean": {"hr@10": 0.70},
         "runs": [{"train_seconds": 10.0}, {"train_seconds": 20.0}]},
    ]))  # fmt: skip
    runs = tmp_path / "runs.json"
    runs.write_text(json.dumps({"runs": [
        {"model": "din", "test_auc": 0.78, "wall_s": 100.0},
        {"model": "din", "test_auc": 0.80, "wall_s": 140.0},
    ]}))  # fmt: skip
    variants = tmp_path / "variants.json"
    variants.write_text(json.dumps({"runs": [
        {"model": "din", "variant": "a", "test_auc": 0.90, "valid_auc": 0.70},
        {"model": "din", "variant": "b", "test_auc": 0.75, "valid_auc": 0.80},
        {"model": "din", "variant": "b", "test_auc": 0.77, "valid_auc": 0.82},
    ]}))  # fmt: skip
    assert load_measured([board], "auc") == {"fm": Measured(0.97, 12.0)}
    assert load_measured([repro], "hr@10") == {"gmf": Measured(0.70, 15.0)}
    assert load_measured([runs], "auc")["din"] == Measured(pytest.approx(0.79), 120.0, 2)
    # several variants: the one with the better validation mean, whatever its test figure
    assert load_measured([variants], "auc")["din"] == Measured(pytest.approx(0.76), None, 2)
    with pytest.raises(ValueError, match="no result row with a 'rmse'"):
        load_measured([board], "rmse")


def test_cli_draws_from_saved_results_and_errors_are_one_line(tmp_path, capsys):
    board = tmp_path / "board.json"
    board.write_text(json.dumps({"results": [
        {"model": "lr", "auc": 0.93, "train_seconds": 1.0},
        {"model": "fm", "auc": 0.97, "train_seconds": 2.0},
    ]}))  # fmt: skip
    out = tmp_path / "chart"
    code = main(["compare", "--chart", "lineage", "--from-results", str(board),
                 "--output", str(out)])  # fmt: skip
    assert code == 0 and (out / "lineage.png").read_bytes()[:4] == b"\x89PNG"
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    code = main(["compare", "--chart", "lineage", "--from-results", str(bad)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "bad.json: not JSON" in err and len(err.splitlines()) == 1
    assert main(["compare"]) == 2
    assert "compare needs --dataset" in capsys.readouterr().err


def test_compare_draws_the_chart_after_training(tmp_path):
    code = main([
        "compare", "--models", "lr", "fm", "--dataset", "synthetic", "--chart", "lineage",
        "--output", str(tmp_path / "cmp"), "--no-cache", "data.options.rows=2000",
        "train.epochs=1", "train.progress=false", "train.batch_size=512",
    ])  # fmt: skip
    assert code == 0
    assert (tmp_path / "cmp" / "lineage.png").stat().st_size > 0
