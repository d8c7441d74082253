"""Encoded data (:class:`recforge.features.EncodedData`) saved to disk and memory-mapped back.

A saved :class:`EncodedData` is a folder of ``.npy`` files plus ``meta.json``; it is written to a
temporary sibling folder and renamed into place, so an interrupted run never leaves a partial
cache behind.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path
from typing import Any

import numpy as np

from recforge.features import EncodedData
from recforge.io import atomic_folder, replace_folder, temp_folder_for


def save_encoded(data: EncodedData, folder: Path) -> None:
    """Write ``data`` to ``folder`` atomically (temporary folder, then rename)."""
    with atomic_folder(folder) as tmp:
        names = []
        for name, arr in data.arrays().items():
            np.save(tmp / f"{name}.npy", np.ascontiguousarray(arr), allow_pickle=False)
            names.append(name)
        (tmp / "meta.json").write_text(json.dumps({"arrays": names, "rows": len(data)}))


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


_HEADER_BYTES = 128  # fixed .npy v1.0 header, rewritten with the final shape on close


def _npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    """A ``.npy`` v1.0 header of exactly ``_HEADER_BYTES`` bytes (the format's own layout)."""
    text = repr(
        {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    ).encode("latin1")
    prefix = np.lib.format.magic(1, 0)
    room = _HEADER_BYTES - len(prefix) - 2 - 1
    if len(text) > room:
        raise ValueError(f"array header too long for shape {shape}")
    body = text + b" " * (room - len(text)) + b"\n"
    return prefix + struct.pack("<H", len(body)) + body


class EncodedWriter:
    """Writes an :class:`EncodedData` chunk by chunk into a folder that :func:`load_encoded` reads.

    Each array is a ``.npy`` file written sequentially (the header holds a placeholder shape
    until :meth:`close` rewrites it with the final row count), so memory holds one chunk at a
    time and no page of the output stays mapped: writing through a memory map would leave every
    written page resident in the process. Files go to a temporary sibling folder that
    :meth:`close` renames into place; :meth:`abort` (or leaving a ``with`` block by an
    exception) deletes it, so a failure leaves no output folder.

    Args:
        folder: The final folder (replaced if it exists).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._tmp = temp_folder_for(self.folder)
        self._files: dict[str, Any] = {}
        self._specs: dict[str, tuple[np.dtype, tuple[int, ...]]] = {}
        self.rows = 0

    def append(self, data: EncodedData) -> None:
        """Append the rows of ``data`` (the first call fixes names, dtypes and widths)."""
        arrays = data.arrays()
        if not self._files:
            for name, arr in arrays.items():
                self._specs[name] = (arr.dtype, arr.shape[1:])
                fh = open(self._tmp / f"{name}.npy", "wb")  # noqa: SIM115 - closed in close()
                fh.write(_npy_header(arr.dtype, (0, *arr.shape[1:])))
                self._files[name] = fh
        elif arrays.keys() != self._files.keys():
            raise ValueError(f"arrays {sorted(arrays)} differ from {sorted(self._files)}")
        for name, arr in arrays.items():
            dtype, width = self._specs[name]
            if arr.shape[1:] != width or not np.can_cast(arr.dtype, dtype, "safe"):
                raise ValueError(
                    f"{name}: chunk {arr.dtype}{arr.shape[1:]} does not fit {dtype}{width}"
                )
            self._files[name].write(np.ascontiguousarray(arr, dtype=dtype).data)
        self.rows += len(data)

    def close(self) -> EncodedData:
        """Finish the files, rename the folder into place; returns the data memory-mapped."""
        if not self._files:
            raise ValueError(f"{self.folder}: nothing was written (append a 0-row chunk first)")
        try:
            for name, fh in self._files.items():
                dtype, width = self._specs[name]
                fh.seek(0)
                fh.write(_npy_header(dtype, (self.rows, *width)))
                fh.close()
            meta = {"arrays": list(self._files), "rows": self.rows}
            (self._tmp / "meta.json").write_text(json.dumps(meta))
            replace_folder(self._tmp, self.folder)
        except BaseException:
            self.abort()
            raise
        return load_encoded(self.folder)

    def abort(self) -> None:
        """Delete the partial output."""
        for fh in self._files.values():
            fh.close()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> EncodedWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            self.abort()
