"""Spiking rules on Yin-Yang: accuracy, weight updates, events, energy and time per epoch.

Trains the ``yinyang`` preset (4 latency-coded features + a bias spike, 120 LIF neurons, 3
outputs) with each spiking rule, one run folder each (reused when finished, resumed when
interrupted, see ``_common.run_or_reuse``):

- ``bptt``: surrogate-gradient BPTT, membrane readout (the preset's lr 0.02, 30 epochs);
- ``eventprop``: exact EventProp gradients, first-spike loss with Wunderlich and Pehle's Yin-Yang
  constants and weight bumps for silent neurons (the preset), lr 0.005, 10 epochs;
- ``error-triggered``: the error-triggered three-factor rule (lr 0.0025 per unit of error, target
  0.005 error events per neuron and step), 30 epochs;
- ``dense three-factor``: the same rule without error events (``snn.error_trigger=false``), the
  baseline of the update count.

and prints one table: test accuracy, cell updates (an update is one synapse programmed once),
the reduction factor of the error-triggered rule against the dense rule, spikes and error
events per sample, the priced energy (``insitu.algo.snn_cost``), seconds per epoch (mean over
epochs; the machine's load, printed, inflates it) and the lowest and highest test accuracy of the
last 5 epochs (how settled the final figure is: 1000 test samples, so +-0.7% is one standard
error at 95%). ``--epochs`` overrides every rule's epochs,
``--quick`` runs 1 epoch each into ``runs/bench/snn_rules-quick``. Run from the repository root::

    .venv/bin/python bench/snn_rules.py --threads 1
    .venv/bin/python bench/snn_rules.py --quick
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import _common as common

SCRIPT = "snn_rules"

#: (name, overrides, default epochs)
RULES: list[tuple[str, list[str], int]] = [
    ("bptt", ["learning.rule=bptt"], 30),
    ("eventprop", ["learning.rule=eventprop", "learning.lr=0.005"], 10),
    ("error-triggered", ["learning.rule=error-triggered", "learning.lr=0.0025"], 30),
    (
        "dense three-factor",
        ["learning.rule=error-triggered", "learning.lr=0.0025", "snn.error_trigger=false"],
        30,
    ),
]
#: epochs whose test accuracy the last column spans
LAST = 5


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=None, help="epochs of every rule")
    ap.add_argument("--quick", action="store_true", help="1 epoch each (smoke test)")
    ap.add_argument("--rules", nargs="*", default=None, help="subset of the rule names")
    common.add_common_options(ap, SCRIPT)
    args = ap.parse_args()
    common.set_threads(args.threads)
    common.warn_if_busy()
    out: Path = args.out or common.default_out(SCRIPT, args.quick)
    rows: list[list[Any]] = []
    payload: dict[str, Any] = {"runs": {}}
    with common.user_errors(f"rerun `python bench/{SCRIPT}.py` to continue"):
        results: dict[str, dict[str, Any]] = {}
        for name, sets, default_epochs in RULES:
            if args.rules and name not in args.rules:
                continue
            epochs = 1 if args.quick else (args.epochs or default_epochs)
            dp = common.load_design("yinyang", [*sets, f"learning.epochs={epochs}"])
            run_dir = out / common.run_dir_name(name.replace(" ", "-"), epochs=epochs)
            res = common.run_or_reuse(name, dp, run_dir, log=common._log_line)
            summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
            results[name] = {"result": res.to_dict(), "spiking": summary["spiking"]}
            results[name]["history"] = summary["history"]
        dense = results.get("dense three-factor")
        for name, r in results.items():
            ev = r["spiking"]["events"]
            hist = r["history"]
            per_epoch = sum(h["seconds"] for h in hist) / len(hist)
            samples = max(1, ev["samples"])
            reduction = "-"
            if name == "error-triggered" and dense:
                ratio = dense["spiking"]["events"]["cell_updates"] / max(1, ev["cell_updates"])
                reduction = f"{ratio:.1f}x"
            rows.append(
                [
                    name,
                    common.pct(r["result"]["test_accuracy"]),
                    r["result"]["epochs"],
                    f"{ev['cell_updates']:.3g}",
                    reduction,
                    f"{ev['spikes'] / samples:.1f}",
                    f"{ev['error_events'] / samples:.1f}",
                    f"{r['spiking']['energy']['total_pj'] / samples / 1e3:.2f}",
                    f"{per_epoch:.1f}",
                    "-".join(
                        common.pct(v)
                        for v in (
                            min(h["test_accuracy"] for h in hist[-LAST:]),
                            max(h["test_accuracy"] for h in hist[-LAST:]),
                        )
                    ),
                ]
            )
            payload["runs"][name] = r
    common.print_table(
        "Spiking rules on Yin-Yang (yinyang preset, 5000 train / 1000 test)",
        [
            "rule",
            "test acc %",
            "epochs",
            "cell updates",
            "reduction",
            "spikes/sample",
            "error events/sample",
            "priced nJ/sample",
            "s/epoch",
            f"test acc % (last {LAST})",
        ],
        rows,
    )
    common.write_results(out, SCRIPT, payload)


if __name__ == "__main__":
    main()
