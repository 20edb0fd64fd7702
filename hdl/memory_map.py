"""The chip's host memory map and counter list, shared by the RTL and every host-side driver.

A command is ``{addr, data, write}`` with 32-bit words. ``addr[31:28]`` selects a region,
``addr[27:24]`` a layer, ``addr[23:0]`` an offset inside it. The address helpers below are the
only place that knows how a (layer, row, column) maps to an offset, so drivers cannot drift
from the RTL (both import this module).
"""

from __future__ import annotations

from enum import IntEnum

from .params import ChipParams, bits_for


class Region(IntEnum):
    CTRL = 0  # 0 ID (ro), 1 BUSY (ro), 2 START (wo: samples | infer_only << 16), 3 STEP (rw),
    #           0x10 + layer: GRAD_SHIFT (rw)
    ADC_T = 1  # layer, threshold index (rw)
    ADC_L = 2  # layer, level index (rw)
    WEIGHT = 3  # layer, (subarray, row, lane) (rw, signed)
    ACT = 4  # layer, (sample * rows + row, row block): inputs of a layer (rw; layer 0 = inputs)
    LABEL = 5  # sample (rw)
    OUT = 6  # (sample, class): output codes (ro, signed)
    DELTA = 7  # layer, (sample * col_blocks + col block, lane): stored deltas (ro, signed)
    COUNTER = 8  # 2 * counter index + (0 low word | 1 high word) (ro)
    ACT_PACK = 9  # layer, (sample, row, row block k0): inputs of row blocks k0 ..
    #               k0 + pack_lanes - 1 of one row in one word, lane q in bits q*A .. (wo;
    #               k0 a multiple of pack_lanes)


CTRL = {"id": 0, "busy": 1, "start": 2, "step": 3, "grad_shift": 0x10}

#: Performance counters, in address order; each is 64 bits.
COUNTERS: list[tuple[str, str]] = [
    ("cycles_busy", "cycles from START to the end of the batch"),
    ("cycles_forward", "cycles in the forward pass (incl. output error)"),
    ("cycles_backward", "cycles in the backward pass (deltas and their storage)"),
    ("cycles_update", "cycles of the weight update"),
    ("samples", "samples processed"),
    ("batches", "weight updates (batches) run"),
    ("array_reads", "analog array reads: one per subarray and input bit plane"),
    ("row_activations", "word-line activations: active rows summed over array reads"),
    ("adc_conversions", "ADC conversions"),
    ("shift_adds", "shift-add accumulations of converted levels"),
    ("tree_adds", "adds of the PE/tile adder trees across row blocks"),
    ("transposed_macs", "multiply-accumulates of the BP transposed read"),
    ("feedback_adds", "LFSR feedback accumulations (DFA/FA)"),
    ("wgu_macs", "weight-gradient multiply-accumulates"),
    ("cell_writes", "cells whose stored value changed in an update"),
    ("buffer_bits_read", "bits read from the on-chip activation and delta buffers"),
    ("buffer_bits_written", "bits written to the on-chip activation and delta buffers"),
    ("htree_bits", "bits times H-tree links traversed (hops)"),
    ("host_words", "32-bit words through the host port"),
    (
        "dram_bits",
        "off-chip data bits: the payload of every host-port word (inputs, labels, weights, ADC "
        "tables, results; control and counter words carry none)",
    ),
]


def payload_bits(p: ChipParams) -> dict[Region, int]:
    """Data bits one host word of each region carries (what off-chip memory must hold).

    The port is 32 bits wide, but an input is ``activation_bits`` wide, a weight
    ``weight_bits``: pricing whole words overstated off-chip energy about 4x. Control and
    counter words are the host talking to the chip, not data moved to or from memory.
    """
    return {
        Region.CTRL: 0,
        Region.ADC_T: p.threshold_bits,
        Region.ADC_L: p.level_bits,
        Region.WEIGHT: p.weight_bits,
        Region.ACT: p.activation_bits,
        Region.LABEL: bits_for(p.classes - 1),
        Region.OUT: p.error_bits,
        Region.DELTA: p.error_bits,
        Region.COUNTER: 0,
        Region.ACT_PACK: pack_lanes(p) * p.activation_bits,  # at most; see word_payload
    }


def pack_lanes(p: ChipParams) -> int:
    """Inputs one ACT_PACK word carries: as many ``activation_bits`` lanes as 32 bits hold.

    Loading a sample one input per word made the host port the second largest share of an
    MNIST co-simulation's cycles (785 of ~3,800 per sample); a word of 4 8-bit inputs cuts
    it to 257.
    """
    return max(1, 32 // p.activation_bits)


def pack_lanes_used(p: ChipParams, layer: int, row: int, k0: int) -> int:
    """Lanes of the ACT_PACK word (layer, row, k0) that hold one of the layer's inputs: those
    on its row blocks, less the last row block's where ``row`` is past the layer's fan-in."""
    lay = p.layers[layer]
    used = max(0, min(pack_lanes(p), lay.row_blocks - k0))
    last = lay.row_blocks - 1
    if used and k0 + used - 1 == last and row >= lay.fan_in - last * p.rows:
        used -= 1
    return used


def word_payload(p: ChipParams, addr: int) -> int:
    """Data bits of one host word at ``addr``, as the chip's ``dram_bits`` counts them: the
    region's payload; for ACT_PACK the inputs it carries (:func:`pack_lanes_used`)."""
    region = (addr >> 28) & 0xF
    if region == Region.ACT_PACK:
        layer = (addr >> 24) & 0xF
        if layer >= p.num_layers:
            return 0
        kbits = field_bits(p.layers[layer].row_blocks)
        row = (addr >> kbits) & ((1 << field_bits(p.rows)) - 1)
        k0 = addr & ((1 << kbits) - 1)
        return p.activation_bits * pack_lanes_used(p, layer, row, k0)
    return payload_table(p)[region]


def payload_table(p: ChipParams) -> list[int]:
    """:func:`payload_bits` indexed by the address's 4-bit region field (0 where unmapped)."""
    widths = payload_bits(p)
    return [widths.get(Region(r), 0) if r < len(Region) else 0 for r in range(16)]


def field_bits(n: int) -> int:
    """Bits of an index over ``n`` items (at least 1, like the RTL's counters)."""
    return max(1, (n - 1).bit_length())


def address(region: Region, offset: int, layer: int = 0) -> int:
    if not 0 <= offset < 1 << 24:
        raise ValueError(f"offset {offset} is outside the 24-bit field")
    return (int(region) << 28) | (layer << 24) | offset


def weight_offset(p: ChipParams, layer: int, row: int, col: int) -> int:
    """Offset of weight W[row, col] of ``layer`` (row = input, col = output)."""
    lay = p.layers[layer]
    k, r = divmod(row, p.rows)
    cb, lane = divmod(col, p.weights_per_row)
    sub = k * lay.col_blocks + cb
    lbits = field_bits(p.weights_per_row)
    return (((sub << field_bits(p.rows)) | r) << lbits) | lane


def act_pack_offset(p: ChipParams, layer: int, sample: int, row: int, k0: int) -> int:
    """Offset of the ACT_PACK word of row blocks ``k0 ..`` of ``row`` of ``sample``."""
    if k0 % pack_lanes(p):
        raise ValueError(f"k0 = {k0} is not a multiple of pack_lanes = {pack_lanes(p)}")
    kbits = field_bits(p.layers[layer].row_blocks)
    return (((sample << field_bits(p.rows)) | row) << kbits) | k0


def act_offset(p: ChipParams, layer: int, sample: int, index: int) -> int:
    """Offset of input ``index`` of ``layer`` for ``sample`` (layer 0: the chip's inputs)."""
    k, r = divmod(index, p.rows)
    return ((sample * p.rows + r) << field_bits(p.layers[layer].row_blocks)) | k


def delta_offset(p: ChipParams, layer: int, sample: int, index: int) -> int:
    cb, lane = divmod(index, p.weights_per_row)
    word = sample * p.layers[layer].col_blocks + cb
    return (word << field_bits(p.weights_per_row)) | lane


def out_offset(p: ChipParams, sample: int, cls: int) -> int:
    return (sample << field_bits(p.classes)) | cls
