"""Export a bundle's model to TorchScript or ONNX, as a self-contained artefact folder.

Models take a :class:`~recforge.features.Batch`; an exported graph takes plain tensors instead,
one per tensor of the batch, in the order the manifest lists them::

    sparse              (batch, Fs)  int64    local ids of the sparse fields (0 = OOV)
    dense               (batch, Fd)  float32  transformed numerics
    <seq>_ids           (batch, L)   int64    one per sequence field, left-aligned, 0-padded
    <seq>_lengths       (batch,)     int64    its true lengths

(``sparse``/``dense`` are left out when the schema has no such field.) The graph returns
``logits (batch,)`` and ``scores (batch,)``: the sigmoid of the logits for binary and ranking
tasks, the logits themselves for regression, exactly what :meth:`Bundle.predict_table` returns.
The batch dimension is dynamic; sequence lengths are fixed at the schema's ``max_len`` (the
padded width the preprocessor writes).

Layout of an export folder::

    manifest.json      format, artefact, inputs (name, dtype, shape), outputs, task, versions,
                       the source bundle's meta
    model.pt | model.onnx
    schema.json        the fitted schema
    preprocessor/      the bundle's fitted preprocessor (raw records -> the inputs above)
    config.yaml        the bundle's run config, when it has one

:func:`load_exported` scores raw records through the saved preprocessor and the artefact alone
(``torch.jit.load`` or an ``onnxruntime.InferenceSession``), without recforge's model classes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from recforge.data.encode.preprocess import Preprocessor
from recforge.features import Batch, EncodedData, Schema, random_batch
from recforge.io import atomic_folder
from recforge.models.base import RecModel

log = logging.getLogger(__name__)

Format = Literal["torchscript", "onnx"]
OnnxExporter = Literal["dynamo", "legacy"]
FORMATS: tuple[str, ...] = ("torchscript", "onnx")
ONNX_EXPORTERS: tuple[str, ...] = ("dynamo", "legacy")
EXPORT_FORMAT = "recforge-export-1"
ARTEFACTS: dict[str, str] = {"torchscript": "model.pt", "onnx": "model.onnx"}
OUTPUTS: tuple[str, ...] = ("logits", "scores")
ONNX_OPSET = 18
TRACE_BATCH = 3  # rows of the example batch; parity checks use another size
PARITY_ATOL = 1e-4  # export refuses an artefact whose logits drift further than this

#: Registered models that cannot be exported, and why (``export_bundle`` raises ExportError).
#: Empty today: AutoRec, whose prediction reads its stored rating matrix, exports through
#: :meth:`RecModel.for_export` (precomputed row codes).
NOT_EXPORTABLE: dict[str, str] = {}


class ExportError(RuntimeError):
    """A model or bundle that cannot be exported, or an artefact that failed its check."""


@dataclass(frozen=True)
class InputSpec:
    """One graph input: its name, dtype, shape (``"batch"`` is dynamic) and batch source."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]
    kind: Literal["sparse", "dense", "ids", "lengths"]
    field: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dtype": self.dtype,
            "shape": list(self.shape),
            "kind": self.kind,
            "field": self.field,
        }


def input_specs(schema: Schema) -> list[InputSpec]:
    """The exported graph's inputs for ``schema``, in call order."""
    specs: list[InputSpec] = []
    if schema.sparse_fields:
        specs.append(InputSpec("sparse", "int64", ("batch", len(schema.sparse_fields)), "sparse"))
    if schema.dense_fields:
        specs.append(InputSpec("dense", "float32", ("batch", len(schema.dense_fields)), "dense"))
    for s in schema.sequence_fields:
        specs.append(InputSpec(f"{s.name}_ids", "int64", ("batch", s.max_len), "ids", s.name))
        specs.append(InputSpec(f"{s.name}_lengths", "int64", ("batch",), "lengths", s.name))
    if not specs:
        raise ExportError("the schema has no fields: nothing to feed an exported model")
    return specs


class BatchInputs(nn.Module):
    """Wraps a model so that its forward takes plain tensors and rebuilds the :class:`Batch`.

    Args:
        model: A model in eval mode.
        schema: Its fitted schema (fixes the input order, see :func:`input_specs`).
        task: The bundle's task; ``scores`` is ``sigmoid(logits)`` unless it is regression.

    Shape:
        inputs as :func:`input_specs` -> ``logits (B,)``, ``scores (B,)``.
    """

    def __init__(self, model: nn.Module, schema: Schema, task: str) -> None:
        super().__init__()
        self.model = model
        self.specs = input_specs(schema)
        self.probabilities = task != "regression"

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        named = {s.name: x for s, x in zip(self.specs, inputs, strict=True)}
        ref = inputs[0]
        sparse = named.get("sparse")
        if sparse is None:  # no sparse field: an empty (B, 0) block
            sparse = torch.zeros(ref.shape[0], 0, dtype=torch.long, device=ref.device)
        dense = named.get("dense")
        if dense is None:
            dense = torch.zeros(ref.shape[0], 0, dtype=torch.float32, device=ref.device)
        batch = Batch(
            sparse=sparse,
            dense=dense,
            sequences={s.field: named[s.name] for s in self.specs if s.kind == "ids"},
            lengths={s.field: named[s.name] for s in self.specs if s.kind == "lengths"},
        )
        logits = self.model(batch).float()  # (B,)
        scores = torch.sigmoid(logits) if self.probabilities else logits
        return logits, scores


def batch_inputs(batch: Batch, schema: Schema) -> tuple[torch.Tensor, ...]:
    """The tensors of ``batch`` in graph input order."""
    out = []
    for s in input_specs(schema):
        if s.kind == "sparse":
            out.append(batch.sparse.long())
        elif s.kind == "dense":
            out.append(batch.dense.float())
        elif s.kind == "ids":
            out.append(batch.sequences[s.field].long())
        else:
            out.append(batch.lengths[s.field].long())
    return tuple(out)


def encoded_inputs(data: EncodedData, schema: Schema) -> dict[str, np.ndarray]:
    """Graph inputs (name -> numpy array, manifest dtypes) of preprocessed rows."""
    out: dict[str, np.ndarray] = {}
    for s in input_specs(schema):
        if s.kind == "sparse":
            a = data.sparse
        elif s.kind == "dense":
            a = data.dense
        elif s.kind == "ids":
            a = data.sequences[s.field]  # type: ignore[index]
        else:
            a = data.lengths[s.field]  # type: ignore[index]
        out[s.name] = np.ascontiguousarray(a, dtype=np.dtype(s.dtype))
    return out


def _example_batch(schema: Schema, batch_size: int) -> Batch:
    batch = random_batch(schema, batch_size, torch.Generator().manual_seed(0))
    # full-length histories: any width a trace bakes in is then the padded width itself
    for s in schema.sequence_fields:
        batch.lengths[s.name] = torch.full((batch_size,), s.max_len, dtype=torch.long)
        batch.sequences[s.name] = batch.sequences[s.name].clamp(min=1)
    return batch


def export_model(
    model: RecModel,
    schema: Schema,
    path: str | Path,
    fmt: Format = "torchscript",
    task: str = "binary",
    model_name: str | None = None,
    verify: bool = True,
    onnx_exporter: OnnxExporter = "dynamo",
) -> list[InputSpec]:
    """Trace ``model`` (in eval mode) behind :class:`BatchInputs` and write one artefact file.

    Args:
        model: The model; it is put in eval mode.
        schema: Its fitted schema.
        path: The file to write (``model.pt`` or ``model.onnx``).
        fmt: ``torchscript`` (``torch.jit.trace``) or ``onnx`` (``torch.onnx.export``, dynamic
            batch axis).
        task: ``binary``, ``ranking`` or ``regression`` (how ``scores`` is derived).
        model_name: Registry name, checked against :data:`NOT_EXPORTABLE`.
        verify: Load the artefact back and compare its logits with the eager model on a batch
            of another size; raise :class:`ExportError` when they differ by more than
            :data:`PARITY_ATOL`.
        onnx_exporter: ``dynamo`` (``torch.export``-based, PyTorch's default since 2.9) or
            ``legacy`` (the TorchScript-based exporter: deprecated, but ~15x faster to run).

    Returns:
        The input specs, in call order.
    """
    if onnx_exporter not in ONNX_EXPORTERS:
        raise ExportError(f"unknown ONNX exporter {onnx_exporter!r}; choose from {ONNX_EXPORTERS}")
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose from {FORMATS}")
    if model_name in NOT_EXPORTABLE:
        raise ExportError(f"model {model_name!r} cannot be exported: {NOT_EXPORTABLE[model_name]}")
    path = Path(path)
    model.eval()
    wrapper = BatchInputs(model.for_export(), schema, task).eval()
    specs = wrapper.specs
    example = batch_inputs(_example_batch(schema, TRACE_BATCH), schema)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # constant-folding and tracer notes are expected; the parity check below decides
            warnings.simplefilter("ignore")
            if fmt == "torchscript":
                traced = torch.jit.trace(wrapper, example, check_trace=False)
                torch.jit.save(traced, str(path))
            else:
                _export_onnx(wrapper, example, path, [s.name for s in specs], onnx_exporter)
    except Exception as exc:  # tracers raise many types; name the model and format
        raise ExportError(
            f"cannot export {model_name or type(model).__name__} to {fmt}: {exc}"
        ) from exc
    if verify:
        _check_parity(wrapper, schema, path, fmt, model_name or type(model).__name__)
    return specs


def _check_parity(wrapper: BatchInputs, schema: Schema, path: Path, fmt: Format, who: str) -> None:
    """Raise ExportError unless the artefact reproduces the eager logits on another batch size."""
    check = random_batch(schema, TRACE_BATCH + 4, torch.Generator().manual_seed(1))
    tensors = batch_inputs(check, schema)
    with torch.no_grad():
        expected = wrapper(*tensors)[0].numpy()
    try:
        runner = load_artefact(path, fmt, [s.name for s in wrapper.specs])
        got = runner({s.name: x.numpy() for s, x in zip(wrapper.specs, tensors, strict=True)})
    except Exception as exc:  # a graph that froze a shape fails here on the new batch size
        raise ExportError(
            f"exported {fmt} graph of {who} fails on a batch of {len(check)} rows "
            f"(traced with {TRACE_BATCH}): {exc}"
        ) from exc
    logits = got["logits"]
    if logits.shape != expected.shape:
        raise ExportError(
            f"exported {fmt} graph of {who} returns shape {logits.shape} for a batch of "
            f"{len(check)} rows: the batch size was frozen at export"
        )
    diff = float(np.max(np.abs(logits - expected)))
    if not diff <= PARITY_ATOL:
        raise ExportError(
            f"exported {fmt} logits of {who} differ from the eager model by {diff:.3g} "
            f"(> {PARITY_ATOL})"
        )


# the torch.export-based exporter logs every optimisation pass at INFO (hundreds of lines)
_EXPORTER_LOGGERS = ("onnxscript", "onnx_ir", "torch.onnx", "torch.export", "torch._export")


@contextlib.contextmanager
def _quiet(names: tuple[str, ...]) -> Iterator[None]:
    """Raise the named loggers to ERROR for the duration of the block."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _export_onnx(
    wrapper: BatchInputs,
    example: tuple[torch.Tensor, ...],
    path: Path,
    names: list[str],
    exporter: OnnxExporter,
) -> None:
    """``torch.onnx.export`` with a dynamic batch axis on every input and output."""
    if exporter == "legacy":
        torch.onnx.export(
            wrapper,
            example,
            str(path),
            input_names=names,
            output_names=list(OUTPUTS),
            dynamic_axes={n: {0: "batch"} for n in [*names, *OUTPUTS]},
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
        return
    batch = torch.export.Dim("batch")
    with _quiet(_EXPORTER_LOGGERS):
        # forward(*inputs) is one variadic argument: its shapes are one tuple, one dict per input
        program = torch.onnx.export(
            wrapper,
            example,
            input_names=names,
            output_names=list(OUTPUTS),
            dynamic_shapes=(tuple({0: batch} for _ in names),),
            opset_version=ONNX_OPSET,
            dynamo=True,
            verbose=False,
        )
    if program is None:
        raise ExportError("torch.onnx.export returned no program")
    program.save(str(path))


Runner = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


def load_artefact(
    path: str | Path, fmt: Format, input_names: list[str], threads: int | None = None
) -> Runner:
    """A function ``inputs (name -> array) -> {"logits": ..., "scores": ...}`` over one file.

    Args:
        path: ``model.pt`` (TorchScript) or ``model.onnx``.
        fmt: ``torchscript`` or ``onnx``.
        input_names: Input names in call order (the manifest's).
        threads: Intra-op threads of the ONNX Runtime session (``None``: its default).
    """
    if fmt == "torchscript":
        module = torch.jit.load(str(path), map_location="cpu").eval()

        def run_torchscript(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            with torch.inference_mode():
                outs = module(*(torch.from_numpy(inputs[n]) for n in input_names))
            return {k: v.numpy() for k, v in zip(OUTPUTS, outs, strict=True)}

        return run_torchscript
    if fmt == "onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        # inputs a model never reads are pruned from the graph: feed only those it kept
        wanted = [i.name for i in session.get_inputs()]

        def run_onnx(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            outs = session.run(list(OUTPUTS), {n: inputs[n] for n in wanted})
            return dict(zip(OUTPUTS, outs, strict=True))

        return run_onnx
    raise ExportError(f"unknown export format {fmt!r}; choose from {FORMATS}")


def export_bundle(
    bundle_dir: str | Path,
    out_dir: str | Path | None = None,
    fmt: Format = "torchscript",
    onnx_exporter: OnnxExporter = "dynamo",
) -> Path:
    """Export a saved bundle's model into a self-contained folder, written atomically.

    Args:
        bundle_dir: A folder written by :func:`recforge.serve.bundle.save_bundle`.
        out_dir: Destination folder (replaced if present); default ``<bundle_dir>-<fmt>``.
        fmt: ``torchscript`` or ``onnx``.
        onnx_exporter: ``dynamo`` or ``legacy`` (see :func:`export_model`).

    Returns:
        The export folder.
    """
    from recforge import __version__
    from recforge.serve.bundle import load_bundle

    bundle_dir = Path(bundle_dir)
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose from {FORMATS}")
    out = Path(out_dir) if out_dir is not None else bundle_dir.with_name(f"{bundle_dir.name}-{fmt}")
    bundle = load_bundle(bundle_dir)
    schema = bundle.preprocessor.schema
    with atomic_folder(out) as tmp:
        specs = export_model(
            bundle.model,
            schema,
            tmp / ARTEFACTS[fmt],
            fmt,
            bundle.task,
            bundle.model_name,
            onnx_exporter=onnx_exporter,
        )
        shutil.copytree(bundle_dir / "preprocessor", tmp / "preprocessor")
        if (bundle_dir / "config.yaml").exists():
            shutil.copy2(bundle_dir / "config.yaml", tmp / "config.yaml")
        (tmp / "schema.json").write_text(schema.to_json())
        manifest = {
            "format": EXPORT_FORMAT,
            "artefact_format": fmt,
            "artefact": ARTEFACTS[fmt],
            "model": bundle.model_name,
            "task": bundle.task,
            "inputs": [s.to_dict() for s in specs],
            "outputs": [{"name": n, "dtype": "float32", "shape": ["batch"]} for n in OUTPUTS],
            "dynamic_axes": {"batch": 0},
            "onnx_opset": ONNX_OPSET if fmt == "onnx" else None,
            "onnx_exporter": onnx_exporter if fmt == "onnx" else None,
            "recforge_version": __version__,
            "torch_version": torch.__version__,
            "source_bundle": str(bundle_dir.resolve()),
            "source_meta": bundle.meta,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, default=list))
    log.info("exported %s (%s) to %s", bundle.model_name, fmt, out)
    return out


@dataclass
class ExportedModel:
    """An export folder loaded for scoring: the saved preprocessor plus the artefact."""

    manifest: dict[str, Any]
    preprocessor: Preprocessor
    run: Runner

    @property
    def input_names(self) -> list[str]:
        return [i["name"] for i in self.manifest["inputs"]]

    def predict_encoded(
        self, data: EncodedData, batch_size: int = 16384, logits: bool = False
    ) -> np.ndarray:
        """Scores of preprocessed rows (``scores`` output, or the raw ``logits``)."""
        inputs = encoded_inputs(data, self.preprocessor.schema)
        key = "logits" if logits else "scores"
        n = len(data)
        parts = [
            self.run({k: v[start : start + batch_size] for k, v in inputs.items()})[key]
            for start in range(0, n, batch_size)
        ]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)

    def predict_table(self, table: pa.Table, batch_size: int = 16384) -> np.ndarray:
        """Encode raw rows as at training time (unknown categories -> OOV) and score them."""
        return self.predict_encoded(
            self.preprocessor.transform(table, with_label=False), batch_size
        )

    def predict_records(self, records: list[dict[str, Any]]) -> np.ndarray:
        """Score a list of raw records (dicts of column -> value)."""
        return self.predict_table(pa.Table.from_pylist(records))


def load_exported(out_dir: str | Path, threads: int | None = None) -> ExportedModel:
    """Load an export folder written by :func:`export_bundle`.

    Args:
        out_dir: The export folder.
        threads: Intra-op threads of an ONNX Runtime session.

    Returns:
        An :class:`ExportedModel` whose ``predict_records`` / ``predict_table`` score raw rows.
    """
    out_dir = Path(out_dir)
    try:
        manifest = json.loads((out_dir / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ExportError(f"{out_dir}: not a recforge export ({exc})") from exc
    if manifest.get("format") != EXPORT_FORMAT:
        raise ExportError(f"{out_dir}: unsupported export format {manifest.get('format')!r}")
    preprocessor = Preprocessor.load(out_dir / "preprocessor")
    names = [i["name"] for i in manifest["inputs"]]
    runner = load_artefact(
        out_dir / manifest["artefact"], manifest["artefact_format"], names, threads
    )
    return ExportedModel(manifest=manifest, preprocessor=preprocessor, run=runner)
