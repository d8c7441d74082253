"""AFM's FM pretraining stage: declared as a PretrainStage, initialised from the FM so the
fresh AFM predicts what the FM does under uniform attention, trained first by the engine."""

from __future__ import annotations

import pytest
import torch

from recforge.data.pipeline import EncodedRun
from recforge.models.afm import AFM, AFMConfig
from recforge.models.base import PretrainStage
from recforge.models.fm import FM, FMConfig


def test_afm_declares_an_fm_stage_only_when_asked(tiny_schema) -> None:
    assert AFM(tiny_schema, AFMConfig()).pretraining() == []
    stages = AFM(tiny_schema, AFMConfig(pretrain_fm=True, embedding_dim=4)).pretraining()
    assert stages == [PretrainStage("fm", "fm", {"embedding_dim": 4, "sparse": "auto"})]
    (stage,) = AFM(tiny_schema, AFMConfig(pretrained_fm="fm/bundle")).pretraining()
    assert stage.path == "fm/bundle"


def test_afm_initialised_from_fm_predicts_like_it(tiny_schema, tiny_batch) -> None:
    torch.manual_seed(0)
    fm = FM(tiny_schema, FMConfig())
    with torch.no_grad():
        for p in fm.parameters():
            p.add_(0.1 * torch.randn_like(p))
    afm = AFM(tiny_schema, AFMConfig(pretrain_fm=True))
    afm.init_from_pretrained({"fm": fm})
    with torch.no_grad():
        afm.attention.h.weight.zero_()  # uniform attention
    afm.eval()
    fm.eval()
    torch.testing.assert_close(afm(tiny_batch), fm(tiny_batch), rtol=1e-4, atol=1e-5)
    with pytest.raises(TypeError, match="from an FM"):
        afm.init_from_pretrained({"fm": afm})


def test_the_engine_trains_the_fm_stage_first() -> None:
    from recforge.config import TrainConfig
    from recforge.data.encode.preprocess import Preprocessor
    from recforge.data.encode.split import split_table
    from recforge.data.sources.synthetic import make_click_log
    from recforge.run import train_model

    table, schema = make_click_log(rows=3000, seed=0, n_users=100, n_items=200)
    parts = split_table(table, "time", ratios=(0.8, 0.1, 0.1), time_column="ts")
    pre = Preprocessor(schema).fit(parts[0])
    run = EncodedRun(pre, *(pre.transform(t) for t in parts))
    cfg = TrainConfig(epochs=1, batch_size=512, progress=False, seed=0)
    result, _ = train_model("afm", {"pretrain_fm": True}, run, cfg)
    assert result.extra["pretraining"]["fm"]["model"] == "fm"
    result, _ = train_model("afm", {}, run, cfg)
    assert "pretraining" not in result.extra
