"""Netlist safety and PDK registry: no value outside numbers and fixed names reaches ngspice."""

from __future__ import annotations

from pathlib import Path

import pytest

from insitu.analog import circuits
from insitu.analog.pdk import PdkError, load_pdk
from insitu.analog.spice import Netlist, NetlistError, name, num


@pytest.mark.parametrize(
    "bad",
    ["x\n.control\nshell rm -rf /\n.endc", "a b", "a;b", "", "$x", "1abc", "a'b", "a" * 65],
)
def test_names_with_spice_syntax_are_rejected(bad: str) -> None:
    with pytest.raises(NetlistError, match="not allowed"):
        name(bad, "model")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "1\n.control", True, None, "3"])
def test_only_finite_numbers_pass(bad: object) -> None:
    with pytest.raises(NetlistError, match="not allowed"):
        num(bad)  # type: ignore[arg-type]


def test_node_and_element_names_are_checked() -> None:
    net = Netlist("t")
    with pytest.raises(NetlistError):
        net.r("1", "a\nshell ls", "0", 1.0)
    with pytest.raises(NetlistError):
        net.mos("1", "d", "g", "s", "b", "nch w=1u\n.control", 1.0, 0.18)
    with pytest.raises(NetlistError, match="one of"):
        net.flag_options("shell")
    net.r("1", "a", "0", 1e3)
    assert net.text().splitlines()[1] == "R1 a 0 1000.0"


def test_pdk_file_with_injected_model_name_is_refused(tmp_path: Path) -> None:
    (tmp_path / "m.lib").write_text("* empty\n")
    (tmp_path / "pdk.yaml").write_text(
        "name: evil\nvdd: 1.8\nlibrary: m.lib\ncorners: {tt: tt}\n"
        'nmos: {model: "n\\n.control\\nshell id", l_min_um: 0.2, w_min_um: 0.2}\n'
        "pmos: {model: p, l_min_um: 0.2, w_min_um: 0.2}\navt_mv_um: 5\navt_source: x\n"
    )
    with pytest.raises(PdkError, match=r"nmos\.model"):
        load_pdk(tmp_path)


def test_unknown_pdk_names_the_allowed_ones() -> None:
    with pytest.raises(PdkError, match="generic180"):
        load_pdk("nope")


def test_column_netlist_is_deterministic_per_seed() -> None:
    pdk = load_pdk("generic180")
    spec = circuits.ColumnSpec(8, 2, "1t1r", 1e-8, 4e-8, 0.2, 1.0, 1e-16, 0.1, 3)
    a = circuits.column(pdk, "tt", 27.0, spec, seed=1, mc=1, tran=False)
    b = circuits.column(pdk, "tt", 27.0, spec, seed=1, mc=1, tran=False)
    c = circuits.column(pdk, "tt", 27.0, spec, seed=2, mc=1, tran=False)
    assert a.netlist == b.netlist
    assert a.netlist != c.netlist
    # The last pattern is all at the top level, so sweeps reach the full-scale sum.
    assert a.meta["levels"][-1] == [3] * 8
