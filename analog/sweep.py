"""Run many simulation points in parallel processes, with a content-addressed, resumable cache.

Each point's cache key is the sha256 of its netlist text, the PDK's model files, its kind, the
metadata its reduction reads and :data:`CACHE_VERSION`. A finished point is written atomically
as ``<key>.npz`` (or ``<key>.failed.json`` for a point that failed every retry, with its
reason), by the parent as soon as the worker returns, so a sweep killed half-way loses only the
points in flight and a rerun computes just the rest.

Parallelism: ``concurrent.futures.ProcessPoolExecutor`` (spawn), one ngspice instance per
worker with ``num_threads=1``. dask.distributed would add a scheduler process and a large
dependency for what is here a flat bag of independent, second-long tasks on one machine; a
process pool gives the same speed-up with the standard library (docs/analog.md).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from insitu.atomic import write_bytes_with, write_json

from .circuits import Job

CACHE_VERSION = "1"


@dataclass
class Point:
    """One simulation: its job, the labels that place it in a LUT, and its seed."""

    job: Job
    labels: dict[str, Any]
    seed: int = 0
    models_hash: str = ""

    @property
    def key(self) -> str:
        h = hashlib.sha256()
        for part in (
            CACHE_VERSION,
            self.job.kind,
            self.models_hash,
            str(self.seed),
            json.dumps(self.job.meta, sort_keys=True),
            json.dumps(self.job.vectors, sort_keys=True),
            self.job.netlist,
        ):
            h.update(part.encode())
            h.update(b"\0")
        return h.hexdigest()[:32]


@dataclass
class Outcome:
    point: Point
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    failed: str | None = None
    attempts: int = 0
    seconds: float = 0.0
    cached: bool = False


@dataclass
class SweepStats:
    total: int = 0
    cached: int = 0
    computed: int = 0
    failed: int = 0
    retried: int = 0
    seconds: float = 0.0
    sim_seconds: float = 0.0  # summed over workers: sim_seconds / seconds = parallelism reached


def _work(
    kind: str, netlist: str, vectors: dict[str, list[str]], meta: dict[str, Any], seed: int
) -> tuple[dict[str, np.ndarray] | None, str | None, int, float]:
    """Worker side: simulate (with retries) and reduce. Never raises for a failed point."""
    from . import engine
    from .reduce import reduce

    t0 = time.perf_counter()
    try:
        res = engine.run(netlist, seed, vectors)
    except engine.SimulationFailed as exc:
        return None, exc.reason, exc.attempts, time.perf_counter() - t0
    try:
        arrays = reduce(kind, meta, res.plots)
    except Exception as exc:  # a reduction that cannot read the result is a failed point
        return None, f"reduce: {type(exc).__name__}: {exc}", res.attempts, 0.0
    return arrays, None, res.attempts, time.perf_counter() - t0


def _load(cache: Path, key: str) -> Outcome | None:
    ok = cache / f"{key}.npz"
    bad = cache / f"{key}.failed.json"
    if ok.is_file():
        try:
            with np.load(ok) as z:
                arrays = {k: z[k] for k in z.files if not k.startswith("_")}
                attempts = int(z["_attempts"]) if "_attempts" in z.files else 1
            return Outcome(Point(Job("", "", {}), {}), arrays, None, attempts, 0.0, True)
        except (OSError, ValueError):
            return None  # a damaged file is recomputed
    if bad.is_file():
        try:
            rec = json.loads(bad.read_text())
            return Outcome(Point(Job("", "", {}), {}), {}, rec["reason"], rec["attempts"], 0, True)
        except (OSError, ValueError, KeyError):
            return None
    return None


def _store(cache: Path, key: str, out: Outcome) -> None:
    if out.failed is not None:
        write_json(
            cache / f"{key}.failed.json",
            {"reason": out.failed, "attempts": out.attempts, "labels": out.point.labels},
        )
        return

    def writer(f: Any) -> None:
        payload: dict[str, Any] = {"_attempts": np.array(out.attempts), **out.arrays}
        np.savez(f, **payload)

    write_bytes_with(cache / f"{key}.npz", writer)


def run_points(
    points: Sequence[Point],
    cache: Path,
    workers: int = 1,
    progress: Callable[[Outcome, SweepStats], None] | None = None,
) -> tuple[list[Outcome], SweepStats]:
    """All points, from the cache where present, else simulated in ``workers`` processes."""
    cache.mkdir(parents=True, exist_ok=True)
    stats = SweepStats(total=len(points))
    t0 = time.perf_counter()
    results: dict[int, Outcome] = {}
    todo: list[int] = []
    for i, p in enumerate(points):
        hit = _load(cache, p.key)
        if hit is None:
            todo.append(i)
            continue
        hit.point = p
        results[i] = hit
        stats.cached += 1
        stats.failed += hit.failed is not None
        if progress:
            progress(hit, stats)
    if todo:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=max(1, workers), mp_context=ctx) as pool:
            pending: dict[Future[Any], int] = {}
            queue = list(todo)
            while queue or pending:
                # Keep each worker fed with two points so results are stored as they finish.
                while queue and len(pending) < 2 * max(1, workers):
                    i = queue.pop(0)
                    p = points[i]
                    fut = pool.submit(
                        _work, p.job.kind, p.job.netlist, p.job.vectors, p.job.meta, p.seed
                    )
                    pending[fut] = i
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    i = pending.pop(fut)
                    arrays, reason, attempts, secs = fut.result()
                    out = Outcome(points[i], arrays or {}, reason, attempts, secs, False)
                    _store(cache, points[i].key, out)
                    results[i] = out
                    stats.computed += 1
                    stats.failed += reason is not None
                    stats.retried += attempts > 1
                    stats.sim_seconds += secs
                    if progress:
                        progress(out, stats)
    stats.seconds = time.perf_counter() - t0
    return [results[i] for i in range(len(points))], stats
