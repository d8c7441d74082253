"""Feature declarations, the immutable schema, and the typed batch every model consumes.

A :class:`Schema` is declarative: it lists fields (categorical, numeric, sequence), the label
column and optional keys (user, item, time). Fitting a preprocessor on training data returns
a *fitted* schema in which every categorical and sequence field carries its ``vocab_size``
(row 0 of each field is reserved for out-of-vocabulary ids and sequence padding). Models are
built from a fitted schema; the schema is saved as JSON with every model bundle.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import torch

Group = Literal["user", "item", "context"]
Transform = Literal["none", "log", "standard", "minmax"]
Task = Literal["binary", "regression", "ranking"]

OOV_ID = 0  # reserved id of every field: unknown category, and padding in sequences
_GROUPS = ("user", "item", "context")


def _check_group(name: str, group: str) -> None:
    if group not in _GROUPS:
        raise ValueError(f"field {name!r}: group must be one of {_GROUPS}, got {group!r}")


@dataclass(frozen=True)
class FieldBase:
    """What every field declares: its name, group, source column and embedding dimension.

    Args:
        name: Field name (also the source column unless ``column`` is given).
        group: ``user``, ``item`` or ``context``; models such as DRN and NeuralCF use it.
        column: Source column name, defaults to ``name``.
        embedding_dim: Per-field dimension; ``None`` uses ``Schema.embedding_dim``.
    """

    name: str
    group: Group = "context"
    column: str | None = None
    embedding_dim: int | None = None
    kind: ClassVar[str]

    def __post_init__(self) -> None:
        _check_group(self.name, self.group)

    @property
    def source(self) -> str:
        return self.column or self.name


@dataclass(frozen=True)
class VocabularyField(FieldBase):
    """A field whose values are encoded through a vocabulary fitted on the training data.

    Args:
        min_count: Values seen fewer times in training map to the OOV id.
        vocab_size: Rows of this field including the reserved OOV row 0. Set by fitting.
    """

    min_count: int = 1
    vocab_size: int = 0


@dataclass(frozen=True)
class CategoricalField(VocabularyField):
    """A categorical column encoded to integer ids (see :class:`VocabularyField`).

    Args:
        hash_buckets: When > 0, ids are ``1 + hash(value) % hash_buckets`` (no vocabulary).
    """

    hash_buckets: int = 0
    kind: ClassVar[str] = "categorical"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.min_count < 1 or self.hash_buckets < 0:
            raise ValueError(f"field {self.name!r}: min_count >= 1 and hash_buckets >= 0")


@dataclass(frozen=True)
class NumericField(FieldBase):
    """A numeric column; float32 after fill and transform, or bucketed into a categorical.

    Args:
        fill_value: Value used for missing entries (before the transform).
        transform: ``none``, ``log`` (``log1p`` of values clipped at 0; the Criteo recipe),
            ``standard`` (z-score with training mean/std) or ``minmax`` (to [0, 1]).
        buckets: When > 0 the value is cut at training quantiles into this many buckets and the
            field becomes categorical (ids 1..buckets, 0 reserved).
    """

    fill_value: float = 0.0
    transform: Transform = "none"
    buckets: int = 0
    kind: ClassVar[str] = "numeric"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.transform not in ("none", "log", "standard", "minmax"):
            raise ValueError(f"field {self.name!r}: unknown transform {self.transform!r}")

    @property
    def is_bucketed(self) -> bool:
        return self.buckets > 0

    @property
    def vocab_size(self) -> int:
        return self.buckets + 1 if self.buckets else 0


@dataclass(frozen=True)
class SequenceField(VocabularyField):
    """A variable-length behaviour sequence (e.g. the ids of recently clicked items).

    The source column holds a list (Parquet) or a ``separator``-joined string (CSV), oldest
    first. The most recent ``max_len`` entries are kept, left-aligned and padded with id 0;
    the batch carries the true lengths for masking. A sequence that shares another field's
    embedding keeps ``vocab_size`` 0 and ignores ``min_count`` and ``embedding_dim``.

    Args:
        group: Usually ``user``.
        max_len: Maximum kept length.
        share_embedding_with: Name of a categorical field whose vocabulary and embedding rows
            this sequence uses (clicked item ids share the item-id table).
        separator: Token separator for string columns.
        aligned_with: Another sequence field describing the same behaviours position by
            position (the categories of the clicked items): every row must give both the same
            length, which encoding checks (a mismatch is an error naming row and fields, never
            a silent misalignment).
    """

    group: Group = "user"
    max_len: int = 50
    share_embedding_with: str | None = None
    separator: str = "|"
    aligned_with: str | None = None
    kind: ClassVar[str] = "sequence"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_len < 1:
            raise ValueError(f"field {self.name!r}: max_len must be >= 1")


Field = CategoricalField | NumericField | SequenceField
_KINDS: dict[str, type] = {
    "categorical": CategoricalField,
    "numeric": NumericField,
    "sequence": SequenceField,
}


@dataclass(frozen=True)
class Schema:
    """The immutable description of a dataset's features.

    Args:
        fields: The declared fields, in order.
        label: Label column name.
        task: ``binary`` (labels in {0, 1}), ``regression`` or ``ranking``.
        user_key: Name of the categorical field that identifies the user (GAUC, CF, ranking).
        item_key: Name of the categorical field that identifies the item.
        time_column: Optional raw column used for time splits and ordering.
        embedding_dim: Default embedding dimension.
    """

    fields: tuple[Field, ...]
    label: str = "label"
    task: Task = "binary"
    user_key: str | None = None
    item_key: str | None = None
    time_column: str | None = None
    embedding_dim: int = 16

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", tuple(self.fields))
        names = [f.name for f in self.fields]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"duplicate field names: {sorted(dupes)}")
        sparse_names = {f.name for f in self.sparse_fields}
        for key in (self.user_key, self.item_key):
            if key is not None and key not in sparse_names:
                raise ValueError(f"key {key!r} must name a categorical field")
        for seq in self.sequence_fields:
            target = seq.share_embedding_with
            if target is not None and target not in sparse_names:
                raise ValueError(f"sequence {seq.name!r} shares unknown field {target!r}")
            other = seq.aligned_with
            if other is not None and (
                other == seq.name or other not in {s.name for s in self.sequence_fields}
            ):
                raise ValueError(f"sequence {seq.name!r}: aligned_with {other!r} must name "
                                 "another sequence field")  # fmt: skip
        if self.task not in ("binary", "regression", "ranking"):
            raise ValueError(f"unknown task {self.task!r}")

    # ---- views -------------------------------------------------------------------------
    @property
    def sparse_fields(self) -> tuple[CategoricalField | NumericField, ...]:
        """Fields encoded as ids, in ``Batch.sparse`` column order (bucketed numerics too)."""
        return tuple(
            f
            for f in self.fields
            if isinstance(f, CategoricalField) or (isinstance(f, NumericField) and f.is_bucketed)
        )

    @property
    def dense_fields(self) -> tuple[NumericField, ...]:
        """Numeric fields kept as floats, in ``Batch.dense`` column order."""
        return tuple(f for f in self.fields if isinstance(f, NumericField) and not f.is_bucketed)

    @property
    def sequence_fields(self) -> tuple[SequenceField, ...]:
        return tuple(f for f in self.fields if isinstance(f, SequenceField))

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"no field named {name!r}; fields are {[f.name for f in self.fields]}")

    def sparse_index(self, name: str) -> int:
        """Column of field ``name`` in ``Batch.sparse``."""
        for i, f in enumerate(self.sparse_fields):
            if f.name == name:
                return i
        raise KeyError(f"{name!r} is not a categorical (sparse) field")

    def dim_of(self, f: Field) -> int:
        return f.embedding_dim or self.embedding_dim

    def vocab_of(self, f: Field) -> int:
        """Rows used by a field (a shared sequence reports its target's size)."""
        if isinstance(f, SequenceField) and f.share_embedding_with:
            return self.field(f.share_embedding_with).vocab_size
        return f.vocab_size

    def fields_in_group(self, group: Group) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if f.group == group)

    @property
    def is_fitted(self) -> bool:
        own = [f for f in self.sparse_fields] + [
            s for s in self.sequence_fields if not s.share_embedding_with
        ]
        return all(f.vocab_size > 0 for f in own)

    def replace_field(self, new: Field) -> Schema:
        fields = tuple(new if f.name == new.name else f for f in self.fields)
        return dataclasses.replace(self, fields=fields)

    def source_columns(self, with_label: bool = True) -> list[str]:
        cols = [f.source for f in self.fields]
        if with_label:
            cols.append(self.label)
        return list(dict.fromkeys(cols))

    # ---- JSON --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in dataclasses.asdict(self).items() if k != "fields"}
        out["fields"] = [{"kind": f.kind, **dataclasses.asdict(f)} for f in self.fields]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Schema:
        data = dict(data)
        fields = []
        for raw in data.pop("fields"):
            raw = dict(raw)
            kind = raw.pop("kind", None)
            if kind not in _KINDS:
                raise ValueError(f"unknown field kind {kind!r} in schema")
            fields.append(_KINDS[kind](**raw))
        return cls(fields=tuple(fields), **data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Schema:
        return cls.from_dict(json.loads(text))


@dataclass
class Batch:
    """A mini-batch of encoded features as tensors.

    Attributes:
        sparse: ``(B, Fs)`` int64 local ids of the sparse fields (0 = OOV).
        dense: ``(B, Fd)`` float32 transformed numerics.
        sequences: name -> ``(B, L)`` int64 ids, left-aligned, padded with 0.
        lengths: name -> ``(B,)`` int64 true lengths.
        label: ``(B,)`` float32 labels.
    """

    sparse: torch.Tensor
    dense: torch.Tensor
    sequences: dict[str, torch.Tensor] = field(default_factory=dict)
    lengths: dict[str, torch.Tensor] = field(default_factory=dict)
    label: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.sparse.shape[0])

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            sparse=self.sparse.to(device, non_blocking=True),
            dense=self.dense.to(device, non_blocking=True),
            sequences={k: v.to(device, non_blocking=True) for k, v in self.sequences.items()},
            lengths={k: v.to(device, non_blocking=True) for k, v in self.lengths.items()},
            label=None if self.label is None else self.label.to(device, non_blocking=True),
        )

    def select(self, index: torch.Tensor) -> Batch:
        """Rows ``index`` of this batch (used to build negatives and sub-batches)."""
        return Batch(
            sparse=self.sparse[index],
            dense=self.dense[index],
            sequences={k: v[index] for k, v in self.sequences.items()},
            lengths={k: v[index] for k, v in self.lengths.items()},
            label=None if self.label is None else self.label[index],
        )

    def with_sparse_column(self, column: int, values: torch.Tensor) -> Batch:
        """A shallow copy with one sparse column replaced (e.g. a sampled negative item)."""
        sparse = self.sparse.clone()
        sparse[:, column] = values
        return dataclasses.replace(self, sparse=sparse)


def random_batch(
    schema: Schema, batch_size: int, generator: torch.Generator | None = None
) -> Batch:
    """A batch of valid random ids, numerics and sequences for a fitted schema (tests, demos)."""
    if not schema.is_fitted:
        raise ValueError("random_batch needs a fitted schema (vocab sizes set)")
    g = generator
    sparse = (
        torch.stack(
            [
                torch.randint(0, f.vocab_size, (batch_size,), generator=g)
                for f in schema.sparse_fields
            ],
            dim=1,
        )
        if schema.sparse_fields
        else torch.zeros(batch_size, 0, dtype=torch.long)
    )
    dense = torch.randn(batch_size, len(schema.dense_fields), generator=g)
    sequences, lengths = {}, {}
    for s in schema.sequence_fields:
        lengths[s.name] = torch.randint(0, s.max_len + 1, (batch_size,), generator=g)
        ids = torch.randint(1, max(schema.vocab_of(s), 2), (batch_size, s.max_len), generator=g)
        mask = torch.arange(s.max_len)[None, :] < lengths[s.name][:, None]
        sequences[s.name] = ids * mask
    label = (torch.rand(batch_size, generator=g) < 0.5).float()
    if schema.task == "regression":
        label = torch.randn(batch_size, generator=g)
    return Batch(sparse=sparse, dense=dense, sequences=sequences, lengths=lengths, label=label)


@dataclass
class EncodedData:
    """Encoded rows ready for batching.

    Attributes:
        sparse: ``(N, Fs)`` int32 local ids.
        dense: ``(N, Fd)`` float32 numerics.
        sequences: name -> ``(N, L)`` int32 ids, left-aligned, 0-padded.
        lengths: name -> ``(N,)`` int32 true lengths.
        label: ``(N,)`` float32.
        extras: name -> ``(N,)`` arrays not fed to models (``group`` for GAUC, ``time``).
    """

    sparse: np.ndarray
    dense: np.ndarray
    label: np.ndarray
    sequences: dict[str, np.ndarray] = field(default_factory=dict)
    lengths: dict[str, np.ndarray] = field(default_factory=dict)
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.label.shape[0])

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"sparse": self.sparse, "dense": self.dense, "label": self.label}
        out.update({f"seq.{k}": v for k, v in self.sequences.items()})
        out.update({f"len.{k}": v for k, v in self.lengths.items()})
        out.update({f"extra.{k}": v for k, v in self.extras.items()})
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> EncodedData:
        def pick(prefix: str) -> dict[str, np.ndarray]:
            return {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}

        return cls(
            sparse=arrays["sparse"],
            dense=arrays["dense"],
            label=arrays["label"],
            sequences=pick("seq."),
            lengths=pick("len."),
            extras=pick("extra."),
        )

    def take(self, index: np.ndarray) -> EncodedData:
        """Rows ``index`` as a new in-memory EncodedData."""
        return EncodedData.from_arrays({k: np.asarray(v[index]) for k, v in self.arrays().items()})

    @property
    def nbytes(self) -> int:
        return sum(int(v.nbytes) for v in self.arrays().values())
