"""Wide & Deep.

Cheng, Koc, Harmsen, Shaked, Chandra, Aradhye, Anderson, Corrado, Chai, Ispir, Anil, Haque,
Hong, Jain, Liu & Shah, "Wide & Deep Learning for Recommender Systems", DLRS 2016. A generalised
linear model over raw sparse features and *cross-product transformations*
``phi_k(x) = prod_i x_i^{c_ki}`` (``AND(a=x, b=y)`` for one-hot fields) is trained jointly with
an MLP over dense embeddings:

    P(Y = 1 | x) = sigma(w_wide^T [x, phi(x)] + w_deep^T a^(lf) + b)

Crosses are declared in the config, e.g. ``crosses: ["user_segment&item_category"]`` or a list
of field-name lists. Each cross is one extra one-hot field whose id is computed in the model
from the fields' local ids (:func:`cross_ids`); its weights sit in a dimension-1 table of the
wide part. The paper trains the wide part with FTRL (L1) and the deep part with AdaGrad; the
:meth:`WideDeep.optimizer_groups` hook lets a trainer give each part its own optimizer
(:class:`recforge.train.ftrl.FTRL` for ``"wide"``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from recforge.features import Batch, Schema
from recforge.layers import MLP, FusedEmbedding, LinearPart, StackedInput
from recforge.layers.crossproduct import cross_ids, cross_rows, parse_crosses
from recforge.models.base import RecModel
from recforge.models.registry import ModelSpec
from recforge.models.tower import TowerConfig


@dataclass(frozen=True)
class WideDeepConfig(TowerConfig):
    """The deep MLP's options (:class:`~recforge.models.tower.TowerConfig`) and the wide part's:

    Args:
        hidden: Widths of the deep MLP (the paper uses 1024, 512, 256).
        crosses: Cross-product transformations, each ``"a&b"`` or a list of sparse field
            names.
        cross_buckets: Cap on the ids of one cross; beyond it, ids are hashed (see
            :func:`cross_ids`).
    """

    hidden: tuple[int, ...] = (1024, 512, 256)
    crosses: tuple[str | tuple[str, ...], ...] = ()
    cross_buckets: int = 1_000_000


class WideDeep(RecModel):
    """``logit = wide(x, phi(x)) + deep(embeddings, numerics)``."""

    config_class = WideDeepConfig

    def __init__(self, schema: Schema, cfg: WideDeepConfig) -> None:
        super().__init__(schema, cfg)
        if cfg.cross_buckets < 1:
            raise ValueError("cross_buckets must be >= 1")
        self.crosses = parse_crosses(cfg.crosses)
        cols, sizes = [], []
        for names in self.crosses:
            fields = [schema.field(n) for n in names]  # KeyError names an unknown field
            cols.append([schema.sparse_index(n) for n in names])
            sizes.append(tuple(f.vocab_size for f in fields))  # type: ignore[union-attr]
        self._cross_cols = cols  # sparse columns of each cross
        self._cross_sizes = sizes
        # wide part: raw sparse one-hots (+ numerics) and the cross products phi(x)
        self.linear = LinearPart(schema, sparse=cfg.sparse_tables)
        self.cross_weights = (
            FusedEmbedding(
                [cross_rows(s, cfg.cross_buckets) for s in sizes],
                1,
                sparse=cfg.sparse_tables,
                init_std=0,
            )
            if sizes
            else None
        )
        # deep part: embeddings and numerics concatenated into a^(0)
        self.embedding = StackedInput(schema, dim=cfg.embedding_dim, sparse=cfg.sparse_tables)
        self.deep = MLP(self.embedding.stacked_dim, cfg, output_dim=1)

    def cross_features(self, batch: Batch) -> torch.Tensor:
        """Ids of every declared cross, ``(B, n_crosses)`` int64 (0 = a crossed field is OOV)."""
        if not self._cross_cols:
            return batch.sparse[:, :0]  # (B, 0); a shape read keeps an exported B dynamic
        return torch.stack(
            [
                cross_ids(batch.sparse[:, c], s, self.cfg.cross_buckets)
                for c, s in zip(self._cross_cols, self._cross_sizes, strict=True)
            ],
            dim=1,
        )

    def wide_parameters(self) -> list[nn.Parameter]:
        """Parameters of the wide (linear) part: raw-feature and cross-product weights, bias."""
        params = list(self.linear.parameters())
        if self.cross_weights is not None:
            params += list(self.cross_weights.parameters())
        return params

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters per part for per-part optimizers: ``{"wide": [...], "deep": [...]}``.

        The paper optimises ``"wide"`` with FTRL-Proximal + L1 and ``"deep"`` with AdaGrad. The
        two lists partition :meth:`parameters`.
        """
        wide = self.wide_parameters()
        wide_ids = {id(p) for p in wide}
        return {"wide": wide, "deep": [p for p in self.parameters() if id(p) not in wide_ids]}

    def forward(self, batch: Batch) -> torch.Tensor:
        wide = self.linear(batch)  # (B,): w0 + sum_i w_i x_i
        if self.cross_weights is not None:
            wide = wide + self.cross_weights(self.cross_features(batch)).sum(dim=(1, 2))
        a0 = self.embedding.stack(batch)  # (B, sum dims + Fd)
        return wide + self.deep(a0).squeeze(-1)  # (B,)


SPEC = ModelSpec(
    name="wide_deep",
    model=WideDeep,
    paper="Cheng et al., Wide & Deep Learning for Recommender Systems, DLRS 2016",
    family="ctr",
)
