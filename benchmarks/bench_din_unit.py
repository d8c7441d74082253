"""DIN's activation unit: the factored first layer against the concatenated input, side by side.

The unit scores every real behaviour from ``[k, q, k-q, k*q]``. recforge computes the first
linear layer as ``(W_k + W_d) k + W_p (k*q) + ((W_q - W_d) q + b)``: the candidate's term once
per sample, a ``(R, 2D)`` input instead of ``(R, 4D)``. Both forms run in one process,
alternating, on the same inputs (forward + backward of a training step, and forward alone).

    python benchmarks/bench_din_unit.py --batch 4096 --history 50 --dim 32 --repeats 30
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from recforge.layers.din import ActivationUnit
from recforge.layers.embedding import length_mask
from recforge.layers.mlp import Tower


def concatenated(unit: ActivationUnit, keys, query, lengths):  # noqa: ANN001, ANN201
    """The unit as it was: build ``(R, 4D)`` and run the whole MLP."""
    B, L, _ = keys.shape
    mask = length_mask(lengths, L)
    rows = torch.arange(B)[:, None].expand(B, L)[mask]
    real = ActivationUnit.features(keys[mask][:, None], query[rows])[:, 0]
    return keys.new_zeros(B, L).masked_scatter(mask, unit.mlp(real).squeeze(-1))


def _time(fn, train: bool) -> float:  # noqa: ANN001
    start = time.perf_counter()
    if train:
        fn().square().sum().backward()
    else:
        with torch.no_grad():
            fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--history", type=int, default=50)
    parser.add_argument("--dim", type=int, default=32, help="behaviour width (all pairs)")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    unit = ActivationUnit(args.dim, Tower((36,), "dice")).train()
    keys = torch.randn(args.batch, args.history, args.dim, requires_grad=True)
    query = torch.randn(args.batch, args.dim, requires_grad=True)
    lengths = torch.randint(1, args.history + 1, (args.batch,))
    forms = {
        "concatenated [k,q,k-q,k*q]": lambda: concatenated(unit, keys, query, lengths),
        "factored (recforge)": lambda: unit(keys, query, lengths),
    }
    print(
        f"DIN activation unit, batch {args.batch}, history <= {args.history} "
        f"({int(lengths.sum())} real behaviours), width {args.dim}, {args.threads} threads, "
        f"median of {args.repeats}"
    )
    print("| form | train step ms | forward ms |\n|---|---|---|")
    times: dict[str, dict[bool, list[float]]] = {k: {True: [], False: []} for k in forms}
    for _ in range(args.repeats):
        for train in (True, False):
            for name, fn in forms.items():
                times[name][train].append(_time(fn, train))
    for name in forms:
        train_ms = 1e3 * statistics.median(times[name][True])
        fwd_ms = 1e3 * statistics.median(times[name][False])
        print(f"| {name} | {train_ms:.1f} | {fwd_ms:.1f} |")


if __name__ == "__main__":
    main()
