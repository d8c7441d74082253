"""Scaling of the default DeepFM path from 1M to 10M rows, streamed, at 1 and 2 threads (issue 16).

Every run is ``recforge train -c configs/scale/deepfm_criteo_synth.yaml`` in a child process
(the front door: chunked reading, vocabulary fit, encoding to a memory-mapped cache, one epoch
from the cache, validation and test); this script only generates the data
(``benchmarks/peers/gen_data.py``, the peer harness's Criteo-shaped log) and the schema, runs the
command and samples the child's memory from ``/proc/<pid>/status`` every 0.1 s:

* ``VmHWM``: the kernel's peak resident set;
* ``RssAnon`` (peak): heap, tensors, optimizer state, batches: memory the process owns;
* ``RssFile`` (peak): resident pages of mapped files (the encoded cache), page cache the kernel
  may drop and re-read.

The claim to check: the 10M-row run needs no more owned memory (``RssAnon``) than the 1M-row one
beyond what its larger model (more distinct ids, so a larger table and optimizer state) needs.

Usage (data and runs under ``--workdir``, never in the repository; ~20 minutes on 2 cores):
    python benchmarks/scaling_i16.py --rows 1000000 10000000 --threads 2 1
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "scale" / "deepfm_criteo_synth.yaml"
GEN = ROOT / "benchmarks" / "peers" / "gen_data.py"
RESULTS = ROOT / "benchmarks" / "results"


def _schema_json() -> str:
    sys.path.insert(0, str(ROOT / "src"))
    from recforge import CategoricalField, NumericField, Schema

    fields = tuple(NumericField(f"I{i}", fill_value=0.0, transform="log") for i in range(1, 14))
    fields += tuple(CategoricalField(f"C{i}") for i in range(1, 27))
    return Schema(fields=fields, label="label", embedding_dim=16).to_json()


def _status_kb(pid: int) -> dict[str, int]:
    out = {}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmHWM", "RssAnon", "RssFile", "VmRSS"):
            out[key] = int(rest.split()[0])
    return out


def run_one(csv: Path, schema: Path, threads: int, workdir: Path, tag: str) -> dict:
    out_dir = workdir / f"run_{tag}"
    cmd = [
        sys.executable, "-m", "recforge", "train", "-c", str(CONFIG),
        f"data.train={csv}", f"data.schema={schema}",
        f"data.cache_dir={workdir / ('cache_' + tag)}", f"train.threads={threads}",
        f"output_dir={out_dir}",
    ]  # fmt: skip
    peaks = {"VmHWM": 0, "RssAnon": 0, "RssFile": 0}
    timeline: list[tuple[float, int, int]] = []  # (s, RssAnon MB, RssFile MB), once a second
    start = time.perf_counter()
    child = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    done = threading.Event()

    def sample() -> None:
        ticks = 0
        while not done.is_set():
            status = _status_kb(child.pid)
            for k, v in status.items():
                if k in peaks:
                    peaks[k] = max(peaks[k], v)
            if ticks % 10 == 0 and status:
                t = round(time.perf_counter() - start, 1)
                timeline.append(
                    (t, status.get("RssAnon", 0) // 1024, status.get("RssFile", 0) // 1024)
                )
            ticks += 1
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    assert child.stdout is not None
    lines = [f"{time.perf_counter() - start:7.1f}s {line}" for line in child.stdout]
    child.wait()
    log = "".join(lines)  # each line with the second it arrived (the timeline's clock)
    done.set()
    sampler.join()
    wall = time.perf_counter() - start
    (workdir / f"run_{tag}.log").write_text(log)
    (workdir / f"run_{tag}.timeline.json").write_text(json.dumps(timeline))
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{log[-3000:]}")
    summary = json.loads((out_dir / "metrics.json").read_text())
    history = json.loads(next(out_dir.rglob("history.json")).read_text())
    record = {
        "rows": None,
        "threads": threads,
        "command": "recforge " + " ".join(cmd[3:]),
        "wall_s": round(wall, 1),
        "train_s": round(summary["train_seconds"], 1),
        "train_samples_per_s": round(history[-1]["train_samples_per_s"]),
        "test_auc": round(summary["test"]["auc"], 4),
        "parameters": summary["parameters"],
        "peak_mb": {k: round(v / 1024, 1) for k, v in peaks.items()},
    }
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    parser.add_argument("--one-thread-rows", type=int, default=1_000_000,
                        help="run the extra thread counts at this size only")  # fmt: skip
    parser.add_argument("--workdir", default="/tmp/rf/scale")
    parser.add_argument("--out", default=str(RESULTS / "scaling_i16.jsonl"))
    args = parser.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    schema = workdir / "schema.json"
    schema.write_text(_schema_json())
    for rows in args.rows:
        csv = workdir / f"criteo_synth_{rows}.csv"
        if not csv.exists():
            t = time.perf_counter()
            gen = [sys.executable, str(GEN), "--rows", str(rows), "--seed", "0", "--out", str(csv)]
            subprocess.run(gen, check=True)
            print(f"generated {csv} in {time.perf_counter() - t:.0f} s", flush=True)
        for threads in args.threads:
            if threads != args.threads[0] and rows != args.one_thread_rows:
                continue
            record = run_one(csv, schema, threads, workdir, f"{rows}_{threads}")
            record["rows"] = rows
            record["csv_mb"] = round(csv.stat().st_size / 2**20, 1)
            print(json.dumps(record), flush=True)
            with open(args.out, "a") as fh:
                fh.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
