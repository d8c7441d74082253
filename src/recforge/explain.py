"""Explanations of single predictions: which behaviours (or feature pairs) the model attended to.

* DIN (Zhou et al., KDD 2018): the local activation weight ``a(e_i, v_A)`` of every behaviour
  in the user's history for the candidate. Without the softmax (the paper's choice) weights
  are unnormalised and may be negative; behaviours are ranked by magnitude.
* DIEN (Zhou et al., AAAI 2019): the attention ``a_t`` of each interest-extractor state (one
  per time step) on the candidate, which drives the AUGRU.
* AFM (Xiao et al., IJCAI 2017): the attention ``a_ij`` of each pair of fields.

Any model exposing ``attention_weights(batch) -> (B, N)`` works; behaviour models expose
``behaviours`` (their sequence fields) and AFM exposes ``pair_names``. The result prints as a
table and draws as a PNG heat strip (matplotlib, Agg backend).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from recforge.data.loader import BatchLoader
from recforge.features import Batch
from recforge.models.base import RecModel

log = logging.getLogger(__name__)


@dataclass
class Explanation:
    """Attention weights behind one prediction.

    Attributes:
        model: Model name (or class name).
        kind: ``behaviour`` (one weight per history position, oldest first) or ``pair``.
        labels: What each weight refers to (a behaviour's raw ids, or ``field_i x field_j``).
        weights: ``(N,)`` weights, aligned with ``labels``.
        score: The model's probability for the row.
    """

    model: str
    kind: str
    labels: list[str]
    weights: np.ndarray
    score: float

    @property
    def note(self) -> str | None:
        """What to say instead of a table when there is nothing to rank (an empty history)."""
        if self.kind == "behaviour" and len(self.weights) == 0:
            return "no behaviours: the history is empty, so the score rests on the other features"
        return None

    def ranking(self) -> np.ndarray:
        """Indices from the most to the least attended (by magnitude)."""
        return np.argsort(-np.abs(self.weights), kind="stable")

    def table(self, top: int | None = None) -> str:
        """A plain-text table, most attended first."""
        head = "position" if self.kind == "behaviour" else "pair"
        width = max([len(head), *(len(x) for x in self.labels)]) if self.labels else len(head)
        lines = [f"{self.model}: p(click) = {self.score:.4f}"]
        if self.note:
            return "\n".join([*lines, self.note])
        lines.append(f"{'rank':>4}  {'#':>4}  {head:<{width}}  weight")
        for rank, i in enumerate(self.ranking()[:top], start=1):
            lines.append(f"{rank:>4}  {i:>4}  {self.labels[i]:<{width}}  {self.weights[i]:+.4f}")
        return "\n".join(lines)

    def to_records(self) -> list[dict[str, Any]]:
        return [
            {"index": i, "label": label, "weight": float(w)}
            for i, (label, w) in enumerate(zip(self.labels, self.weights, strict=True))
        ]

    def save_heat_strip(self, path: str | Path) -> Path:
        """Draw the weights as a one-row heat strip (positions in order) and save a PNG."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        n = max(len(self.weights), 1)
        fig, ax = plt.subplots(figsize=(min(2 + 0.45 * n, 24), 2.2 if n <= 30 else 1.8))
        limit = float(np.abs(self.weights).max()) if len(self.weights) else 1.0
        signed = bool(np.any(self.weights < 0))
        image = ax.imshow(
            self.weights[None, :] if len(self.weights) else np.zeros((1, 1)),
            aspect="auto",
            cmap="RdBu_r" if signed else "Reds",
            vmin=-limit if signed else 0.0,
            vmax=limit or 1.0,
        )
        ax.set_yticks([])
        if n <= 40:
            ax.set_xticks(range(len(self.labels)))
            ax.set_xticklabels(self.labels, rotation=60, ha="right", fontsize=7)
        what = "behaviour (oldest -> newest)" if self.kind == "behaviour" else "field pair"
        ax.set_xlabel(what)
        ax.set_title(f"{self.model}: attention per {self.kind}, p = {self.score:.3f}", fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.03, pad=0.01)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return path


def _behaviour_labels(
    model: RecModel, batch: Batch, row: int, raw: dict[str, Sequence[Any]] | None
) -> list[str]:
    pairs = model.behaviours
    length = int(batch.lengths[pairs[0][0]][row])
    parts = []
    for seq, _ in pairs:
        if raw is not None and seq in raw:
            values = list(raw[seq])[-model.schema.field(seq).max_len :]  # type: ignore[union-attr]
            parts.append([str(v) for v in values[:length]])
        else:
            parts.append([f"#{int(v)}" for v in batch.sequences[seq][row, :length]])
    return [" / ".join(p[i] for p in parts) for i in range(length)]


@torch.no_grad()
def explain_batch(
    model: RecModel,
    batch: Batch,
    row: int = 0,
    model_name: str | None = None,
    raw: dict[str, Sequence[Any]] | None = None,
) -> Explanation:
    """Explain row ``row`` of an encoded batch.

    Args:
        model: A model with ``attention_weights(batch)`` (DIN, DIEN, AFM).
        batch: Encoded rows.
        row: Which row.
        model_name: Name shown in the output.
        raw: Raw sequence values of that row by sequence field (labels behaviours by raw ids).

    Raises:
        ValueError: The model exposes no attention.
    """
    if not model.explainable:
        raise ValueError(f"{type(model).__name__} exposes no attention weights to explain")
    model.eval()
    one = batch.select(torch.tensor([row]))
    weights = model.attention_weights(one)[0].float().cpu().numpy()
    score = float(torch.sigmoid(model(one)[0].float()))
    name = model_name or type(model).__name__
    if model.pair_names:
        labels = [f"{a} x {b}" for a, b in model.pair_names]
        return Explanation(name, "pair", labels, weights, score)
    if not model.behaviours:
        labels = [str(i) for i in range(len(weights))]
        return Explanation(name, "behaviour", labels, weights, score)
    labels = _behaviour_labels(model, one, 0, raw)
    return Explanation(name, "behaviour", labels, weights[: len(labels)], score)


def explain_table(bundle: Any, table: pa.Table, row: int = 0) -> Explanation:
    """Explain row ``row`` of raw rows with a loaded :class:`recforge.serve.bundle.Bundle`."""
    if not 0 <= row < table.num_rows:
        raise ValueError(f"row {row} out of range: the input has {table.num_rows} rows")
    one = table.slice(row, 1)
    encoded = bundle.preprocessor.transform(one, with_label=False)
    batch = next(iter(BatchLoader(encoded, 1)))
    device = next(bundle.model.parameters()).device
    raw = {}
    for seq in bundle.preprocessor.schema.sequence_fields:
        if seq.source in one.column_names:
            value = one.column(seq.source)[0].as_py()
            if isinstance(value, str):
                value = [v for v in value.split(seq.separator) if v != ""]
            raw[seq.name] = value or []
    return explain_batch(bundle.model, batch.to(device), 0, bundle.model_name, raw)
