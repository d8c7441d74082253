"""kill -9 of ``recforge online --replay``: the output folder is the old one or the new one.

A forked child runs the real command (in process, so the test stays fast) and is SIGKILLed
once mid-replay, then just before each file-system call of the publication in turn. After
every kill the output folder must hold the complete earlier run or the complete new run, never
a partial folder; the last run publishes a valid folder and sweeps the dead children's
temporaries.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest

import recforge.io
from recforge import cli

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork (POSIX)")

_STEPS: list[tuple[object, str]] = [
    (os, "replace"),
    (os, "rename"),
    (os, "mkdir"),
    (os, "unlink"),
    (os, "rmdir"),
    (os, "open"),
    (shutil, "rmtree"),
    (recforge.io, "_exchange"),
    (Path, "write_text"),
    (Path, "write_bytes"),
]


def _mind_log(path: Path) -> Path:
    """Six days, an impression every three hours; NPOP is always clicked."""
    rng = np.random.default_rng(0)
    start = dt.datetime(2019, 11, 9, 0, 30, 0)
    lines = []
    for i in range(6 * 8):
        when = (start + dt.timedelta(hours=3 * i)).strftime("%m/%d/%Y %I:%M:%S %p").lstrip("0")
        cands = [f"N{100 + 5 * i + j}-0" for j in range(5)] + ["NPOP-1"]
        lines.append(f"{i}\tU{i % 4}\t{when}\tN1\t{' '.join(cands[j] for j in rng.permutation(6))}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _argv(log: Path, out: Path, seed: int) -> list[str]:
    return ["online", "--replay", "mind", "--path", str(log), "--k", "2", "--seeds", str(seed),
            "--policies", "random", "--output", str(out)]  # fmt: skip


def _state(out: Path) -> str:
    """``old`` (seed 1's run), ``new`` (seed 0's run); anything else fails the test."""
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "metrics.png"]
    assert (out / "metrics.png").read_bytes()[:4] == b"\x89PNG"
    report = json.loads((out / "metrics.json").read_text())
    assert set(report["summary"][str(report["seeds"][0])]["evaluation"]) == {"random"}
    return {1: "old", 0: "new"}[report["seeds"][0]]


def _quiet(argv: list[str]) -> int:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return cli.main(argv)


def test_kill_9_during_a_replay_leaves_the_old_or_the_new_output(
    tmp_path, monkeypatch, arm_kill
) -> None:
    log, out = _mind_log(tmp_path / "behaviors.tsv"), tmp_path / "run"
    assert _quiet(_argv(log, out, seed=1)) == 0  # the earlier, complete output
    assert _state(out) == "old"
    parent = os.getpid()

    # killed mid-replay (before any publication step)
    pid = os.fork()
    if pid == 0:
        try:
            _quiet(_argv(log, out, seed=0))
        finally:
            os._exit(0)
    time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and _state(out) == "old"

    # killed at each file-system step of the publication in turn: the replay runs once, and
    # each kill is a child forked when the publication starts
    real = recforge.io.temp_folder_for
    states: list[str] = []

    def fork_per_kill(folder: Path) -> Path:
        for kill_at in range(1, 200):
            child = os.fork()
            if child == 0:
                # just before each call (a kill just after one is a kill before the next)
                arm_kill(_STEPS, kill_at, after=False)
                return real(folder)  # the child publishes, armed; it exits in the finally below
            _, status = os.waitpid(child, 0)
            states.append(_state(out))
            if not os.WIFSIGNALED(status):
                assert os.WEXITSTATUS(status) == 0, "the publication failed without being killed"
                return real(folder)  # the parent publishes too (and sweeps the dead)
        raise AssertionError("the publication never completed")

    monkeypatch.setattr(recforge.io, "temp_folder_for", fork_per_kill)
    code = 3
    try:
        code = _quiet(_argv(log, out, seed=0))
    finally:
        if os.getpid() != parent:
            os._exit(code)
    assert code == 0
    assert len(states) > 2 and states[0] == "old" and states[-1] == "new", states
    assert _state(out) == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["behaviors.tsv", "run"]  # no leftovers
