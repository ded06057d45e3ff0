"""``KeySet``: the transform's memory-bounded set of key hashes behaves as a Python set of their first 96 bits."""

from __future__ import annotations

import numpy as np

from eventpipe.core.records import KeySet


def _batches(rng: np.random.Generator, n_batches: int, size: int) -> list[np.ndarray]:
    """Random 128-bit keys with repeats within and across batches, and first halves that collide."""
    pool = rng.integers(0, 2**64, size=(size * n_batches // 2, 2), dtype=np.uint64)
    pool[: len(pool) // 10, 0] = pool[0, 0]  # many keys share one first half
    pool[len(pool) // 10 : len(pool) // 5, 0] = 2**64 - 1  # and one at the very top bucket
    pool[len(pool) // 5 : len(pool) // 4, 0] = 0
    return [pool[rng.integers(0, len(pool), size=size)] for _ in range(n_batches)]


def test_seen_before_matches_a_python_set():
    rng = np.random.default_rng(7)
    ks, ref = KeySet(), set()
    for batch in _batches(rng, 12, 3000):
        got = ks.seen_before(batch)
        as_tuples = [(int(hi), int(lo) & 0xFFFFFFFF) for hi, lo in batch]  # the 96 bits a KeySet keeps
        assert got.tolist() == [t in ref for t in as_tuples]
        ref.update(as_tuples)
        assert len(ks) == len(ref)
    assert ks.nbytes == 12 * len(ref)


def test_empty_batches_and_an_empty_set():
    ks = KeySet()
    assert ks.seen_before(np.zeros((0, 2), dtype=np.uint64)).tolist() == []
    one = np.array([[5, 6]], dtype=np.uint64)
    assert ks.seen_before(one).tolist() == [False]
    assert ks.seen_before(np.array([[5, 7], [5, 6], [6, 6]], dtype=np.uint64)).tolist() == [
        False,
        True,
        False,
    ]
    assert len(ks) == 3


def test_only_the_first_96_bits_count():
    ks = KeySet()
    ks.seen_before(np.array([[5, 6]], dtype=np.uint64))
    assert ks.seen_before(np.array([[5, 6 + (1 << 40)], [5, 7]], dtype=np.uint64)).tolist() == [True, False]
