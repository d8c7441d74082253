"""Explicit registry: model name -> class, config class and paper.

Each model module defines ``SPEC = ModelSpec(...)``; this file lists the modules. Adding a
model means adding its module path to ``_MODULES``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from recforge.entries import collect
from recforge.features import Schema
from recforge.models.base import ModelConfig, RecModel


@dataclass(frozen=True)
class ModelSpec:
    """Registry entry.

    Args:
        name: Registry name used in configs and on the command line.
        model: The model class.
        paper: Citation (authors, title, venue, year).
        family: ``baseline``, ``ctr``, ``cf``, ``sequence`` or ``rl``.
        pairwise: True when the model scores (user, item) pairs (usable with ``recommend``).
        config: Its frozen config dataclass; ``None`` takes ``model.config_class`` (one class
            registered under several names with other defaults, e.g. IPNN/OPNN, names it).
    """

    name: str
    model: type[RecModel]
    paper: str
    family: str
    pairwise: bool = False
    config: type[ModelConfig] = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.config is None:
            object.__setattr__(self, "config", self.model.config_class)


_MODULES: tuple[str, ...] = (
    "recforge.models.lr",
    "recforge.models.fm",
    "recforge.models.mf",
    "recforge.models.deep_crossing",
    "recforge.models.pnn",
    "recforge.models.dcn",
    "recforge.models.wide_deep",
    "recforge.models.dnn",
    "recforge.models.deepfm",
    "recforge.models.nfm",
    "recforge.models.afm",
    "recforge.models.fnn",
    "recforge.models.base_seq",
    "recforge.models.din",
    "recforge.models.dien",
    "recforge.drn.model",
    "recforge.models.autorec",
    "recforge.models.ncf",
    "recforge.models.popularity",
)

_REGISTRY: dict[str, ModelSpec] | None = None


def _module_specs(module: ModuleType) -> tuple[ModelSpec, ...]:
    """A model module declares ``SPEC`` (one model) or ``SPECS`` (several, e.g. NeuralCF)."""
    return module.SPECS if hasattr(module, "SPECS") else (module.SPEC,)


def _load() -> dict[str, ModelSpec]:
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = collect(_MODULES, _module_specs, "model")
    return _REGISTRY


def names(family: str | None = None) -> list[str]:
    """Registered model names, optionally only one family."""
    return [n for n, s in _load().items() if family is None or s.family == family]


def get(name: str) -> ModelSpec:
    try:
        return _load()[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(names())}") from None


def make_config(name: str, params: dict[str, Any] | None = None) -> ModelConfig:
    """Build a model's config from a dict; unknown keys are errors."""
    from recforge.config import from_dict

    return from_dict(get(name).config, params or {}, where=f"model.params ({name})")


def build(
    name: str, schema: Schema, params: dict[str, Any] | ModelConfig | None = None
) -> RecModel:
    """Instantiate a registered model for a fitted schema."""
    spec = get(name)
    cfg = params if isinstance(params, ModelConfig) else make_config(name, params)
    return spec.model(schema, cfg)


def config_dict(cfg: ModelConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
