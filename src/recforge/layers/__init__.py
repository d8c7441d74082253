"""Reusable layers, split by role (embedding, mlp, interaction, attention, sequence)."""

from recforge.layers.embedding import (
    FeatureEmbedding,
    FusedEmbedding,
    LinearPart,
    StackedInput,
    masked_mean,
)
from recforge.layers.interaction import FMInteraction
from recforge.layers.mlp import MLP, Dice, Tower, activation

__all__ = [
    "MLP",
    "Dice",
    "FMInteraction",
    "FeatureEmbedding",
    "FusedEmbedding",
    "LinearPart",
    "StackedInput",
    "Tower",
    "activation",
    "masked_mean",
]
