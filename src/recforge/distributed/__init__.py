"""Scaling out beyond one device: data parallel training and model-parallel tables.

:mod:`recforge.distributed.ddp` runs the one Trainer under ``DistributedDataParallel`` (process
groups, sharded batches, collective evaluation) and launches local ranks with
``torch.distributed.run``'s elastic agent (``recforge train --nproc N``).
:mod:`recforge.distributed.torchrec_bridge` maps recforge's fused embedding tables onto
TorchRec's per-table collections (which TorchRec can shard across devices). Everything here but
:class:`~recforge.distributed.torchrec_bridge.TorchRecEmbedding` and the TorchRec conversions
works without TorchRec installed; those need ``pip install recforge[torchrec]``.
"""

from recforge.distributed.torchrec_bridge import (
    KJTParts,
    TableSpec,
    TorchRecEmbedding,
    batch_to_kjt,
    batch_to_kjt_parts,
    embedding_configs,
    fuse_tables,
    load_feature_embedding,
    shard_model,
    split_feature_embedding,
    split_fused,
    to_torchrec_configs,
    torchrec_available,
)

__all__ = [
    "KJTParts",
    "TableSpec",
    "TorchRecEmbedding",
    "batch_to_kjt",
    "batch_to_kjt_parts",
    "embedding_configs",
    "fuse_tables",
    "load_feature_embedding",
    "shard_model",
    "split_feature_embedding",
    "split_fused",
    "to_torchrec_configs",
    "torchrec_available",
]
