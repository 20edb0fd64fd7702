"""Characterize a design point: plan the ngspice sweep, run it, and write the LUT folder.

The sweep covers, for every (corner, temperature): the PDK's NMOS/PMOS I-V, the design's
crossbar column (``array.rows`` rows of ``array.cell_bits``-bit cells of ``array.device``;
1T1R cells, or transistor synapses for the ``subthreshold`` preset) in DC over every number of
active rows of several random stored-level patterns, its read transient (delay, row-driver
energy), and the ADC (``flash`` or ``sar``, ``array.adc_bits``) in DC and transient; Monte
Carlo samples 1..mc add mismatch to columns and ADCs. The LUT tables it writes are listed in
docs/analog.md.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from insitu import __version__ as insitu_version
from insitu.atomic import write_bytes_with, write_json
from insitu.config import DesignError, DesignPoint
from insitu.tech.loader import load_device, load_node
from insitu.tech.lut import FORMAT

from . import circuits
from .circuits import ColumnSpec, Job
from .pdk import CORNERS, Pdk, PdkError, load_pdk
from .sweep import Outcome, Point, SweepStats, run_points

SYNAPSE_DEVICE = "subthreshold"


class Settings(BaseModel):
    """Characterization options beyond the design point (the CLI's flags)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    pdk: str = "generic180"
    corners: tuple[str, ...] = ("tt", "ff", "ss")
    temperatures: tuple[float, ...] = (-40.0, 27.0, 85.0)
    mc: int = Field(default=0, ge=0, le=1000, description="Monte Carlo mismatch samples.")
    patterns: int = Field(default=6, ge=1, le=64, description="Stored-level patterns/column.")
    adc: Literal["flash", "sar"] = "flash"
    adc_range: int | None = Field(
        default=None, ge=1, description="Partial sum at ADC full scale (None: rows x max cell)."
    )
    v_read: float = Field(default=0.2, gt=0, le=1.0, description="Read (1T1R) / drain bias (V).")
    wire_r_ohm: float | None = Field(
        default=None, ge=0, le=1e4, description="Bitline wire R per cell segment (None: node)."
    )
    cell_pitch_um: float = Field(default=1.0, gt=0, le=100)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)

    @field_validator("corners")
    @classmethod
    def _corners(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("at least one corner")
        for c in v:
            if c not in CORNERS:
                raise ValueError(f"corner {c!r} is not allowed; allowed: {', '.join(CORNERS)}")
        return tuple(dict.fromkeys(v))

    @field_validator("temperatures")
    @classmethod
    def _temps(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not v:
            raise ValueError("at least one temperature")
        for t in v:
            if not -55 <= t <= 150:
                raise ValueError(f"temperature {t} C is not allowed: must be in -55..150")
        return tuple(sorted(set(v)))


class Plan:
    """Every point of a characterization, with what the LUT builder needs to place them."""

    def __init__(self, dp: DesignPoint, st: Settings) -> None:
        try:
            self.pdk: Pdk = load_pdk(st.pdk)
        except PdkError as exc:
            raise DesignError(str(exc)) from None
        for c in st.corners:
            if c not in self.pdk.corners:
                raise DesignError(
                    f"--corners {c!r} is not allowed for PDK {self.pdk.name}: "
                    f"must be one of {', '.join(self.pdk.corners)}"
                )
        self.dp, self.st = dp, st
        a = dp.array
        self.rows, self.cell_bits, self.bits = a.rows, a.cell_bits, a.adc_bits
        if self.rows > 512:
            raise DesignError(
                f"array.rows = {self.rows} is not allowed for characterization: at most 512 "
                "(netlists grow with rows x patterns)"
            )
        if self.bits > 8:
            raise DesignError(
                f"array.adc_bits = {self.bits} is not allowed for characterization: at most 8 "
                "(a flash ADC of 2^bits - 1 comparators)"
            )
        self.full = self.rows * (2**self.cell_bits - 1)
        self.adc_range = st.adc_range or self.full
        if self.adc_range > self.full:
            raise DesignError(
                f"--adc-range = {self.adc_range} is not allowed: at most {self.full} "
                f"(rows x max cell)"
            )
        self.device = load_device(a.device)
        node = load_node(self.pdk.spec.node) if self.pdk.spec.node else None
        if st.wire_r_ohm is not None:
            self.wire_r = st.wire_r_ohm
        else:
            self.wire_r = (node.wire_r_ohm_per_um if node else 0.3) * st.cell_pitch_um
        self.wire_c = (node.wire_c_ff_per_um if node else 0.2) * st.cell_pitch_um * 1e-15
        self.cell = SYNAPSE_DEVICE if a.device == SYNAPSE_DEVICE else "1t1r"
        self.v_read = min(st.v_read, 0.1) if self.cell == SYNAPSE_DEVICE else st.v_read

    def combos(self) -> list[tuple[str, float]]:
        return [(c, t) for c in self.st.corners for t in self.st.temperatures]

    def _point(self, job: Job, labels: dict[str, Any], seed: int = 0) -> Point:
        return Point(job, labels, seed, self.pdk.models_hash)

    def synapse_point(self) -> Point:
        return self._point(circuits.synapse_iv(self.pdk, self.v_read), {"what": "synapse_iv"})

    def column_spec(
        self, gate_table: tuple[tuple[float, ...], tuple[float, ...]] | None
    ) -> ColumnSpec:
        d = self.device
        return ColumnSpec(
            rows=self.rows,
            cell_bits=self.cell_bits,
            cell=self.cell,
            g_min_s=d.g_min_us * 1e-6,
            g_max_s=d.g_max_us * 1e-6,
            v_read=self.v_read,
            wire_r_ohm=self.wire_r,
            wire_c_f=self.wire_c,
            d2d_sigma=d.d2d_sigma,
            patterns=self.st.patterns,
            gate_table=gate_table,
        )

    def points(self, gate_table: tuple[tuple[float, ...], tuple[float, ...]] | None) -> list[Point]:
        st, pdk = self.st, self.pdk
        spec = self.column_spec(gate_table)
        pts: list[Point] = []
        for corner, temp in self.combos():
            base = {"corner": corner, "temperature": temp}
            for mc in range(st.mc + 1):
                lab = {**base, "sample": mc}
                pts.append(
                    self._point(
                        circuits.adc(pdk, corner, temp, st.adc, self.bits, st.seed, mc),
                        {**lab, "what": "adc"},
                        st.seed + mc,
                    )
                )
                pts.append(
                    self._point(
                        circuits.column(pdk, corner, temp, spec, st.seed, mc, tran=False),
                        {**lab, "what": "column"},
                        st.seed + mc,
                    )
                )
            pts.append(
                self._point(
                    circuits.column(pdk, corner, temp, spec, st.seed, 0, tran=True),
                    {**base, "what": "column_tran"},
                )
            )
            pts.append(self._point(circuits.mos_iv(pdk, corner, temp), {**base, "what": "iv"}))
        return pts


ProgressFn = Callable[[Outcome, SweepStats, int], None]


def characterize(
    dp: DesignPoint,
    st: Settings,
    out: Path,
    workers: int = 1,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Run (or reuse) every point and write ``out``/lut.json, tables.npz, adc_table.json."""
    plan = Plan(dp, st)
    cache = out / "cache"
    gate_table = None
    all_stats = SweepStats()
    n_total = len(plan.combos()) * (2 * st.mc + 4) + (plan.cell == SYNAPSE_DEVICE)

    def prog(o: Outcome, s: SweepStats) -> None:
        if progress:
            progress(o, s, n_total)

    if plan.cell == SYNAPSE_DEVICE:
        (syn,), s1 = run_points([plan.synapse_point()], cache, workers, prog)
        _merge(all_stats, s1)
        if syn.failed:
            raise RuntimeError(f"synapse I-V failed: {syn.failed}")
        gate_table = (
            tuple(float(x) for x in syn.arrays["vg"]),
            tuple(float(x) for x in syn.arrays["log10_id"]),
        )
    pts = plan.points(gate_table)
    outcomes, s2 = run_points(pts, cache, workers, prog)
    _merge(all_stats, s2)
    summary = build_lut(plan, outcomes, out, all_stats)
    return summary


def _merge(a: SweepStats, b: SweepStats) -> None:
    a.total += b.total
    a.cached += b.cached
    a.computed += b.computed
    a.failed += b.failed
    a.retried += b.retried
    a.seconds += b.seconds
    a.sim_seconds += b.sim_seconds


# --- LUT building ---------------------------------------------------------------------------
def _iv_metrics(a: dict[str, np.ndarray], l_um: float, prefix: str) -> dict[str, float]:
    """Vth (constant current 100 nA x W/L at |Vds| = 0.1 V), minimum subthreshold slope,
    Ion (|Vgs| = |Vds| = VDD) and Ioff (Vgs = 0, |Vds| = VDD), per um of width."""
    vg = a["vg"]
    lin, sat = a[f"{prefix}_lin"], a[f"{prefix}_sat"]
    icc = 100e-9 / l_um
    logl = np.log10(np.maximum(lin, 1e-30))
    k = int(np.argmax(lin >= icc))
    vth = float(np.interp(np.log10(icc), logl[max(0, k - 1) : k + 1], vg[max(0, k - 1) : k + 1]))
    slope = np.gradient(logl, vg)  # decades per volt
    sub = (lin > 1e-13) & (lin < icc / 10) & (slope > 0)
    ss = float(1e3 / slope[sub].max()) if sub.any() else float("nan")
    return {"vth": vth, "ss": ss, "ion": float(sat[-1]), "ioff": float(sat[0])}


def iv_metrics(a: dict[str, np.ndarray], pdk: Pdk) -> dict[str, dict[str, float]]:
    return {
        "nmos": _iv_metrics(a, pdk.spec.nmos.l_min_um, "idn"),
        "pmos": _iv_metrics(a, pdk.spec.pmos.l_min_um, "idp"),
    }


def adc_linearity(
    thr: np.ndarray, taps: np.ndarray, lsb: float, codes: np.ndarray, ncode: int
) -> dict[str, Any]:
    """DNL/INL (LSB) from transition levels; missing codes and monotonicity of the transfer."""
    dnl = np.diff(thr) / lsb - 1.0
    inl = (thr - taps) / lsb
    seen = set(np.unique(codes.astype(int)).tolist())
    missing = [c for c in range(ncode) if c not in seen]
    mono = bool(np.all(np.diff(codes) >= 0))
    return {
        "dnl": np.nan_to_num(dnl, nan=-1.0),
        "inl": inl,
        "missing": len(missing),
        "monotonic": mono,
    }


def build_lut(plan: Plan, outcomes: list[Outcome], out: Path, stats: SweepStats) -> dict[str, Any]:
    st, pdk = plan.st, plan.pdk
    corners, temps = list(st.corners), list(st.temperatures)
    nc, nt, ns = len(corners), len(temps), st.mc + 1
    ncode = 2**plan.bits
    lo, hi = circuits.adc_range(pdk.spec.vdd)
    lsb = (hi - lo) / (ncode - 1)
    taps = np.array([lo + (i - 0.5) * lsb for i in range(1, ncode)])
    full, m = plan.full, plan.adc_range
    nan = np.nan
    tables: dict[str, tuple[np.ndarray, list[Any], str, str]] = {}
    ax_ct: list[Any] = [("corner", "", corners), ("temperature", "C", temps)]
    ax_cts = [*ax_ct, ("sample", "", list(range(ns)))]
    failed: list[dict[str, Any]] = []
    by: dict[tuple[Any, ...], Outcome] = {}
    for o in outcomes:
        lab = o.point.labels
        key = (lab["what"], lab.get("corner"), lab.get("temperature"), lab.get("sample", 0))
        by[key] = o
        if o.failed:
            failed.append({**lab, "reason": o.failed, "attempts": o.attempts})

    def get(what: str, c: str, t: float, s: int = 0) -> dict[str, np.ndarray] | None:
        o = by.get((what, c, t, s))
        return None if o is None or o.failed else o.arrays

    # Device I-V and metrics.
    vg_len = 361
    iv = np.full((nc, nt, 2, 2, vg_len), nan)
    met = {k: np.full((nc, nt, 2), nan) for k in ("vth", "ss", "ion", "ioff")}
    vg_axis: list[float] = list(np.linspace(0, pdk.spec.vdd, vg_len))
    for ci, c in enumerate(corners):
        for ti, t in enumerate(temps):
            a = get("iv", c, t)
            if a is None:
                continue
            vg_axis = [float(x) for x in a["vg"]]
            for di, dev in enumerate(("idn", "idp")):
                iv[ci, ti, di, 0] = a[f"{dev}_lin"]
                iv[ci, ti, di, 1] = a[f"{dev}_sat"]
            mm = iv_metrics(a, pdk)
            for di, dev in enumerate(("nmos", "pmos")):
                for k in met:
                    met[k][ci, ti, di] = mm[dev][k]
    ax_dev = [*ax_ct, ("device", "", ["nmos", "pmos"])]
    tables["device_iv"] = (
        iv,
        [*ax_dev, ("bias", "", ["lin", "sat"]), ("vgs", "V", vg_axis)],
        "A/um",
        "|Id| per um width vs |Vgs| at |Vds| = 0.1 V (lin) and VDD",
    )
    tables["device_vth"] = (met["vth"], ax_dev, "V", "constant-current (100 nA W/L) |Vth|, lin")
    tables["device_ss"] = (met["ss"], ax_dev, "mV/dec", "minimum subthreshold slope")
    tables["device_ion"] = (met["ion"], ax_dev, "A/um", "|Id| at |Vgs| = |Vds| = VDD")
    tables["device_ioff"] = (met["ioff"], ax_dev, "A/um", "|Id| at Vgs = 0, |Vds| = VDD")

    # Column transfer, error, read energy and delay.
    sums = np.arange(full + 1)
    cmean = np.full((nc, nt, full + 1), nan)
    cstd = np.full((nc, nt, full + 1), nan)
    erms = np.full((nc, nt), nan)
    emax = np.full((nc, nt), nan)
    rows_axis = list(range(plan.rows + 1))
    ecol = np.full((nc, nt, plan.rows + 1), nan)
    dcol = np.full((nc, nt), nan)
    erow = np.full((nc, nt), nan)
    scatter: dict[str, Any] = {}
    for ci, c in enumerate(corners):
        for ti, t in enumerate(temps):
            ideal, eff = [], []
            for s in range(ns):
                a = get("column", c, t, s)
                if a is None:
                    continue
                ideal.append(a["ideal"].ravel())
                eff.append(a["effective"].ravel())
            tr = get("column_tran", c, t)
            if tr is not None:
                dcol[ci, ti] = float(tr["delay"][0])
                erow[ci, ti] = float(tr["row_energy"][0])
            a0 = get("column", c, t, 0)
            if a0 is not None and tr is not None:
                ecol[ci, ti] = plan.v_read * a0["column_current"] * dcol[ci, ti]
            if not ideal:
                continue
            x, y = np.concatenate(ideal), np.concatenate(eff)
            if c == corners[0] and t == (27.0 if 27.0 in temps else temps[0]):
                scatter = {"ideal": x, "effective": y}
            mean, std = _binned(x, y, full)
            cmean[ci, ti], cstd[ci, ti] = mean, std
            err = y - x
            erms[ci, ti] = float(np.sqrt(np.mean(err**2)))
            emax[ci, ti] = float(np.max(np.abs(err)))
    tables["column_transfer_mean"] = (
        cmean,
        [*ax_ct, ("ideal_sum", "sum", list(sums))],
        "sum",
        "mean effective column sum (TIA output vs reference "
        "column, in ideal LSBs) for each ideal partial sum",
    )
    tables["column_transfer_std"] = (
        cstd,
        [*ax_ct, ("ideal_sum", "sum", list(sums))],
        "sum",
        "spread of the effective sum (patterns, mismatch)",
    )
    tables["column_error_rms"] = (erms, ax_ct, "sum", "rms(effective - ideal) over all points")
    tables["column_error_max"] = (emax, ax_ct, "sum", "max |effective - ideal|")
    tables["column_read_energy"] = (
        ecol,
        [*ax_ct, ("active_rows", "rows", rows_axis)],
        "J",
        "bitline energy of one column read: V_read x mean column current x read delay",
    )
    tables["column_read_delay"] = (
        dcol,
        ax_ct,
        "s",
        "all rows on: TIA output within 1/2 LSB of its final value",
    )
    tables["row_drive_energy"] = (erow, ax_ct, "J", "row-driver energy per active row per read")

    # ADC.
    thr_v = np.full((nc, nt, ns, ncode - 1), nan)
    dnl = np.full((nc, nt, ns, ncode - 2), nan)
    inl = np.full((nc, nt, ns, ncode - 1), nan)
    miss = np.full((nc, nt, ns), nan)
    mono = np.full((nc, nt, ns), nan)
    eadc = np.full((nc, nt, ns), nan)
    tadc = np.full((nc, nt, ns), nan)
    transfer: dict[str, Any] = {}
    for ci, c in enumerate(corners):
        for ti, t in enumerate(temps):
            for s in range(ns):
                a = get("adc", c, t, s)
                if a is None:
                    continue
                thr_v[ci, ti, s] = a["thresholds"]
                lin = adc_linearity(a["thresholds"], taps, lsb, a["codes"], ncode)
                dnl[ci, ti, s], inl[ci, ti, s] = lin["dnl"], lin["inl"]
                miss[ci, ti, s], mono[ci, ti, s] = lin["missing"], lin["monotonic"]
                eadc[ci, ti, s], tadc[ci, ti, s] = a["energy"][0], a["delay"][0]
                if s == 0 and c == corners[0] and t == (27.0 if 27.0 in temps else temps[0]):
                    transfer = {"vin": a["vin"], "codes": a["codes"]}
    codes_t = list(range(1, ncode))
    tables["adc_thresholds"] = (
        thr_v,
        [*ax_cts, ("code", "", codes_t)],
        "V",
        "input voltage of each code transition (sample 0: nominal)",
    )
    tables["adc_thresholds_sum"] = (
        (thr_v - lo) / (hi - lo) * m,
        [*ax_cts, ("code", "", codes_t)],
        "sum",
        "code transitions in partial-sum units (ADC range M)",
    )
    tables["adc_dnl"] = (dnl, [*ax_cts, ("code", "", list(range(1, ncode - 1)))], "LSB", "DNL")
    tables["adc_inl"] = (inl, [*ax_cts, ("code", "", codes_t)], "LSB", "INL (vs ideal taps)")
    tables["adc_missing_codes"] = (miss, ax_cts, "codes", "codes never output")
    tables["adc_monotonic"] = (mono, ax_cts, "bool", "1 if the transfer never decreases")
    tables["adc_energy"] = (eadc, ax_cts, "J", "energy per conversion")
    tables["adc_delay"] = (tadc, ax_cts, "s", "conversion time")

    provenance = {
        "tool": f"insitu {insitu_version} analog characterize",
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "ngspice": "ngspice shared library via PySpice",
        "host": platform.node(),
        "pdk": pdk.name,
        "pdk_folder": str(pdk.folder),
        "models_sha256": pdk.models_hash,
        "design": plan.dp.dump(),
        "settings": st.model_dump(mode="json"),
        "rows": plan.rows,
        "cell_bits": plan.cell_bits,
        "cell": plan.cell,
        "device": plan.dp.array.device,
        "adc": st.adc,
        "adc_bits": plan.bits,
        "adc_range": m,
        "adc_input_v": [lo, hi],
        "v_read": plan.v_read,
        "wire_r_ohm": plan.wire_r,
        "wire_c_f": plan.wire_c,
        "points": stats.total,
        "failed_points": failed,
        "sources": {
            "models": "tech/models/generic180.lib header, or the PDK's own files",
            "device": f"tech/devices/{plan.dp.array.device}.yaml",
            "assumptions": "analog/circuits.py constants (TIA, ladder, C-DAC, comparator)",
        },
    }
    manifest = {
        "format": FORMAT,
        "tables": {
            name: {
                "unit": unit,
                "description": desc,
                "axes": [
                    {"name": n, "unit": u, "values": [_plain(v) for v in vals]}
                    for n, u, vals in axes
                ],
            }
            for name, (_, axes, unit, desc) in tables.items()
        },
        "provenance": provenance,
    }
    arrays = {name: np.asarray(v, dtype=np.float64) for name, (v, _, _, _) in tables.items()}
    extras = {f"_scatter_{k}": v for k, v in scatter.items()}
    extras.update({f"_transfer_{k}": v for k, v in transfer.items()})

    def writer(f: Any) -> None:
        np.savez_compressed(f, **{**arrays, **extras})

    out.mkdir(parents=True, exist_ok=True)
    # tables.npz first, lut.json last: a reader never sees a manifest without its tables.
    write_bytes_with(out / "tables.npz", writer)
    write_json(out / "lut.json", manifest)
    summary = _summary(plan, tables, stats, failed)
    write_json(out / "summary.json", summary)
    from insitu.tech.lut import adc_table_from_lut

    nominal_t = 27.0 if 27.0 in temps else temps[0]
    try:
        th, lv = adc_table_from_lut(out, plan.bits, corners[0], nominal_t)
        write_json(
            out / "adc_table.json",
            {
                "thresholds": list(th),
                "levels": list(lv),
                "note": f"from {out}/lut.json at {corners[0]}, {nominal_t} C; ADC range {m}",
            },
        )
    except (ValueError, KeyError) as exc:
        summary["adc_table_error"] = str(exc)
    return summary


def _plain(v: Any) -> Any:
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    return v


def _binned(x: np.ndarray, y: np.ndarray, full: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and spread of y per integer x in 0..full; gaps linearly interpolated."""
    xi = np.rint(x).astype(int)
    cnt = np.bincount(xi, minlength=full + 1)[: full + 1]
    tot = np.bincount(xi, weights=y, minlength=full + 1)[: full + 1]
    have = cnt > 0
    grid = np.arange(full + 1)
    mean = np.interp(grid, grid[have], tot[have] / cnt[have])
    top = int(grid[have].max())
    if top < full:
        # Beyond the largest sum seen: continue with the slope of the top quarter of the data.
        sel = x >= 0.75 * top
        slope = np.polyfit(x[sel], y[sel], 1)[0] if sel.sum() > 2 else 1.0
        mean[top + 1 :] = mean[top] + slope * (grid[top + 1 :] - top)
    resid = y - np.interp(x, grid, mean)
    # Spread in 16 bands of sums, so it can grow with the sum (IR drop, mismatch).
    bands = np.minimum((x / max(full, 1) * 16).astype(int), 15)
    std_b = np.array(
        [
            np.sqrt(np.mean(resid[bands == b] ** 2)) if (bands == b).any() else np.nan
            for b in range(16)
        ]
    )
    centers = (np.arange(16) + 0.5) / 16 * full
    ok = np.isfinite(std_b)
    std = np.interp(grid, centers[ok], std_b[ok]) if ok.any() else np.zeros(full + 1)
    return mean, std


def _summary(
    plan: Plan, tables: dict[str, Any], stats: SweepStats, failed: list[Any]
) -> dict[str, Any]:
    def tab(name: str) -> np.ndarray:
        return np.asarray(tables[name][0])

    corners, temps = list(plan.st.corners), list(plan.st.temperatures)
    ci = 0
    ti = temps.index(27.0) if 27.0 in temps else 0
    ss = tab("device_ss")[ci, ti]
    return {
        "points": stats.total,
        "cached": stats.cached,
        "computed": stats.computed,
        "failed": stats.failed,
        "retried": stats.retried,
        "seconds": round(stats.seconds, 2),
        "simulation_seconds": round(stats.sim_seconds, 2),
        "nominal": {"corner": corners[ci], "temperature": temps[ti]},
        "nmos_ss_mv_dec": float(ss[0]),
        "pmos_ss_mv_dec": float(ss[1]),
        "nmos_vth_v": float(tab("device_vth")[ci, ti, 0]),
        "column_error_rms": float(tab("column_error_rms")[ci, ti]),
        "column_error_max": float(tab("column_error_max")[ci, ti]),
        "column_read_delay_s": float(tab("column_read_delay")[ci, ti]),
        "adc_missing_codes": float(tab("adc_missing_codes")[ci, ti, 0]),
        "adc_monotonic": bool(tab("adc_monotonic")[ci, ti, 0] == 1),
        "adc_dnl_max_lsb": float(np.nanmax(np.abs(tab("adc_dnl")[ci, ti, 0]))),
        "adc_inl_max_lsb": float(np.nanmax(np.abs(tab("adc_inl")[ci, ti, 0]))),
        "adc_energy_pj": float(tab("adc_energy")[ci, ti, 0] * 1e12),
        "adc_delay_ns": float(tab("adc_delay")[ci, ti, 0] * 1e9),
        "failed_points": failed,
    }


def clean_cache(out: Path) -> None:
    shutil.rmtree(out / "cache", ignore_errors=True)


def summary_json(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / "summary.json").read_text())
    return data
