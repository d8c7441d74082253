"""From a :class:`DataConfig` to encoded train/valid/test arrays, cached on disk.

The cache key is computed *before* any raw data is read: the dataset name or file paths with
their sizes and modification times, the options, the split settings and the package version.
A second run with the same key memory-maps the saved arrays and the fitted preprocessor and
skips reading and preprocessing entirely. Cache folders are written to a temporary name and
renamed, so a failed run leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa

from recforge.config import DataConfig
from recforge.data import datasets
from recforge.data.preprocess import Preprocessor
from recforge.data.readers import read_table
from recforge.data.split import split_table
from recforge.data.store import EncodedData, load_encoded, save_encoded
from recforge.features import Schema
from recforge.io import cache_dir

log = logging.getLogger(__name__)
_SPLITS = ("train", "valid", "test")


@dataclass
class EncodedRun:
    """The fitted preprocessor and the encoded splits of one data configuration."""

    preprocessor: Preprocessor
    train: EncodedData
    valid: EncodedData
    test: EncodedData
    cache_path: Path | None = None
    from_cache: bool = False

    @property
    def schema(self) -> Schema:
        return self.preprocessor.schema


def _fingerprint_path(path: str | None) -> list[list[object]]:
    if path is None:
        return []
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or folder")
    files = [p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file())
    return [[str(q.resolve()), q.stat().st_size, q.stat().st_mtime_ns] for q in files]


def cache_key(cfg: DataConfig, seed: int) -> str:
    """Digest of everything that determines the encoded arrays."""
    from recforge import __version__

    parts = {
        "version": __version__,
        "cfg": {k: v for k, v in asdict(cfg).items() if k != "cache_dir"},
        "seed": seed,
        "files": [_fingerprint_path(p) for p in (cfg.path, cfg.train, cfg.valid, cfg.test)],
        "schema": Path(cfg.schema).read_text() if cfg.schema else None,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def load_raw(cfg: DataConfig) -> datasets.PreparedDataset:
    """Raw tables and schema from the catalogue or from files."""
    if cfg.dataset == "files":
        if not cfg.train or not cfg.schema:
            raise ValueError("dataset 'files' needs data.train and data.schema (a schema JSON)")
        schema = Schema.from_json(Path(cfg.schema).read_text())

        def read(path: str | None) -> pa.Table | None:
            return None if path is None else read_table(path, schema=schema)

        return datasets.PreparedDataset(
            name=Path(cfg.train).stem,
            schema=schema,
            train=read(cfg.train),
            valid=read(cfg.valid),
            test=read(cfg.test),
        )
    return datasets.load(cfg.dataset, path=cfg.path, **cfg.options)


def split_missing(
    raw: datasets.PreparedDataset, cfg: DataConfig, seed: int
) -> tuple[pa.Table, pa.Table, pa.Table]:
    """Use the dataset's own splits; derive the missing ones from the training table."""
    train, valid, test = raw.train, raw.valid, raw.test
    if valid is not None and test is not None:
        return train, valid, test
    schema = raw.schema
    user_col = schema.field(schema.user_key).source if schema.user_key else "user"
    time_col = schema.time_column or "time"
    if test is None and valid is None:
        ratios = (1 - cfg.valid_ratio - cfg.test_ratio, cfg.valid_ratio, cfg.test_ratio)
        return split_table(
            train, cfg.split, ratios=ratios, seed=seed, time_column=time_col, user_column=user_col
        )
    # one of the two is given: split the other off the training table
    share = cfg.valid_ratio if valid is None else cfg.test_ratio
    part_a, part_b, part_c = split_table(
        train,
        cfg.split,
        ratios=(1 - share, share, 0.0) if cfg.split != "leave_last" else (0.8, 0.1, 0.1),
        seed=seed,
        time_column=time_col,
        user_column=user_col,
        n_last=1,
        n_valid_last=0,
    )
    if cfg.split == "leave_last":
        rest, held = pa.concat_tables([part_a, part_b]), part_c
    else:
        rest, held = part_a, pa.concat_tables([part_b, part_c])
    return (rest, held, test) if valid is None else (rest, valid, held)


def encode_run(cfg: DataConfig, seed: int = 0, use_cache: bool = True) -> EncodedRun:
    """Load, split, fit on train, transform all splits; reuse the on-disk cache when valid."""
    root = Path(cfg.cache_dir) if cfg.cache_dir else cache_dir() / "encoded"
    folder = root / cache_key(cfg, seed)
    if use_cache and (folder / "complete").exists():
        try:
            pre = Preprocessor.load(folder / "preprocessor")
            parts = [load_encoded(folder / name) for name in _SPLITS]
            log.info("reusing encoded data from %s", folder)
            return EncodedRun(pre, *parts, cache_path=folder, from_cache=True)
        except (OSError, RuntimeError, ValueError) as exc:
            log.warning("ignoring unreadable cache %s (%s)", folder, exc)
    raw = load_raw(cfg)
    train_t, valid_t, test_t = split_missing(raw, cfg, seed)
    pre = Preprocessor(raw.schema).fit(train_t)
    parts = [pre.transform(t) for t in (train_t, valid_t, test_t)]
    run = EncodedRun(pre, *parts)
    if use_cache:
        _write_cache(run, folder)
        run.cache_path = folder
    return run


def _write_cache(run: EncodedRun, folder: Path) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        run.preprocessor.save(tmp / "preprocessor")
        for name, data in zip(_SPLITS, (run.train, run.valid, run.test), strict=True):
            save_encoded(data, tmp / name)
        (tmp / "complete").write_text("ok")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
