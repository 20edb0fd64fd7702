"""``insitu demo``: the whole product on embedded data, from SPICE to RTL to a report.

On the ``digits-chip`` design point (a 64-16-10 MLP on scikit-learn's digits, 32x32 RRAM
subarrays, 5-bit ADCs) it:

1. characterizes the column and the flash ADC in ngspice (nominal corner; cached),
2. generates and lints the chip's Verilog for BP and for DFA,
3. trains BP and DFA with every sample through the generated RTL (Verilator), the ADC's
   thresholds and costs taken from the LUT of step 1 (one source of truth from SPICE to RTL),
4. sweeps ADC bits x learning rule x seeds on the golden model (the same integer arithmetic
   as the RTL, without the compile),
5. writes the HTML report of both sweeps.

Every step keeps its results in the output folder and skips what is already done, so an
interrupted demo resumes where it stopped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from . import config
from .atomic import write_text

__all__ = ["DEMO_DESIGN", "DemoResult", "run_demo"]

DEMO_DESIGN = "digits-chip"
RULES = ["bp", "dfa"]
ADC_BITS = [2, 3, 4, 5, 6]
SEEDS = [0, 1]


@dataclass
class DemoResult:
    folder: Path
    report: Path
    seconds: dict[str, float] = field(default_factory=dict)
    cosim: dict[str, dict[str, Any]] = field(default_factory=dict)


def _step(console: Console, n: int, text: str) -> float:
    console.rule(f"[bold]{n}/5[/] {text}", align="left")
    return time.perf_counter()


def characterize_step(
    dp: config.DesignPoint, out: Path, workers: int, quiet: bool
) -> dict[str, Any]:
    """ngspice column + ADC at the nominal corner, ADC full scale at one LSB per unit."""
    from .analog.characterize import Settings
    from .analog_cli import characterize_with_progress

    # The contract's 5-bit ADC resolves partial sums 0..31 one unit per code: a LUT with that
    # full scale gives the ADC thresholds of the calibrated uniform ADC, now from ngspice.
    st = Settings(corners=("tt",), temperatures=(27.0,), adc_range=2**dp.array.adc_bits - 1)
    return characterize_with_progress(dp, st, out, workers, quiet=quiet)


def generate_step(sets: list[str], out: Path, console: Console) -> None:
    from .cosim.run import chip_for
    from .hdl.export import generate
    from .hdl.lint import lint
    from .sweep_spec import point_key

    for rule in RULES:
        dp = config.load(DEMO_DESIGN, [*sets, f"learning.rule={rule}"])
        folder = out / f"rtl-{rule}"
        stamp = folder / ".demo-step"
        key = point_key(dp, "generate+lint", {})
        kept = stamp.read_text().splitlines() if stamp.exists() else []
        if len(kept) == 2 and kept[0] == key and (folder / "insitu_chip.v").exists():
            console.print(f"  {rule.upper()}: {kept[1]} (kept)", highlight=False)
            continue
        p = chip_for(dp)
        g = generate(p, folder)
        rep = lint(g.verilog, "insitu_chip")
        state = "lint clean" if rep.clean else f"lint: {rep.counts()}"
        line = (
            f"{g.verilog} ({g.verilog.stat().st_size / 1e3:.0f} kB, "
            f"{p.total_subarrays} subarrays, WGU {p.wgu}), generated in {g.seconds:.1f} s, "
            f"{state} (verilator -Wall, {rep.seconds:.1f} s)"
        )
        write_text(stamp, f"{key}\n{line}\n")
        console.print(f"  {rule.upper()}: {line}", highlight=False)


def _sweep(spec: Any, out: Path, workers: int, quiet: bool) -> Any:
    from .sweep import run_sweep
    from .sweep_cli import SweepProgress

    prog = SweepProgress(spec.name, f"a local cluster of {workers} workers", quiet=quiet)
    try:
        return run_sweep(
            spec,
            out,
            workers=workers,
            on_start=prog.on_start,
            on_point=prog.on_point,
            on_submit=prog.watch,
        )
    finally:
        prog.stop()


def run_demo(
    out: str | Path = "runs/demo",
    *,
    workers: int = 2,
    epochs: int | None = None,
    quiet: bool = False,
    console: Console | None = None,
) -> DemoResult:
    """Run the five steps into ``out``; returns where the report is and what each step took."""
    from .analog import engine
    from .sweep_spec import SweepSpec
    from .sweep_store import Store

    console = console or Console(stderr=True)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    sets = {} if epochs is None else {"learning.epochs": epochs}
    dp = config.load(DEMO_DESIGN, [f"{k}={v}" for k, v in sets.items()])
    res = DemoResult(folder=folder, report=folder / "report.html")

    t = _step(console, 1, "characterize the column and ADC in ngspice (cached)")
    lut = folder / "analog"
    why = engine.available()
    if why is not None:
        raise config.DesignError(f"ngspice is needed for the demo's characterization: {why}")
    s = characterize_step(dp, lut, workers, quiet)
    console.print(
        f"  {s['points']} ngspice points ({s['cached']} cached): column error "
        f"{s['column_error_rms']:.3f} LSB rms, read {s['column_read_delay_s'] * 1e9:.0f} ns; "
        f"ADC DNL {s['adc_dnl_max_lsb']:.3f} LSB, {s['adc_energy_pj']:.1f} pJ and "
        f"{s['adc_delay_ns']:.1f} ns per conversion -> {lut}",
        highlight=False,
    )
    res.seconds["characterize"] = time.perf_counter() - t

    lut_sets = {"array.adc_model": "table", "array.adc_table": str(lut.resolve())}
    t = _step(console, 2, "generate and lint the chip's Verilog (BP and DFA)")
    generate_step([f"{k}={v}" for k, v in {**sets, **lut_sets}.items()], folder, console)
    res.seconds["generate"] = time.perf_counter() - t

    t = _step(
        console,
        3,
        "train BP and DFA with every sample through the RTL (Verilator; the first build "
        "takes a few minutes and is cached)",
    )
    cosim = SweepSpec.model_validate(
        {
            "name": "demo-cosim",
            "description": "BP and DFA on digits-chip, every training sample through the "
            "generated RTL, ADC from the ngspice LUT",
            "base": DEMO_DESIGN,
            "command": "cosim",
            "set": {**sets, **lut_sets},
            "axes": {"learning.rule": RULES},
        }
    )
    r = _sweep(cosim, folder / "cosim", workers, quiet)
    for row in Store(folder / "cosim").rows("ok"):
        assert row.summary is not None
        res.cosim[row.design["learning"]["rule"]] = row.summary
        sm = row.summary
        console.print(
            f"  {row.design['learning']['rule'].upper()}: test accuracy "
            f"{sm['test_accuracy']:.2%}, {sm['rtl']['rtl_samples']:,} samples through the RTL, "
            f"{sm['mismatches']} mismatches, {sm['latency_s']['per_sample']['total'] * 1e6:.2f}"
            f" us and {sm['energy_j']['per_sample'] * 1e9:.1f} nJ per sample, "
            f"{sm['area_mm2']['total']:.3f} mm^2",
            highlight=False,
        )
    if r.failed:
        raise config.DesignError(f"{r.failed} co-simulation point(s) failed: see the log above")
    res.seconds["cosim"] = time.perf_counter() - t

    t = _step(console, 4, "sweep ADC bits x rule x seed on the golden model")
    adc = SweepSpec.model_validate(
        {
            "name": "demo-adc",
            "description": "accuracy against ADC bits, BP vs DFA, on the integer golden model",
            "base": DEMO_DESIGN,
            "set": sets,
            "axes": {"learning.rule": RULES, "array.adc_bits": ADC_BITS},
            "seeds": SEEDS,
        }
    )
    r = _sweep(adc, folder / "adc", workers, quiet)
    res.seconds["adc sweep"] = time.perf_counter() - t

    t = _step(console, 5, "write the report")
    from .report import write_report

    res.report = Path(write_report([folder / "cosim", folder / "adc"], res.report))
    res.seconds["report"] = time.perf_counter() - t
    return res
