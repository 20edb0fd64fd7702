"""The training run: epochs, evaluation, history, checkpoints, resume and summary.json.

A checkpoint holds everything the next epoch depends on (weights, optimizer or integer state,
random generators, history), written atomically after every epoch, so a killed run resumed with
``resume=True`` ends with the same results as an uninterrupted one with the same seed. With
``checkpoint_every = K`` a checkpoint is also written every K batches inside an epoch: it adds
the batch reached and the epoch's running loss and accuracy, and the model's state carries the
ADC ranges calibrated at the epoch's start; the batch order is fixed by (seed, epoch), so a
resumed run skips the batches already trained and goes on.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from insitu.atomic import write_bytes_with, write_json
from insitu.config import DesignError, DesignPoint

from .data import Dataset, batches, load_dataset
from .floatnet import FloatMLP
from .hardware import HardwareMLP
from .plan import quantize_inputs
from .snn_model import SpikingNet

CHECKPOINT = "checkpoint.pt"
SUMMARY = "summary.json"
CALIBRATION_SAMPLES = 256

Progress = Callable[[dict[str, Any]], None]


def build_model(dp: DesignPoint) -> FloatMLP | HardwareMLP | SpikingNet:
    if dp.network.activation == "lif":
        return SpikingNet(dp)
    return HardwareMLP(dp) if dp.learning.mode == "hardware" else FloatMLP(dp)


def prepare_inputs(dp: DesignPoint, x: np.ndarray) -> torch.Tensor:
    """Float mode and spiking networks: the features (spiking networks encode them into spikes
    themselves); hardware mode: the quantized integer inputs of the contract."""
    if dp.learning.mode == "hardware" and dp.network.activation != "lif":
        return torch.from_numpy(quantize_inputs(x, dp.precision.activation_bits))
    return torch.from_numpy(np.array(x, dtype=np.float32))


def _comparable(dp: DesignPoint) -> dict[str, Any]:
    d = dp.dump()
    d["learning"] = {k: v for k, v in d["learning"].items() if k != "epochs"}
    return d


def load_data(dp: DesignPoint) -> Dataset:
    return load_dataset(dp.network.dataset, data_dir=dp.network.data_dir, seed=dp.learning.seed)


def _checkpoint(path: Path, state: dict[str, Any]) -> None:
    def _save(f: Any) -> None:
        buf = io.BytesIO()
        torch.save(state, buf)
        f.write(buf.getvalue())

    write_bytes_with(path, _save)


def train(
    dp: DesignPoint,
    out_dir: str | Path,
    *,
    resume: bool = False,
    progress: Progress | None = None,
    data: Dataset | None = None,
    model: FloatMLP | HardwareMLP | SpikingNet | None = None,
    checkpoint_every: int = 0,
) -> dict[str, Any]:
    """Train the design point, writing checkpoints and ``summary.json`` into ``out_dir``.

    ``checkpoint_every``: also checkpoint every that many batches inside an epoch (0: at the
    end of each epoch only).

    ``model`` replaces the one :func:`build_model` makes (the co-simulation passes a
    :class:`HardwareMLP` whose steps also run on the RTL).
    """
    out = Path(out_dir)
    torch.manual_seed(dp.learning.seed)
    data = data or load_data(dp)
    x_train, x_test = prepare_inputs(dp, data.x_train), prepare_inputs(dp, data.x_test)
    y_train, y_test = torch.tensor(data.y_train), torch.tensor(data.y_test)
    model = model if model is not None else build_model(dp)
    if checkpoint_every < 0:
        raise DesignError(f"--checkpoint-every = {checkpoint_every}: allowed: 0 or more batches")
    if checkpoint_every and dp.network.activation == "lif":
        raise DesignError(
            f"--checkpoint-every = {checkpoint_every} with network.activation = lif: allowed: 0 "
            "(a spiking network's event counts are kept per epoch, so it checkpoints at epoch "
            "ends)"
        )
    history: list[dict[str, Any]] = []
    start_epoch = 0
    elapsed = 0.0
    # a checkpoint inside an epoch: batches already trained, and the running sums
    skip, running = 0, (0, 0, 0.0)
    ckpt_path = out / CHECKPOINT
    if resume and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, weights_only=False)
        if _comparable(DesignPoint.model_validate(ckpt["design"])) != _comparable(dp):
            raise DesignError(
                f"--resume: {ckpt_path} was written for a different design point; "
                "only learning.epochs may change on resume (use a new --out folder)"
            )
        model.load_state_dict(ckpt["model"])
        history = ckpt["history"]
        start_epoch = ckpt["epoch"]
        elapsed = ckpt["elapsed"]
        if "batch" in ckpt:
            skip = int(ckpt["batch"])
            running = (int(ckpt["correct"]), int(ckpt["seen"]), float(ckpt["loss_sum"]))
    elif ckpt_path.exists() and not resume:
        raise DesignError(
            f"{out} already holds a run (checkpoint.pt): pass --resume or a new --out"
        )

    for epoch in range(start_epoch, dp.learning.epochs):
        t0 = time.perf_counter()
        model.start_epoch(epoch)
        # inside an epoch the restored state already holds this epoch's calibration
        if skip == 0 and isinstance(model, HardwareMLP):
            model.calibrate_adc(x_train[:CALIBRATION_SAMPLES])
        elif skip == 0 and isinstance(model, SpikingNet):
            model.calibrate(x_train[:CALIBRATION_SAMPLES])
        correct, seen, loss_sum = running
        resumed_at, skip, running = skip, 0, (0, 0, 0.0)
        n_batches = -(-len(x_train) // dp.learning.batch_size)
        for b, (idx, _) in enumerate(
            batches(
                np.arange(len(x_train)),
                data.y_train,
                dp.learning.batch_size,
                seed=dp.learning.seed,
                epoch=epoch,
            )
        ):
            if b < resumed_at:
                continue
            xb, yb = x_train[idx], y_train[idx]
            out_b, loss = model.train_step(xb, yb)
            correct += int((out_b.argmax(1) == yb).sum())
            seen += len(yb)
            loss_sum += loss * len(yb)
            if checkpoint_every and (b + 1) % checkpoint_every == 0 and b + 1 < n_batches:
                _checkpoint(
                    ckpt_path,
                    {
                        "design": dp.dump(),
                        "model": model.state_dict(),
                        "history": history,
                        "epoch": epoch,  # not finished
                        "batch": b + 1,
                        "correct": correct,
                        "seen": seen,
                        "loss_sum": loss_sum,
                        "elapsed": elapsed + time.perf_counter() - t0,
                    },
                )
            if progress:
                progress(
                    {
                        "epoch": epoch,
                        "batch": b + 1,
                        "batches": n_batches,
                        "loss": loss_sum / seen,
                        "train_accuracy": correct / seen,
                    }
                )
        test_acc = float((model.predict(x_test) == y_test).double().mean())
        elapsed += time.perf_counter() - t0
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "loss": loss_sum / seen,
            "train_accuracy": correct / seen,
            "test_accuracy": test_acc,
            "seconds": time.perf_counter() - t0,
        }
        if isinstance(model, SpikingNet):
            record["events"] = model.epoch_counts.to_dict()
        history.append(record)
        if progress:
            progress({"epoch_done": record})
        _checkpoint(
            ckpt_path,
            {
                "design": dp.dump(),
                "model": model.state_dict(),
                "history": history,
                "epoch": epoch + 1,
                "elapsed": elapsed,
            },
        )

    last = history[-1] if history else {}
    summary: dict[str, Any] = {
        "command": "train",
        "test_accuracy": last.get("test_accuracy"),
        "train_accuracy": last.get("train_accuracy"),
        "train_accuracy_note": "running accuracy over the last epoch's training batches",
        "epochs": len(history),
        "history": history,
        "wall_time_s": elapsed,
        "design": dp.dump(),
    }
    if isinstance(model, HardwareMLP):
        summary["integer_plan"] = {
            "layers": [
                {
                    "fan_in": lp.fan_in,
                    "fan_out": lp.fan_out,
                    "w_frac": lp.w_frac,
                    "out_shift": lp.out_shift,
                    "delta_shift": lp.delta_shift,
                    "grad_shift": lp.grad_shift,
                    "adc_range": lp.adc.levels[-1],
                }
                for lp in model.plan.layers
            ]
        }
    if isinstance(model, SpikingNet):
        summary["spiking"] = model.report()
    write_json(out / SUMMARY, summary)
    return summary
