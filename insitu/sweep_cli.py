"""``insitu sweep``: the command line of design-space sweeps (run, status), with progress."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import config
from .cli_args import SetOpt

err = Console(stderr=True, soft_wrap=True)
out = Console()


def sweep_command(
    sweep: Annotated[
        str,
        typer.Argument(
            help="A sweep file (YAML), or the word `status` followed by a sweep folder."
        ),
    ],
    folder: Annotated[
        Path | None, typer.Argument(help="With `status`: the sweep folder to report on.")
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Sweep folder: plan.json, results.sqlite, points/."),
    ] = None,
    set_: SetOpt = None,
    workers: Annotated[
        int, typer.Option("--workers", "-w", help="Worker processes of the local cluster.")
    ] = 2,
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler",
            help="Address of a running dask scheduler (tcp://host:8786) instead of a local "
            "cluster.",
        ),
    ] = None,
    retry_failed: Annotated[
        bool,
        typer.Option("--retry-failed/--keep-failed", help="Run points that failed before again."),
    ] = True,
    seeds: Annotated[
        str | None,
        typer.Option("--seeds", help="Replace the file's seeds, e.g. --seeds 0,1,2."),
    ] = None,
    rtl_every: Annotated[
        int | None,
        typer.Option("--rtl-every", help="cosim sweeps: replace the file's cosim.rtl_every."),
    ] = None,
    fast_build: Annotated[
        bool | None,
        typer.Option(
            "--fast-build/--optimized-build",
            help="cosim sweeps: replace the file's cosim.fast_build.",
            show_default=False,
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and list the points; run nothing.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Run a sweep file's points on dask.distributed (`insitu sweep SWEEP --out DIR`), or
    report on a sweep folder (`insitu sweep status DIR`)."""
    if sweep == "status":
        if folder is None:
            raise config.DesignError("`insitu sweep status DIR`: give the sweep folder")
        _status(folder)
        return
    if folder is not None:
        raise config.DesignError(
            f"unexpected argument {str(folder)!r}: the sweep folder goes in --out"
        )
    from .sweep_spec import expand, load_sweep

    path = Path(sweep)
    spec = with_options(load_sweep(path), seeds, rtl_every, fast_build)
    if workers < 1:
        raise config.DesignError(f"--workers = {workers}: must be at least 1")
    if dry_run:
        points = expand(spec, base_dir=path.parent, extra_sets=list(set_ or []))
        for p in points:
            out.print(f"{p.key}  {p.label()}", highlight=False)
        out.print(f"{len(points)} points, command {spec.command}")
        return
    if out_dir is None:
        raise config.DesignError("--out: give the sweep folder (e.g. --out runs/sweep)")
    _run(spec, path, out_dir, list(set_ or []), workers, scheduler, retry_failed, quiet)


def with_options(
    spec: Any, seeds: str | None, rtl_every: int | None, fast_build: bool | None
) -> Any:
    """The sweep with the command line's ``--seeds``, ``--rtl-every``, ``--fast-build``."""
    update: dict[str, Any] = {}
    if seeds is not None:
        try:
            values = [int(x) for x in seeds.split(",") if x.strip()]
        except ValueError:
            values = []
        if not values or any(v < 0 for v in values):
            raise config.DesignError(
                f"--seeds = {seeds!r}: give non-negative integers separated by commas, e.g. 0,1,2"
            )
        update["seeds"] = values
    cosim: dict[str, Any] = {}
    if rtl_every is not None:
        if rtl_every < 1:
            raise config.DesignError(f"--rtl-every = {rtl_every}: must be at least 1")
        cosim["rtl_every"] = rtl_every
    if fast_build is not None:
        cosim["fast_build"] = fast_build
    if cosim:
        if spec.command != "cosim":
            raise config.DesignError(
                "--rtl-every and --fast-build apply to cosim sweeps; this sweep's command is "
                f"{spec.command!r}"
            )
        update["cosim"] = spec.cosim.model_copy(update=cosim)
    if "seeds" in update and "learning.seed" in spec.axes:
        raise config.DesignError("--seeds: this sweep varies learning.seed as an axis already")
    return spec.model_copy(update=update) if update else spec


class SweepProgress:
    """A progress bar over a sweep's points (``on_start``/``on_point`` of :func:`run_sweep`),
    with a second line for the points in flight (epoch and batch, read from the progress
    files their workers write into the sweep folder)."""

    def __init__(self, name: str, where: str, *, quiet: bool = False) -> None:
        self.name, self.where = name, where
        self.failed = 0
        self.bar = (
            None
            if quiet
            else Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                console=err,
            )
        )
        self.task: Any = None
        self.running: Any = None
        self._stop = threading.Event()
        self._watch: threading.Thread | None = None
        self._pending: dict[str, Any] = {}  # key -> point, not finished yet

    def watch(self, points: list[Any], folder: Path) -> None:
        """Show the in-flight points' epochs from ``folder/points/KEY/progress.json``."""
        if self.bar is None:
            return
        self._pending = {p.key: p for p in points}
        self.running = self.bar.add_task("  in flight", total=None, info="")

        def loop() -> None:
            from .sweep import read_progress

            while not self._stop.wait(1.0):
                parts = []
                for key, p in list(self._pending.items()):
                    pr = read_progress(folder / "points" / key)
                    if pr is not None:
                        parts.append(
                            f"{p.label()}: epoch {pr['epoch']}/{pr['epochs']} "
                            f"{100 * pr['batch'] / max(pr['batches'], 1):.0f}%"
                        )
                if self.bar is not None:
                    self.bar.update(self.running, info="; ".join(parts)[:160])

        self._watch = threading.Thread(target=loop, daemon=True)
        self._watch.start()

    def on_start(self, total: int, done: int) -> None:
        err.print(
            f"sweep {self.name}: {total} points, {done} already in the store, "
            f"{total - done} to run on {self.where}",
            highlight=False,
        )
        if self.bar is not None:
            self.bar.start()
            self.task = self.bar.add_task(
                f"sweep {self.name}", total=total, completed=done, info="0 failed"
            )

    def on_point(self, point: Any, res: dict[str, Any]) -> None:
        self._pending.pop(point.key, None)
        if not res["ok"]:
            self.failed += 1
            err.print(f"[red]point failed[/] {point.label()}: {res['error']}", highlight=False)
        if self.bar is not None:
            acc = res["summary"]["test_accuracy"] if res["ok"] else None
            last = f"last: {point.label()}" + (f" -> {acc:.2%}" if acc is not None else "")
            info = f"{self.failed} failed  {last[:80]}"
            self.bar.update(self.task, advance=1, info=info)

    def stop(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.join(timeout=2)
        if self.bar is not None:
            self.bar.stop()


def _run(
    spec: Any,
    path: Path,
    out_dir: Path,
    sets: list[str],
    workers: int,
    scheduler: str | None,
    retry_failed: bool,
    quiet: bool,
) -> None:
    from .sweep import run_sweep

    where = scheduler or f"a local cluster of {workers} workers"
    prog = SweepProgress(spec.name, where, quiet=quiet)
    try:
        result = run_sweep(
            spec,
            out_dir,
            base_dir=path.parent,
            sets=sets,
            workers=workers,
            scheduler=scheduler,
            retry_failed=retry_failed,
            on_start=prog.on_start,
            on_point=prog.on_point,
            on_submit=prog.watch,
        )
    except KeyboardInterrupt:
        prog.stop()
        err.print(
            f"[yellow]interrupted[/]: finished points are in {out_dir}/results.sqlite; run the "
            "same command again to do the rest"
        )
        raise typer.Exit(130) from None
    finally:
        prog.stop()
    out.print(
        f"sweep {spec.name}: {result.planned} points; {result.skipped} were already done, "
        f"{result.finished} finished now, {result.failed} failed -> {out_dir}",
        highlight=False,
    )
    if result.failed:
        raise typer.Exit(1)


def _status(folder: Path) -> None:
    from .sweep import sweep_status

    st = sweep_status(folder)
    out.print(
        f"sweep {st['name']}: {st['planned']} planned, {st['finished']} finished, "
        f"{st['failed']} failed, {st['pending']} pending",
        highlight=False,
    )
    if st["failures"]:
        table = Table(title="failed points")
        table.add_column("key")
        table.add_column("point")
        table.add_column("reason", overflow="fold")
        for f in st["failures"]:
            table.add_row(f["key"], json.dumps(f["overrides"]), f["error"] or "")
        out.print(table)
