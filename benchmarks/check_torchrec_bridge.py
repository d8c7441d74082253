"""Manual check of the TorchRec bridge against real TorchRec (not a CI test: TorchRec is optional).

Builds TorchRec collections from ``embedding_configs``, loads a recforge FeatureEmbedding's
weights into a TorchRecEmbedding and compares every output; then (optionally) wraps a model in
DistributedModelParallel on CPU with gloo in ``--world-size`` processes and compares its logits
with the unsharded model's.

    python benchmarks/check_torchrec_bridge.py [--world-size 2]
"""

from __future__ import annotations

import argparse
import json
import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from recforge.distributed.torchrec_bridge import TorchRecEmbedding, batch_to_kjt, embedding_configs
from recforge.features import CategoricalField, NumericField, Schema, SequenceField, random_batch
from recforge.layers.embedding import FeatureEmbedding


def schema() -> Schema:
    return Schema(
        fields=(
            CategoricalField("user_id", group="user", vocab_size=300),
            CategoricalField("item_id", group="item", vocab_size=500),
            CategoricalField("brand", group="item", vocab_size=17),
            NumericField("price", group="item"),
            NumericField("hour", buckets=6),
            SequenceField("hist_items", max_len=9, share_embedding_with="item_id"),
            SequenceField("hist_brands", max_len=4, share_embedding_with="brand"),
        ),
        embedding_dim=8,
    )


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().abs().max())


def check_adapter() -> dict[str, float]:
    s = schema()
    torch.manual_seed(0)
    fe = FeatureEmbedding(s)
    batch = random_batch(s, 64, torch.Generator().manual_seed(1))
    batch.lengths["hist_items"][:3] = 0  # empty histories
    batch.sequences["hist_items"][:3] = 0
    kjt = batch_to_kjt(batch, s)
    out: dict[str, float] = {
        "kjt_keys_ok": float(
            kjt.keys() == [f.name for f in s.sparse_fields] + [q.name for q in s.sequence_fields]
        )
    }
    for pooled in (False, True):
        tag = "ebc" if pooled else "ec"
        tr = TorchRecEmbedding(s, pooled=pooled)
        tr.load_from(fe)
        out[f"{tag}_forward_maxdiff"] = max_diff(tr(batch), fe(batch))
        out[f"{tag}_flat_maxdiff"] = max_diff(tr.flat(batch), fe.flat(batch))
        out[f"{tag}_field_maxdiff"] = max_diff(tr.field(batch, "brand"), fe.field(batch, "brand"))
        if not pooled:
            out["ec_sequence_maxdiff"] = max_diff(
                tr.sequence(batch, "hist_items"), fe.sequence(batch, "hist_items")
            )
        back = FeatureEmbedding(s)
        tr.store_into(back)
        out[f"{tag}_round_trip_exact"] = float(
            all(torch.equal(back.tables[k].weight, fe.tables[k].weight) for k in fe.tables)
            and torch.equal(back.dense_weight["8"], fe.dense_weight["8"])
        )
        # gradients reach the TorchRec tables
        tr.zero_grad()
        tr(batch).sum().backward()
        grads = [p.grad for p in tr.collection.parameters()]
        out[f"{tag}_grads_nonzero"] = float(all(g is not None and g.abs().sum() > 0 for g in grads))
    return out


class Tiny(nn.Module):
    def __init__(self, s: Schema, device: str | None = None) -> None:
        super().__init__()
        self.embedding = TorchRecEmbedding(s, pooled=True, device=device)
        self.head = nn.Linear(self.embedding.output_dim, 1)

    def forward(self, batch):  # noqa: ANN001, ANN201
        return self.head(self.embedding.flat(batch)).squeeze(-1)


def _dmp_worker(rank: int, world: int, sharding: str, result: dict) -> None:
    from recforge.distributed.torchrec_bridge import shard_model

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29533")
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    s = schema()
    torch.manual_seed(0)
    fe = FeatureEmbedding(s)
    ref = Tiny(s)
    ref.embedding.load_from(fe)
    torch.manual_seed(100 + rank)
    model = Tiny(s)  # different weights: only load_state_dict below can make it equal ref
    specs = embedding_configs(s)
    dmp = shard_model(model, torch.device("cpu"), {t.name: sharding for t in specs})
    # the reference (unsharded) weights go into the sharded model through DMP's state dict
    dmp.load_state_dict(ref.state_dict(), strict=True)
    batch = random_batch(s, 32, torch.Generator().manual_seed(2 + rank))
    got = dmp(batch)
    if hasattr(got, "wait"):
        got = got.wait()
    want = ref(batch)
    result[rank] = max_diff(got.detach(), want.detach())
    dist.destroy_process_group()


def check_dmp(world: int, sharding: str) -> list[float]:
    manager = mp.Manager()
    result = manager.dict()
    mp.spawn(_dmp_worker, args=(world, sharding, result), nprocs=world, join=True)
    return [result[r] for r in range(world)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--world-size", type=int, default=0)
    parser.add_argument("--sharding", default="table_wise")
    args = parser.parse_args()
    import torchrec

    report = {
        "torch": torch.__version__,
        "torchrec": torchrec.__version__,
        "adapter": check_adapter(),
    }
    if args.world_size:
        report[f"dmp_{args.sharding}_world{args.world_size}_maxdiff"] = check_dmp(
            args.world_size, args.sharding
        )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
