"""Load technology nodes and synaptic-device presets from the YAML files shipped in ``tech/``.

Every numeric field in a file is a mapping ``{value: <number>, unit: <str>, source: <str>}``;
the source names the paper, datasheet or tool the number comes from (and how it was derived
when it was scaled). Loading returns frozen pydantic models whose numeric attributes are plain
numbers, plus ``sources`` and ``units`` dictionaries keyed by field name.

    >>> from insitu.tech.loader import load_node, load_device
    >>> load_node("45nm").add_int8_pj
    0.03
    >>> load_device("rram").sources["nl_ltp"]  # doctest: +ELLIPSIS
    'NeuroSim ...'

Files are looked up next to this module (``nodes/*.yaml`` and ``devices/*.yaml``), so they work
from a source checkout and from an installed wheel. YAML is parsed with ``yaml.safe_load`` only.
Unknown names and malformed files raise ``ValueError`` with the offending name/file and field.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

_HERE = Path(__file__).resolve().parent
NODES_DIR = _HERE / "nodes"
DEVICES_DIR = _HERE / "devices"
CELLS_DIR = _HERE / "cells"

_TEXT_FIELDS_NODE = ("name", "description")
_TEXT_FIELDS_DEVICE = ("name", "description", "technology")
_META_FIELDS = ("sources", "units")


class TechNode(BaseModel):
    """One CMOS technology node: supply, wires, digital energies (pJ) and areas (um^2)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str
    feature_nm: float
    vdd_v: float
    wire_r_ohm_per_um: float
    wire_c_ff_per_um: float
    # energy per operation / per bit, pJ
    add_int8_pj: float
    add_int16_pj: float
    add_int32_pj: float
    mult_int8_pj: float
    mult_int16_pj: float | None = None
    register_bit_pj: float
    sram_read_bit_pj: float
    sram_write_bit_pj: float
    buffer_bit_pj: float
    dram_bit_pj: float
    # area, um^2
    adder_bit_um2: float
    mult_int8_um2: float
    register_bit_um2: float
    sram_bit_um2: float
    # standard-cell area at this node / at 45 nm (tech/cells/*.yaml are 45 nm cells)
    logic_area_scale: float
    sources: dict[str, str]
    units: dict[str, str]


class StdCell(BaseModel):
    """One standard cell: its area and logic function (Liberty syntax), or a D flip-flop."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    area_um2: float = Field(gt=0)
    inputs: tuple[str, ...] = Field(min_length=1)
    output: str
    function: str | None = None
    clocked_on: str | None = None
    next_state: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> StdCell:
        ff = self.clocked_on is not None and self.next_state is not None
        if (self.function is None) == (not ff):
            raise ValueError("a cell has either a function or both clocked_on and next_state")
        return self


class CellLibrary(BaseModel):
    """Standard cells of a node, with the source of their areas (``tech/cells/*.yaml``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str
    node_nm: float
    source: str
    cells: dict[str, StdCell] = Field(min_length=1)


class DevicePreset(BaseModel):
    """One synaptic device preset (NeuroSim-style parameters)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str
    technology: str
    g_min_us: float
    g_max_us: float
    on_off_ratio: float
    levels: int
    nl_ltp: float
    nl_ltd: float
    d2d_sigma: float
    c2c_sigma: float
    read_noise_sigma: float
    write_energy_pj: float
    write_latency_ns: float
    stuck_at_rate: float
    sources: dict[str, str]
    units: dict[str, str]


def _names(directory: Path) -> list[str]:
    return [p.stem for p in directory.glob("*.yaml")]


def _node_key(name: str) -> tuple[float, str]:
    match = re.match(r"(\d+(?:\.\d+)?)", name)
    return (-float(match.group(1)) if match else 0.0, name)


def list_nodes() -> list[str]:
    """Names of the available technology nodes, largest feature size first."""
    return sorted(_names(NODES_DIR), key=_node_key)


def list_devices() -> list[str]:
    """Names of the available device presets, alphabetical."""
    return sorted(_names(DEVICES_DIR))


def _numeric_fields(model: type[BaseModel], text_fields: tuple[str, ...]) -> dict[str, bool]:
    """Numeric field name -> required?"""
    skip = set(text_fields) | set(_META_FIELDS)
    return {
        name: info.is_required() for name, info in model.model_fields.items() if name not in skip
    }


def _parse(path: Path, model: type[BaseModel], text_fields: tuple[str, ...]) -> Any:
    where = f"{path.name}"
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{where}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: top level must be a mapping of fields")

    numeric = _numeric_fields(model, text_fields)
    data: dict[str, Any] = {}
    sources: dict[str, str] = {}
    units: dict[str, str] = {}

    for key in raw:
        if key not in numeric and key not in text_fields:
            allowed = ", ".join([*text_fields, *numeric])
            raise ValueError(f"{where}: unknown field {key!r} (allowed: {allowed})")

    for key in text_fields:
        value = raw.get(key)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{where}: field {key!r} must be a non-empty string")
        data[key] = value.strip()

    for key, required in numeric.items():
        if key not in raw:
            if required:
                raise ValueError(f"{where}: missing field {key!r}")
            continue
        entry = raw[key]
        if not isinstance(entry, dict) or set(entry) != {"value", "unit", "source"}:
            raise ValueError(
                f"{where}: field {key!r} must be a mapping with exactly the keys "
                f"value, unit, source (got {entry!r})"
            )
        value, unit, source = entry["value"], entry["unit"], entry["source"]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{where}: field {key!r} value must be a number (got {value!r})")
        if not isinstance(source, str) or not source.strip():
            raise ValueError(f"{where}: field {key!r} has no source")
        if not isinstance(unit, str) or not unit.strip():
            raise ValueError(f"{where}: field {key!r} has no unit")
        data[key] = value
        sources[key] = source.strip()
        units[key] = unit.strip()

    try:
        return model(**data, sources=sources, units=units)
    except ValidationError as exc:
        fields = ", ".join(".".join(str(p) for p in err["loc"]) for err in exc.errors())
        raise ValueError(f"{where}: invalid field(s) {fields}: {exc}") from exc


def _resolve(name: str, directory: Path, allowed: list[str], kind: str) -> Path:
    if name not in allowed:
        raise ValueError(f"unknown {kind} {name!r}; allowed: {', '.join(allowed)}")
    return directory / f"{name}.yaml"


def _check_name(path: Path, name: str) -> None:
    if name != path.stem:
        raise ValueError(f"{path.name}: field 'name' is {name!r} but must equal {path.stem!r}")


@lru_cache(maxsize=64)
def load_node(name: str) -> TechNode:
    """Load technology node ``name`` (e.g. ``"45nm"``); see :func:`list_nodes`."""
    path = _resolve(name, NODES_DIR, list_nodes(), "technology node")
    node: TechNode = _parse(path, TechNode, _TEXT_FIELDS_NODE)
    _check_name(path, node.name)
    return node


@lru_cache(maxsize=64)
def load_device(name: str) -> DevicePreset:
    """Load device preset ``name`` (e.g. ``"rram"``); see :func:`list_devices`."""
    path = _resolve(name, DEVICES_DIR, list_devices(), "device preset")
    device: DevicePreset = _parse(path, DevicePreset, _TEXT_FIELDS_DEVICE)
    _check_name(path, device.name)
    return device


@lru_cache(maxsize=8)
def load_cells(name: str = "nangate45") -> CellLibrary:
    """Load the standard-cell library ``name`` from ``tech/cells/<name>.yaml``."""
    path = _resolve(name, CELLS_DIR, sorted(_names(CELLS_DIR)), "cell library")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        lib = CellLibrary.model_validate(raw)
    except yaml.YAMLError as exc:
        raise ValueError(f"{path.name}: not valid YAML: {exc}") from exc
    except ValidationError as exc:
        fields = ", ".join(".".join(str(p) for p in err["loc"]) for err in exc.errors())
        raise ValueError(f"{path.name}: invalid field(s) {fields}: {exc}") from exc
    _check_name(path, lib.name)
    return lib


def load_file(path: str | Path, kind: str) -> TechNode | DevicePreset:
    """Load and validate a node (``kind="node"``) or device (``kind="device"``) file by path.

    Not cached; meant for checking a new file before copying it into ``tech/``.
    """
    path = Path(path)
    if kind == "node":
        return _parse(path, TechNode, _TEXT_FIELDS_NODE)
    if kind == "device":
        return _parse(path, DevicePreset, _TEXT_FIELDS_DEVICE)
    raise ValueError(f"unknown kind {kind!r}; allowed: node, device")
