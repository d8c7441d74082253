"""Options of every model with an MLP tower.

A model's config inherits :class:`TowerConfig` to get the tower's options as its own flat
fields (``hidden``, ``activation``, ``dropout``, ``batch_norm``: the YAML keys
``model.params.hidden`` ...), and passes the config itself to :class:`~recforge.layers.mlp.MLP`,
since it *is* a :class:`~recforge.layers.mlp.Tower`. A model whose paper uses other defaults
redeclares the field with its own default.
"""

from __future__ import annotations

from dataclasses import dataclass

from recforge.layers.mlp import Tower
from recforge.models.base import ModelConfig


@dataclass(frozen=True)
class TowerConfig(Tower, ModelConfig):
    """:class:`ModelConfig` plus the fields of :class:`~recforge.layers.mlp.Tower`.

    Args:
        hidden: Widths of the hidden layers (400-400-400 unless the model says otherwise).
        activation: Hidden activation (``relu``, ``prelu``, ``tanh``, ``dice`` ...).
        dropout: Dropout after each hidden layer.
        batch_norm: Batch normalisation in each hidden layer. On by default, which follows the
            data and BARS's tuned configurations rather than most papers' text (DeepFM, PNN,
            FNN and Wide&Deep do not mention it; DCN uses it): after one epoch on the 1M-row
            Criteo-shaped peer-harness log it lifts DeepFM from 0.8077 to 0.8172 test AUC
            (`benchmarks/results/deepfm_peers_i16.md`), and on the demo log DeepFM, DNN, DCN
            and Wide&Deep gain 0.009-0.027 AUC; the Frappe_x1 reproductions set it
            explicitly. Under data parallelism each process normalises over its own share of
            the global batch (PyTorch's DDP behaviour without ``SyncBatchNorm``).
    """

    hidden: tuple[int, ...] = (400, 400, 400)
    batch_norm: bool = True
