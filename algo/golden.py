"""The integer golden model: the numerics contract of docs/numerics.md, written plainly in numpy.

This is the reference that the torch hardware path (algo/hardware.py) and the RTL (hdl/) must
match bit for bit. It favours clarity over speed: loops over subarrays, bit planes and weight
slices are explicit, every quantity is int64, and nothing here depends on torch.
"""

from __future__ import annotations

import numpy as np

from .plan import IntegerPlan

M32 = 0xFFFFFFFF


def rshift_round(v: np.ndarray, s: int) -> np.ndarray:
    """Round-half-up right shift by s (s <= 0: exact left shift)."""
    v = np.asarray(v, dtype=np.int64)
    if s <= 0:
        return v << (-s)
    return (v + (1 << (s - 1))) >> s


def sat_signed(v: np.ndarray, bits: int) -> np.ndarray:
    m = 2 ** (bits - 1) - 1
    return np.clip(v, -m, m)


def dither_hash(layer: int, step: int, shape: tuple[int, int], seed: int) -> np.ndarray:
    """32-bit pseudo-random words, one per weight, from (seed, step, layer, flat index)."""
    k = np.arange(shape[0] * shape[1], dtype=np.int64).reshape(shape)
    x = ((k * 0x27D4EB2F) & M32) + (((step & M32) * 0x165667B1) & M32)
    x = (x + ((layer * 0x61C88647) & M32) + (seed & M32)) & M32
    x ^= x >> 16
    x = (x * 0x7FEB352D) & M32
    x ^= x >> 15
    x = (x * 0x2C1B3C6D) & M32
    x ^= x >> 16
    return x


def round_gradient(
    g: np.ndarray, s: int, rounding: str, layer: int, step: int, seed: int
) -> np.ndarray:
    if s <= 0:
        return g << (-s)
    if rounding == "nearest":
        return rshift_round(g, s)
    words = dither_hash(layer, step, g.shape, seed)
    dither = words >> (32 - s) if s <= 32 else words << (s - 32)
    return (g + dither) >> s


def weight_slices(w: np.ndarray, plan: IntegerPlan) -> list[tuple[int, list[np.ndarray]]]:
    """(sign, [slice 0 (LSBs), slice 1, ...]) for each physical array of a weight matrix."""
    c, n = plan.cell_bits, plan.num_slices
    mask = (1 << c) - 1
    if plan.encoding == "differential":
        arrays = [(1, np.maximum(w, 0)), (-1, np.maximum(-w, 0))]
    else:
        arrays = [(1, w + 2 ** (plan.weight_bits - 1))]
    return [(sign, [(m >> (c * s)) & mask for s in range(n)]) for sign, m in arrays]


def cim_matvec(a: np.ndarray, w: np.ndarray, plan: IntegerPlan, layer: int) -> np.ndarray:
    """y = a @ w as the chip computes it: bit-serial inputs, sliced weights, ADC per column sum."""
    lp = plan.layers[layer]
    levels = np.asarray(lp.adc.levels, dtype=np.int64)
    thresholds = np.asarray(lp.adc.thresholds, dtype=np.int64)
    a = np.asarray(a, dtype=np.int64)
    batch, k = a.shape
    y = np.zeros((batch, w.shape[1]), dtype=np.int64)
    arrays = weight_slices(w, plan)
    for r0 in range(0, k, plan.rows):
        rows = slice(r0, min(r0 + plan.rows, k))
        for p in range(plan.activation_bits):
            plane = (a[:, rows] >> p) & 1
            for sign, slices in arrays:
                for s, cells in enumerate(slices):
                    partial = plane @ cells[rows]
                    code = np.searchsorted(thresholds, partial, side="right")
                    y += sign * (levels[code] << (p + plan.cell_bits * s))
    if plan.encoding == "offset-binary":
        # The offset is removed digitally from the exact input sum.
        y -= (2 ** (plan.weight_bits - 1)) * a.sum(axis=1, keepdims=True)
    return y


def forward(
    plan: IntegerPlan, weights: list[np.ndarray], a0: np.ndarray
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Output codes o and the hidden activations h_0..h_{L-2}."""
    hidden: list[np.ndarray] = []
    a = np.asarray(a0, dtype=np.int64)
    last = len(weights) - 1
    for i, w in enumerate(weights):
        y = cim_matvec(a, w, plan, i)
        shift = plan.layers[i].out_shift
        if i < last:
            a = np.clip(rshift_round(np.maximum(y, 0), shift), 0, plan.a_max)
            hidden.append(a)
        else:
            return sat_signed(rshift_round(y, shift), plan.error_bits), hidden
    raise AssertionError("unreachable")


def output_error(plan: IntegerPlan, o: np.ndarray, labels: np.ndarray) -> np.ndarray:
    target = np.zeros_like(o)
    target[np.arange(len(labels)), labels] = plan.target
    e = sat_signed(o - target, plan.error_bits)
    if plan.error == "margin":
        correct = target > 0
        e = np.where(correct, np.minimum(e, 0), np.maximum(e, 0))
    return e


def deltas(
    plan: IntegerPlan, weights: list[np.ndarray], e: np.ndarray, hidden: list[np.ndarray]
) -> list[np.ndarray]:
    n = len(weights)
    out: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * n
    out[-1] = e
    for i in range(n - 2, -1, -1):
        if plan.rule == "dfa":
            u = e @ plan.feedback(i)
        elif plan.rule == "fa":
            u = out[i + 1] @ plan.feedback(i)
        else:
            u = out[i + 1] @ weights[i + 1].T
        d = sat_signed(rshift_round(u, plan.layers[i].delta_shift), plan.error_bits)
        out[i] = d * (hidden[i] > 0)
    return out


def train_step(
    plan: IntegerPlan, weights: list[np.ndarray], a0: np.ndarray, labels: np.ndarray, step: int
) -> tuple[list[np.ndarray], np.ndarray]:
    """One training step; returns the new weights and the output codes of the forward pass."""
    o, hidden = forward(plan, weights, a0)
    e = output_error(plan, o, np.asarray(labels))
    ds = deltas(plan, weights, e, hidden)
    inputs = [np.asarray(a0, dtype=np.int64), *hidden]
    new = []
    for i, w in enumerate(weights):
        g = inputs[i].T @ ds[i]
        dw = sat_signed(
            round_gradient(g, plan.layers[i].grad_shift, plan.rounding, i, step, plan.hash_seed),
            plan.gradient_bits,
        )
        new.append(sat_signed(w - dw, plan.weight_bits))
    return new, o
