import lzma
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv  # noqa: F401  (pa.csv)

from recforge.data.sources import catalogue as datasets
from recforge.data.sources.news import prepare_globo, prepare_mind, read_mind_behaviors
from recforge.drn.calibration import calibrate, calibrate_globo, fit_bias
from recforge.drn.simulator import NewsSimulator, SimConfig

MIND_ROWS = (
    "1\tU1\t11/11/2019 9:05:58 AM\tN5 N6\tN1-1 N22-0 N333-0\n"
    "2\tU2\t11/12/2019 3:00:00 PM\t\tN22-1 N1-0\n"
)


def test_mind_reader_explodes_impressions(tmp_path: Path) -> None:
    path = tmp_path / "behaviors.tsv.xz"
    with lzma.open(path, "wt") as fh:
        fh.write(MIND_ROWS)
    t = read_mind_behaviors(path)
    assert t["news_id"].to_pylist() == ["N1", "N22", "N333", "N22", "N1"]
    assert t["label"].to_pylist() == [1.0, 0.0, 0.0, 1.0, 0.0]
    assert t["user_id"].to_pylist() == ["U1"] * 3 + ["U2"] * 2
    assert t["hour"].to_pylist() == [9, 9, 9, 15, 15]
    assert t["history"].to_pylist()[3] == ""
    prepared = prepare_mind(tmp_path)
    assert prepared.train.num_rows == 5 and prepared.schema.item_key == "news_id"
    assert {"globo-news", "mind-sample"} <= set(datasets.catalogue())
    assert abs(calibrate(mind=t).ctr - 2 / 5) < 1e-9


def _globo(tmp_path: Path) -> Path:
    # article a: clicks at ages 0, 1, 2, 3 h (median age 1.5 h); article b: one click
    hour = 3_600_000
    rows = [
        (0, 10, 0, "a"), (1, 11, 1 * hour, "a"), (0, 12, 2 * hour, "a"), (2, 13, 3 * hour, "a"),
        (1, 11, 3 * hour, "b"),
    ]  # fmt: skip
    header = "user_id,session_id,session_start,session_size,click_article_id,click_timestamp,"
    header += "click_environment,click_deviceGroup,click_os,click_country,click_region,"
    header += "click_referrer_type\n"
    lines = [header] + [
        f"{u},{s},{ts},1,{7 if a == 'a' else 8},{ts},4,1,17,1,20,2\n" for u, s, ts, a in rows
    ]
    path = tmp_path / "clicks.csv"
    path.write_text("".join(lines))
    return path


def test_globo_reader_and_calibration(tmp_path: Path) -> None:
    path = _globo(tmp_path)
    prepared = prepare_globo(tmp_path)
    assert prepared.train.num_rows == 5
    assert prepared.train["label"].to_pylist() == [1.0] * 5
    fitted = calibrate_globo(pa.csv.read_csv(path))
    ages = np.array([0, 1, 2, 3, 0.0])  # article b's only click has age 0
    assert np.isclose(fitted["freshness_tau"], np.median(ages) / np.log(2))
    assert np.isclose(fitted["quality_std"], np.std(np.log([4, 1])))
    # users 0: sessions {10, 12}; 1: {11}; 2: {13}; span 3 h
    assert np.isclose(fitted["rate"], np.mean([2, 1, 1]) / 3.0)
    cal = calibrate(globo=path)
    cfg = cal.apply(SimConfig())
    assert cfg.freshness_tau == fitted["freshness_tau"] and cfg.rate == SimConfig().rate


def test_fit_bias_matches_target_ctr() -> None:
    cfg = SimConfig(n_users=300, seed=2)
    bias = fit_bias(cfg, 0.04)
    env = NewsSimulator(cfg.replace(bias=bias))
    rng = np.random.default_rng(0)
    clicks = []
    for _ in range(40):
        b = env.request.users.size
        ranking = np.argsort(rng.random((b, cfg.n_candidates)), axis=1)[:, : cfg.list_len]
        fb, _ = env.step(ranking)
        clicks.append(fb.clicks.ravel())
    assert abs(np.concatenate(clicks).mean() - 0.04) < 0.012
