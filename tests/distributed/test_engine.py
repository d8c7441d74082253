"""The Trainer's engine option without TorchRec: the choice, and a missing TorchRec install."""

from __future__ import annotations

import pytest
import yaml

from recforge import cli
from recforge.config import TrainConfig
from recforge.distributed import torchrec_bridge
from recforge.distributed.engine import TrainingEngine, build_engine


def test_ddp_is_the_default_engine() -> None:
    engine = build_engine(TrainConfig())
    assert type(engine) is TrainingEngine and engine.name == "ddp"


def test_sharding_needs_the_torchrec_engine() -> None:
    with pytest.raises(ValueError, match="train.engine=torchrec"):
        build_engine(TrainConfig(sharding={"user_id": "row_wise"}))


def test_missing_torchrec_is_one_line(tmp_path, capsys, monkeypatch) -> None:
    def missing() -> None:
        raise ImportError(torchrec_bridge.INSTALL_HINT)

    monkeypatch.setattr(torchrec_bridge, "_require_torchrec", missing)
    monkeypatch.setattr("recforge.distributed.torchrec_engine._require_torchrec", missing)
    path = tmp_path / "run.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "data": {"dataset": "synthetic", "options": {"rows": 200}},
                "model": {"name": "dnn", "params": {}},
                "train": {"engine": "torchrec", "device": "cpu"},
                "output_dir": str(tmp_path / "out"),
            }
        )
    )
    code = cli.main(["train", "-c", str(path), "--nproc", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("recforge: error: train.engine=torchrec: ")
    assert "pip install recforge[torchrec]" in err[0]
