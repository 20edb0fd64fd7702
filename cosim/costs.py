"""Per-event energies and per-block areas of a generated chip, each traced to its source.

This module owns the prices of the energy and area model: for every performance counter the
chip keeps (``hdl/memory_map.py``) an energy per event, and for every block class (arrays,
ADCs, accumulation, interconnect, weight-gradient units, buffers, other) an area per instance
with the instance count of the generated chip. Figures come from the technology node
(``tech/nodes``), the device preset (``tech/devices``), the array periphery table
(``tech/periphery/default.yaml``) and, when the design point names an analog LUT
(``array.adc_table`` naming an ``insitu analog characterize`` folder), the LUT's simulated
ADC and column costs. Every :class:`Cost` carries its formula and sources, which
``insitu cosim --explain-costs`` prints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..config import DesignPoint
from ..hdl.asic_area import AsicArea
from ..hdl.export import TOP
from ..hdl.params import ChipParams
from ..tech.loader import load_device, load_node

__all__ = ["AreaItem", "Cost", "CostModel", "load_periphery"]

PERIPHERY = Path(__file__).resolve().parent.parent / "tech" / "periphery" / "default.yaml"


@dataclass(frozen=True)
class Cost:
    """Energy of one event of a counter."""

    counter: str
    component: str  # arrays | adcs | accumulation | interconnect | wgu | buffers | offchip | other
    energy_pj: float
    formula: str
    sources: tuple[str, ...]


@dataclass(frozen=True)
class AreaItem:
    """Area of one block class: instances x area per instance."""

    component: str
    block: str
    count: int
    unit_um2: float
    formula: str
    sources: tuple[str, ...]

    @property
    def total_um2(self) -> float:
        return self.count * self.unit_um2


# blocks of the unit model that synthesis cannot see (the analog array's stand-in)
_KEPT_BLOCKS = ("cells", "ADC", "shift-add accumulator")


def _short(module: str) -> str:
    return module.removeprefix(f"{TOP}.") if module != TOP else "top"


def _component_of(module: str) -> str:
    """The area component of a generated module, by its place in the chip's hierarchy."""
    first = _short(module).split(".")[0]
    if module == TOP:
        return "other"  # sequencer, host port, counters, control registers
    for prefix, component in (
        ("tile", "accumulation"),
        ("wgu", "wgu"),
        ("feedback", "wgu"),
        ("htree", "interconnect"),
    ):
        if first.startswith(prefix):
            return component
    return "other"


def load_periphery(path: Path = PERIPHERY) -> dict[str, dict[str, Any]]:
    """The periphery table: name -> {value, unit, source}."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    return {k: v for k, v in doc.items() if isinstance(v, dict)}


def _field(obj: Any, name: str) -> tuple[float, str]:
    """(value, "file.field: source") of a tech/ node or device field."""
    return float(getattr(obj, name)), f"{obj.name}.{name}: {obj.sources[name]}"


class CostModel:
    """Energies per event and areas per block of one generated chip."""

    def __init__(self, dp: DesignPoint, p: ChipParams, synth: AsicArea | None = None) -> None:
        self.dp, self.p, self.synth = dp, p, synth
        self.node = load_node(dp.tech.node)
        self.device = load_device(dp.array.device)
        self.periphery = load_periphery()
        self.lut_costs = self._lut_costs()
        self.costs = self._energy()
        self.areas = self._area() if synth is None else self._synth_area(synth)

    # -- helpers --------------------------------------------------------------------------
    def _n(self, name: str) -> tuple[float, str]:
        return _field(self.node, name)

    def _per(self, name: str) -> tuple[float, str]:
        e = self.periphery[name]
        return float(e["value"]), f"{name}: {e['source']}"

    def _lut_costs(self) -> dict[str, tuple[float, str]]:
        """Costs simulated by ngspice, when the design point names an analog LUT folder.

        Keys: ``adc`` (pJ per conversion), ``column0`` and ``column_row`` (pJ of one column
        read: a least-squares line over the LUT's active-row axis, intercept and slope per
        active row), ``delay_ns`` (column read + conversion).
        """
        table = self.dp.array.adc_table
        if not table or not (Path(table) / "lut.json").is_file():
            return {}
        import numpy as np

        from ..tech.lut import Lut

        lut = Lut.open(table)
        at = {"corner": self.dp.tech.corner, "temperature": float(self.dp.tech.temperature_c)}
        where = f"analog LUT {table} at {at['corner']}, {at['temperature']} C (ngspice)"
        out: dict[str, tuple[float, str]] = {}

        def value(name: str) -> np.ndarray:
            t = lut.table(name)
            coords = {a.name: at[a.name] for a in t.axes if a.name in at}
            return np.asarray(t.interp(**coords), dtype=np.float64)

        names = set(lut.names)
        if "adc_energy" in names:
            out["adc"] = (float(np.nanmean(value("adc_energy"))) * 1e12, f"{where}: adc_energy")
        if "column_read_energy" in names:
            e = value("column_read_energy")
            t = lut.table("column_read_energy")
            k = np.asarray(t.axis("active_rows").values, dtype=np.float64)
            ok = np.isfinite(e)
            slope, icpt = np.polyfit(k[ok], e[ok], 1)
            src = f"{where}: column_read_energy, line fit over {int(ok.sum())} active-row counts"
            out["column0"] = (float(icpt) * 1e12, src)
            out["column_row"] = (float(slope) * 1e12, src)
        if "adc_delay" in names and "column_read_delay" in names:
            d = float(np.nanmean(value("adc_delay"))) + float(
                np.nanmean(value("column_read_delay"))
            )
            out["delay_ns"] = (d * 1e9, f"{where}: column_read_delay + adc_delay")
        return out

    # -- derived widths and counts ---------------------------------------------------------
    @property
    def acc_bits(self) -> int:
        """Width of a shift-add accumulator: level bits + input bits + weight bits + sign."""
        return self.p.level_bits + self.p.activation_bits + self.p.weight_bits + 1

    @property
    def feature_um(self) -> float:
        return self._n("feature_nm")[0] * 1e-3

    # -- energy -----------------------------------------------------------------------------
    def _energy(self) -> dict[str, Cost]:
        p = self.p
        vr, s_vr = self._per("read_voltage_v")
        tr, s_tr = self._per("read_pulse_ns")
        g_min, s_gmin = _field(self.device, "g_min_us")
        g_max, s_gmax = _field(self.device, "g_max_us")
        g_avg = (g_min + g_max) / 2
        c_wire, s_c = self._n("wire_c_ff_per_um")
        vdd, s_vdd = self._n("vdd_v")
        add16, s_add16 = self._n("add_int16_pj")
        add32, s_add32 = self._n("add_int32_pj")
        mult8, s_mult8 = self._n("mult_int8_pj")
        buf, s_buf = self._n("buffer_bit_pj")
        dram, s_dram = self._n("dram_bit_pj")
        costs: list[Cost] = []
        cell_h_um = math.sqrt(self._cell_f2()[0]) * self.feature_um
        if "column_row" in self.lut_costs:
            v0, s0 = self.lut_costs["column0"]
            v1, s1 = self.lut_costs["column_row"]
            costs.append(
                Cost(
                    "row_activations",
                    "arrays",
                    v1 * p.used_cols,
                    f"used_cols ({p.used_cols}) x simulated column energy per active row",
                    (s1,),
                )
            )
            costs.append(
                Cost(
                    "array_reads",
                    "arrays",
                    v0 * p.used_cols,
                    f"used_cols ({p.used_cols}) x simulated column energy at 0 active rows",
                    (s0,),
                )
            )
        else:
            # every active row drives used_cols cells: V^2 G t per cell (NeuroSim's read model)
            e_cell = vr**2 * g_avg * 1e-6 * tr * 1e-9 * 1e12
            costs.append(
                Cost(
                    "row_activations",
                    "arrays",
                    e_cell * p.used_cols,
                    f"used_cols ({p.used_cols}) x V_read^2 x G_avg x t_read, G_avg = "
                    f"({g_min}+{g_max})/2 uS",
                    (s_vr, s_tr, s_gmin, s_gmax),
                )
            )
            # bit lines charged once per array read: cols x rows x pitch x C_wire x V_read^2
            c_bl = p.rows * cell_h_um * c_wire * 1e-15
            costs.append(
                Cost(
                    "array_reads",
                    "arrays",
                    p.cols * c_bl * vr**2 * 1e12,
                    f"cols ({p.cols}) x bit line C (rows {p.rows} x cell pitch "
                    f"{cell_h_um:.3f} um x {c_wire} fF/um) x V_read^2",
                    (s_c, s_vr, self._cell_f2()[1]),
                )
            )
        if "adc" in self.lut_costs:
            v, s = self.lut_costs["adc"]
            costs.append(Cost("adc_conversions", "adcs", v, "LUT ADC energy/conversion", (s,)))
        else:
            fom, s_fom = self._per("adc_walden_fom_fj")
            costs.append(
                Cost(
                    "adc_conversions",
                    "adcs",
                    fom * 2**p.adc_bits * 1e-3,
                    f"Walden FoM x 2^bits = {fom} fJ x 2^{p.adc_bits}",
                    (s_fom,),
                )
            )
        costs += [
            Cost("shift_adds", "accumulation", add16, "16-bit add", (s_add16,)),
            Cost("tree_adds", "accumulation", add32, "32-bit add", (s_add32,)),
            Cost(
                "transposed_macs",
                "accumulation",
                mult8 + add32,
                "8-bit mult + 32-bit add",
                (s_mult8, s_add32),
            ),
            (
                Cost(
                    "feedback_adds",
                    "wgu",
                    add16 + buf,
                    "16-bit add (+-1 feedback) + one B bit read from its SRAM (buffer energy "
                    "per bit)",
                    (s_add16, s_buf),
                )
                if p.feedback_storage == "stored"
                else Cost("feedback_adds", "wgu", add16, "16-bit add (+-1 feedback)", (s_add16,))
            ),
            Cost("wgu_macs", "wgu", mult8 + add16, "8-bit mult + 16-bit add", (s_mult8, s_add16)),
        ]
        w_e, s_we = _field(self.device, "write_energy_pj")
        costs.append(Cost("cell_writes", "arrays", w_e, "device write energy per cell", (s_we,)))
        costs.append(Cost("buffer_bits_read", "buffers", buf, "buffer energy per bit", (s_buf,)))
        costs.append(Cost("buffer_bits_written", "buffers", buf, "buffer energy per bit", (s_buf,)))
        hop = self.tile_pitch_um()
        costs.append(
            Cost(
                "htree_bits",
                "interconnect",
                c_wire * 1e-15 * hop * vdd**2 * 1e12,
                f"C_wire x hop length (tile pitch {hop:.1f} um) x Vdd^2 (every bit toggles: an "
                "upper bound)",
                (s_c, s_vdd),
            )
        )
        costs.append(Cost("dram_bits", "offchip", dram, "DRAM energy per bit", (s_dram,)))
        return {c.counter: c for c in costs}

    # -- area -------------------------------------------------------------------------------
    def _cell_f2(self) -> tuple[float, str]:
        tech = str(getattr(self.device, "technology", "")).lower()
        key = "cell_sram_f2" if "sram" in tech or self.dp.array.device == "sram" else "cell_1t1r_f2"
        return self._per(key)

    def adc_area_um2(self) -> tuple[float, str]:
        if "adc_area" in self.lut_costs:
            return self.lut_costs["adc_area"]
        a, s_a = self._per("adc_area_um2")
        b0, _ = self._per("adc_reference_bits")
        n0, _ = self._per("adc_reference_node_nm")
        f = self._n("feature_nm")[0]
        return a * 2 ** (self.p.adc_bits - b0) * (f / n0) ** 2, s_a

    def tile_area_um2(self) -> float:
        """Arrays and ADCs of one tile (the H-tree's hop length follows from it)."""
        p = self.p
        per_tile = p.pes_per_tile * p.subarrays_per_pe
        f2, _ = self._cell_f2()
        cells = per_tile * p.rows * p.cols * f2 * self.feature_um**2
        return cells + per_tile * p.adcs_per_subarray * self.adc_area_um2()[0]

    def tile_pitch_um(self) -> float:
        return math.sqrt(self.tile_area_um2())

    def _area(self) -> list[AreaItem]:
        p = self.p
        subs = p.total_subarrays
        f2, s_f2 = self._cell_f2()
        adc, s_adc = self.adc_area_um2()
        add_bit, s_add = self._n("adder_bit_um2")
        reg_bit, s_reg = self._n("register_bit_um2")
        mult8, s_mult = self._n("mult_int8_um2")
        sram_bit, s_sram = self._n("sram_bit_um2")
        acc = self.acc_bits
        items = [
            AreaItem(
                "arrays",
                "cells",
                subs * p.rows * p.cols,
                f2 * self.feature_um**2,
                f"{f2} F^2 per cell",
                (s_f2,),
            ),
            AreaItem(
                "adcs", "ADC", subs * p.adcs_per_subarray, adc, f"{p.adc_bits}-bit ADC", (s_adc,)
            ),
            AreaItem(
                "accumulation",
                "shift-add accumulator",
                subs * p.weights_per_row,
                acc * (add_bit + reg_bit),
                f"{acc}-bit adder + register",
                (s_add, s_reg),
            ),
        ]
        tree = sum((lay.row_blocks - 1) * lay.fan_out for lay in p.layers)
        items.append(
            AreaItem(
                "accumulation",
                "adder tree (PE/tile)",
                tree,
                (acc + 4) * add_bit,
                f"{acc + 4}-bit adder",
                (s_add,),
            )
        )
        # weight-gradient units: one multiplier + accumulator per lane
        # a WGU has wgu_row_blocks x weights_per_row lanes (row blocks beyond take turns)
        lanes = [min(lay.row_blocks, p.wgu_row_blocks) * p.weights_per_row for lay in p.layers]
        n_lanes = sum(lanes) if p.wgu == "per-layer" else max(lanes)
        g = p.error_bits + p.activation_bits + max(1, (p.batch - 1).bit_length())
        mult = mult8 * (p.error_bits * p.activation_bits) / 64
        items.append(
            AreaItem(
                "wgu",
                "WGU lane",
                n_lanes,
                mult + g * (add_bit + reg_bit),
                f"{p.error_bits}x{p.activation_bits} multiplier (8x8 area scaled "
                f"by bit product) + {g}-bit accumulator",
                (s_mult, s_add, s_reg),
            )
        )
        if p.rule != "bp":
            fb = sum(p.feedback_lanes for lay in p.layers[:-1])
            items.append(
                AreaItem(
                    "wgu",
                    f"feedback lane ({'stored' if p.feedback_storage == 'stored' else 'LFSR'} B e)",
                    fb,
                    (p.error_bits + 8) * (add_bit + reg_bit),
                    f"{p.error_bits + 8}-bit add/subtract + register",
                    (s_add, s_reg),
                )
            )
        if p.feedback_storage == "stored":
            items.append(
                AreaItem(
                    "wgu",
                    "stored feedback matrices B (SRAM bits)",
                    sum(lay.feedback_source * lay.fan_out for lay in p.layers[:-1]),
                    sram_bit,
                    "SRAM bit cell per +-1 entry of B",
                    (s_sram,),
                )
            )
        act_bits = p.batch * sum(lay.fan_in for lay in p.layers) * p.activation_bits
        dlt_bits = p.batch * sum(lay.fan_out for lay in p.layers) * p.error_bits
        items.append(
            AreaItem(
                "buffers",
                "activation and delta buffers (SRAM bits)",
                act_bits + dlt_bits,
                sram_bit,
                "SRAM bit cell",
                (s_sram,),
            )
        )
        links = 2 ** (p.htree_depth + 1) - 2
        width = p.rows * p.activation_bits
        items.append(
            AreaItem(
                "interconnect",
                "H-tree link pipeline register bits",
                links * width,
                reg_bit,
                "register bit per link bit",
                (s_reg,),
            )
        )
        items.append(
            AreaItem(
                "other",
                "counters and sequencer registers",
                20 * 64 + 256,
                reg_bit,
                "register bit",
                (s_reg,),
            )
        )
        return items

    def _synth_area(self, synth: AsicArea) -> list[AreaItem]:
        """Cells, ADCs and shift-add as in :meth:`_area`; every other block from synthesis."""
        analog = [it for it in self._area() if it.block in _KEPT_BLOCKS]
        scale, s_scale = self._n("logic_area_scale")
        sram_bit, s_sram = self._n("sram_bit_um2")
        items = list(analog)
        for name, mod in sorted(synth.modules.items()):
            if mod.area_um2 <= 0:
                continue  # wrappers: only wires and black boxes
            ffs = sum(n for c, n in mod.cells.items() if c.startswith("DFF"))
            items.append(
                AreaItem(
                    _component_of(name),
                    _short(name)
                    + (f" (+{len(mod.members) - 1} like it)" if len(mod.members) > 1 else ""),
                    mod.instances,
                    mod.area_um2 * scale,
                    f"synthesized ({synth.yosys}): {sum(mod.cells.values())} {synth.library} "
                    f"cells, {ffs} flip-flops, {mod.area_um2:.1f} um^2 at {synth.node_nm:g} nm "
                    f"x {scale:g}",
                    (synth.library_source, s_scale),
                )
            )
            if mod.rams:
                names = ", ".join(f"{k} {w}x{b}" for k, (w, b) in sorted(mod.rams.items()))
                items.append(
                    AreaItem(
                        "buffers",
                        f"{_short(name)} RAMs (SRAM bits)",
                        mod.ram_bits * mod.instances,
                        sram_bit,
                        f"synthesized memories {names}; SRAM bit cell",
                        (s_sram,),
                    )
                )
        return items

    @property
    def area_source(self) -> dict[str, Any]:
        """Where the areas come from (summary.json's ``area_mm2.source``)."""
        if self.synth is None:
            return {"digital": "cited unit areas x counts (tech/, cosim/costs.py)"}
        return {
            "digital": f"synthesis: {self.synth.yosys}, {self.synth.library} cells, scaled to "
            f"{self.dp.tech.node} by {self.node.logic_area_scale:g}",
            "analog": "cells, ADCs and subarray shift-add: "
            + ("analog LUT" if "adc_area" in self.lut_costs else "cited unit areas"),
            "synthesis_s": round(self.synth.seconds, 1),
            "synthesis_cached": self.synth.seconds == 0,
        }

    # -- reports ----------------------------------------------------------------------------
    def area_by_component(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for it in self.areas:
            out[it.component] = out.get(it.component, 0.0) + it.total_um2 * 1e-6
        return out

    def explain(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = [
            {
                "kind": "energy",
                "counter": c.counter,
                "component": c.component,
                "value": c.energy_pj,
                "unit": "pJ/event",
                "formula": c.formula,
                "sources": list(c.sources),
            }
            for c in self.costs.values()
        ]
        rows += [
            {
                "kind": "area",
                "counter": it.block,
                "component": it.component,
                "value": it.unit_um2,
                "unit": f"um^2 x {it.count}",
                "formula": it.formula,
                "sources": list(it.sources),
            }
            for it in self.areas
        ]
        return rows
