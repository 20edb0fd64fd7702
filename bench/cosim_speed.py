"""Co-simulation speed: samples/s with the RTL in the loop, against the golden model alone.

In one run, for one design point (default: the small digits chip of ``docs/cosim.md``,
64-16-10 on 32x32 subarrays, 6-bit weights, batch 8; ``--set`` changes it; another
``--design`` is taken as it is, in hardware mode), this script

1. trains ``--epochs`` epochs on the golden model alone (``insitu train``'s loop, hardware
   mode, one torch thread) and times it;
2. trains the same epochs with every batch through the Verilator model (``insitu cosim``'s
   :func:`insitu.cosim.run.run_cosim`, bit-exact check on; ``--instances K`` chip instances
   in parallel, ``--subarray-core``) and times it;
3. measures the raw speed of the same compiled model: cycles per second of START-to-idle
   training runs of random batches, one C call per batch (no Python in between), one
   instance.

Printed: samples/s of both runs and their time ratio, the RTL cycles the co-simulation
simulated per wall second, and the share of the raw model speed that the co-simulation keeps
(its cycles/s over K times the raw cycles/s; the rest goes to the host port from Python,
the golden model, read-back checks, evaluation and, with K > 1, the state loads at the
segments' starts and the cores' competition for memory). The build is cached
(``$INSITU_CACHE``), so only the first run pays for it; the machine's load is printed. Run
from the repository root::

    .venv/bin/python bench/cosim_speed.py
    .venv/bin/python bench/cosim_speed.py --set learning.rule=bp --epochs 2
    # a whole MNIST epoch of 784-256-10 on two chip instances (docs/cosim.md)
    .venv/bin/python bench/cosim_speed.py --design mnist --set network.layers=[784,256,10] \
        --instances 2 --weight-check-every 1000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as common
import rtl_speed
import torch

from insitu import config
from insitu.algo.train import train
from insitu.cosim.run import chip_for, core_for, make_backend, run_cosim
from insitu.cosim.session import VerilatorBackend

SCRIPT = "cosim_speed"
SMALL = [
    "learning.mode=hardware",
    "network.layers=[64,16,10]",
    "array.rows=32",
    "array.cols=32",
    "precision.weight_bits=6",
    "learning.batch_size=8",
]


def raw_speed(
    dp: config.DesignPoint, core: str, batches: int = 30, seed: int = 0, pgo: bool = False
) -> dict[str, float]:
    """Cycles/s of the compiled model on START-to-idle runs (rtl_speed's timed batches)."""
    p = chip_for(dp)
    backend = make_backend(p, "verilator", core="model" if core == "model" else "rtl", pgo=pgo)
    assert isinstance(backend, VerilatorBackend)
    res = rtl_speed.simulate(backend.model, p, batches, seed)
    backend.close()
    return {
        "cycles": res.run_cycles,
        "seconds": res.run_seconds,
        "cycles_per_s": res.run_cycles / res.run_seconds,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--design", default="digits", help="preset or design file (default digits)")
    ap.add_argument("--set", "-s", action="append", default=[], help="a.b=value override")
    ap.add_argument("--epochs", type=int, default=1, help="epochs of each run (default 1)")
    ap.add_argument("--out", type=Path, default=None, help="results folder")
    ap.add_argument("--instances", type=int, default=1, help="chip instances (default 1)")
    ap.add_argument(
        "--subarray-core", default="auto", help="auto, rtl or model (insitu cosim's option)"
    )
    ap.add_argument(
        "--weight-check-every", type=int, default=50, help="RTL batches between weight checks"
    )
    ap.add_argument(
        "--pgo", action="store_true", help="profile-guided model build (insitu cosim --pgo)"
    )
    args = ap.parse_args()
    if args.epochs < 1:
        common.fail("--epochs must be >= 1")
    if args.instances < 1:
        common.fail("--instances must be >= 1")
    out: Path = args.out or common.default_out(SCRIPT, False)
    common.warn_if_busy()
    torch.set_num_threads(1)
    with common.user_errors("rerun the command (the model build is cached)"):
        base = SMALL if args.design == "digits" else ["learning.mode=hardware"]
        dp = common.load_design(args.design, [*base, f"learning.epochs={args.epochs}", *args.set])
        core = core_for(chip_for(dp), "verilator", args.subarray_core)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            g = train(dp, Path(tmp) / "golden")
            golden_s = time.perf_counter() - t0
            common.err.print(f"golden model alone: {golden_s:.1f} s")
            c = run_cosim(
                dp,
                Path(tmp) / "cosim",
                subarray_core=core,
                instances=args.instances,
                weight_check_every=args.weight_check_every,
                pgo=args.pgo,
            )
            build_note = "cached" if c["build_reused"] else f"{c['build_s']:.0f} s"
            common.err.print(f"with the RTL: {c['cosim_wall_s']:.1f} s (build {build_note})")
        raw = raw_speed(dp, core, pgo=args.pgo)
    samples = c["rtl"]["rtl_samples"]
    cosim_cps = c["rtl_cycles_simulated"] / c["cosim_wall_s"]
    res: dict[str, Any] = {
        "design": dp.dump(),
        "samples": samples,
        "golden_s": golden_s,
        "golden_samples_per_s": samples / golden_s,
        "cosim_s": c["cosim_wall_s"],
        "cosim_samples_per_s": samples / c["cosim_wall_s"],
        "ratio_cosim_to_golden": c["cosim_wall_s"] / golden_s,
        "cosim_cycles_per_s": cosim_cps,
        "raw_cycles_per_s": raw["cycles_per_s"],
        "share_of_raw": cosim_cps / (args.instances * raw["cycles_per_s"]),
        "instances": args.instances,
        "subarray_core": core,
        "weight_check_every": args.weight_check_every,
        "pgo": args.pgo,
        "mismatches": c["mismatches"],
        "test_accuracy": {"golden": g["test_accuracy"], "cosim": c["test_accuracy"]},
        "cosim_summary": c,
    }
    common.print_table(
        f"Co-simulation speed ({dp.learning.rule}, {samples} training samples, "
        f"{args.epochs} epoch(s), {args.instances} instance(s), subarray cores: {core})",
        ["run", "wall s", "samples/s", "RTL cycles/s", "test acc"],
        [
            [
                "golden model alone",
                f"{golden_s:.1f}",
                f"{samples / golden_s:.0f}",
                "-",
                common.pct(g["test_accuracy"]),
            ],
            [
                "RTL in the loop",
                f"{c['cosim_wall_s']:.1f}",
                f"{samples / c['cosim_wall_s']:.0f}",
                f"{cosim_cps / 1e3:.1f}k",
                common.pct(c["test_accuracy"]),
            ],
            [
                "raw model (C loop, 1 instance)",
                f"{raw['seconds']:.2f}",
                "-",
                f"{raw['cycles_per_s'] / 1e3:.1f}k",
                "-",
            ],
        ],
    )
    common.err.print(
        f"co-simulation / golden time: {res['ratio_cosim_to_golden']:.1f}x; share of the raw "
        f"model speed kept: {res['share_of_raw']:.0%}; mismatches: {c['mismatches']}"
    )
    common.write_results(out, SCRIPT, res)


if __name__ == "__main__":
    main()
