"""Frappe and MovieLens-tag: the libfm train/validation/test files of the NFM and AFM papers.

He & Chua, "Neural Factorization Machines for Sparse Predictive Analytics", SIGIR 2017, and
Xiao et al., "Attentional Factorization Machines", IJCAI 2017, split both data sets 7:2:1 into
``{name}.train.libfm``, ``{name}.validation.libfm`` and ``{name}.test.libfm``. Each line is
``label idx:1 idx:1 ...`` with one active feature per field, fields in a fixed order, label
``1`` for an observed log entry and ``-1`` for a sampled negative (two per positive). These are
the BARS ``Frappe_x1`` and ``MovielensLatest_x1`` splits (Zhu et al., "BARS-CTR", SIGIR 2022).

* ``frappe``: 288,609 rows, 10 fields (user, item, daytime, weekday, isweekend, homework, cost,
  weather, country, city), 5,382 features.
* ``movielens-tag``: 2,006,859 rows, 3 fields (user, movie, tag), 90,445 features.

The field columns hold the global libfm feature index as a string; labels map ``-1 -> 0`` for
the binary task (``task="regression"`` keeps -1/1, the papers' squared-loss setting).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recforge.data.read.readers import DataError, find_file, read_table, row_location
from recforge.data.sources.catalogue import DatasetSpec, PreparedDataset, RemoteFile
from recforge.features import CategoricalField, Schema

log = logging.getLogger(__name__)

FRAPPE_FIELDS = (
    "user", "item", "daytime", "weekday", "isweekend", "homework", "cost", "weather", "country",
    "city",
)  # fmt: skip
MOVIELENS_TAG_FIELDS = ("user", "item", "tag")
SPLITS = ("train", "validation", "test")
_NFM_URL = "https://raw.githubusercontent.com/hexiangnan/neural_factorization_machine/master/data/"


def libfm_schema(fields: tuple[str, ...], task: str = "binary", embedding_dim: int = 10) -> Schema:
    """One categorical field per libfm position; ``user``/``item`` are the user/item keys."""
    groups = {"user": "user", "item": "item"}
    return Schema(
        fields=tuple(CategoricalField(f, group=groups.get(f, "context")) for f in fields),
        label="label",
        task=task,  # type: ignore[arg-type]
        user_key="user" if "user" in fields else None,
        item_key="item" if "item" in fields else None,
        embedding_dim=embedding_dim,
    )


def read_libfm_split(path: Path, fields: tuple[str, ...], task: str = "binary") -> pa.Table:
    """Read one libfm file with exactly ``len(fields)`` one-hot features per line.

    Raises:
        DataError: A line with another number of features, a value other than 1, or a label
            outside {-1, 0, 1} for the binary task, located by file, line and column.
    """
    raw = read_table(path, fmt="libfm")
    width = len(fields)
    present = [c for c in raw.column_names if c.startswith("f")]
    short = pc.is_null(raw[f"f{width - 1}"]) if len(present) >= width else None
    if len(present) != width or (short is not None and pc.any(short).as_py()):
        counts = sum(
            pc.is_valid(raw[c]).to_numpy(zero_copy_only=False).astype(int) for c in present
        )
        row = int(np.flatnonzero(counts != width)[0])
        raise DataError(
            path, f"expected {width} features, found {int(counts[row])}",
            column_number=min(int(counts[row]), width) + 2, **row_location(raw, None, row),
        )  # fmt: skip
    if "v0" in raw.column_names:
        values = np.stack([raw[f"v{j}"].to_numpy(zero_copy_only=False) for j in range(width)], 1)
        row, col = np.argwhere(values != 1.0)[0]
        raise DataError(
            path, f"feature values must be 1 (one-hot), found {values[row, col]:g}",
            column=f"v{col}", column_number=int(col) + 2, **row_location(raw, None, int(row)),
        )  # fmt: skip
    label = raw["label"].to_numpy(zero_copy_only=False)
    if task == "binary":
        bad = np.flatnonzero((label != 1.0) & (label != -1.0) & (label != 0.0))
        if bad.size:
            row = int(bad[0])
            raise DataError(
                path, f"a label must be -1/0 or 1 for a binary task, found {label[row]:g}",
                column="label", column_number=1, **row_location(raw, None, row),
            )  # fmt: skip
        label = (label > 0).astype(np.float64)
    columns = {"label": pa.array(label)}
    columns.update({name: raw[f"f{j}"] for j, name in enumerate(fields)})
    return pa.table(columns)


def _prepare(
    name: str, prefix: str, fields: tuple[str, ...], path: Path, task: str, embedding_dim: int
) -> PreparedDataset:
    path = Path(path)
    tables = {}
    for split in SPLITS:
        names = [f"{prefix}.{split}.libfm", f"{prefix}.{split}.libfm.reconstructed"]
        found = find_file(path, names)
        if found is None:
            raise FileNotFoundError(f"{path}: no {split} file (looked for {', '.join(names)})")
        tables[split] = read_libfm_split(found, fields, task)
    features = pc.count_distinct(
        pa.chunked_array(
            [t[f].combine_chunks() for t in tables.values() for f in fields], type=pa.string()
        )
    ).as_py()
    log.info("%s: %s rows", name, {k: t.num_rows for k, t in tables.items()})
    return PreparedDataset(
        name=name,
        schema=libfm_schema(fields, task, embedding_dim),
        train=tables["train"],
        valid=tables["validation"],
        test=tables["test"],
        extras={"num_features": features},
    )


def prepare_frappe(path: Path, task: str = "binary", embedding_dim: int = 10) -> PreparedDataset:
    """Frappe's NFM split from a folder holding ``frappe.{train,validation,test}.libfm``.

    Args:
        path: Folder (files may be ``.gz``/``.xz``; a ``.reconstructed`` train file is used when
            the original is absent).
        task: ``binary`` (labels 0/1, the BARS protocol) or ``regression`` (-1/1, as in NFM).
        embedding_dim: Default embedding dimension (10 under BARS Frappe_x1).
    """
    return _prepare("frappe", "frappe", FRAPPE_FIELDS, path, task, embedding_dim)


def prepare_movielens_tag(
    path: Path, task: str = "binary", embedding_dim: int = 10
) -> PreparedDataset:
    """MovieLens-tag's NFM/AFM split from a folder holding ``ml-tag.{train,validation,test}.libfm``.

    Args:
        path: Folder (files may be compressed).
        task: ``binary`` (labels 0/1, BARS MovielensLatest_x1) or ``regression`` (-1/1).
        embedding_dim: Default embedding dimension (10 under BARS).
    """
    return _prepare("movielens-tag", "ml-tag", MOVIELENS_TAG_FIELDS, path, task, embedding_dim)


_NFM_HOME = "https://github.com/hexiangnan/neural_factorization_machine"
DATASETS = (
    DatasetSpec(
        name="frappe",
        description="Frappe app-usage context log, NFM/AFM libfm split 7:2:1 (BARS Frappe_x1): "
        "288,609 rows, 10 fields",
        homepage=_NFM_HOME,
        # validation/test sha256: the originals (identical to the copies in shared/datasets).
        # The train file's sha256 is unknown here (only a reconstruction was available).
        files=(
            RemoteFile(url=_NFM_URL + "frappe/frappe.train.libfm", filename="frappe.train.libfm"),
            RemoteFile(
                url=_NFM_URL + "frappe/frappe.validation.libfm",
                filename="frappe.validation.libfm",
                sha256="fdf4be563a7dd9b15f7a6e8b32671e90e6e7a2a2bd3af4e10bf13c5ad7e76e9e",
            ),
            RemoteFile(
                url=_NFM_URL + "frappe/frappe.test.libfm",
                filename="frappe.test.libfm",
                sha256="a2ebaef3a9af8e55f8bb0d08bc4923965e42e43760ebd7635ac2f8c5db99e097",
            ),
        ),
        prepare=prepare_frappe,
        licence="Frappe terms (Baltrunas et al., arXiv:1505.03014): research only, "
        "acknowledge, no redistribution without permission, no commercial use.",
    ),
    DatasetSpec(
        name="movielens-tag",
        description="MovieLens tag applications (ml-latest 2016), NFM/AFM libfm split 7:2:1 "
        "(BARS MovielensLatest_x1): 2,006,859 rows, 3 fields",
        homepage=_NFM_HOME,
        # No checksum known for these files (no copy could be obtained here).
        files=tuple(
            RemoteFile(url=f"{_NFM_URL}ml-tag/ml-tag.{s}.libfm", filename=f"ml-tag.{s}.libfm")
            for s in SPLITS
        ),
        prepare=prepare_movielens_tag,
        licence="GroupLens research licence (MovieLens): research use only, acknowledge, "
        "no redistribution without permission, no commercial use.",
    ),
)
