"""DIEN's interest extractor: PyTorch's fused GRU on packed sequences against the step loop.

Both run in one process, alternating on the same inputs (a training step's forward and
backward, and forward alone), with the same parameters. ``MaskedGRU`` (plain ``gru`` mode)
takes whichever is faster: the fused kernel without gradients, the loop with them.

    python benchmarks/bench_dien_gru.py --batch 4096 --history 50 --dim 32 --repeats 15
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from recforge.layers.sequence import MaskedGRU


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--history", type=int, default=50)
    parser.add_argument("--dim", type=int, default=32, help="behaviour and hidden width")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    gru = MaskedGRU(args.dim, args.dim, "gru")
    x = torch.randn(args.batch, args.history, args.dim, requires_grad=True)
    lengths = torch.randint(1, args.history + 1, (args.batch,))
    forms = {
        "step loop (active rows per step)": lambda: gru._steps(x, lengths, None, None),
        "fused nn.GRU kernel on packed sequences": lambda: gru._fused(x, lengths, None),
    }
    times: dict[str, dict[bool, list[float]]] = {k: {True: [], False: []} for k in forms}
    for _ in range(args.repeats):
        for train in (True, False):
            for name, fn in forms.items():
                start = time.perf_counter()
                if train:
                    out, last = fn()
                    (out.sum() + last.sum()).backward()
                else:
                    with torch.no_grad():
                        fn()
                times[name][train].append(time.perf_counter() - start)
    print(
        f"DIEN interest extractor, batch {args.batch}, history <= {args.history} "
        f"({int(lengths.sum())} real steps), width {args.dim}, {args.threads} threads, "
        f"median of {args.repeats}"
    )
    print("| form | train step ms | forward ms |\n|---|---|---|")
    for name in forms:
        train_ms = 1e3 * statistics.median(times[name][True])
        fwd_ms = 1e3 * statistics.median(times[name][False])
        print(f"| {name} | {train_ms:.1f} | {fwd_ms:.1f} |")


if __name__ == "__main__":
    main()
