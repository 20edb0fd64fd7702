"""The co-simulation's behavioural subarray core against the RTL core, cycle for cycle.

For several random design points, one Verilator build holds the Amaranth-generated
:class:`insitu.hdl.subarray.SubarrayCore` and the DPI model of
:mod:`insitu.cosim.subarray_model` side by side. A synthesizable testbench drives both with
the same random stimulus every cycle (resets, clears, accumulations with random inputs and
cells, conversions of random planes and mux steps, ADC tables rewritten with random values,
sorted or not) and counts the cycles whose ``y`` differ. The model must never differ, and the
stimulus must have moved ``y`` in most cycles, so the comparison is not of zeros.
"""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest
from amaranth.back import verilog

from insitu import config
from insitu.cosim.run import chip_for
from insitu.cosim.subarray_model import core_model, core_ports
from insitu.hdl.params import ChipParams
from insitu.hdl.subarray import SubarrayCore
from insitu.hdl.toolchain import ToolError, verilator_env

CYCLES = 20_000


# the subarray of the mnist preset: 128 x 128, 2-bit cells, 8-bit weights and inputs, 5-bit
# ADCs over 8 columns each
MNIST_LIKE = ["array.rows=128", "array.cols=128", "precision.weight_bits=8"]


def _design(rng: random.Random) -> ChipParams:
    """A random valid design point (drawn again until the schema accepts it)."""
    while True:
        try:
            return _draw(rng)
        except config.DesignError:
            continue


def _draw(rng: random.Random) -> ChipParams:
    rows = rng.choice([8, 16, 32, 128])
    cols = rng.choice([16, 32, 64])
    cell = rng.choice([1, 2, 2, 3])
    wbits = cell * rng.choice([1, 2, 3])
    if wbits < 2:
        wbits = 2 * cell
    cols = max(cols, 2 * wbits)
    overrides = [
        "learning.mode=hardware",
        f"learning.rule={rng.choice(['bp', 'fa', 'dfa'])}",
        "network.layers=[64,16,10]",
        f"array.rows={rows}",
        f"array.cols={cols}",
        f"array.cell_bits={cell}",
        f"array.adc_bits={rng.choice([2, 3, 5])}",
        f"array.cols_per_adc={rng.choice([1, 2, 4, 8, 8])}",
        f"array.weight_encoding={rng.choice(['differential', 'offset-binary'])}",
        f"precision.weight_bits={wbits}",
        f"precision.activation_bits={rng.choice([2, 4, 8])}",
        "learning.batch_size=2",
    ]
    return chip_for(config.load("digits", overrides))


def _bench(k: int, p: ChipParams, seed: int) -> str:
    """A testbench module driving the RTL core ``rtl_core_k`` and the model ``model_core_k``."""
    ports = core_ports(p)
    ins = [(n, w) for n, is_in, w in ports if is_in]
    ys = [n for n, is_in, _ in ports if not is_in]
    yw = sum(w for n, is_in, w in ports if not is_in)
    decl = "\n".join(f"  reg [{w - 1}:0] {n} = 0;" for n, w in ins)
    conn = ", ".join(f".{n}({n})" for n, _ in ins)
    y_rtl = "{" + ", ".join(f"yr_{n}" for n in reversed(ys)) + "}"
    y_mod = "{" + ", ".join(f"ym_{n}" for n in reversed(ys)) + "}"
    wires = "\n".join(f"  wire [{w - 1}:0] yr_{n}, ym_{n};" for n, is_in, w in ports if not is_in)
    outs_r = ", ".join(f".{n}(yr_{n})" for n in ys)
    outs_m = ", ".join(f".{n}(ym_{n})" for n in ys)
    sum_max = p.rows * (2**p.cell_bits - 1)

    def rnd(width: int) -> str:
        words = (width + 31) // 32
        return f"{width}'({{" + ", ".join(["$urandom"] * words) + "})"

    table = []
    for n, w in ins:
        if n.startswith("thresholds__"):
            table.append(f"      {n} <= (rnd & 1) ? {w}'($urandom % {sum_max + 2}) : {rnd(w)};")
        elif n.startswith("levels__"):
            table.append(f"      {n} <= {rnd(w)};")
    A = p.activation_bits
    return f"""
module bench_{k} (input clk, output reg [31:0] mismatches = 0, output reg [31:0] moved = 0,
                  output reg [31:0] cycles = 0);
{decl}
  reg rst = 1;
  reg [31:0] rnd;
{wires}
  rtl_core_{k} r (.clk(clk), .rst(rst), {conn}, {outs_r});
  model_core_{k} m (.clk(clk), .rst(rst), {conn}, {outs_m});
  initial rnd = {seed};
  always @(posedge clk) begin
    cycles <= cycles + 1;
    if ({y_rtl} != {y_mod}) mismatches <= mismatches + 1;
    if ({y_rtl} != {yw}'d0) moved <= moved + 1;
    rnd = $urandom;
    rst <= cycles < 2 || rnd[31:22] == 0;
    clear <= rnd[5:0] == 0;
    accumulate <= rnd[6];
    act <= {A}'($urandom);
    cells <= {rnd(p.used_cols * p.cell_bits)};
    convert <= rnd[8:7] != 0;
    conv_plane <= $urandom % {A};
    conv_sel <= $urandom % {p.cols_per_adc};
    if (cycles < 2 || rnd[15:9] == 0) begin
{chr(10).join(table)}
    end
  end
endmodule
"""


HARNESS = r"""
#include "Vtb.h"
#include "verilated.h"
int main(int argc, char** argv) {
    VerilatedContext ctx;
    ctx.commandArgs(argc, argv);
    Vtb top{&ctx};
    while (!top.done) {
        top.clk = 0; top.eval();
        top.clk = 1; top.eval();
    }
    top.final();
    return 0;
}
"""


def test_core_model_matches_rtl_core(tmp_path: Path) -> None:
    try:
        env = verilator_env()
    except ToolError as exc:
        pytest.skip(str(exc))
    rng = random.Random(20261130)
    mnist_like = config.load("digits", ["learning.mode=hardware", *MNIST_LIKE])
    designs = [chip_for(mnist_like)] + [_design(rng) for _ in range(4)]
    files: list[str] = []
    benches = []
    for k, p in enumerate(designs):
        rtl = verilog.convert(SubarrayCore(p), name=f"rtl_core_{k}", emit_src=False)
        model = core_model(p, module=f"model_core_{k}")
        (tmp_path / f"rtl_{k}.v").write_text(rtl)
        (tmp_path / f"model_{k}.sv").write_text(model.verilog)
        (tmp_path / f"model_{k}.cpp").write_text(model.cpp)
        files += [f"rtl_{k}.v", f"model_{k}.sv", f"model_{k}.cpp"]
        benches.append(_bench(k, p, seed=1000 + k))
    n = len(designs)
    report = " ".join("%0d/%0d/%0d" for _ in range(n))
    args = ", ".join(f"mm{k}, mv{k}, cy{k}" for k in range(n))
    instances = [
        f"  bench_{k} b{k} (.clk(clk), .mismatches(mm{k}), .moved(mv{k}), .cycles(cy{k}));"
        for k in range(n)
    ]
    tb = (
        "\n".join(benches)
        + f"""
module tb (input clk, output reg done = 0);
{chr(10).join(f"  wire [31:0] mm{k}, mv{k}, cy{k};" for k in range(n))}
{chr(10).join(instances)}
  always @(posedge clk) if (cy0 == {CYCLES}) begin
    done <= 1;
    $display("{report}", {args});
  end
endmodule
"""
    )
    (tmp_path / "tb.sv").write_text(tb)
    (tmp_path / "harness.cpp").write_text(HARNESS)
    exe = shutil.which("verilator", path=env["PATH"])
    assert exe is not None
    proc = subprocess.run(
        [
            exe,
            "--cc",
            "--exe",
            "--build",
            "-O1",
            "-Wno-fatal",
            "-Wno-WIDTH",
            "-Wno-lint",
            "-Wno-style",
            "--top-module",
            "tb",
            "-j",
            "2",
            "tb.sv",
            *files,
            "harness.cpp",
            "-o",
            "bench",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = subprocess.run(
        [str(tmp_path / "obj_dir" / "bench")], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    fields = run.stdout.split()
    assert len(fields) == n, run.stdout
    for p, field in zip(designs, fields, strict=True):
        mismatches, moved, cycles = (int(x) for x in field.split("/"))
        what = (
            f"rows {p.rows} cols {p.cols} cell {p.cell_bits} w {p.weight_bits} "
            f"a {p.activation_bits} adc {p.adc_bits} mux {p.cols_per_adc} {p.encoding}"
        )
        assert cycles >= CYCLES
        assert mismatches == 0, f"{what}: y differs in {mismatches} of {cycles} cycles"
        assert moved > cycles // 2, f"{what}: y was nonzero in only {moved} cycles"
