"""Batches by slicing contiguous arrays through a seeded permutation (no per-row Python)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from recforge.features import Batch, EncodedData


class BatchLoader:
    """Iterate over :class:`EncodedData` in mini-batches.

    In-memory arrays are wrapped as tensors once and gathered with ``index_select``;
    memory-mapped arrays are gathered with numpy fancy indexing. Each epoch's order is
    ``permutation(seed, epoch)``, so a resumed run sees exactly the batches an uninterrupted one
    would.

    Both paths yield the same batches, rows in the same order (the permutation's), so a run
    reading the memory-mapped cache and one holding its data in memory train bit-identically.
    Indices are not sorted within a batch (measured, 4096-row batches of 2M-4M rows x 40 int32
    columns): sorting costs about 80 us a batch and made memory-mapped gathers no faster, with
    the file's pages cached (640 us unsorted, 710 us sorted, the sort included) or evicted with
    ``posix_fadvise`` (full permutation about 4 ms a batch either way; block shuffle with
    64-batch windows about 1.15 ms either way). A page fault reads around the page it hits
    whatever the order of the faults, and the block shuffle keeps a window's reads local.

    With ``world_size > 1`` (distributed data parallel) every rank draws the same permutation
    and yields its contiguous slice ``[b*rank//N, b*(rank+1)//N)`` of each global batch of ``b``
    rows, so ``N`` ranks together see exactly the single-process global batches. A final global
    batch with fewer rows than ranks is skipped (a rank would get no rows).

    Args:
        data: Encoded rows.
        batch_size: Rows per batch.
        shuffle: Permute rows each epoch.
        seed: Base seed of the permutation.
        drop_last: Drop a final incomplete batch.
        rank: This process's rank.
        world_size: Number of ranks sharing each global batch.
        shuffle_window: 0 for a full permutation; otherwise rows of the block shuffle's
            windows (blocks of a quarter window, in random order, rows shuffled per window).
    """

    def __init__(
        self,
        data: EncodedData,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        shuffle_window: int = 0,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if shuffle_window < 0:
            raise ValueError("shuffle_window must be >= 0")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        self.data = data
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size
        self.shuffle_window = shuffle_window
        self.epoch = 0
        arrays = data.arrays()
        self._mmap = any(isinstance(a, np.memmap) for a in arrays.values())
        self._tensors = (
            None
            if self._mmap
            else {k: torch.from_numpy(_writable(np.asarray(v))) for k, v in arrays.items()}
        )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.data)
        full, rest = divmod(n, self.batch_size)
        keep_rest = rest > 0 and not self.drop_last and rest >= self.world_size
        return full + int(keep_rest)

    def global_rows(self, step: int) -> int:
        """Rows of global batch ``step`` (all ranks together)."""
        return min(self.batch_size, len(self.data) - step * self.batch_size)

    def _order(self) -> np.ndarray | None:
        if not self.shuffle:
            return None
        rng = np.random.default_rng([self.seed, self.epoch])
        if self.shuffle_window:
            return block_permutation(len(self.data), self.shuffle_window, rng)
        return rng.permutation(len(self.data))

    def _gather(self, index: np.ndarray | slice) -> dict[str, torch.Tensor]:
        if self._tensors is not None:
            if isinstance(index, slice):
                return {k: v[index] for k, v in self._tensors.items()}
            idx = torch.from_numpy(index)
            return {k: v.index_select(0, idx) for k, v in self._tensors.items()}
        return {
            k: torch.from_numpy(_writable(np.ascontiguousarray(v[index])))
            for k, v in self.data.arrays().items()
        }

    def __iter__(self) -> Iterator[Batch]:
        order = self._order()
        n = len(self.data)
        for step in range(len(self)):
            start = step * self.batch_size
            end = min(start + self.batch_size, n)
            index = slice(start, end) if order is None else order[start:end]
            if self.world_size > 1:
                # a rank's rows are a contiguous slice of the global batch, in its order
                lo = (end - start) * self.rank // self.world_size
                hi = (end - start) * (self.rank + 1) // self.world_size
                index = slice(start + lo, start + hi) if order is None else index[lo:hi]
            yield to_batch(self._gather(index))


def block_permutation(n: int, window: int, rng: np.random.Generator) -> np.ndarray:
    """A permutation of ``range(n)`` with locality, for data read from disk.

    Rows are cut into contiguous blocks of ``max(1, window // 4)`` rows; the blocks are put in
    random order; the sequence is then cut into windows of ``window`` rows and the rows of each
    window are shuffled. Every row appears once; a window (hence a batch no larger than it)
    draws on at most five blocks, i.e. about ``1.25 * window`` consecutive-row spans of the
    files. Vectorised: one block permutation plus one sort.
    """
    block = max(1, window // 4)
    starts = rng.permutation(np.arange(0, n, block, dtype=np.int64))
    lengths = np.minimum(block, n - starts)
    # rows of the blocks in their new order: start of each row's block + offset inside it
    first = np.cumsum(lengths) - lengths
    order = np.repeat(starts - first, lengths) + np.arange(n, dtype=np.int64)
    keys = rng.random(n)
    windows = np.arange(n, dtype=np.int64) // window
    return order[np.lexsort((keys, windows))]


def _writable(a: np.ndarray) -> np.ndarray:
    # torch wants writable memory; arrays handed over zero-copy by pyarrow are read-only
    return a if a.flags.writeable else a.copy()


def to_batch(arrays: dict[str, torch.Tensor]) -> Batch:
    """A Batch from gathered arrays (names as in :meth:`EncodedData.arrays`)."""
    return Batch(
        sparse=arrays["sparse"].long(),
        dense=arrays["dense"].float(),
        sequences={k[4:]: v.long() for k, v in arrays.items() if k.startswith("seq.")},
        lengths={k[4:]: v.long() for k, v in arrays.items() if k.startswith("len.")},
        label=arrays["label"].float(),
    )
