"""``recforge explain``: the attention behind one prediction of a saved DIN, DIEN or AFM model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "explain",
        help="attention weight of each behaviour (DIN), time step (DIEN) or field pair (AFM) "
        "for one prediction",
    )
    p.add_argument("bundle", help="bundle folder of a saved model")
    p.add_argument("input", help="CSV/TSV/Parquet rows in the training columns")
    p.add_argument("--row", type=int, default=0, help="row of the input to explain")
    p.add_argument("--top", type=int, default=None, help="show only the top N weights")
    p.add_argument("--png", help="write a heat strip PNG here")
    p.add_argument("--json", help="write the weights as JSON here")
    p.set_defaults(handler=cmd_explain)


def cmd_explain(args: argparse.Namespace) -> int:
    from recforge.data.read.readers import read_table
    from recforge.explain import explain_table
    from recforge.io import atomic_write_text
    from recforge.serve.bundle import load_bundle

    bundle = load_bundle(args.bundle)
    table = read_table(args.input)
    explanation = explain_table(bundle, table, args.row)
    print(explanation.table(args.top))
    if args.png:
        print(f"heat strip: {explanation.save_heat_strip(args.png)}")
    if args.json:
        payload = {
            "model": explanation.model,
            "kind": explanation.kind,
            "score": explanation.score,
            "weights": explanation.to_records(),
            **({"note": explanation.note} if explanation.note else {}),
        }
        atomic_write_text(Path(args.json), json.dumps(payload, indent=1))
    return 0
