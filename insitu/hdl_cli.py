"""``insitu hdl``: generate the chip's Verilog, synthesize it, and take it to an FPGA."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from . import config
from .algo.plan import make_plan

hdl_app = typer.Typer(no_args_is_help=True, help="Generate, synthesize and place the chip RTL.")
out = Console()


def chip_params(dp: config.DesignPoint, batch: int | None = None) -> Any:
    """The hardware parameters of a design point (its initial integer plan, full-scale ADC
    unless calibrated later through the host port)."""
    from .hdl.params import ChipParams, HardwareError

    try:
        return ChipParams.from_design(dp, make_plan(dp).to_dict(), batch=batch)
    except HardwareError as exc:
        raise config.DesignError(str(exc)) from None


def _generated(folder: Path) -> tuple[Path, str]:
    man = folder / "manifest.json"
    if not man.is_file():
        raise config.DesignError(
            f"{folder}: no manifest.json (run `insitu hdl generate DESIGN --out {folder}` first)"
        )
    top = json.loads(man.read_text(encoding="utf-8"))["top"]
    return folder / f"{top}.v", top


@hdl_app.command("generate")
def generate(
    design: Annotated[str, typer.Argument(help="Preset name or design-point file.")] = "digits",
    set_: Annotated[list[str] | None, typer.Option("--set", "-s", help="a.b.c=value")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("build/rtl"),
    batch: Annotated[
        int | None, typer.Option(help="Samples the batch buffers hold (default: batch_size).")
    ] = None,
) -> None:
    """Write Verilog, a FuseSoC .core file and manifest.json for a design point."""
    from .hdl.export import generate as gen

    dp = config.load(design, set_ or [])
    p = chip_params(dp, batch)
    g = gen(p, out_dir)
    t = Table(title=f"{dp.name}: {g.verilog}")
    t.add_column("layer")
    t.add_column("fan-in x fan-out")
    t.add_column("subarrays (rows x cols)")
    t.add_column("tiles (each: column blocks x row blocks)")
    for lay in p.layers:
        chain = f", chains of {lay.tile_chain}" if lay.tile_chain > 1 else ""
        t.add_row(
            str(lay.index),
            f"{lay.fan_in} x {lay.fan_out}",
            f"{lay.subarrays} ({lay.row_blocks} x {lay.col_blocks})",
            f"{lay.tiles} ({lay.tile_col_blocks} x {lay.tile_row_blocks}{chain})",
        )
    out.print(t)
    out.print(
        f"rule {p.rule}, WGU {p.wgu}, {p.total_subarrays} subarrays of {p.rows}x{p.cols}, "
        f"{p.adcs_per_subarray} ADCs each, {p.tiles} tiles; generated in {g.seconds:.1f} s"
    )


@hdl_app.command("synth")
def synth(
    folder: Annotated[Path, typer.Argument(help="A folder written by `insitu hdl generate`.")],
    target: Annotated[str, typer.Option(help="generic, ice40 or ecp5")] = "generic",
) -> None:
    """Synthesize with yosys: cells per block, latches, and area (generic) or LUT/FF/BRAM/DSP."""
    from .hdl.synth import synthesize

    if target not in ("generic", "ice40", "ecp5"):
        raise config.DesignError(
            f"--target = {target!r} is not allowed: must be generic, ice40 or ecp5"
        )
    v, top = _generated(folder)
    rep = synthesize([v], top, folder / "synth", target)  # type: ignore[arg-type]
    t = Table(title=f"yosys {target}: {top}")
    t.add_column("block")
    t.add_column("cells", justify="right")
    for mod, n in sorted(rep.module_cells.items(), key=lambda kv: -kv[1]):
        t.add_row(mod, str(n))
    out.print(t)
    out.print(
        f"total cells {rep.total_cells}, latches {rep.latches}, LUTs {rep.luts}, FFs {rep.ffs}, "
        f"BRAM {rep.brams}, DSP {rep.dsps}, area {rep.area} {rep.area_unit or ''}"
    )
    out.print(f"report: {rep.report_path}")
    if rep.latches:
        raise typer.Exit(1)


@hdl_app.command("area")
def area(
    folder: Annotated[Path, typer.Argument(help="A folder written by `insitu hdl generate`.")],
    node: Annotated[
        str | None, typer.Option(help="Scale to this tech node (default: the cells' 45 nm).")
    ] = None,
) -> None:
    """Area of every digital block from yosys onto the cited standard cells (tech/cells).

    One module per class of identical modules is synthesized (every WGU lane is one class);
    the subarray, a stand-in for the analog array and ADCs, is left out. Writes area.json."""
    from .cosim.area import area_cache
    from .hdl.asic_area import synthesize_area
    from .hdl.export import SUBARRAY
    from .hdl.synth import atomic_write_text
    from .tech.loader import list_nodes, load_node

    if node is not None and node not in list_nodes():
        raise config.DesignError(f"--node = {node!r}: allowed: {', '.join(list_nodes())}")
    scale = load_node(node).logic_area_scale if node else 1.0
    v, top = _generated(folder)
    res = synthesize_area(
        v.read_text(encoding="utf-8"), top, standins=[SUBARRAY], cache=area_cache()
    )
    where = node or f"{res.node_nm:g} nm"
    t = Table(title=f"{top}: {res.library} cells, {where} ({res.yosys})")
    for col in ("block class", "instances", "cells", "um^2 each", "um^2 all", "RAM bits"):
        t.add_column(col, justify="left" if col == "block class" else "right")
    mods = sorted(res.modules.values(), key=lambda m: -m.area_um2 * m.instances)
    for m in mods:
        t.add_row(
            m.name,
            str(m.instances),
            str(sum(m.cells.values())),
            f"{m.area_um2 * scale:,.1f}",
            f"{m.area_um2 * m.instances * scale:,.1f}",
            str(m.ram_bits * m.instances),
        )
    out.print(t)
    out.print(
        f"logic {res.logic_um2 * scale * 1e-6:.4f} mm^2 at {where}, RAM {res.ram_bits} bits; "
        f"synthesis {res.seconds:.0f} s (0: cached)"
    )
    atomic_write_text(folder / "area.json", json.dumps(res.to_json(), indent=1) + "\n")
    out.print(f"report: {folder / 'area.json'}")


@hdl_app.command("fpga")
def fpga(
    folder: Annotated[Path, typer.Argument(help="A folder written by `insitu hdl generate`.")],
    target: Annotated[str, typer.Option(help="ice40-up5k or ecp5-25f")] = "ice40-up5k",
    freq_mhz: Annotated[float | None, typer.Option("--freq", help="Clock target, MHz.")] = None,
    wrap_io: Annotated[
        bool, typer.Option(help="Scan-chain I/O shell so the ports fit the package.")
    ] = True,
) -> None:
    """Place and route with nextpnr: utilization, post-route fmax and a bitstream."""
    from .hdl.fpga import place_and_route

    if target not in ("ice40-up5k", "ecp5-25f"):
        raise config.DesignError(
            f"--target = {target!r} is not allowed: must be ice40-up5k or ecp5-25f"
        )
    v, top = _generated(folder)
    rep = place_and_route(
        [v],
        top,
        folder / f"fpga-{target}",
        target,  # type: ignore[arg-type]
        freq_mhz=freq_mhz,
        wrap_io=wrap_io,
    )
    t = Table(title=f"nextpnr {target}: {top}")
    t.add_column("resource")
    t.add_column("used / available", justify="right")
    for name, (used, avail) in sorted(rep.utilization.items()):
        if used:
            t.add_row(name, f"{used} / {avail}")
    out.print(t)
    out.print(
        f"fmax {rep.fmax_mhz} MHz (target {rep.freq_target_mhz}, met: {rep.timing_met}), "
        f"bitstream {rep.bitstream}"
    )


@hdl_app.command("lint")
def lint(
    folder: Annotated[Path, typer.Argument(help="A folder written by `insitu hdl generate`.")],
) -> None:
    """Verilator --lint-only -Wall with the documented waivers; exit 1 on any warning."""
    from .hdl.lint import lint_command

    _generated(folder)
    code = lint_command(folder)
    if code:
        raise typer.Exit(code)
