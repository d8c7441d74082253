"""The boundary between recforge's fused embedding tables and TorchRec's sharded collections.

recforge keeps all fields of one embedding dimension in one :class:`FusedEmbedding` (rows of the
fields concatenated, per-field offsets in a buffer, a reserved OOV/padding row 0 per field). That
is the fast layout on one device. When the tables outgrow one device, TorchRec shards them across
devices; its unit of sharding is a *table*, and its input is a ``KeyedJaggedTensor`` of *local*
ids per feature. This module draws the line between the two:

* :func:`embedding_configs` — one :class:`TableSpec` per row-owning field (a categorical or
  bucketed numeric field, or a sequence with its own vocabulary); a sequence declared with
  ``share_embedding_with`` becomes a second *feature* of its target's table. Row 0 (OOV) is kept,
  so local ids index the per-field table unchanged and the fused offsets disappear (TorchRec's
  FBGEMM kernels batch the tables of one device into one lookup themselves).
* :func:`batch_to_kjt_parts` / :func:`batch_to_kjt` — a :class:`~recforge.features.Batch` as
  KJT ``keys``, ``values`` and ``lengths`` (pure torch; the KJT wrapper needs TorchRec).
* :func:`split_feature_embedding` / :func:`load_feature_embedding` — exact weight transfer from
  a trained :class:`FeatureEmbedding` to per-table tensors and back.
* :class:`TorchRecEmbedding` — a drop-in for :class:`FeatureEmbedding` (same output contract)
  built on ``EmbeddingCollection`` / ``EmbeddingBagCollection``; :func:`shard_model` wraps a
  model holding one in ``DistributedModelParallel``.

Only :func:`to_torchrec_configs`, :func:`batch_to_kjt`, :class:`TorchRecEmbedding` and
:func:`shard_model` need TorchRec; they import it lazily and raise an ``ImportError`` naming
``pip install recforge[torchrec]`` when it is missing.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch
from torch import nn

from recforge.features import Batch, Field, Schema
from recforge.layers.embedding import (
    FeatureEmbedding,
    FieldVectors,
    FusedEmbedding,
    masked_mean,
)

logger = logging.getLogger(__name__)

_LOOKUP_ROWS: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "recforge_lookup_rows", default=None
)


@contextlib.contextmanager
def padded_lookups(rows: int) -> Iterator[None]:
    """Within this block, :class:`TorchRecEmbedding` looks up batches padded to ``rows`` rows.

    Row-wise sharding over gloo needs the same batch size on every rank (its backward
    all-gathers); a rank with fewer rows pads its lookup with copies of its last row and drops
    their outputs, so the rest of the model only ever sees its real rows (batch statistics such
    as Dice's stay those of the real rows, and the padding gets no gradient).
    """
    token = _LOOKUP_ROWS.set(rows)
    try:
        yield
    finally:
        _LOOKUP_ROWS.reset(token)


INSTALL_HINT = (
    "TorchRec is not available: pip install recforge[torchrec] (TorchRec needs an fbgemm-gpu "
    "build that matches your torch version; see docs/SCALING.md)"
)


def torchrec_available() -> bool:
    """Whether ``import torchrec`` succeeds (including loading its FBGEMM kernels)."""
    try:
        _require_torchrec()
    except ImportError:
        return False
    return True


def _require_torchrec() -> ModuleType:
    try:
        import torchrec
    except (ImportError, OSError) as err:  # OSError: fbgemm's .so built for another torch
        raise ImportError(INSTALL_HINT) from err
    return torchrec


# ---- table specs ---------------------------------------------------------------------------
@dataclass(frozen=True)
class TableSpec:
    """One TorchRec table and where its rows live in recforge's fused tables.

    Attributes:
        name: Table name (the owning field's name).
        num_embeddings: Rows, including the reserved OOV/padding row 0.
        embedding_dim: Embedding dimension.
        feature_names: KJT keys looked up in this table: the owner, then the sequences that
            share its rows.
        fused_key: Key of the :class:`FusedEmbedding` in ``FeatureEmbedding.tables``.
        fused_index: Index of the owner inside that fused table (its offset slot).
    """

    name: str
    num_embeddings: int
    embedding_dim: int
    feature_names: tuple[str, ...]
    fused_key: str
    fused_index: int


def embedding_configs(schema: Schema, dim: int | None = None) -> list[TableSpec]:
    """Per-table specs for a fitted schema, in the order :class:`FeatureEmbedding` fuses them.

    Args:
        schema: A fitted schema.
        dim: Override of every field's embedding dimension (as ``FeatureEmbedding(dim=...)``).

    Returns:
        One spec per row-owning field: sparse fields in ``Batch.sparse`` order, then sequences
        with their own vocabulary.
    """
    if not schema.is_fitted:
        raise ValueError("embedding_configs needs a fitted schema")

    def dim_of(f: Field) -> int:
        return dim if dim is not None else schema.dim_of(f)

    owners: list[Field] = list(schema.sparse_fields) + [
        s for s in schema.sequence_fields if not s.share_embedding_with
    ]
    sharers: dict[str, list[str]] = {}
    for s in schema.sequence_fields:
        if s.share_embedding_with:
            sharers.setdefault(s.share_embedding_with, []).append(s.name)
    # FeatureEmbedding groups owners by dimension, keeping owner order inside each group
    next_index: dict[int, int] = {}
    specs = []
    for f in owners:
        d = dim_of(f)
        specs.append(
            TableSpec(
                name=f.name,
                num_embeddings=int(f.vocab_size),
                embedding_dim=d,
                feature_names=(f.name, *sharers.get(f.name, ())),
                fused_key=str(d),
                fused_index=next_index.get(d, 0),
            )
        )
        next_index[d] = next_index.get(d, 0) + 1
    return specs


def to_torchrec_configs(specs: Sequence[TableSpec], pooled: bool = False) -> list[Any]:
    """TorchRec table configs for ``specs``.

    Args:
        specs: From :func:`embedding_configs`.
        pooled: ``EmbeddingBagConfig`` with mean pooling (for ``EmbeddingBagCollection``; a bag
            of one id is that id's row, a sequence becomes its mean) instead of
            ``EmbeddingConfig`` (for the unpooled ``EmbeddingCollection``).

    Returns:
        A list of ``torchrec.EmbeddingBagConfig`` or ``torchrec.EmbeddingConfig``.
    """
    tr = _require_torchrec()
    extra: dict[str, Any] = {}
    if pooled:
        from torchrec.modules.embedding_configs import PoolingType

        extra["pooling"] = PoolingType.MEAN
    config = tr.EmbeddingBagConfig if pooled else tr.EmbeddingConfig
    return [
        config(
            name=s.name,
            num_embeddings=s.num_embeddings,
            embedding_dim=s.embedding_dim,
            feature_names=list(s.feature_names),
            **extra,
        )
        for s in specs
    ]


# ---- batches as KeyedJaggedTensor inputs --------------------------------------------------
@dataclass(frozen=True)
class KJTParts:
    """The three tensors of a ``KeyedJaggedTensor``.

    Attributes:
        keys: Feature names; sparse fields (``Batch.sparse`` order), then sequences.
        values: ``(sum of lengths,)`` int64 local ids, key-major, then sample, then position.
        lengths: ``(len(keys) * B,)`` int32 ids per (key, sample).
    """

    keys: tuple[str, ...]
    values: torch.Tensor
    lengths: torch.Tensor


def batch_to_kjt_parts(batch: Batch, schema: Schema, padded_sequences: bool = False) -> KJTParts:
    """Keys, values and lengths of the KJT for a batch; no TorchRec needed.

    Each sparse field contributes one id per sample. Each sequence contributes its first
    ``lengths[name]`` ids per sample (``padded_sequences=False``, the jagged form pooled lookups
    want) or all ``L`` positions including the 0 padding (``True``, so an unpooled lookup
    reshapes to ``(B, L, D)`` exactly as :meth:`FeatureEmbedding.sequence`).

    Shape:
        ``batch.sparse (B, Fs)`` and ``batch.sequences[s] (B, L_s)`` -> see :class:`KJTParts`.
    """
    B = len(batch)
    device = batch.sparse.device
    keys = [f.name for f in schema.sparse_fields]
    # (B, Fs) -> (Fs, B) -> key-major flat values; one id per (field, sample)
    values = [batch.sparse.t().reshape(-1).long()]
    lengths = [torch.ones(B * len(keys), dtype=torch.int32, device=device)]
    for s in schema.sequence_fields:
        ids = batch.sequences[s.name]
        keys.append(s.name)
        if padded_sequences:
            values.append(ids.reshape(-1).long())
            lengths.append(torch.full((B,), ids.shape[1], dtype=torch.int32, device=device))
        else:
            n = batch.lengths[s.name].clamp(max=ids.shape[1])
            mask = torch.arange(ids.shape[1], device=device)[None, :] < n[:, None]
            values.append(ids[mask].long())  # row-major: sample, then position
            lengths.append(n.to(torch.int32))
    return KJTParts(keys=tuple(keys), values=torch.cat(values), lengths=torch.cat(lengths))


def batch_to_kjt(batch: Batch, schema: Schema, padded_sequences: bool = False) -> Any:
    """The batch as a ``torchrec.KeyedJaggedTensor`` (see :func:`batch_to_kjt_parts`)."""
    tr = _require_torchrec()
    parts = batch_to_kjt_parts(batch, schema, padded_sequences)
    return tr.KeyedJaggedTensor(keys=list(parts.keys), values=parts.values, lengths=parts.lengths)


# ---- weight transfer -----------------------------------------------------------------------
def split_fused(fused: FusedEmbedding) -> list[torch.Tensor]:
    """Copies of each field's ``(vocab, dim)`` rows of a fused table, through its offsets."""
    return [fused.field_rows(i).detach().clone() for i in range(len(fused.vocab_sizes))]


@torch.no_grad()
def fuse_tables(tables: Sequence[torch.Tensor], fused: FusedEmbedding) -> None:
    """Write per-field tables back into a fused table (the inverse of :func:`split_fused`)."""
    if len(tables) != len(fused.vocab_sizes):
        raise ValueError(f"{len(tables)} tables for a fused table of {len(fused.vocab_sizes)}")
    for i, (t, v) in enumerate(zip(tables, fused.vocab_sizes, strict=True)):
        if tuple(t.shape) != (v, fused.dim):
            raise ValueError(f"table {i} has shape {tuple(t.shape)}, expected {(v, fused.dim)}")
    rows = torch.cat([t.to(fused.weight.device, fused.weight.dtype) for t in tables])
    fused.weight[: rows.shape[0]].copy_(rows)


def split_feature_embedding(
    embedding: FeatureEmbedding, specs: Sequence[TableSpec]
) -> dict[str, torch.Tensor]:
    """Table name -> copy of its rows in ``embedding`` (a recforge-trained model's tables)."""
    out = {}
    for s in specs:
        fused: FusedEmbedding = embedding.tables[s.fused_key]  # type: ignore[assignment]
        if fused.vocab_sizes[s.fused_index] != s.num_embeddings or fused.dim != s.embedding_dim:
            raise ValueError(f"table {s.name!r} does not match the fused table {s.fused_key!r}")
        out[s.name] = fused.field_rows(s.fused_index).detach().clone()
    return out


def load_feature_embedding(
    embedding: FeatureEmbedding, tables: Mapping[str, torch.Tensor], specs: Sequence[TableSpec]
) -> None:
    """Write per-table weights (e.g. from a TorchRec collection) into ``embedding``'s tables."""
    by_key: dict[str, list[TableSpec]] = {}
    for s in specs:
        by_key.setdefault(s.fused_key, []).append(s)
    for key, group in by_key.items():
        group = sorted(group, key=lambda s: s.fused_index)
        fuse_tables([tables[s.name] for s in group], embedding.tables[key])  # type: ignore[arg-type]


# ---- the TorchRec-backed embedding layer ----------------------------------------------------
class TorchRecEmbedding(FieldVectors):
    """:class:`FeatureEmbedding`'s output contract over TorchRec collections (shardable).

    The categorical tables live in an ``EmbeddingCollection`` (``pooled=False``: every feature
    unpooled, sequences sent with their padding so :meth:`sequence` is ``(B, L, D)``) or an
    ``EmbeddingBagCollection`` (``pooled=True``: mean-pooled bags, the cheaper all-to-all; no
    :meth:`sequence`). The small dense-numeric vectors stay an ordinary parameter, replicated by
    data parallelism. Build on ``device="meta"`` to let ``DistributedModelParallel`` materialise
    only each rank's shards.

    Args:
        schema: A fitted schema.
        dim: Override of every field's embedding dimension.
        pooled: Use an ``EmbeddingBagCollection`` (see above).
        pool_sequences: Include mean-pooled sequences in :meth:`forward`.
        include_dense: Include dense numerics (``x_j * v_j``) in :meth:`forward`.
        device: Device of the collection (``"meta"`` before sharding).
        stacked: Also offer :class:`~recforge.layers.embedding.StackedInput`'s ``stack`` and
            ``stacked_dim`` (DCN, Wide & Deep, Deep Crossing; use with ``include_dense=False``).

    Raises:
        ImportError: TorchRec is not installed.
    """

    def __init__(
        self,
        schema: Schema,
        dim: int | None = None,
        pooled: bool = False,
        pool_sequences: bool = True,
        include_dense: bool = True,
        device: torch.device | str | None = None,
        stacked: bool = False,
    ) -> None:
        super().__init__()
        tr = _require_torchrec()
        self.schema = schema
        self.pooled = pooled
        self.pool_sequences = pool_sequences
        self.include_dense = include_dense
        self.specs = embedding_configs(schema, dim)
        configs = to_torchrec_configs(self.specs, pooled=pooled)
        dev = torch.device(device) if device is not None else None
        if pooled:
            self.collection = tr.EmbeddingBagCollection(tables=configs, device=dev)
        else:
            self.collection = tr.EmbeddingCollection(tables=configs, device=dev)
        self._prefix = "embedding_bags." if pooled else "embeddings."

        def dim_of(f: Field) -> int:
            return dim if dim is not None else schema.dim_of(f)

        self._feature_dim = {n: s.embedding_dim for s in self.specs for n in s.feature_names}
        self._dense_dims = [dim_of(f) for f in schema.dense_fields] if include_dense else []
        self.dims = tuple(sorted({s.embedding_dim for s in self.specs} | set(self._dense_dims)))
        self.dense_weight = nn.ParameterDict()
        for d in sorted(set(self._dense_dims)):
            n = self._dense_dims.count(d)
            self.dense_weight[str(d)] = nn.Parameter(torch.randn(n, d) * 1e-2)
        self.output_dims = tuple(
            [self._feature_dim[f.name] for f in schema.sparse_fields]
            + self._dense_dims
            + (
                [self._feature_dim[s.name] for s in schema.sequence_fields]
                if pool_sequences
                else []
            )
        )

        self.stacked = stacked
        self.stacked_dim = self.output_dim + len(schema.dense_fields)

    def stack(self, batch: Batch, embedded: torch.Tensor | None = None) -> torch.Tensor:
        """``[flat(batch); batch.dense]`` as :meth:`StackedInput.stack` (needs ``stacked``)."""
        if not self.stacked:
            raise ValueError("stack() needs TorchRecEmbedding(..., stacked=True)")
        emb = self.flat(batch) if embedded is None else embedded
        return torch.cat([emb, batch.dense], dim=1)

    def _lookup(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Feature name -> ``(B, D)`` (sparse fields, pooled sequences) or ``(B, L, D)``."""
        from torchrec import KeyedJaggedTensor

        n = len(batch)
        rows = _LOOKUP_ROWS.get()
        if rows is not None and rows > n:  # see padded_lookups
            index = torch.cat([torch.arange(n), torch.full((rows - n,), n - 1)])
            batch = batch.select(index.to(batch.sparse.device))
        parts = batch_to_kjt_parts(batch, self.schema, padded_sequences=not self.pooled)
        kjt = KeyedJaggedTensor(keys=list(parts.keys), values=parts.values, lengths=parts.lengths)
        out = self.collection(kjt)
        if self.pooled:
            # KeyedTensor: name -> (B, D), sequences already mean-pooled
            return {k: v[:n] for k, v in out.to_dict().items()}
        B = len(batch)
        result = {}
        for f in self.schema.sparse_fields:
            result[f.name] = out[f.name].values()[:n]  # one id per sample: (n, D)
        for s in self.schema.sequence_fields:
            L = batch.sequences[s.name].shape[1]
            result[s.name] = out[s.name].values().view(B, L, -1)[:n]  # padded: (n, L, D)
        return result

    def _field_vectors(self, batch: Batch) -> list[torch.Tensor]:
        emb = self._lookup(batch)
        out = [emb[f.name][:, None] for f in self.schema.sparse_fields]
        if self._dense_dims:
            counters = dict.fromkeys(self.dense_weight, 0)
            for j, d in enumerate(self._dense_dims):
                key = str(d)
                out.append(batch.dense[:, j, None, None] * self.dense_weight[key][counters[key]])
                counters[key] += 1
        if self.pool_sequences:
            for s in self.schema.sequence_fields:
                v = emb[s.name]
                pooled = v if self.pooled else masked_mean(v, batch.lengths[s.name])
                out.append(pooled[:, None])
        return out

    def sparse_only(self, batch: Batch) -> torch.Tensor:
        """Embeddings of the sparse fields only: ``(B, Fs, D)``."""
        emb = self._lookup(batch)
        return torch.stack([emb[f.name] for f in self.schema.sparse_fields], dim=1)

    def field(self, batch: Batch, name: str) -> torch.Tensor:
        """Embedding of one sparse field ``(B, D)`` (the whole batch is looked up once)."""
        return self._lookup(batch)[name]

    def sequence(self, batch: Batch, name: str) -> torch.Tensor:
        """Embedded behaviour sequence ``(B, L, D)``; padded positions embed row 0."""
        if self.pooled:
            raise ValueError("a pooled TorchRecEmbedding keeps only mean-pooled sequences")
        return self._lookup(batch)[name]

    @property
    def state_prefix(self) -> str:
        """Prefix of the table weights in the collection's ``state_dict``."""
        return self._prefix

    # ---- weights in and out ------------------------------------------------------------
    def tables(self) -> dict[str, torch.Tensor]:
        """Table name -> copy of its full weight (unsharded collection only)."""
        state = self.collection.state_dict()
        return {
            s.name: state[f"{self._prefix}{s.name}.weight"].detach().clone() for s in self.specs
        }

    @torch.no_grad()
    def load_from(self, embedding: FeatureEmbedding) -> None:
        """Copy a recforge :class:`FeatureEmbedding`'s weights in (before sharding)."""
        tables = split_feature_embedding(embedding, self.specs)
        state = {f"{self._prefix}{k}.weight": v for k, v in tables.items()}
        self.collection.load_state_dict(state, strict=True)
        for key, w in self.dense_weight.items():
            w.copy_(embedding.dense_weight[key])

    @torch.no_grad()
    def store_into(self, embedding: FeatureEmbedding) -> None:
        """Copy the weights back into a recforge :class:`FeatureEmbedding` (e.g. to serve)."""
        load_feature_embedding(embedding, self.tables(), self.specs)
        for key, w in self.dense_weight.items():
            embedding.dense_weight[key].copy_(w)


def shard_model(
    model: nn.Module,
    device: torch.device,
    sharding_types: Mapping[str, str] | None = None,
    process_group: Any = None,
) -> Any:
    """Wrap a model holding a :class:`TorchRecEmbedding` in ``DistributedModelParallel``.

    TorchRec's planner assigns each table a sharding (``"table_wise"``, ``"row_wise"``,
    ``"column_wise"``, ``"table_row_wise"``, ...) and devices under the topology's memory; the
    embedding collection is sharded, every other parameter (MLPs, the dense-numeric vectors) is
    wrapped in ``DistributedDataParallel``. Run under ``torchrun`` with the process group
    initialised (NCCL on GPUs); every rank calls this with the same arguments.

    Args:
        model: The model (its collection ideally built on ``device="meta"``).
        device: This rank's device.
        sharding_types: Optional table name -> sharding type constraint for the planner.
        process_group: Defaults to the global process group.

    Returns:
        The ``DistributedModelParallel`` module.
    """
    _require_torchrec()
    import torch.distributed as dist
    from torchrec.distributed import DistributedModelParallel
    from torchrec.distributed.planner import EmbeddingShardingPlanner, Topology
    from torchrec.distributed.planner.types import ParameterConstraints

    pg = process_group or dist.group.WORLD
    constraints = {
        name: ParameterConstraints(sharding_types=[kind])
        for name, kind in (sharding_types or {}).items()
    }
    planner = EmbeddingShardingPlanner(
        topology=Topology(world_size=dist.get_world_size(pg), compute_device=device.type),
        constraints=constraints or None,
    )
    plan = planner.collective_plan(model, pg=pg)
    logger.info("sharding plan:\n%s", plan)
    return DistributedModelParallel(module=model, device=device, plan=plan)
