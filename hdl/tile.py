"""The tile: PEs of a few column blocks, the accumulation over them, ReLU and requantization.

The floorplan (:func:`insitu.hdl.params.floorplan`) gives each tile of a layer whole column
blocks when they fit: the PEs of every row block of ``tile_col_blocks`` column blocks. The tile
receives the layer's input word from its own H-tree leaf (its input buffer is the leaf's
register), its PEs' shift-add registers hold the column sums (its output buffer), and it
ends with what a layer output needs:

- the accumulation of its PEs' outputs per column (the adder tree over the PEs; with
  offset-binary cells, the removal of ``2^(Wb-1) x sum(a)``);
- hidden layers: ReLU, the rounding shift by the layer's ``out_shift`` and the clamp to
  ``activation_bits`` (``h``, the next layer's inputs);
- the output layer: the rounding shift and the symmetric saturation to ``error_bits``
  (``o``, the output codes the output error is formed from).

A column block whose row blocks need more PEs than a tile holds is split over a chain of
tiles: every tile of the chain but the first adds the partial sums of the one before
(``psum_in``), every tile but the last passes its own on (``psum``), and the last one
requantizes. The chip routes everything else: the word line, the conversion controls and the
ADC table are shared by the tile's subarrays; read and write enables are per subarray; the
BP transposed sums and the decoded weight rows leave per subarray, since the former are summed
across tiles and the WGU reads the latter one column block at a time.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Value, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .arith import clamp_unsigned, rshift_round, saturate, tree_sum, wire
from .params import ChipParams, LayerHW
from .pe import ProcessingElement
from .subarray import Subarray


class Tile(wiring.Component):
    """Column blocks ``group * tile_col_blocks ...`` of layer ``lay``, row blocks of chain link
    ``link`` (``link * tile_row_blocks ...``), as laid out by the floorplan."""

    def __init__(
        self,
        p: ChipParams,
        lay: LayerHW,
        *,
        group: int,
        link: int,
        subarray_module: str | None = None,
    ) -> None:
        """``subarray_module``: instantiate the subarrays as that separately generated Verilog
        module (export); None elaborates them here (Amaranth simulation)."""
        # a refused Tile is never elaborated: no "created but never used" warning for it
        self._MustUse__silence = True
        if not isinstance(group, int) or not 0 <= group < lay.tile_groups:
            raise ValueError(
                f"Tile: group={group!r} is not a column group of layer {lay.index}: allowed "
                f"0..{lay.tile_groups - 1}"
            )
        if not isinstance(link, int) or not 0 <= link < lay.tile_chain:
            raise ValueError(
                f"Tile: link={link!r} is not a chain link of layer {lay.index}: allowed "
                f"0..{lay.tile_chain - 1}"
            )
        self._MustUse__silence = False
        self._p = p
        self._lay = lay
        self._subarray_module = subarray_module
        nw, A, E = p.weights_per_row, p.activation_bits, p.error_bits
        c0 = group * lay.tile_col_blocks
        k0 = link * lay.tile_row_blocks
        self.col_blocks = range(c0, min(lay.col_blocks, c0 + lay.tile_col_blocks))
        self.row_blocks = range(k0, min(lay.row_blocks, k0 + lay.tile_row_blocks))
        self.first = link == 0
        self.final = link == lay.tile_chain - 1
        self.hidden = lay.index < p.num_layers - 1
        #: the layer outputs this tile produces (its columns that the layer has)
        self.outputs = range(c0 * nw, min(lay.fan_out, self.col_blocks.stop * nw))
        self.psum_width = p.layer_y_bits(lay)
        t = Subarray(p)
        t._MustUse__silence = True  # only its widths are read
        nC, nK = len(self.col_blocks), len(self.row_blocks)
        ports: dict[str, wiring.Member] = {
            "act": In(nK * A),
            "row": In(range(max(2, p.rows))),
            "clear": In(1),
            "accumulate": In(1),
            "convert": In(1),
            "conv_plane": In(range(max(2, A))),
            "conv_sel": In(range(max(2, p.cols_per_adc))),
            "thresholds": In(p.threshold_bits).array(p.adc_levels - 1),
            "levels": In(p.level_bits).array(p.adc_levels),
            "read": In(1).array(nC, nK),
            "waddr": In(range(max(2, p.rows))),
            "wdata": In(t.cell_width).array(nK),
            "wen": In(nw).array(nC, nK),
            "delta": In(signed(E)).array(nC, nw),
            "transposed": Out(signed(t.tr_width)).array(nC, nK),
            "weights": Out(signed(p.weight_bits)).array(nC, nK, nw),
        }
        if not self.first:
            ports["psum_in"] = In(signed(self.psum_width)).array(nC * nw)
        if not self.final:
            ports["psum"] = Out(signed(self.psum_width)).array(nC * nw)
        elif p.encoding == "offset-binary":
            ports["insum"] = In(p.input_sum_bits)
        if self.final and self.hidden:
            ports["h"] = Out(A).array(len(self.outputs))
        elif self.final:
            ports["o"] = Out(signed(E)).array(len(self.outputs))
        super().__init__(ports)

    def elaborate(self, platform: object) -> Module:
        p, lay = self._p, self._lay
        m = Module()
        nw, A, E, spp = p.weights_per_row, p.activation_bits, p.error_bits, p.subarrays_per_pe
        nK = len(self.row_blocks)
        sums: list[Value] = []
        for cl, _cb in enumerate(self.col_blocks):
            pes = []
            for q, kl0 in enumerate(range(0, nK, spp)):
                n = min(spp, nK - kl0)
                pe = ProcessingElement(p, n, subarray_module=self._subarray_module)
                m.submodules[f"pe{cl}_{q}"] = pe
                m.d.comb += [
                    pe.row.eq(self.row),
                    pe.clear.eq(self.clear),
                    pe.accumulate.eq(self.accumulate),
                    pe.convert.eq(self.convert),
                    pe.conv_plane.eq(self.conv_plane),
                    pe.conv_sel.eq(self.conv_sel),
                    pe.waddr.eq(self.waddr),
                ]
                m.d.comb += [x.eq(t) for x, t in zip(pe.thresholds, self.thresholds, strict=True)]
                m.d.comb += [x.eq(v) for x, v in zip(pe.levels, self.levels, strict=True)]
                for kk in range(n):
                    kl = kl0 + kk
                    m.d.comb += [
                        pe.read[kk].eq(self.read[cl][kl]),
                        pe.act[kk].eq(self.act[kl * A : (kl + 1) * A]),
                        pe.wdata[kk].eq(self.wdata[kl]),
                        pe.wen[kk].eq(self.wen[cl][kl]),
                        self.transposed[cl][kl].eq(pe.transposed[kk]),
                    ]
                    m.d.comb += [
                        self.weights[cl][kl][lane].eq(pe.weights[kk][lane]) for lane in range(nw)
                    ]
                m.d.comb += [pe.delta[lane].eq(self.delta[cl][lane]) for lane in range(nw)]
                pes.append(pe)
            for lane in range(nw):
                total = tree_sum([pe.y[lane] for pe in pes])
                if not self.first:
                    total = total + self.psum_in[cl * nw + lane]
                sums.append(total)
        if not self.final:
            m.d.comb += [s.eq(v) for s, v in zip(self.psum, sums, strict=True)]
            return m
        c0 = self.col_blocks.start * nw
        for idx, j in enumerate(self.outputs):
            total = sums[j - c0]
            if p.encoding == "offset-binary":
                total = total - (self.insum << (p.weight_bits - 1))
            # exact for any ADC table the registers can hold (ChipParams.layer_y_bits); every
            # comparison and rounding after it is as wide as this
            y = wire(m, total, signed(self.psum_width), f"y{j}")
            if self.hidden:
                h = clamp_unsigned(rshift_round(Mux(y > 0, y, 0), lay.out_shift), 2**A - 1)
                m.d.comb += self.h[idx].eq(h)
            else:
                m.d.comb += self.o[idx].eq(saturate(rshift_round(y, lay.out_shift), E))
        return m
