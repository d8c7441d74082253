"""Cross-product transformations of categorical fields (Wide&Deep's wide part).

Cheng et al., "Wide & Deep Learning for Recommender Systems", DLRS 2016, eq. 1:
``phi_k(x) = prod_i x_i^{c_ki}``, i.e. the indicator ``AND(f_1 = a_1, ..., f_k = a_k)`` of a
combination of field values. :func:`cross_ids` turns the crossed fields' local ids into the id of
that combination, exactly when the combinations fit the bucket budget and by hashing otherwise.
"""

from __future__ import annotations

import math

import torch

HASH_PRIME = 2_147_483_647  # 2^31 - 1
HASH_MULTIPLIER = 48_271  # the MINSTD multiplier; x -> A x mod P is a bijection of [1, P)
HASH_OFFSET = 12_345


def cross_ids(ids: torch.Tensor, vocab_sizes: tuple[int, ...], buckets: int) -> torch.Tensor:
    """Ids of the cross-product feature ``AND(f_1 = a_1, ..., f_k = a_k)``.

    With local ids ``a_i`` (0 = OOV) and vocabularies ``V_i``:

    * any ``a_i = 0``: id 0 (the cross's own OOV row);
    * exact, when ``prod_i (V_i - 1) <= buckets``: ``1 + mixed_radix(a_1 - 1, ..., a_k - 1)`` with
      radices ``V_i - 1`` -- two rows share an id iff they share every value;
    * hashed otherwise: ``key = horner(a_1, ..., a_k)`` with ``key <- (key * V_i + a_i) mod P``,
      then ``1 + ((A * key + C) mod P) mod buckets`` with ``P = 2^31 - 1``, ``A = 48271``,
      ``C = 12345``. Equal value tuples always share an id; distinct tuples collide with
      probability about ``1 / buckets``.

    Args:
        ids: ``(B, k)`` local ids of the crossed fields.
        vocab_sizes: ``V_i`` of each field (including row 0).
        buckets: Maximum number of non-OOV cross ids.

    Returns:
        ``(B,)`` int64 ids in ``[0, cross_rows(vocab_sizes, buckets))``.
    """
    ids = ids.long()
    if _is_exact(vocab_sizes, buckets):
        key = torch.zeros(ids.shape[0], dtype=torch.long, device=ids.device)
        for i, v in enumerate(vocab_sizes):
            key = key * (v - 1) + (ids[:, i] - 1).clamp(min=0)
        out = key + 1
    else:
        key = torch.zeros(ids.shape[0], dtype=torch.long, device=ids.device)
        for i, v in enumerate(vocab_sizes):
            key = (key * v + ids[:, i]) % HASH_PRIME  # key, v < 2^31: no int64 overflow
        out = 1 + ((key * HASH_MULTIPLIER + HASH_OFFSET) % HASH_PRIME) % buckets
    return torch.where((ids == 0).any(dim=1), torch.zeros_like(out), out)


def _is_exact(vocab_sizes: tuple[int, ...], buckets: int) -> bool:
    return math.prod(v - 1 for v in vocab_sizes) <= buckets


def cross_rows(vocab_sizes: tuple[int, ...], buckets: int) -> int:
    """Rows of a cross's weight table, including its OOV row 0."""
    if _is_exact(vocab_sizes, buckets):
        return 1 + math.prod(v - 1 for v in vocab_sizes)
    return 1 + buckets


def parse_crosses(crosses: tuple[str | tuple[str, ...], ...]) -> tuple[tuple[str, ...], ...]:
    """Normalise ``"a&b"`` strings and name lists into tuples of field names."""
    out = []
    for c in crosses:
        names = tuple(n.strip() for n in c.split("&")) if isinstance(c, str) else tuple(c)
        if len(names) < 2 or len(set(names)) != len(names) or not all(names):
            raise ValueError(f"a cross needs two or more distinct fields, got {c!r}")
        out.append(names)
    return tuple(out)
