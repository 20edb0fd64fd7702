"""The ``insitu`` command line: design points, training, and (later) the other layers' tools.

Every command takes a design point (preset name or file) and ``--set a.b.c=value`` overrides.
A bad design point or bad input prints one clear message and exits with status 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from . import config
from .analog_cli import analog_app
from .cli_args import DesignArg, SetOpt
from .cosim_cli import cosim_command, hardware_table
from .hdl_cli import hdl_app
from .report_cli import report_command
from .sweep_cli import sweep_command

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="insitu: co-design compute-in-memory chips that learn on-chip (BP, FA, DFA; spiking: "
    "BPTT, error-triggered, EventProp).",
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(no_args_is_help=True, help="Show design points and their schema.")
app.add_typer(config_app, name="config")
app.add_typer(hdl_app, name="hdl")
app.add_typer(analog_app, name="analog")

err = Console(stderr=True, soft_wrap=True)
out = Console()

app.command("cosim")(cosim_command)
app.command("sweep")(sweep_command)
app.command("report")(report_command)


class UsageError(Exception):
    """Bad user input other than the design point (paths, data)."""


def _load(design: str, sets: list[str] | None) -> config.DesignPoint:
    return config.load(design, sets or [])


@config_app.command("show")
def config_show(
    design: DesignArg = "digits",
    set_: SetOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="yaml or json")] = "yaml",
) -> None:
    """Print the resolved design point (defaults, preset, file and overrides applied)."""
    dp = _load(design, set_)
    if fmt not in ("yaml", "json"):
        raise config.DesignError(f"--format = {fmt!r} is not allowed: must be 'yaml' or 'json'")
    data = dp.dump()
    if fmt == "json":
        out.print_json(json.dumps(data))
    else:
        sys.stdout.write(yaml.safe_dump(data, sort_keys=False))


@config_app.command("schema")
def config_schema() -> None:
    """Print the JSON schema of design points."""
    sys.stdout.write(json.dumps(config.schema(), indent=2) + "\n")


@config_app.command("presets")
def config_presets() -> None:
    """List the shipped presets."""
    for name in config.list_presets():
        sys.stdout.write(name + "\n")


@app.command()
def train(
    design: DesignArg = "digits",
    set_: SetOpt = None,
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for checkpoints and summary.json.")
    ] = Path("runs/train"),
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the folder's last checkpoint.")
    ] = False,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Folder of MNIST/Fashion-MNIST IDX files.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Train the design point's network with its learning rule (float or hardware-aware)."""
    sets = list(set_ or [])
    if data_dir is not None:
        if not data_dir.is_dir():
            raise UsageError(f"--data-dir {data_dir}: not a folder")
        sets.append(f"network.data_dir={data_dir}")
    dp = _load(design, sets)
    from insitu.algo.data import DatasetError
    from insitu.algo.plan import PlanError
    from insitu.algo.train import train as run_train

    try:
        if quiet:
            summary = run_train(dp, out_dir, resume=resume)
        else:
            summary = _train_with_progress(dp, out_dir, resume, run_train)
    except (DatasetError, PlanError) as exc:
        raise UsageError(str(exc)) from None
    except KeyboardInterrupt:
        err.print(
            f"[yellow]interrupted[/]: finished epochs are saved; continue with "
            f"`insitu train {design} --out {out_dir} --resume`"
        )
        raise typer.Exit(130) from None
    acc = summary["test_accuracy"]
    out.print(
        f"[bold]{dp.learning.rule.upper()}[/] {dp.learning.mode} on {dp.network.dataset}: "
        f"test accuracy {acc:.2%}, train accuracy {summary['train_accuracy']:.2%}, "
        f"{summary['epochs']} epochs in {summary['wall_time_s']:.1f} s "
        f"-> {out_dir / 'summary.json'}"
    )
    if "spiking" in summary:
        ev = summary["spiking"]["events"]
        out.print(
            f"  events: {ev['spikes']:,} spikes, {ev['error_events']:,} error events, "
            f"{ev['cell_updates']:,} cell updates ({ev['pulses']:,} pulses); priced "
            f"{summary['spiking']['energy']['total_pj'] / 1e6:.3f} uJ (docs/spiking.md)"
        )


@app.command()
def compare(
    runs: Annotated[
        list[Path], typer.Argument(help="Run folders holding summary.json, or summary files.")
    ],
) -> None:
    """Print finished runs side by side (rule, mode, precision, accuracy, time; co-simulated
    runs also cycles, latency, energy and area by component)."""
    from rich.table import Table

    table = Table(title="insitu runs")
    for col in (
        "run",
        "rule",
        "mode",
        "dataset",
        "ADC bits",
        "test acc",
        "train acc",
        "epochs",
        "time (s)",
    ):
        table.add_column(col)
    loaded: list[tuple[str, dict[str, Any]]] = []
    for run in runs:
        f = run if run.suffix == ".json" else run / "summary.json"
        try:
            s = json.loads(f.read_text())
        except (OSError, ValueError) as exc:
            raise UsageError(f"{f}: cannot read a run summary ({exc})") from None
        d = s["design"]
        loaded.append((str(run), s))
        table.add_row(
            str(run),
            d["learning"]["rule"],
            d["learning"]["mode"],
            d["network"]["dataset"],
            str(d["array"]["adc_bits"]) if d["learning"]["mode"] == "hardware" else "-",
            f"{s['test_accuracy']:.2%}",
            f"{s['train_accuracy']:.2%}",
            str(s["epochs"]),
            f"{s['wall_time_s']:.1f}",
        )
    # Tables wider than a pipe's default 80 columns would be cut into ellipses.
    console = out if out.is_terminal else Console(width=160)
    console.print(table)
    hw = hardware_table(loaded)
    if hw is not None:
        console.print(hw)


@app.command()
def demo(
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Folder of the demo's results and report.")
    ] = Path("runs/demo"),
    workers: Annotated[int, typer.Option("--workers", "-w", help="Worker processes.")] = 2,
    epochs: Annotated[
        int | None, typer.Option(help="Training epochs (default: the design point's, 3).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """The whole product on embedded data: ngspice characterization, RTL generation, BP and
    DFA trained with the RTL in the loop, an ADC sweep, and the HTML report."""
    from .demo import run_demo

    if workers < 1:
        raise config.DesignError(f"--workers = {workers}: must be at least 1")
    if epochs is not None and epochs < 1:
        raise config.DesignError(f"--epochs = {epochs}: must be at least 1")
    try:
        res = run_demo(out_dir, workers=workers, epochs=epochs, quiet=quiet, console=err)
    except KeyboardInterrupt:
        err.print(
            "[yellow]interrupted[/]: finished steps and points are kept; run `insitu demo` "
            "again to continue"
        )
        raise typer.Exit(130) from None
    steps = ", ".join(f"{k} {v:.0f} s" for k, v in res.seconds.items())
    out.print(f"demo done in {sum(res.seconds.values()):.0f} s ({steps})", highlight=False)
    out.print(f"report: {res.report.resolve()}", highlight=False)


def _train_with_progress(
    dp: config.DesignPoint, out_dir: Path, resume: bool, run_train: Any
) -> dict[str, Any]:
    columns = (
        TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(
            "loss {task.fields[loss]:.4f}  acc {task.fields[acc]:.2%}  test {task.fields[test]}"
        ),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err, transient=False) as bar:
        task = bar.add_task(
            "train", total=None, epoch=0, epochs=dp.learning.epochs, loss=0.0, acc=0.0, test="-"
        )

        def on_progress(ev: dict[str, Any]) -> None:
            if "epoch_done" in ev:
                rec = ev["epoch_done"]
                bar.update(task, test=f"{rec['test_accuracy']:.2%}")
                return
            bar.update(
                task,
                completed=ev["batch"],
                total=ev["batches"],
                epoch=ev["epoch"] + 1,
                loss=ev["loss"],
                acc=ev["train_accuracy"],
            )

        result: dict[str, Any] = run_train(dp, out_dir, resume=resume, progress=on_progress)
        return result


def main() -> None:
    from .hdl.toolchain import ToolError

    try:
        app(standalone_mode=False)
    except config.DesignError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False, markup=True)
        sys.exit(2)
    except UsageError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        sys.exit(2)
    except ToolError as exc:
        err.print(f"[red]tool error:[/] {exc}", highlight=False)
        sys.exit(3)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(130)
    except Exception as exc:
        # usage errors (unknown option, missing argument): click's ClickException, or its
        # vendored copy in typer >= 0.25 (no click installed); both can show themselves
        show = getattr(exc, "show", None)
        if callable(show) and hasattr(exc, "exit_code"):
            show()
            sys.exit(2)
        raise


if __name__ == "__main__":
    main()
