#!/usr/bin/env python
"""Export recforge's real DIN samples (Amazon Beauty, MovieLens-100K) in the harness's DIN CSV format,
so that every runner trains on exactly recforge's training rows and tests on exactly its test rows.

Run with a python that has recforge installed (the project venv); the peers only read the CSV:

    .venv/bin/python benchmarks/peers/export_seq.py --dataset beauty --out /tmp/rf/peerseq/beauty_din.csv
    python run_<peer>.py --data /tmp/rf/peerseq/beauty_din.csv --model din --test-rows N   # N is printed

Layout: label,user_id,item_id,cate_id,hist_item_id,hist_cate_id (histories '^'-joined, most recent
last, at most --max-len ids): recforge's train rows first, then its test rows, in recforge's order.
The validation rows are dropped (the harness has no early stopping: one epoch, the same HP for all).
The split is not 90/10, so the runners take the last N rows as test with --test-rows N
(bench_common.split_point); N is printed and stored in <out>.meta.json.  Ids are recforge's
(1-based; 0 stays free for padding; string ids, as in MovieLens, are coded 1..V in sorted order,
one code table per id column shared with its history), item_category -> cate_id, hist_cats -> hist_cate_id.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_data  # noqa: E402  (its CSV writer: unquoted header + rows)

DATASETS = {
    "beauty": ("/work/shared/datasets/amazon-s3rec-sequences", "recforge.data.sources.amazon", "prepare_beauty"),
    "ml100k": ("/work/shared/datasets/movielens-100k", "recforge.data.sources.movielens", "prepare_100k_din"),
}


def int_codes(tables):
    """For string ids (MovieLens: user/item ids and genre names): one 1-based integer code per value,
    shared by a target column and its history (item_id/hist_item_ids, item_category/hist_cats);
    integer ids (Amazon Beauty) pass through.  The peers index embeddings by the id itself."""
    out = {}
    for tgt, hist in (("user_id", None), ("item_id", "hist_item_ids"), ("item_category", "hist_cats")):
        if not pa.types.is_string(tables[0].schema.field(tgt).type):
            continue
        parts = [t[tgt] for t in tables] + ([pc.list_flatten(t[hist]) for t in tables] if hist else [])
        vals = pa.chunked_array([c for p in parts for c in (p.chunks if hasattr(p, "chunks") else [p])])
        uniq = pc.unique(vals)
        out[tgt] = pc.take(uniq, pc.sort_indices(uniq))
        if hist:
            out[hist] = out[tgt]
    return out


def encode(t, codes):
    for col, vocab in codes.items():
        arr = t[col].combine_chunks()
        if pa.types.is_list(arr.type):
            flat = pc.add(pc.index_in(arr.flatten(), value_set=vocab), 1)
            arr = pa.ListArray.from_arrays(arr.offsets, pc.cast(flat, pa.int64()))
        else:
            arr = pc.cast(pc.add(pc.index_in(arr, value_set=vocab), 1), pa.int64())
        t = t.set_column(t.schema.get_field_index(col), col, arr)
    return t


def to_harness(t):
    def joined(col):
        return pc.binary_join(pc.cast(t[col], pa.list_(pa.string())), "^")
    if pc.min(pc.list_value_length(t["hist_item_ids"])).as_py() < 1:
        raise SystemExit("empty histories: the harness's pad_seq_strings needs at least one id per row")
    return pa.table({
        "label": pc.cast(t["label"], pa.int8()), "user_id": t["user_id"], "item_id": t["item_id"],
        "cate_id": t["item_category"], "hist_item_id": joined("hist_item_ids"), "hist_cate_id": joined("hist_cats"),
    })


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=sorted(DATASETS), default="beauty")
    ap.add_argument("--path", default=None, help="raw data folder (default: the shared copy)")
    ap.add_argument("--max-len", type=int, default=50, help="history length given to recforge's loader")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    t0 = time.time()
    default_path, module, fn = DATASETS[args.dataset]
    import importlib
    prepare = getattr(importlib.import_module(module), fn)
    ds = prepare(Path(args.path or default_path), max_len=args.max_len)
    codes = int_codes([ds.train, ds.test])
    train, test = to_harness(encode(ds.train, codes)), to_harness(encode(ds.test, codes))
    table = pa.concat_tables([train, test])
    meta = {"kind": f"recforge_{args.dataset}_din", "loader": f"{module}.{fn}", "max_len": args.max_len,
            "rows": table.num_rows, "train_rows": train.num_rows, "test_rows": test.num_rows,
            "dropped_valid_rows": ds.valid.num_rows,
            "train_ctr": float(pc.mean(train["label"]).as_py()), "test_ctr": float(pc.mean(test["label"]).as_py()),
            "int_coded": sorted(c for c in codes if not c.startswith("hist")),
            "runner_args": f"--test-rows {test.num_rows}", "gen_s": round(time.time() - t0, 2)}
    gen_data.write(table, meta, args.out)
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
