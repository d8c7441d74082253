"""``recforge online``: run the DRN news simulation, or replay real logs, for several policies.

Simulation: writes ``metrics.json`` (configuration, per-policy summary and per-step CTR,
precision@5, nDCG@5 and activeness) and ``metrics.png`` (one curve per policy and metric) to
``--output``. With ``--recalibrate`` the simulator's click model is fitted to ``--mind`` and its
return model to ``--globo`` (:mod:`recforge.drn.recalibration`), and ``calibration.md`` /
``calibration.png`` show the simulated against the logged statistics. The folder is published
by one rename.

Replay (``--replay mind|globo --path FILE``): every policy walks the log's hours in time order
under bandit feedback (:mod:`recforge.drn.offline`), once per seed; writes ``metrics.json``
(summaries per seed, period and policy; per-round series), ``metrics.png`` (the evaluation
hours, mean over seeds) and, for Globo, ``calibration.png`` of the return model. The folder is
filled aside and published by one rename, so an interrupted run leaves the previous output.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path

import numpy as np

from recforge.io import atomic_folder, atomic_write

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("online", help="simulate online news recommendation (DRN and baselines)")
    p.add_argument(
        "--policies",
        default="drn,greedy,egreedy,linucb,static",
        help="comma list of policies: drn, drn-probabilistic, drn-no-activeness, "
        "drn-myopic, drn-no-minor, drn-no-major, greedy (= drn-major = drn-no-dbgd), egreedy, "
        "linucb, static, static-daily, random",
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
    p.add_argument(
        "--recalibrate",
        action="store_true",
        help="fit the click model to --mind and the return model to --globo, with returns "
        "driven by the quality of the lists received (recforge.drn.recalibration); writes "
        "calibration.md/png (simulated vs logged) next to the metrics",
    )
    p.add_argument(
        "--return-elasticity",
        type=float,
        default=1.0,
        help="--recalibrate: elasticity of the return hazard in the received list quality "
        "(an assumption; 0 makes returns independent of the recommendations)",
    )
    p.add_argument("--output", default="online-run", help="folder for metrics.json/png")
    p.add_argument(
        "--replay", choices=("mind", "globo"), help="replay a real log instead of simulating"
    )
    p.add_argument("--path", help="the log to replay: MIND behaviors.tsv[.xz] or Globo clicks.csv")
    p.add_argument(
        "--seeds",
        default="0",
        help="replay: comma list of seeds (policy seeds; "
        "Globo also draws its users and candidates per seed)",
    )
    p.add_argument("--k", type=int, default=5, help="replay: list length with revealed feedback")
    p.add_argument("--user-fraction", type=float, default=0.02, help="globo: users replayed")
    p.add_argument("--candidates", type=int, default=50, help="globo: candidates per request")
    p.add_argument(
        "--negatives",
        choices=("popular", "uniform"),
        default="popular",
        help="globo: draw the other candidates by their clicks in the hour, or uniformly",
    )
    p.add_argument("--major-updates", type=int, default=20, help="gradient steps per major update")
    p.set_defaults(handler=cmd_online)


def plot_histories(
    series: dict[str, dict[str, list[float]]],
    path: Path,
    title: str = "",
    smooth: int = 10,
    metrics: tuple[str, ...] | None = None,
) -> None:
    """One panel per metric, one curve per policy (moving average over ``smooth`` steps)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from recforge.drn.loop import METRICS

    metrics = metrics or METRICS
    cols = 2
    rows = (len(metrics) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(11, 3.5 * rows), sharex=True, squeeze=False)
    for ax in axes.ravel()[len(metrics) :]:
        ax.set_visible(False)
    for ax, metric in zip(axes.ravel(), metrics, strict=False):
        for name, s in series.items():
            y = np.asarray(s[metric], dtype=np.float64)
            k = max(1, min(smooth, y.size))
            seen = ~np.isnan(y)  # a moving average over the rounds that have a value
            total = np.convolve(np.where(seen, y, 0.0), np.ones(k), "valid")
            with np.errstate(invalid="ignore", divide="ignore"):
                avg = total / np.convolve(seen, np.ones(k), "valid")
            ax.plot(np.asarray(s["step"])[k - 1 :], avg, label=name)
        ax.set_title(metric)
        ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("step (hours)")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


def cmd_online(args: argparse.Namespace) -> int:
    import torch

    if args.replay:
        if args.recalibrate:
            raise ValueError("--recalibrate fits the simulator; it does not apply to --replay")
        torch.set_num_threads(1)
        return cmd_replay(args)
    if args.recalibrate and not (args.mind or args.globo):
        raise ValueError("--recalibrate needs --mind and/or --globo (the logs to fit)")
    if args.return_elasticity < 0:
        raise ValueError(f"--return-elasticity must be >= 0, got {args.return_elasticity}")

    from recforge.drn.agent import AgentConfig
    from recforge.drn.loop import run_simulation
    from recforge.drn.simulator import SimConfig

    torch.set_num_threads(1)  # tiny networks: threads only add overhead
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    shift = args.log_steps + args.shift_step if args.shift_step >= 0 else -1
    sim = SimConfig(n_users=args.users, n_topics=args.topics, shift_step=shift, seed=args.seed)
    calibration = recal = check = None
    if args.recalibrate:
        from recforge.drn.recalibration import check_recalibration, recalibrate

        recal, logged = recalibrate(args.mind, args.globo, sim, kappa=args.return_elasticity)
        sim = recal.apply(sim)
        check = check_recalibration(recal, logged, sim)
    elif args.globo or args.mind:
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
        "recalibration": None if recal is None else {**recal.to_dict(), "check": check},
        "steps": args.steps,
        "log_steps": args.log_steps,
        "summary": {name: h.summary() for name, h in hists.items()},
        "series": series,
    }
    with atomic_folder(out) as tmp:
        (tmp / "metrics.json").write_text(json.dumps(report, indent=1))
        plot_histories(series, tmp / "metrics.png", f"recforge online (seed {args.seed})")
        if recal is not None:
            from recforge.drn.recalibration import calibration_markdown, plot_recalibration

            (tmp / "calibration.md").write_text(calibration_markdown(recal, check))
            plot_recalibration(check, tmp / "calibration.png")
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


def _mean_series(runs: list[dict[str, object]], metrics: tuple[str, ...]) -> dict[str, list]:
    """Per-round means over seeds, aligned on the hour (seeds may miss quiet hours)."""
    hours = sorted({h for r in runs for h in r["step"]})  # type: ignore[attr-defined]
    where = {h: i for i, h in enumerate(hours)}
    out: dict[str, list] = {"step": hours}
    for m in metrics:
        acc = np.full((len(runs), len(hours)), np.nan)
        for j, r in enumerate(runs):
            acc[j, [where[h] for h in r["step"]]] = r[m]  # type: ignore[index,attr-defined]
        with np.errstate(all="ignore"):
            out[m] = np.nanmean(acc, axis=0).tolist()
    return out


def plot_calibration(calibration: list[dict[str, object]], path: Path) -> None:
    """Predicted vs observed return probability, one curve per check day."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5))
    top = 0.0
    for c in calibration:
        pred, obs = np.asarray(c["predicted"]), np.asarray(c["observed"])
        top = max(top, pred.max(), obs.max())
        ax.plot(pred, obs, "o-", ms=3, label=f"day {int(c['cut']) // 24 + 1}")  # type: ignore[call-overload]
    ax.plot([0, top], [0, top], "k--", lw=1, label="perfect")
    ax.set_xlabel(f"predicted P(return within {calibration[0]['window']:.0f} h)")
    ax.set_ylabel("observed fraction returning")
    ax.set_title("Globo: gamma-frailty return model (fit on training days)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


def cmd_replay(args: argparse.Namespace) -> int:
    """``recforge online --replay``: the policy set over a logged dataset, once per seed."""
    from recforge.drn.agent import AgentConfig
    from recforge.drn.globo import load_globo
    from recforge.drn.logged import load_mind
    from recforge.drn.offline import REPLAY_METRICS, periods_present, replay

    if not args.path:
        raise ValueError("--replay needs --path (the log file)")
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    agent = AgentConfig(
        minor_every=args.minor_every,
        major_every=args.major_every,
        major_updates=args.major_updates,
        alpha=args.alpha,
        beta=args.beta,
        gamma=args.gamma,
        epsilon=args.epsilon,
    )
    data = None
    summary: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    series: dict[str, dict[str, dict[str, object]]] = {}
    info: dict[str, object] = {}
    for seed in seeds:
        if args.replay == "mind":
            data = data or load_mind(args.path, k=args.k)  # one fixed log for every seed
        else:
            data = load_globo(
                args.path,
                k=args.k,
                candidates=args.candidates,
                user_fraction=args.user_fraction,
                seed=seed,
            )
        info[str(seed)] = {"skipped": data.skipped, **data.info}
        hists = replay(policies, data, args.k, seed, agent)
        summary[str(seed)] = {
            p: {name: h.summary(p) for name, h in hists.items()} for p in periods_present(data)
        }
        series[str(seed)] = {name: h.to_dict() for name, h in hists.items()}
    assert data is not None
    report = {
        "replay": args.replay,
        "path": str(args.path),
        "k": args.k,
        "seeds": seeds,
        "agent": dataclasses.asdict(agent),
        "features": {"state": data.state_names, "action": data.action_names},
        "data": info,
        "summary": summary,
        "series": series,
    }
    metrics = tuple(m for m in REPLAY_METRICS if not (m == "activeness" and args.replay == "mind"))
    out = Path(args.output)
    with atomic_folder(out) as tmp:
        (tmp / "metrics.json").write_text(json.dumps(report, indent=1))
        mean = {}
        for name in policies:
            runs = []
            for s in seeds:
                r = series[str(s)][name]
                keep = [i for i, p in enumerate(r["period"]) if p == "evaluation"]
                runs.append({m: [r[m][i] for i in keep] for m in ("step", *metrics)})
            mean[name] = _mean_series(runs, metrics)
        plot_histories(
            mean,
            tmp / "metrics.png",
            f"recforge online --replay {args.replay} "
            f"(evaluation hours, mean of {len(seeds)} seeds)",
            smooth=12,
            metrics=metrics,
        )
        if args.replay == "globo":
            plot_calibration(data.info["calibration"], tmp / "calibration.png")  # type: ignore[arg-type]
    width = max(len(n) for n in policies)
    print(
        f"{'policy':<{width}}  " + "  ".join(f"{m:>10}" for m in metrics) + "  (evaluation, "
        f"mean of {len(seeds)} seeds)"
    )
    for name in policies:
        vals = [np.mean([summary[str(s)]["evaluation"][name][m] for s in seeds]) for m in metrics]
        print(f"{name:<{width}}  " + "  ".join(f"{v:>10.4f}" for v in vals))
    print(f"wrote {out / 'metrics.json'} and {out / 'metrics.png'}")
    return 0
