"""Area from synthesis: classes of identical modules, yosys onto the cited cells, the cost model.

The synthesis test runs real yosys on a small generated chip (skipped with the reason when
yosys is missing).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cosim import SMALL
from typer.testing import CliRunner

from insitu import config
from insitu.cli import app
from insitu.cosim.area import area_cache
from insitu.cosim.costs import CostModel
from insitu.cosim.run import chip_for
from insitu.hdl.asic_area import (
    liberty_text,
    module_classes,
    split_modules,
    synthesize_area,
)
from insitu.hdl.export import SUBARRAY, TOP, generate, to_verilog
from insitu.hdl.toolchain import have_tool
from insitu.tech.loader import CellLibrary, load_cells, load_node

VERILOG = r"""
module \top.leaf_a (a, y);
  input a; output y; wire \$12 ;
  assign \$12  = ~a;
  assign y = \$12 ;
endmodule
module \top.leaf_b (a, y);
  input a; output y; wire \$907 ;
  assign \$907  = ~a;
  assign y = \$907 ;
endmodule
module \top.other (a, y);
  input a; output y;
  assign y = a;
endmodule
module stand (a, y);
  input a; output y;
  \stand.inner  inner (
    .a(a), .y(y)
  );
endmodule
module \stand.inner (a, y);
  input a; output y;
  assign y = a;
endmodule
module top (a, y, z, w, v);
  input a; output y; output z; output w; output v;
  \top.leaf_a  leaf_a (
    .a(a), .y(y)
  );
  \top.leaf_b  leaf_b (
    .a(a), .y(z)
  );
  \top.other  other (
    .a(a), .y(w)
  );
  stand s (
    .a(a), .y(v)
  );
endmodule
"""


def test_identical_modules_form_one_class_and_are_counted() -> None:
    modules = split_modules(VERILOG)
    assert set(modules) == {"top.leaf_a", "top.leaf_b", "top.other", "stand", "stand.inner", "top"}
    cls, count, children = module_classes(modules, "top", standins=["stand"])
    # leaf_a and leaf_b differ only in Amaranth's design-wide numbering: one class
    assert cls["top.leaf_a"] == cls["top.leaf_b"] == "top.leaf_a"
    assert cls["top.other"] == "top.other" and cls["top"] == "top"
    assert "stand" not in cls and "stand.inner" not in cls  # the stand-in and its children
    assert count["top.leaf_a"] == count["top.leaf_b"] == count["top"] == 1
    assert children["top"] == ["top.leaf_a", "top.leaf_b", "top.other", "stand"]


def test_cell_library_is_cited_and_validated() -> None:
    lib = load_cells("nangate45")
    assert lib.cells["NAND2_X1"].area_um2 == 0.798 and lib.cells["DFF_X1"].area_um2 == 4.522
    assert "Nangate" in lib.source
    text = liberty_text(lib)
    assert 'ff(IQ, IQN) { next_state : "D"; clocked_on : "CK"; }' in text
    assert text.count("cell(") == len(lib.cells)
    with pytest.raises(ValueError, match="either a function or both clocked_on"):
        CellLibrary.model_validate(
            {
                "name": "x",
                "description": "x",
                "node_nm": 45,
                "source": "x",
                "cells": {"A": {"area_um2": 1, "inputs": ["A"], "output": "Y"}},
            }
        )
    with pytest.raises(ValueError, match="unknown cell library 'nope'"):
        load_cells("nope")
    assert load_node("45nm").logic_area_scale == 1
    assert load_node("7nm").logic_area_scale < load_node("65nm").logic_area_scale


def test_area_command_refuses_an_unknown_node(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["hdl", "area", str(tmp_path), "--node", "3nm"])
    assert res.exit_code != 0 and "--node = '3nm': allowed: 180nm" in str(res.exception)


def test_synthesized_area_of_a_small_chip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not have_tool("yosys"):
        pytest.skip("yosys is not installed (make setup installs it)")
    monkeypatch.setenv("INSITU_CACHE", str(tmp_path))
    dp = config.load("digits", SMALL)
    p = chip_for(dp)
    _, verilog = to_verilog(p)
    area = synthesize_area(verilog, TOP, standins=[SUBARRAY], cache=area_cache())
    assert area.seconds > 0 and "Yosys" in area.yosys
    mods = area.modules
    # every WGU lane of the chip is one circuit: one class, one instance per lane
    lanes = [m for name, m in mods.items() if ".lane" in name]
    assert len(lanes) == 1
    wgu_lanes = sum(min(lay.row_blocks, p.wgu_row_blocks) * p.weights_per_row for lay in p.layers)
    assert lanes[0].instances == wgu_lanes == len(lanes[0].members)
    assert lanes[0].area_um2 > 100 and lanes[0].cells.get("DFF_X1", 0) > 0
    # the subarray stand-in is not synthesized
    assert not any(SUBARRAY in name for name in mods)
    # the activation and delta buffers are RAMs in the top, counted in bits, not as gates
    rams = mods[TOP].rams
    act = [v for k, v in rams.items() if k.startswith("act")]
    assert len(act) == len(p.layers) and all(w % p.activation_bits == 0 for _, w in act)
    assert area.ram_bits >= sum(words * width for words, width in rams.values()) > 0
    # the cache gives the same result without running yosys
    again = synthesize_area(verilog, TOP, standins=[SUBARRAY], cache=area_cache())
    assert again.seconds == 0 and again.modules == area.modules
    # insitu hdl area on the generated folder: the same classes (from the cache), area.json
    generate(p, tmp_path / "rtl")
    res = CliRunner().invoke(app, ["hdl", "area", str(tmp_path / "rtl"), "--node", "32nm"])
    assert res.exit_code == 0, res.output
    assert "synthesis 0 s (0: cached)" in res.output
    report = json.loads((tmp_path / "rtl" / "area.json").read_text())
    assert report["modules"].keys() == area.modules.keys()

    model = CostModel(dp, p)
    synth = CostModel(dp, p, area)
    comps = {it.component for it in synth.areas}
    assert {"arrays", "adcs", "accumulation", "wgu", "interconnect", "buffers", "other"} <= comps
    # the analog blocks keep their cited areas; the digital ones come from synthesis
    kept = {it.block: it.total_um2 for it in model.areas if it.component in ("arrays", "adcs")}
    assert {it.block: it.total_um2 for it in synth.areas if it.block in kept} == kept
    scale = load_node(dp.tech.node).logic_area_scale
    wgu = sum(it.total_um2 for it in synth.areas if it.component == "wgu")
    assert wgu >= lanes[0].area_um2 * lanes[0].instances * scale
    assert synth.area_source["digital"].startswith("synthesis")
    assert synth.area_by_component() != model.area_by_component()
