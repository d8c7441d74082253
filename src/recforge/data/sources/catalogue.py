"""The dataset catalogue: each entry knows its official source, checksums and how to prepare a
local copy into raw tables plus a declarative schema.

Entries live in per-source modules (``movielens``, ``criteo``, ``avazu``, ``libfm_sets``,
``amazon``, ``news``, ``synthetic``) that each define ``DATASETS = (DatasetSpec(...), ...)``;
``_MODULES`` lists them explicitly. Downloads are verified against sha256 and cached under
:func:`recforge.io.cache_dir`; a user without internet passes ``path=`` to a local copy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from recforge.entries import collect
from recforge.features import Schema
from recforge.io import cache_dir, sha256_file

log = logging.getLogger(__name__)


@dataclass
class PreparedDataset:
    """Raw (not yet encoded) tables and the schema that describes them.

    ``valid``/``test`` are ``None`` when the dataset has no official split; the caller then
    derives one (random, time or leave-last-out). ``extras`` carries protocol data such as the
    NCF test negatives.
    """

    name: str
    schema: Schema
    train: pa.Table
    valid: pa.Table | None = None
    test: pa.Table | None = None
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RemoteFile:
    """One downloadable file: official URL, expected sha256 (``""`` when unpublished).

    ``md5`` is checked when the publisher gives only an md5 (GroupLens ``*.zip.md5``).
    """

    url: str
    filename: str
    sha256: str = ""
    md5: str = ""

    @property
    def known_hash(self) -> str | None:
        """The checksum in pooch's ``algorithm:digest`` form; ``None`` when unpublished."""
        if self.sha256:
            return f"sha256:{self.sha256}"
        return f"md5:{self.md5}" if self.md5 else None


@dataclass(frozen=True)
class DatasetSpec:
    """A catalogue entry.

    Args:
        name: Catalogue name (``movielens-1m``).
        description: One line for ``recforge datasets``.
        homepage: Official page.
        files: Files to fetch into the cache.
        prepare: ``prepare(folder, **options) -> PreparedDataset`` from a folder (or file)
            holding the files.
        licence: Licence summary shown to the user.
    """

    name: str
    description: str
    homepage: str
    files: tuple[RemoteFile, ...]
    prepare: Callable[..., PreparedDataset]
    licence: str = ""


_MODULES: tuple[str, ...] = (
    "recforge.data.sources.synthetic",
    "recforge.data.sources.amazon",
    "recforge.data.sources.movielens",
    "recforge.data.sources.criteo",
    "recforge.data.sources.avazu",
    "recforge.data.sources.libfm_sets",
    "recforge.data.sources.news",
)

_CATALOGUE: dict[str, DatasetSpec] | None = None


def catalogue() -> dict[str, DatasetSpec]:
    """All catalogue entries by name."""
    global _CATALOGUE
    if _CATALOGUE is None:
        _CATALOGUE = collect(_MODULES, lambda module: module.DATASETS, "dataset")
    return _CATALOGUE


def get_spec(name: str) -> DatasetSpec:
    try:
        return catalogue()[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(catalogue())}") from None


def dataset_dir(name: str) -> Path:
    return cache_dir() / "datasets" / name


def fetch(name: str, force: bool = False, downloader: Callable[..., Any] | None = None) -> Path:
    """Download a dataset's files into the cache with :mod:`pooch`; returns the folder.

    Every file is fetched over https only and checked against its published sha256 (or md5);
    a file already in the cache is re-downloaded when its hash does not match. A file whose
    publisher gives no checksum is fetched once with a warning that shows its sha256 to pin.

    Args:
        name: Catalogue name.
        force: Download again even when the cached file matches.
        downloader: A pooch downloader (tests pass a local one); ``None`` uses pooch's HTTPS one.
    """
    import pooch

    spec = get_spec(name)
    folder = dataset_dir(name)
    for remote in spec.files:
        if not remote.url.startswith("https://"):
            raise ValueError(f"{remote.url}: recforge downloads over https only")
        target = folder / remote.filename
        if force and target.exists():
            target.unlink()
        if remote.known_hash is None:
            log.warning("%s: the publisher gives no checksum; it is not verified", remote.url)
        try:
            path = pooch.retrieve(
                remote.url,
                known_hash=remote.known_hash,
                fname=remote.filename,
                path=folder,
                downloader=downloader,
                progressbar=False,
            )
        except OSError as exc:  # requests' errors are OSErrors: no network, proxy, refused
            raise OSError(
                f"cannot download {remote.url} ({type(exc).__name__}); without network, copy "
                f"the dataset's files into a folder and pass it: recforge datasets prepare "
                f"{name} --path DIR"
            ) from None
        if remote.known_hash is None:
            log.warning("%s: sha256 %s", remote.filename, sha256_file(Path(path)))
    return folder


def load(name: str, path: str | Path | None = None, **options: Any) -> PreparedDataset:
    """Prepare a dataset from ``path`` (a local copy) or from the cache (fetching if needed)."""
    spec = get_spec(name)
    if path is None:
        folder = dataset_dir(name)
        if spec.files and not all((folder / f.filename).exists() for f in spec.files):
            folder = fetch(name)
        path = folder
    return spec.prepare(Path(path), **options)
