"""Shared helpers of the benchmark scripts in ``bench/``.

- :func:`load_design`: a preset plus ``section.field=value`` overrides, exiting with status 2 on
  a bad design point;
- :func:`mnist_dir`: where MNIST is, or a clear message and exit status 2 when it is needed;
- :func:`run_or_reuse`: one training run in its own folder, reusing a finished ``summary.json``
  and resuming an interrupted run from ``checkpoint.pt``;
- :func:`run_many`: independent runs, optionally in worker processes (one torch thread each);
- :func:`print_table` and :func:`write_results`: the table on screen and ``results.json``.

The scripts are run as files (``python bench/<script>.py``), which puts this folder on
``sys.path``; they import this module as ``_common``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import signal
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NoReturn

import torch
from rich.console import Console
from rich.table import Table

from insitu import config
from insitu.algo.data import Dataset, DatasetError, find_shared_mnist, load_dataset
from insitu.algo.train import CHECKPOINT, SUMMARY, train
from insitu.atomic import write_json

# Piped output (a log file, CI) gets wide tables instead of rich's 80-column default.
console = Console() if sys.stdout.isatty() else Console(width=160)
# insitu.algo.data caches MNIST arrays read-only and insitu.algo.train wraps them with
# torch.from_numpy, which warns once per process; the tensors are never written to.
warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
err = Console(stderr=True, soft_wrap=True)

MNIST_DATASETS = ("mnist", "fashion-mnist")


class BenchError(Exception):
    """A problem the user can fix (message is user-facing); scripts exit with status 2."""


def fail(message: str, status: int = 2) -> NoReturn:
    err.print(f"[red]error:[/] {message}", highlight=False)
    sys.exit(status)


@contextmanager
def user_errors(rerun_hint: str) -> Iterator[None]:
    """Turn design/dataset/bench errors into one message and status 2; Ctrl-C into 130."""
    try:
        yield
    except (config.DesignError, DatasetError, BenchError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        err.print(f"[yellow]interrupted[/]: finished runs and epochs are saved; {rerun_hint}")
        sys.exit(130)


#: The benchmarks' hardware-aware design point (the issue's: 8-bit activations and weights,
#: a 5-bit ADC with calibrated range on 128-row subarrays); scripts append their own overrides.
HARDWARE = [
    "learning.mode=hardware",
    "precision.activation_bits=8",
    "precision.weight_bits=8",
    "array.adc_bits=5",
    "array.rows=128",
    "array.adc_range=calibrated",
]


def add_common_options(p: argparse.ArgumentParser, script: str, *, threads: bool = True) -> None:
    """``--data-dir``, ``--out`` and (optionally) ``--threads``, shared by every script."""
    p.add_argument("--data-dir", type=Path, default=None, help="folder of MNIST IDX files")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"results folder (default runs/bench/{script}[-quick])",
    )
    if threads:
        p.add_argument(
            "--threads",
            type=int,
            default=None,
            help="torch.set_num_threads (default: leave torch's)",
        )


def default_out(script: str, quick: bool) -> Path:
    """``runs/bench/<script>``; quick smoke runs go to ``runs/bench/<script>-quick``."""
    return Path("runs") / "bench" / (f"{script}-quick" if quick else script)


# --------------------------------------------------------------------------- designs and data


def load_design(preset: str, overrides: Sequence[str]) -> config.DesignPoint:
    try:
        return config.load(preset, list(overrides))
    except config.DesignError as exc:
        fail(str(exc))


def mnist_dir(data_dir: Path | None, *, needed: bool) -> Path | None:
    """The MNIST folder: ``--data-dir`` if given, else the shared copy; ``None`` if absent.

    When ``needed`` and neither exists, print how to provide it and exit with status 2.
    """
    if data_dir is not None:
        if not data_dir.is_dir():
            fail(f"--data-dir {data_dir}: not a folder")
        return data_dir
    found = find_shared_mnist()
    if found is None and needed:
        fail(
            "MNIST is needed but was not found: pass --data-dir DIR (a folder of the four IDX "
            "files, torchvision names, plain or .gz), set $INSITU_MNIST_DIR, or place them in "
            "../shared/data/mnist next to the repository"
        )
    return found


def data_dir_overrides(dataset: str, data_dir: Path | None) -> list[str]:
    """``network.data_dir=...`` when the user named a folder (else the library's own search)."""
    if dataset in MNIST_DATASETS and data_dir is not None:
        return [f"network.data_dir={data_dir.resolve()}"]
    return []


_DATA_CACHE: dict[tuple[str, str | None, int], Dataset] = {}


def dataset_for(dp: config.DesignPoint) -> Dataset:
    """The design point's dataset, loaded once per process."""
    key = (dp.network.dataset, dp.network.data_dir, dp.learning.seed)
    if key not in _DATA_CACHE:
        _DATA_CACHE[key] = load_dataset(
            dp.network.dataset, data_dir=dp.network.data_dir, seed=dp.learning.seed
        )
    return _DATA_CACHE[key]


# --------------------------------------------------------------------------- training runs


@dataclass(frozen=True)
class RunResult:
    """One training run as reported in the tables and ``results.json``."""

    name: str
    run_dir: str
    epochs: int
    test_accuracy: float
    train_accuracy: float | None
    wall_time_s: float
    status: str  # "trained", "resumed" or "reused"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the fields whose values differ (``network.data_dir`` ignored)."""
    out: list[str] = []
    for key in sorted(set(old) | set(new)):
        name = f"{prefix}{key}"
        a, b = old.get(key), new.get(key)
        if name == "network.data_dir":
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, name + ".")
        elif a != b:
            out.append(f"{name} ({a!r} there, {b!r} now)")
    return out


def run_dir_name(*parts: object, epochs: int) -> str:
    """A run folder name; the epoch count is part of it, since a run's trajectory may depend on
    it (float mode's cosine learning-rate schedule spans ``learning.epochs``)."""
    return "-".join(str(p) for p in parts) + f"-e{epochs}"


def _result(name: str, run_dir: Path, summary: dict[str, Any], status: str) -> RunResult:
    history = summary["history"]
    last = history[-1]
    return RunResult(
        name=name,
        run_dir=str(run_dir),
        epochs=int(last["epoch"]),
        test_accuracy=float(last["test_accuracy"]),
        train_accuracy=last.get("train_accuracy"),
        wall_time_s=float(summary.get("wall_time_s") or sum(h["seconds"] for h in history)),
        status=status,
    )


def run_or_reuse(
    name: str,
    dp: config.DesignPoint,
    run_dir: Path,
    *,
    data: Dataset | None = None,
    log: Callable[[str], None] | None = None,
) -> RunResult:
    """Train ``dp`` into ``run_dir`` unless that folder already holds the answer.

    - ``summary.json`` of the same design point: reused;
    - a checkpoint but no summary (an interrupted run): resumed with ``train(resume=True)``;
    - nothing: trained from scratch.

    A folder holding a *different* design point (``network.data_dir`` aside) is an error naming
    the differing fields; it is never overwritten.
    """
    epochs = dp.learning.epochs
    summary_path, ckpt_path = run_dir / SUMMARY, run_dir / CHECKPOINT
    if summary_path.exists():
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        diff = _differences(summary["design"], dp.dump())
        if diff:
            raise BenchError(
                f"{run_dir} holds a run of a different design point: {'; '.join(diff)}. "
                "Remove the folder to train it again, or pass another --out"
            )
        if log:
            log(f"{name}: reusing {summary_path}")
        return _result(name, run_dir, summary, "reused")
    resume = ckpt_path.exists()
    if log:
        what = "resuming from" if resume else "training into"
        log(f"{name}: {what} {run_dir} ({dp.learning.mode}, {dp.learning.rule}, {epochs} epochs)")

    def progress(ev: dict[str, Any]) -> None:
        if log and "epoch_done" in ev:
            rec = ev["epoch_done"]
            log(
                f"  {name}: epoch {rec['epoch']}/{epochs} test {rec['test_accuracy']:.2%} "
                f"({rec['seconds']:.1f} s)"
            )

    summary = train(
        dp, run_dir, resume=resume, progress=progress, data=data if data else dataset_for(dp)
    )
    return _result(name, run_dir, summary, "resumed" if resume else "trained")


@dataclass(frozen=True)
class RunSpec:
    """A run to do: its table name, design point and folder (picklable for worker processes)."""

    name: str
    design: config.DesignPoint
    run_dir: Path


def _log_line(text: str) -> None:
    sys.stderr.write(text + "\n")  # one write: lines of parallel workers stay whole
    sys.stderr.flush()


def _worker_init() -> None:
    # Ctrl-C reaches the whole process group: the parent alone handles it (see run_many).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)


def _worker(spec: RunSpec) -> RunResult:
    return run_or_reuse(spec.name, spec.design, spec.run_dir, log=_log_line)


def run_many(specs: Sequence[RunSpec], jobs: int = 1) -> dict[str, RunResult]:
    """Run (or reuse) every spec; ``jobs > 1`` uses that many processes of one torch thread.

    On an error or Ctrl-C the workers are terminated: their finished epochs are safe in their
    checkpoints (written atomically), and a rerun resumes from there.
    """
    results: dict[str, RunResult] = {}
    if jobs <= 1:
        for spec in specs:
            results[spec.name] = run_or_reuse(spec.name, spec.design, spec.run_dir, log=_log_line)
        return results
    # spawn, not fork: a forked child of a process that already ran torch ops can hang in
    # OpenMP; spawned children import this module again (sys.path is passed on).
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_worker_init)
    try:
        futures = [pool.submit(_worker, spec) for spec in specs]
        for fut in as_completed(futures):
            res = fut.result()
            results[res.name] = res
    except BaseException:
        # ProcessPoolExecutor has no public way to stop running tasks: terminate its workers.
        procs = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in procs:
            proc.terminate()
        raise
    pool.shutdown()
    return {spec.name: results[spec.name] for spec in specs}


# --------------------------------------------------------------------------- output


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A rich table; numbers right-aligned. Cells are printed as given (format them first)."""
    table = Table(title=title, title_justify="left")
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*(str(c) for c in row))
    console.print(table)


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def warn_if_busy() -> None:
    """Warn when other processes compete for the cores (timings would be inflated)."""
    load, cpus = load_average(), os.cpu_count() or 1
    if load is not None and load > 0.5 * cpus:
        err.print(
            f"[yellow]warning:[/] load average {load:.1f} on {cpus} cores: other processes "
            "compete for the CPU, timings will be inflated and noisy (torch's threads spin "
            "while they wait: --threads 1 suffers least)"
        )


def set_threads(threads: int | None) -> None:
    """``--threads``: torch's intra-op thread count (None: leave torch's default)."""
    if threads is None:
        return
    if threads < 1:
        fail("--threads must be >= 1")
    torch.set_num_threads(threads)


def environment() -> dict[str, Any]:
    return {
        "load_average_1min": load_average(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "argv": sys.argv,
    }


def write_results(out: Path, script: str, payload: dict[str, Any]) -> Path:
    """Write ``<out>/results.json`` atomically: the script name, environment and ``payload``."""
    path = out / "results.json"
    write_json(path, {"script": script, "environment": environment(), **payload})
    console.print(f"results -> {path}")
    return path
