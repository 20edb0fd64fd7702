"""The feedback-matrix generator of the numerics contract: a 32-bit Galois LFSR.

The same polynomial and seed schedule are implemented by the RTL, so the +-1 matrices that DFA
and FA use never need to be stored (DESIGN.md, chip.feedback_storage = lfsr).

Contract (docs/numerics.md): polynomial x^32 + x^22 + x^2 + x + 1 (Galois mask 0x80200003).
One step: ``out = state & 1; state >>= 1; if out: state ^= MASK``. Matrix ``k`` (k = 0, 1, ...)
is generated from seed ``(lfsr_seed ^ (0x9E3779B9 * (k + 1))) & 0xFFFFFFFF`` (or 1 if that is
zero), entries in row-major order, ``+1`` for an output bit of 1 and ``-1`` for 0.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

MASK = 0x80200003
_GOLDEN = 0x9E3779B9


def matrix_seed(lfsr_seed: int, index: int) -> int:
    seed = (lfsr_seed ^ (_GOLDEN * (index + 1))) & 0xFFFFFFFF
    return seed or 1


def lfsr_bits(seed: int, count: int) -> np.ndarray:
    """``count`` output bits of the LFSR started at ``seed`` (uint8 array)."""
    if not 0 < seed < 2**32:
        raise ValueError(f"LFSR seed must be in 1..2^32-1, got {seed}")
    out = np.empty(count, dtype=np.uint8)
    state = seed
    for i in range(count):
        bit = state & 1
        state >>= 1
        if bit:
            state ^= MASK
        out[i] = bit
    return out


@lru_cache(maxsize=64)
def _pm1(seed: int, rows: int, cols: int) -> np.ndarray:
    bits = lfsr_bits(seed, rows * cols).astype(np.int64)
    m = (2 * bits - 1).reshape(rows, cols)
    m.flags.writeable = False
    return m


def feedback_matrix(lfsr_seed: int, index: int, rows: int, cols: int) -> np.ndarray:
    """The +-1 matrix number ``index`` with shape (rows, cols), int64, read-only."""
    return _pm1(matrix_seed(lfsr_seed, index), rows, cols)
