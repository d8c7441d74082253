"""Shared fixtures: a tiny fitted schema that exercises every field kind."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Sequence

import pytest
import torch

from recforge.features import (
    CategoricalField,
    NumericField,
    Schema,
    SequenceField,
    random_batch,
)

# Tests use tiny tensors: one intra-op thread is faster than two and keeps runs repeatable
# on a shared 2-core machine.
torch.set_num_threads(1)


def make_tiny_schema(embedding_dim: int = 8) -> Schema:
    """A fitted schema with user/item/context fields, numerics and two shared sequences."""
    return Schema(
        fields=(
            CategoricalField("user_id", group="user", vocab_size=30),
            CategoricalField("user_segment", group="user", vocab_size=5),
            CategoricalField("item_id", group="item", vocab_size=40),
            CategoricalField("item_category", group="item", vocab_size=7),
            CategoricalField("device", group="context", vocab_size=4),
            NumericField("price", group="item"),
            NumericField("age", group="user"),
            NumericField("hour", group="context", buckets=4),
            SequenceField("hist_item_ids", max_len=6, share_embedding_with="item_id"),
            SequenceField("hist_cats", max_len=6, share_embedding_with="item_category"),
        ),
        label="label",
        user_key="user_id",
        item_key="item_id",
        embedding_dim=embedding_dim,
    )


@pytest.fixture
def tiny_schema() -> Schema:
    return make_tiny_schema()


@pytest.fixture
def tiny_batch(tiny_schema: Schema):
    return random_batch(tiny_schema, 32, torch.Generator().manual_seed(0))


def _randomise(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Move every float parameter and buffer off its initial value (LR and popularity start
    at zero, so comparisons of their outputs would hold even for code that ignores inputs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.is_floating_point():
                p.add_(0.1 * torch.randn(p.shape, generator=g))
        for b in model.buffers():
            if b.is_floating_point():
                b.add_(0.1 * torch.rand(b.shape, generator=g))  # positive: variances stay valid
    return model


@pytest.fixture
def randomise():
    """``randomise(model, seed)``: perturb all float weights and buffers in place."""
    return _randomise


def _arm_kill(steps: Sequence[tuple[object, str]], kill_at: int, after: bool = True) -> None:
    """In a forked child: SIGKILL itself just before the ``kill_at``-th call of any of
    ``steps`` (``(owner, attribute)`` pairs, e.g. ``(os, "rename")``), or with ``after`` also
    counting the moment just after each call."""
    count = [0]

    def tick() -> None:
        count[0] += 1
        if count[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    def wrap(fn: Callable) -> Callable:
        def step(*args, **kwargs):
            tick()
            result = fn(*args, **kwargs)
            if after:
                tick()
            return result

        return step

    for owner, name in steps:
        setattr(owner, name, wrap(getattr(owner, name)))


@pytest.fixture
def arm_kill() -> Callable[..., None]:
    """The kill -9 fault injector of the publication tests (``tests/test_faults.py``, the DRN
    replay's output folder): ``arm_kill(steps, kill_at, after=True)`` in a forked child."""
    return _arm_kill
