"""Dynamic micro-batching: each caller gets exactly its own rows, a bad record fails only its
own request, a request past its deadline is a 503, no answer mixes two model generations; the
worker processes of one server share reloads through a state file."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from fastapi.testclient import TestClient

from recforge.commands.serve import default_threads
from recforge.serve.app import create_app
from recforge.serve.batcher import MicroBatcher
from recforge.serve.bundle import load_bundle
from recforge.serve.predictor import Predictor, RequestError
from recforge.serve.slot import ModelSlot

LONG_WINDOW_MS = 10_000.0  # a batch closes when its record cap is reached, never by the clock


def _submit_all(batcher: MicroBatcher, requests: list[list[dict]]) -> list:
    """Submit every request from its own thread at once; their outcomes, in request order."""
    outcomes: list = [None] * len(requests)
    start = threading.Barrier(len(requests))

    def call(i: int) -> None:
        start.wait()
        try:
            outcomes[i] = batcher.run("predict", requests[i], len(requests[i]), timeout=60)
        except RequestError as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return outcomes


def test_concurrent_requests_get_their_own_rows_from_one_forward_pass(serve_bundles):
    records = serve_bundles.records
    sizes = [1, 3, 1, 5, 2, 7, 1, 4]
    starts = np.cumsum([0, *sizes[:-1]])
    requests = [records[s : s + n] for s, n in zip(starts, sizes, strict=True)]
    slot = ModelSlot(serve_bundles.din)
    batcher = MicroBatcher(slot, window_ms=LONG_WINDOW_MS, max_records=sum(sizes))
    try:
        outcomes = _submit_all(batcher, requests)
    finally:
        batcher.stop()
    alone = Predictor.load(serve_bundles.din)
    for request, outcome in zip(requests, outcomes, strict=True):
        assert outcome.value.shape == (len(request),)
        np.testing.assert_allclose(outcome.value, alone.predict(request), rtol=1e-6, atol=1e-7)
        assert outcome.predictor.generation == 1
    assert batcher.stats.batches == 1 and batcher.stats.largest == len(requests)


def test_a_bad_record_fails_only_its_own_request(serve_bundles):
    good = serve_bundles.records
    wrong_type = [good[0], {**good[1], "price": "cheap"}]
    no_field = [{k: v for k, v in good[2].items() if k != "device"}]
    mixed_ids = [{**good[3], "user_id": 12345}]  # an int id among strings: fine on its own
    requests = [good[4:6], wrong_type, good[6:7], no_field, mixed_ids, good[7:10]]
    slot = ModelSlot(serve_bundles.deepfm)
    batcher = MicroBatcher(slot, window_ms=LONG_WINDOW_MS, max_records=sum(map(len, requests)))
    try:
        outcomes = _submit_all(batcher, requests)
    finally:
        batcher.stop()
    assert batcher.stats.batches == 1  # all six were in one batch
    assert isinstance(outcomes[1], RequestError) and outcomes[1].field == "price"
    assert isinstance(outcomes[3], RequestError) and outcomes[3].field == "device"
    alone = Predictor.load(serve_bundles.deepfm)
    for i in (0, 2, 4, 5):
        np.testing.assert_allclose(outcomes[i].value, alone.predict(requests[i]), rtol=1e-6)


def test_http_batch_mates_of_a_bad_request_are_answered(serve_bundles):
    records = serve_bundles.records
    bodies = [records[:2], [{**records[2], "hist_cats": 3}], records[3:4], records[4:7]]
    app = create_app(serve_bundles.deepfm, batch_window_ms=LONG_WINDOW_MS, max_batch_records=7)
    app.state.batcher.track_announced = False  # close on the record cap only: one batch
    replies: list = [None] * len(bodies)
    with TestClient(app) as client:

        def post(i: int) -> None:
            replies[i] = client.post("/predict", json={"records": bodies[i]})

        threads = [threading.Thread(target=post, args=(i,)) for i in range(len(bodies))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert replies[1].status_code == 422 and replies[1].json()["field"] == "hist_cats"
    expected = load_bundle(serve_bundles.deepfm)
    for i in (0, 2, 3):
        assert replies[i].status_code == 200, replies[i].text
        np.testing.assert_allclose(
            replies[i].json()["scores"], expected.predict_records(bodies[i]), rtol=1e-6
        )
    assert app.state.batcher.stats.batches == 1


def test_a_request_past_its_deadline_gets_503_and_the_next_is_served(serve_bundles):
    app = create_app(serve_bundles.deepfm, timeout_ms=50)
    predictor = app.state.slot.get()
    release = threading.Event()
    real = predictor.predict_many

    def stuck(requests):  # noqa: ANN001, ANN202 (the scorer is busy with a long batch)
        release.wait(30)
        return real(requests)

    predictor.predict_many = stuck
    records = serve_bundles.records[:2]
    with TestClient(app) as client:
        late = client.post("/predict", json={"records": records})
        assert late.status_code == 503 and late.headers["Retry-After"] == "1"
        assert "50 ms" in late.json()["detail"]
        release.set()
        predictor.predict_many = real
        ok = client.post("/predict", json={"records": records})
        assert ok.status_code == 200 and len(ok.json()["scores"]) == 2


def test_no_answer_mixes_two_generations_under_repeated_reloads(serve_bundles):
    """Reload back and forth while eight threads predict; every answer's scores are exactly
    those of the model of the generation it names."""
    records = serve_bundles.records[:24]
    paths = [serve_bundles.deepfm, serve_bundles.deepfm_b]
    expected = [load_bundle(p).predict_records(records) for p in paths]
    assert np.abs(expected[0] - expected[1]).max() > 1e-3  # the two models tell apart
    slot = ModelSlot(paths[0])
    batcher = MicroBatcher(slot, window_ms=1.0, max_records=64)
    which = {slot.generation: 0}  # generation -> index of its bundle
    answers: list[tuple[int, int, np.ndarray]] = []
    lock = threading.Lock()
    done = threading.Event()

    def predict(seed: int) -> None:
        rng = np.random.default_rng(seed)
        while not done.is_set():
            start = int(rng.integers(0, 20))
            n = int(rng.integers(1, 5))
            got = batcher.run("predict", records[start : start + n], n, timeout=60)
            with lock:
                answers.append((got.predictor.generation, start, got.value))

    threads = [threading.Thread(target=predict, args=(seed,)) for seed in range(8)]
    for t in threads:
        t.start()
    try:
        for k in range(1, 13):
            fresh = slot.reload(paths[k % 2])
            which[fresh.generation] = k % 2
    finally:
        done.set()
        for t in threads:
            t.join(timeout=60)
        batcher.stop()
    assert len({g for g, _, _ in answers}) >= 2
    for generation, start, scores in answers:
        want = expected[which[generation]][start : start + len(scores)]
        np.testing.assert_allclose(scores, want, rtol=1e-6, atol=1e-7)


def test_a_reload_reaches_every_worker_under_one_generation(serve_bundles, tmp_path):
    state = tmp_path / "state.json"
    first = ModelSlot(serve_bundles.deepfm, shared_state=state)
    second = ModelSlot(serve_bundles.deepfm, shared_state=state)
    assert first.generation == second.generation == 1
    assert not second.sync()  # nothing new
    new = first.reload(serve_bundles.deepfm_b)
    assert new.generation == 2 and second.get().generation == 1
    assert second.sync() and second.get().generation == 2
    assert second.get().bundle_id == new.bundle_id
    again = second.reload()  # a reload in the other worker takes the next number
    assert again.generation == 3 and first.sync() and first.get().bundle_id == new.bundle_id
    late = ModelSlot(serve_bundles.deepfm, shared_state=state)  # a restarted worker
    assert late.generation == 3 and late.get().bundle_id == new.bundle_id
    # the same bundle change seen by two watchers (--watch in each worker) is one generation
    assert late.reload().generation == 4
    first_again = first.reload()
    assert first_again.generation == 4 and first.generation == 4


def test_memory_mapped_weights_score_like_loaded_ones(serve_bundles):
    records = serve_bundles.records[:10]
    for path in (serve_bundles.deepfm, serve_bundles.din):
        mapped = load_bundle(path, mmap=True)
        np.testing.assert_allclose(
            mapped.predict_records(records), load_bundle(path).predict_records(records)
        )


@pytest.mark.parametrize(
    ("cores", "workers", "threads"), [(2, 1, 1), (1, 1, 1), (16, 1, 4), (16, 4, 3), (8, 8, 1)]
)
def test_default_threads_leave_a_core_for_the_http_loop(cores, workers, threads):
    assert default_threads(cores, workers) == threads


def test_recommend_requests_in_one_batch_match_one_by_one(serve_bundles):
    requests = [
        {"user": "u1", "k": 3, "candidates": None, "exclude_seen": True},
        {"user": "u2", "k": 5, "candidates": None, "exclude_seen": False},
        {"user": "ghost", "k": 3, "candidates": None, "exclude_seen": False},
        {"user": "u3", "k": 2, "candidates": ["i3", "i4", "i5"], "exclude_seen": False},
        {"user": "u4", "k": 1, "candidates": None, "exclude_seen": True},
        {"user": "u5", "k": 4, "candidates": None, "exclude_seen": False},
    ]
    slot = ModelSlot(serve_bundles.gmf, seen=serve_bundles.gmf_seen)
    batcher = MicroBatcher(slot, window_ms=LONG_WINDOW_MS, max_records=len(requests))
    futures = [batcher.submit("recommend", r) for r in requests]
    outcomes = []
    for future in futures:
        try:
            outcomes.append(future.result(60))
        except RequestError as exc:
            outcomes.append(exc)
    batcher.stop()
    assert batcher.stats.batches == 1
    assert isinstance(outcomes[2], RequestError) and outcomes[2].status == 404
    alone = Predictor.load(serve_bundles.gmf, seen=serve_bundles.gmf_seen)
    for request, outcome in zip(requests, outcomes, strict=True):
        if request["user"] == "ghost":
            continue
        want = alone.recommend(**request)
        assert outcome.value.items == want.items and len(want.items) == request["k"]
        np.testing.assert_allclose(outcome.value.scores, want.scores, rtol=1e-6)


def test_onnx_backend_scores_like_eager(serve_bundles):
    pytest.importorskip("onnxruntime")
    records = serve_bundles.records[:9]
    requests = [records[:4], records[4:5], records[5:]]
    for path in (serve_bundles.deepfm, serve_bundles.din):
        onnx = Predictor.load(path, backend="onnx")
        eager = Predictor.load(path)
        assert onnx.backend == "onnx" and onnx._onnx is not None
        for got, want in zip(
            onnx.predict_many(requests), eager.predict_many(requests), strict=True
        ):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_an_unexpected_encoding_error_stays_with_its_request(serve_bundles):
    records = serve_bundles.records
    requests = [records[:1], records[1:4], records[4:6]]
    predictor = Predictor.load(serve_bundles.deepfm)
    real = predictor._encode

    def broken(table):  # noqa: ANN001, ANN202 (a bug that three-row tables trigger)
        if table.num_rows in (3, 6):  # the middle request, and the merged batch
            raise RuntimeError("boom")
        return real(table)

    predictor._encode = broken
    first, middle, last = predictor.predict_many(requests)
    assert isinstance(middle, RuntimeError)
    alone = Predictor.load(serve_bundles.deepfm)
    np.testing.assert_allclose(first, alone.predict(requests[0]), rtol=1e-6)
    np.testing.assert_allclose(last, alone.predict(requests[2]), rtol=1e-6)
