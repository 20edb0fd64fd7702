"""``insitu sweep``: run every point of a sweep file as a task on dask.distributed.

The client (this process) plans the points (:mod:`.sweep_spec`), skips those the store already
holds, submits the rest to a cluster (a :class:`distributed.LocalCluster` of single-threaded
worker processes by default, or an existing scheduler's address) and writes each result into
the store (:mod:`.sweep_store`) as it arrives: one transaction per point, so killing the sweep
loses only the points in flight. Each point trains in ``DIR/points/KEY/`` with checkpoints, so
a point cut off half-way resumes from its last epoch on the next run. A point that raises is
recorded as failed with its reason; the sweep goes on.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .sweep_spec import Point, SweepSpec, expand
from .sweep_store import Store, read_plan, write_plan

__all__ = [
    "PROGRESS",
    "SweepResult",
    "plan_sweep",
    "read_progress",
    "run_point",
    "run_sweep",
    "sweep_status",
]

PROGRESS = "progress.json"  # a running point's epoch and batch, for the client's progress bar


class _ProgressFile:
    """Writes a point's training progress to its folder at most twice a second (atomically)."""

    def __init__(self, path: Path, epochs: int) -> None:
        self.path, self.epochs, self.last = path, epochs, 0.0

    def __call__(self, ev: dict[str, Any]) -> None:
        now = time.monotonic()
        if "epoch_done" in ev or now - self.last < 0.5:
            return
        self.last = now
        from .atomic import write_json

        with contextlib.suppress(OSError):  # progress is a courtesy; never fail a point over it
            write_json(
                self.path,
                {
                    "epoch": ev["epoch"] + 1,
                    "epochs": self.epochs,
                    "batch": ev["batch"],
                    "batches": ev["batches"],
                },
            )


def read_progress(point_dir: Path) -> dict[str, Any] | None:
    """The last progress a running point wrote (None before its first batch)."""
    import json

    try:
        data: dict[str, Any] = json.loads((point_dir / PROGRESS).read_text())
    except (OSError, ValueError):
        return None
    return data


def run_point(
    design: dict[str, Any], command: str, options: dict[str, Any], run_dir: str
) -> dict[str, Any]:
    """One point, in a worker: train (or co-simulate) and return the summary or the failure.

    Errors are returned, not raised, so that a failure reaches the store with its reason even
    when the exception itself would not pickle.
    """
    import torch

    from .config import validate

    t0 = time.perf_counter()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    try:
        # one worker per core: a torch pool per worker would oversubscribe the machine
        torch.set_num_threads(1)
        dp = validate(design)
        out = Path(run_dir)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError:
            # a remote worker without the sweep folder: train in a private folder instead
            import tempfile

            out = Path(tempfile.mkdtemp(prefix="insitu-point-"))
        prog = _ProgressFile(out / PROGRESS, dp.learning.epochs)
        if command == "cosim":
            from .cosim.run import run_cosim

            summary = run_cosim(dp, out, resume=True, progress=prog, **options)
        else:
            from .algo.train import train

            summary = train(dp, out, resume=True, progress=prog)
        return {
            "ok": True,
            "summary": summary,
            "wall_s": time.perf_counter() - t0,
            "worker": worker,
        }
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}".strip()
        return {
            "ok": False,
            "error": reason,
            "traceback": traceback.format_exc(limit=8),
            "wall_s": time.perf_counter() - t0,
            "worker": worker,
        }


@dataclass
class SweepResult:
    planned: int
    skipped: int
    finished: int
    failed: int


def plan_sweep(
    spec: SweepSpec, out_dir: Path, *, base_dir: Path | None = None, sets: list[str] | None = None
) -> list[Point]:
    """Expand and validate every point, then record the plan in ``DIR/plan.json``."""
    points = expand(spec, base_dir=base_dir, extra_sets=sets)
    write_plan(
        out_dir,
        {
            "name": spec.name,
            "description": spec.description,
            "command": spec.command,
            "base": spec.base,
            "set": spec.set,
            "extra_sets": list(sets or []),
            "method": spec.method,
            "axes": list(spec.axes) if spec.method != "list" else _list_axes(points),
            "seeds": list(spec.seeds),
            "points": [{"key": p.key, "overrides": p.overrides} for p in points],
        },
    )
    return points


def _list_axes(points: list[Point]) -> list[str]:
    names: list[str] = []
    for p in points:
        names += [k for k in p.overrides if k not in names and k != "learning.seed"]
    return names


def _client(workers: int, scheduler: str | None) -> tuple[Any, Any]:
    import logging

    from distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler, timeout="30s"), None
    # the scheduler's HTTP endpoint moves to a free port when another cluster holds 8787;
    # that is expected with several sweeps on one machine, not worth a warning
    warnings.filterwarnings("ignore", message=r"Port \d+ is already in use")
    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    return Client(cluster), cluster


def run_sweep(
    spec: SweepSpec,
    out_dir: str | Path,
    *,
    base_dir: Path | None = None,
    sets: list[str] | None = None,
    workers: int = 2,
    scheduler: str | None = None,
    retry_failed: bool = True,
    on_start: Callable[[int, int], None] | None = None,
    on_point: Callable[[Point, dict[str, Any]], None] | None = None,
    on_submit: Callable[[list[Point], Path], None] | None = None,
) -> SweepResult:
    """Run the points the store does not hold yet; returns how many ran, failed and were skipped.

    ``on_start(total, already_done)`` is called once before any task runs, ``on_point(point,
    result)`` after each point's row is written, ``on_submit(points, folder)`` once the points to
    run are known.
    """
    out = Path(out_dir).resolve()
    points = plan_sweep(spec, out, base_dir=base_dir, sets=sets)
    store = Store(out)
    done = store.statuses()
    keep = {"ok"} if retry_failed else {"ok", "failed"}
    todo = [p for p in points if done.get(p.key) not in keep]
    skipped = len(points) - len(todo)
    if on_start:
        on_start(len(points), skipped)
    result = SweepResult(planned=len(points), skipped=skipped, finished=0, failed=0)
    if not todo:
        return result
    if on_submit:
        on_submit(todo, out)
    options = spec.cosim.model_dump() if spec.command == "cosim" else {}
    from distributed import as_completed

    client, cluster = _client(workers, scheduler)
    try:
        futures: dict[str, Point] = {}
        submitted = []
        for p in todo:
            fut = client.submit(
                run_point,
                p.design.dump(),
                spec.command,
                options,
                str(out / "points" / p.key),
                key=f"insitu-point-{p.key}",
                pure=False,
            )
            futures[fut.key] = p
            submitted.append(fut)
        for fut in as_completed(submitted):
            p = futures[fut.key]
            try:
                res = fut.result()
            except Exception as exc:  # the worker died (KilledWorker) or the task was lost
                res = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "wall_s": None}
            common = {
                "command": spec.command,
                "overrides": p.overrides,
                "design": p.design.dump(),
                "wall_s": res.get("wall_s"),
                "worker": res.get("worker"),
            }
            if res["ok"]:
                store.put(p.key, status="ok", summary=res["summary"], **common)
                result.finished += 1
            else:
                store.put(p.key, status="failed", error=res["error"], **common)
                result.failed += 1
            if on_point:
                on_point(p, res)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return result


def sweep_status(out_dir: str | Path) -> dict[str, Any]:
    """Counts of finished, failed and pending points, and the failures' reasons."""
    out = Path(out_dir)
    plan = read_plan(out)
    if plan is None:
        from .config import DesignError

        raise DesignError(f"{out}: not a sweep folder (no plan.json; run `insitu sweep` first)")
    rows = {r.key: r for r in Store(out).rows()}
    keys = [p["key"] for p in plan["points"]]
    ok = [k for k in keys if k in rows and rows[k].status == "ok"]
    failed = [rows[k] for k in keys if k in rows and rows[k].status == "failed"]
    return {
        "name": plan.get("name"),
        "planned": len(keys),
        "finished": len(ok),
        "failed": len(failed),
        "pending": len(keys) - len(ok) - len(failed),
        "failures": [{"key": r.key, "overrides": r.overrides, "error": r.error} for r in failed],
        "extra_rows": len(set(rows) - set(keys)),
    }
