"""Avazu click-through (Kaggle 2014) catalogue entry.

Layout of the Kaggle ``train.csv`` (shipped as ``train.gz``): comma-separated with header
``id, click, hour, C1, banner_pos, site_id, site_domain, site_category, app_id, app_domain,
app_category, device_id, device_ip, device_model, device_type, device_conn_type, C14..C21``.
``hour`` is ``YYMMDDHH`` (UTC, October 2014); it is expanded into ``hour_of_day`` (00-23) and
``weekday`` (0 = Monday) categoricals, as in the FuxiCTR/BARS Avazu recipes, and kept as an
int64 ``hour`` column for time splits. ``id`` is unique per row and not used as a feature.
Kaggle requires a login, so there is nothing to fetch: pass ``path=`` to a downloaded copy.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recforge.data.read.readers import DataError, find_file, read_table, row_location
from recforge.data.sources.catalogue import DatasetSpec, PreparedDataset
from recforge.features import CategoricalField, Schema

log = logging.getLogger(__name__)

CATEGORICAL = (
    "C1", "banner_pos", "site_id", "site_domain", "site_category", "app_id", "app_domain",
    "app_category", "device_id", "device_ip", "device_model", "device_type", "device_conn_type",
    "C14", "C15", "C16", "C17", "C18", "C19", "C20", "C21",
)  # fmt: skip
COLUMNS = ("id", "click", "hour", *CATEGORICAL)
_FILES = ["train.csv", "train.gz", "train"]


def avazu_schema(min_count: int = 1, hash_buckets: int = 0, embedding_dim: int = 16) -> Schema:
    """The Avazu schema: ``hour_of_day``, ``weekday`` and the 21 categoricals; label ``click``."""
    names = ("hour_of_day", "weekday", *CATEGORICAL)
    fields = tuple(
        CategoricalField(n, min_count=min_count, hash_buckets=hash_buckets) for n in names
    )
    return Schema(
        fields=fields, label="click", task="binary", time_column="hour", embedding_dim=embedding_dim
    )


def prepare(
    path: Path, min_count: int = 1, hash_buckets: int = 0, embedding_dim: int = 16
) -> PreparedDataset:
    """Avazu from the Kaggle ``train.csv``/``train.gz`` (or any file in that layout).

    Args:
        path: The file or a folder holding it.
        min_count: Categories rarer than this in training map to the OOV id (BARS uses 2).
        hash_buckets: When > 0, hash each categorical into this many buckets instead.
        embedding_dim: Default embedding dimension.

    Returns:
        Every row in ``train`` with ``click`` (float64), ``hour`` (int64 ``YYMMDDHH``),
        ``hour_of_day``, ``weekday`` and the categoricals as strings.
    """
    path = Path(path)
    source = path if path.is_file() else find_file(path, _FILES)
    if source is None:
        raise FileNotFoundError(
            f"{path}: no Avazu train file (train.csv or train.gz); download it from "
            "https://www.kaggle.com/c/avazu-ctr-prediction/data"
        )
    schema = avazu_schema(min_count, hash_buckets, embedding_dim)
    read_schema = Schema(
        fields=(CategoricalField("hour"), *(CategoricalField(c) for c in CATEGORICAL)),
        label="click",
        task="binary",
    )
    table = read_table(source, fmt="csv", schema=read_schema)
    hour = table["hour"].cast(pa.string())  # read dictionary-encoded, like every categorical
    ok = pc.match_substring_regex(hour, r"^\d{8}$").to_numpy(zero_copy_only=False)
    bad = np.flatnonzero(~ok)
    if bad.size:
        row = int(bad[0])
        raise DataError(
            source, f"hour {hour[row].as_py()!r} is not YYMMDDHH", column="hour",
            column_number=table.column_names.index("hour") + 1,
            **row_location(table, None, row),
        )  # fmt: skip
    date = pc.strptime(pc.binary_join_element_wise("20", pc.utf8_slice_codeunits(hour, 0, 6), ""),
                       format="%Y%m%d", unit="s")  # fmt: skip
    derived = {
        "hour_of_day": pc.utf8_slice_codeunits(hour, 6, 8),
        "weekday": pc.cast(pc.day_of_week(date), pa.string()),
        "hour": pc.cast(hour, pa.int64()),
    }
    cols = {"click": table["click"], **derived, **{c: table[c] for c in CATEGORICAL}}
    out = pa.table(cols)
    log.info("avazu %s: %d rows", source.name, out.num_rows)
    return PreparedDataset(name="avazu", schema=schema, train=out)


DATASETS = (
    DatasetSpec(
        name="avazu",
        description="Avazu mobile-ad CTR (Kaggle 2014): 40,428,967 labelled impressions over "
        "10 days, 22 categorical fields plus the hour",
        homepage="https://www.kaggle.com/c/avazu-ctr-prediction",
        files=(),  # Kaggle needs a login: no direct URL, no published checksum
        prepare=prepare,
        licence="Kaggle competition rules: non-commercial research use of the competition "
        "data; no redistribution.",
    ),
)
