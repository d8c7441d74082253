"""recforge: the deep-learning recommendation models of the classic lineage, fast and faithful."""

import logging

from recforge.features import Batch, CategoricalField, NumericField, Schema, SequenceField

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "Batch",
    "CategoricalField",
    "NumericField",
    "Schema",
    "SequenceField",
    "__version__",
]
