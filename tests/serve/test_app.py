"""The HTTP service: parity with in-process scoring, 4xx for every bad request (and the next
good one still served), admin auth, hot reload under concurrent load on a real uvicorn server."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pytest
import uvicorn
from fastapi.testclient import TestClient

from recforge.cf.scoring import score_pairs
from recforge.explain import explain_table
from recforge.serve.app import ENV_CONFIG, create_app, create_app_from_env
from recforge.serve.bundle import load_bundle
from recforge.serve.predictor import Predictor

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def client(serve_bundles) -> Iterator[TestClient]:
    app = create_app(serve_bundles.deepfm, admin_token=TOKEN, max_batch=32)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def test_predict_round_trip_equals_the_in_process_model(client, serve_bundles):
    records = serve_bundles.records[:20]
    resp = client.post("/predict", json={"records": records})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    expected = load_bundle(serve_bundles.deepfm).predict_records(records)
    np.testing.assert_allclose(body["scores"], expected, rtol=1e-6)
    assert body["model"] == "deepfm"
    assert body["bundle"] == Predictor.load(serve_bundles.deepfm).bundle_id


def _bad_requests(records: list[dict]) -> list[tuple[str, str, dict, int, str]]:
    """(name, path, request kwargs, status, field named in the answer)."""
    good = records[:2]
    wrong_type = [{**good[0], "price": "cheap"}, good[1]]
    no_key = [{k: v for k, v in good[0].items() if k != "device"}, good[1]]
    not_list = [{**good[0], "hist_cats": 3}]
    head = {"headers": {"Content-Type": "application/json"}}
    return [
        ("malformed json", "/predict", {"content": b'{"records": [', **head}, 400, "body"),
        ("no records", "/predict", {"json": {"rows": good}}, 422, "records"),
        ("records not a list", "/predict", {"json": {"records": 5}}, 422, "records"),
        ("record not an object", "/predict", {"json": {"records": [1]}}, 422, "records[0]"),
        ("wrong type", "/predict", {"json": {"records": wrong_type}}, 422, "price"),
        ("missing field", "/predict", {"json": {"records": no_key}}, 422, "device"),
        ("sequence not a list", "/predict", {"json": {"records": not_list}}, 422, "hist_cats"),
        ("empty batch", "/predict", {"json": {"records": []}}, 422, "records"),
        ("oversized batch", "/predict", {"json": {"records": records[:33]}}, 413, "records"),
        ("k not an int", "/recommend", {"json": {"user": "u1", "k": "3"}}, 422, "k"),
        ("recommend on deepfm", "/recommend", {"json": {"user": "u1", "k": 3}}, 400, "model"),
        ("explain on deepfm", "/explain", {"json": {"record": good[0]}}, 400, "model"),
    ]


def test_each_bad_request_gets_a_4xx_naming_the_field(client, serve_bundles):
    records = serve_bundles.records
    for name, path, kwargs, status, field in _bad_requests(records):
        resp = client.post(path, **kwargs)
        assert resp.status_code == status, (name, resp.text)
        assert resp.json()["field"] == field, (name, resp.json())
        assert field.split("[")[0] in resp.json()["detail"] or field == "body", name
        ok = client.post("/predict", json={"records": records[:3]})
        assert ok.status_code == 200 and len(ok.json()["scores"]) == 3, name


def test_health_and_metadata(client, serve_bundles):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["model"] == "deepfm"
    meta = client.get("/metadata").json()
    expected = Predictor.load(serve_bundles.deepfm).metadata()
    for key in ("model", "params", "schema", "inputs", "bundle", "training_metrics"):
        assert meta[key] == expected[key], key
    assert meta["training_metrics"]["summary"]["test"]["auc"] > 0
    assert meta["max_records"] == 32 and not meta["pairwise"]
    assert "path" not in meta  # where the bundle lives is for the admin only
    assert client.get("/metadata", headers=AUTH).json()["path"] == expected["path"]


def test_host_header_allow_list_and_token_file(serve_bundles, tmp_path):
    """A Host outside the allow-list is a 400 (DNS rebinding); the token comes from a file."""
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    app = create_app(serve_bundles.deepfm, admin_token_file=token_file,
                     allowed_hosts=["localhost", "127.0.0.1"])  # fmt: skip
    with TestClient(app, base_url="http://localhost") as c:
        assert c.get("/health").status_code == 200
        assert c.post("/admin/reload", headers=AUTH).status_code == 200
        rebound = c.get("/health", headers={"Host": "evil.example"})
        assert rebound.status_code == 400
    with pytest.raises(ValueError, match="cannot read an admin token"):
        create_app(serve_bundles.deepfm, admin_token_file=tmp_path / "absent")


def test_admin_endpoints_need_the_token(client, serve_bundles):
    missing = client.post("/admin/reload")
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == "Bearer"
    assert client.post("/admin/reload", headers={"Authorization": "Bearer nope"}).status_code == 403
    assert client.post("/admin/reload", headers={"Authorization": TOKEN}).status_code == 401
    outside = client.post("/admin/reload", json={"path": "/no/such/bundle"}, headers=AUTH)
    assert outside.status_code == 403 and "reload root" in outside.json()["detail"]
    missing_path = str(Path(serve_bundles.deepfm).parent / "no-such-bundle")
    bad = client.post("/admin/reload", json={"path": missing_path}, headers=AUTH)
    assert bad.status_code == 422 and "still serving" in bad.json()["detail"]
    # the failure is public, its details (file paths) are for the admin only
    public = client.get("/health").json()["last_reload_error"]
    assert public and "no-such-bundle" not in public
    assert "no-such-bundle" in client.get("/health", headers=AUTH).json()["last_reload_error"]
    generation = client.get("/health").json()["generation"]
    ok = client.post("/admin/reload", headers=AUTH)  # same path again
    assert ok.status_code == 200 and ok.json()["bundle"] == ok.json()["previous"]
    assert ok.json()["generation"] == generation + 1  # a reload did happen
    assert client.get("/health").json()["generation"] == generation + 1
    with TestClient(create_app(serve_bundles.deepfm)) as no_admin:
        assert no_admin.post("/admin/reload", headers=AUTH).status_code == 404


def test_recommend_and_explain_endpoints(serve_bundles):
    with TestClient(create_app(serve_bundles.gmf, seen=None)) as c:
        resp = c.post("/recommend", json={"user": "u2", "k": 3, "exclude_seen": False})
        assert resp.status_code == 200, resp.text
        lib = Predictor.load(serve_bundles.gmf).recommend("u2", 3, exclude_seen=False)
        assert resp.json()["items"] == lib.items
        np.testing.assert_allclose(resp.json()["scores"], lib.scores, rtol=1e-6)
        unknown = c.post("/recommend", json={"user": "ghost", "k": 3, "exclude_seen": False})
        assert unknown.status_code == 404 and unknown.json()["field"] == "user"
        need_seen = c.post("/recommend", json={"user": "u2", "k": 3})
        assert need_seen.status_code == 400 and need_seen.json()["field"] == "exclude_seen"
        cands = c.post(
            "/recommend",
            json={"user": "u2", "k": 2, "candidates": ["i3", "i4", "i5"], "exclude_seen": False},
        )
        assert cands.status_code == 200 and set(cands.json()["items"]) <= {"i3", "i4", "i5"}
        # the two best of the three candidates, best first, by the model's own pair scores
        pre = Predictor.load(serve_bundles.gmf).bundle
        raw = score_pairs(
            pre.model,
            pre.preprocessor.encode_ids("user", ["u2"] * 3),
            pre.preprocessor.encode_ids("item", ["i3", "i4", "i5"]),
        )
        order = np.argsort(-raw, kind="stable")[:2]
        assert cands.json()["items"] == [["i3", "i4", "i5"][j] for j in order]
        np.testing.assert_allclose(cands.json()["scores"], raw[order], rtol=1e-5)
    record = next(r for r in serve_bundles.records if len(r["hist_item_ids"]) >= 3)
    with TestClient(create_app(serve_bundles.din)) as c:
        resp = c.post("/explain", json={"record": record})
        assert resp.status_code == 200, resp.text
        expected = explain_table(load_bundle(serve_bundles.din), pa.Table.from_pylist([record]))
        got = resp.json()
        np.testing.assert_allclose(
            [w["weight"] for w in got["weights"]], expected.weights, rtol=1e-6
        )
        assert [w["label"] for w in got["weights"]] == expected.labels
        assert got["kind"] == "behaviour" and got["score"] == pytest.approx(expected.score)


@contextmanager
def _uvicorn(app) -> Iterator[str]:  # noqa: ANN001
    """The app on a real uvicorn server bound to a free loopback port, in a thread."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP_NODELAY
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def test_hot_reload_under_concurrent_requests_loses_none(serve_bundles):
    records = serve_bundles.records[:8]
    expected = {
        Predictor.load(p).bundle_id: load_bundle(p).predict_records(records)
        for p in (serve_bundles.deepfm, serve_bundles.deepfm_b)
    }
    new_id = Predictor.load(serve_bundles.deepfm_b).bundle_id
    root = Path(serve_bundles.deepfm).parents[1]  # deepfm/bundle and deepfm_b live here
    app = create_app(serve_bundles.deepfm, admin_token=TOKEN, reload_root=root)
    results: list[tuple[float, int, dict]] = []
    lock = threading.Lock()
    reloaded = threading.Event()
    after_reload_per_thread = 5

    def hammer(base: str) -> None:
        done_after = 0
        with httpx.Client(base_url=base, timeout=30) as http:
            while done_after < after_reload_per_thread:
                start = time.monotonic()
                resp = http.post("/predict", json={"records": records})
                with lock:
                    results.append((start, resp.status_code, resp.json()))
                done_after += reloaded.is_set()

    with _uvicorn(app) as base:
        threads = [threading.Thread(target=hammer, args=(base,)) for _ in range(4)]
        for t in threads:
            t.start()
        while len(results) < 8:
            time.sleep(0.01)
        resp = httpx.post(
            f"{base}/admin/reload", json={"path": str(serve_bundles.deepfm_b)}, headers=AUTH
        )
        swapped_at = time.monotonic()
        reloaded.set()
        for t in threads:
            t.join(timeout=60)
        assert resp.status_code == 200 and resp.json()["bundle"] == new_id
        assert httpx.get(f"{base}/health").json()["bundle"] == new_id
    assert [r for r in results if r[1] != 200] == []
    for _, _, body in results:
        np.testing.assert_allclose(body["scores"], expected[body["bundle"]], rtol=1e-6)
    old = [b for s, _, b in results if b["bundle"] != new_id]
    after = [b["bundle"] for s, _, b in results if s > swapped_at]
    assert len(old) >= 8 and len(after) >= 4 and set(after) == {new_id}


def test_serve_command_runs_uvicorn_and_answers(serve_bundles):
    # the handler through its own parser (cli.py lists the module; this keeps the test local)
    code = (
        "import argparse, sys; from recforge.commands import serve; "
        "p = argparse.ArgumentParser(); serve.register(p.add_subparsers()); "
        "a = p.parse_args(sys.argv[1:]); sys.exit(a.handler(a))"
    )
    cmd = [sys.executable, "-c", code, "serve", str(serve_bundles.deepfm), "--port", "0",
           "--log-level", "warning", "--threads", "1"]  # fmt: skip
    env = {**os.environ, "RECFORGE_ADMIN_TOKEN": TOKEN}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stderr.readline()
        assert "listening on http://127.0.0.1:" in line, line
        base = line.split("listening on ")[1].strip()
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"{base}/health", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.05)
        assert health.json()["model"] == "deepfm"
        records = serve_bundles.records[:5]
        scores = httpx.post(f"{base}/predict", json={"records": records}).json()["scores"]
        np.testing.assert_allclose(
            scores, load_bundle(serve_bundles.deepfm).predict_records(records), rtol=1e-6
        )
        assert httpx.post(f"{base}/admin/reload", headers=AUTH).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_worker_factory_reads_its_options_from_the_environment(serve_bundles, monkeypatch):
    options = {"bundle_path": str(serve_bundles.din), "admin_token": TOKEN, "max_batch": 2}
    monkeypatch.setenv(ENV_CONFIG, json.dumps(options))
    with TestClient(create_app_from_env()) as c:
        assert c.get("/metadata").json()["model"] == "din"
        too_many = c.post("/predict", json={"records": serve_bundles.records[:3]})
        assert too_many.status_code == 413 and too_many.json()["field"] == "records"
        assert c.post("/admin/reload", headers=AUTH).status_code == 200


def test_oversized_body_is_413_before_parsing(serve_bundles):
    records = serve_bundles.records[:3]
    small = len(json.dumps({"records": records}).encode())
    app = create_app(serve_bundles.deepfm, max_body_mb=(small + 10) / 2**20)
    with TestClient(app, raise_server_exceptions=False) as c:
        assert c.post("/predict", json={"records": records}).status_code == 200
        big = c.post("/predict", json={"records": records * 2})
        assert big.status_code == 413 and big.json()["field"] == "body"

        def chunked():  # no Content-Length: counted as it arrives
            body = json.dumps({"records": records * 2}).encode()
            for i in range(0, len(body), 64):
                yield body[i : i + 64]

        resp = c.post("/predict", content=chunked(), headers={"content-type": "application/json"})
        assert resp.status_code == 413
        # the same app still answers a good request, and malformed JSON is still a 400
        assert c.post("/predict", json={"records": records}).status_code == 200
        bad = c.post("/predict", content=b"{", headers={"content-type": "application/json"})
        assert bad.status_code == 400


@pytest.mark.parametrize("raw", ["true", "NaN", "Infinity", "-Infinity", "1e400", "1e39"])
def test_predict_refuses_booleans_and_non_finite_numbers(client, serve_bundles, raw):
    """A boolean used to score as 1.0 and NaN/Infinity/1e400 as missing, without a word."""
    record = dict(serve_bundles.records[0])
    body = json.dumps({"records": [record]}).replace(
        f'"price": {json.dumps(record["price"])}', f'"price": {raw}'
    )
    assert f'"price": {raw}' in body
    reply = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert reply.status_code == 422 and reply.json()["field"] == "price", reply.json()


def test_predict_accepts_null_for_a_missing_number(client, serve_bundles):
    record = {**serve_bundles.records[0], "price": None}
    assert client.post("/predict", json={"records": [record]}).status_code == 200


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forked workers need fork (POSIX)")
def test_forked_workers_share_one_load_and_follow_one_reload(serve_bundles, tmp_path):
    """``--workers 2`` forks two workers from one process that loaded the bundle (they share
    its memory copy-on-write); both answer, an admin reload reaches both under one generation,
    and SIGTERM stops the parent and the workers cleanly."""
    other = tmp_path / "models" / "b"
    shutil.copytree(serve_bundles.deepfm_b, other)
    code = (
        "import argparse, sys; from recforge.commands import serve; "
        "p = argparse.ArgumentParser(); serve.register(p.add_subparsers()); "
        "a = p.parse_args(sys.argv[1:]); sys.exit(a.handler(a))"
    )
    cmd = [sys.executable, "-c", code, "serve", str(serve_bundles.deepfm), "--port", "0",
           "--workers", "2", "--threads", "1", "--log-level", "warning",
           "--reload-root", str(tmp_path / "models")]  # fmt: skip
    env = {**os.environ, "RECFORGE_ADMIN_TOKEN": TOKEN}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stderr.readline()
        assert "(2 forked workers)" in line, line
        base = line.split("listening on ")[1].split()[0]

        def generations() -> dict[int, int]:
            seen: dict[int, int] = {}
            deadline = time.monotonic() + 30
            while len(seen) < 2:
                assert time.monotonic() < deadline and proc.poll() is None, seen
                try:
                    health = httpx.get(f"{base}/health", headers={**AUTH, "Connection": "close"})
                except httpx.TransportError:
                    time.sleep(0.05)
                    continue
                seen[health.json()["worker"]] = health.json()["generation"]
            return seen

        assert set(generations().values()) == {1}
        assert proc.pid not in generations()  # the workers are children, not the parent
        reply = httpx.post(f"{base}/admin/reload", json={"path": str(other)}, headers=AUTH)
        assert reply.status_code == 200 and reply.json()["generation"] == 2
        deadline = time.monotonic() + 10
        while set(generations().values()) != {2}:  # the other worker follows within its poll
            assert time.monotonic() < deadline
            time.sleep(0.1)
        records = serve_bundles.records[:3]
        scores = httpx.post(f"{base}/predict", json={"records": records}).json()["scores"]
        np.testing.assert_allclose(scores, load_bundle(other).predict_records(records), rtol=1e-6)
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0
