"""Benchmark of the analog characterization (ngspice via PySpice), figures for docs/analog.md.

Prints, each from a simulation run here:
- the default characterization (64-row column, 4-bit flash ADC, tt/ff/ss x -40/27/85 C) cold
  with 1 worker and with 2 workers (fresh caches), their speed-up, and the cached rerun;
- subthreshold slope, Vth, Ion, Ioff of the default cards next to GF180MCU (when present);
- column error against the ideal dot product (rms, max; in LSB of the partial sum) for
  N = 32 and 128 rows, with no wire resistance and with 5 ohm per cell segment;
- ADC monotonicity, missing codes, INL/DNL, energy and time per conversion (flash and SAR).

    python bench/analog_characterize.py [--out runs/bench-analog] [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import console, fail
from rich.table import Table

from insitu import config
from insitu.analog import engine
from insitu.analog.characterize import Settings, characterize
from insitu.analog.pdk import find_pdk
from insitu.analog.validate import device_figures
from insitu.atomic import write_json

DEFAULT = ["array.rows=64", "array.adc_bits=4"]


def timed(dp: config.DesignPoint, st: Settings, out: Path, workers: int) -> tuple[float, Any]:
    t0 = time.perf_counter()
    s = characterize(dp, st, out, workers)
    return time.perf_counter() - t0, s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("runs/bench-analog"))
    ap.add_argument("--quick", action="store_true", help="Skip the 1-worker cold run.")
    args = ap.parse_args()
    why = engine.available()
    if why:
        fail(f"ngspice unavailable: {why}")
    out: Path = args.out
    results: dict[str, Any] = {}

    # 1. Default characterization: cold with 2 and 1 workers (fresh caches), then cached.
    dp = config.load("digits", DEFAULT)
    st = Settings()
    t = Table(title="default characterization: 64-row column, 4-bit flash, 3 corners x 3 temps")
    for col in ("run", "points", "computed", "wall (s)", "simulation (s, all workers)"):
        t.add_column(col, justify="right")
    walls = {}
    for w in (2,) if args.quick else (2, 1):
        d = out / f"default-w{w}"
        shutil.rmtree(d, ignore_errors=True)
        wall, s = timed(dp, st, d, w)
        walls[w] = wall
        t.add_row(
            f"cold, {w} worker(s)",
            str(s["points"]),
            str(s["computed"]),
            f"{wall:.1f}",
            f"{s['simulation_seconds']:.1f}",
        )
    wall, s = timed(dp, st, out / "default-w2", 2)
    t.add_row("cached rerun", str(s["points"]), str(s["computed"]), f"{wall:.2f}", "0")
    console.print(t)
    if 1 in walls:
        console.print(
            f"speed-up 2 workers over 1: {walls[1] / walls[2]:.2f}x (load average "
            f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
        )
    results["default"] = {"walls": walls, "cached_s": wall, "summary": s}

    # 2. Device figures next to GF180MCU.
    t = Table(title="devices at 27 C, tt, W = 1 um, L = minimum")
    for col in ("PDK", "device", "Vth (V)", "SS (mV/dec)", "Ion (uA/um)", "Ioff (pA/um)"):
        t.add_column(col, justify="right")
    rows = device_figures("generic180", 27.0)
    if find_pdk("gf180mcu") is not None:
        rows += device_figures("gf180mcu", 27.0)
    else:
        console.print("[yellow]GF180MCU not found (PDK_ROOT, ../shared/pdk/gf180mcu): skipped[/]")
    for r in rows:
        t.add_row(
            r["pdk"],
            r["device"],
            f"{r['vth']:.3f}",
            f"{r['ss']:.1f}",
            f"{r['ion'] * 1e6:.0f}",
            f"{r['ioff'] * 1e12:.3g}",
        )
    console.print(t)
    results["devices"] = rows

    # 3. Column error vs the ideal dot product.
    t = Table(title="column error vs ideal partial sum (tt, 27 C, LSB = one cell level)")
    for col in ("device", "rows", "wire R/segment", "rms", "max", "gain at full scale"):
        t.add_column(col, justify="right")
    col_res = []
    one = Settings(corners=("tt",), temperatures=(27.0,))
    for device in ("rram", "fefet"):
        for n in (32, 128):
            for wr in (0.0, 5.0):
                dpn = config.load(
                    "digits", [f"array.rows={n}", "array.adc_bits=4", f"array.device={device}"]
                )
                d = out / f"column-{device}-{n}-{wr:g}"
                s = characterize(dpn, one.model_copy(update={"wire_r_ohm": wr}), d, 2)
                from insitu.tech.lut import Lut

                mean = (
                    Lut.open(d).table("column_transfer_mean").interp(corner="tt", temperature=27.0)
                )
                gain = float(mean[-1] / (len(mean) - 1))
                t.add_row(
                    device,
                    str(n),
                    f"{wr:g}",
                    f"{s['column_error_rms']:.4f}",
                    f"{s['column_error_max']:.4f}",
                    f"{gain:.4f}",
                )
                col_res.append(
                    {
                        "device": device,
                        "rows": n,
                        "wire_r": wr,
                        "gain": gain,
                        "rms": s["column_error_rms"],
                        "max": s["column_error_max"],
                    }
                )
    console.print(t)
    results["column"] = col_res

    # 4. ADCs.
    t = Table(title="4-bit ADCs, tt, 27 C (nominal; MC: 8 mismatch samples)")
    for col in (
        "ADC",
        "monotonic",
        "missing",
        "DNL max",
        "INL max",
        "MC INL max",
        "pJ/conv",
        "ns/conv",
    ):
        t.add_column(col, justify="right")
    adc_res = []
    for kind in ("flash", "sar"):
        d = out / f"adc-{kind}"
        stk = Settings(corners=("tt",), temperatures=(27.0,), adc=kind, mc=8)  # type: ignore[arg-type]
        s = characterize(dp, stk, d, 2)
        from insitu.tech.lut import Lut

        inl = Lut.open(d).table("adc_inl").interp(corner="tt", temperature=27.0)
        mc_inl = float(np.nanmax(np.abs(inl[1:])))
        t.add_row(
            kind,
            str(s["adc_monotonic"]),
            f"{s['adc_missing_codes']:.0f}",
            f"{s['adc_dnl_max_lsb']:.3f}",
            f"{s['adc_inl_max_lsb']:.3f}",
            f"{mc_inl:.3f}",
            f"{s['adc_energy_pj']:.2f}",
            f"{s['adc_delay_ns']:.1f}",
        )
        adc_res.append(
            {
                "adc": kind,
                **{k: v for k, v in s.items() if k.startswith("adc_")},
                "mc_inl_max": mc_inl,
            }
        )
    console.print(t)
    results["adc"] = adc_res
    write_json(out / "results.json", results)
    console.print(f"-> {out / 'results.json'}")


if __name__ == "__main__":
    main()
