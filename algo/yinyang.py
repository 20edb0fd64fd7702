"""The Yin-Yang dataset (Kriener, Göltz and Petrovici, "The Yin-Yang dataset", arXiv 2102.08211).

Points (x, y) drawn uniformly in the disc of radius ``r_big`` = 0.5 centred at (0.5, 0.5), labelled
0, 1 (the two halves; the reference's label is ``int(is_yin)``) or 2 (the two dots) by the
reference's ``which_class`` rule, with the class of each sample
chosen first (uniformly) and points drawn until one falls in that class (balanced classes). The
features are ``(x, y, 1 - x, 1 - y)``, so every sample has the same total input. Train, validation
and test sets use the reference's sizes and seeds (5000 / 42, 1000 / 41, 1000 / 40) and the same
draws from numpy's ``RandomState`` in the same order as the reference generator
(github.com/lkriener/yin_yang_data_set, ``dataset.py``), so the sets should be the published
ones.
"""

from __future__ import annotations

import numpy as np

R_SMALL = 0.1
R_BIG = 0.5
TRAIN = (5000, 42)
VALIDATION = (1000, 41)
TEST = (1000, 40)


def which_class(x: float, y: float, r_small: float = R_SMALL, r_big: float = R_BIG) -> int:
    """2 for the dots, else 1 where the reference's ``is_yin`` holds, 0 elsewhere."""
    d_right = np.hypot(x - 1.5 * r_big, y - r_big)
    d_left = np.hypot(x - 0.5 * r_big, y - r_big)
    if d_right < r_small or d_left < r_small:
        return 2
    is_yin = (
        d_right <= r_small
        or r_small < d_left <= 0.5 * r_big
        or (y > r_big and d_right > 0.5 * r_big)
    )
    return int(is_yin)


def generate(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``size`` samples from ``RandomState(seed)``: float32 (size, 4) in [0, 1], int64 labels."""
    rng = np.random.RandomState(seed)
    feats = np.empty((size, 4), dtype=np.float64)
    labels = np.empty(size, dtype=np.int64)
    for i in range(size):
        goal = rng.randint(3)
        while True:
            x, y = rng.rand(2) * 2.0 * R_BIG
            if np.hypot(x - R_BIG, y - R_BIG) > R_BIG:
                continue
            if which_class(x, y) == goal:
                break
        feats[i] = (x, y, 1.0 - x, 1.0 - y)
        labels[i] = goal
    return feats.astype(np.float32), labels
