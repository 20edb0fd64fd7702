"""The weight-gradient unit (WGU): ``dW = sat_G(round(a^T delta))`` and the saturated update.

At the end of a batch the WGU walks a layer's weight rows. For one row ``r`` of the subarrays
in column block ``cbi`` it reads, for every sample ``b`` of the batch, the stored input word
(the row-``r`` inputs of all row blocks at once) and the stored delta word (the ``weights_per_row``
deltas of block ``cbi``) and accumulates ``row_blocks x weights_per_row`` products in parallel;
it then reads the weight row, rounds each gradient to the update (round half up, or stochastic
with the contract's hash), saturates it to ``gradient_bits``, subtracts it with saturation to
``weight_bits`` and writes the row back. Cycles per row: ``n + 2`` for ``n`` samples.

Parallelism (``chip.wgu_row_blocks``): a WGU has ``P x weights_per_row`` lanes. With ``P`` equal
to the layer's row blocks (the default) one pass updates a whole weight row; with fewer, the
row blocks take turns in groups of ``P`` (output ``grp``), ``ceil(row_blocks / P)`` passes of
``n + 2`` cycles per row: fewer multipliers and accumulators for a longer update. The numbers
do not change: every weight's gradient is its own sum.

One WGU per layer (DFA: all layers update at once) or one WGU shared by all layers
(``wgu: shared``, the default for BP and FA), selected by its ``layer`` input.

Each lane (one weight of the row: multiply-accumulate, rounding, saturation, the new cells) is
a :class:`GradientLane` submodule, identical in every lane of every WGU of a chip: the area
flow (``hdl/asic_area.py``) synthesizes one lane instead of hundreds.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, Value, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .arith import (
    HASH_INDEX_MUL,
    M32,
    encode_cells,
    hash_finish,
    hash_start,
    mul_small,
    round_shift,
    saturate,
    tree_sum,
    wire,
)
from .params import ChipParams, LayerHW, bits_for

# Activation widths up to this are multiplied by shift-add in LUTs; wider ones go to DSPs.
MUL_SMALL_BITS = 4


class GradientLane(wiring.Component):
    """One lane: ``g += a * d`` while ``mac``; the rounded, saturated update of ``weight``.

    ``clear`` zeroes the accumulator and wins over ``mac``. ``hash0`` is the first word of the
    weight's stochastic-rounding hash (:func:`~.arith.hash_start`), ``cells`` the weight's new
    cells and ``changed`` how many of its cells differ from the old ones. Every port width
    follows from the chip's parameters only, so every lane of a chip is the same circuit.
    """

    def __init__(self, p: ChipParams, *, shift_bits: int) -> None:
        self._p = p
        self.g_width = p.activation_bits + p.error_bits + bits_for(p.batch) + 2
        self.word_w = p.polarities * p.weight_bits
        ports = {
            "a": In(p.activation_bits),
            "d": In(signed(p.error_bits)),
            "mac": In(1),
            "clear": In(1),
            "shift": In(shift_bits),
            "weight": In(signed(p.weight_bits)),
            "cells": Out(self.word_w),
            "changed": Out(range(self.word_w // p.cell_bits + 1)),
        }
        if p.rounding == "stochastic":
            ports["hash0"] = In(32)
        super().__init__(ports)

    def elaborate(self, platform: object) -> Module:
        p = self._p
        m = Module()
        g = Signal(signed(self.g_width))
        # few activation bits: a shift-add, not a DSP (see mul_small)
        A = p.activation_bits
        prod = mul_small(self.a, self.d) if A <= MUL_SMALL_BITS else self.a * self.d
        with m.If(self.clear):
            m.d.sync += g.eq(0)
        with m.Elif(self.mac):
            m.d.sync += g.eq(g + prod)
        dither = None
        if p.rounding == "stochastic":
            dither = hash_finish(m, self.hash0, "")
        rounded = wire(m, round_shift(g, self.shift, dither), signed(self.g_width + 1), "round")
        dw = wire(m, saturate(rounded, p.gradient_bits), signed(p.gradient_bits), "dw")
        new = wire(m, saturate(self.weight - dw, p.weight_bits), signed(p.weight_bits), "new")
        cells_new = wire(m, encode_cells(new, p.weight_bits, p.encoding), self.word_w, "cells_new")
        cells_old = wire(
            m, encode_cells(self.weight, p.weight_bits, p.encoding), self.word_w, "cells_old"
        )
        m.d.comb += self.cells.eq(cells_new)
        cb = p.cell_bits
        m.d.comb += self.changed.eq(
            tree_sum(
                [
                    cells_new[c * cb : (c + 1) * cb] != cells_old[c * cb : (c + 1) * cb]
                    for c in range(self.word_w // cb)
                ]
            )
        )
        return m


class WeightGradientUnit(wiring.Component):
    """Updates the layers in ``layers`` (one, or all for a shared WGU)."""

    def __init__(
        self, p: ChipParams, layers: list[LayerHW], grad_shifts: list[Value], step: Value
    ) -> None:
        if len(grad_shifts) != len(layers) or not layers:
            raise ValueError("one gradient-shift register per served layer is required")
        self._p = p
        self._layers = layers
        self._shifts = grad_shifts
        self._step = step
        self.all_row_blocks = max(lay.row_blocks for lay in layers)
        self.row_blocks = min(p.wgu_row_blocks, self.all_row_blocks)  # lanes' row blocks
        self.groups = -(-self.all_row_blocks // self.row_blocks)
        cb = max(lay.col_blocks for lay in layers)
        nw = p.weights_per_row
        cell_width = p.used_cols * p.cell_bits
        super().__init__(
            {
                "start": In(1),
                "layer": In(range(max(2, len(layers)))),
                "n": In(range(p.batch + 1)),
                "busy": Out(1),
                "act_addr": Out(range(max(2, p.batch * p.rows))),
                "act_en": Out(1),
                "act_data": In(self.all_row_blocks * p.activation_bits),
                "dlt_addr": Out(range(max(2, p.batch * cb))),
                "dlt_en": Out(1),
                "dlt_data": In(nw * p.error_bits),
                "cbi": Out(range(max(2, cb))),
                "grp": Out(range(max(2, self.groups))),  # lane k serves row block grp*P + k
                "w_row": Out(range(max(2, p.rows))),
                "w_read": Out(1),
                "weights": In(signed(p.weight_bits)).array(self.row_blocks, nw),
                "w_data": Out(cell_width).array(self.row_blocks),
                "w_write": Out(1),
                "macs": Out(range(self.row_blocks * nw + 1)),
                "cells_changed": Out(range(self.row_blocks * cell_width + 1)),
            }
        )

    def elaborate(self, platform: object) -> Module:
        p, lays = self._p, self._layers
        m = Module()
        nw, A, E, rb = p.weights_per_row, p.activation_bits, p.error_bits, self.row_blocks
        P, G = self.row_blocks, self.groups

        def per_layer(values: list[int]) -> Value:
            return Array(values)[self.layer] if len(values) > 1 else values[0]

        cb_of = per_layer([lay.col_blocks for lay in lays])
        rb_of = per_layer([lay.row_blocks for lay in lays])
        n_of = per_layer([lay.fan_out for lay in lays])
        shift = Array(self._shifts)[self.layer] if len(self._shifts) > 1 else self._shifts[0]
        layer_index = per_layer([lay.index for lay in lays])

        r = Signal(range(max(2, p.rows)))
        cbi = Signal.like(self.cbi)
        grp = Signal.like(self.grp)
        b = Signal(range(p.batch + 1))
        a_addr = Signal.like(self.act_addr)
        d_addr = Signal.like(self.dlt_addr)
        mac_v = Signal()
        clear = Signal()
        m.d.comb += [
            self.act_addr.eq(a_addr),
            self.dlt_addr.eq(d_addr),
            self.cbi.eq(cbi),
            self.grp.eq(grp),
            self.w_row.eq(r),
        ]
        # groups of row blocks this layer needs, and the row block of each lane in this pass
        groups_of = per_layer([-(-lay.row_blocks // P) for lay in lays])
        last_grp = grp == groups_of - 1
        base = grp * P if G > 1 else Const(0)

        # The lanes accumulate the products of the reads issued last cycle.
        m.d.sync += mac_v.eq(self.act_en)
        active_rows = Signal(range(rb + 1))
        if G > 1:
            left = Signal(range(self.all_row_blocks + 1))
            m.d.comb += left.eq(rb_of - base)
            m.d.comb += active_rows.eq(Mux(left > P, P, left))
        else:
            m.d.comb += active_rows.eq(rb_of)
        with m.If(mac_v):
            m.d.comb += self.macs.eq(active_rows * nw)
        acts = [
            self.act_data[k * A : (k + 1) * A].as_unsigned() for k in range(self.all_row_blocks)
        ]
        if p.rounding == "stochastic":
            # the hash's first word is linear in the weight's index: once per row, plus a
            # constant per lane (index = (r + (base + k) * rows) * n + cbi * nw + j)
            h_row = wire(
                m,
                hash_start(
                    (r + base * p.rows) * n_of + cbi * nw, self._step, layer_index, p.hash_seed
                ),
                32,
                "hash_row",
            )
        changed: list[Value] = []
        for k in range(rb):
            if G > 1:
                a_k = Signal(A, name=f"a_lane{k}")
                pick = [acts[g * P + k] if g * P + k < len(acts) else 0 for g in range(G)]
                m.d.comb += a_k.eq(Array(pick)[grp])
            else:
                a_k = acts[k]
            cells = []
            for j in range(nw):
                lane = GradientLane(p, shift_bits=len(shift))
                m.submodules[f"lane{k}_{j}"] = lane
                m.d.comb += [
                    lane.a.eq(a_k),
                    lane.d.eq(self.dlt_data[j * E : (j + 1) * E].as_signed()),
                    lane.mac.eq(mac_v),
                    lane.clear.eq(clear),
                    lane.shift.eq(shift),
                    lane.weight.eq(self.weights[k][j]),
                ]
                if p.rounding == "stochastic":
                    offset = per_layer(
                        [((k * p.rows * lay.fan_out + j) * HASH_INDEX_MUL) & M32 for lay in lays]
                    )
                    m.d.comb += lane.hash0.eq((h_row + offset)[:32])
                cells.append(lane.cells)
                changed.append(Mux(k < active_rows, lane.changed, 0))
            m.d.comb += self.w_data[k].eq(Cat(*cells))

        with m.FSM():
            with m.State("IDLE"), m.If(self.start):
                m.d.sync += [r.eq(0), cbi.eq(0), grp.eq(0), b.eq(0), a_addr.eq(0), d_addr.eq(0)]
                m.d.comb += clear.eq(1)
                m.next = "MAC"
            with m.State("MAC"):
                m.d.comb += [self.busy.eq(1), self.act_en.eq(1), self.dlt_en.eq(1)]
                m.d.sync += [b.eq(b + 1), a_addr.eq(a_addr + p.rows), d_addr.eq(d_addr + cb_of)]
                with m.If(b == self.n - 1):
                    m.d.comb += self.w_read.eq(1)
                    m.next = "LAST"
            with m.State("LAST"):
                # the last product is accumulated this cycle; the weight row arrives
                m.d.comb += self.busy.eq(1)
                m.next = "WRITE"
            with m.State("WRITE"):
                m.d.comb += [self.busy.eq(1), self.w_write.eq(1)]
                m.d.comb += self.cells_changed.eq(tree_sum(changed))
                m.d.comb += clear.eq(1)
                m.d.sync += b.eq(0)

                def next_row() -> None:
                    with m.If(r == p.rows - 1):
                        m.d.sync += [r.eq(0), cbi.eq(cbi + 1), a_addr.eq(0), d_addr.eq(cbi + 1)]
                        with m.If(cbi == cb_of - 1):
                            m.next = "IDLE"
                        with m.Else():
                            m.next = "MAC"
                    with m.Else():
                        m.d.sync += [r.eq(r + 1), a_addr.eq(r + 1), d_addr.eq(cbi)]
                        m.next = "MAC"

                if G > 1:
                    with m.If(~last_grp):
                        # the next group of row blocks, same weight row: the batch again
                        m.d.sync += [grp.eq(grp + 1), a_addr.eq(r), d_addr.eq(cbi)]
                        m.next = "MAC"
                    with m.Else():
                        m.d.sync += grp.eq(0)
                        next_row()
                else:
                    next_row()
        return m
