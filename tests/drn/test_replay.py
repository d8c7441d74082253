import numpy as np
import pytest

from recforge.drn.replay import ReplayMemory


def test_capacity_keeps_newest() -> None:
    mem = ReplayMemory(100, seed=0)
    for start in range(0, 250, 25):
        ids = np.arange(start, start + 25)
        mem.add(x=ids, v=np.stack([ids, -ids], axis=1).astype(np.float32))
    assert len(mem) == 100
    drawn = mem.sample(5000)
    assert set(np.unique(drawn["x"])) == set(range(150, 250))
    assert np.array_equal(drawn["v"][:, 0], drawn["x"]) and np.array_equal(
        drawn["v"][:, 1], -drawn["x"]
    )
    mem.add(x=np.arange(1000, 1300), v=np.zeros((300, 2), np.float32))  # more than capacity
    assert set(np.unique(mem.sample(5000)["x"])) == set(range(1200, 1300))


def test_sampling_is_uniform() -> None:
    mem = ReplayMemory(50, seed=1)
    mem.add(x=np.arange(50))
    counts = np.bincount(mem.sample(100_000)["x"], minlength=50)
    expected = 100_000 / 50
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 110.0, chi2  # df = 49; P(chi2 > 110) ~ 1e-6


def test_errors() -> None:
    mem = ReplayMemory(10)
    with pytest.raises(ValueError):
        mem.sample(1)
    mem.add(x=np.zeros(3))
    with pytest.raises(ValueError):
        mem.add(y=np.zeros(3))
    with pytest.raises(ValueError):
        mem.add(x=np.zeros(3), y=np.zeros(2))
