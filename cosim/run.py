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

import functools
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
from .area import finish_synthesis, start_synthesis
from .metrics import summarize
from .rtl_model import Mismatch, RtlCheckedMLP, check_design
from .segments import SegmentedRtlMLP
from .session import AmaranthBackend, Backend, ChipSession, VerilatorBackend, training_workload
from .subarray_model import core_model

__all__ = [
    "AUTO_MODEL_REGISTERS",
    "Engine",
    "SubarrayCore",
    "chip_for",
    "core_for",
    "core_registers",
    "run_cosim",
]

Engine = Literal["verilator", "amaranth"]
SubarrayCore = Literal["auto", "rtl", "model"]

# ``auto`` puts the behavioural core model (.subarray_model) in the Verilator build when the
# RTL cores would hold more than this many column-sum registers (subarrays x activation bits x
# used columns), the state Verilator evaluates every cycle. Measured on 784-16-10 with 128 x
# 128 subarrays (8 of them, 8,192 registers; 2026-11-30, 2 cores): RTL cores took 548 s to
# build and ran 21k cycles/s; the model built in 20 s and ran 109k cycles/s, with the same
# cycle counts. The digits-chip preset (2,400) keeps its RTL cores.
AUTO_MODEL_REGISTERS = 4096


def core_registers(p: ChipParams) -> int:
    """Column-sum registers of all the chip's subarray cores."""
    return p.total_subarrays * p.activation_bits * p.used_cols


def core_for(p: ChipParams, engine: str, subarray_core: str) -> Literal["rtl", "model"]:
    """Which subarray core a run uses: ``rtl`` or ``model`` (``auto`` resolved)."""
    from ..config import DesignError

    if subarray_core not in ("auto", "rtl", "model"):
        raise DesignError(f"--subarray-core = {subarray_core!r}: allowed: auto, rtl, model")
    if engine == "amaranth":
        if subarray_core == "model":
            raise DesignError(
                "--subarray-core = 'model' needs --engine verilator (the model is DPI-C code); "
                "allowed with --engine amaranth: auto, rtl"
            )
        return "rtl"
    if subarray_core == "auto":
        return "model" if core_registers(p) > AUTO_MODEL_REGISTERS else "rtl"
    return "rtl" if subarray_core == "rtl" else "model"


def chip_for(dp: DesignPoint) -> ChipParams:
    """The chip parameters of a design point (the plan as ``insitu train`` starts it)."""
    from ..config import DesignError

    try:
        return ChipParams.from_design(dp, make_plan(dp).to_dict())
    except HardwareError as exc:
        raise DesignError(str(exc)) from exc


def make_backends(
    p: ChipParams,
    engine: Engine,
    *,
    count: int = 1,
    threads: int = 1,
    fast_build: bool = False,
    core: Literal["rtl", "model"] = "rtl",
    pgo: bool = False,
) -> list[Backend]:
    """``count`` chip instances; the Verilog is generated (and the model built) once.

    ``pgo``: a profile-guided build (:func:`.verilator_model.build`) trained on random batches
    (:func:`.session.training_workload`): 2.5x the build time, ~1.2x the speed."""
    if engine == "amaranth":
        return [AmaranthBackend(p) for _ in range(count)]
    core_module, sources = None, None
    if core == "model":
        cm = core_model(p)
        core_module = cm.module
        sources = {f"{cm.module}.sv": cm.verilog, f"{cm.module}.cpp": cm.cpp}
    _, verilog = to_verilog(p, core_module=core_module)
    workload = functools.partial(training_workload, p=p) if pgo else None
    return [
        VerilatorBackend(
            verilog, threads=threads, fast_build=fast_build, sources=sources, pgo=workload
        )
        for _ in range(count)
    ]


def make_backend(
    p: ChipParams,
    engine: Engine,
    *,
    threads: int = 1,
    fast_build: bool = False,
    core: Literal["rtl", "model"] = "rtl",
    pgo: bool = False,
) -> Backend:
    """One chip instance (:func:`make_backends`)."""
    return make_backends(p, engine, threads=threads, fast_build=fast_build, core=core, pgo=pgo)[0]


def run_cosim(
    dp: DesignPoint,
    out_dir: str | Path,
    *,
    rtl_every: int = 1,
    resume: bool = False,
    engine: Engine = "verilator",
    weight_check_every: int = 50,
    fast_build: bool = False,
    subarray_core: str = "auto",
    instances: int = 1,
    pgo: bool = False,
    area: Literal["synth", "model"] = "synth",
    checkpoint_every: int = 0,
    progress: Progress | None = None,
    on_status: Any = None,
) -> dict[str, Any]:
    """Train with the chip in the loop; returns (and writes) the summary.

    ``subarray_core``: ``rtl`` simulates every subarray's arithmetic as RTL, ``model`` puts
    the behavioural model of :mod:`.subarray_model` in its place (the rest of the chip stays
    RTL), ``auto`` takes the model above :data:`AUTO_MODEL_REGISTERS` column-sum registers.

    ``instances`` > 1: that many chip instances, each checking a contiguous segment of every
    epoch in its own thread (:class:`.segments.SegmentedRtlMLP`); needs ``rtl_every`` = 1.

    ``pgo``: a profile-guided build of the Verilator model (:func:`make_backends`).

    ``area``: ``synth`` synthesizes the chip's digital blocks with yosys while it trains
    (:func:`.area.start_synthesis`, cached) for the area breakdown; ``model`` uses cited unit
    areas only.

    ``checkpoint_every``: a checkpoint every that many batches inside an epoch too (one chip
    instance; :func:`insitu.algo.train.train`)."""
    from ..config import DesignError

    check_design(dp, rtl_every)
    if engine not in ("verilator", "amaranth"):
        raise DesignError(f"--engine = {engine!r}: allowed: verilator, amaranth")
    if instances < 1 or (instances > 1 and (rtl_every != 1 or engine != "verilator")):
        raise DesignError(
            f"--instances = {instances}: allowed: 1, or more with --rtl-every 1 and "
            "--engine verilator"
        )
    if pgo and engine != "verilator":
        raise DesignError(f"--pgo with --engine = {engine!r}: allowed only with verilator")
    if checkpoint_every and instances > 1:
        raise DesignError(
            f"--checkpoint-every = {checkpoint_every} with --instances = {instances}: allowed: "
            "0 (chip instances check segments of the epoch in parallel, so a checkpoint waits "
            "for the epoch's end)"
        )
    if area not in ("synth", "model"):
        raise DesignError(f"--area = {area!r}: allowed: synth, model")
    p = chip_for(dp)
    core = core_for(p, engine, subarray_core)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # the golden model runs beside the chip's thread: one torch thread leaves the other core
    # to the RTL
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    if on_status:
        what = "RTL" if core == "rtl" else "behavioural model (DPI-C)"
        guided = ", profile-guided: built twice" if pgo else ""
        on_status(
            f"building the {engine} model of the chip, subarray cores as {what}{guided} "
            "(cached after the first time)"
        )
    backends = make_backends(p, engine, count=instances, fast_build=fast_build, core=core, pgo=pgo)
    build_s = time.perf_counter() - t0
    reused = bool(getattr(getattr(backends[0], "build", None), "reused", False))
    verilog = getattr(backends[0], "verilog", None)
    synthesis = start_synthesis(p, verilog, on_status) if area == "synth" else None
    sessions = [ChipSession(p, b) for b in backends]
    data = load_data(dp)
    model: RtlCheckedMLP | SegmentedRtlMLP
    if instances == 1:
        model = RtlCheckedMLP(
            dp, sessions[0], rtl_every=rtl_every, weight_check_every=weight_check_every
        )
    else:
        model = SegmentedRtlMLP(
            dp,
            sessions,
            batches_per_epoch=-(-len(data.y_train) // dp.learning.batch_size),
            weight_check_every=weight_check_every,
        )
        model.on_rtl = progress
    if on_status:
        on_status("training with the chip in the loop")
    t1 = time.perf_counter()
    try:
        summary = train(
            dp,
            out,
            resume=resume,
            progress=progress,
            data=data,
            model=model,
            checkpoint_every=checkpoint_every,
        )
        if isinstance(model, SegmentedRtlMLP):
            model.join()
        else:
            model.stats.verify_bits = model._verify_base + sessions[0].verify_bits
    except Mismatch as exc:
        write_text(out / "mismatch.txt", str(exc) + "\n")
        write_json(
            out / "cosim_failure.json",
            {"mismatches": model.stats.mismatches, "stats": model.stats.to_dict()},
        )
        raise
    finally:
        if isinstance(model, SegmentedRtlMLP):
            model.close()
        # this process's cycles: host port, training and checks, all instances
        simulated = sum(b.cycles for b in backends)
        for sess in sessions:
            sess.close()
    train_s = time.perf_counter() - t1
    stats = model.stats
    if synthesis is not None and on_status:
        on_status("waiting for the area synthesis (yosys)")
    synth, synth_note = finish_synthesis(synthesis)
    metrics = summarize(
        dp,
        p,
        stats.counters,
        verify_bits=stats.verify_bits,
        train_samples=len(data.y_train),
        synth=synth,
    )
    if synth_note:
        metrics["area_mm2"]["source"]["synthesis"] = synth_note
    summary.update(
        {
            "command": "cosim",
            "engine": engine,
            "subarray_core": core,
            "rtl_every": rtl_every,
            "instances": instances,
            "pgo": pgo,
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
