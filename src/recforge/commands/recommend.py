"""``recforge recommend``: top-K items for users from a saved bundle of a pairwise model."""

from __future__ import annotations

import argparse
import csv
import sys

from recforge.cf.recommend import recommend
from recforge.data.read.readers import read_table
from recforge.interactions import InteractionMatrix
from recforge.models import registry


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "recommend", help="top-K items for users with a saved pairwise model (MF, NCF, AutoRec)"
    )
    p.add_argument("bundle", help="bundle folder of a pairwise model")
    p.add_argument("--users", nargs="+", required=True, help="raw user ids")
    p.add_argument("-k", type=int, default=10, help="items per user")
    p.add_argument(
        "--seen",
        help="CSV/TSV/Parquet of training interactions (user and item columns, raw ids) whose "
        "items are excluded; AutoRec bundles carry their own",
    )
    p.add_argument("--include-seen", action="store_true", help="do not exclude seen items")
    p.add_argument("-o", "--output", help="output CSV (default: stdout)")
    p.set_defaults(handler=cmd_recommend)


def cmd_recommend(args: argparse.Namespace) -> int:
    from recforge.serve.bundle import load_bundle

    bundle = load_bundle(args.bundle)
    if not registry.get(bundle.model_name).pairwise:
        raise ValueError(f"model {bundle.model_name!r} does not score (user, item) pairs")
    schema = bundle.preprocessor.schema
    pre = bundle.preprocessor
    users = pre.encode_ids(schema.user_key, args.users)
    unknown = [u for u, i in zip(args.users, users, strict=True) if i == 0]
    if unknown:
        print(f"recforge: warning: unknown users {unknown} get the OOV profile", file=sys.stderr)
    seen = None
    if args.seen and not args.include_seen:
        table = read_table(args.seen)
        user_col = schema.field(schema.user_key).source
        item_col = schema.field(schema.item_key).source
        su = pre.encode_ids(schema.user_key, table.column(user_col))
        si = pre.encode_ids(schema.item_key, table.column(item_col))
        shape = (schema.field(schema.user_key).vocab_size, schema.field(schema.item_key).vocab_size)
        seen = InteractionMatrix.from_coo(su, si, shape=shape)
    items, scores = recommend(bundle.model, users, args.k, exclude_seen=not args.include_seen,
                              seen=seen)  # fmt: skip
    out = open(args.output, "w", newline="") if args.output else sys.stdout  # noqa: SIM115
    try:
        writer = csv.writer(out)
        writer.writerow(["user", "rank", "item", "score"])
        raw_items = pre.vocabs[schema.item_key].to_numpy(zero_copy_only=False)
        for row, user in enumerate(args.users):
            for rank in range(items.shape[1]):
                if items[row, rank] <= 0:
                    break
                item = raw_items[items[row, rank] - 1]
                writer.writerow([user, rank + 1, item, f"{scores[row, rank]:.6g}"])
    finally:
        if args.output:
            out.close()
    return 0
