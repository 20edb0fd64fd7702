"""cocotb testbench for the subarray block (``insitu_subarray``) against a numpy model.

Not a pytest module: the simulator's embedded Python imports it (``run_cocotb(...,
"cocotb_subarray", ...)`` from ``tests/test_hdl_cocotb.py``). It owns the block-level model of
docs/numerics.md steps 1-7 for one subarray, written here from the contract (not from
``algo/golden.py``): weight cells (differential or offset-binary, sliced into ``cell_bits``
cells, laid out as in :mod:`insitu.hdl.params`), bit-plane column sums, the threshold-table ADC
(``code = #{i : t_i <= S}``, output ``levels[code]``) and the shift-add into ``y``, plus the
decoded row read ``weights`` and the exact transposed product ``sum_j delta[j] * W[row, j]``
(BP chips; FA and DFA chips leave ``transposed`` at zero).

The design arrives as a JSON file named by ``SUBARRAY_TB_CONFIG``::

    {"chip": ChipParams.to_dict(), "seed": 1, "vectors": 200}

Bench ``subarray_random_vectors``: per vector, random weight writes (random lanes enabled
through ``wen``), a random ADC table on the ``thresholds``/``levels`` ports (sometimes the
uniform one), ``rows`` accumulate events over random rows (repeats allowed) with random
inputs and idle gaps, every (plane, mux step) conversion once in random order, then ``y`` is
checked; then transposed reads of random rows with random deltas check ``weights`` and
``transposed``.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from cocotb_chip import chip_params_from_dict

from insitu.hdl.params import ChipParams

CONFIG_ENV = "SUBARRAY_TB_CONFIG"


class SubarrayModel:
    """The subarray's arithmetic, from the numerics contract."""

    def __init__(self, p: ChipParams) -> None:
        self.p = p
        self.nw = p.weights_per_row
        self.pols = p.polarities
        self.slices = p.slices
        self.c = p.cell_bits
        self.cols = p.used_cols
        # stored weights; None until written (the memory powers up as all-zero cells)
        self.w: list[list[int | None]] = [[None] * self.nw for _ in range(p.rows)]

    def cells(self, w: int) -> list[int]:
        """Cells of one weight in physical column order: polarity-major, slice 0 first."""
        p = self.p
        mags = [max(w, 0), max(-w, 0)] if self.pols == 2 else [w + 2 ** (p.weight_bits - 1)]
        mask = 2**self.c - 1
        return [(m >> (self.c * s)) & mask for m in mags for s in range(self.slices)]

    def word(self, weights: list[int]) -> int:
        """``wdata`` for one row holding ``weights`` (one per lane)."""
        bits = 0
        for j, w in enumerate(weights):
            for k, cell in enumerate(self.cells(w)):
                bits |= cell << ((j * self.pols * self.slices + k) * self.c)
        return bits

    def row_cells(self, r: int) -> list[int]:
        out: list[int] = []
        for w in self.w[r]:
            out += [0] * (self.pols * self.slices) if w is None else self.cells(w)
        return out

    def column_sums(self, events: list[tuple[int, int]]) -> list[list[int]]:
        """S[plane][col] for accumulate events (row, input)."""
        sums = [[0] * self.cols for _ in range(self.p.activation_bits)]
        for r, a in events:
            cells = self.row_cells(r)
            for pl in range(self.p.activation_bits):
                if (a >> pl) & 1:
                    for col in range(self.cols):
                        sums[pl][col] += cells[col]
        return sums

    def y(self, sums: list[list[int]], thresholds: list[int], levels: list[int]) -> list[int]:
        out = []
        per = self.pols * self.slices
        for j in range(self.nw):
            total = 0
            for pl in range(self.p.activation_bits):
                for pol in range(self.pols):
                    sign = -1 if pol == 1 else 1
                    for s in range(self.slices):
                        v = sums[pl][j * per + pol * self.slices + s]
                        code = sum(1 for t in thresholds if t <= v)
                        total += sign * (levels[code] << (pl + self.c * s))
            out.append(total)
        return out


def _uniform(bits: int, m: int) -> tuple[list[int], list[int]]:
    """The contract's uniform ADC over range m (numerics.md, step 6)."""
    n = 2**bits
    if m <= n - 1:
        return list(range(1, n)), list(range(n))
    d = 2 * (n - 1)
    return [-((-(2 * i - 1) * m) // d) for i in range(1, n)], [
        (2 * c * m + n - 1) // d for c in range(n)
    ]


def random_table(p: ChipParams, rng: random.Random) -> tuple[list[int], list[int]]:
    n = p.adc_levels
    max_sum = p.rows * (2**p.cell_bits - 1)
    if rng.random() < 0.25:
        return _uniform(p.adc_bits, rng.randint(1, max_sum))
    lo = 0 if rng.random() < 0.1 else 1
    t_top = min(2**p.threshold_bits - 1, max(max_sum + 2, lo + n - 2))
    thresholds = sorted(rng.sample(range(lo, t_top + 1), n - 1))
    v_top = rng.choice([max_sum, 2**p.level_bits - 1])
    levels = sorted(rng.randint(0, v_top) for _ in range(n))
    return thresholds, levels


@cocotb.test()
async def subarray_random_vectors(dut: Any) -> None:
    """Random weights, inputs and ADC tables; y, weights and transposed match the model."""
    doc = json.loads(Path(os.environ[CONFIG_ENV]).read_text(encoding="utf-8"))
    p = chip_params_from_dict(doc["chip"])
    seed, vectors = int(doc.get("seed", 1)), int(doc.get("vectors", 100))
    rng = random.Random(seed)
    model = SubarrayModel(p)
    nw, A, R, E = p.weights_per_row, p.activation_bits, p.rows, p.error_bits
    w_top = 2 ** (p.weight_bits - 1) - 1
    y_ports = [getattr(dut, f"y__{j}") for j in range(nw)]
    w_ports = [getattr(dut, f"weights__{j}") for j in range(nw)]
    d_ports = [getattr(dut, f"delta__{j}") for j in range(nw)]
    t_ports = [getattr(dut, f"thresholds__{i}") for i in range(p.adc_levels - 1)]
    v_ports = [getattr(dut, f"levels__{i}") for i in range(p.adc_levels)]
    edge = RisingEdge(dut.clk)

    Clock(dut.clk, 10, unit="ns").start()
    inputs = ("read", "clear", "accumulate", "act", "convert", "conv_plane", "conv_sel", "row")
    for name in (*inputs, "waddr", "wdata", "wen"):
        getattr(dut, name).value = 0
    for port in d_ports:
        port.value = 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0

    def idle() -> None:
        for name in ("read", "clear", "accumulate", "convert", "wen"):
            getattr(dut, name).value = 0

    async def write_rows(rows: list[int], full: bool) -> None:
        for r in rows:
            lanes = list(range(nw)) if full else [j for j in range(nw) if rng.random() < 0.5]
            new = [rng.randint(-w_top, w_top) for _ in range(nw)]
            dut.waddr.value = r
            dut.wdata.value = model.word(new)
            dut.wen.value = sum(1 << j for j in lanes)
            await edge
            for j in lanes:
                model.w[r][j] = new[j]
        dut.wen.value = 0

    await write_rows(list(range(R)), full=True)
    checked = 0
    for vec in range(vectors):
        if rng.random() < 0.5:
            await write_rows(rng.sample(range(R), rng.randint(1, R)), full=False)
        thresholds, levels = random_table(p, rng)
        for port, t in zip(t_ports, thresholds, strict=True):
            port.value = t
        for port, v in zip(v_ports, levels, strict=True):
            port.value = v

        # column sums: clear, then one read per cycle, accumulated the cycle after
        idle()
        dut.clear.value = 1
        await edge
        dut.clear.value = 0
        events = [(rng.randrange(R), rng.randrange(2**A)) for _ in range(R)]
        if rng.random() < 0.3:
            events = [(r, rng.randrange(2**A)) for r in rng.sample(range(R), R)]
        pending: int | None = None  # input of the row read last cycle
        queue = list(events)
        while queue or pending is not None:
            gap = queue and rng.random() < 0.2
            if queue and not gap:
                r, a = queue.pop(0)
                dut.row.value = r
                dut.read.value = 1
                nxt: int | None = a
            else:
                dut.read.value = 0
                nxt = None
            dut.accumulate.value = int(pending is not None)
            dut.act.value = pending if pending is not None else rng.randrange(2**A)
            await edge
            pending = nxt
        idle()

        # conversions: every (plane, mux step) once, in random order, with gaps
        steps = [(pl, m) for pl in range(A) for m in range(p.cols_per_adc)]
        rng.shuffle(steps)
        for pl, m in steps:
            if rng.random() < 0.2:
                dut.convert.value = 0
                await edge
            dut.convert.value = 1
            dut.conv_plane.value = pl
            dut.conv_sel.value = m
            await edge
        dut.convert.value = 0
        await edge  # y is combinational from the registered sums: read after the last edge
        sums = model.column_sums(events)
        expected = model.y(sums, thresholds, levels)
        got = [port.value.to_signed() for port in y_ports]
        if got != expected:
            raise AssertionError(
                f"vector {vec}: y = {got}, expected {expected}\n"
                f"  events (row, input): {events}\n  ADC thresholds {thresholds}, "
                f"levels {levels}\n  weights {model.w}\n  column sums per plane {sums}"
            )

        # transposed reads (BP) and the decoded row read (WGU)
        for _ in range(2):
            r = rng.randrange(R)
            deltas = [rng.randint(-(2 ** (E - 1) - 1), 2 ** (E - 1) - 1) for _ in range(nw)]
            for port, d in zip(d_ports, deltas, strict=True):
                port.value = d
            dut.row.value = r
            dut.read.value = 1
            await edge
            dut.read.value = 0
            await edge  # data of the read at the previous edge is now on the outputs
            row_w = [0 if w is None else w for w in model.w[r]]
            got_w = [port.value.to_signed() for port in w_ports]
            tr = dut.transposed.value.to_signed()
            # only BP chips build the transposed product; FA/DFA leave the port at zero
            want_tr = (
                sum(d * w for d, w in zip(deltas, row_w, strict=True)) if p.rule == "bp" else 0
            )
            if got_w != row_w or tr != want_tr:
                raise AssertionError(
                    f"vector {vec}: row {r} read gives weights {got_w} (expected {row_w}), "
                    f"transposed {tr} with deltas {deltas} (expected {want_tr})"
                )
        checked += 1
    dut._log.info("subarray bench passed: %d vectors (%s)", checked, p.encoding)
