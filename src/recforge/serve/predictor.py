"""An embeddable predictor over a saved bundle, and a slot that hot-swaps it.

:class:`Predictor` scores raw records (a list of dicts, a pyarrow Table or a pandas DataFrame)
with the bundle's fitted preprocessor, so serving encodes exactly as training did (unknown
categories map to the OOV id 0). Input is validated column by column before it reaches the
preprocessor: a missing column, a value of the wrong type or an empty or oversized batch raises
:class:`RequestError`, which names the field. Pairwise models (MF, NeuralCF, AutoRec) also
answer :meth:`Predictor.recommend`; attention models (DIN, DIEN, AFM) :meth:`Predictor.explain`.

:class:`recforge.serve.slot.ModelSlot` holds the predictor a server uses and hot-swaps it.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from itertools import chain, repeat
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from recforge.cf.recommend import recommend as recommend_items
from recforge.cf.scoring import score_candidates
from recforge.data.loader import BatchLoader
from recforge.data.read.readers import FLOAT32_MAX, read_table
from recforge.explain import Explanation, explain_table
from recforge.features import CategoricalField, EncodedData, NumericField, SequenceField
from recforge.interactions import InteractionMatrix
from recforge.models import registry
from recforge.serve.bundle import Bundle, load_bundle

log = logging.getLogger(__name__)

DEFAULT_MAX_RECORDS = 4096
BACKENDS = ("torch", "onnx")
_MISSING = object()


class RequestError(ValueError):
    """Bad input to a predictor; ``field`` names the offending field, ``status`` an HTTP code.

    Args:
        message: What is wrong.
        field: The request field (input column, ``records``, ``user``...) at fault.
        status: The HTTP status a server answers with (422 invalid, 413 too large, 404
            unknown id, 400 not supported by this model).
    """

    def __init__(self, message: str, field: str | None = None, status: int = 422) -> None:
        super().__init__(message)
        self.field = field
        self.status = status


@dataclass
class Recommendation:
    """Top items for one user, best first; ``scores`` are the model's raw outputs (logits)."""

    user: Any
    items: list[Any]
    scores: list[float]


class Predictor:
    """Score raw rows with a loaded bundle.

    Args:
        bundle: A loaded bundle (:func:`recforge.serve.bundle.load_bundle`).
        max_records: Largest batch :meth:`predict` accepts.
        seen: Training interactions (raw ids in the schema's user and item source columns)
            that :meth:`recommend` excludes; AutoRec bundles carry their own.
        backend: What runs the forward pass of :meth:`predict`: ``torch`` (the eager model) or
            ``onnx`` (the model exported to ONNX when the predictor is built, checked against
            eager, and run by ONNX Runtime; needs the ``export`` extra). ``recommend`` and
            ``explain`` always use the eager model.
    """

    def __init__(
        self,
        bundle: Bundle,
        max_records: int = DEFAULT_MAX_RECORDS,
        seen: pa.Table | None = None,
        backend: str = "torch",
    ) -> None:
        if max_records < 1:
            raise ValueError("max_records must be >= 1")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.bundle = bundle
        self.max_records = int(max_records)
        self.schema = bundle.preprocessor.schema
        self.spec = registry.get(bundle.model_name)
        self.bundle_id = _bundle_id(bundle.folder)
        self.loaded_at = time.time()
        self.generation = 0  # set by ModelSlot when it publishes this predictor
        self._device = next(iter(bundle.model.parameters()), torch.zeros(0)).device
        self._seen = self._seen_matrix(seen) if seen is not None else None
        self.backend = backend
        self._onnx = _onnx_runner(bundle) if backend == "onnx" else None

    @classmethod
    def load(
        cls,
        path: str | Path,
        max_records: int = DEFAULT_MAX_RECORDS,
        seen: str | Path | pa.Table | None = None,
        device: str = "cpu",
        mmap: bool = False,
        backend: str = "torch",
    ) -> Predictor:
        """Load the bundle at ``path`` (``seen`` may be a CSV/TSV/Parquet path or a table);
        ``mmap`` memory-maps the weights (:func:`recforge.serve.bundle.load_bundle`)."""
        bundle = load_bundle(path, device=device, mmap=mmap)
        return cls(bundle, max_records=max_records, seen=read_seen(seen), backend=backend)

    # ---- properties ----------------------------------------------------------------------
    @property
    def model_name(self) -> str:
        return self.bundle.model_name

    @property
    def input_columns(self) -> list[str]:
        """Source columns every record must carry."""
        return self.schema.source_columns(with_label=False)

    @property
    def explainable(self) -> bool:
        return self.bundle.model.explainable

    def metadata(self) -> dict[str, Any]:
        """Model name, params, schema, inputs and training metrics (JSON-ready)."""
        meta = self.bundle.meta
        return {
            "model": self.model_name,
            "paper": self.spec.paper,
            "family": self.spec.family,
            "params": meta.get("params", {}),
            "task": self.bundle.task,
            "bundle": self.bundle_id,
            "generation": self.generation,
            "path": str(self.bundle.folder) if self.bundle.folder else None,
            "format": meta.get("format"),
            "recforge_version": meta.get("version"),
            "loaded_at": self.loaded_at,
            "inputs": {f.source: f.kind for f in self.schema.fields},
            "schema": self.schema.to_dict(),
            "max_records": self.max_records,
            "pairwise": self.spec.pairwise,
            "explainable": self.explainable,
            "training_metrics": self.bundle.training_metrics(),
        }

    # ---- scoring -------------------------------------------------------------------------
    def predict(self, data: list[dict[str, Any]] | pa.Table | Any) -> np.ndarray:
        """Scores of raw rows: probabilities (binary/ranking tasks) or values (regression).

        Args:
            data: A list of records (dicts of column -> value), a pyarrow Table or a pandas
                DataFrame with the schema's source columns.

        Returns:
            ``(N,)`` float32 scores, one per row, in input order.

        Raises:
            RequestError: Empty or oversized batch, missing column, wrong value type.
        """
        return self.score_encoded(self._encode(self.to_table(data)))

    def predict_many(self, requests: list[list[dict[str, Any]]]) -> list[np.ndarray | Exception]:
        """Score several requests' records in one forward pass; each gets its own rows back.

        The records of all requests are converted and encoded as one columnar batch. When that
        fails (a malformed record somewhere), each request is validated and encoded on its own,
        so the error is reported for, and only for, the request that carries it; the others are
        still scored together.

        Args:
            requests: Each request's records (a list of dicts, as :meth:`predict` takes).

        Returns:
            One entry per request, in order: its ``(n_i,)`` float32 scores, or the exception
            that rejects it (a :class:`RequestError` for bad input; anything else is a bug,
            logged, and still confined to its request).
        """
        out: list[np.ndarray | Exception | None] = [None] * len(requests)
        try:  # the fast path: one conversion and one encoding for every record
            if not all(map(isinstance, requests, repeat(list))):
                raise RequestError("records must be a list", field="records")
            sizes = list(map(len, requests))
            for n in sizes:
                self._check_size(n)
            merged = requests[0] if len(requests) == 1 else list(chain.from_iterable(requests))
            parts = [self._encode(self.to_table(merged, check_size=False))]
            ok = list(range(len(requests)))
        except Exception:  # find the request(s) at fault; the rest are scored together
            parts, ok, sizes = [], [], [0] * len(requests)
            for i, records in enumerate(requests):
                try:
                    parts.append(self._encode(self.to_table(records)))
                    ok.append(i)
                    sizes[i] = len(records)
                except RequestError as exc:
                    out[i] = exc
                except Exception as exc:  # not bad input: a bug, but only this request's
                    log.exception("encoding request %d of a batch failed", i)
                    out[i] = exc
        if ok:
            encoded = parts[0] if len(parts) == 1 else _concat_encoded(parts)
            scores = self.score_encoded(encoded)
            bounds = np.cumsum([sizes[i] for i in ok])
            for i, chunk in zip(ok, np.split(scores, bounds[:-1]), strict=True):
                out[i] = chunk
        return out  # type: ignore[return-value]

    def score_encoded(self, encoded: EncodedData) -> np.ndarray:
        """Scores of already encoded rows in one forward pass (probabilities or values)."""
        if self._onnx is not None:
            from recforge.serve.export import encoded_inputs

            return self._onnx(encoded_inputs(encoded, self.schema))["scores"]
        batch = next(iter(BatchLoader(encoded, len(encoded)))).to(self._device)
        with torch.inference_mode():
            logits = self.bundle.model(batch).float()
            out = logits if self.bundle.task == "regression" else torch.sigmoid(logits)
        return out.cpu().numpy()

    def to_table(
        self, data: list[dict[str, Any]] | pa.Table | Any, check_size: bool = True
    ) -> pa.Table:
        """Validate ``data`` and return it as a table of the input columns.

        Args:
            data: Records, a table or a DataFrame.
            check_size: Refuse an empty batch or one over ``max_records`` (off for the merged
                batch of :meth:`predict_many`, whose requests were checked one by one).
        """
        if isinstance(data, pa.Table):
            table = data
        elif isinstance(data, list):
            if check_size:
                self._check_size(len(data))
            table = self._records_table(data)
        elif hasattr(data, "columns") and hasattr(data, "dtypes"):  # a pandas DataFrame
            table = pa.Table.from_pandas(data, preserve_index=False)
        else:
            raise RequestError(
                f"expected a list of records, a pyarrow Table or a DataFrame, got "
                f"{type(data).__name__}",
                field="records",
            )
        if check_size:
            self._check_size(table.num_rows)
        for col in self.input_columns:
            if col not in table.column_names:
                raise RequestError(f"missing required input field {col!r}", field=col)
        for f in self.schema.fields:
            _check_type(f, table.column(f.source).type)
            if isinstance(f, NumericField):
                _check_finite(f, table.column(f.source))
        return table

    def _check_size(self, n: int) -> None:
        if n == 0:
            raise RequestError("records: empty batch, send at least one record", field="records")
        if n > self.max_records:
            raise RequestError(
                f"records: a batch of {n} records exceeds the limit of {self.max_records}",
                field="records",
                status=413,
            )

    def _records_table(self, records: list[dict[str, Any]]) -> pa.Table:
        """Records -> columns in Arrow's C++ converter; a record without a required key is an
        error. Only when the fast path fails is the batch walked column by column, to name
        the record and field at fault."""
        keys = frozenset(self.input_columns)
        is_dict = map(isinstance, records, repeat(dict))  # C-level passes, no per-record bytecode
        if all(is_dict) and all(map(keys.issubset, records)):
            try:
                table = pa.Table.from_struct_array(pa.array(records))
                return table.select(self.input_columns)
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
                pass  # mixed types in some column: find it below
        return self._records_table_checked(records)

    def _records_table_checked(self, records: list[dict[str, Any]]) -> pa.Table:
        """The slow, column-by-column conversion that names the offending record/field."""
        if not all(isinstance(r, dict) for r in records):
            bad = next(i for i, r in enumerate(records) if not isinstance(r, dict))
            raise RequestError(f"record {bad} is not an object", field=f"records[{bad}]")
        columns = {}
        for col in self.input_columns:
            values = [r.get(col, _MISSING) for r in records]
            if any(v is _MISSING for v in values):
                row = next(i for i, v in enumerate(values) if v is _MISSING)
                raise RequestError(
                    f"record {row} has no field {col!r} (send null for a missing value)",
                    field=col,
                )
            try:
                columns[col] = pa.array(values)
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError) as exc:
                raise RequestError(f"field {col!r} has values of mixed or wrong types ({exc})",
                                   field=col) from exc  # fmt: skip
        return pa.table(columns)

    def _encode(self, table: pa.Table) -> EncodedData:
        try:
            return self.bundle.preprocessor.transform(table, with_label=False)
        except (ValueError, TypeError, pa.ArrowException) as exc:
            field = getattr(exc, "column", None)
            raise RequestError(f"cannot encode the input: {exc}", field=field) from exc

    # ---- recommend -----------------------------------------------------------------------
    def recommend(
        self,
        user: Any,
        k: int = 10,
        candidates: list[Any] | None = None,
        exclude_seen: bool = True,
    ) -> Recommendation:
        """The ``k`` best items for ``user`` (raw id), from all items or from ``candidates``.

        Raises:
            RequestError: The model does not score pairs (400), ``user`` or a candidate is
                unknown (404), ``k`` is out of range, or ``exclude_seen`` is asked for without
                training interactions (400).
        """
        out = self.recommend_many([{"user": user, "k": k, "candidates": candidates,
                                    "exclude_seen": exclude_seen}])[0]  # fmt: skip
        if isinstance(out, RequestError):
            raise out
        return out

    def recommend_many(self, requests: list[dict[str, Any]]) -> list[Recommendation | RequestError]:
        """Several :meth:`recommend` requests (dicts of its keyword arguments) at once.

        Requests over the whole catalogue are scored together, one pass for all their users
        (per ``exclude_seen`` setting), each cut to its own ``k``; requests with candidates are
        ranked one by one. A bad request gets its :class:`RequestError`, the others their
        :class:`Recommendation`, in order.
        """
        out: list[Recommendation | RequestError | None] = [None] * len(requests)
        checked: list[tuple[int, Any, int, list[Any] | None, InteractionMatrix | None, int]] = []
        for i, req in enumerate(requests):
            try:
                user, k = req["user"], req.get("k", 10)
                candidates = req.get("candidates")
                uid, seen = self._check_recommend(user, k, req.get("exclude_seen", True))
                checked.append((i, user, k, candidates, seen, int(uid[0])))
            except RequestError as exc:
                out[i] = exc
        model = self.bundle.model
        whole = [c for c in checked if c[3] is None]
        with torch.inference_mode():
            for excluding in (True, False):  # one pass per exclude_seen setting
                group = [c for c in whole if (c[4] is not None) == excluding]
                if not group:
                    continue
                uids = np.array([c[5] for c in group], dtype=np.int64)
                kmax = max(c[2] for c in group)
                items, scores = recommend_items(
                    model, uids, kmax, exclude_seen=excluding, seen=group[0][4]
                )
                for row, (i, user, k, _, _, _) in enumerate(group):
                    out[i] = self._recommendation(user, items[row, :k], scores[row, :k])
            for i, user, k, candidates, seen, uid in checked:
                if candidates is None:
                    continue
                try:
                    items, scores = self._rank_candidates(np.array([uid]), candidates, k, seen)
                    out[i] = self._recommendation(user, items, scores)
                except RequestError as exc:
                    out[i] = exc
        return out  # type: ignore[return-value]

    def _check_recommend(
        self, user: Any, k: Any, exclude_seen: bool
    ) -> tuple[np.ndarray, InteractionMatrix | None]:
        """The user's local id and the interactions to exclude, or a RequestError."""
        if not self.spec.pairwise:
            raise RequestError(
                f"model {self.model_name!r} does not score (user, item) pairs; /recommend needs "
                "MF, GMF, NCF-MLP, NeuMF, AutoRec or popularity",
                field="model",
                status=400,
            )
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= self.max_records:
            raise RequestError(f"k must be an integer in [1, {self.max_records}]", field="k")
        uid = self._ids(self.schema.user_key, [user], "user")
        if uid[0] == 0:
            raise RequestError(f"unknown user {user!r}", field="user", status=404)
        seen = None
        if exclude_seen:
            seen = self._seen
            if seen is None:
                seen = self.bundle.model.interactions()
            if seen is None:
                raise RequestError(
                    "exclude_seen needs the training interactions: start the server with "
                    "--seen FILE or send exclude_seen=false",
                    field="exclude_seen",
                    status=400,
                )
        return uid, seen

    def _recommendation(self, user: Any, items: np.ndarray, scores: np.ndarray) -> Recommendation:
        """Local item ids (``<= 0``: padding, dropped) -> raw ids."""
        keep = items > 0
        vocab = self.bundle.preprocessor.vocabs[self.schema.item_key]
        raw = vocab.take(pa.array(items[keep] - 1))
        return Recommendation(user, raw.to_pylist(), scores[keep].astype(float).tolist())

    def _rank_candidates(
        self, uid: np.ndarray, candidates: list[Any], k: int, seen: InteractionMatrix | None
    ) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(candidates, list) or not candidates:
            raise RequestError("candidates must be a non-empty list", field="candidates")
        self._check_size(len(candidates))
        cand = self._ids(self.schema.item_key, candidates, "candidates")
        if (cand == 0).any():
            unknown = [candidates[i] for i in np.flatnonzero(cand == 0)[:5]]
            raise RequestError(f"unknown candidate items {unknown}", field="candidates",
                               status=404)  # fmt: skip
        cand = np.unique(cand)  # a duplicate candidate is ranked once
        scores = score_candidates(self.bundle.model, uid, cand[None, :])[0]
        if seen is not None:
            hit = seen.contains(np.full(len(cand), uid[0]), cand)
            scores[torch.as_tensor(hit, device=scores.device)] = -torch.inf
        top = torch.topk(scores, min(k, len(cand)))
        vals, idx = top.values.cpu().numpy(), top.indices.cpu().numpy()
        items = np.where(np.isneginf(vals), -1, cand[idx])
        return items, vals

    def _ids(self, field: str | None, values: list[Any], what: str) -> np.ndarray:
        """Raw ids -> local ids with the training vocabulary (0 = unknown)."""
        if field is None or field not in self.bundle.preprocessor.vocabs:
            raise RequestError(f"the model has no vocabulary for {what}", field=what, status=400)
        try:
            arr = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise RequestError(f"{what}: mixed or wrong id types ({exc})", field=what) from exc
        if not (pa.types.is_string(arr.type) or pa.types.is_integer(arr.type)):
            raise RequestError(f"{what} must be string or integer ids, got {arr.type}", field=what)
        return self.bundle.preprocessor.encode_ids(field, arr)

    def _seen_matrix(self, table: pa.Table) -> InteractionMatrix:
        user_key, item_key = self.schema.user_key, self.schema.item_key
        if user_key is None or item_key is None:
            raise ValueError("seen interactions need a schema with user and item keys")
        cols = [self.schema.field(user_key).source, self.schema.field(item_key).source]
        missing = [c for c in cols if c not in table.column_names]
        if missing:
            raise ValueError(f"seen interactions lack columns {missing}")
        pre = self.bundle.preprocessor
        users = pre.encode_ids(user_key, table.column(cols[0]))
        items = pre.encode_ids(item_key, table.column(cols[1]))
        shape = (self.schema.field(user_key).vocab_size, self.schema.field(item_key).vocab_size)
        return InteractionMatrix.from_coo(users, items, shape=shape)

    # ---- explain -------------------------------------------------------------------------
    def explain(self, record: dict[str, Any]) -> Explanation:
        """Attention weights behind the prediction for one raw record (DIN, DIEN, AFM).

        Raises:
            RequestError: The model has no attention (400) or the record is invalid.
        """
        if not self.explainable:
            raise RequestError(
                f"model {self.model_name!r} exposes no attention weights; /explain needs DIN, "
                "DIEN or AFM",
                field="model",
                status=400,
            )
        if not isinstance(record, dict):
            raise RequestError("record must be an object", field="record")
        table = self.to_table([record])
        try:
            with torch.inference_mode():
                return explain_table(self.bundle, table, 0)
        except (ValueError, TypeError, pa.ArrowException) as exc:
            raise RequestError(f"cannot explain the record: {exc}", field="record") from exc


def _check_type(f: Any, typ: pa.DataType) -> None:
    """Raise a RequestError naming ``f.source`` when its column type cannot be encoded."""
    if pa.types.is_null(typ):
        return
    if pa.types.is_dictionary(typ):
        typ = typ.value_type
    if isinstance(f, NumericField):  # true/false is not a number here (it would score as 1/0)
        ok = pa.types.is_integer(typ) or pa.types.is_floating(typ)
        want = "a number"
    elif isinstance(f, CategoricalField):
        ok = (
            pa.types.is_string(typ)
            or pa.types.is_large_string(typ)
            or pa.types.is_integer(typ)
            or pa.types.is_floating(typ)
        )
        want = "a string or integer id"
    elif isinstance(f, SequenceField):
        item = typ.value_type if pa.types.is_list(typ) or pa.types.is_large_list(typ) else None
        ok = (
            pa.types.is_string(typ)
            or pa.types.is_large_string(typ)
            or (
                item is not None
                and (
                    pa.types.is_string(item) or pa.types.is_integer(item) or pa.types.is_null(item)
                )
            )
        )
        want = "a list of ids (or a delimited string)"
    else:  # a field kind added later: let the preprocessor decide
        return
    if not ok:
        raise RequestError(f"field {f.source!r} must be {want}, got {typ}", field=f.source)


def _check_finite(f: Any, column: pa.ChunkedArray) -> None:
    """NaN, Infinity and values beyond float32 (``1e400`` parses as inf) are refused, naming
    the field; a missing value is written as null (or left out) and scores as the fill value."""
    if pa.types.is_null(column.type):
        return
    x = column.to_numpy(zero_copy_only=False).astype(np.float64)
    present = ~np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    with np.errstate(invalid="ignore"):
        bad = present & ~(np.isfinite(x) & (np.abs(x) <= FLOAT32_MAX))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise RequestError(
            f"field {f.source!r} must be a finite number within float32's range (record {row} "
            f"has {float(x[row])!r}); send null for a missing value",
            field=f.source,
        )


def _onnx_runner(bundle: Bundle) -> Any:
    """Export ``bundle``'s model to ONNX (parity-checked against eager) and open an ONNX Runtime
    session on it (intra-op threads as torch's). The fast legacy exporter is tried first, the
    dynamo exporter when it fails."""
    import tempfile

    from recforge.serve.export import export_model, load_artefact

    schema = bundle.preprocessor.schema
    with tempfile.TemporaryDirectory(prefix="recforge-onnx-") as tmp:
        path = Path(tmp) / "model.onnx"
        try:
            specs = export_model(bundle.model, schema, path, "onnx", bundle.task,
                                 bundle.model_name, onnx_exporter="legacy")  # fmt: skip
        except Exception as exc:  # any exporter failure: the other one may succeed
            log.info("legacy ONNX export failed (%s); trying the dynamo exporter", exc)
            specs = export_model(bundle.model, schema, path, "onnx", bundle.task,
                                 bundle.model_name, onnx_exporter="dynamo")  # fmt: skip
        return load_artefact(path, "onnx", [s.name for s in specs], torch.get_num_threads())


def _concat_encoded(parts: list[EncodedData]) -> EncodedData:
    """Rows of several encoded batches, one after another (column by column, no per-row work)."""
    arrays = [p.arrays() for p in parts]
    return EncodedData.from_arrays({k: np.concatenate([a[k] for a in arrays]) for k in arrays[0]})


def _bundle_id(folder: Path | None) -> str:
    """A short digest of the bundle's metadata and weights (changes with every new bundle)."""
    if folder is None:
        return "in-memory"
    h = hashlib.sha256()
    for name in ("meta.json", "model.pt"):
        path = Path(folder) / name
        if path.exists():
            h.update(path.read_bytes())
    return h.hexdigest()[:12]


def read_seen(seen: str | Path | pa.Table | None) -> pa.Table | None:
    """The training interactions ``recommend`` excludes: a table, or read from a file path."""
    if seen is None or isinstance(seen, pa.Table):
        return seen
    return read_table(seen)
