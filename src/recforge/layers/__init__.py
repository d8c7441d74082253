"""Reusable layers, split by role (embedding, mlp, interaction, attention, sequence)."""

from recforge.layers.embedding import FeatureEmbedding, FusedEmbedding, LinearPart, masked_mean
from recforge.layers.interaction import FMInteraction
from recforge.layers.mlp import MLP, activation

__all__ = [
    "MLP",
    "FMInteraction",
    "FeatureEmbedding",
    "FusedEmbedding",
    "LinearPart",
    "activation",
    "masked_mean",
]
