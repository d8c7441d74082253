"""Faults while publishing: kill -9 at every file-system step, and a disk that fills up.

Each case runs the real publication (a bundle over an existing one, an encoded-data cache) in a
forked child that kills itself with SIGKILL just before or just after its N-th file-system call
(temporary creation, rename, exchange, mkdir, unlink, rmtree, array/tensor/text write), for
every N until the child completes. After every kill the published path must hold a complete,
loadable folder: the old one or the new one, never a missing or half-written one. Before the
exchange-based :func:`recforge.io.replace_folder`, a kill between its two renames left no
bundle at the path.

The full disk is the real thing, not a mock: ``RLIMIT_FSIZE`` makes every write past a few KiB
fail with ``EFBIG`` (SIGXFSZ ignored), for Python and C++ writers (``torch.save``) alike.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

import recforge.io
from recforge.data.encode.preprocess import Preprocessor
from recforge.data.sources.synthetic import make_click_log, write_click_log
from recforge.data.store import load_encoded, save_encoded
from recforge.models import registry
from recforge.serve.bundle import load_bundle, save_bundle

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork (POSIX)")

_STEPS: list[tuple[object, str]] = [
    (os, "replace"),
    (os, "rename"),
    (os, "mkdir"),
    (os, "unlink"),
    (os, "rmdir"),
    (shutil, "rmtree"),
    (os, "open"),  # the temporaries: files by os.open(O_EXCL), folders by os.mkdir
    (recforge.io, "_exchange"),
    (np, "save"),
    (torch, "save"),
    (Path, "write_text"),
    (Path, "write_bytes"),
]


def _killed_run(action: Callable[[], None], kill_at: int, arm: Callable[..., None]) -> bool:
    """Run ``action`` in a child killed at step ``kill_at``; True if the kill happened."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 3
        try:
            arm(_STEPS, kill_at)
            action()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        assert os.WTERMSIG(status) == signal.SIGKILL
        return True
    assert os.WEXITSTATUS(status) == 0, "the publication failed without being killed"
    return False


def _kill_everywhere(
    action: Callable[[], None], check: Callable[[], str], arm: Callable[..., None]
) -> list[str]:
    """Kill ``action`` at each step in turn; ``check()`` names the state found after each."""
    states = []
    for kill_at in range(1, 400):
        killed = _killed_run(action, kill_at, arm)
        states.append(check())
        if not killed:
            return states
    raise AssertionError("the publication never completed")


@pytest.fixture(scope="module")
def tiny():
    table, schema = make_click_log(rows=300, seed=0, n_users=20, n_items=200)
    pre = Preprocessor(schema).fit(table)
    return pre, table


def test_kill_9_at_any_step_of_bundle_publication_leaves_a_loadable_bundle(
    tiny, tmp_path, arm_kill
):
    pre, _ = tiny
    folder = tmp_path / "bundle"
    model = registry.build("fm", pre.schema, {"embedding_dim": 4})

    def publish(marker: str) -> None:
        save_bundle(folder, "fm", model, pre, extra_meta={"marker": marker})

    publish("old")

    def state() -> str:
        bundle = load_bundle(folder)  # raises for a missing or half-written bundle
        return json.loads((folder / "meta.json").read_text())["marker"] + (
            "" if bundle.model is not None else "?"
        )

    def publish_new() -> None:
        publish("new")

    states = _kill_everywhere(publish_new, state, arm_kill)
    assert states[0] == "old" and states[-1] == "new"
    assert set(states) == {"old", "new"}  # the kills spanned the switch
    # killed children's temporaries are swept by the next publication; nothing else remains
    publish("again")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_kill_9_at_any_step_of_cache_writing_leaves_no_partial_cache(tiny, tmp_path, arm_kill):
    pre, table = tiny
    data = pre.transform(table)
    folder = tmp_path / "cache" / "key"

    def state() -> str:
        if not folder.exists():
            return "absent"
        loaded = load_encoded(folder)  # a partial cache would fail here
        assert len(loaded) == len(data)
        for name, arr in data.arrays().items():
            np.testing.assert_array_equal(loaded.arrays()[name], arr)
        return "complete"

    states = _kill_everywhere(lambda: save_encoded(data, folder), state, arm_kill)
    assert states[0] == "absent" and states[-1] == "complete"


def _limited(limit_bytes: int) -> None:
    """preexec/child: writes past ``limit_bytes`` fail with EFBIG instead of killing us."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, resource.RLIM_INFINITY))


def test_a_full_disk_fails_cleanly_and_keeps_the_old_bundle(tiny, tmp_path):
    pre, _ = tiny
    folder = tmp_path / "bundle"
    model = registry.build("fm", pre.schema, {"embedding_dim": 4})
    save_bundle(folder, "fm", model, pre, extra_meta={"marker": "old"})
    bigger = registry.build("fm", pre.schema, {"embedding_dim": 64})

    pid = os.fork()
    if pid == 0:
        code = 4
        try:
            _limited(16 * 1024)
            save_bundle(folder, "fm", bigger, pre, extra_meta={"marker": "new"})
            code = 0
        except (OSError, RuntimeError):  # torch reports its writer's failure as RuntimeError
            code = 5
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 5  # failed, with an exception
    assert json.loads((folder / "meta.json").read_text())["marker"] == "old"
    load_bundle(folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]  # no half-written temporary


def test_train_on_a_full_disk_is_one_line_and_publishes_nothing(tmp_path):
    table, schema = make_click_log(rows=400, seed=1, n_users=30, n_items=200)
    write_click_log(table, tmp_path / "train.csv")
    (tmp_path / "schema.json").write_text(schema.to_json())
    env = {**os.environ, "RECFORGE_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, "-m", "recforge.cli", "train", "data.dataset=files",
         "data.train=train.csv", "data.schema=schema.json", "model.name=fm",
         "model.params.embedding_dim=64", "train.epochs=1", "train.progress=false",
         "output_dir=run"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
        preexec_fn=lambda: _limited(24 * 1024),
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("recforge: error: ") and "cannot write" in lines[-1]
    assert "disk full or file size limit" in lines[-1]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()
