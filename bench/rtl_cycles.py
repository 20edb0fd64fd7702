"""RTL cycles per training sample: forward, backward and update, BP against DFA, N layers.

For N = 2..6 weight layers (``--layers``; hidden widths ``--hidden`` = 32 by default, the
preset's input and class counts at the ends) and each learning rule (``--rules``, default
``bp,dfa``) this script generates the chip (``rows = cols = --array``, default 32; batch
``--batch``, default 4), runs one batch of random inputs and labels in Amaranth's simulator
(:mod:`insitu.hdl.amaranth_sim`) and reads the chip's own performance counters
``cycles_forward``, ``cycles_backward`` and ``cycles_update``, divided by ``samples``.

The sequencer has no data-dependent branches, so the weights are left at their reset value
(zero) and the counts hold for any data. With ``chip.wgu=auto`` BP shares one weight-gradient
unit (layers update one after another) while DFA has one per layer (all layers at once); BP's
backward pass walks the layers with transposed reads, DFA's LFSR feedback engines all run at
once. The table shows each phase per sample and the DFA speed-up of backward + update over BP
next to N; a third table prices the same counters with the co-simulation's cost model
(:mod:`insitu.cosim.metrics`): latency per sample at the clock, energy per sample and its
shares by component, area and its shares by component.

The Amaranth simulator runs a few hundred cycles per second on these chips, so by default the
precision is reduced to 4-bit weights and activations (``FAST``; it sets the number of columns
per weight and the conversion steps, not the structure): the whole sweep takes about three
minutes. ``--full-precision`` keeps the preset's 8 bits (about 8 minutes); ``--set`` adds any
other override. Run from the repository root::

    .venv/bin/python bench/rtl_cycles.py                 # N = 2..6, bp and dfa
    .venv/bin/python bench/rtl_cycles.py --quick         # N = 2..3
    .venv/bin/python bench/rtl_cycles.py --full-precision --layers 2,4
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import _common as common
import numpy as np

from insitu import config
from insitu.cosim.area import finish_synthesis, start_synthesis
from insitu.cosim.metrics import summarize
from insitu.hdl import host
from insitu.hdl.amaranth_sim import WAIT, simulate
from insitu.hdl.chip import Chip
from insitu.hdl_cli import chip_params

SCRIPT = "rtl_cycles"
#: Reduced precision that keeps the sweep to minutes in the Amaranth simulator.
FAST = ["precision.weight_bits=4", "precision.activation_bits=4"]
PHASES = ("forward", "backward", "update")


def design(
    preset: str, rule: str, n_layers: int, hidden: int, array: int, batch: int, extra: list[str]
) -> config.DesignPoint:
    """The preset with ``n_layers`` weight layers of ``hidden`` outputs (the last: classes)."""
    dp = common.load_design(
        preset,
        [
            f"learning.rule={rule}",
            f"array.rows={array}",
            f"array.cols={array}",
            f"learning.batch_size={batch}",
            *extra,
        ],
    )
    sizes = dp.network.layers
    layers = (sizes[0], *([hidden] * (n_layers - 1)), sizes[-1])
    return dp.model_copy(update={"network": dp.network.model_copy(update={"layers": layers})})


def measure(dp: config.DesignPoint, seed: int, area: str = "synth") -> dict[str, Any]:
    """One batch in the Amaranth simulator; the counters per sample and the run's cost.

    ``area="synth"``: the digital blocks' area from yosys (cached), as ``insitu cosim`` does."""
    p = chip_params(dp)
    synthesis = start_synthesis(p, None) if area == "synth" else None
    rng = np.random.default_rng(seed)
    n = p.batch
    a0 = rng.integers(0, 2**p.activation_bits, size=(n, p.widths[0]))
    labels = rng.integers(0, p.classes, size=n)
    program = [*host.write_batch(p, a0, labels), *host.start(n), WAIT, *host.read_counters()]
    t0 = time.perf_counter()
    words, cycles = simulate(Chip(p), program)
    wall = time.perf_counter() - t0
    ctr = host.unpack_counters(words)
    if ctr["samples"] != n:
        raise common.BenchError(f"the chip counted {ctr['samples']} samples, {n} were run")
    phases = {ph: ctr[f"cycles_{ph}"] / n for ph in PHASES}
    synth, why_not = finish_synthesis(synthesis)
    if why_not:
        common.err.print(f"area synthesis: {why_not}")
    costs = summarize(dp, p, ctr, synth=synth)  # latency, energy, area as insitu cosim has them
    if sum(ctr[f"cycles_{ph}"] for ph in PHASES) != ctr["cycles_busy"]:
        raise common.BenchError(f"phase cycles do not add up to cycles_busy: {ctr}")
    return {
        "rule": p.rule,
        "wgu": p.wgu,
        "layers": len(p.layers),
        "widths": list(p.widths),
        "subarrays": p.total_subarrays,
        "col_blocks": [lay.col_blocks for lay in p.layers],
        "batch": n,
        "per_sample": phases,
        "counters": ctr,
        "latency_s": costs["latency_s"]["per_sample"],
        "energy_j": costs["energy_j"],
        "area_mm2": costs["area_mm2"],
        "sim_cycles": cycles,
        "sim_seconds": wall,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="digits", help="design point (default digits)")
    p.add_argument("--rules", default="bp,dfa", help="comma-separated rules (bp, fa, dfa)")
    p.add_argument("--layers", default="2,3,4,5,6", help="weight-layer counts N (default 2..6)")
    p.add_argument("--hidden", type=int, default=32, help="hidden width (default 32)")
    p.add_argument("--array", type=int, default=32, help="subarray rows = cols (default 32)")
    p.add_argument("--batch", type=int, default=4, help="samples per batch (default 4)")
    p.add_argument(
        "--full-precision",
        action="store_true",
        help="keep the preset's precision (default: 4-bit weights and activations, faster)",
    )
    p.add_argument("--set", "-s", action="append", default=[], help="extra a.b=value override")
    p.add_argument("--seed", type=int, default=0, help="random inputs and labels")
    p.add_argument(
        "--area",
        choices=["synth", "model"],
        default="synth",
        help="digital blocks' area from yosys (default, cached) or cited unit areas",
    )
    p.add_argument("--quick", action="store_true", help="N = 2, 3 only")
    p.add_argument(
        "--out", type=Path, default=None, help="results folder (default runs/bench/rtl_cycles)"
    )
    args = p.parse_args()

    rules = [r.strip() for r in args.rules.split(",") if r.strip()]
    try:
        ns = sorted({int(x) for x in args.layers.split(",") if x.strip()})
    except ValueError:
        common.fail(f"--layers {args.layers!r}: give comma-separated integers")
    if args.quick:
        ns = [n for n in ns if n <= 3] or [2]
    if not ns or min(ns) < 1 or args.hidden < 1 or args.array < 1 or args.batch < 1:
        common.fail("--layers, --hidden, --array and --batch must be positive")
    extra = ([] if args.full_precision else FAST) + list(args.set)
    out: Path = args.out or common.default_out(SCRIPT, args.quick)
    common.warn_if_busy()

    results: dict[tuple[int, str], dict[str, Any]] = {}
    t_all = time.perf_counter()
    with common.user_errors("rerun the command"):
        for n in ns:
            for rule in rules:
                dp = design(args.preset, rule, n, args.hidden, args.array, args.batch, extra)
                res = measure(dp, args.seed, args.area)
                results[(n, rule)] = res
                ps = res["per_sample"]
                common.err.print(
                    f"N={n} {rule} ({res['wgu']} WGU, {res['subarrays']} subarrays): "
                    f"fwd {ps['forward']:.0f}, bwd {ps['backward']:.0f}, "
                    f"upd {ps['update']:.0f} cycles/sample; {res['sim_cycles']} cycles "
                    f"simulated in {res['sim_seconds']:.1f} s"
                )
    seconds = time.perf_counter() - t_all

    title = (
        f"Cycles per training sample ({args.preset}, hidden {args.hidden}, {args.array}x"
        f"{args.array} subarrays, batch {args.batch}, "
        f"{'preset precision' if args.full_precision else '4-bit weights/activations'})"
    )
    cols = ["N", "widths"]
    for rule in rules:
        cols += [f"{rule} fwd", f"{rule} bwd", f"{rule} upd", f"{rule} total"]
    rows = []
    for n in ns:
        row: list[Any] = [n, "-".join(map(str, results[(n, rules[0])]["widths"]))]
        for rule in rules:
            ps = results[(n, rule)]["per_sample"]
            row += [f"{ps[ph]:.1f}" for ph in PHASES] + [f"{sum(ps.values()):.1f}"]
        rows.append(row)
    common.print_table(title, cols, rows)

    speedups: list[dict[str, Any]] = []
    if "bp" in rules and "dfa" in rules:
        srows = []
        for n in ns:
            bp, dfa = results[(n, "bp")]["per_sample"], results[(n, "dfa")]["per_sample"]
            bu_bp, bu_dfa = bp["backward"] + bp["update"], dfa["backward"] + dfa["update"]
            sp = {
                "layers": n,
                "backward": bp["backward"] / dfa["backward"],
                "update": bp["update"] / dfa["update"],
                "backward_update": bu_bp / bu_dfa,
                "total": sum(bp.values()) / sum(dfa.values()),
            }
            speedups.append(sp)
            srows.append(
                [
                    n,
                    f"{sp['backward']:.2f}x",
                    f"{sp['update']:.2f}x",
                    f"{sp['backward_update']:.2f}x",
                    f"{sp['backward_update'] / n:.2f}",
                    f"{sp['total']:.2f}x",
                ]
            )
        common.print_table(
            "DFA speed-up over BP (BP cycles / DFA cycles, per sample)",
            ["N", "backward", "update", "bwd+upd", "bwd+upd / N", "whole step"],
            srows,
        )
        comps = sorted({c for r in results.values() for c in r["energy_j"]["by_component"]})
        areas = sorted({c for r in results.values() for c in r["area_mm2"]["by_component"]})
        hrows = []
        for n in ns:
            for rule in rules:
                r = results[(n, rule)]
                e, a = r["energy_j"], r["area_mm2"]
                hrows.append(
                    [
                        n,
                        rule,
                        f"{r['latency_s']['total'] * 1e6:.3f}",
                        f"{e['per_sample'] * 1e9:.2f}",
                    ]
                    + [f"{100 * e['by_component'].get(c, 0) / e['total']:.0f}" for c in comps]
                    + [f"{a['total']:.3f}"]
                    + [f"{100 * a['by_component'].get(c, 0) / a['total']:.0f}" for c in areas]
                )
        common.print_table(
            "Latency, energy and area per training sample (cosim cost model, docs/cosim.md)",
            ["N", "rule", "latency us", "nJ/sample"]
            + [f"E% {c}" for c in comps]
            + ["mm^2"]
            + [f"A% {c}" for c in areas],
            hrows,
        )
        wgus = {rule: results[(ns[0], rule)]["wgu"] for rule in rules}
        common.console.print(
            f"WGUs: bp {wgus['bp']} (layers updated one after another), dfa {wgus['dfa']} "
            f"(all layers at once). {len(results)} chips simulated in {seconds:.0f} s."
        )
    common.write_results(
        out,
        SCRIPT,
        {
            "preset": args.preset,
            "hidden": args.hidden,
            "array": args.array,
            "batch": args.batch,
            "overrides": extra,
            "seconds": seconds,
            "runs": list(results.values()),
            "speedups": speedups,
        },
    )


if __name__ == "__main__":
    main()
