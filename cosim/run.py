"""``insitu cosim``: train a design point with its generated chip in the loop, then report.

This module owns one co-simulation run: it builds the integer plan and the chip from the
design point, generates the Verilog, builds (or reuses) the Verilator model or picks the
Amaranth simulator, trains through :func:`insitu.algo.train.train` with an
:class:`~.rtl_model.RtlCheckedMLP` (same epochs, checkpoints, resume and history as
``insitu train``), and writes ``summary.json`` with accuracy, mismatches, cycles, latency,
energy, area and TOPS/W (:mod:`.metrics`). A mismatch stops the run, writes ``mismatch.txt``
and raises :class:`~.rtl_model.Mismatch`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

import torch

from ..algo.plan import make_plan
from ..algo.train import SUMMARY, Progress, load_data, train
from ..atomic import write_json, write_text
from ..config import DesignPoint
from ..hdl.export import to_verilog
from ..hdl.params import ChipParams, HardwareError
from .metrics import summarize
from .rtl_model import Mismatch, RtlCheckedMLP, check_design
from .session import AmaranthBackend, Backend, ChipSession, VerilatorBackend

__all__ = ["Engine", "chip_for", "run_cosim"]

Engine = Literal["verilator", "amaranth"]


def chip_for(dp: DesignPoint) -> ChipParams:
    """The chip parameters of a design point (the plan as ``insitu train`` starts it)."""
    from ..config import DesignError

    try:
        return ChipParams.from_design(dp, make_plan(dp).to_dict())
    except HardwareError as exc:
        raise DesignError(str(exc)) from exc


def make_backend(
    p: ChipParams, engine: Engine, *, threads: int = 1, fast_build: bool = False
) -> Backend:
    if engine == "amaranth":
        return AmaranthBackend(p)
    _, verilog = to_verilog(p)
    return VerilatorBackend(verilog, threads=threads, fast_build=fast_build)


def run_cosim(
    dp: DesignPoint,
    out_dir: str | Path,
    *,
    rtl_every: int = 1,
    resume: bool = False,
    engine: Engine = "verilator",
    weight_check_every: int = 50,
    fast_build: bool = False,
    progress: Progress | None = None,
    on_status: Any = None,
) -> dict[str, Any]:
    """Train with the chip in the loop; returns (and writes) the summary."""
    from ..config import DesignError

    check_design(dp, rtl_every)
    if engine not in ("verilator", "amaranth"):
        raise DesignError(f"--engine = {engine!r}: allowed: verilator, amaranth")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # the golden model runs beside the chip's thread: one torch thread leaves the other core
    # to the RTL
    torch.set_num_threads(1)
    p = chip_for(dp)
    t0 = time.perf_counter()
    if on_status:
        on_status(f"building the {engine} model of the chip (cached after the first time)")
    backend = make_backend(p, engine, fast_build=fast_build)
    build_s = time.perf_counter() - t0
    reused = bool(getattr(getattr(backend, "build", None), "reused", False))
    session = ChipSession(p, backend)
    model = RtlCheckedMLP(dp, session, rtl_every=rtl_every, weight_check_every=weight_check_every)
    data = load_data(dp)
    if on_status:
        on_status("training with the chip in the loop")
    t1 = time.perf_counter()
    try:
        summary = train(dp, out, resume=resume, progress=progress, data=data, model=model)
    except Mismatch as exc:
        write_text(out / "mismatch.txt", str(exc) + "\n")
        write_json(
            out / "cosim_failure.json",
            {"mismatches": model.stats.mismatches, "stats": model.stats.to_dict()},
        )
        session.close()
        raise
    train_s = time.perf_counter() - t1
    stats = model.stats
    stats.verify_bits = model._verify_base + session.verify_bits
    simulated = backend.cycles  # this process's cycles: host port, training and checks
    session.close()
    metrics = summarize(
        dp,
        p,
        stats.counters,
        verify_bits=stats.verify_bits,
        train_samples=len(data.y_train),
    )
    summary.update(
        {
            "command": "cosim",
            "engine": engine,
            "rtl_every": rtl_every,
            "mismatches": stats.mismatches,
            "rtl": stats.to_dict(),
            "build_s": build_s,
            "build_reused": reused,
            "cosim_wall_s": train_s,
            "rtl_cycles_simulated": simulated,
            "rtl_samples_per_s": stats.rtl_samples / stats.rtl_seconds
            if stats.rtl_seconds
            else None,
            **metrics,
        }
    )
    write_json(out / SUMMARY, summary)
    return summary
