"""A saved model bundle: schema, fitted preprocessor, resolved config and weights.

Layout of a bundle folder::

    meta.json          format, model name, model params, task, recforge version
    config.yaml        the resolved run config
    preprocessor/      preprocessor.json (with the fitted schema) and vocabularies.arrow
    model.pt           the model's state dict

A bundle is written into a temporary folder and renamed into place. :func:`load_bundle` rebuilds
the model through the registry in a fresh process and refuses a bundle whose files are missing,
corrupt or do not match the model they declare.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from recforge.config import RunConfig, save_run_config
from recforge.data.encode.preprocess import Preprocessor
from recforge.data.loader import BatchLoader
from recforge.features import EncodedData
from recforge.io import atomic_folder
from recforge.models import registry
from recforge.models.base import RecModel

FORMAT = "recforge-bundle-1"


@dataclass
class Bundle:
    """A loaded bundle: call :meth:`predict_table` or :meth:`predict_records` on raw rows."""

    model_name: str
    model: RecModel
    preprocessor: Preprocessor
    meta: dict[str, Any]
    folder: Path | None = None

    @property
    def task(self) -> str:
        return str(self.meta.get("task", self.preprocessor.schema.task))

    def training_metrics(self) -> dict[str, Any]:
        """What training recorded about this model, for serving metadata.

        ``meta.json``'s ``metrics`` entry when the bundle carries one; otherwise the
        ``metrics.json`` (test metrics, best epoch) and ``history.json`` (per-epoch metrics)
        that ``recforge train`` writes beside the bundle folder. Empty when there are none.
        """
        if isinstance(self.meta.get("metrics"), dict):
            return dict(self.meta["metrics"])
        out: dict[str, Any] = {}
        if self.folder is None:
            return out
        for key, name in (("summary", "metrics.json"), ("history", "history.json")):
            path = self.folder.parent / name
            try:
                out[key] = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
        return out

    @torch.no_grad()
    def predict_encoded(
        self, data: EncodedData, batch_size: int = 16384, logits: bool = False
    ) -> np.ndarray:
        """Scores of encoded rows: probabilities for binary/ranking (raw logits when
        ``logits``), values for regression."""
        self.model.eval()
        device = next(self.model.parameters()).device
        out = [self.model(b.to(device)).float().cpu() for b in BatchLoader(data, batch_size)]
        raw = torch.cat(out) if out else torch.zeros(0)
        return (raw if logits or self.task == "regression" else torch.sigmoid(raw)).numpy()

    def predict_table(self, table: pa.Table, batch_size: int = 16384) -> np.ndarray:
        """Encode raw rows exactly as at training time (unknown categories -> OOV) and score."""
        encoded = self.preprocessor.transform(table, with_label=False)
        return self.predict_encoded(encoded, batch_size)

    def predict_records(self, records: list[dict[str, Any]]) -> np.ndarray:
        """Score a list of raw records (dicts of column -> value)."""
        return self.predict_table(pa.Table.from_pylist(records))


def save_bundle(
    folder: str | Path,
    model_name: str,
    model: RecModel,
    preprocessor: Preprocessor,
    run_config: RunConfig | None = None,
    extra_meta: dict[str, Any] | None = None,
) -> Path:
    """Write a bundle atomically; returns its folder."""
    folder = Path(folder)
    with atomic_folder(folder) as tmp:
        preprocessor.save(tmp / "preprocessor")
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        torch.save(state, tmp / "model.pt")
        if run_config is not None:
            save_run_config(run_config, tmp / "config.yaml")
        meta = {
            "format": FORMAT,
            "model": model_name,
            "params": asdict(model.cfg),
            "task": preprocessor.schema.task,
            "version": _version(),
            **(extra_meta or {}),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=list))
    return folder


def load_bundle(folder: str | Path, device: str = "cpu", mmap: bool = False) -> Bundle:
    """Load a bundle in any process; raises RuntimeError for a corrupt or mismatched one.

    Args:
        folder: The bundle folder.
        device: Where the model lives.
        mmap: Memory-map ``model.pt`` and use the mapped tensors as the model's weights (CPU
            only; ignored elsewhere): processes serving one bundle then share one copy of the
            weights in the page cache instead of each holding its own. The mapping is private
            (copy-on-write), so a process that trains the loaded model never alters the file.
    """
    folder = Path(folder)
    meta_path = folder / "meta.json"
    if not meta_path.exists():
        raise RuntimeError(f"{folder}: not a recforge bundle (no meta.json)")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise RuntimeError(f"{meta_path}: corrupt bundle metadata ({exc})") from exc
    if meta.get("format") != FORMAT:
        raise RuntimeError(f"{folder}: unsupported bundle format {meta.get('format')!r}")
    preprocessor = Preprocessor.load(folder / "preprocessor")
    try:
        model = registry.build(meta["model"], preprocessor.schema, meta.get("params", {}))
    except (KeyError, ValueError, TypeError) as exc:
        raise RuntimeError(f"{folder}: cannot rebuild model {meta.get('model')!r} ({exc})") from exc
    try:
        mmap = mmap and torch.device(device).type == "cpu"
        state = torch.load(folder / "model.pt", map_location=device, weights_only=True, mmap=mmap)
    except Exception as exc:  # torch raises several types for a damaged file
        raise RuntimeError(f"{folder / 'model.pt'}: corrupt weights ({exc})") from exc
    try:
        model.load_state_dict(state, assign=mmap)
    except RuntimeError as exc:
        raise RuntimeError(
            f"{folder}: weights do not match model {meta['model']!r}: {exc}"
        ) from exc
    model.to(device).eval()
    return Bundle(
        model_name=meta["model"], model=model, preprocessor=preprocessor, meta=meta, folder=folder
    )


def _version() -> str:
    from recforge import __version__

    return __version__
