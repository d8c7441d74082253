"""Reproduce DRN's claims (Zheng et al., WWW 2018) on the recforge news simulator.

The paper's data is proprietary, so its claims are measured on the seeded simulator of
:mod:`recforge.drn.simulator`:

1. DRN (dueling Q-network + DBGD minor updates + replay major updates) beats greedy and
   epsilon-greedy (same network and major updates, other exploration) and LinUCB and a static CTR
   model on cumulative CTR and on user activeness;
2. minor updates track a mid-run interest shift faster than major updates alone (``greedy`` is
   exactly DRN without minor updates, so it is the "major-only" arm).

Every policy runs on identically seeded simulators (common random numbers); the table gives
means over seeds with 95 % t-intervals and paired DRN - baseline differences.

Usage::

    nice -n 10 python benchmarks/repro_drn.py [--seeds 5] [--steps 240] [--calibrate]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy: tiny matrices, shared CPUs
import numpy as np  # noqa: E402
import torch  # noqa: E402

from recforge.commands.online import plot_histories  # noqa: E402
from recforge.drn.agent import AgentConfig  # noqa: E402
from recforge.drn.loop import run_policy  # noqa: E402
from recforge.drn.simulator import SimConfig  # noqa: E402
from recforge.metrics import mean_ci95 as ci  # noqa: E402

POLICIES = ("drn", "greedy", "egreedy", "linucb", "static", "random")
RESULTS = Path(__file__).parent / "results"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def window(series: list[float], users: list[int], lo: int, hi: int) -> float:
    """Impression-weighted mean of a per-step series over online steps ``[lo, hi)``."""
    s, u = np.asarray(series[lo:hi]), np.asarray(users[lo:hi], dtype=np.float64)
    return float((s * u).sum() / u.sum())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=240)
    parser.add_argument("--log-steps", type=int, default=40)
    parser.add_argument("--window", type=int, default=40, help="post-shift window (steps)")
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument(
        "--calibrate",
        action="store_true",
        help="calibrate the simulator on shared Globo + MIND logs",
    )
    parser.add_argument("--major-every", type=int, default=10, help="T2")
    parser.add_argument("--minor-every", type=int, default=2, help="T1")
    parser.add_argument("--major-updates", type=int, default=10)
    parser.add_argument("--alpha", type=float, default=0.1, help="DBGD explore coefficient")
    parser.add_argument("--tag", default="drn_repro")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    policies = args.policies.split(",")
    shift_online = args.steps // 2
    base = SimConfig(shift_step=args.log_steps + shift_online)
    calibration = None
    if args.calibrate:
        from recforge.drn.calibration import calibrate

        calibration = calibrate(
            SHARED / "globo-news-clicks" / "clicks.csv.xz",
            SHARED / "mind-small-behaviors-sample" / "behaviors.tsv.xz",
            base=base,
        )
        base = calibration.apply(base)
        print("calibration:", calibration)
    agent = AgentConfig(
        major_updates=args.major_updates,
        major_every=args.major_every,
        minor_every=args.minor_every,
        alpha=args.alpha,
    )
    t0 = time.time()
    rows: dict[str, dict[str, list[float]]] = {p: {} for p in policies}
    curves: dict[str, dict[str, list[np.ndarray]]] = {p: {} for p in policies}
    for seed in range(args.seeds):
        sim = base.replace(seed=seed)
        for p in policies:
            t = time.time()
            h = run_policy(p, sim, args.steps, args.log_steps, agent)
            s = h.summary(last=args.window)
            s["pre_shift_ctr"] = window(
                h.metrics["ctr"], h.users, shift_online - args.window, shift_online
            )
            s["post_shift_ctr"] = window(
                h.metrics["ctr"], h.users, shift_online, shift_online + args.window
            )
            s["post_shift_activeness"] = float(
                np.mean(h.metrics["activeness"][shift_online : shift_online + args.window])
            )
            s["seconds"] = time.time() - t
            for k, v in s.items():
                rows[p].setdefault(k, []).append(v)
            for k, v in {**h.metrics, "step": h.step}.items():
                curves[p].setdefault(k, []).append(np.asarray(v, dtype=np.float64))
            print(
                f"seed {seed} {p:8s} cumCTR {s['cumulative_ctr']:.4f} "
                f"act {s['avg_activeness']:.4f} post-shift CTR {s['post_shift_ctr']:.4f} "
                f"({s['seconds']:.1f}s)",
                flush=True,
            )
    keys = (
        "cumulative_ctr",
        "avg_precision@5",
        "avg_ndcg@5",
        "avg_activeness",
        "final_ctr",
        "final_activeness",
        "pre_shift_ctr",
        "post_shift_ctr",
        "post_shift_activeness",
    )
    table = {p: {k: ci(rows[p][k]) for k in keys} for p in policies}
    paired = {}
    if "drn" in policies:
        for p in policies:
            if p != "drn":
                paired[p] = {k: ci(list(np.subtract(rows["drn"][k], rows[p][k]))) for k in keys}
    command = "nice -n 10 python " + " ".join(["benchmarks/repro_drn.py", *sys.argv[1:]])
    lines = [
        f"# DRN on the news simulator ({args.seeds} seeds, {args.steps} online steps after "
        f"{args.log_steps} logged; interest shift at online step {shift_online})",
        "",
        f"Command: `{command}` ({time.time() - t0:.0f} s)",
        "",
        "Mean ± 95% CI half-width over seeds. final_* = last "
        f"{args.window} steps; pre/post_shift = {args.window} steps before/after the shift.",
        "",
        "| policy | " + " | ".join(keys) + " |",
        "|---" * (len(keys) + 1) + "|",
    ]
    for p in policies:
        cells = [f"{m:.4f} ± {h:.4f}" for m, h in table[p].values()]
        lines.append(f"| {p} | " + " | ".join(cells) + " |")
    if paired:
        lines += [
            "",
            "Paired difference DRN - baseline (mean ± 95% CI):",
            "",
            "| baseline | " + " | ".join(keys) + " |",
            "|---" * (len(keys) + 1) + "|",
        ]
        for p, d in paired.items():
            lines.append(
                f"| {p} | " + " | ".join(f"{m:+.4f} ± {h:.4f}" for m, h in d.values()) + " |"
            )
    report = "\n".join(lines)
    print(report)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.tag}.md").write_text(report + "\n")
    (RESULTS / f"{args.tag}.json").write_text(
        json.dumps(
            {
                "command": command,
                "simulator": base.__dict__,
                "agent": agent.__dict__,
                "calibration": None if calibration is None else calibration.__dict__,
                "per_seed": rows,
                "table": table,
                "paired_drn_minus": paired,
            },
            indent=1,
        )
    )
    mean_series = {
        p: {k: list(np.mean(np.stack(v), axis=0)) for k, v in curves[p].items()} for p in policies
    }
    plot_histories(
        mean_series,
        RESULTS / f"{args.tag}.png",
        f"DRN reproduction: mean over {args.seeds} seeds, shift at step "
        f"{args.log_steps + shift_online}",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
