"""DRN and its baselines replayed on real news logs (MIND impressions, Globo clicks).

1. **Validation** (library front door, :func:`recforge.drn.offline.replay`): DRN's DBGD explore
   coefficient ``alpha`` and the major-update period ``T2`` are chosen on the validation days
   only (mean CTR@k over seeds 0-2); the evaluation days are never looked at here.
2. **Evaluation** (CLI front door): ``recforge online --replay {mind,globo}`` with the chosen
   settings, all policies and ablations, seeds 0-4; this script reads its ``metrics.json`` and
   writes the tables (means with 95 % t-intervals over seeds, paired DRN - other differences)
   and the plots to ``benchmarks/results``.

3. **Variants** (``--variant drn-probabilistic``): the variant and DRN through the same CLI
   call with the settings chosen in step 1, on both logs; the table
   ``drn_replay_variants.md`` gives both (DRN's rows must equal the main run's) and the paired
   difference.

Usage::

    nice -n 10 python benchmarks/drn_replay.py [--seeds 0,1,2,3,4] [--skip-validation]
    nice -n 10 python benchmarks/drn_replay.py --variant drn-probabilistic
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np  # noqa: E402

from recforge.metrics import mean_ci95 as ci  # noqa: E402

RESULTS = Path(__file__).parent / "results"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
LOGS = {
    "mind": SHARED / "mind-small-behaviors-sample" / "behaviors.tsv.xz",
    "globo": SHARED / "globo-news-clicks" / "clicks.csv.xz",
}
BASELINES = ("greedy", "egreedy", "linucb", "static", "static-daily", "random")
ABLATIONS = {
    "drn-no-activeness": "no activeness term (beta = 0)",
    "drn-myopic": "no future reward (gamma = 0)",
    "greedy": "no DBGD exploration (= greedy: no minor updates either)",
    "drn-no-minor": "DBGD lists served, winner never adopted (eta = 0)",
    "drn-no-major": "no major updates after pretraining",
}
POLICIES = ("drn", *BASELINES, "drn-no-activeness", "drn-myopic", "drn-no-minor", "drn-no-major")
GRID = {"alpha": (0.05, 0.1, 0.2), "major_every": (5, 10, 20)}
TITLES = {
    "mind": "MIND impressions (5,000-impression sample of MIND-small train)",
    "globo": "Globo.com clicks (G1 portal, Oct 2017)",
}
NOTES = {
    "mind": (
        "Log: {impressions} impressions kept ({users} users, {news} news; base CTR "
        "{ctr:.4f}); skipped: {skipped}. Day 1 (Nov 9) is the pretraining log, day 2 validation, "
        "days 3-6 evaluation; rounds are hours. Each policy ranks every candidate of an "
        "impression and sees the labels of its top 5 only (bandit feedback). Estimator: the "
        "labels of every shown candidate are logged, so a top-5 list's clicks are read off "
        "directly; this assumes a click does not depend on the other items or the position "
        "(MIND's presentation order is not logged). Seeds vary only the policies' own "
        "randomness (the log is fixed). Features (no titles): news popularity and CTR before "
        "the hour (all users), freshness, candidate in the user's history; user history "
        "length, candidate count, hour. MIND has no return times in this sample: activeness "
        "is 0 and beta has no effect here."
    ),
    "globo": (
        "Log (first day {first_day}): requests are the clicks of a seeded {user_fraction:.0%} "
        "of users (per seed; {requests} requests for seed 0), {candidates} candidates each: "
        "the clicked article and articles clicked by anyone in the same or previous hour, "
        "drawn in proportion to those clicks ({negatives}); skipped: {skipped}. Days 1-7 fit "
        "the return model (a gamma-frailty exponential hazard with a weekly profile; see "
        "drn_replay_globo_calibration.png), day 7 is the pretraining log, "
        "days 8-9 validation, days 10-16 evaluation. Estimator: Li et al.'s replay restricted "
        "to logged clicks: a policy is rewarded when the clicked article is in its top 5, "
        "other candidates count as non-clicks (unknown impressions; no propensities, so no "
        "IPS/DR estimate). hit@5 is the headline (ctr@5 = hit@5 / 5). Seeds vary the users, "
        "the candidates and the policies' randomness. Activeness is DRN's score from the "
        "real sessions (s0 = 0.5, decay = the fitted mean hazard, +0.32 per return): the log "
        "does not respond to the policy, so activeness is identical for every policy and "
        "beta only changes what the agent learns."
    ),
}


def validate(name: str, seeds: list[int]) -> tuple[dict[str, float], list[dict[str, object]]]:
    """Grid over DRN's alpha and T2, scored by validation CTR@k (evaluation days unseen)."""
    import torch

    from recforge.drn.agent import AgentConfig
    from recforge.drn.globo import load_globo
    from recforge.drn.logged import load_mind
    from recforge.drn.offline import replay

    torch.set_num_threads(1)
    rows: list[dict[str, object]] = []
    scores: dict[tuple[float, int], list[float]] = {}
    mind = load_mind(LOGS["mind"]) if name == "mind" else None
    for seed in seeds:
        full = mind or load_globo(LOGS["globo"], seed=seed)
        # the evaluation days are dropped before any policy runs
        data = dataclasses.replace(
            full, rounds=[r for r in full.rounds if r.period != "evaluation"]
        )
        for alpha, every in itertools.product(GRID["alpha"], GRID["major_every"]):
            agent = AgentConfig(alpha=alpha, major_every=every, minor_every=1)
            val = replay(["drn"], data, 5, seed, agent)["drn"].summary("validation")
            scores.setdefault((alpha, every), []).append(val["ctr@k"])
    for (alpha, every), v in scores.items():
        rows.append({"alpha": alpha, "major_every": every, "validation_ctr@k": float(np.mean(v))})
    best = max(rows, key=lambda r: r["validation_ctr@k"])  # type: ignore[arg-type,return-value]
    return {"alpha": float(best["alpha"]), "major_every": int(best["major_every"])}, rows


def run_cli(
    name: str,
    seeds: list[int],
    chosen: dict[str, float],
    out: Path,
    policies: tuple[str, ...] = POLICIES,
) -> tuple[str, float]:
    cmd = [
        sys.executable,
        "-m",
        "recforge.cli",
        "online",
        "--replay",
        name,
        "--path",
        str(LOGS[name]),
        "--seeds",
        ",".join(map(str, seeds)),
        "--policies",
        ",".join(policies),
        "--minor-every",
        "1",
        "--alpha",
        str(chosen["alpha"]),
        "--major-every",
        str(chosen["major_every"]),
        "--output",
        str(out),
    ]
    start = time.time()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    shown = " ".join(cmd[1:])
    return "python " + shown.replace(sys.executable, "python"), time.time() - start


def tables(report: dict, metrics: tuple[str, ...]) -> tuple[list[str], dict[str, dict]]:
    seeds = [str(s) for s in report["seeds"]]
    summ = {s: report["summary"][s]["evaluation"] for s in seeds}
    val = {s: report["summary"][s]["validation"] for s in seeds}
    out: dict[str, dict] = {"evaluation": {}, "validation": {}, "paired": {}}
    lines = [
        "| policy | " + " | ".join(metrics) + " | validation ctr@k |",
        "|---" * (len(metrics) + 2) + "|",
    ]
    for p in ("drn", *BASELINES):
        cells = []
        for m in metrics:
            mean, half = ci([summ[s][p][m] for s in seeds])
            out["evaluation"].setdefault(p, {})[m] = [mean, half]
            cells.append(f"{mean:.4f} ± {half:.4f}")
        vmean, vhalf = ci([val[s][p]["ctr@k"] for s in seeds])
        out["validation"][p] = [vmean, vhalf]
        lines.append(f"| {p} | " + " | ".join(cells) + f" | {vmean:.4f} ± {vhalf:.4f} |")
    lines += [
        "",
        "Paired difference DRN - other on the evaluation days (mean ± 95% CI over "
        "seeds; **bold** where the interval excludes 0):",
        "",
        "| other | " + " | ".join(metrics) + " |",
        "|---" * (len(metrics) + 1) + "|",
    ]
    for p in (*BASELINES, *[a for a in ABLATIONS if a != "greedy"]):
        cells = []
        for m in metrics:
            mean, half = ci([summ[s]["drn"][m] - summ[s][p][m] for s in seeds])
            out["paired"].setdefault(p, {})[m] = [mean, half]
            txt = f"{mean:+.4f} ± {half:.4f}"
            cells.append(f"**{txt}**" if abs(mean) > half else txt)
        label = f"{p} ({ABLATIONS[p]})" if p in ABLATIONS else p
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines, out


def plot(reports: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(19, 4.2))
    panels = [
        ("mind", "ctr@k", "MIND: CTR@5 (evaluation hours)"),
        ("globo", "hit@k", "Globo: hit@5 (evaluation hours)"),
        ("globo", "activeness", "Globo: activeness of served users (log)"),
    ]
    for ax, (name, metric, title) in zip(axes, panels, strict=False):
        rep = reports[name]
        for p in ("drn", *BASELINES) if metric != "activeness" else ("drn",):
            runs = [rep["series"][s][p] for s in map(str, rep["seeds"])]
            hours = sorted(
                {
                    h
                    for r in runs
                    for h, q in zip(r["step"], r["period"], strict=True)
                    if q == "evaluation"
                }
            )
            idx = {h: i for i, h in enumerate(hours)}
            acc = np.full((len(runs), len(hours)), np.nan)
            for j, r in enumerate(runs):
                for h, q, v in zip(r["step"], r["period"], r[metric], strict=True):
                    if q == "evaluation":
                        acc[j, idx[h]] = np.nan if v is None else v
            y = np.nanmean(acc, axis=0)
            k = 12
            ok = ~np.isnan(y)
            sm = np.convolve(np.where(ok, y, 0), np.ones(k), "valid") / np.maximum(
                np.convolve(ok, np.ones(k), "valid"), 1
            )
            ax.plot(np.asarray(hours[k - 1 :]) / 24, sm, label=p)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("day")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    cal = reports["globo"]["data"][str(reports["globo"]["seeds"][0])]["calibration"]
    ax = axes[3]
    top = 0.0
    for c in cal:
        ax.plot(c["predicted"], c["observed"], "o-", ms=3, label=f"day {int(c['cut']) // 24 + 1}")
        top = max(top, max(c["predicted"]), max(c["observed"]))
    ax.plot([0, top], [0, top], "k--", lw=1)
    ax.set_title("Globo: return model, P(return in 24 h)", fontsize=10)
    ax.set_xlabel("predicted")
    ax.set_ylabel("observed")
    ax.legend(fontsize=6, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--validation-seeds", default="0,1,2")
    parser.add_argument("--runs", default="runs/drn_replay", help="CLI output folders")
    parser.add_argument(
        "--skip-validation",
        action="store_true",
        help="reuse the settings chosen in results/drn_replay.json",
    )
    parser.add_argument("--only", choices=("mind", "globo"), help="one log only")
    parser.add_argument("--variant", help="run DRN and this DRN variant only (step 3)")
    args = parser.parse_args()
    if args.variant:
        return variant(args.variant, [int(s) for s in args.seeds.split(",")], Path(args.runs))
    seeds = [int(s) for s in args.seeds.split(",")]
    vseeds = [int(s) for s in args.validation_seeds.split(",")]
    saved = RESULTS / "drn_replay.json"
    previous = json.loads(saved.read_text()) if saved.exists() else {}
    names = [args.only] if args.only else ["mind", "globo"]
    results = dict(previous)
    reports = {}
    for name in names:
        t0 = time.time()
        if args.skip_validation and name in previous:
            chosen, grid = previous[name]["chosen"], previous[name]["grid"]
        else:
            chosen, grid = validate(name, vseeds)
        t_val = time.time() - t0
        out = Path(args.runs) / name
        command, t_run = run_cli(name, seeds, chosen, out)
        report = json.loads((out / "metrics.json").read_text())
        reports[name] = report
        metrics = ("ctr@k", "hit@k", "ndcg@k", "auc")
        lines, figures = tables(report, metrics)
        data = report["data"][str(seeds[0])]
        results[name] = {
            "chosen": chosen,
            "grid": grid,
            "command": command,
            "seeds": seeds,
            "seconds": {"validation": t_val, "evaluation": t_run},
            "data": {k: v for k, v in data.items() if k != "calibration"},
            **figures,
        }
        if name == "globo":
            results[name]["calibration"] = data["calibration"]
        shutil.copy(out / "metrics.png", RESULTS / f"drn_replay_{name}.png")
        if name == "globo":
            shutil.copy(out / "calibration.png", RESULTS / "drn_replay_globo_calibration.png")
        head = [
            f"# DRN replayed on {TITLES[name]}",
            "",
            f"Command: `nice -n 10 python benchmarks/drn_replay.py --only {name}` "
            f"({t_val:.0f} s validation grid, {t_run:.0f} s evaluation on 2 shared CPU "
            "cores); the evaluation itself is",
            "",
            f"    {command}",
            "",
            f"Settings chosen on the validation days only (grid {GRID}, mean validation "
            f"CTR@5 of DRN over seeds {vseeds}): alpha = {chosen['alpha']}, T2 = "
            f"{chosen['major_every']} rounds; T1 = 1 round (a minor update every hour); the "
            "other agent settings are recforge's defaults (gamma 0.4, beta 0.05, 20 "
            "gradient steps per major update, replay memory 4,000 requests).",
            "",
            NOTES[name].format(**data),
            "",
            f"Evaluation days, mean ± 95% t-interval over seeds {seeds}:",
            "",
        ]
        body = head + lines
        (RESULTS / f"drn_replay_{name}.md").write_text("\n".join(body) + "\n")
        print(f"{name}: chosen {chosen} ({t_val:.0f} s validation, {t_run:.0f} s evaluation)")
        print("\n".join(lines))
    saved.write_text(json.dumps(results, indent=1))
    for name in ("mind", "globo"):
        if name not in reports and (Path(args.runs) / name / "metrics.json").exists():
            reports[name] = json.loads((Path(args.runs) / name / "metrics.json").read_text())
    if len(reports) == 2:
        plot(reports, RESULTS / "drn_replay.png")
        ablation_table(reports, RESULTS / "drn_replay_ablation.md")
    return 0


def variant(name: str, seeds: list[int], runs: Path) -> int:
    """DRN and one variant on both logs with the saved settings; paired differences."""
    saved = json.loads((RESULTS / "drn_replay.json").read_text())
    cols = {"mind": ("ctr@k", "ndcg@k", "auc"), "globo": ("hit@k", "ndcg@k", "auc")}
    lines = [
        f"# DRN variant on real logs: {name}",
        "",
        f"Command: `nice -n 10 python benchmarks/drn_replay.py --variant {name}`; the settings "
        "are those chosen on the validation days for DRN (drn_replay.json); evaluation days, "
        f"seeds {seeds}, mean ± 95% t-interval; **bold** where the paired interval excludes 0. "
        "The DRN row is rerun in the same call and must equal drn_replay_{mind,globo}.md.",
        "",
    ]
    out: dict[str, object] = {}
    for log in ("mind", "globo"):
        chosen = saved[log]["chosen"]
        command, secs = run_cli(log, seeds, chosen, runs / f"{log}-{name}", ("drn", name))
        rep = json.loads((runs / f"{log}-{name}" / "metrics.json").read_text())
        ev = [rep["summary"][str(s)]["evaluation"] for s in seeds]
        lines += [f"## {TITLES[log]}", "", f"    {command}  ({secs:.0f} s)", "",
                  "| policy | " + " | ".join(cols[log]) + " |", "|---" * 4 + "|"]  # fmt: skip
        rows: dict[str, object] = {}
        for p in ("drn", name):
            cells = [ci([e[p][m] for e in ev]) for m in cols[log]]
            rows[p] = cells
            lines.append(f"| {p} | " + " | ".join(f"{a:.4f} ± {b:.4f}" for a, b in cells) + " |")
        diff = [ci([e["drn"][m] - e[name][m] for e in ev]) for m in cols[log]]
        txt = [f"{a:+.4f} ± {b:.4f}" for a, b in diff]
        txt = [f"**{t}**" if abs(a) > b else t for t, (a, b) in zip(txt, diff, strict=True)]
        lines += [f"| DRN - {name} | " + " | ".join(txt) + " |", ""]
        reference = saved[log]["evaluation"]["drn"]
        same = all(abs(reference[m][0] - rows["drn"][i][0]) < 1e-9  # type: ignore[index]
                   for i, m in enumerate(cols[log]))  # fmt: skip
        lines.append(f"DRN row equal to the main run's: {'yes' if same else 'NO'}.")
        lines.append("")
        out[log] = {"command": command, "seconds": secs, "rows": rows, "paired": diff}
    (RESULTS / "drn_replay_variants.md").write_text("\n".join(lines))
    (RESULTS / "drn_replay_variants.json").write_text(json.dumps(out, indent=1))
    print("\n".join(lines))
    return 0


def ablation_table(reports: dict[str, dict], path: Path) -> None:
    """DRN minus each ablation on both logs (paired over seeds)."""
    lines = [
        "# DRN ablations on real logs (evaluation days, paired over seeds)",
        "",
        "Command: `nice -n 10 python benchmarks/drn_replay.py` (both logs; see "
        "drn_replay_mind.md and drn_replay_globo.md for the exact CLI calls and "
        "assumptions). Each cell: DRN - ablation, mean ± 95% t-interval; **bold** where "
        "the interval excludes 0 (positive = the ablated piece helps).",
        "",
        "| ablation | MIND ctr@5 | MIND nDCG@5 | MIND AUC | Globo hit@5 | Globo nDCG@5 "
        "| Globo AUC |",
        "|---|---|---|---|---|---|---|",
    ]
    cols = [
        ("mind", "ctr@k"),
        ("mind", "ndcg@k"),
        ("mind", "auc"),
        ("globo", "hit@k"),
        ("globo", "ndcg@k"),
        ("globo", "auc"),
    ]
    for p, label in ABLATIONS.items():
        cells = []
        for name, m in cols:
            rep = reports[name]
            ev = [rep["summary"][str(s)]["evaluation"] for s in rep["seeds"]]
            mean, half = ci([e["drn"][m] - e[p][m] for e in ev])
            txt = f"{mean:+.4f} ± {half:.4f}"
            cells.append(f"**{txt}**" if abs(mean) > half else txt)
        lines.append(f"| {p}: {label} | " + " | ".join(cells) + " |")
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
