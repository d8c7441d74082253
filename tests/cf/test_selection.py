"""BestEpoch: strict improvement, patience counted in epochs, time cap, best weights restored."""

from __future__ import annotations

import torch
from torch import nn

from recforge.cf.selection import BestEpoch


def _run(selection: BestEpoch, values: list[float], every: int = 1) -> tuple[nn.Linear, int]:
    """Validate ``values`` (one every ``every`` epochs), weights set to the epoch number."""
    model = nn.Linear(1, 1)
    stopped = -1
    for k, value in enumerate(values):
        epoch = (k + 1) * every
        with torch.no_grad():
            model.weight.fill_(float(epoch))
        selection.observe(model, epoch, value, epochs=every)
        if selection.should_stop(epoch, train_seconds=0.0):
            stopped = epoch
            break
    selection.restore(model)
    return model, stopped


def test_lower_is_better_with_patience_restores_the_best_epoch() -> None:
    selection = BestEpoch("t", higher_is_better=False, patience=2)
    # epochs 1..: 3.0, 2.0 (best), 2.0 (tie: not better), 2.5 -> two stale epochs, stop at 4
    model, stopped = _run(selection, [3.0, 2.0, 2.0, 2.5, 1.0])
    assert stopped == 4
    assert (selection.best_epoch, selection.best_value) == (2, 2.0)
    assert float(model.weight.detach()) == 2.0


def test_higher_is_better_counts_epochs_between_validations() -> None:
    selection = BestEpoch("t", higher_is_better=True, patience=6)
    # validated at epochs 3, 6, 9, 12: best at 3, then 3 + 3 = 6 stale epochs -> stop at 9
    model, stopped = _run(selection, [0.5, 0.4, 0.5, 0.9], every=3)
    assert stopped == 9
    assert selection.best_epoch == 3
    assert float(model.weight.detach()) == 3.0


def test_no_patience_runs_on_and_time_cap_stops() -> None:
    selection = BestEpoch("t", higher_is_better=True)
    _, stopped = _run(selection, [0.3, 0.2, 0.1, 0.0])
    assert stopped == -1 and selection.best_epoch == 1
    capped = BestEpoch("t", higher_is_better=True, max_seconds=5.0)
    assert not capped.should_stop(1, train_seconds=4.9)
    assert capped.should_stop(2, train_seconds=5.0)


def test_restore_without_validation_keeps_the_weights() -> None:
    model = nn.Linear(1, 1)
    before = model.weight.detach().clone()
    BestEpoch("t", higher_is_better=False).restore(model)
    assert torch.equal(model.weight, before)
