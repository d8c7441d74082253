"""``recforge recommend``: top-K items for users from a saved bundle of a pairwise model."""

from __future__ import annotations

import argparse
import csv
import sys

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recforge.cf.matrix import InteractionMatrix
from recforge.cf.recommend import recommend
from recforge.data.readers import read_table
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


def _encode(values: pa.Array, vocab: pa.Array) -> np.ndarray:
    """Raw values -> local ids (vocabulary position + 1; 0 for unknown)."""
    idx = pc.index_in(pc.cast(values, pa.string()), value_set=vocab)
    if isinstance(idx, pa.ChunkedArray):
        idx = idx.combine_chunks()
    return idx.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64) + 1


def cmd_recommend(args: argparse.Namespace) -> int:
    from recforge.serve.bundle import load_bundle

    bundle = load_bundle(args.bundle)
    if not registry.get(bundle.model_name).pairwise:
        raise ValueError(f"model {bundle.model_name!r} does not score (user, item) pairs")
    schema = bundle.preprocessor.schema
    user_vocab = bundle.preprocessor.vocabs[schema.user_key]
    item_vocab = bundle.preprocessor.vocabs[schema.item_key]
    users = _encode(pa.array(args.users), user_vocab)
    unknown = [u for u, i in zip(args.users, users, strict=True) if i == 0]
    if unknown:
        print(f"recforge: warning: unknown users {unknown} get the OOV profile", file=sys.stderr)
    seen = None
    if args.seen and not args.include_seen:
        table = read_table(args.seen)
        user_col = schema.field(schema.user_key).source
        item_col = schema.field(schema.item_key).source
        su = _encode(table.column(user_col), user_vocab)
        si = _encode(table.column(item_col), item_vocab)
        shape = (schema.field(schema.user_key).vocab_size, schema.field(schema.item_key).vocab_size)
        seen = InteractionMatrix.from_coo(su, si, shape=shape)
    items, scores = recommend(bundle.model, users, args.k, exclude_seen=not args.include_seen,
                              seen=seen)  # fmt: skip
    out = open(args.output, "w", newline="") if args.output else sys.stdout  # noqa: SIM115
    try:
        writer = csv.writer(out)
        writer.writerow(["user", "rank", "item", "score"])
        raw_items = item_vocab.to_numpy(zero_copy_only=False)
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
