"""The chip top: layers of PEs, batch buffers, feedback path, WGUs, sequencer, host port.

A host loads weights, ADC tables, inputs and labels through a command stream, writes START
with the number of samples, and the sequencer runs the whole batch on its own: for every
sample the forward pass layer by layer, the output error, the backward pass (BP: transposed
reads of the next layer's weights, layer after layer; FA: the LFSR feedback of the next delta,
layer after layer; DFA: every hidden layer's LFSR feedback of the output error at once), and
at the end of the batch the weight update by the WGUs (one per layer updating in parallel, or
one shared). Performance counters count every event class the energy model prices and the
cycles of every phase. The memory map and counter list are in :mod:`insitu.hdl.memory_map`
and in the generated ``manifest.json``; docs/hdl.md describes the architecture.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, Value, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .arith import encode_cells, mul_const, rshift_round, saturate, tree_sum, wire
from .feedback import FeedbackEngine
from .htree import HTree
from .memory_map import COUNTERS, Region, field_bits, pack_lanes, payload_table
from .params import ChipParams, bits_for
from .tile import Tile
from .wgu import WeightGradientUnit

CHIP_ID = 0x1A5171  # "insitu"

# Counters of host-port traffic: incremented in the cycle a command is taken.
HOST_COUNTERS = frozenset({"host_words", "dram_bits"})

Command = data.StructLayout({"addr": 32, "data": 32, "write": 1})


def htree_links(first: int, count: int, leaves: int) -> int:
    """Links of a binary H-tree over ``leaves`` tiles used to multicast to tiles
    ``first .. first+count-1`` (each level halves the span; a link is used when its subtree
    holds a destination)."""
    depth = max(1, (max(1, leaves) - 1).bit_length())
    used = 0
    for level in range(1, depth + 1):
        span = 1 << (depth - level)  # leaves under a node at this level
        nodes = {t // span for t in range(first, first + count)}
        used += len(nodes)
    return used


class Chip(wiring.Component):
    """The generated chip. Ports: ``cmd`` (host commands), ``rsp`` (read data), ``busy``."""

    def __init__(self, p: ChipParams, *, subarray_module: str | None = None) -> None:
        """``subarray_module``: instantiate the subarrays as that separately generated Verilog
        module (export); None elaborates them here (Amaranth simulation)."""
        self.params = p
        self.subarray_module = subarray_module
        super().__init__(
            {
                "cmd": In(stream.Signature(Command)),
                "rsp": Out(stream.Signature(32)),
                "busy": Out(1),
            }
        )

    # ------------------------------------------------------------------------------------
    def elaborate(self, platform: object) -> Module:
        p = self.params
        m = Module()
        L, A, E, R = p.num_layers, p.activation_bits, p.error_bits, p.rows
        nw, B, D = p.weights_per_row, p.batch, p.htree_depth
        lays = p.layers

        # ---------------------------------------------------------------- registers
        step = Signal(32)
        n_samples = Signal(range(B + 1))
        infer_only = Signal()
        grad_shift = [
            Signal(6, init=lay.grad_shift, name=f"grad_shift{i}") for i, lay in enumerate(lays)
        ]
        thr = [
            [
                Signal(p.threshold_bits, init=t, name=f"adc{i}_t{j}")
                for j, t in enumerate(lay.thresholds)
            ]
            for i, lay in enumerate(lays)
        ]
        lev = [
            [Signal(p.level_bits, init=v, name=f"adc{i}_v{j}") for j, v in enumerate(lay.levels)]
            for i, lay in enumerate(lays)
        ]

        # ---------------------------------------------------------------- arrays
        # Each layer's subarrays sit in tiles (the floorplan of ChipParams.from_design): tile
        # (g, c) holds column group g's row blocks of chain link c; the last link of a chain
        # requantizes its columns.
        tiles: list[dict[tuple[int, int], Tile]] = []
        for i, lay in enumerate(lays):
            grid: dict[tuple[int, int], Tile] = {}
            for g in range(lay.tile_groups):
                for c in range(lay.tile_chain):
                    t = Tile(p, lay, group=g, link=c, subarray_module=self.subarray_module)
                    m.submodules[f"tile{lay.tile_index(g, c)}"] = t
                    m.d.comb += [x.eq(v) for x, v in zip(t.thresholds, thr[i], strict=True)]
                    m.d.comb += [x.eq(v) for x, v in zip(t.levels, lev[i], strict=True)]
                    if c > 0:
                        m.d.comb += [
                            x.eq(v) for x, v in zip(t.psum_in, grid[g, c - 1].psum, strict=True)
                        ]
                    grid[g, c] = t
            tiles.append(grid)

        def sa_of(i: int, cb: int, k: int) -> tuple[Tile, int, int]:
            """The tile holding row block k of column block cb of layer i, and the block's
            column and row index in it."""
            lay = lays[i]
            g, cl = divmod(cb, lay.tile_col_blocks)
            c, kl = divmod(k, lay.tile_row_blocks)
            return tiles[i][g, c], cl, kl

        def weights_of(i: int, cb: int, k: int) -> Value:
            t, cl, kl = sa_of(i, cb, k)
            return t.weights[cl][kl]

        def outputs_of(i: int) -> list[Value]:
            """Layer i's requantized outputs (h, or o for the last layer), from its tiles."""
            lay = lays[i]
            out: list[Value] = []
            for g in range(lay.tile_groups):
                t = tiles[i][g, lay.tile_chain - 1]
                out += list(t.h if t.hidden else t.o)
            return out

        # ---------------------------------------------------------------- buffers
        def memory(name: str, width: int, depth: int, gran: int | None = None):
            mem = Memory(shape=width, depth=max(2, depth), init=[])
            m.submodules[name] = mem
            rd = mem.read_port()
            # a read port's enable resets to 1; reads here are explicit, and the WGU and the
            # label register rely on the data holding between reads
            m.d.comb += rd.en.eq(0)
            return mem, rd, mem.write_port(granularity=gran)

        act = [memory(f"act{i}", lay.row_blocks * A, B * R, A) for i, lay in enumerate(lays)]
        dlt = [memory(f"delta{i}", nw * E, B * lay.col_blocks) for i, lay in enumerate(lays)]
        _, out_rd, out_wr = memory("outputs", p.classes * E, B)
        _, lab_rd, lab_wr = memory("labels", bits_for(p.classes - 1), B)

        # current-sample vectors
        mask = [Signal(lay.fan_out, name=f"mask{i}") for i, lay in enumerate(lays[:-1])]
        write_h = [Signal(name=f"write_h{i}") for i in range(L - 1)]
        dreg = [
            [Signal(signed(E), name=f"d{i}_{j}") for j in range(lay.col_blocks * nw)]
            for i, lay in enumerate(lays)
        ]

        # the sum of the layer's inputs, for offset-binary's offset removal in the tiles
        insum = Signal(p.input_sum_bits)
        if p.encoding == "offset-binary":
            for grid in tiles:
                m.d.comb += [t.insum.eq(insum) for t in grid.values() if t.final]

        # ---------------------------------------------------------------- feedback engines
        engines: dict[int, FeedbackEngine] = {}
        if p.rule in ("fa", "dfa"):
            for i, lay in enumerate(lays[:-1]):
                src = (
                    dreg[L - 1][: p.classes]
                    if p.rule == "dfa"
                    else dreg[i + 1][: lays[i + 1].fan_out]
                )
                eng = FeedbackEngine(
                    src=list(src),
                    n_out=lay.fan_out,
                    lanes=p.feedback_lanes,
                    seed=lay.feedback_seed,
                    src_bits=E,
                    storage=p.feedback_storage,
                )
                m.submodules[f"feedback{i}"] = eng
                engines[i] = eng

        # ---------------------------------------------------------------- WGUs
        if p.wgu == "per-layer":
            wgus = []
            for i, lay in enumerate(lays):
                w = WeightGradientUnit(p, [lay], [grad_shift[i]], step)
                m.submodules[f"wgu{i}"] = w
                wgus.append(w)
            wgu_of = dict(enumerate(wgus))
        else:
            shared = WeightGradientUnit(p, list(lays), grad_shift, step)
            m.submodules.wgu = shared
            wgus = [shared]
            wgu_of = dict.fromkeys(range(L), shared)

        def wgu_weights(w: WeightGradientUnit, i: int) -> None:
            """The weight rows a WGU's lanes read: row block grp*P + k of column block cbi."""
            lay, P = lays[i], w.row_blocks
            for k in range(min(P, lay.row_blocks)):
                blocks = [g * P + k for g in range(w.groups) if g * P + k < lay.row_blocks]
                rows = Array(
                    Array(weights_of(i, cb, kb) for cb in range(lay.col_blocks)) for kb in blocks
                )
                sel = w.grp if len(blocks) > 1 else 0
                for lane in range(nw):
                    m.d.comb += w.weights[k][lane].eq(rows[sel][w.cbi][lane])

        # ---------------------------------------------------------------- sequencer state
        phase = Signal(range(4))  # 0 idle, 1 forward, 2 backward, 3 update
        b = Signal(range(B + 1))
        cur = Signal(range(max(2, L)))  # layer being run
        r = Signal(range(max(2, R + D + 2)))
        cnt = Signal(range(max(2, A * p.cols_per_adc + R + nw + 4)))
        plane = Signal(range(max(2, A)))
        sel = Signal(range(max(2, p.cols_per_adc)))
        b_rows = Signal(range(max(2, B * R + 1)))  # b * R

        # forward row pipeline: issue -> (H-tree stages) -> array read -> accumulate
        f_issue = Signal()
        f_row = Signal.like(r)
        pipe_v = [Signal(name=f"fv{s}") for s in range(D + 2)]
        pipe_r = [Signal(range(max(2, R)), name=f"fr{s}") for s in range(D + 1)]
        m.d.sync += [pipe_v[0].eq(f_issue), pipe_r[0].eq(f_row)]
        for s in range(1, D + 2):
            m.d.sync += pipe_v[s].eq(pipe_v[s - 1])
        for s in range(1, D + 1):
            m.d.sync += pipe_r[s].eq(pipe_r[s - 1])
        # The row's inputs go from the global buffer to the tiles over the H-tree (broadcast,
        # ``depth`` register hops); each layer reads the leaf of its first tile.
        word_w = max(lay.row_blocks for lay in lays) * A
        htree = HTree(leaves=p.tiles, data_width=word_w)
        m.submodules.htree = htree
        m.d.comb += [
            htree.down.valid.eq(pipe_v[0]),
            htree.down.payload.data.eq(Array(a[1].data for a in act)[cur]),
            htree.down.payload.broadcast.eq(1),
            htree.up.ready.eq(1),
        ]
        m.d.comb += [leaf.ready.eq(1) for leaf in htree.leaf]
        # every tile reads its own leaf: its row blocks' part of the broadcast word
        for i, lay in enumerate(lays):
            for (g, c), t in tiles[i].items():
                k0 = c * lay.tile_row_blocks
                word = htree.leaf[lay.tile_index(g, c)].payload
                m.d.comb += t.act.eq(word[k0 * A : (k0 + len(t.row_blocks)) * A])
        # the layer's whole word (every leaf carries the same): the counters and the input sum
        tree_out = [htree.leaf[lay.first_tile].payload[: lay.row_blocks * A] for lay in lays]
        arr_read = pipe_v[D - 1] if D >= 1 else f_issue
        arr_row = pipe_r[D - 1] if D >= 1 else f_row
        accumulate = pipe_v[D]
        converting = Signal()
        clearing = Signal()

        # transposed (BP) row pipeline
        t_issue = Signal()
        t_valid = Signal()
        t_row = Signal(range(max(2, R)))
        m.d.sync += [t_valid.eq(t_issue), t_row.eq(r)]

        # ---------------------------------------------------------------- host command port
        region = self.cmd.payload.addr[28:32]
        hl = self.cmd.payload.addr[24:28]
        off = self.cmd.payload.addr[:24]
        wdata = self.cmd.payload.data
        host_ok = Signal()
        # a read is answered the cycle after it is taken (memories have one cycle of latency)
        rd_pend = Signal()
        rsp_pending = Signal()
        rsp_data = Signal(32)
        # decoded once: Amaranth rebuilds an expression at every use, and these have hundreds
        host_take = wire(m, self.cmd.valid & self.cmd.ready, 1, "host_take")
        host_wr = wire(m, host_take & self.cmd.payload.write, 1, "host_wr")
        host_rd = wire(m, host_take & ~self.cmd.payload.write, 1, "host_rd")
        idle = wire(m, phase == 0, 1, "idle")
        rg = {x: wire(m, region == x, 1, f"region_{x.name.lower()}") for x in Region}
        hl_is = [wire(m, hl == i, 1, f"host_layer{i}") for i in range(L)]
        host_cells = wire(
            m,
            encode_cells(wdata[: p.weight_bits].as_signed(), p.weight_bits, p.encoding),
            p.polarities * p.weight_bits,
            "host_cells",
        )
        m.d.comb += [
            host_ok.eq(idle | rg[Region.CTRL] | rg[Region.COUNTER]),
            # one read in flight: a second is taken only once the first has left rd_pend and
            # its response is being consumed, so a held-off response is never overwritten
            self.cmd.ready.eq(host_ok & ~rd_pend & (~rsp_pending | self.rsp.ready)),
            self.rsp.valid.eq(rsp_pending),
            self.rsp.payload.eq(rsp_data),
            self.busy.eq(~idle),
        ]
        rd_region = Signal(4)
        rd_layer = Signal(4)
        rd_off = Signal(24)
        m.d.sync += rd_pend.eq(host_rd)
        with m.If(host_rd):
            m.d.sync += [rd_region.eq(region), rd_layer.eq(hl), rd_off.eq(off)]
        with m.If(self.rsp.valid & self.rsp.ready):
            m.d.sync += rsp_pending.eq(0)

        # ---------------------------------------------------------------- counters
        counters = {name: Signal(64, name=f"ctr_{name}") for name, _ in COUNTERS}
        inc: dict[str, list[Value | int]] = {name: [] for name, _ in COUNTERS}

        # ---------------------------------------------------------------- layer wiring
        lbits = field_bits(nw)
        PL = pack_lanes(p)
        for i, lay in enumerate(lays):
            is_cur = wire(m, cur == i, 1, f"cur_is{i}")
            a_rd, a_wr = act[i][1], act[i][2]
            kbits = field_bits(lay.row_blocks)
            rbits = field_bits(R)
            wgu = wgu_of[i]
            wgu_here = wgu.busy & ((wgu.layer == i) if p.wgu == "shared" else Const(1))
            # act memory read: forward / WGU / host
            with m.If((phase == 1) & is_cur):
                m.d.comb += [a_rd.addr.eq(b_rows + f_row), a_rd.en.eq(f_issue)]
            with m.Elif((phase == 3) & wgu_here):
                m.d.comb += [a_rd.addr.eq(wgu.act_addr), a_rd.en.eq(wgu.act_en)]
            with m.Else():
                m.d.comb += [
                    a_rd.addr.eq(off >> kbits),
                    a_rd.en.eq(host_rd & rg[Region.ACT] & hl_is[i]),
                ]
            # delta memory read: WGU / host
            d_rd = dlt[i][1]
            with m.If((phase == 3) & wgu_here):
                m.d.comb += [d_rd.addr.eq(wgu.dlt_addr), d_rd.en.eq(wgu.dlt_en)]
            with m.Else():
                m.d.comb += [
                    d_rd.addr.eq(off >> lbits),
                    d_rd.en.eq(host_rd & rg[Region.DELTA] & hl_is[i]),
                ]
            # act memory write: host (any layer) or the previous layer's requantized outputs
            host_act = host_wr & rg[Region.ACT] & hl_is[i]
            with m.If(host_act):
                m.d.comb += [
                    a_wr.addr.eq(off >> kbits),
                    a_wr.data.eq(wdata[:A].replicate(lay.row_blocks)),
                    a_wr.en.eq(Const(1, lay.row_blocks) << off[:kbits] if kbits else 1),
                ]
            # packed: row blocks k0 .. k0+PL-1 at once; k0 is a multiple of PL, so row block k
            # takes lane k mod PL and the word repeated over the row blocks lines up
            with m.Elif(host_wr & rg[Region.ACT_PACK] & hl_is[i]):
                reps = -(-lay.row_blocks // PL)
                lanes_mask = ((1 << PL) - 1) & ((1 << lay.row_blocks) - 1)
                pk_row = off[kbits : kbits + rbits]
                pk_sample = off[kbits + rbits :]
                m.d.comb += [
                    a_wr.addr.eq(mul_const(pk_sample, R) + pk_row),
                    a_wr.data.eq(wdata[: PL * A].replicate(reps)[: lay.row_blocks * A]),
                    a_wr.en.eq(Const(lanes_mask, lay.row_blocks) << off[:kbits]),
                ]
            # the tiles: shared word line and controls, per subarray enables and write ports. A
            # subarray whose read or write enable is low ignores the shared address, so one row
            # address per layer serves them all.
            P = wgu.row_blocks
            row = Signal(range(max(2, R)), name=f"row{i}")
            waddr = Signal(range(max(2, R)), name=f"waddr{i}")
            with m.If((phase == 1) & is_cur):
                m.d.comb += row.eq(arr_row)
            with m.Elif((phase == 2) & is_cur):
                m.d.comb += row.eq(r)
            with m.Elif((phase == 3) & wgu_here):
                m.d.comb += row.eq(wgu.w_row)
            with m.Else():
                m.d.comb += row.eq(off >> lbits)
            with m.If((phase == 3) & wgu_here):
                m.d.comb += waddr.eq(wgu.w_row)
            with m.Else():
                m.d.comb += waddr.eq(off >> lbits)
            # write data per row block: the WGU's lanes in the update, else the host's weight
            # (the host writes only while the chip is idle)
            wdata_k = [
                wire(
                    m,
                    Mux(phase == 3, wgu.w_data[k % P], host_cells.replicate(nw)),
                    p.used_cols * p.cell_bits,
                    f"wdata{i}_{k}",
                )
                for k in range(lay.row_blocks)
            ]
            for t in tiles[i].values():
                m.d.comb += [
                    t.row.eq(row),
                    t.waddr.eq(waddr),
                    t.clear.eq(clearing & is_cur),
                    t.accumulate.eq(accumulate & is_cur & (phase == 1)),
                    t.convert.eq(converting & is_cur),
                    t.conv_plane.eq(plane),
                    t.conv_sel.eq(sel),
                ]
                m.d.comb += [t.wdata[kl].eq(wdata_k[k]) for kl, k in enumerate(t.row_blocks)]
                if p.rule == "bp" and i > 0:
                    for cl, cb in enumerate(t.col_blocks):
                        for lane in range(nw):
                            m.d.comb += t.delta[cl][lane].eq(dreg[i][cb * nw + lane])
            for cb in range(lay.col_blocks):
                wgu_pe = wgu_here & (wgu.cbi == cb)
                for k in range(lay.row_blocks):
                    t, cl, kl = sa_of(i, cb, k)
                    sub_id = k * lay.col_blocks + cb
                    host_sa = rg[Region.WEIGHT] & hl_is[i] & ((off >> (rbits + lbits)) == sub_id)
                    # the WGU's lanes serve row blocks grp*P .. grp*P+P-1 in turn
                    wgu_sa = wgu_pe
                    if wgu.groups > 1:
                        wgu_sa = wgu_sa & (wgu.grp == k // P)
                    with m.If((phase == 1) & is_cur):
                        m.d.comb += t.read[cl][kl].eq(arr_read)
                    with m.Elif((phase == 2) & is_cur):
                        m.d.comb += t.read[cl][kl].eq(t_issue)
                    with m.Elif((phase == 3) & wgu_sa):
                        m.d.comb += t.read[cl][kl].eq(wgu.w_read)
                    with m.Else():
                        m.d.comb += t.read[cl][kl].eq(host_rd & host_sa)
                    with m.If((phase == 3) & wgu_sa):
                        m.d.comb += t.wen[cl][kl].eq(Mux(wgu.w_write, (1 << nw) - 1, 0))
                    with m.Else():
                        m.d.comb += t.wen[cl][kl].eq(
                            Mux(host_wr & host_sa, Const(1, nw) << off[:lbits], 0)
                        )
            # WGU read data
            if p.wgu == "per-layer":
                m.d.comb += [wgu.act_data.eq(a_rd.data), wgu.dlt_data.eq(d_rd.data)]
                wgu_weights(wgu, i)

        if p.wgu == "shared":
            sh = wgus[0]
            with m.Switch(sh.layer):
                for i in range(L):
                    with m.Case(i):
                        m.d.comb += [sh.act_data.eq(act[i][1].data), sh.dlt_data.eq(dlt[i][1].data)]
                        wgu_weights(sh, i)

        # ---------------------------------------------------------------- requantize, errors
        # the tiles requantize; the chip writes h into the next layer's activation buffer,
        # row block by row block, and forms the output error
        for i, lay in enumerate(lays[:-1]):
            nxt = lays[i + 1]
            h = outputs_of(i)
            a_wr = act[i + 1][2]
            words = []
            for k in range(nxt.row_blocks):
                col = Array(
                    h[k * R + rr] if k * R + rr < lay.fan_out else Const(0, A) for rr in range(R)
                )
                words.append(col[r][:A])
            with m.If(write_h[i]):
                m.d.comb += [
                    a_wr.addr.eq(b_rows + r),
                    a_wr.data.eq(Cat(*words)),
                    a_wr.en.eq((1 << nxt.row_blocks) - 1),
                ]
            with m.If(write_h[i] & (r == 0)):
                m.d.sync += mask[i].eq(Cat(*[v != 0 for v in h]))

        o = outputs_of(L - 1)
        label = lab_rd.data
        errs = []
        for c, oc in enumerate(o):
            target = Mux(label == c, p.target, 0)
            e = wire(m, saturate(oc - target, E), signed(E), f"e_raw{c}")
            if p.error == "margin":
                e = Mux(label == c, Mux(e < 0, e, 0), Mux(e > 0, e, 0))
            errs.append(wire(m, e, signed(E), f"e{c}"))

        # ---------------------------------------------------------------- the sequencer
        out_mode = Signal()
        bwd_layer = Signal(range(max(2, L)))
        store_mask = Signal(L)
        st = Signal(range(max(2, max(lay.col_blocks for lay in lays) + 1)))
        store_len = Signal.like(st)
        cbs = Array(Const(lay.col_blocks, len(st)) for lay in lays)
        wgu_layer = Signal(range(max(2, L)))

        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(
                    host_wr & rg[Region.CTRL] & (off == 2) & (wdata[:16] != 0) & (wdata[:16] <= B)
                ):
                    m.d.sync += [
                        n_samples.eq(wdata[:16]),
                        infer_only.eq(wdata[16]),
                        b.eq(0),
                        b_rows.eq(0),
                        phase.eq(1),
                    ]
                    m.next = "SAMPLE"
            with m.State("SAMPLE"):
                m.d.comb += [lab_rd.addr.eq(b), lab_rd.en.eq(1)]
                m.d.sync += [cur.eq(0)]
                m.next = "CLEAR"
            with m.State("CLEAR"):
                m.d.comb += clearing.eq(1)
                m.d.sync += [r.eq(0)]
                m.next = "ROWS"
            with m.State("ROWS"):
                m.d.comb += [f_issue.eq(1), f_row.eq(r)]
                m.d.sync += r.eq(r + 1)
                with m.If(r == R - 1):
                    m.d.sync += cnt.eq(0)
                    m.next = "DRAIN"
            with m.State("DRAIN"):
                m.d.sync += cnt.eq(cnt + 1)
                with m.If(cnt == D):
                    m.d.sync += [plane.eq(0), sel.eq(0)]
                    m.next = "CONVERT"
            with m.State("CONVERT"):
                m.d.comb += converting.eq(1)
                m.d.sync += sel.eq(sel + 1)
                with m.If(sel == p.cols_per_adc - 1):
                    m.d.sync += [sel.eq(0), plane.eq(plane + 1)]
                    with m.If(plane == A - 1):
                        m.next = "SETTLE"
            with m.State("SETTLE"):
                m.d.sync += r.eq(0)
                with m.If(cur == L - 1):
                    m.next = "OUTPUT"
                with m.Else():
                    m.next = "WRITE_H"
            with m.State("WRITE_H"):
                for i in range(L - 1):
                    m.d.comb += write_h[i].eq(cur == i)
                m.d.sync += r.eq(r + 1)
                with m.If(r == R - 1):
                    m.d.sync += cur.eq(cur + 1)
                    m.next = "CLEAR"
            with m.State("OUTPUT"):
                m.d.comb += [
                    out_wr.addr.eq(b),
                    out_wr.data.eq(Cat(*[v[:E] for v in o])),
                    out_wr.en.eq(1),
                ]
                m.d.sync += [dreg[L - 1][c].eq(errs[c]) for c in range(p.classes)]
                with m.If(infer_only):
                    m.next = "NEXT"
                with m.Else():
                    m.d.sync += [store_mask.eq(1 << (L - 1)), st.eq(0), out_mode.eq(1)]
                    m.d.sync += store_len.eq(lays[-1].col_blocks)
                    m.next = "STORE"
            with m.State("STORE"):
                m.d.sync += st.eq(st + 1)
                with m.If(st == store_len - 1):
                    with m.If(out_mode):
                        m.d.sync += [out_mode.eq(0), phase.eq(2), bwd_layer.eq(L - 2)]
                        m.next = "BACKWARD" if L > 1 else "NEXT"
                    with m.Elif(bwd_layer == 0):
                        m.next = "NEXT"
                    with m.Else():
                        m.d.sync += bwd_layer.eq(bwd_layer - 1)
                        m.next = "BACKWARD"
            with m.State("BACKWARD"):
                m.d.sync += [r.eq(0), cur.eq(bwd_layer + 1)]
                if p.rule == "dfa":
                    for eng in engines.values():
                        m.d.comb += eng.start.eq(1)
                    m.next = "FB_WAIT"
                elif p.rule == "fa":
                    with m.Switch(bwd_layer):
                        for i, eng in engines.items():
                            with m.Case(i):
                                m.d.comb += eng.start.eq(1)
                    m.next = "FB_WAIT"
                else:
                    m.next = "TRANSPOSE"
            with m.State("FB_WAIT"):
                busy = tree_sum([eng.busy for eng in engines.values()])
                with m.If(busy == 0):
                    m.next = "FB_FINAL"
            with m.State("FB_FINAL"):
                for i, eng in engines.items():
                    lay = lays[i]
                    hit = Const(1) if p.rule == "dfa" else (bwd_layer == i)
                    with m.If(hit):
                        for j in range(lay.fan_out):
                            d = wire(
                                m,
                                saturate(rshift_round(eng.u[j], lay.delta_shift), E),
                                signed(E),
                                f"fb_d{i}_{j}",
                            )
                            m.d.sync += dreg[i][j].eq(Mux(mask[i][j], d, 0))
                m.d.sync += st.eq(0)
                if p.rule == "dfa":
                    m.d.sync += [store_mask.eq((1 << (L - 1)) - 1), bwd_layer.eq(0)]
                    m.d.sync += store_len.eq(max(lay.col_blocks for lay in lays[:-1]))
                else:
                    m.d.sync += [
                        store_mask.eq(Const(1, L) << bwd_layer),
                        store_len.eq(cbs[bwd_layer]),
                    ]
                m.next = "STORE"
            with m.State("TRANSPOSE"):
                m.d.comb += t_issue.eq(r < R)
                m.d.sync += r.eq(r + 1)
                with m.If(r == R):
                    m.d.sync += [st.eq(0), store_mask.eq(Const(1, L) << bwd_layer)]
                    m.d.sync += store_len.eq(cbs[bwd_layer])
                    m.next = "STORE"
            with m.State("NEXT"):
                m.d.sync += [b.eq(b + 1), b_rows.eq(b_rows + R), phase.eq(1)]
                with m.If(b == n_samples - 1):
                    with m.If(infer_only):
                        m.d.sync += phase.eq(0)
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += [phase.eq(3), wgu_layer.eq(0)]
                        m.next = "UPDATE"
                with m.Else():
                    m.next = "SAMPLE"
            with m.State("UPDATE"):
                if p.wgu == "per-layer":
                    m.d.comb += [w.start.eq(1) for w in wgus]
                else:
                    m.d.comb += [wgus[0].start.eq(1)]
                m.next = "UPD_WAIT"
            with m.State("UPD_WAIT"):
                busy = tree_sum([w.busy for w in wgus])
                with m.If(busy == 0):
                    if p.wgu == "per-layer":
                        m.d.sync += [step.eq(step + 1), phase.eq(0)]
                        m.next = "IDLE"
                    else:
                        with m.If(wgu_layer == L - 1):
                            m.d.sync += [step.eq(step + 1), phase.eq(0)]
                            m.next = "IDLE"
                        with m.Else():
                            m.d.sync += wgu_layer.eq(wgu_layer + 1)
                            m.next = "UPDATE"
        if p.wgu == "shared":
            m.d.comb += wgus[0].layer.eq(wgu_layer)
        m.d.comb += [w.n.eq(n_samples) for w in wgus]

        # offset-binary input sum: accumulated with the column sums
        with m.If(clearing):
            m.d.sync += insum.eq(0)
        with m.Elif(accumulate & (phase == 1)):
            m.d.sync += insum.eq(insum + self._word_sum(tree_out, cur, A))

        # BP: deltas of layer i from the transposed reads of layer i+1
        if p.rule == "bp":
            for i, lay in enumerate(lays[:-1]):
                nxt = lays[i + 1]
                for k in range(nxt.row_blocks):
                    u = tree_sum(
                        [
                            t.transposed[cl][kl]
                            for t, cl, kl in (sa_of(i + 1, cb, k) for cb in range(nxt.col_blocks))
                        ]
                    )
                    d = wire(
                        m, saturate(rshift_round(u, lay.delta_shift), E), signed(E), f"bp_d{i}_{k}"
                    )
                    for rr in range(R):
                        j = k * R + rr
                        if j >= lay.fan_out:
                            continue
                        with m.If(t_valid & (bwd_layer == i) & (phase == 2) & (t_row == rr)):
                            m.d.sync += dreg[i][j].eq(Mux(mask[i][j], d, 0))

        # delta store: word st of every layer in store_mask
        in_store = fsm.ongoing("STORE")
        for i, lay in enumerate(lays):
            d_wr = dlt[i][2]
            vec = Array(
                Cat(*[dreg[i][cb * nw + lane] for lane in range(nw)])
                for cb in range(lay.col_blocks)
            )
            m.d.comb += [
                d_wr.addr.eq(b * lay.col_blocks + st),
                d_wr.data.eq(vec[st]),
                d_wr.en.eq(in_store & store_mask[i] & (st < lay.col_blocks)),
            ]

        # ---------------------------------------------------------------- host reads/writes
        with m.If(host_wr & rg[Region.CTRL]):
            with m.If(off == 3):
                m.d.sync += step.eq(wdata)
            for i in range(L):
                with m.If(off == 0x10 + i):
                    m.d.sync += grad_shift[i].eq(wdata[:6])
        for i in range(L):
            for j, t in enumerate(thr[i]):
                with m.If(host_wr & rg[Region.ADC_T] & hl_is[i] & (off == j)):
                    m.d.sync += t.eq(wdata)
            for j, v in enumerate(lev[i]):
                with m.If(host_wr & rg[Region.ADC_L] & hl_is[i] & (off == j)):
                    m.d.sync += v.eq(wdata)
        m.d.comb += [
            lab_wr.addr.eq(off),
            lab_wr.data.eq(wdata),
            lab_wr.en.eq(host_wr & rg[Region.LABEL]),
        ]
        with m.If(host_rd & rg[Region.OUT]):
            m.d.comb += [out_rd.addr.eq(off >> field_bits(p.classes)), out_rd.en.eq(1)]
        with m.If(host_rd & rg[Region.LABEL]):
            m.d.comb += [lab_rd.addr.eq(off), lab_rd.en.eq(1)]

        # read data, one cycle after the command
        value = Signal(32)
        ctrl_vals = Array([Const(CHIP_ID, 32), (~idle).as_unsigned(), n_samples, step])
        with m.Switch(rd_region):
            with m.Case(Region.CTRL):
                with m.If(rd_off < 4):
                    m.d.comb += value.eq(ctrl_vals[rd_off[:2]])
                for i in range(L):
                    with m.If(rd_off == 0x10 + i):
                        m.d.comb += value.eq(grad_shift[i])
            with m.Case(Region.ADC_T):
                for i in range(L):
                    with m.If(rd_layer == i):
                        m.d.comb += value.eq(Array(thr[i])[rd_off] if thr[i] else 0)
            with m.Case(Region.ADC_L):
                for i in range(L):
                    with m.If(rd_layer == i):
                        m.d.comb += value.eq(Array(lev[i])[rd_off])
            with m.Case(Region.WEIGHT):
                for i, lay in enumerate(lays):
                    rbits = field_bits(R)
                    flat = [
                        weights_of(i, cb, k)
                        for k in range(lay.row_blocks)
                        for cb in range(lay.col_blocks)
                    ]
                    with m.If(rd_layer == i):
                        lanes = Array(Array(w) for w in flat)
                        m.d.comb += value.eq(
                            lanes[rd_off >> (rbits + lbits)][rd_off[:lbits]].as_signed()
                        )
            with m.Case(Region.ACT):
                for i, lay in enumerate(lays):
                    kbits = field_bits(lay.row_blocks)
                    with m.If(rd_layer == i):
                        word = act[i][1].data
                        m.d.comb += value.eq(
                            Array(word[k * A : (k + 1) * A] for k in range(lay.row_blocks))[
                                rd_off[:kbits] if kbits else 0
                            ]
                        )
            with m.Case(Region.LABEL):
                m.d.comb += value.eq(lab_rd.data)
            with m.Case(Region.OUT):
                cbits = field_bits(p.classes)
                m.d.comb += value.eq(
                    Array(out_rd.data[c * E : (c + 1) * E].as_signed() for c in range(p.classes))[
                        rd_off[:cbits]
                    ]
                )
            with m.Case(Region.DELTA):
                for i in range(L):
                    with m.If(rd_layer == i):
                        word = dlt[i][1].data
                        m.d.comb += value.eq(
                            Array(word[j * E : (j + 1) * E].as_signed() for j in range(nw))[
                                rd_off[:lbits]
                            ]
                        )
            with m.Case(Region.COUNTER):
                flat = Array(
                    Cat(c[:32]) if h == 0 else Cat(c[32:])
                    for c in counters.values()
                    for h in (0, 1)
                )
                m.d.comb += value.eq(flat[rd_off[: field_bits(2 * len(counters))]])
        with m.If(rd_pend):
            m.d.sync += [rsp_data.eq(value), rsp_pending.eq(1)]

        # ---------------------------------------------------------------- counter increments
        fwd = phase == 1
        inc["cycles_forward"].append(fwd)
        inc["cycles_backward"].append(phase == 2)
        inc["cycles_update"].append(phase == 3)
        inc["cycles_busy"].append(~idle)
        inc["samples"].append(fsm.ongoing("NEXT"))
        inc["batches"].append(
            fsm.ongoing("UPDATE")
            if p.wgu == "per-layer"
            else (fsm.ongoing("UPDATE") & (wgu_layer == 0))
        )
        inc["host_words"].append(host_take)
        for i, lay in enumerate(lays):
            is_i = cur == i
            n_sub = lay.row_blocks * lay.col_blocks
            # one analog read per subarray and plane; counted when the conversions start
            inc["array_reads"].append(Mux(fsm.ongoing("DRAIN") & (cnt == 0) & is_i, n_sub * A, 0))
            pops = tree_sum([tree_out[i][q] for q in range(lay.row_blocks * A)])
            inc["row_activations"].append(Mux(accumulate & fwd & is_i, pops * lay.col_blocks, 0))
            conv_per_step = Array(
                sum(
                    1
                    for g in range(p.adcs_per_subarray)
                    if mi * p.adcs_per_subarray + g < p.used_cols
                )
                for mi in range(p.cols_per_adc)
            )
            inc["adc_conversions"].append(Mux(converting & is_i, conv_per_step[sel] * n_sub, 0))
            inc["tree_adds"].append(
                Mux(fsm.ongoing("SETTLE") & is_i, lay.fan_out * (lay.row_blocks - 1), 0)
            )
            inc["buffer_bits_read"].append(Mux(f_issue & is_i, lay.row_blocks * A, 0))
            inc["htree_bits"].append(
                Mux(
                    f_issue & is_i,
                    htree_links(lay.first_tile, lay.tiles, p.tiles) * lay.row_blocks * A,
                    0,
                )
            )
            if i < L - 1:
                inc["buffer_bits_written"].append(Mux(write_h[i], lays[i + 1].row_blocks * A, 0))
            if p.rule == "bp" and i > 0:
                inc["transposed_macs"].append(
                    Mux(t_valid & (phase == 2) & (cur == i), n_sub * nw, 0)
                )
            inc["buffer_bits_written"].append(
                Mux(in_store & store_mask[i] & (st < lay.col_blocks), nw * E, 0)
            )
        inc["shift_adds"] = list(inc["adc_conversions"])
        for eng in engines.values():
            inc["feedback_adds"].append(Mux(eng.busy, eng.adds, 0))
        for w in wgus:
            inc["wgu_macs"].append(w.macs)
            inc["cell_writes"].append(w.cells_changed)
            # the activation word holds every row block, whichever group the lanes serve
            inc["buffer_bits_read"].append(Mux(w.act_en, w.all_row_blocks * A + nw * E, 0))
        if L > 1 and p.rule in ("fa", "dfa"):
            # the output error goes to every hidden layer's feedback engine over the H-tree
            inc["htree_bits"].append(
                Mux(fsm.ongoing("BACKWARD"), htree_links(0, p.tiles, p.tiles) * p.classes * E, 0)
            )
        payload = Array(Const(w, 6) for w in payload_table(p))
        # an ACT_PACK word carries only the lanes that fall on its layer's row blocks
        pack_bits: Value = Const(0, 6)
        rbits = field_bits(R)
        for i, lay in enumerate(lays):
            kb = field_bits(lay.row_blocks)
            last = lay.row_blocks - 1
            full = Array(Const(A * max(0, min(PL, lay.row_blocks - k)), 6) for k in range(1 << kb))
            # the word holding the last row block carries one input less past the fan-in
            ends = Array(Const(k <= last < k + PL, 1) for k in range(1 << kb))
            short = ends[off[:kb]] & (off[kb : kb + rbits] >= lay.fan_in - last * R)
            pack_bits = Mux(hl_is[i], full[off[:kb]] - Mux(short, A, 0), pack_bits)
        inc["dram_bits"].append(
            Mux(host_take, Mux(rg[Region.ACT_PACK], pack_bits, payload[region]), 0)
        )
        for name, sig in counters.items():
            terms = inc[name]
            if terms:
                total = Value.cast(tree_sum(terms))
                if name in HOST_COUNTERS:
                    # a read of these counts the command that reads them, so no delay
                    m.d.sync += sig.eq(sig + total)
                    continue
                # The increment is registered and added one cycle later: the WGU's update
                # (round, saturate, encode, compare) feeding cell_writes' 64-bit add was the
                # FPGA critical path. A host reads counters at least two cycles after BUSY
                # falls, so it sees the same totals.
                step_inc = Signal(len(total), name=f"ctr_{name}_inc")
                m.d.sync += [step_inc.eq(total), sig.eq(sig + step_inc)]
        return m

    @staticmethod
    def _word_sum(words: list[Signal], cur: Signal, A: int) -> Value:
        parts = []
        for i, w in enumerate(words):
            n = len(w) // A
            parts.append(Mux(cur == i, tree_sum([w[k * A : (k + 1) * A] for k in range(n)]), 0))
        return tree_sum(parts)
