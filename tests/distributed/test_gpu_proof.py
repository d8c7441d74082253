"""``benchmarks/gpu_proof.py`` without a GPU: one line, exit 0 (the project needs no GPU)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_proof_without_cuda_says_so_in_one_line_and_exits_0(tmp_path: Path) -> None:
    # no visible device, whatever machine runs the tests: the proof itself is not run here
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_proof.py"), "--out", str(tmp_path / "x")],
        capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and "no CUDA device" in lines[0], proc.stdout
    assert not list(tmp_path.iterdir())  # nothing written
