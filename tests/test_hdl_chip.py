"""The chip RTL against the golden model in Amaranth's simulator, and its arithmetic blocks.

Random small design points (rules, encodings, rounding, cell bits, ADC tables, WGU sharing)
run several batches through the RTL; outputs, hidden activations, deltas and the updated
weights must equal ``algo/golden.py`` bit for bit. cocotb runs of the exported Verilog on
Icarus and Verilator are in tests/test_hdl_cocotb.py.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import pytest
from amaranth.hdl import Module, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from insitu.algo import golden
from insitu.algo.lfsr import lfsr_bits
from insitu.algo.plan import AdcTable, IntegerPlan, make_plan
from insitu.config import DesignPoint, load
from insitu.hdl import host
from insitu.hdl.amaranth_sim import WAIT, simulate
from insitu.hdl.arith import (
    decode_cells,
    dither_word,
    encode_cells,
    lfsr_chunks,
    lfsr_unrolled,
    round_shift,
)
from insitu.hdl.chip import Chip
from insitu.hdl.memory_map import word_payload
from insitu.hdl.params import ChipParams, HardwareError, floorplan
from insitu.hdl.tile import Tile


def small_design(layers: tuple[int, ...], overrides: list[str]) -> DesignPoint:
    dp = load("digits", overrides)
    return dp.model_copy(update={"network": dp.network.model_copy(update={"layers": layers})})


def random_adc(rng: np.random.Generator, bits: int, max_sum: int) -> AdcTable:
    n = 2**bits
    t = np.sort(rng.choice(np.arange(1, max(max_sum + 3, n + 1)), size=n - 1, replace=False))
    v = np.sort(rng.integers(0, max_sum + 1, size=n))
    return AdcTable(tuple(int(x) for x in t), tuple(int(x) for x in v))


def run_and_compare(dp: DesignPoint, *, batches: int, seed: int, random_tables: bool) -> None:
    rng = np.random.default_rng(seed)
    plan = make_plan(dp)
    p = ChipParams.from_design(dp, plan.to_dict())
    if random_tables:
        plan = plan.with_adc(
            [random_adc(rng, dp.array.adc_bits, plan.max_partial_sum) for _ in plan.layers]
        )
    wmax = plan.w_max
    ws = [rng.integers(-wmax, wmax + 1, size=(lp.fan_in, lp.fan_out)) for lp in plan.layers]
    step0 = int(rng.integers(0, 2**31))
    prog: list[Any] = host.write_weights(p, ws)
    prog += host.write_plan(
        p,
        [lp.grad_shift for lp in plan.layers],
        [(lp.adc.thresholds, lp.adc.levels) for lp in plan.layers],
        step0,
    )
    expected: list[tuple[str, np.ndarray]] = []
    weights = ws
    for k in range(batches):
        n = int(rng.integers(1, p.batch + 1))
        a0 = rng.integers(0, plan.a_max + 1, size=(n, p.widths[0]))
        labels = rng.integers(0, p.classes, size=n)
        o, hidden = golden.forward(plan, weights, a0)
        e = golden.output_error(plan, o, labels)
        ds = golden.deltas(plan, weights, e, hidden)
        weights, _ = golden.train_step(plan, weights, a0, labels, step0 + k)
        # packed inputs (ACT_PACK) and one per word (ACT) in turn: the same inputs must land
        prog += host.write_batch(p, a0, labels, packed=k % 2 == 0) + host.start(n) + [WAIT]
        prog += host.read_outputs(p, n)
        expected.append((f"batch {k} outputs", o))
        for i in range(len(p.layers)):
            prog += host.read_acts(p, i, n)
            expected.append((f"batch {k} inputs of layer {i}", hidden[i - 1] if i else a0))
        for i in range(len(p.layers)):
            prog += host.read_deltas(p, i, n)
            expected.append((f"batch {k} deltas {i}", ds[i]))
        prog += host.read_weights(p)
        expected.append((f"batch {k} weights", np.concatenate([w.ravel() for w in weights])))
    # inference only: outputs, and the weights must not move
    a0 = rng.integers(0, plan.a_max + 1, size=(1, p.widths[0]))
    prog += host.write_batch(p, a0, np.zeros(1, dtype=np.int64)) + host.start(1, True) + [WAIT]
    prog += host.read_outputs(p, 1) + host.read_weights(p) + host.read_counters()
    expected.append(("inference outputs", golden.forward(plan, weights, a0)[0]))
    expected.append(("weights after inference", np.concatenate([w.ravel() for w in weights])))

    words, _ = simulate(Chip(p), prog)
    got = host.signed_words(words)
    pos = 0
    for what, exp in expected:
        flat = np.asarray(exp).ravel()
        val = got[pos : pos + flat.size]
        pos += flat.size
        bad = np.flatnonzero(val != flat)
        assert bad.size == 0, (
            f"{what}: {bad.size} mismatches, first at flat index {bad[0]}: "
            f"expected {flat[bad[0]]}, RTL {val[bad[0]]}"
        )
    counters = host.unpack_counters(words[pos:])
    assert counters["batches"] == batches
    # off-chip bits: the payload of every host word the program sent (counter reads carry none)
    sent = [c for c in prog if c is not WAIT]
    assert counters["dram_bits"] == sum(word_payload(p, a) for a, _, _ in sent)
    assert counters["cycles_busy"] == (
        counters["cycles_forward"] + counters["cycles_backward"] + counters["cycles_update"]
    )
    assert counters["adc_conversions"] > 0 and counters["array_reads"] > 0


CASES = [
    ("bp", "differential", "nearest", 2, (9, 6, 4), "auto"),
    ("fa", "offset-binary", "stochastic", 1, (7, 5, 6, 3), "auto"),
    ("dfa", "differential", "stochastic", 2, (10, 7, 5, 4), "auto"),
    ("dfa", "offset-binary", "nearest", 1, (6, 9, 3), "shared"),
    ("bp", "offset-binary", "stochastic", 2, (11, 5, 4), "per-layer"),
]


@pytest.mark.parametrize(("rule", "enc", "rounding", "cell", "layers", "wgu"), CASES)
def test_chip_matches_golden(
    rule: str, enc: str, rounding: str, cell: int, layers: tuple[int, ...], wgu: str
) -> None:
    seed = zlib.crc32(repr((rule, enc, rounding, cell, layers, wgu)).encode())  # stable
    rng = np.random.default_rng(seed)
    rows = int(rng.integers(3, 7))
    dp = small_design(
        layers,
        [
            f"learning.rule={rule}",
            f"array.weight_encoding={enc}",
            f"precision.rounding={rounding}",
            f"array.cell_bits={cell}",
            f"array.rows={rows}",
            f"array.cols={int(rng.integers(2, 4)) * 2 * 4 // cell}",
            "precision.weight_bits=4",
            "precision.activation_bits=3",
            "precision.error_bits=6",
            "precision.gradient_bits=4",
            f"array.adc_bits={min(int(rng.integers(2, 4)), (rows * (2**cell - 1)).bit_length())}",
            f"array.cols_per_adc={int(rng.integers(1, 4))}",
            f"learning.batch_size={int(rng.choice([2, 4]))}",
            "learning.hardware_lr=0.5",
            f"chip.wgu={wgu}",
            f"chip.feedback_lanes={int(rng.integers(1, 5))}",
            # small tiles: several tiles per layer, so the H-tree has depth > 1
            "chip.pes_per_tile=1",
            f"chip.subarrays_per_pe={int(rng.integers(1, 3))}",
        ],
    )
    assert ChipParams.from_design(dp, make_plan(dp).to_dict()).tiles > 1
    run_and_compare(dp, batches=2, seed=seed, random_tables=rule != "bp")


def test_floorplan_whole_columns_or_chains() -> None:
    # (row blocks, subarrays per PE, PEs per tile) -> (column blocks, row blocks) per tile
    assert floorplan(7, 4, 4) == (2, 7)  # 2 PEs per column, 2 columns per tile
    assert floorplan(2, 1, 4) == (2, 2)
    assert floorplan(1, 4, 4) == (4, 1)
    assert floorplan(5, 1, 2) == (1, 2)  # 5 PEs per column: a chain of 3 tiles of 2 PEs
    assert floorplan(16, 4, 4) == (1, 16)
    assert floorplan(17, 4, 4) == (1, 16)  # 5 PEs: a chain of 2 tiles
    # the mnist preset: 784 inputs on 128 rows -> 7 row blocks -> 2 columns per tile
    dp = load("mnist", ["network.layers=[784,256,10]"])
    lay = ChipParams.from_design(dp, make_plan(dp).to_dict()).layers[0]
    assert (lay.tile_col_blocks, lay.tile_row_blocks, lay.tiles) == (2, 7, 8)
    assert (lay.tile_groups, lay.tile_chain, lay.tile_index(3, 0)) == (8, 1, 3)


def test_tile_refuses_a_place_outside_its_layer() -> None:
    dp = small_design((11, 5, 4), ["array.adc_bits=3", "array.rows=3", "chip.pes_per_tile=1"])
    p = ChipParams.from_design(dp, make_plan(dp).to_dict())
    lay = p.layers[0]
    with pytest.raises(
        ValueError, match=r"group=5 is not a column group of layer 0: allowed 0\.\."
    ):
        Tile(p, lay, group=5, link=0)
    with pytest.raises(
        ValueError, match=rf"link=9 is not a chain link .* 0\.\.{lay.tile_chain - 1}"
    ):
        Tile(p, lay, group=0, link=9)


@pytest.mark.parametrize(
    ("ppt", "spp", "layers", "enc"),
    [
        (4, 1, (6, 12, 4), "offset-binary"),  # two whole columns per tile, then one
        (1, 1, (13, 6, 4), "offset-binary"),  # chains of 4-5 tiles per column
        (2, 2, (17, 9, 4), "differential"),  # chains of 2 tiles of 2 PEs of 2 subarrays
    ],
)
def test_tile_floorplans_match_golden(
    ppt: int, spp: int, layers: tuple[int, ...], enc: str
) -> None:
    dp = small_design(
        layers,
        [
            "learning.rule=bp",
            f"array.weight_encoding={enc}",
            "array.adc_bits=3",
            "array.rows=3",
            "array.cols=8",
            "array.cell_bits=2",
            "precision.weight_bits=4",
            "precision.activation_bits=3",
            "precision.error_bits=6",
            "precision.gradient_bits=4",
            "learning.batch_size=2",
            "learning.hardware_lr=0.5",
            f"chip.pes_per_tile={ppt}",
            f"chip.subarrays_per_pe={spp}",
        ],
    )
    p = ChipParams.from_design(dp, make_plan(dp).to_dict())
    lay = p.layers[0]
    if ppt == 4:
        assert lay.tile_col_blocks > 1 and lay.tile_chain == 1
    else:
        assert lay.tile_chain > 1
    assert p.tiles == sum(x.tiles for x in p.layers)
    run_and_compare(dp, batches=2, seed=ppt * 10 + spp, random_tables=True)


# ---------------------------------------------------------------------------- arithmetic blocks
def test_lfsr_unrolled_matches_contract() -> None:
    rng = np.random.default_rng(1)
    outs, nxt = lfsr_unrolled(37)
    for seed in [1, 0xACE1, *rng.integers(1, 2**32, size=20).tolist()]:
        bits = [bin(seed & mk).count("1") & 1 for mk in outs]
        assert bits == lfsr_bits(int(seed), 37).tolist()
        state = sum((bin(seed & mk).count("1") & 1) << b for b, mk in enumerate(nxt))
        # the state after 37 steps continues the same sequence
        assert lfsr_bits(state, 5).tolist() == lfsr_bits(int(seed), 42)[37:].tolist()
    word = sum((bin(1 & mk).count("1") & 1) << k for k, mk in enumerate(lfsr_unrolled(32)[0]))
    assert word == 0x8A2DB6DB


# precisions small enough for Amaranth's simulator to run a few batches in seconds
TINY_NUMERICS = [
    "array.cols=8",
    "precision.weight_bits=4",
    "precision.activation_bits=3",
    "precision.error_bits=6",
    "precision.gradient_bits=4",
    "array.adc_bits=3",
    "learning.hardware_lr=0.5",
]


def test_stored_b_words_are_the_lfsr_stream() -> None:
    rng = np.random.default_rng(7)
    for _ in range(20):
        n_src, n_out, lanes = (int(x) for x in rng.integers(1, 40, size=3))
        seed = int(rng.integers(1, 2**32))
        chunks = -(-n_out // lanes)
        words = lfsr_chunks(seed, n_src, n_out, lanes)
        assert len(words) == n_src * chunks
        widths = [lanes] * (chunks - 1) + [n_out - (chunks - 1) * lanes]
        stream = [
            (w >> t) & 1
            for r in range(n_src)
            for q, n in enumerate(widths)
            for w in [words[r * chunks + q]]
            for t in range(n)
        ]
        assert stream == lfsr_bits(seed, n_src * n_out).tolist()


@pytest.mark.parametrize(
    ("rule", "layers", "lanes"), [("dfa", (9, 7, 5, 4), 3), ("fa", (8, 6, 5, 3), 16)]
)
def test_stored_feedback_chip_matches_golden(
    rule: str, layers: tuple[int, ...], lanes: int
) -> None:
    # B read from the engine's memory instead of regenerated: the same numbers, bit for bit
    dp = small_design(
        layers,
        [
            f"learning.rule={rule}",
            "chip.feedback_storage=stored",
            f"chip.feedback_lanes={lanes}",
            "array.rows=4",
            "learning.batch_size=2",
            *TINY_NUMERICS,
        ],
    )
    p = ChipParams.from_design(dp, make_plan(dp).to_dict())
    assert p.feedback_storage == "stored"
    run_and_compare(dp, batches=2, seed=zlib.crc32(rule.encode()), random_tables=True)


@pytest.mark.parametrize(
    ("wgu", "blocks", "rounding"),
    [("per-layer", 1, "stochastic"), ("shared", 2, "nearest"), ("per-layer", 3, "nearest")],
)
def test_wgu_row_blocks_in_turns_match_golden(wgu: str, blocks: int, rounding: str) -> None:
    # 4, 3 and 2 row blocks per layer on 3-row subarrays; the WGU's lanes take them in turns
    dp = small_design(
        (11, 8, 5, 3),
        [
            "learning.rule=dfa",
            f"chip.wgu={wgu}",
            f"chip.wgu_row_blocks={blocks}",
            f"precision.rounding={rounding}",
            "array.rows=3",
            "learning.batch_size=3",
            *TINY_NUMERICS,
        ],
    )
    p = ChipParams.from_design(dp, make_plan(dp).to_dict())
    assert p.wgu_row_blocks == blocks and [lay.row_blocks for lay in p.layers] == [4, 3, 2]
    run_and_compare(dp, batches=2, seed=blocks, random_tables=True)


class _Arith(wiring.Component):
    """Combinational wrapper of the contract's rounding and hash, for simulation."""

    def __init__(self, stochastic: bool, layer: int, seed: int) -> None:
        self._stochastic, self._layer, self._seed = stochastic, layer, seed
        super().__init__(
            {
                "g": In(signed(24)),
                "shift": In(6),
                "index": In(20),
                "step": In(32),
                "out": Out(signed(64)),
                "word": Out(32),
                "w": In(signed(6)),
                "cells": Out(12),
                "back": Out(signed(8)),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        word = dither_word(m, self.index, self.step, self._layer, self._seed, "t")
        m.d.comb += self.word.eq(word)
        m.d.comb += self.out.eq(round_shift(self.g, self.shift, word if self._stochastic else None))
        enc = "differential" if self._stochastic else "offset-binary"
        m.d.comb += self.cells.eq(encode_cells(self.w, 6, enc))
        m.d.comb += self.back.eq(decode_cells(self.cells, 6, enc))
        return m


@pytest.mark.parametrize("stochastic", [False, True])
def test_rounding_hash_and_cells_match_golden(stochastic: bool) -> None:
    rng = np.random.default_rng(7 + stochastic)
    layer, seed = 2, 12345
    dut = _Arith(stochastic, layer, seed)
    n = 1000
    gs = rng.integers(-(2**23), 2**23, size=n)
    # nearest: every shift the 6-bit register holds, above the 24-bit g's width too (the RTL
    # clamps the shift there); stochastic: up to 40, past the hash word's 32 bits
    shifts = rng.integers(0, 40 if stochastic else 64, size=n)
    idx = rng.integers(0, 2**20, size=n)
    steps = rng.integers(0, 2**32, size=n)
    ws = rng.integers(-31, 32, size=n)
    got: list[tuple[int, int, int]] = []

    async def bench(ctx: Any) -> None:
        for g, s, i, st, w in zip(gs, shifts, idx, steps, ws, strict=True):
            for sig, v in ((dut.g, g), (dut.shift, s), (dut.index, i), (dut.step, st)):
                ctx.set(sig, int(v))
            ctx.set(dut.w, int(w))
            await ctx.delay(1e-9)
            got.append((ctx.get(dut.out), ctx.get(dut.word), ctx.get(dut.back)))

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    for (g, s, i, st, w), (out, word, back) in zip(
        zip(gs, shifts, idx, steps, ws, strict=True), got, strict=True
    ):
        exp_word = golden.dither_hash(layer, int(st), (1, int(i) + 1), seed)[0, int(i)]
        assert word == exp_word
        exp = golden.round_gradient(
            np.array([[int(g)]]), int(s), "stochastic" if stochastic else "nearest", layer, 0, 0
        )[0, 0]
        if stochastic:
            exp = (int(g) + (exp_word >> (32 - s) if s <= 32 else exp_word << (s - 32))) >> s
        assert out == exp, (g, s)
        assert back == w


class _Round(wiring.Component):
    """round_shift with the dither word as an input, on a narrow g (the far path is common)."""

    def __init__(self, width: int) -> None:
        super().__init__(
            {"g": In(signed(width)), "shift": In(6), "word": In(32), "out": Out(signed(width + 2))}
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.d.comb += self.out.eq(round_shift(self.g, self.shift, self.word))
        return m


@pytest.mark.parametrize("width", [5, 9])
def test_stochastic_round_shift_every_shift_and_extreme_words(width: int) -> None:
    # shifts past g's width give -1, 0 or 1; all three must come out where the 66-bit formula
    # of the contract gives them, with words whose top bits are all ones or all zeros
    rng = np.random.default_rng(width)
    dut = _Round(width)
    cases = []
    for s in range(64):
        for _ in range(40):
            g = int(rng.integers(-(2 ** (width - 1)), 2 ** (width - 1)))
            low = int(rng.integers(0, 2**6))
            word = int(rng.choice([rng.integers(0, 2**32), 2**32 - 1 - low, low]))
            cases.append((g, s, word))
    got: list[int] = []

    async def bench(ctx: Any) -> None:
        for g, s, word in cases:
            ctx.set(dut.g, g)
            ctx.set(dut.shift, s)
            ctx.set(dut.word, word)
            await ctx.delay(1e-9)
            got.append(ctx.get(dut.out))

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    expected = [(g + ((word << 32) >> (64 - s))) >> s for g, s, word in cases]
    assert got == expected
    assert {-1, 0, 1} <= {e for e, (_, s, _) in zip(expected, cases, strict=True) if s > width}


# ---------------------------------------------------------------------------- parameters
def test_hardware_errors_name_the_field() -> None:
    dp = load("digits", ["array.cols=3", "array.cols_per_adc=1"])
    with pytest.raises(HardwareError, match=r"array.cols = 3 is too small"):
        ChipParams.from_design(dp, make_plan(dp).to_dict())
    dp = load("digits", ["chip.tiles=1"])
    with pytest.raises(HardwareError, match=r"chip.tiles = 1 is too few"):
        ChipParams.from_design(dp, make_plan(dp).to_dict())
    # BP has no feedback matrix: stored B only applies to FA and DFA
    dp = load("digits", ["chip.feedback_storage=stored", "learning.rule=bp"])
    assert ChipParams.from_design(dp, make_plan(dp).to_dict()).feedback_storage == "lfsr"


def test_floorplan_and_manifest_values() -> None:
    dp = load("mnist")
    p = ChipParams.from_design(dp, make_plan(dp).to_dict())
    # 8-bit weights in 2-bit cells, differential: 8 columns per weight -> 16 weights per row
    assert p.weights_per_row == dp.array.cols // 8
    lay = p.layers[0]
    assert lay.row_blocks == -(-784 // dp.array.rows)
    assert lay.col_blocks == -(-dp.network.layers[1] // p.weights_per_row)
    d = p.to_dict()
    assert d["derived"]["total_subarrays"] == sum(x.subarrays for x in p.layers)
    assert isinstance(IntegerPlan.from_dict(make_plan(dp).to_dict()), IntegerPlan)
