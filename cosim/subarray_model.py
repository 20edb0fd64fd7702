"""A behavioural model of the subarray's arithmetic for co-simulation builds (DPI-C).

The subarray's arithmetic (:class:`insitu.hdl.subarray.SubarrayCore`: bit-plane column sums,
column-muxed threshold ADCs, shift-add) is the stand-in for an analog crossbar's read-out. As
RTL it is ``activation_bits x cols`` column-sum registers and a comparator bank per ADC, all
evaluated by Verilator on every clock of every subarray, busy or idle: an MNIST-size chip (114
subarrays of 128 x 128) took over 25 minutes to verilate and ran at about one training sample
per second. This module writes, for one chip's parameters, a Verilog module with the core's
ports whose body calls a C++ model through DPI-C only in the cycles that change its state
(clear, accumulate, convert, reset), and that C++ model. The rest of the subarray (the weight
memory, its decode, the BP transposed read) and the rest of the chip stay RTL.

The model is port- and cycle-equivalent to the RTL core: same registered ``y``, same reset,
the same priority of ``clear`` over ``accumulate`` and ``convert``, the same wrap of every
register at its width. tests/test_cosim_core.py runs both side by side in one Verilator
build on random stimuli, for several random design points, and compares ``y`` every cycle.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Shape
from amaranth.lib.wiring import In

from ..hdl.params import ChipParams
from ..hdl.subarray import SubarrayCore

__all__ = ["CORE_MODULE", "CoreModel", "core_model", "core_ports"]

CORE_MODULE = "insitu_sa_core"


@dataclass(frozen=True)
class CoreModel:
    """The Verilog module (DPI shell) and the C++ source of one chip's core model."""

    module: str
    verilog: str
    cpp: str


def core_ports(p: ChipParams) -> list[tuple[str, bool, int]]:
    """(name, is_input, width) of the core's ports as the Blackbox names them."""
    core = SubarrayCore(p)
    core._MustUse__silence = True  # only its signature is read
    out = []
    for path, member, _ in core.signature.flatten(core):
        name = "__".join(str(x) for x in path)
        out.append((name, member.flow == In, Shape.cast(member.shape).width))
    return out


def _concat(names: list[str]) -> str:
    """A Verilog concatenation with ``names[0]`` in the least significant bits."""
    return "{" + ", ".join(reversed(names)) + "}"


def core_model(p: ChipParams, module: str = CORE_MODULE) -> CoreModel:
    """The DPI shell named *module* and its C++ model for the parameters *p*.

    Function and type names carry *module*, so models of several parameter sets link into
    one build (the equivalence test does that)."""
    ports = core_ports(p)
    width = {n: w for n, _, w in ports}
    thr = [n for n, _, _ in ports if n.startswith("thresholds__")]
    lev = [n for n, _, _ in ports if n.startswith("levels__")]
    ys = [n for n, _, _ in ports if n.startswith("y__")]
    A, cols, c = p.activation_bits, p.used_cols, p.cell_bits
    tb, lb, yb = p.threshold_bits, p.level_bits, width[ys[0]]
    cw = width["cells"]
    tw, lw, yw = tb * len(thr), lb * len(lev), yb * len(ys)

    decl = ["input wire clk", "input wire rst"]
    for n, is_in, w in ports:
        rng = f"[{w - 1}:0] " if w > 1 else ""
        decl.append(f"{'input' if is_in else 'output'} wire {rng}{n}")
    outs = "\n".join(f"  assign {n} = y_q[{(k + 1) * yb - 1}:{k * yb}];" for k, n in enumerate(ys))
    verilog = f"""// Behavioural model of the subarray core (insitu.cosim.subarray_model).
module {module} (
  {(", " + chr(10) + "  ").join(decl)}
);
  import "DPI-C" function chandle {module}_new();
  import "DPI-C" function int {module}_step(input chandle h, input int flags, input int act,
    input int plane, input int sel, input bit [{cw - 1}:0] cells, input bit [{tw - 1}:0] thr,
    input bit [{lw - 1}:0] lev, output bit [{yw - 1}:0] y);
  chandle h;
  initial h = {module}_new();
  reg [{yw - 1}:0] y_q = {yw}'d0;
  bit [{yw - 1}:0] y_n;
  always @(posedge clk) begin
    // the model returns 1 when the accumulators (and so y) may have changed
    if ((rst | clear | accumulate | convert) && {module}_step(h,
        {{28'd0, convert, accumulate, clear, rst}}, 32'(act), 32'(conv_plane), 32'(conv_sel),
        cells, {_concat(thr)}, {_concat(lev)}, y_n) != 0)
      y_q <= y_n;
  end
{outs}
endmodule
"""
    cpp = f"""// Behavioural model of the subarray core (insitu.cosim.subarray_model).
// Parameters of one chip; the RTL it models is insitu.hdl.subarray.SubarrayCore.
#include <cstdint>
#include <cstring>
#include "svdpi.h"

namespace {{
constexpr int A = {A}, COLS = {cols}, C = {c}, CSB = {p.column_sum_bits};
constexpr int NADC = {p.adcs_per_subarray}, CPA = {p.cols_per_adc};
constexpr int NT = {len(thr)}, TB = {tb}, NL = {len(lev)}, LB = {lb};
constexpr int NW = {p.weights_per_row}, POLS = {p.polarities}, S = {p.slices}, YB = {yb};
constexpr int ACCW = LB + A;
constexpr uint64_t SUM_MASK = (uint64_t(1) << CSB) - 1;
constexpr uint64_t ACC_MASK = ACCW >= 64 ? ~uint64_t(0) : (uint64_t(1) << ACCW) - 1;

inline uint64_t field(const svBitVecVal* v, int lsb, int width) {{
    // bits lsb .. lsb+width-1 of a packed vector (width <= 32)
    uint64_t lo = v[lsb >> 5];
    uint64_t hi = ((lsb & 31) + width > 32) ? v[(lsb >> 5) + 1] : 0;
    return ((lo | (hi << 32)) >> (lsb & 31)) & ((uint64_t(1) << width) - 1);
}}

struct Core {{
    uint32_t sums[A][COLS];
    uint64_t acc[COLS];
}};
}}  // namespace

extern "C" void* {module}_new() {{
    auto* k = new Core;
    std::memset(k, 0, sizeof(Core));
    return k;
}}

extern "C" int {module}_step(void* h, int flags, int act, int plane, int sel,
                              const svBitVecVal* cells, const svBitVecVal* thr,
                              const svBitVecVal* lev, svBitVecVal* y) {{
    auto* k = static_cast<Core*>(h);
    const bool rst = flags & 1, clear = flags & 2, accumulate = flags & 4, convert = flags & 8;
    bool changed = rst || clear;
    if (changed) {{
        std::memset(k, 0, sizeof(Core));
    }} else {{
        if (convert && plane < A) {{
            // every ADC converts column sel * NADC + g of plane `plane` (the sums before
            // this clock edge: the accumulation below happens in the same edge)
            uint64_t t[NT];
            for (int i = 0; i < NT; ++i) t[i] = field(thr, i * TB, TB);
            for (int g = 0; g < NADC; ++g) {{
                const int col = sel * NADC + g;
                if (sel >= CPA || col >= COLS) continue;
                const uint64_t x = k->sums[plane][col];
                int code = 0;
                for (int i = 0; i < NT; ++i) code += x >= t[i];
                const uint64_t level = field(lev, code * LB, LB);
                k->acc[col] = (k->acc[col] + (level << plane)) & ACC_MASK;
            }}
            changed = true;
        }}
        if (accumulate) {{
            uint32_t cell[COLS];
            for (int col = 0; col < COLS; ++col)
                cell[col] = static_cast<uint32_t>(field(cells, col * C, C));
            for (int pl = 0; pl < A; ++pl) {{
                if (!((act >> pl) & 1)) continue;
                uint32_t* s = k->sums[pl];
                for (int col = 0; col < COLS; ++col) s[col] = (s[col] + cell[col]) & SUM_MASK;
            }}
        }}
    }}
    if (!changed) return 0;  // an accumulation alone leaves y as it was
    // y[j]: the accumulators shifted by slice, positive minus negative polarity, wrapped to YB
    std::memset(y, 0, sizeof(svBitVecVal) * (({yw} + 31) / 32));
    for (int j = 0; j < NW; ++j) {{
        int64_t total = 0;
        for (int pol = 0; pol < POLS; ++pol)
            for (int s = 0; s < S; ++s) {{
                const int64_t a = static_cast<int64_t>(k->acc[(j * POLS + pol) * S + s]);
                const int64_t term = a << (C * s);
                total += pol == 1 ? -term : term;
            }}
        const uint64_t bits = static_cast<uint64_t>(total) & ((uint64_t(1) << YB) - 1);
        for (int b = 0; b < YB; ++b)
            if ((bits >> b) & 1) y[(j * YB + b) >> 5] |= svBitVecVal(1) << ((j * YB + b) & 31);
    }}
    return 1;
}}
"""
    return CoreModel(module, verilog, cpp)
