"""AutoRec: an autoencoder over the rows of the rating matrix.

Sedhain, Menon, Sanner & Xie, "AutoRec: Autoencoders Meet Collaborative Filtering", WWW 2015
(companion). Item-based AutoRec (I-AutoRec) takes each item's partially observed rating vector
over all users ``r_i in R^m`` and reconstructs it,

    h(r; theta) = f(W g(V r + mu) + b)        (paper eq. 2)

with a sigmoid hidden layer ``g`` and an identity output ``f`` (the best pair in the paper's
ablation). Training minimises the error on *observed* entries only plus weight decay,

    min_theta  sum_i ||r_i - h(r_i)||_O^2 + lambda/2 (||W||_F^2 + ||V||_F^2)   (paper eq. 3)

User-based AutoRec (U-AutoRec) does the same over user vectors. The prediction for user ``u``
and item ``i`` is entry ``u`` of ``h(r_i)`` (I-AutoRec), clipped to the rating range.

The model keeps the training rating matrix as registered buffers (CSR arrays), set from the
training split by :meth:`AutoRec.fit_statistics` (or :meth:`AutoRec.set_ratings`), so
``forward(batch)`` scores any ``(user, item)`` pairs as the
:class:`~recforge.models.base.RecModel` contract asks. The engine trains it like every model:
:meth:`AutoRec.training_data` hands it the ids of the matrix rows that hold a rating (the unit of
AutoRec's data is a whole rating row), and :meth:`AutoRec.objective` is eq. 3 on a batch of rows,
densified per batch: the masked squared error summed over the batch's observed entries plus the
batch's share ``B / n`` of the weight decay, so an epoch's terms add up to eq. 3 exactly.

In eval mode, predictions are clipped to ``[min_rating, max_rating]`` and the fallback below
applies; in training mode (and before :meth:`AutoRec.set_ratings`) ``forward`` returns the raw
reconstruction entry so that gradients flow.

Fallback: a pair whose encoded row (the item for I-AutoRec) or decoded column (the user) has no
training rating, or carries the OOV id 0, is predicted as ``fallback_rating`` (``None``: the
training mean). The paper's protocol predicts the default rating 3 for such pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from recforge.features import Batch, EncodedData, Schema
from recforge.interactions import InteractionMatrix
from recforge.layers.mlp import activation
from recforge.models.base import ModelConfig
from recforge.models.registry import ModelSpec
from recforge.models.user_item import UserItemModel

_MATRIX_BUFFERS = ("ratings_indptr", "ratings_indices", "ratings_values")


@dataclass(frozen=True)
class AutoRecConfig(ModelConfig):
    """Args:
    hidden: Hidden units ``k`` (the paper uses 500).
    item_based: True for I-AutoRec (encode item vectors over users), False for U-AutoRec.
    hidden_activation: ``g``; the paper's best is ``sigmoid``.
    output_activation: ``f``; the paper's best is ``identity``.
    l2_lambda: ``lambda`` of the weight-decay term ``lambda/2 (||W||^2 + ||V||^2)``.
    min_rating: Lower end of the rating range (predictions are clipped).
    max_rating: Upper end of the rating range.
    fallback_rating: Prediction for pairs with an unseen user or item; ``None`` uses the
        training mean.
    """

    hidden: int = 500
    item_based: bool = True
    hidden_activation: str = "sigmoid"
    output_activation: str = "identity"
    l2_lambda: float = 1.0
    min_rating: float = 1.0
    max_rating: float = 5.0
    fallback_rating: float | None = None


class AutoRec(UserItemModel):
    """I-AutoRec / U-AutoRec with the training rating matrix stored as CSR buffers."""

    config_class = AutoRecConfig

    def __init__(self, schema: Schema, cfg: AutoRecConfig) -> None:
        super().__init__(schema, cfg)
        n_users, n_items = self.sizes
        # rows are the encoded vectors, columns their entries
        self.n_rows, self.n_cols = (n_items, n_users) if cfg.item_based else (n_users, n_items)
        self.encoder = nn.Linear(self.n_cols, cfg.hidden)  # V, mu
        self.decoder = nn.Linear(cfg.hidden, self.n_cols)  # W, b
        self.g = activation(cfg.hidden_activation)
        self.f = activation(cfg.output_activation)
        self.register_buffer("ratings_indptr", torch.zeros(self.n_rows + 1, dtype=torch.long))
        self.register_buffer("ratings_indices", torch.zeros(0, dtype=torch.long))
        self.register_buffer("ratings_values", torch.zeros(0))
        self.register_buffer("mean_rating", torch.tensor((cfg.min_rating + cfg.max_rating) / 2))
        self._matrix: InteractionMatrix | None = None
        self._known: tuple[torch.Tensor, torch.Tensor] | None = None  # rows, cols with ratings
        self._rated_rows: int | None = None  # rows of the matrix that hold a rating

    # ---- the stored training matrix ----------------------------------------------------
    def set_ratings(self, users: np.ndarray, items: np.ndarray, ratings: np.ndarray) -> None:
        """Store the training ratings (local ids) that the model encodes at prediction time."""
        rows, cols = (items, users) if self.cfg.item_based else (users, items)
        m = InteractionMatrix.from_coo(rows, cols, ratings, shape=(self.n_rows, self.n_cols))
        device = self.encoder.weight.device
        self.ratings_indptr = torch.from_numpy(m.indptr).to(device)
        self.ratings_indices = torch.from_numpy(m.indices).to(device)
        self.ratings_values = torch.from_numpy(m.values).to(device)
        self.mean_rating = torch.tensor(float(m.values.mean()) if m.nnz else 3.0, device=device)
        self._matrix = m
        self._known = None
        self._rated_rows = None

    def fit_statistics(self, train: EncodedData) -> None:
        """Store the training split's ratings (its user, item and label columns)."""
        sparse = np.asarray(train.sparse)
        self.set_ratings(sparse[:, self.user_col], sparse[:, self.item_col], train.label)

    def training_data(self, train: EncodedData) -> EncodedData:
        """One row per rating row of the matrix that holds a rating: its id in column 0."""
        rows = np.flatnonzero(self.matrix.row_counts > 0).astype(np.int32)
        if rows.size == 0:
            raise ValueError("AutoRec: the training split holds no rating")
        return EncodedData(
            sparse=rows[:, None],
            dense=np.zeros((rows.size, 0), dtype=np.float32),
            label=np.zeros(rows.size, dtype=np.float32),
        )

    def objective(self, batch: Batch) -> torch.Tensor:
        """Eq. 3 on a batch of rows: masked squared error plus its share of the weight decay."""
        rows = batch.sparse[:, 0].cpu()
        r, mask = self.dense_rows(rows)
        if self._rated_rows is None:  # rows holding a rating: eq. 3's decay is shared over them
            self._rated_rows = max(int((self.matrix.row_counts > 0).sum()), 1)
        share = len(rows) / self._rated_rows
        return masked_loss(self.reconstruct(r), r, mask) + self.regularization() * share

    @property
    def matrix(self) -> InteractionMatrix:
        """The training matrix in the model's orientation (items x users for I-AutoRec)."""
        if self._matrix is None:
            self._matrix = InteractionMatrix(
                indptr=self.ratings_indptr.cpu().numpy(),
                indices=self.ratings_indices.cpu().numpy(),
                values=self.ratings_values.cpu().numpy(),
                shape=(self.n_rows, self.n_cols),
            )
        return self._matrix

    def known(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Masks of the rows and of the columns that hold a training rating (cached)."""
        if self._known is None:
            rows = (self.ratings_indptr[1:] - self.ratings_indptr[:-1]) > 0
            cols = torch.zeros(self.n_cols, dtype=torch.bool, device=rows.device)
            cols[self.ratings_indices] = True
            self._known = (rows, cols)
        return self._known

    def interactions(self) -> InteractionMatrix | None:
        """User x item matrix of the training ratings (``recommend`` uses it as seen items)."""
        return self.matrix.transpose() if self.cfg.item_based else self.matrix

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # the matrix buffers are sized by the data: adopt the incoming shapes before copying
        for name in _MATRIX_BUFFERS:
            if prefix + name in state_dict:
                incoming = state_dict[prefix + name]
                setattr(self, name, torch.empty_like(incoming, device=self.ratings_indptr.device))
        self._matrix = None
        self._known = None
        self._rated_rows = None
        super()._load_from_state_dict(state_dict, prefix, *args)

    # ---- the autoencoder ---------------------------------------------------------------
    def reconstruct(self, r: torch.Tensor) -> torch.Tensor:
        """``h(r) = f(W g(V r + mu) + b)``.

        Shape:
            ``(B, n_cols)`` partially observed rows (zeros where unobserved) -> ``(B, n_cols)``.
        """
        return self.f(self.decoder(self.g(self.encoder(r))))

    def regularization(self) -> torch.Tensor:
        """``lambda/2 (||W||_F^2 + ||V||_F^2)`` (biases are not penalised)."""
        w, v = self.decoder.weight, self.encoder.weight
        return 0.5 * self.cfg.l2_lambda * (w.square().sum() + v.square().sum())

    def dense_rows(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Densified training rows and their observation masks, on the model's device."""
        values, mask = self.matrix.dense_rows(rows)
        device = self.encoder.weight.device
        return values.to(device), mask.to(device)

    def forward(self, batch: Batch) -> torch.Tensor:
        users = batch.sparse[:, self.user_col]
        items = batch.sparse[:, self.item_col]
        rows, cols = (items, users) if self.cfg.item_based else (users, items)
        unique, inverse = torch.unique(rows, return_inverse=True)
        r, _ = self.dense_rows(unique)  # (U, n_cols): each distinct row encoded once
        hidden = self.g(self.encoder(r))  # (U, k)
        # entry `col` of the reconstruction only: W[col] . h + b[col]
        w = self.decoder.weight[cols]  # (B, k)
        pred = self.f((w * hidden[inverse]).sum(-1) + self.decoder.bias[cols])  # (B,)
        if self.training or self.ratings_values.numel() == 0:
            # raw reconstruction: lets a pointwise loss flow before/while fitting
            return pred
        pred = pred.clamp(self.cfg.min_rating, self.cfg.max_rating)
        rows_known, cols_known = self.known()
        known = rows_known[rows] & cols_known[cols] & (rows > 0) & (cols > 0)
        fallback = (  # a tensor, so a GPU forward does not wait on the host
            self.mean_rating if self.cfg.fallback_rating is None else self.cfg.fallback_rating
        )
        return torch.where(known, pred, torch.as_tensor(fallback, dtype=pred.dtype))

    @torch.no_grad()
    def for_export(self) -> nn.Module:
        """A traceable scorer equal to the eval-mode :meth:`forward`.

        The stored matrix only enters prediction through each row's code ``g(V r + mu)``, so
        the codes of all rows are computed here (in blocks of rows) and the exported graph
        holds them with the decoder and the two masks: a prediction is then two gathers.
        """
        codes = []
        for start in range(0, self.n_rows, 1024):
            rows = torch.arange(start, min(start + 1024, self.n_rows))
            r, _ = self.dense_rows(rows)
            codes.append(self.g(self.encoder(r)))  # (rows, k)
        fitted = self.ratings_values.numel() > 0
        return _AutoRecScorer(
            self, torch.cat(codes), *self.known(), self.fallback_value(), fitted
        ).eval()

    def fallback_value(self) -> float:
        """The prediction for a pair without training evidence (see the module docstring)."""
        if self.cfg.fallback_rating is None:
            return float(self.mean_rating)
        return float(self.cfg.fallback_rating)


class _AutoRecScorer(nn.Module):
    """AutoRec's eval-mode prediction from precomputed row codes (see ``for_export``)."""

    def __init__(
        self,
        model: AutoRec,
        codes: torch.Tensor,
        rows_known: torch.Tensor,
        cols_known: torch.Tensor,
        fallback: float,
        fitted: bool,
    ) -> None:
        super().__init__()
        cfg = model.cfg
        self.user_col, self.item_col = model.user_col, model.item_col
        self.item_based = cfg.item_based
        self.f = model.f
        self.min_rating, self.max_rating = cfg.min_rating, cfg.max_rating
        self.fallback, self.fitted = fallback, fitted
        self.register_buffer("codes", codes.detach().clone())  # (n_rows, k) = g(V r + mu)
        self.register_buffer("weight", model.decoder.weight.detach().clone())  # (n_cols, k)
        self.register_buffer("bias", model.decoder.bias.detach().clone())  # (n_cols,)
        self.register_buffer("rows_known", rows_known.clone())
        self.register_buffer("cols_known", cols_known.clone())

    def forward(self, batch: Batch) -> torch.Tensor:
        users = batch.sparse[:, self.user_col]
        items = batch.sparse[:, self.item_col]
        rows, cols = (items, users) if self.item_based else (users, items)
        pred = self.f((self.weight[cols] * self.codes[rows]).sum(-1) + self.bias[cols])  # (B,)
        if not self.fitted:
            return pred
        pred = pred.clamp(self.min_rating, self.max_rating)
        known = self.rows_known[rows] & self.cols_known[cols] & (rows > 0) & (cols > 0)
        return torch.where(known, pred, torch.full_like(pred, self.fallback))


def masked_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``sum ||r - h(r)||_O^2``: squared error summed over observed entries only.

    Unobserved entries contribute neither to the value nor to the gradient.

    Shape:
        all ``(B, n_cols)`` -> scalar.
    """
    return ((pred - target) * mask).square().sum()


SPEC = ModelSpec(
    name="autorec",
    model=AutoRec,
    paper="Sedhain, Menon, Sanner & Xie, AutoRec: Autoencoders Meet Collaborative Filtering, "
    "WWW 2015",
    family="cf",
    pairwise=True,
)
