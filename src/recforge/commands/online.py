"""``recforge online``: run the DRN news simulation for several policies.

Writes ``metrics.json`` (configuration, per-policy summary and per-step CTR, precision@5,
nDCG@5 and activeness) and ``metrics.png`` (one curve per policy and metric) to ``--output``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path

import numpy as np

from recforge.io import atomic_write, atomic_write_text

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("online", help="simulate online news recommendation (DRN and baselines)")
    p.add_argument(
        "--policies",
        default="drn,greedy,egreedy,linucb,static",
        help="comma list of policies: drn, drn-probabilistic, drn-no-activeness, "
        "drn-myopic, greedy (= drn-major), egreedy, linucb, static, random",
    )
    p.add_argument("--steps", type=int, default=300, help="online steps (hours)")
    p.add_argument("--log-steps", type=int, default=50, help="random logging steps to pretrain")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--users", type=int, default=2000)
    p.add_argument("--topics", type=int, default=10)
    p.add_argument(
        "--shift-step",
        type=int,
        default=-1,
        help="online step of an abrupt interest shift (-1: none)",
    )
    p.add_argument("--minor-every", type=int, default=2, help="T1 (DBGD minor updates)")
    p.add_argument("--major-every", type=int, default=10, help="T2 (replay major updates)")
    p.add_argument("--alpha", type=float, default=0.1, help="DBGD explore coefficient")
    p.add_argument("--beta", type=float, default=0.05, help="activeness weight in the reward")
    p.add_argument("--gamma", type=float, default=0.4, help="discount of future reward")
    p.add_argument("--epsilon", type=float, default=0.1, help="epsilon-greedy rate")
    p.add_argument("--globo", help="Globo clicks.csv[.xz] to calibrate the simulator")
    p.add_argument("--mind", help="MIND behaviors.tsv[.xz] to calibrate the click rate")
    p.add_argument("--output", default="online-run", help="folder for metrics.json/png")
    p.set_defaults(handler=cmd_online)


def plot_histories(
    series: dict[str, dict[str, list[float]]], path: Path, title: str = "", smooth: int = 10
) -> None:
    """One panel per metric, one curve per policy (moving average over ``smooth`` steps)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from recforge.drn.loop import METRICS

    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
    for ax, metric in zip(axes.ravel(), METRICS, strict=True):
        for name, s in series.items():
            y = np.asarray(s[metric], dtype=np.float64)
            k = max(1, min(smooth, y.size))
            ax.plot(
                np.asarray(s["step"])[k - 1 :], np.convolve(y, np.ones(k) / k, "valid"), label=name
            )
        ax.set_title(metric)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("step (hours)")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


def cmd_online(args: argparse.Namespace) -> int:
    import torch

    from recforge.drn.agent import AgentConfig
    from recforge.drn.loop import run_simulation
    from recforge.drn.simulator import SimConfig

    torch.set_num_threads(1)  # tiny networks: threads only add overhead
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    shift = args.log_steps + args.shift_step if args.shift_step >= 0 else -1
    sim = SimConfig(n_users=args.users, n_topics=args.topics, shift_step=shift, seed=args.seed)
    calibration = None
    if args.globo or args.mind:
        from recforge.drn.calibration import calibrate

        calibration = calibrate(args.globo, args.mind, base=sim)
        sim = calibration.apply(sim)
    agent = AgentConfig(
        minor_every=args.minor_every,
        major_every=args.major_every,
        alpha=args.alpha,
        beta=args.beta,
        gamma=args.gamma,
        epsilon=args.epsilon,
        seed=args.seed,
    )
    hists = run_simulation(policies, sim, args.steps, args.log_steps, agent)
    out = Path(args.output)
    series = {name: h.to_dict() for name, h in hists.items()}
    report = {
        "simulator": dataclasses.asdict(sim),
        "agent": dataclasses.asdict(agent),
        "calibration": dataclasses.asdict(calibration) if calibration else None,
        "steps": args.steps,
        "log_steps": args.log_steps,
        "summary": {name: h.summary() for name, h in hists.items()},
        "series": series,
    }
    atomic_write_text(out / "metrics.json", json.dumps(report, indent=1))
    plot_histories(series, out / "metrics.png", f"recforge online (seed {args.seed})")
    width = max(len(n) for n in policies)
    print(f"{'policy':<{width}}  cum_CTR  avg_P@5  avg_nDCG@5  avg_active  final_active")
    for name, h in hists.items():
        s = h.summary()
        print(
            f"{name:<{width}}  {s['cumulative_ctr']:.4f}   {s['avg_precision@5']:.4f}   "
            f"{s['avg_ndcg@5']:.4f}      {s['avg_activeness']:.4f}      "
            f"{s['final_activeness']:.4f}"
        )
    print(f"wrote {out / 'metrics.json'} and {out / 'metrics.png'}")
    return 0
