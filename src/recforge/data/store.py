"""Encoded data as contiguous numpy arrays, saved to disk and memory-mapped back.

A saved :class:`EncodedData` is a folder of ``.npy`` files plus ``meta.json``; it is written to a
temporary sibling folder and renamed into place, so an interrupted run never leaves a partial
cache behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class EncodedData:
    """Encoded rows ready for batching.

    Attributes:
        sparse: ``(N, Fs)`` int32 local ids.
        dense: ``(N, Fd)`` float32 numerics.
        sequences: name -> ``(N, L)`` int32 ids, left-aligned, 0-padded.
        lengths: name -> ``(N,)`` int32 true lengths.
        label: ``(N,)`` float32.
        extras: name -> ``(N,)`` arrays not fed to models (``group`` for GAUC, ``time``).
    """

    sparse: np.ndarray
    dense: np.ndarray
    label: np.ndarray
    sequences: dict[str, np.ndarray] = field(default_factory=dict)
    lengths: dict[str, np.ndarray] = field(default_factory=dict)
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.label.shape[0])

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"sparse": self.sparse, "dense": self.dense, "label": self.label}
        out.update({f"seq.{k}": v for k, v in self.sequences.items()})
        out.update({f"len.{k}": v for k, v in self.lengths.items()})
        out.update({f"extra.{k}": v for k, v in self.extras.items()})
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> EncodedData:
        def pick(prefix: str) -> dict[str, np.ndarray]:
            return {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}

        return cls(
            sparse=arrays["sparse"],
            dense=arrays["dense"],
            label=arrays["label"],
            sequences=pick("seq."),
            lengths=pick("len."),
            extras=pick("extra."),
        )

    def take(self, index: np.ndarray) -> EncodedData:
        """Rows ``index`` as a new in-memory EncodedData."""
        return EncodedData.from_arrays({k: np.asarray(v[index]) for k, v in self.arrays().items()})

    @property
    def nbytes(self) -> int:
        return sum(int(v.nbytes) for v in self.arrays().values())


def save_encoded(data: EncodedData, folder: Path) -> None:
    """Write ``data`` to ``folder`` atomically (temporary folder, then rename)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        names = []
        for name, arr in data.arrays().items():
            np.save(tmp / f"{name}.npy", np.ascontiguousarray(arr), allow_pickle=False)
            names.append(name)
        (tmp / "meta.json").write_text(json.dumps({"arrays": names, "rows": len(data)}))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_encoded(folder: Path, mmap: bool = True) -> EncodedData:
    """Load a saved EncodedData; arrays are memory-mapped read-only when ``mmap``."""
    folder = Path(folder)
    meta_path = folder / "meta.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"{folder}: not an encoded-data folder (no meta.json)")
    meta = json.loads(meta_path.read_text())
    arrays = {
        name: np.load(folder / f"{name}.npy", mmap_mode="r" if mmap else None, allow_pickle=False)
        for name in meta["arrays"]
    }
    data = EncodedData.from_arrays(arrays)
    if len(data) != meta["rows"]:
        raise RuntimeError(f"{folder}: corrupt cache ({len(data)} rows, expected {meta['rows']})")
    return data
