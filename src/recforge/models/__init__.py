"""Models of the lineage, one file per paper, found through :mod:`recforge.models.registry`."""

from recforge.models.base import ModelConfig, RecModel
from recforge.models.registry import ModelSpec, build, get, names

__all__ = ["ModelConfig", "ModelSpec", "RecModel", "build", "get", "names"]
