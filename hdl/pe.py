"""The processing element: one column block of a layer's subarrays and its adder tree.

A layer's weight matrix is cut into ``row_blocks x col_blocks`` subarrays (the floorplan in
:mod:`insitu.hdl.params`). A PE holds the ``row_blocks`` subarrays of one column block: they
share the word-line address, the conversion controls, the ADC table and the BP deltas of their
columns; each gets its own slice of the input word and its own read enable and write port (the
host writes one subarray at a time, the weight-gradient unit one row block group at a time).
The PE's adder tree sums the row blocks' shift-added outputs into the column block's partial
layer outputs ``y``; the transposed (BP) sums and the decoded weight rows leave per row block,
since the chip sums the former over column blocks (across tiles) and the WGU reads the latter
by row block. :class:`insitu.hdl.tile.Tile` holds the PEs.
"""

from __future__ import annotations

from amaranth.hdl import Module, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .arith import tree_sum
from .blackbox import Blackbox
from .params import ChipParams
from .subarray import Subarray


class ProcessingElement(wiring.Component):
    """``row_blocks`` subarrays of one column block and the adder tree over them."""

    def __init__(
        self, p: ChipParams, row_blocks: int, *, subarray_module: str | None = None
    ) -> None:
        """``subarray_module``: instantiate the subarrays as that separately generated Verilog
        module (export); None elaborates them here (Amaranth simulation)."""
        if not isinstance(row_blocks, int) or row_blocks < 1:
            raise ValueError(f"ProcessingElement: row_blocks={row_blocks!r} must be >= 1")
        self._p = p
        self._subarray_module = subarray_module
        self._template = Subarray(p)
        self._template._MustUse__silence = True  # only its widths are read
        t = self._template
        K, nw = row_blocks, p.weights_per_row
        self.row_blocks = K
        # the sum of K signed y_width-bit values needs ceil(log2 K) more bits
        self.y_width = t.y_width + (K - 1).bit_length()
        super().__init__(
            {
                "row": In(range(max(2, p.rows))),
                "read": In(1).array(K),
                "clear": In(1),
                "accumulate": In(1),
                "act": In(p.activation_bits).array(K),
                "convert": In(1),
                "conv_plane": In(range(max(2, p.activation_bits))),
                "conv_sel": In(range(max(2, p.cols_per_adc))),
                "y": Out(signed(self.y_width)).array(nw),
                "delta": In(signed(p.error_bits)).array(nw),
                "transposed": Out(signed(t.tr_width)).array(K),
                "weights": Out(signed(p.weight_bits)).array(K, nw),
                "waddr": In(range(max(2, p.rows))),
                "wdata": In(t.cell_width).array(K),
                "wen": In(nw).array(K),
                "thresholds": In(p.threshold_bits).array(p.adc_levels - 1),
                "levels": In(p.level_bits).array(p.adc_levels),
            }
        )

    def elaborate(self, platform: object) -> Module:
        p = self._p
        m = Module()
        nw = p.weights_per_row
        subs: list[wiring.Component] = []
        for k in range(self.row_blocks):
            sa: wiring.Component = Subarray(p)
            if self._subarray_module is not None:
                sa = Blackbox(sa, self._subarray_module)
            m.submodules[f"sa{k}"] = sa
            m.d.comb += [
                sa.row.eq(self.row),
                sa.read.eq(self.read[k]),
                sa.clear.eq(self.clear),
                sa.accumulate.eq(self.accumulate),
                sa.act.eq(self.act[k]),
                sa.convert.eq(self.convert),
                sa.conv_plane.eq(self.conv_plane),
                sa.conv_sel.eq(self.conv_sel),
                sa.waddr.eq(self.waddr),
                sa.wdata.eq(self.wdata[k]),
                sa.wen.eq(self.wen[k]),
                self.transposed[k].eq(sa.transposed),
            ]
            m.d.comb += [x.eq(t) for x, t in zip(sa.thresholds, self.thresholds, strict=True)]
            m.d.comb += [x.eq(v) for x, v in zip(sa.levels, self.levels, strict=True)]
            for lane in range(nw):
                m.d.comb += [
                    sa.delta[lane].eq(self.delta[lane]),
                    self.weights[k][lane].eq(sa.weights[lane]),
                ]
            subs.append(sa)
        for lane in range(nw):
            m.d.comb += self.y[lane].eq(tree_sum([sa.y[lane] for sa in subs]))
        return m
