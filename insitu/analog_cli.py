"""``insitu analog``: ngspice characterization of columns and ADCs into LUTs, plots, PDK checks."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from . import config

analog_app = typer.Typer(
    no_args_is_help=True, help="ngspice characterization of crossbar columns and ADCs into LUTs."
)
out = Console()
err = Console(stderr=True)


def _floats(text: str, what: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise config.DesignError(
            f"{what} = {text!r} is not allowed: must be comma-separated numbers"
        ) from None


def _engine_ready() -> None:
    from .analog import engine

    why = engine.available()
    if why is not None:
        raise config.DesignError(f"ngspice is not available: {why}")


@analog_app.command("characterize")
def characterize_cmd(
    design: Annotated[str, typer.Argument(help="Preset name or design-point file.")] = "digits",
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="LUT folder.")] = Path("runs/analog"),
    set_: Annotated[list[str] | None, typer.Option("--set", "-s", help="a.b.c=value")] = None,
    corners: Annotated[str, typer.Option(help="Comma-separated corners.")] = "tt,ff,ss",
    temps: Annotated[str, typer.Option("--temps", help="Temperatures (C).")] = "-40,27,85",
    mc: Annotated[int, typer.Option("--mc", help="Monte Carlo mismatch samples.")] = 0,
    workers: Annotated[int, typer.Option("--workers", "-j", help="Processes.")] = 2,
    pdk: Annotated[str, typer.Option(help="PDK name or folder with pdk.yaml.")] = "generic180",
    adc: Annotated[str, typer.Option(help="flash or sar.")] = "flash",
    adc_range: Annotated[
        int | None, typer.Option(help="Partial sum at ADC full scale (default rows x max cell).")
    ] = None,
    wire_r: Annotated[
        float | None, typer.Option(help="Bitline wire R per cell (ohm; default node x pitch).")
    ] = None,
    patterns: Annotated[int, typer.Option(help="Stored-level patterns per column.")] = 6,
    seed: Annotated[int, typer.Option(help="Seed of patterns and mismatch.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Sweep corners x temperatures (x Monte Carlo) in ngspice and write the LUT folder."""
    from pydantic import ValidationError

    from .analog.characterize import Settings

    dp = config.load(design, set_ or [])
    if not 1 <= workers <= 64:
        raise config.DesignError(f"--workers = {workers} is not allowed: must be in 1..64")
    try:
        st = Settings(
            pdk=pdk,
            corners=tuple(c.strip() for c in corners.split(",") if c.strip()),
            temperatures=_floats(temps, "--temps"),
            mc=mc,
            adc=adc,  # type: ignore[arg-type]
            adc_range=adc_range,
            wire_r_ohm=wire_r,
            patterns=patterns,
            seed=seed,
        )
    except ValidationError as exc:
        msgs = "; ".join(
            f"--{'.'.join(str(p) for p in e['loc']).replace('_', '-')} = {e.get('input')!r}: "
            f"{e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise config.DesignError(msgs) from None
    _engine_ready()
    t0 = time.perf_counter()
    summary = characterize_with_progress(dp, st, out_dir, workers, quiet=quiet)
    wall = time.perf_counter() - t0
    _print_summary(summary, out_dir, wall)


def characterize_with_progress(
    dp: config.DesignPoint, st: Any, out_dir: Path, workers: int, *, quiet: bool = False
) -> dict[str, Any]:
    """:func:`insitu.analog.characterize.characterize` with a progress bar over the points."""
    from .analog.characterize import characterize

    if quiet:
        return characterize(dp, st, out_dir, workers)
    cols = (
        TextColumn("[bold]characterize[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*cols, console=err, transient=False) as bar:
        task = bar.add_task("sweep", total=None, info="")

        def prog(o: Any, s: Any, total: int) -> None:
            lab = o.point.labels
            info = (
                f"{lab.get('what')} {lab.get('corner', '')} {lab.get('temperature', '')}"
                f"  cached {s.cached} failed {s.failed}"
            )
            bar.update(task, total=total, advance=1, info=info)

        return characterize(dp, st, out_dir, workers, prog)


def _print_summary(s: dict[str, Any], out_dir: Path, wall: float) -> None:
    t = Table(title=f"characterization -> {out_dir}")
    t.add_column("figure")
    t.add_column(f"{s['nominal']['corner']}, {s['nominal']['temperature']:g} C", justify="right")
    rows = [
        ("NMOS subthreshold slope", f"{s['nmos_ss_mv_dec']:.1f} mV/dec"),
        ("PMOS subthreshold slope", f"{s['pmos_ss_mv_dec']:.1f} mV/dec"),
        ("NMOS Vth (lin, 100 nA W/L)", f"{s['nmos_vth_v']:.3f} V"),
        (
            "column error rms / max",
            f"{s['column_error_rms']:.4f} / {s['column_error_max']:.4f} LSB",
        ),
        ("column read delay", f"{s['column_read_delay_s'] * 1e9:.1f} ns"),
        ("ADC monotonic / missing codes", f"{s['adc_monotonic']} / {s['adc_missing_codes']:.0f}"),
        ("ADC DNL / INL max", f"{s['adc_dnl_max_lsb']:.3f} / {s['adc_inl_max_lsb']:.3f} LSB"),
        ("ADC energy / conversion", f"{s['adc_energy_pj']:.2f} pJ"),
        ("ADC conversion time", f"{s['adc_delay_ns']:.1f} ns"),
    ]
    for r in rows:
        t.add_row(*r)
    out.print(t)
    out.print(
        f"{s['points']} points: {s['cached']} cached, {s['computed']} computed, "
        f"{s['failed']} failed, {s['retried']} needed retries; {wall:.1f} s"
    )
    for f in s.get("failed_points", []):
        out.print(f"[yellow]failed[/] {f}")


@analog_app.command("plot")
def plot_cmd(
    folder: Annotated[Path, typer.Argument(help="A LUT folder from `insitu analog characterize`.")],
) -> None:
    """Write iv.png, column.png and adc.png into the LUT folder."""
    from .analog.plot import plot_all
    from .tech.lut import LutError

    try:
        files = plot_all(folder)
    except LutError as exc:
        raise config.DesignError(str(exc)) from None
    for f in files:
        out.print(str(f))


@analog_app.command("validate")
def validate_cmd(
    reference: Annotated[str, typer.Option(help="PDK to compare the default cards with.")] = (
        "gf180mcu"
    ),
    temp: Annotated[float, typer.Option(help="Temperature (C).")] = 27.0,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Vth, subthreshold slope, Ion and Ioff of the default cards next to a reference PDK."""
    from .analog.pdk import PdkError
    from .analog.validate import compare

    _engine_ready()
    try:
        rows = compare("generic180", reference, temp)
    except PdkError as exc:
        raise config.DesignError(str(exc)) from None
    if as_json:
        out.print_json(json.dumps(rows))
        return
    t = Table(title=f"default cards vs {reference} at {temp:g} C (tt, W = 1 um, L = minimum)")
    for col in ("PDK", "device", "Vth (V)", "SS (mV/dec)", "Ion (uA/um)", "Ioff (pA/um)", "VDD"):
        t.add_column(col)
    for r in rows:
        t.add_row(
            r["pdk"],
            r["device"],
            f"{r['vth']:.3f}",
            f"{r['ss']:.1f}",
            f"{r['ion'] * 1e6:.0f}",
            f"{r['ioff'] * 1e12:.3g}",
            f"{r['vdd']:g}",
        )
    out.print(t)
