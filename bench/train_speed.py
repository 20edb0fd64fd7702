"""Training speed: wall time per step of float vs hardware-aware training of the same network.

In one process, for the learning rules BP and DFA, this times ``train_step`` of

- ``torch``: a hand-written plain torch reference (``nn.Linear`` without bias, ReLU,
  ``cross_entropy``, autograd, Adam at the preset's learning rate): what the network costs in
  ordinary float torch training (always backprop, timed again alongside each rule);
- ``float``: the framework's float path (``learning.mode=float``, :class:`FloatMLP`, explicit
  per-layer updates of the rule);
- ``hardware``: hardware-aware training (``learning.mode=hardware``, :class:`HardwareMLP`: 8-bit
  activations and weights, 5-bit ADC with calibrated range, 128-row subarrays), with the
  native kernels where they built (``algo/native.py``; the script prints which path ran);
  ``--device-effects`` adds the device model (``array.device_effects=true``, the design's
  device preset).

The network is the ``mnist`` preset (784-256-256-10, batch 64) when MNIST is found (``--data-dir``,
``$INSITU_MNIST_DIR`` or ``../shared/data/mnist``), else ``digits`` (64-128-128-10, batch 32).
Each model runs ``--warmup`` steps (default 5), then ``--steps`` timed steps (default 100) on the
same pre-sliced full batches, taking turns in ``--rounds`` chunks (default 5) so that a change of
machine load hits all three alike; ms/step is the mean (``results.json`` also has median and min).
The timings are only meaningful on an otherwise idle machine: the script warns when the load
average says otherwise. Per-epoch time is extrapolated as
``ceil(train samples / batch) * ms/step`` plus, for hardware, one ADC calibration (``train``
calibrates once per epoch); ``--epochs`` (default: the preset's) scales that to a whole run. Test
evaluation is not included. torch's thread count is left at its default and printed.

This script does not train to completion, so it has no run folders; it writes only
``<out>/results.json``. Run from the repository root::

    .venv/bin/python bench/train_speed.py               # mnist if present, else digits
    .venv/bin/python bench/train_speed.py --quick       # 20 steps, a smoke test
    .venv/bin/python bench/train_speed.py --dataset digits --steps 200
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _common as common
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from insitu import config
from insitu.algo import native
from insitu.algo.data import Dataset, batches
from insitu.algo.hardware import HardwareMLP
from insitu.algo.train import CALIBRATION_SAMPLES, build_model, prepare_inputs

SCRIPT = "train_speed"
HARDWARE = common.HARDWARE

Step = Callable[[Tensor, Tensor], Any]


class TorchMLP:
    """Plain float torch reference: bias-free Linear + ReLU, cross-entropy, autograd, Adam."""

    def __init__(self, dp: config.DesignPoint) -> None:
        torch.manual_seed(dp.learning.seed)
        sizes = dp.network.layers
        mods: list[nn.Module] = []
        for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
            mods.append(nn.Linear(fan_in, fan_out, bias=False))
            if i < len(sizes) - 2:
                mods.append(nn.ReLU())
        self.net = nn.Sequential(*mods)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=dp.learning.lr)

    def train_step(self, x: Tensor, labels: Tensor) -> tuple[Tensor, float]:
        self.opt.zero_grad(set_to_none=True)
        logits = self.net(x)
        loss = F.cross_entropy(logits, labels)
        loss.backward()
        self.opt.step()
        return logits, float(loss.item())  # .item() like the framework's float(loss)


def batch_indices(data: Dataset, dp: config.DesignPoint, count: int) -> list[np.ndarray]:
    """``count`` full batches in training order (epochs 0, 1, ... as needed)."""
    bs = dp.learning.batch_size
    if len(data.x_train) < bs:
        raise common.BenchError(f"{len(data.x_train)} training samples < batch size {bs}")
    out: list[np.ndarray] = []
    epoch = 0
    idx_all = np.arange(len(data.x_train))
    while len(out) < count:
        for idx, _ in batches(idx_all, data.y_train, bs, seed=dp.learning.seed, epoch=epoch):
            if len(idx) == bs:
                out.append(idx)
            if len(out) == count:
                break
        epoch += 1
    return out


def time_steps(step: Step, xs: list[Tensor], ys: list[Tensor]) -> list[float]:
    """Seconds of each step over the given batches."""
    times: list[float] = []
    for x, y in zip(xs, ys, strict=True):
        t0 = time.perf_counter()
        step(x, y)
        times.append(time.perf_counter() - t0)
    return times


def summarize(times: list[float]) -> dict[str, float]:
    return {
        "ms_per_step": 1e3 * sum(times) / len(times),
        "median_ms_per_step": 1e3 * statistics.median(times),
        "min_ms_per_step": 1e3 * min(times),
    }


def measure(
    dp_float: config.DesignPoint,
    dp_hw: config.DesignPoint,
    data: Dataset,
    idx: list[np.ndarray],
    warmup: int,
    rounds: int,
) -> dict[str, dict[str, float]]:
    """Time torch, float and hardware steps on the same batches.

    After ``warmup`` untimed steps each, the timed batches are cut into ``rounds`` chunks and
    the three models take turns chunk by chunk, so a change of machine load during the
    measurement affects all three alike.
    """
    y = torch.from_numpy(np.array(data.y_train))
    ys = [y[i] for i in idx]
    xf_all = prepare_inputs(dp_float, data.x_train)
    xh_all = prepare_inputs(dp_hw, data.x_train)
    xf = [xf_all[i] for i in idx]
    xh = [xh_all[i] for i in idx]

    ref = TorchMLP(dp_float)
    torch.manual_seed(dp_float.learning.seed)
    fmodel = build_model(dp_float)
    torch.manual_seed(dp_hw.learning.seed)
    hmodel = build_model(dp_hw)
    assert isinstance(hmodel, HardwareMLP)
    t0 = time.perf_counter()
    hmodel.calibrate_adc(xh_all[:CALIBRATION_SAMPLES])
    calib_ms = 1e3 * (time.perf_counter() - t0)

    models: dict[str, tuple[Step, list[Tensor]]] = {
        "torch": (ref.train_step, xf),
        "float": (fmodel.train_step, xf),
        "hardware": (hmodel.train_step, xh),
    }
    times: dict[str, list[float]] = {k: [] for k in models}
    for step, xs in models.values():
        time_steps(step, xs[:warmup], ys[:warmup])
    timed = len(idx) - warmup
    bounds = [warmup + timed * r // rounds for r in range(rounds + 1)]
    for lo, hi in itertools.pairwise(bounds):
        for name, (step, xs) in models.items():
            times[name] += time_steps(step, xs[lo:hi], ys[lo:hi])
    result = {k: summarize(v) for k, v in times.items()}
    result["hardware"]["calibration_ms"] = calib_ms
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--dataset",
        choices=["auto", "mnist", "digits"],
        default="auto",
        help="auto: mnist when found, else digits",
    )
    p.add_argument("--rules", default="bp,dfa", help="comma-separated rules (bp, fa, dfa)")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 100)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 5)")
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs of the extrapolated whole run (default: the preset's)",
    )
    p.add_argument(
        "--rounds", type=int, default=5, help="the models take turns in this many chunks"
    )
    p.add_argument("--quick", action="store_true", help="smoke setting: 20 steps, 2 warm-up")
    p.add_argument(
        "--device-effects",
        action="store_true",
        help="hardware runs with the device model (array.device_effects=true)",
    )
    common.add_common_options(p, SCRIPT)
    args = p.parse_args()

    steps = args.steps if args.steps is not None else (20 if args.quick else 100)
    warmup = args.warmup if args.warmup is not None else (2 if args.quick else 5)
    if steps < 1 or warmup < 0 or not 1 <= args.rounds <= steps:
        common.fail("--steps must be >= 1, --warmup >= 0 and --rounds in 1..steps")
    common.set_threads(args.threads)
    common.warn_if_busy()
    hardware = [*HARDWARE, "array.device_effects=true"] if args.device_effects else HARDWARE
    common.err.print(native.status())
    rules = [r.strip() for r in args.rules.split(",") if r.strip()]
    out: Path = args.out or common.default_out(SCRIPT, args.quick)

    mnist = common.mnist_dir(args.data_dir, needed=args.dataset == "mnist")
    if args.dataset == "auto":
        dataset = "mnist" if mnist is not None else "digits"
        if dataset == "digits":
            common.err.print("MNIST not found (see --data-dir): timing the digits network")
    else:
        dataset = args.dataset
    base = common.data_dir_overrides(dataset, args.data_dir)
    if args.epochs is not None:
        base.append(f"learning.epochs={args.epochs}")

    rows: list[dict[str, Any]] = []
    with common.user_errors("rerun the command"):
        probe = common.load_design(dataset, base)
        data = common.dataset_for(probe)
        bs = probe.learning.batch_size
        steps_per_epoch = math.ceil(len(data.x_train) / bs)
        idx = batch_indices(data, probe, warmup + steps)
        for rule in rules:
            common.err.print(
                f"timing {dataset} {rule}: torch/float/hardware, {warmup}+{steps} steps each ..."
            )
            dp_f = common.load_design(dataset, [*base, f"learning.rule={rule}"])
            dp_h = common.load_design(dataset, [*base, f"learning.rule={rule}", *hardware])
            res = measure(dp_f, dp_h, data, idx, warmup, args.rounds)
            torch_ref = res["torch"]
            t, f, h = (
                torch_ref["ms_per_step"],
                res["float"]["ms_per_step"],
                res["hardware"]["ms_per_step"],
            )
            epoch_s = {
                "torch": steps_per_epoch * t / 1e3,
                "float": steps_per_epoch * f / 1e3,
                "hardware": (steps_per_epoch * h + res["hardware"]["calibration_ms"]) / 1e3,
            }
            rows.append(
                {
                    "rule": rule,
                    "torch": torch_ref,
                    "float": res["float"],
                    "hardware": res["hardware"],
                    "ratio_float_over_torch": f / t,
                    "ratio_hardware_over_torch": h / t,
                    "ratio_hardware_over_float": h / f,
                    "epoch_s": epoch_s,
                    "run_s": {k: v * probe.learning.epochs for k, v in epoch_s.items()},
                }
            )

    epochs = probe.learning.epochs
    layers = "-".join(str(n) for n in probe.network.layers)
    title = (
        f"{dataset} {layers}, batch {bs}: ms per training step (mean of {steps} after "
        f"{warmup} warm-up); torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    common.print_table(
        title,
        ["rule", "torch ms", "float ms", "hardware ms", "float/torch", "hw/torch", "hw/float"],
        [
            [
                r["rule"],
                f"{r['torch']['ms_per_step']:.2f}",
                f"{r['float']['ms_per_step']:.2f}",
                f"{r['hardware']['ms_per_step']:.2f}",
                f"{r['ratio_float_over_torch']:.2f}x",
                f"{r['ratio_hardware_over_torch']:.1f}x",
                f"{r['ratio_hardware_over_float']:.1f}x",
            ]
            for r in rows
        ],
    )
    common.print_table(
        f"extrapolated: {steps_per_epoch} steps/epoch, {epochs} epochs (no test evaluation)",
        ["rule", "torch s/epoch", "float s/epoch", "hw s/epoch", f"hw {epochs}-epoch min"],
        [
            [
                r["rule"],
                f"{r['epoch_s']['torch']:.1f}",
                f"{r['epoch_s']['float']:.1f}",
                f"{r['epoch_s']['hardware']:.1f}",
                f"{r['run_s']['hardware'] / 60:.1f}",
            ]
            for r in rows
        ],
    )
    common.write_results(
        out,
        SCRIPT,
        {
            "dataset": dataset,
            "layers": list(probe.network.layers),
            "batch_size": bs,
            "train_samples": len(data.x_train),
            "steps_per_epoch": steps_per_epoch,
            "epochs": epochs,
            "timed_steps": steps,
            "warmup_steps": warmup,
            "rounds": args.rounds,
            "hardware_overrides": hardware,
            "native": native.status(),
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
