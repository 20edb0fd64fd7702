"""Non-ideality sweeps: hardware-aware test accuracy of BP and DFA against ADC bits and variation.

Three sweeps, each trained with BP and with DFA in hardware mode (``learning.mode=hardware``,
8-bit activations and weights, 128-row subarrays, calibrated ADC range):

``adc``
    ``array.adc_bits`` = 1..8, device effects off (the deterministic integer contract), so the
    ADC is the only non-ideality;
``c2c``
    cycle-to-cycle write variation ``array.c2c_sigma`` = 0, 0.005, 0.01, 0.02, 0.05, 0.1
    (fraction of the conductance range per pulse), 5-bit ADC;
``d2d``
    device-to-device variation ``array.d2d_sigma`` = 0, 0.05, 0.1, 0.2, 0.3, 0.5 (spread of a
    fixed per-device gain), 5-bit ADC.

The c2c and d2d sweeps turn ``array.device_effects`` on with the ``rram`` device preset (its
97 levels) but set every other effect to neutral (``read_noise_sigma=0``, ``stuck_at_rate=0``,
``nl_ltp=0``, ``nl_ltd=0`` and the other variation 0), so each sweep isolates one effect.

Dataset: ``procedural`` (default; the ``procedural`` preset, 40-256-256-10, hard enough to
separate BP from DFA; about 4 s per hardware epoch, 10 epochs by default) or ``mnist`` (the
``mnist`` preset, its 10 epochs; about 10 min per hardware run). ``--sweep all`` is 40 runs.
Every run trains into ``<out>/<dataset>/<sweep>/<value>-<rule>-e<epochs>``; a rerun reuses
finished runs and resumes killed ones. Runs are independent: ``--jobs N`` trains N at a time in
worker processes of one torch thread each (``--jobs 1``: in this process, torch's default
threads).
Run from the repository root::

    .venv/bin/python bench/sweep_nonideal.py --jobs 2                 # all sweeps, procedural
    .venv/bin/python bench/sweep_nonideal.py --sweep adc --epochs 20
    .venv/bin/python bench/sweep_nonideal.py --quick                  # smoke: 1 epoch, 3 values
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import _common as common

SCRIPT = "sweep_nonideal"
RULES = ("bp", "dfa")
# The ADC sweep's own array.adc_bits comes later in each run's overrides and wins.
HARDWARE = [*common.HARDWARE, "array.device=rram"]
NEUTRAL_DEVICE = [
    "array.device_effects=true",
    "array.read_noise_sigma=0",
    "array.stuck_at_rate=0",
    "array.nl_ltp=0",
    "array.nl_ltd=0",
]
#: sweep name -> (swept field, values, overrides fixed for the sweep, quick values)
SWEEPS: dict[str, tuple[str, list[float], list[str], list[float]]] = {
    "adc": (
        "array.adc_bits",
        [1, 2, 3, 4, 5, 6, 7, 8],
        ["array.device_effects=false"],
        [2, 5, 8],
    ),
    "c2c": (
        "array.c2c_sigma",
        [0.0, 0.005, 0.01, 0.02, 0.05, 0.1],
        ["array.adc_bits=5", *NEUTRAL_DEVICE, "array.d2d_sigma=0"],
        [0.0, 0.02, 0.1],
    ),
    "d2d": (
        "array.d2d_sigma",
        [0.0, 0.05, 0.1, 0.2, 0.3, 0.5],
        ["array.adc_bits=5", *NEUTRAL_DEVICE, "array.c2c_sigma=0"],
        [0.0, 0.1, 0.5],
    ),
}
DEFAULT_EPOCHS = {"procedural": 10, "mnist": 10}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sweep", choices=[*SWEEPS, "all"], default="all")
    p.add_argument("--dataset", choices=list(DEFAULT_EPOCHS), default="procedural")
    p.add_argument("--epochs", type=int, default=None, help="epochs per run (default 10)")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel (worker processes)")
    p.add_argument(
        "--quick", action="store_true", help="smoke setting: 1 epoch, 3 values per sweep"
    )
    common.add_common_options(p, SCRIPT, threads=False)
    args = p.parse_args()

    if args.jobs < 1:
        common.fail("--jobs must be >= 1")
    sweeps = list(SWEEPS) if args.sweep == "all" else [args.sweep]
    epochs = args.epochs or (1 if args.quick else DEFAULT_EPOCHS[args.dataset])
    out: Path = args.out or common.default_out(SCRIPT, args.quick)
    if args.dataset == "mnist":
        common.mnist_dir(args.data_dir, needed=True)
    base = [
        *common.data_dir_overrides(args.dataset, args.data_dir),
        f"learning.epochs={epochs}",
        *HARDWARE,
    ]

    specs: list[common.RunSpec] = []
    plan: dict[str, list[tuple[float, dict[str, str]]]] = {}
    for sweep in sweeps:
        field, values, fixed, quick_values = SWEEPS[sweep]
        plan[sweep] = []
        for value in quick_values if args.quick else values:
            names: dict[str, str] = {}
            for rule in RULES:
                name = f"{sweep}={value}-{rule}"
                sets = [*base, *fixed, f"{field}={value}", f"learning.rule={rule}"]
                folder = common.run_dir_name(value, rule, epochs=epochs)
                run_dir = out / args.dataset / sweep / folder
                specs.append(common.RunSpec(name, common.load_design(args.dataset, sets), run_dir))
                names[rule] = name
            plan[sweep].append((value, names))

    common.err.print(
        f"{len(specs)} runs on {args.dataset}, {epochs} epochs, {args.jobs} at a time -> {out}"
    )
    with common.user_errors(f"rerun the same command to continue (results in {out})"):
        results = common.run_many(specs, jobs=args.jobs)

    tables: dict[str, list[dict[str, Any]]] = {}
    for sweep in sweeps:
        field = SWEEPS[sweep][0]
        rows: list[dict[str, Any]] = []
        for value, names in plan[sweep]:
            bp, dfa = results[names["bp"]], results[names["dfa"]]
            rows.append(
                {
                    "value": value,
                    "bp": bp.test_accuracy,
                    "dfa": dfa.test_accuracy,
                    "gap": bp.test_accuracy - dfa.test_accuracy,
                    "runs": {"bp": bp.to_dict(), "dfa": dfa.to_dict()},
                }
            )
        tables[sweep] = rows
        common.print_table(
            f"{sweep}: test accuracy (%) vs {field}, {args.dataset}, {epochs} epochs",
            [field, "BP", "DFA", "BP-DFA (pp)"],
            [
                [r["value"], common.pct(r["bp"]), common.pct(r["dfa"]), f"{100 * r['gap']:+.2f}"]
                for r in rows
            ],
        )
    common.write_results(
        out,
        SCRIPT,
        {
            "dataset": args.dataset,
            "epochs": epochs,
            "base_overrides": base,
            "sweeps": {
                s: {"field": SWEEPS[s][0], "fixed_overrides": SWEEPS[s][2], "rows": tables[s]}
                for s in sweeps
            },
        },
    )


if __name__ == "__main__":
    main()
