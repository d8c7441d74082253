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

--negatives adds DIEN's negative behaviours, neg_hist_item_id and neg_hist_cate_id, as gen_data.py --negatives
does on the synthetic log: one negative per real behaviour (same lengths, aligned with the history), an item
drawn uniformly from the items of the exported rows (targets and histories) with that item's own category,
from a separate random stream (np.random.default_rng([--neg-seed, 1]), drawn in file order), so the other
columns are byte-identical with or without the flag.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
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


def item_categories(tables):
    """The items of the (encoded) tables, targets and histories, sorted, and each one's category.  An item
    seen with several categories keeps its most frequent one (ties: the smallest); their count is returned."""
    items = np.concatenate([np.asarray(pc.list_flatten(t["hist_item_ids"])) for t in tables]
                           + [np.asarray(t["item_id"]) for t in tables])
    cats = np.concatenate([np.asarray(pc.list_flatten(t["hist_cats"])) for t in tables]
                          + [np.asarray(t["item_category"]) for t in tables])
    pairs, counts = np.unique(np.stack([items, cats], axis=1), axis=0, return_counts=True)
    order = np.lexsort((pairs[:, 1], -counts, pairs[:, 0]))   # per item: most frequent, then smallest category
    pairs = pairs[order]
    first = np.concatenate([[True], pairs[1:, 0] != pairs[:-1, 0]])
    return pairs[first, 0], pairs[first, 1], int(len(pairs) - first.sum())


def add_negatives(tables, seed):
    """neg_hist_item_ids / neg_hist_cats for every table, drawn in table order from one stream."""
    item_ids, item_cate, ambiguous = item_categories(tables)
    rng = np.random.default_rng([seed, 1])
    out = []
    for t in tables:
        lengths = np.asarray(pc.list_value_length(t["hist_item_ids"]))
        offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
        draw = rng.integers(0, len(item_ids), int(lengths.sum()))
        t = t.append_column("neg_hist_item_ids", pa.ListArray.from_arrays(offsets, pa.array(item_ids[draw])))
        out.append(t.append_column("neg_hist_cats", pa.ListArray.from_arrays(offsets, pa.array(item_cate[draw]))))
    return out, {"neg_seed": seed, "neg_items": int(len(item_ids)), "items_with_several_categories": ambiguous}


def to_harness(t):
    def joined(col):
        return pc.binary_join(pc.cast(t[col], pa.list_(pa.string())), "^")
    if pc.min(pc.list_value_length(t["hist_item_ids"])).as_py() < 1:
        raise SystemExit("empty histories: the harness's pad_seq_strings needs at least one id per row")
    cols = {
        "label": pc.cast(t["label"], pa.int8()), "user_id": t["user_id"], "item_id": t["item_id"],
        "cate_id": t["item_category"], "hist_item_id": joined("hist_item_ids"), "hist_cate_id": joined("hist_cats"),
    }
    if "neg_hist_item_ids" in t.column_names:
        cols.update(neg_hist_item_id=joined("neg_hist_item_ids"), neg_hist_cate_id=joined("neg_hist_cats"))
    return pa.table(cols)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=sorted(DATASETS), default="beauty")
    ap.add_argument("--path", default=None, help="raw data folder (default: the shared copy)")
    ap.add_argument("--max-len", type=int, default=50, help="history length given to recforge's loader")
    ap.add_argument("--out", required=True)
    ap.add_argument("--negatives", action="store_true", help="also write neg_hist_item_id/neg_hist_cate_id (DIEN's "
                    "auxiliary-loss negatives: one uniform item per behaviour, with its own category)")
    ap.add_argument("--neg-seed", type=int, default=2024, help="seed of the negatives' own random stream")
    args = ap.parse_args()
    t0 = time.time()
    default_path, module, fn = DATASETS[args.dataset]
    import importlib
    prepare = getattr(importlib.import_module(module), fn)
    ds = prepare(Path(args.path or default_path), max_len=args.max_len)
    codes = int_codes([ds.train, ds.test])
    train, test = encode(ds.train, codes), encode(ds.test, codes)
    neg_meta = {"negatives": False}
    if args.negatives:
        (train, test), neg_meta = add_negatives([train, test], args.neg_seed)
        neg_meta["negatives"] = True
    train, test = to_harness(train), to_harness(test)
    table = pa.concat_tables([train, test])
    meta = {"kind": f"recforge_{args.dataset}_din", "loader": f"{module}.{fn}", "max_len": args.max_len,
            "rows": table.num_rows, "train_rows": train.num_rows, "test_rows": test.num_rows,
            "dropped_valid_rows": ds.valid.num_rows,
            "train_ctr": float(pc.mean(train["label"]).as_py()), "test_ctr": float(pc.mean(test["label"]).as_py()),
            "int_coded": sorted(c for c in codes if not c.startswith("hist")),
            "runner_args": f"--test-rows {test.num_rows}", **neg_meta, "gen_s": round(time.time() - t0, 2)}
    gen_data.write(table, meta, args.out)
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
