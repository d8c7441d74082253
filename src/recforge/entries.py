"""Named entries declared by a fixed list of modules: the model registry and the dataset
catalogue are both built this way (each module declares a tuple of specs with a ``name``)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Sequence
from types import ModuleType
from typing import Any


def collect(
    modules: Sequence[str], specs: Callable[[ModuleType], Iterable[Any]], kind: str
) -> dict[str, Any]:
    """Import ``modules`` and gather the specs each declares, by name.

    Args:
        modules: Module paths, imported in order.
        specs: The specs a module declares (e.g. its ``DATASETS`` tuple).
        kind: What a spec is, for the error message (``model``, ``dataset``).

    Raises:
        RuntimeError: Two specs share a name.
    """
    entries: dict[str, Any] = {}
    for module_name in modules:
        for spec in specs(importlib.import_module(module_name)):
            if spec.name in entries:
                raise RuntimeError(f"{kind} {spec.name!r} registered twice")
            entries[spec.name] = spec
    return entries
