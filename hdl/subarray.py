"""The subarray stand-in: weight cells, bit-plane column sums, column-muxed ADCs, shift-add.

The analog crossbar cannot be RTL, so this block reproduces its arithmetic exactly
(docs/numerics.md, steps 1-7) with digital parts:

- a weight memory of ``rows`` words, one word per word line holding the cells of
  ``weights_per_row`` weights (layout in :mod:`insitu.hdl.params`);
- the column sums of every input bit plane, formed while the rows are read one per cycle
  (the analog array forms one plane's sums in a single read; the counters record the analog
  events, see docs/hdl.md);
- ``adcs_per_subarray`` ADCs, each multiplexed over ``cols_per_adc`` columns (column
  ``m * adcs + g`` goes to ADC ``g`` in mux step ``m``), each a bank of integer threshold
  comparators followed by a level table: ``code = #{i : t_i <= S}``, output ``levels[code]``;
- shift-add of the converted levels by plane and slice into one signed sum per weight column;
- the transposed read of BP: ``sum_j delta[j] * W[row, j]``, exact and digital;
- decoded weights of the row read, for the weight-gradient unit.
"""

from __future__ import annotations

from amaranth.hdl import Array, Module, Signal, Value, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .arith import decode_cells, tree_sum
from .blackbox import Blackbox
from .params import ChipParams, bits_for


class SubarrayCore(wiring.Component):
    """The subarray's arithmetic: bit-plane column sums, column-muxed ADCs, shift-add.

    ``cells`` is the row read of the weight memory (data of the read the cycle before); with
    ``accumulate`` the cells of every column are added to the sums of the planes whose ``act``
    bit is set. A conversion reads plane ``conv_plane``, mux step ``conv_sel`` of every ADC and
    adds the level, shifted by the plane, into its column's accumulator; ``y`` is the
    shift-add of the accumulators over slices and polarities. It is its own component so that a
    co-simulation build can put a behavioural model in its place (docs/cosim.md) and test the
    two against each other, port for port, cycle for cycle.
    """

    def __init__(self, p: ChipParams) -> None:
        self._p = p
        nw = p.weights_per_row
        self.cell_width = p.used_cols * p.cell_bits
        self.y_width = p.subarray_y_bits
        super().__init__(
            {
                "clear": In(1),
                "accumulate": In(1),
                "act": In(p.activation_bits),
                "cells": In(self.cell_width),
                "convert": In(1),
                "conv_plane": In(range(max(2, p.activation_bits))),
                "conv_sel": In(range(max(2, p.cols_per_adc))),
                "thresholds": In(p.threshold_bits).array(p.adc_levels - 1),
                "levels": In(p.level_bits).array(p.adc_levels),
                "y": Out(signed(self.y_width)).array(nw),
            }
        )

    def elaborate(self, platform: object) -> Module:
        p = self._p
        m = Module()
        nw, pols, S, c, A = (
            p.weights_per_row,
            p.polarities,
            p.slices,
            p.cell_bits,
            p.activation_bits,
        )
        cols = p.used_cols
        n_adc, cpa = p.adcs_per_subarray, p.cols_per_adc

        # Column sums of every plane, one row per cycle.
        sums = [
            [Signal(p.column_sum_bits, name=f"s_p{pl}_c{col}") for col in range(cols)]
            for pl in range(A)
        ]
        for pl in range(A):
            for col in range(cols):
                cell = self.cells[col * c : (col + 1) * c]
                with m.If(self.clear):
                    m.d.sync += sums[pl][col].eq(0)
                with m.Elif(self.accumulate & self.act[pl]):
                    m.d.sync += sums[pl][col].eq(sums[pl][col] + cell)

        # ADCs: a threshold comparator bank and a level table, muxed over planes and columns.
        zero = Signal(1, name="zero")
        acc_w = p.level_bits + A
        shifted = [Signal(acc_w, name=f"acc_c{col}") for col in range(cols)]
        for g in range(n_adc):
            inputs = Array(
                Array(
                    sums[pl][mi * n_adc + g] if mi * n_adc + g < cols else zero for mi in range(cpa)
                )
                for pl in range(A)
            )
            x = Signal(p.column_sum_bits, name=f"adc{g}_in")
            m.d.comb += x.eq(inputs[self.conv_plane][self.conv_sel])
            code = tree_sum([(x >= t).as_unsigned() for t in self.thresholds])
            level = Signal(p.level_bits, name=f"adc{g}_level")
            m.d.comb += level.eq(Array(self.levels)[code])
            for mi in range(cpa):
                col = mi * n_adc + g
                if col >= cols:
                    continue
                with m.If(self.clear):
                    m.d.sync += shifted[col].eq(0)
                with m.Elif(self.convert & (self.conv_sel == mi)):
                    m.d.sync += shifted[col].eq(shifted[col] + (level << self.conv_plane))

        # Shift-add over slices and polarities.
        for j in range(nw):
            total: Value | int = 0
            for pol in range(pols):
                sign = -1 if (pol == 1) else 1
                for s in range(S):
                    term = shifted[(j * pols + pol) * S + s] << (c * s)
                    total = total + term if sign > 0 else total - term
            m.d.comb += self.y[j].eq(total)
        return m


class Subarray(wiring.Component):
    """One ``rows x cols`` subarray of a layer; every subarray of a chip has the same ports."""

    def __init__(self, p: ChipParams, *, core_module: str | None = None) -> None:
        """``core_module``: instantiate the arithmetic (:class:`SubarrayCore`) as that
        separately built module, e.g. the co-simulation's behavioural model; None elaborates
        it here."""
        self._p = p
        self._core_module = core_module
        nw = p.weights_per_row
        self.cell_width = p.used_cols * p.cell_bits
        self.y_width = p.subarray_y_bits
        self.tr_width = p.error_bits + p.weight_bits + bits_for(nw) + 1
        super().__init__(
            {
                # word-line read (data one cycle later)
                "row": In(range(max(2, p.rows))),
                "read": In(1),
                # column sums: ``act`` is the input of the row read the cycle before
                "clear": In(1),
                "accumulate": In(1),
                "act": In(p.activation_bits),
                # conversions: plane and mux step of every ADC
                "convert": In(1),
                "conv_plane": In(range(max(2, p.activation_bits))),
                "conv_sel": In(range(max(2, p.cols_per_adc))),
                "y": Out(signed(self.y_width)).array(nw),
                # transposed read (BP): deltas of this subarray's columns
                "delta": In(signed(p.error_bits)).array(nw),
                "transposed": Out(signed(self.tr_width)),
                # the row read, decoded, and the write port (host load and weight update)
                "weights": Out(signed(p.weight_bits)).array(nw),
                "waddr": In(range(max(2, p.rows))),
                "wdata": In(self.cell_width),
                "wen": In(nw),
                # the layer's ADC table (runtime registers, shared by all its subarrays)
                "thresholds": In(p.threshold_bits).array(p.adc_levels - 1),
                "levels": In(p.level_bits).array(p.adc_levels),
            }
        )

    def elaborate(self, platform: object) -> Module:
        p = self._p
        m = Module()
        nw, pols = p.weights_per_row, p.polarities
        mem = Memory(shape=self.cell_width, depth=max(2, p.rows), init=[])
        m.submodules.cells = mem
        rd = mem.read_port()
        wr = mem.write_port(granularity=pols * p.weight_bits)
        m.d.comb += [
            rd.addr.eq(self.row),
            rd.en.eq(self.read),
            wr.addr.eq(self.waddr),
            wr.data.eq(self.wdata),
            wr.en.eq(self.wen),
        ]
        word_w = pols * p.weight_bits
        for j in range(nw):
            cells = rd.data[j * word_w : (j + 1) * word_w]
            m.d.comb += self.weights[j].eq(decode_cells(cells, p.weight_bits, p.encoding))

        core: wiring.Component = SubarrayCore(p)
        if self._core_module is not None:
            core = Blackbox(core, self._core_module)
        m.submodules.core = core
        m.d.comb += [
            core.clear.eq(self.clear),
            core.accumulate.eq(self.accumulate),
            core.act.eq(self.act),
            core.cells.eq(rd.data),
            core.convert.eq(self.convert),
            core.conv_plane.eq(self.conv_plane),
            core.conv_sel.eq(self.conv_sel),
        ]
        m.d.comb += [x.eq(t) for x, t in zip(core.thresholds, self.thresholds, strict=True)]
        m.d.comb += [x.eq(v) for x, v in zip(core.levels, self.levels, strict=True)]
        m.d.comb += [y.eq(v) for y, v in zip(self.y, core.y, strict=True)]

        # Transposed read: exact digital dot product of the row with the deltas. Only BP reads
        # W transposed; FA and DFA chips leave the port at zero instead of paying nw
        # multipliers per subarray (an FPGA's DSPs go first).
        if p.rule == "bp":
            m.d.comb += self.transposed.eq(
                tree_sum([self.delta[j] * self.weights[j] for j in range(nw)])
            )
        return m
