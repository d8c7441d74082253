"""The base of the models that score (user, item) id pairs.

Biased MF, GMF, the NCF MLP, NeuMF and AutoRec read nothing but the two id fields that the
schema's ``user_key`` and ``item_key`` name; this base finds their columns in ``Batch.sparse``
and their vocabularies once.
"""

from __future__ import annotations

import torch

from recforge.features import Batch, Schema
from recforge.models.base import ModelConfig, RecModel


class UserItemModel(RecModel):
    """A model over the user and item id fields of the schema.

    Attributes:
        user_col: Column of the user ids in ``Batch.sparse``.
        item_col: Column of the item ids.
        sizes: ``(n_users, n_items)``, the rows of each id field (OOV row 0 included).

    Raises:
        ValueError: when the schema has no ``user_key`` or no ``item_key``.
    """

    def __init__(self, schema: Schema, cfg: ModelConfig) -> None:
        super().__init__(schema, cfg)
        if schema.user_key is None or schema.item_key is None:
            raise ValueError(f"{type(self).__name__} needs schema.user_key and schema.item_key")
        self.user_col = schema.sparse_index(schema.user_key)
        self.item_col = schema.sparse_index(schema.item_key)
        self.sizes = (
            schema.field(schema.user_key).vocab_size,
            schema.field(schema.item_key).vocab_size,
        )

    def ids(self, batch: Batch) -> torch.Tensor:
        """The user and item ids of each row: ``(B, 2)``."""
        return batch.sparse[:, [self.user_col, self.item_col]]
