"""Host-side programs for the chip: the command sequences that load, run and read it.

Pure Python and transport-agnostic: each function returns a list of commands
``(address, data, write)`` (reads carry data 0) that a transport executes: the Amaranth
simulator in unit tests, cocotb testbenches, or the Verilator model of the co-simulation.
Addresses come from :mod:`insitu.hdl.memory_map`, the single source the RTL also reads.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .memory_map import (
    COUNTERS,
    CTRL,
    Region,
    act_offset,
    act_pack_offset,
    address,
    delta_offset,
    out_offset,
    pack_lanes,
    weight_offset,
)
from .params import ChipParams

Command = tuple[int, int, bool]
M32 = 0xFFFFFFFF


def write_weights(p: ChipParams, weights: Sequence[np.ndarray]) -> list[Command]:
    cmds: list[Command] = []
    for i, w in enumerate(weights):
        lay = p.layers[i]
        if w.shape != (lay.fan_in, lay.fan_out):
            raise ValueError(
                f"weights[{i}] has shape {w.shape}, layer {i} needs {(lay.fan_in, lay.fan_out)}"
            )
        for r in range(lay.fan_in):
            for c in range(lay.fan_out):
                a = address(Region.WEIGHT, weight_offset(p, i, r, c), i)
                cmds.append((a, int(w[r, c]) & M32, True))
    return cmds


def read_weights(p: ChipParams) -> list[Command]:
    return [
        (address(Region.WEIGHT, weight_offset(p, i, r, c), i), 0, False)
        for i, lay in enumerate(p.layers)
        for r in range(lay.fan_in)
        for c in range(lay.fan_out)
    ]


def unpack_weights(p: ChipParams, words: Sequence[int]) -> list[np.ndarray]:
    out, pos = [], 0
    for lay in p.layers:
        n = lay.fan_in * lay.fan_out
        out.append(_signed(words[pos : pos + n]).reshape(lay.fan_in, lay.fan_out))
        pos += n
    return out


def write_batch(
    p: ChipParams, a0: np.ndarray, labels: np.ndarray, *, packed: bool = True
) -> list[Command]:
    """Inputs and labels of a batch. ``packed``: ``pack_lanes`` inputs per word (ACT_PACK, the
    row blocks of one row side by side, in :func:`pack_order`); else one per word (ACT)."""
    if a0.shape[0] > p.batch or a0.shape[1] != p.widths[0]:
        raise ValueError(f"inputs of shape {a0.shape}: at most {p.batch} samples of {p.widths[0]}")
    cmds: list[Command] = []
    words = pack_words(p, a0) if packed else None
    for b in range(a0.shape[0]):
        if words is not None:
            for (addr, _), word in zip(pack_order(p, b), words[b], strict=True):
                cmds.append((addr, int(word), True))
        else:
            for i in range(a0.shape[1]):
                cmds.append((address(Region.ACT, act_offset(p, 0, b, i), 0), int(a0[b, i]), True))
        cmds.append((address(Region.LABEL, b), int(labels[b]), True))
    return cmds


def pack_order(p: ChipParams, sample: int) -> list[tuple[int, list[int]]]:
    """The ACT_PACK words of one sample's inputs: (address, input index of every lane, -1 for
    an empty lane), row by row, row-block group by group."""
    lay, n = p.layers[0], pack_lanes(p)
    out = []
    for r in range(p.rows):
        for k0 in range(0, lay.row_blocks, n):
            idx = [k * p.rows + r for k in range(k0, min(k0 + n, lay.row_blocks))]
            idx = [j if j < lay.fan_in else -1 for j in idx]
            idx += [-1] * (n - len(idx))
            out.append((address(Region.ACT_PACK, act_pack_offset(p, 0, sample, r, k0)), idx))
    return out


def pack_table(p: ChipParams) -> np.ndarray:
    """The lanes of :func:`pack_order` as an array (words per sample, lanes): the same for
    every sample."""
    return np.array([idx for _, idx in pack_order(p, 0)], dtype=np.int64)


def pack_words(p: ChipParams, a0: np.ndarray, table: np.ndarray | None = None) -> np.ndarray:
    """The data of every sample's ACT_PACK words, (samples, words per sample); ``table``:
    :func:`pack_table` computed once by a caller that packs many batches."""
    table = pack_table(p) if table is None else table
    shifts = np.arange(table.shape[1], dtype=np.int64) * p.activation_bits
    # a zero column for the empty lanes (index -1), then every lane shifted into place
    a = np.asarray(a0, dtype=np.int64)
    padded = np.concatenate([a, np.zeros((len(a), 1), np.int64)], 1)
    return np.asarray((padded[:, table] << shifts).sum(axis=2))


def write_plan(
    p: ChipParams,
    grad_shifts: Sequence[int],
    adc: Sequence[tuple[Sequence[int], Sequence[int]]],
    step: int,
) -> list[Command]:
    """Runtime plan registers: gradient shifts, ADC tables (thresholds, levels) and the step."""
    cmds: list[Command] = [(address(Region.CTRL, CTRL["step"]), step & M32, True)]
    for i, s in enumerate(grad_shifts):
        cmds.append((address(Region.CTRL, CTRL["grad_shift"] + i), int(s), True))
    for i, (ts, vs) in enumerate(adc):
        cmds += [(address(Region.ADC_T, j, i), int(t), True) for j, t in enumerate(ts)]
        cmds += [(address(Region.ADC_L, j, i), int(v), True) for j, v in enumerate(vs)]
    return cmds


def start(n: int, infer_only: bool = False) -> list[Command]:
    return [(address(Region.CTRL, CTRL["start"]), n | (int(infer_only) << 16), True)]


def read_outputs(p: ChipParams, n: int) -> list[Command]:
    return [
        (address(Region.OUT, out_offset(p, b, c)), 0, False)
        for b in range(n)
        for c in range(p.classes)
    ]


def read_acts(p: ChipParams, layer: int, n: int) -> list[Command]:
    """Stored inputs of ``layer`` (layer >= 1: the hidden activations of layer - 1)."""
    return [
        (address(Region.ACT, act_offset(p, layer, b, i), layer), 0, False)
        for b in range(n)
        for i in range(p.layers[layer].fan_in)
    ]


def read_deltas(p: ChipParams, layer: int, n: int) -> list[Command]:
    return [
        (address(Region.DELTA, delta_offset(p, layer, b, j), layer), 0, False)
        for b in range(n)
        for j in range(p.layers[layer].fan_out)
    ]


def read_counters() -> list[Command]:
    return [(address(Region.COUNTER, k), 0, False) for k in range(2 * len(COUNTERS))]


def unpack_counters(words: Sequence[int]) -> dict[str, int]:
    return {
        name: int(words[2 * k]) | (int(words[2 * k + 1]) << 32)
        for k, (name, _) in enumerate(COUNTERS)
    }


def _signed(words: Sequence[int] | np.ndarray) -> np.ndarray:
    v = np.asarray(words, dtype=np.int64) & M32
    return np.where(v >= 2**31, v - 2**32, v)


def signed_words(words: Sequence[int] | np.ndarray) -> np.ndarray:
    return _signed(words)
