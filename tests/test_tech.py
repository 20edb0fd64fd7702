"""Tests for the technology data layer (tech/ nodes and device presets)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from insitu.tech.loader import (
    DevicePreset,
    TechNode,
    list_devices,
    list_nodes,
    load_device,
    load_file,
    load_node,
)

REQUIRED_NODES = {"180nm", "65nm", "32nm", "7nm"}
REQUIRED_DEVICES = {"rram", "fefet", "pcm", "ecram", "sram", "subthreshold"}

ENERGY_FIELDS = [
    "add_int8_pj",
    "add_int16_pj",
    "add_int32_pj",
    "mult_int8_pj",
    "mult_int16_pj",
    "register_bit_pj",
    "sram_read_bit_pj",
    "sram_write_bit_pj",
    "buffer_bit_pj",
]
AREA_FIELDS = ["adder_bit_um2", "mult_int8_um2", "register_bit_um2", "sram_bit_um2"]


def _numeric(model: TechNode | DevicePreset) -> dict[str, float]:
    skip = {"name", "description", "technology", "sources", "units"}
    out = {}
    for key, value in model.model_dump().items():
        if key not in skip and value is not None:
            out[key] = value
    return out


def _nodes_by_size() -> list[TechNode]:
    return sorted((load_node(n) for n in list_nodes()), key=lambda n: -n.feature_nm)


def test_required_presets_present() -> None:
    assert set(list_nodes()) >= REQUIRED_NODES
    assert set(list_devices()) >= REQUIRED_DEVICES


@pytest.mark.parametrize("name", list_nodes())
def test_node_loads_with_sources(name: str) -> None:
    node = load_node(name)
    assert node.name == name
    numeric = _numeric(node)
    assert numeric, "no numeric fields"
    for key in numeric:
        assert node.sources.get(key, "").strip(), f"{name}.{key} has no source"
        assert node.units.get(key, "").strip(), f"{name}.{key} has no unit"
    assert set(node.sources) == set(numeric)


@pytest.mark.parametrize("name", list_devices())
def test_device_loads_with_sources(name: str) -> None:
    dev = load_device(name)
    assert dev.name == name
    numeric = _numeric(dev)
    for key in numeric:
        assert dev.sources.get(key, "").strip(), f"{name}.{key} has no source"
        assert dev.units.get(key, "").strip(), f"{name}.{key} has no unit"
    assert set(dev.sources) == set(numeric)


def test_nodes_ordered_largest_first() -> None:
    sizes = [load_node(n).feature_nm for n in list_nodes()]
    assert sizes == sorted(sizes, reverse=True)


@pytest.mark.parametrize("field", ENERGY_FIELDS + AREA_FIELDS)
def test_on_chip_energy_and_area_shrink_with_node(field: str) -> None:
    nodes = _nodes_by_size()
    values = [getattr(n, field) for n in nodes]
    assert all(v is not None and v > 0 for v in values), (field, values)
    for big, small, a, b in zip(nodes, nodes[1:], values, values[1:], strict=False):
        assert b < a, f"{field}: {small.name} ({b}) not below {big.name} ({a})"


def test_dram_energy_does_not_grow_with_node() -> None:
    values = [n.dram_bit_pj for n in _nodes_by_size()]
    assert all(v > 0 for v in values)
    assert all(b <= a for a, b in itertools.pairwise(values)), values


def test_vdd_physical_and_non_increasing() -> None:
    nodes = _nodes_by_size()
    for node in nodes:
        assert 0.5 <= node.vdd_v <= 5.0, (node.name, node.vdd_v)
    vdds = [n.vdd_v for n in nodes]
    assert all(b <= a for a, b in itertools.pairwise(vdds)), vdds


def test_wires_physical() -> None:
    nodes = _nodes_by_size()
    for node in nodes:
        assert node.wire_r_ohm_per_um > 0
        assert 0.05 <= node.wire_c_ff_per_um <= 1.0
    rs = [n.wire_r_ohm_per_um for n in nodes]
    assert all(b >= a for a, b in itertools.pairwise(rs)), rs


def test_op_energy_ordering_within_node() -> None:
    for name in list_nodes():
        n = load_node(name)
        assert n.add_int8_pj < n.add_int16_pj < n.add_int32_pj
        assert n.add_int8_pj < n.mult_int8_pj
        assert n.mult_int16_pj is None or n.mult_int8_pj < n.mult_int16_pj
        assert n.buffer_bit_pj <= n.sram_read_bit_pj
        # DRAM is not scaled with the logic node (see 180nm.yaml), so only the small buffer
        # is required to be cheaper than off-chip DRAM at every node.
        assert n.buffer_bit_pj < n.dram_bit_pj


@pytest.mark.parametrize("name", list_devices())
def test_device_physical(name: str) -> None:
    d = load_device(name)
    assert 0 < d.g_min_us < d.g_max_us
    ratio = d.g_max_us / d.g_min_us
    assert abs(ratio - d.on_off_ratio) <= 0.2 * d.on_off_ratio, (name, ratio, d.on_off_ratio)
    assert d.levels >= 2
    for key in ("d2d_sigma", "c2c_sigma", "read_noise_sigma", "stuck_at_rate"):
        assert 0.0 <= getattr(d, key) < 1.0, (name, key)
    assert d.write_energy_pj > 0
    assert d.write_latency_ns > 0


def test_unknown_node_lists_allowed() -> None:
    with pytest.raises(ValueError) as info:
        load_node("3nm-nope")
    msg = str(info.value)
    assert "3nm-nope" in msg
    for name in list_nodes():
        assert name in msg


def test_unknown_device_lists_allowed() -> None:
    with pytest.raises(ValueError) as info:
        load_device("unobtainium")
    msg = str(info.value)
    assert "unobtainium" in msg
    for name in list_devices():
        assert name in msg


def test_models_are_frozen() -> None:
    node = load_node(list_nodes()[0])
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises ValidationError
        node.vdd_v = 3.0  # type: ignore[misc]


def _device_text() -> str:
    return (Path(__file__).resolve().parents[1] / "tech" / "devices" / "rram.yaml").read_text()


def test_malformed_missing_source(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    text = _device_text().replace("source:", "note:", 1)
    bad.write_text(text)
    with pytest.raises(ValueError, match=r"bad\.yaml.*g_min_us"):
        load_file(bad, "device")


def test_malformed_empty_source(tmp_path: Path) -> None:
    import yaml

    data = yaml.safe_load(_device_text())
    data["levels"]["source"] = "  "
    bad = tmp_path / "empty.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError, match=r"empty\.yaml.*levels.*no source"):
        load_file(bad, "device")


def test_malformed_unknown_field(tmp_path: Path) -> None:
    bad = tmp_path / "extra.yaml"
    bad.write_text(_device_text() + "bogus_field:\n  value: 1\n  unit: x\n  source: y\n")
    with pytest.raises(ValueError, match=r"extra\.yaml.*bogus_field"):
        load_file(bad, "device")


def test_malformed_missing_field(tmp_path: Path) -> None:
    import yaml

    data = yaml.safe_load(_device_text())
    del data["c2c_sigma"]
    bad = tmp_path / "missing.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError, match=r"missing\.yaml.*c2c_sigma"):
        load_file(bad, "device")
