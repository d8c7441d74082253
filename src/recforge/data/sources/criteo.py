"""Criteo Display Advertising Challenge (Kaggle 2014) catalogue entry.

Layout of the Kaggle ``train.txt`` (and of its heads and samples): tab-separated, no header,
``label, I1..I13, C1..C26``; ``I*`` are integer counts (may be empty, ``I2`` may be negative),
``C*`` are 32-bit hashes in hex (may be empty). The DeepCTR sample with a comma-separated header
``label,I1,...,C26`` is accepted as well.

The usual recipe (Wang et al., DCN, ADKDD 2017; Guo et al., DeepFM, IJCAI 2017; FuxiCTR/BARS
Criteo_x1): numerics through ``log(1 + x)`` (values clipped at 0), missing numerics filled with
0, categories seen fewer than ``min_count`` times (10 on the full data) mapped to the OOV id.
There is no labelled official test set: ``valid``/``test`` are ``None`` and the caller splits
(random 8:1:1 in BARS).
"""

from __future__ import annotations

import logging
from pathlib import Path

from recforge.data.read.readers import find_file, open_stream, read_table
from recforge.data.sources.catalogue import DatasetSpec, PreparedDataset, RemoteFile
from recforge.features import CategoricalField, NumericField, Schema

log = logging.getLogger(__name__)

NUMERIC = tuple(f"I{i}" for i in range(1, 14))
CATEGORICAL = tuple(f"C{i}" for i in range(1, 27))
COLUMNS = ("label", *NUMERIC, *CATEGORICAL)
_FILES = ["train.txt", "train_head10k.txt", "dac_sample.txt", "deepctr_criteo_sample.txt"]


def criteo_schema(
    log_transform: bool = True, min_count: int = 1, hash_buckets: int = 0, embedding_dim: int = 16
) -> Schema:
    """The Criteo schema: 13 numeric and 26 categorical fields, binary label ``label``.

    Args:
        log_transform: ``log(1 + x)`` on the numerics (else raw values).
        min_count: Categories rarer than this in training map to the OOV id.
        hash_buckets: When > 0, hash each categorical into this many buckets instead.
        embedding_dim: Default embedding dimension.
    """
    numeric = tuple(
        NumericField(name, transform="log" if log_transform else "none", fill_value=0.0)
        for name in NUMERIC
    )
    categorical = tuple(
        CategoricalField(name, min_count=min_count, hash_buckets=hash_buckets)
        for name in CATEGORICAL
    )
    return Schema(
        fields=numeric + categorical, label="label", task="binary", embedding_dim=embedding_dim
    )


def prepare(
    path: Path,
    log_transform: bool = True,
    min_count: int = 1,
    hash_buckets: int = 0,
    embedding_dim: int = 16,
) -> PreparedDataset:
    """Criteo from ``train.txt`` (or a head/sample of it), compressed or not.

    Args:
        path: The file, or a folder (or the Kaggle ``.tar.gz``) holding one of ``train.txt``,
            ``train_head10k.txt``, ``dac_sample.txt``, ``deepctr_criteo_sample.txt``.
        log_transform: See :func:`criteo_schema`.
        min_count: See :func:`criteo_schema`.
        hash_buckets: See :func:`criteo_schema`.
        embedding_dim: See :func:`criteo_schema`.

    Returns:
        Every row in ``train``: ``label`` and ``I*`` as float64 (null when empty), ``C*`` as
        strings (``""`` when empty).
    """
    path = Path(path)
    source = path if path.is_file() and not path.name.endswith((".tar.gz", ".tgz")) else None
    source = source or find_file(path, _FILES)
    if source is None:
        raise FileNotFoundError(f"{path}: no Criteo file found (looked for {', '.join(_FILES)})")
    schema = criteo_schema(log_transform, min_count, hash_buckets, embedding_dim)
    with open_stream(source) as fh:
        has_header = fh.read(6).startswith(b"label")
    if has_header:
        table = read_table(source, fmt="csv", schema=schema)
    else:
        table = read_table(source, fmt="tsv", header=False, column_names=COLUMNS, schema=schema)
    log.info("criteo %s: %d rows", source.name, table.num_rows)
    return PreparedDataset(name="criteo", schema=schema, train=table.select(list(COLUMNS)))


DATASETS = (
    DatasetSpec(
        name="criteo",
        description="Criteo Display Advertising Challenge (Kaggle 2014): 45,840,617 labelled "
        "impressions, 13 numeric + 26 categorical fields (also reads heads/samples)",
        homepage="https://ailab.criteo.com/ressources/",
        # Criteo publishes no checksum for the archive; sha256 left empty.
        files=(
            RemoteFile(
                url="https://go.criteo.net/"
                "criteo-research-kaggle-display-advertising-challenge-dataset.tar.gz",
                filename="criteo-research-kaggle-display-advertising-challenge-dataset.tar.gz",
            ),
        ),
        prepare=prepare,
        licence="Criteo Labs terms: research and non-commercial use (the 1TB logs are "
        "CC BY-NC-SA 4.0; verify before wider use); no redistribution.",
    ),
)
