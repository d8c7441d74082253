import json
import os
import subprocess
import sys
from pathlib import Path

import recforge


def test_online_command_writes_metrics_and_plot(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(Path(recforge.__file__).parents[1]))
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "recforge.cli", "online", "--steps", "6", "--log-steps", "3",
           "--users", "120", "--policies", "drn,linucb,random", "--output", str(out)]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "metrics.json").read_text())
    assert set(report["series"]) == {"drn", "linucb", "random"}
    for series in report["series"].values():
        assert len(series["ctr"]) == 6
        assert {"precision@5", "ndcg@5", "activeness"} <= set(series)
    assert (out / "metrics.png").read_bytes()[:4] == b"\x89PNG"
    assert "cum_CTR" in done.stdout
