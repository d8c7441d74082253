"""Every kind of bad input ends in one line naming what is wrong, never a traceback.

Each case below runs the command line in process (or the Python call, or the HTTP service) on
input it writes itself, and checks the exit code, that stderr is one ``recforge: error:`` line,
and the message. The same cases generate ``docs/BAD_INPUT.md``, so the table there stays true:
``test_the_docs_table_is_current`` fails when it differs from what the cases print now;
``RECFORGE_UPDATE_DOCS=1 python -m pytest tests/test_bad_input.py`` rewrites it.
"""

from __future__ import annotations

import io
import os
import pickle
import re
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from recforge import cli
from recforge.data.encode.preprocess import Preprocessor
from recforge.data.read.readers import read_table
from recforge.data.sources.synthetic import make_click_log, write_click_log
from recforge.models import registry
from recforge.serve.bundle import save_bundle

DOC = Path(__file__).resolve().parents[1] / "docs" / "BAD_INPUT.md"


@dataclass(frozen=True)
class Case:
    """One bad input: ``make(dir)`` writes it and returns the argv (or a callable to run)."""

    area: str
    what: str
    make: Callable[[Path], list[str] | Callable[[], object]]
    expect: str  # a regex the message must match
    env: tuple[tuple[str, str], ...] = ()  # environment for the run ({dir} = its folder)


# ---- the inputs ------------------------------------------------------------------------------
def _log(d: Path, rows: int = 60) -> tuple[list[bytes], Path]:
    if not (d / "schema.json").exists():
        table, schema = make_click_log(rows=rows, seed=0, n_users=20, n_items=200)
        write_click_log(table, d / "good.csv")
        (d / "schema.json").write_text(schema.to_json())
    return (d / "good.csv").read_bytes().split(b"\n"), d / "schema.json"


def _csv(d: Path, edit: Callable[[list[bytes]], list[bytes]]) -> list[str]:
    lines, _ = _log(d)
    (d / "bad.csv").write_bytes(b"\n".join(edit(list(lines))))
    return _train("data.train=bad.csv")


def _train(*overrides: str) -> list[str]:
    return ["train", "data.dataset=files", "data.train=good.csv", "data.schema=schema.json",
            "model.name=fm", "train.epochs=1", "train.progress=false", "output_dir=run",
            *overrides]  # fmt: skip


def _cell(row: int, column: str, value: bytes) -> Callable[[list[bytes]], list[bytes]]:
    def edit(lines: list[bytes]) -> list[bytes]:
        header = [h.strip(b'"').decode() for h in lines[0].split(b",")]
        cells = lines[row].split(b",")
        cells[header.index(column)] = value
        lines[row] = b",".join(cells)
        return lines

    return edit


def _header(old: bytes, new: bytes) -> Callable[[list[bytes]], list[bytes]]:
    def edit(lines: list[bytes]) -> list[bytes]:
        lines[0] = lines[0].replace(old, new)
        return lines

    return edit


def _extra_field(lines: list[bytes]) -> list[bytes]:
    lines[9] += b",surplus"
    return lines


def _bundle(d: Path) -> Path:
    if not (d / "bundle").exists():
        table, schema = make_click_log(rows=200, seed=0, n_users=20, n_items=200)
        pre = Preprocessor(schema).fit(table)
        din = registry.build("din", pre.schema, {"hidden": [8], "attention_hidden": [4]})
        save_bundle(d / "bundle", "din", din, pre)
        write_click_log(table.slice(0, 20), d / "rows.csv")
    return d / "bundle"


def _corrupt_meta(d: Path) -> list[str]:
    _bundle(d)
    (d / "bundle" / "meta.json").write_text("{not json")
    return ["evaluate", "bundle", "rows.csv"]


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def _crafted_checkpoint(d: Path) -> list[str]:
    _log(d)
    (d / "run").mkdir(exist_ok=True)
    with open(d / "run" / "checkpoint.pt", "wb") as fh:
        pickle.dump({"model": _Payload()}, fh)
    return [*_train(), "--resume"]


def _libfm(d: Path) -> Callable[[], object]:
    (d / "bad.libfm").write_text("1 3:1 7:0.5\n0 4:1 x:y:z\n")
    return lambda: read_table(d / "bad.libfm")


def _parquet(d: Path) -> list[str]:
    _log(d)
    (d / "bad.parquet").write_bytes(b"PAR1 this is not parquet")
    return _train("data.train=bad.parquet")


def _write(d: Path, name: str, text: str) -> Path:
    (d / name).write_text(text)
    return d / name


CASES: list[Case] = [
    # files
    Case("CSV", "a required column is missing",
         lambda d: _csv(d, _header(b'"price"', b'"cost"')), r"bad\.csv, line 1, column 'price'"),
    Case("CSV", "a number column holds text", lambda d: _csv(d, _cell(5, "price", b"cheap")),
         r"bad\.csv, line 6, column 'price' \(\d+\): 'cheap' is not a number"),
    Case("CSV", "a number beyond float32's range", lambda d: _csv(d, _cell(7, "price", b"1e308")),
         r"bad\.csv, line 8, column 'price' \(\d+\): .*float32"),
    Case("CSV", "a label outside {0, 1}", lambda d: _csv(d, _cell(4, "label", b"7")),
         r"bad\.csv, line 5, column 'label'.*7"),
    Case("CSV", "a row with an extra field", lambda d: _csv(d, _extra_field),
         r"bad\.csv, line 10, column .*expected 13 fields, found 14"),
    Case("CSV", "bytes that are not UTF-8", lambda d: _csv(d, _cell(6, "site", b"s\xe9te")),
         r"bad\.csv, line 7, column 'site' \(\d+\): bytes b'\\xe9' are not utf8 text"),
    Case("CSV", "a header naming a column twice",
         lambda d: _csv(d, _header(b'"site"', b'"device"')), r"'device' appears twice"),
    Case("CSV", "a header that is not UTF-8", lambda d: _csv(d, _header(b"site", b"s\xefte")),
         r"bad\.csv, line 1, column \(\d+\): bytes b'\\xef' are not utf8"),
    Case("CSV", "an empty file", lambda d: _csv(d, lambda lines: []), r"bad\.csv.*empty"),
    Case("CSV", "a header and no rows", lambda d: _csv(d, lambda lines: lines[:1]),
         r"bad\.csv.*no data rows"),
    Case("CSV", "aligned sequences of different lengths",
         lambda d: _csv(d, _cell(3, "hist_cats", b'"c01|c02|c03|c04|c05|c06|c07|c08|c09|c10"')),
         r"bad\.csv, line 4, column 'hist_cats' \(\d+\): 10 entries but 'hist_item_ids' has"),
    Case("CSV", "a data file that does not exist", lambda d: (_log(d), _train(
         "data.train=nowhere.csv"))[1], r"nowhere\.csv.*(no such file|not found)"),
    Case("Parquet", "a file that is not Parquet", _parquet, r"bad\.parquet.*Parquet"),
    Case("libfm", "a malformed feature (Python API)", _libfm, r"bad\.libfm, line 2"),
    # configs
    Case("config", "malformed YAML", lambda d: ["train", "-c", str(_write(
         d, "bad.yaml", "train:\n  epochs: [1\n"))], r"bad\.yaml:3:1: expected"),
    Case("config", "an unknown key", lambda d: ["train", "train.nope=1"], r"unknown key"),
    Case("config", "an override without '='", lambda d: ["train", "train.epochs"],
         r"train\.epochs"),
    Case("config", "a value of the wrong type", lambda d: ["train", "train.epochs=many"],
         r"train\.epochs.*int"),
    Case("config", "a value out of range", lambda d: ["train", "train.epochs=0"],
         r"train\.epochs: must be at least 1"),
    Case("config", "an unknown model", lambda d: ["train", "model.name=deepfmm"],
         r"unknown model 'deepfmm'"),
    Case("config", "an unknown model option",
         lambda d: (_log(d), _train("model.params.bogus=1"))[1], r"bogus"),
    Case("config", "a CUDA device on a build without CUDA",
         lambda d: (_log(d), _train("train.device=cuda"))[1], r"CUDA"),
    # datasets
    Case("datasets", "an unknown dataset",
         lambda d: ["datasets", "prepare", "no-such-set", "--path", "."], r"unknown dataset"),
    Case("datasets", "a local path that does not exist",
         lambda d: ["datasets", "prepare", "frappe", "--path", str(d / "absent")], r"absent"),
    Case("datasets", "a download without network",
         lambda d: ["datasets", "prepare", "frappe"],
         r"cannot download https://\S+frappe\S* \(ProxyError\); without network, copy .* --path",
         env=(("HTTPS_PROXY", "http://127.0.0.1:9"), ("RECFORGE_CACHE", "{dir}/cache"))),
    Case("command line", "an unknown choice", lambda d: ["models", "--family", "bogus"],
         r"invalid choice: 'bogus'"),
    # bundles and outputs
    Case("bundle", "a folder that is not a bundle",
         lambda d: (_bundle(d), ["evaluate", ".", "rows.csv"])[1], r"not a recforge bundle"),
    Case("bundle", "corrupt bundle metadata", _corrupt_meta, r"meta\.json: corrupt bundle"),
    Case("checkpoint", "a checkpoint whose pickle runs code (--resume)", _crafted_checkpoint,
         r"checkpoint"),
    Case("output", "an output path that is a folder",
         lambda d: (_bundle(d), ["predict", "bundle", "rows.csv", "-o", "."])[1],
         r"\. is a folder; give a file path"),
    # the DRN simulator recalibrated from logs (recforge online --recalibrate)
    Case("online", "--recalibrate without a log to fit", lambda d: ["online", "--recalibrate"],
         r"--recalibrate needs --mind and/or --globo"),
    Case("online", "--recalibrate together with --replay",
         lambda d: ["online", "--replay", "mind", "--path", "b.tsv", "--recalibrate"],
         r"--recalibrate fits the simulator; it does not apply to --replay"),
    Case("online", "a negative --return-elasticity",
         lambda d: ["online", "--recalibrate", "--mind", "b.tsv", "--return-elasticity", "-1"],
         r"--return-elasticity must be >= 0"),
    Case("online", "a malformed impression in the MIND log to recalibrate from",
         lambda d: ["online", "--recalibrate", "--mind", str(_write(
             d, "behaviors.tsv", "1\tU1\t11/9/2019 1:00:00 AM\t\tN1-1 N2-0\n"
             "2\tU2\t11/9/2019 2:00:00 AM\t\tN3-yes\n"))],
         r"behaviors\.tsv, line 2, column 'impressions' \(5\): impression token 'N3-yes'"),
]  # fmt: skip


# ---- running them ----------------------------------------------------------------------------
def _run(case: Case, d: Path) -> tuple[int, str]:
    made = case.make(d)
    if callable(made):
        try:
            made()
        except (ValueError, OSError) as exc:
            return 2, f"{type(exc).__name__}: {exc}"
        raise AssertionError("no error")
    err, out = io.StringIO(), io.StringIO()
    cwd = Path.cwd()
    saved = {key: os.environ.get(key) for key, _ in case.env}
    os.environ.update({key: value.format(dir=d) for key, value in case.env})
    os.chdir(d)
    try:
        with redirect_stderr(err), redirect_stdout(out):
            try:
                code = cli.main(made)
            except SystemExit as exc:  # argparse's usage errors
                code = int(exc.code or 0)
    finally:
        os.chdir(cwd)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return code, err.getvalue()


def _message(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if not ln.startswith(("INFO ", "WARNING "))]
    assert lines, "nothing on stderr"
    return lines[-1]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, tuple[int, str, str, Path]]:
    results = {}
    for case in CASES:
        d = tmp_path_factory.mktemp("bad")
        code, stderr = _run(case, d)
        results[case.what] = (code, stderr, _message(stderr), d)
    return results


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.what)
def test_bad_input_is_one_line_naming_the_problem(case, outcomes):
    code, stderr, message, d = outcomes[case.what]
    assert code == 2, stderr
    assert "Traceback" not in stderr, stderr
    if message.startswith("recforge"):
        assert message.startswith("recforge: error: ") or ": error: " in message, message
    assert re.search(case.expect, message), message
    assert not (d / "pwned").exists()  # a crafted checkpoint ran nothing
    assert not (d / "run").exists() or not (d / "run" / "bundle").exists()


def _table(outcomes) -> str:
    rows = [
        "# Bad input and what recforge says",
        "",
        "Generated by `tests/test_bad_input.py` from the cases it runs (`RECFORGE_UPDATE_DOCS=1 "
        "python -m pytest tests/test_bad_input.py` rewrites it; the test fails when it is stale).",
        "Every case exits with code 2 and prints one line on stderr; a traceback only ever means "
        "a bug in recforge (exit code 1, with a request to report it). `<dir>` is the folder the "
        "command ran in.",
        "",
        "| input | case | message |",
        "|---|---|---|",
    ]
    for case in CASES:
        _, _, message, d = outcomes[case.what]
        shown = message.replace(str(d), "<dir>").replace("|", "\\|")
        shown = re.sub(r"/tmp/\S*?/bad\d*/", "<dir>/", shown)
        rows.append(f"| {case.area} | {case.what} | `{shown}` |")
    return "\n".join(rows) + "\n"


def test_the_docs_table_is_current(outcomes):
    text = _table(outcomes)
    if os.environ.get("RECFORGE_UPDATE_DOCS"):
        DOC.write_text(text)
    stale = "docs/BAD_INPUT.md is stale: rerun with RECFORGE_UPDATE_DOCS=1 to rewrite it"
    assert DOC.exists() and DOC.read_text() == text, stale


def test_serving_rejects_bad_records_naming_the_field(tmp_path):
    """422 naming the field for a boolean or non-finite number, a missing or unknown field."""
    from fastapi.testclient import TestClient

    from recforge.serve.app import create_app

    bundle = _bundle(tmp_path)
    record = read_table(tmp_path / "rows.csv").slice(0, 1).to_pylist()[0]
    record.pop("label")
    with TestClient(create_app(bundle)) as client:
        assert client.post("/predict", json={"records": [record]}).status_code == 200
        for key, value, expect in [
            ("price", True, "price"),
            ("price", "NaN", "price"),
            ("price", 1e39, "price"),
        ]:
            body = {"records": [{**record, key: value}]}
            reply = client.post("/predict", json=body)
            assert reply.status_code == 422 and expect in reply.text, (key, value, reply.text)
        missing = {k: v for k, v in record.items() if k != "item_id"}
        reply = client.post("/predict", json={"records": [missing]})
        assert reply.status_code == 422 and "item_id" in reply.text
        # behaviours whose item and category histories differ in length: 422 naming the field,
        # for scoring and for explaining (before: /predict scored it, /explain answered 500)
        items, cats = record["hist_item_ids"].split("|"), record["hist_cats"].split("|")
        assert len(items) == len(cats) >= 1
        skewed = {**record, "hist_item_ids": items, "hist_cats": [*cats, "c01"]}
        for path, body in (("/predict", {"records": [skewed]}), ("/explain", {"record": skewed})):
            reply = client.post(path, json=body)
            assert reply.status_code == 422, (path, reply.text)
            assert "'hist_item_ids' has" in reply.json()["detail"], reply.text


def test_an_empty_history_explains_as_no_behaviours(tmp_path):
    from fastapi.testclient import TestClient

    from recforge.serve.app import create_app

    bundle = _bundle(tmp_path)
    record = read_table(tmp_path / "rows.csv").slice(0, 1).to_pylist()[0]
    record.update(hist_item_ids="", hist_cats="")
    record.pop("label")
    with TestClient(create_app(bundle)) as client:
        reply = client.post("/explain", json={"record": record}).json()
    assert reply["weights"] == [] and reply["note"].startswith("no behaviours")
    # the command line prints the note, not an empty table
    pacsv.write_csv(pa.Table.from_pylist([{**record, "label": 1}]), tmp_path / "empty.csv")
    out = io.StringIO()
    with redirect_stdout(out):
        code = cli.main(["explain", str(bundle), str(tmp_path / "empty.csv")])
    assert code == 0 and "no behaviours" in out.getvalue() and "rank" not in out.getvalue()
