"""``insitu cosim``: training with the generated chip in the loop, and its cost tables.

Owns the command line of the co-simulation layer: options, the progress bar (samples through
the RTL per second), the mismatch report on the terminal, ``--explain-costs`` and the hardware
table that ``insitu compare`` adds for co-simulated runs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import config
from .cli_args import DesignArg, SetOpt

err = Console(stderr=True, soft_wrap=True)
out = Console()


def explain_costs(dp: config.DesignPoint) -> None:
    """Print every per-event energy and per-block area with its formula and sources."""
    from .cosim.costs import CostModel
    from .cosim.metrics import clock
    from .cosim.run import chip_for

    p = chip_for(dp)
    model = CostModel(dp, p)
    wide = out if out.is_terminal else Console(width=200)
    table = Table(
        title=f"per-event energies and block areas: {dp.name}, node {dp.tech.node}, "
        f"device {dp.array.device}",
        show_lines=True,
    )
    for col in ("kind", "counter / block", "component", "value", "unit", "formula", "sources"):
        table.add_column(col, overflow="fold")
    for row in model.explain():
        table.add_row(
            row["kind"],
            row["counter"],
            row["component"],
            f"{row['value']:.4g}",
            row["unit"],
            row["formula"],
            "\n".join(row["sources"]),
        )
    wide.print(table)
    period, why = clock(dp, model)
    wide.print(f"clock period {period * 1e9:.3g} ns, set by {why}")


def cosim(
    design: str,
    sets: list[str],
    out_dir: Path,
    *,
    rtl_every: int,
    resume: bool,
    engine: str,
    quiet: bool,
    explain: bool,
    weight_check_every: int,
    fast_build: bool = False,
    subarray_core: str = "auto",
    instances: int = 1,
    pgo: bool = False,
    area: str = "synth",
    checkpoint_every: int = 0,
) -> None:
    """The body of ``insitu cosim`` (registered in :mod:`insitu.cli`)."""
    # the chip computes the integer contract: hardware mode unless the user asked otherwise
    # (an explicit learning.mode=float is refused by run_cosim with the reason)
    if not any(x.split("=", 1)[0].strip() == "learning.mode" for x in sets):
        sets = ["learning.mode=hardware", *sets]
    from .algo.plan import PlanError

    dp = config.load(design, sets)
    try:
        if explain:
            explain_costs(dp)
            return
        kwargs: dict[str, Any] = {
            "rtl_every": rtl_every,
            "resume": resume,
            "engine": engine,
            "weight_check_every": weight_check_every,
            "fast_build": fast_build,
            "subarray_core": subarray_core,
            "instances": instances,
            "pgo": pgo,
            "area": area,
            "checkpoint_every": checkpoint_every,
        }
        _run(dp, design, out_dir, quiet, kwargs)
    except PlanError as exc:  # an ADC table file or LUT that cannot be used
        raise config.DesignError(str(exc)) from None


def _run(
    dp: config.DesignPoint, design: str, out_dir: Path, quiet: bool, kwargs: dict[str, Any]
) -> None:
    from .cosim.rtl_model import Mismatch
    from .cosim.run import run_cosim

    engine = kwargs["engine"]
    try:
        summary = run_cosim(dp, out_dir, **kwargs) if quiet else _with_progress(dp, out_dir, kwargs)
    except Mismatch as exc:
        err.print(f"[red]mismatch:[/] {exc}", highlight=False, markup=True)
        err.print(f"the run stopped; the diff is in {out_dir / 'mismatch.txt'}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err.print(
            f"[yellow]interrupted[/]: finished epochs are saved; continue with "
            f"`insitu cosim {design} --out {out_dir} --resume`"
        )
        raise typer.Exit(130) from None
    lat = summary["latency_s"]["per_sample"]
    e = summary["energy_j"]
    out.print(
        f"[bold]{dp.learning.rule.upper()}[/] with the RTL in the loop ({engine}, subarray "
        f"cores: {summary['subarray_core']}): test accuracy "
        f"{summary['test_accuracy']:.2%}, {summary['rtl']['rtl_samples']:,} samples through the "
        f"RTL, {summary['mismatches']} mismatches; per sample "
        f"{summary['cycles']['per_sample']['forward']:.0f}/"
        f"{summary['cycles']['per_sample']['backward']:.0f}/"
        f"{summary['cycles']['per_sample']['update']:.0f} cycles (fwd/bwd/upd), "
        f"{lat['total'] * 1e6:.2f} us, {e['per_sample'] * 1e9:.2f} nJ; area "
        f"{summary['area_mm2']['total']:.3f} mm^2 -> {out_dir / 'summary.json'}"
    )


def _with_progress(dp: config.DesignPoint, out_dir: Path, kwargs: dict[str, Any]) -> Any:
    from .cosim.run import run_cosim

    columns = (
        TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(
            "acc {task.fields[acc]:.2%}  test {task.fields[test]}  {task.fields[rate]} samples/s"
            "{task.fields[rtl]}"
        ),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err, transient=False) as bar:
        task = bar.add_task(
            "cosim",
            total=None,
            epoch=0,
            epochs=dp.learning.epochs,
            acc=0.0,
            test="-",
            rate="-",
            rtl="",
        )
        t0 = [time.perf_counter()]  # restarted when training starts (after the model build)
        seen = [0, 0]  # samples at the epoch's start, batches so far in the epoch

        def on_status(msg: str) -> None:
            bar.console.print(f"[dim]{msg}[/]")
            t0[0] = time.perf_counter()

        def on_progress(ev: dict[str, Any]) -> None:
            if "rtl_samples" in ev:  # several instances: the golden model runs ahead
                dt = time.perf_counter() - t0[0]
                n = ev["rtl_samples"]
                rate = n / dt if dt > 0 else 0.0
                bar.update(task, rtl=f"  RTL checked {n:,} ({rate:,.0f}/s)")
                return
            if "epoch_done" in ev:
                bar.update(task, test=f"{ev['epoch_done']['test_accuracy']:.2%}")
                return
            n = ev["batch"] * dp.learning.batch_size
            dt = time.perf_counter() - t0[0]
            rate = (seen[0] + n) / dt if dt > 0 else 0.0
            if ev["batch"] == ev["batches"]:
                seen[0] += n
            bar.update(
                task,
                completed=ev["batch"],
                total=ev["batches"],
                epoch=ev["epoch"] + 1,
                acc=ev["train_accuracy"],
                rate=f"{rate:,.0f}",
            )

        return run_cosim(dp, out_dir, progress=on_progress, on_status=on_status, **kwargs)


def hardware_table(runs: list[tuple[str, dict[str, Any]]]) -> Table | None:
    """Latency, energy and area of the co-simulated runs among *runs* (None if there are none)."""
    rows = [(name, s) for name, s in runs if s.get("command") == "cosim"]
    if not rows:
        return None
    comps = sorted({c for _, s in rows for c in s["energy_j"]["by_component"]})
    areas = sorted({c for _, s in rows for c in s["area_mm2"]["by_component"]})
    table = Table(title="hardware (from the RTL's counters)")
    table.add_column("metric")
    for name, _ in rows:
        table.add_column(name, justify="right")

    def add(label: str, fn: Any) -> None:
        table.add_row(label, *(fn(s) for _, s in rows))

    def share(s: dict[str, Any], key: str, comp: str) -> str:
        part = s[key]["by_component"].get(comp, 0.0)
        return f"{100 * part / max(s[key]['total'], 1e-30):.1f}"

    add("rule", lambda s: s["design"]["learning"]["rule"])
    add("mismatches", lambda s: str(s["mismatches"]))
    for ph in ("forward", "backward", "update"):
        add(f"cycles/sample {ph}", lambda s, ph=ph: f"{s['cycles']['per_sample'][ph]:.0f}")
    add("latency/sample (us)", lambda s: f"{s['latency_s']['per_sample']['total'] * 1e6:.3f}")
    add("energy/sample (nJ)", lambda s: f"{s['energy_j']['per_sample'] * 1e9:.3f}")
    for c in comps:
        add(f"  energy {c} (%)", lambda s, c=c: share(s, "energy_j", c))
    add("area (mm^2)", lambda s: f"{s['area_mm2']['total']:.4f}")
    for c in areas:
        add(f"  area {c} (%)", lambda s, c=c: share(s, "area_mm2", c))
    add("TOPS/W", lambda s: f"{s['tops_per_w']:.3f}" if s.get("tops_per_w") else "-")
    return table


def cosim_command(
    design: DesignArg = "digits",
    set_: SetOpt = None,
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for checkpoints and summary.json.")
    ] = Path("runs/cosim"),
    rtl_every: Annotated[
        int,
        typer.Option(
            "--rtl-every", help="Run every K-th batch on the RTL, the rest on the golden model."
        ),
    ] = 1,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the folder's last checkpoint.")
    ] = False,
    engine: Annotated[
        str, typer.Option("--engine", help="verilator (compiled) or amaranth (tiny designs).")
    ] = "verilator",
    weight_check_every: Annotated[
        int,
        typer.Option(
            "--weight-check-every",
            help="Read back and compare all weights every N RTL batches.",
        ),
    ] = 50,
    explain_costs_: Annotated[
        bool,
        typer.Option(
            "--explain-costs", help="Print the per-event costs and their sources, then exit."
        ),
    ] = False,
    fast_build: Annotated[
        bool,
        typer.Option(
            "--fast-build",
            help="Compile the Verilator model without optimization: builds several times "
            "faster, simulates slower (short runs).",
        ),
    ] = False,
    subarray_core: Annotated[
        str,
        typer.Option(
            "--subarray-core",
            help="rtl: simulate each subarray's column sums and ADCs as RTL; model: a "
            "behavioural DPI-C model checked cycle for cycle against that RTL (the rest of the "
            "chip stays RTL); auto: model when the cores would hold more than 4,096 column-sum "
            "registers (subarrays x activation bits x columns).",
        ),
    ] = "auto",
    instances: Annotated[
        int,
        typer.Option(
            "--instances",
            help="Chip instances in parallel threads, each checking a contiguous part of every "
            "epoch (use one per core; needs --rtl-every 1).",
        ),
    ] = 1,
    pgo: Annotated[
        bool,
        typer.Option(
            "--pgo",
            help="Profile-guided build of the Verilator model: built instrumented, trained on "
            "random batches, built again (about 2.5 builds, cached) for about 1.2x the speed; "
            "for whole epochs.",
        ),
    ] = False,
    area: Annotated[
        str,
        typer.Option(
            "--area",
            help="synth: area of the digital blocks from yosys onto the cited standard cells "
            "(runs beside training, cached); model: cited unit areas only.",
        ),
    ] = "synth",
    checkpoint_every: Annotated[
        int,
        typer.Option(
            "--checkpoint-every",
            help="Also checkpoint every N batches inside an epoch (one chip instance), so "
            "--resume loses at most N batches; 0: at epoch ends only.",
        ),
    ] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Train with the generated chip in the loop (bit-exact), report latency/energy/area."""
    cosim(
        design,
        list(set_ or []),
        out_dir,
        rtl_every=rtl_every,
        resume=resume,
        engine=engine,
        quiet=quiet,
        explain=explain_costs_,
        weight_check_every=weight_check_every,
        fast_build=fast_build,
        subarray_core=subarray_core,
        instances=instances,
        pgo=pgo,
        area=area,
        checkpoint_every=checkpoint_every,
    )
