"""Embedding layers: one fused table per dimension, per-field offsets, first-order terms.

All categorical fields of one embedding dimension live in a single ``nn.Embedding`` whose rows
are the concatenation of the fields' vocabularies; a registered buffer holds each field's row
offset, so a batch of ``(B, F)`` local ids is embedded with one gather. With ``sparse=True`` the
table yields sparse gradients, so optimizer work scales with the rows a batch touches.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
from torch import nn

from recforge.features import Batch, Schema

TABLE_INIT_STD = 1e-2
"""Standard deviation of the embedding tables' default normal draw."""


class FusedEmbedding(nn.Module):
    """Several fields' embedding tables fused into one, indexed through per-field offsets.

    Args:
        vocab_sizes: Rows of each field (including its reserved row 0).
        dim: Embedding dimension.
        sparse: Produce sparse gradients.
        init_std: Standard deviation of the normal initialisation.

    Shape:
        ids ``(B, F)`` local ids -> ``(B, F, dim)``.
    """

    def __init__(
        self,
        vocab_sizes: Sequence[int],
        dim: int,
        sparse: bool = False,
        init_std: float = TABLE_INIT_STD,
    ) -> None:
        super().__init__()
        if any(v <= 0 for v in vocab_sizes):
            raise ValueError(f"every vocab size must be positive, got {list(vocab_sizes)}")
        offsets = torch.zeros(len(vocab_sizes), dtype=torch.long)
        if len(vocab_sizes) > 1:
            offsets[1:] = torch.cumsum(torch.tensor(list(vocab_sizes[:-1])), dim=0)
        self.register_buffer("offsets", offsets, persistent=True)
        self.vocab_sizes = tuple(int(v) for v in vocab_sizes)
        self.dim = dim
        self.embedding = nn.Embedding(max(sum(vocab_sizes), 1), dim, sparse=sparse)
        nn.init.normal_(self.embedding.weight, std=init_std)

    @property
    def weight(self) -> torch.Tensor:
        return self.embedding.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        # (B, F) + (F,) -> global rows; one gather for all fields. The table may also own rows
        # of sequence fields (after the F sparse fields), whose offsets the ids do not cover.
        return self.embedding(ids + self.offsets[: ids.shape[-1]])

    def lookup(self, ids: torch.Tensor, field_index: int) -> torch.Tensor:
        """Embed ids of one field (any shape), e.g. a behaviour sequence ``(B, L)``."""
        return self.embedding(ids + self.offsets[field_index])

    def field_rows(self, field_index: int) -> torch.Tensor:
        """The ``(vocab, dim)`` slice of the table that belongs to one field."""
        start = int(self.offsets[field_index])
        return self.embedding.weight[start : start + self.vocab_sizes[field_index]]


def length_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """Boolean ``(B, L)`` mask, True on the first ``lengths[b]`` positions of each row."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def mask_rows(mask: torch.Tensor) -> torch.Tensor:
    """The row (sample) of each True position of a ``(B, L)`` mask, in row-major order: ``(R,)``,
    aligned with ``values[mask]``."""
    B, L = mask.shape
    return torch.arange(B, device=mask.device)[:, None].expand(B, L)[mask]


def masked_sum(values: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Sum over the first ``lengths`` positions (left-aligned sequences); zeros when empty.

    Shape:
        values ``(B, L, D)``, lengths ``(B,)`` -> ``(B, D)``.
    """
    mask = length_mask(lengths, values.shape[1]).to(values.dtype)
    return (values * mask.unsqueeze(-1)).sum(dim=1)


def masked_mean(values: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean over the first ``lengths`` positions; zeros for empty sequences.

    Shape:
        values ``(B, L, D)``, lengths ``(B,)`` -> ``(B, D)``.
    """
    total = masked_sum(values, lengths)
    return total / lengths.clamp(min=1).to(values.dtype).unsqueeze(-1)


class FieldVectors(nn.Module, ABC):
    """What every field-embedding layer returns, built from its ``_field_vectors(batch)``.

    Subclasses (:class:`FeatureEmbedding`, and TorchRec's adapter in
    :mod:`recforge.distributed.torchrec_bridge`) set ``schema``, ``include_dense``,
    ``pool_sequences`` and ``output_dims`` (one width per field vector) and return one
    ``(B, n, d)`` block per group of fields, in output order.
    """

    schema: Schema
    include_dense: bool
    pool_sequences: bool
    output_dims: tuple[int, ...]

    @abstractmethod
    def _field_vectors(self, batch: Batch) -> list[torch.Tensor]:
        """One ``(B, n, d)`` block per group of fields, in output order."""

    @property
    def num_fields(self) -> int:
        """Number of field vectors :meth:`forward` returns."""
        return len(self.output_dims)

    @property
    def output_dim(self) -> int:
        """Width of :meth:`flat`."""
        return sum(self.output_dims)

    @property
    def field_names(self) -> tuple[str, ...]:
        """The field of each vector :meth:`forward` stacks, in order (matches ``output_dims``)."""
        s = self.schema
        names = [f.name for f in s.sparse_fields]
        names += [f.name for f in s.dense_fields] if self.include_dense else []
        names += [f.name for f in s.sequence_fields] if self.pool_sequences else []
        return tuple(names)

    def forward(self, batch: Batch) -> torch.Tensor:
        """Field embeddings stacked as ``(B, F, D)``; all fields must share one dimension."""
        if len(set(self.output_dims)) > 1:
            raise ValueError(
                "fields have different embedding dimensions; use flat() or give one dim"
            )
        return torch.cat(self._field_vectors(batch), dim=1)

    def flat(self, batch: Batch) -> torch.Tensor:
        """All field embeddings concatenated: ``(B, sum of field dims)``."""
        return torch.cat([b.flatten(1) for b in self._field_vectors(batch)], dim=1)


class FeatureEmbedding(FieldVectors):
    """Embeds every field of a fitted schema.

    Sparse fields and sequences with their own vocabulary share fused tables (one per
    dimension); a sequence declared with ``share_embedding_with`` reads its target field's rows.
    Each dense numeric field ``j`` is embedded as ``x_j * v_j`` (the FM convention). Sequences are
    mean-pooled into one extra field unless ``pool_sequences=False``.

    Args:
        schema: A fitted schema.
        dim: Override of the schema's default embedding dimension for all fields.
        sparse: Sparse gradients for the fused tables.
        pool_sequences: Include mean-pooled sequence fields in :meth:`forward`.
        include_dense: Include dense numerics (as scaled vectors) in :meth:`forward`.
    """

    def __init__(
        self,
        schema: Schema,
        dim: int | None = None,
        sparse: bool = False,
        pool_sequences: bool = True,
        include_dense: bool = True,
    ) -> None:
        super().__init__()
        if not schema.is_fitted:
            raise ValueError("FeatureEmbedding needs a fitted schema")
        self.schema = schema
        self.pool_sequences = pool_sequences
        self.include_dense = include_dense

        def dim_of(f: object) -> int:
            return dim if dim is not None else schema.dim_of(f)  # type: ignore[arg-type]

        # fields that own rows: sparse fields, then sequences with their own vocabulary
        owners = list(schema.sparse_fields) + [
            s for s in schema.sequence_fields if not s.share_embedding_with
        ]
        dims = sorted({dim_of(f) for f in owners} | ({dim_of(f) for f in schema.dense_fields}))
        self.tables = nn.ModuleDict()
        self._where: dict[str, tuple[str, int]] = {}  # field name -> (table key, index)
        for d in dims:
            group = [f for f in owners if dim_of(f) == d]
            if group:
                key = str(d)
                self.tables[key] = FusedEmbedding([f.vocab_size for f in group], d, sparse=sparse)
                for i, f in enumerate(group):
                    self._where[f.name] = (key, i)
        for s in schema.sequence_fields:
            if s.share_embedding_with:
                self._where[s.name] = self._where[s.share_embedding_with]
        self.dense_weight = nn.ParameterDict()
        for d in dims:
            n = sum(1 for f in schema.dense_fields if dim_of(f) == d) if include_dense else 0
            if n:
                self.dense_weight[str(d)] = nn.Parameter(torch.randn(n, d) * 1e-2)

        sparse_keys = {self._where[f.name][0] for f in schema.sparse_fields}
        self._uniform_dim = len(dims) <= 1 and len(sparse_keys) <= 1
        self.dims = tuple(dims)
        self.output_dims = tuple(
            [dim_of(f) for f in schema.sparse_fields]
            + ([dim_of(f) for f in schema.dense_fields] if include_dense else [])
            + (
                [self.table_of(s.name).dim for s in schema.sequence_fields]
                if pool_sequences
                else []
            )
        )
        # sparse columns grouped per table, in field order, so each table is gathered once
        self._sparse_groups: list[tuple[str, list[int]]] = []
        for key in dict.fromkeys(self._where[f.name][0] for f in schema.sparse_fields):
            cols = [i for i, f in enumerate(schema.sparse_fields) if self._where[f.name][0] == key]
            self._sparse_groups.append((key, cols))

    def table_of(self, name: str) -> FusedEmbedding:
        return self.tables[self._where[name][0]]  # type: ignore[return-value]

    def _field_vectors(self, batch: Batch) -> list[torch.Tensor]:
        """One ``(B, n, d)`` block per group, in output field order."""
        blocks: list[tuple[int, torch.Tensor]] = []
        fields = self.schema.sparse_fields
        for key, cols in self._sparse_groups:
            table = self.tables[key]
            if len(cols) == len(fields):
                blocks.append((0, table(batch.sparse)))  # (B, Fs, D): the common, one-gather case
            else:
                ids = batch.sparse[:, cols]
                emb = table(ids)  # offsets of this table cover exactly these columns
                for j, c in enumerate(cols):
                    blocks.append((c, emb[:, j : j + 1]))
        blocks.sort(key=lambda t: t[0])
        out = [b for _, b in blocks]
        if self.include_dense and self.schema.dense_fields:
            out.extend(self._dense_vectors(batch))
        if self.pool_sequences:
            for s in self.schema.sequence_fields:
                out.append(
                    masked_mean(self.sequence(batch, s.name), batch.lengths[s.name])[:, None]
                )
        return out

    def _dense_vectors(self, batch: Batch) -> list[torch.Tensor]:
        if len(self.dense_weight) == 1:
            (w,) = self.dense_weight.values()
            return [batch.dense.unsqueeze(-1) * w]  # (B, Fd, 1) * (Fd, D)
        out, counters = [], {k: 0 for k in self.dense_weight}
        for j, f in enumerate(self.schema.dense_fields):
            key = next(k for k in self.dense_weight if int(k) == (f.embedding_dim or self.dims[0]))
            out.append(batch.dense[:, j, None, None] * self.dense_weight[key][counters[key]])
            counters[key] += 1
        return out

    def sparse_only(self, batch: Batch) -> torch.Tensor:
        """Embeddings of the sparse fields only: ``(B, Fs, D)`` (requires one dimension)."""
        ((key, _),) = self._sparse_groups
        return self.tables[key](batch.sparse)

    def sequence(self, batch: Batch, name: str) -> torch.Tensor:
        """Embedded behaviour sequence ``(B, L, D)``; padded positions embed row 0."""
        key, index = self._where[name]
        return self.tables[key].lookup(batch.sequences[name], index)

    def lookup(self, name: str, ids: torch.Tensor) -> torch.Tensor:
        """Embed local ids of field ``name`` (any shape), e.g. sampled negative items."""
        key, index = self._where[name]
        return self.tables[key].lookup(ids, index)

    def field(self, batch: Batch, name: str) -> torch.Tensor:
        """Embedding of one sparse field ``(B, D)``."""
        key, index = self._where[name]
        return self.tables[key].lookup(batch.sparse[:, self.schema.sparse_index(name)], index)


class StackedInput(FeatureEmbedding):
    """``x_0 = [e_1; ...; e_F; x_dense]``: the field embeddings stacked with the raw numerics.

    The input block of the models that give numeric features to the network as they are
    rather than as embedded vectors: DCN's ``x_0``, Deep Crossing's stacking layer and the
    deep part of Wide & Deep. It is a :class:`FeatureEmbedding` without dense vectors
    (``include_dense=False``), so :meth:`flat` and :meth:`forward` cover the sparse fields (and
    pooled sequences) only.

    Args:
        schema: A fitted schema.
        dim: Override of the schema's default embedding dimension for all fields.
        sparse: Sparse gradients for the fused tables.

    Shape:
        batch -> ``(B, stacked_dim)`` with ``stacked_dim = output_dim + Fd``.
    """

    def __init__(self, schema: Schema, dim: int | None = None, sparse: bool = False) -> None:
        super().__init__(schema, dim=dim, sparse=sparse, include_dense=False)
        self.stacked_dim = self.output_dim + len(schema.dense_fields)

    def stack(self, batch: Batch, embedded: torch.Tensor | None = None) -> torch.Tensor:
        """``[flat(batch); batch.dense]``, or ``embedded`` in place of ``flat(batch)``.

        Args:
            batch: The batch.
            embedded: ``(B, output_dim)`` flat embeddings transformed by the caller (Deep
                Crossing's ``max(0, e + b)``); ``None`` stacks :meth:`flat` as it is.
        """
        emb = self.flat(batch) if embedded is None else embedded
        return torch.cat([emb, batch.dense], dim=1)


class LinearPart(nn.Module):
    """First-order term ``w0 + sum_i w_i`` over sparse ids and ``sum_j w_j x_j`` over numerics.

    Sparse weights live in a fused dimension-1 table (one gather per batch).

    Shape:
        batch -> ``(B,)``.
    """

    def __init__(self, schema: Schema, sparse: bool = False, bias: bool = True) -> None:
        super().__init__()
        sizes = [f.vocab_size for f in schema.sparse_fields]
        self.weights = FusedEmbedding(sizes, 1, sparse=sparse, init_std=0.0) if sizes else None
        n_dense = len(schema.dense_fields)
        self.dense = nn.Linear(n_dense, 1, bias=False) if n_dense else None
        if self.dense is not None:
            nn.init.zeros_(self.dense.weight)
        self.bias = nn.Parameter(torch.zeros(1)) if bias else None

    def forward(self, batch: Batch) -> torch.Tensor:
        # a shape read, not len(batch): a traced/exported graph keeps the batch size dynamic
        out = torch.zeros(batch.sparse.shape[0], device=batch.sparse.device)
        if self.weights is not None:
            out = out + self.weights(batch.sparse).sum(dim=(1, 2))
        if self.dense is not None:
            out = out + self.dense(batch.dense).squeeze(-1)
        if self.bias is not None:
            out = out + self.bias
        return out
