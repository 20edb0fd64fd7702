"""Hardware-aware training in torch: the integer contract, vectorized, plus the device model.

With ``array.device_effects`` off this path is bit-exact with ``algo/golden.py`` (tested);
with it on, the array reads weights through :class:`~insitu.algo.device.DeviceArray` (variation,
faults, nonlinear updates) and partial sums carry read noise.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from insitu.config import DesignPoint

from . import native
from .cim import (
    Converter,
    Requantize,
    cim_matmul,
    partial_sum_histogram,
    percentile_from_histogram,
    rshift_round,
    slice_weights,
)
from .device import DeviceArray, DeviceParams
from .floatnet import lr_factor
from .plan import IntegerPlan, make_plan, uniform_adc, weight_range_exponent

M32 = 0xFFFFFFFF
MAX_LR_SHIFT = 4


def _sat(v: Tensor, bits: int) -> Tensor:
    m = 2 ** (bits - 1) - 1
    return v.clamp(-m, m)


def _fmatmul(a: Tensor, b: Tensor, bound: int) -> Tensor:
    """Exact integer product via float BLAS, as floats, ``bound`` bounding ``|a_ik * b_kj|``:
    float32 when every partial sum stays below 2**24 (half the time of float64 here), else
    float64 (operands of the contract stay far below 2**53). Every sum is an exact integer."""
    dt = torch.float32 if a.shape[1] * bound < 2**24 else torch.float64
    return a.to(dt) @ b.to(dt)


def _dither(layer: int, step: int, shape: tuple[int, int], seed: int) -> Tensor:
    k = torch.arange(shape[0] * shape[1], dtype=torch.int64).view(shape)
    x = ((k * 0x27D4EB2F) & M32) + (((step & M32) * 0x165667B1) & M32)
    x = (x + ((layer * 0x61C88647) & M32) + (seed & M32)) & M32
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & M32
    x = x ^ (x >> 15)
    x = (x * 0x2C1B3C6D) & M32
    return x ^ (x >> 16)


def init_weights(dp: DesignPoint) -> list[Tensor]:
    """He-uniform float weights quantized to the plan's weight grid (int64, (fan_in, fan_out))."""
    gen = torch.Generator().manual_seed(dp.learning.seed)
    w_max = 2 ** (dp.precision.weight_bits - 1) - 1
    out = []
    for fan_in, fan_out in zip(dp.network.layers[:-1], dp.network.layers[1:], strict=True):
        bound = math.sqrt(6.0 / fan_in)
        w = (torch.rand(fan_in, fan_out, generator=gen, dtype=torch.float64) * 2 - 1) * bound
        scale = 2.0 ** (dp.precision.weight_bits - 1 - weight_range_exponent(fan_in))
        out.append(torch.round(w * scale).clamp(-w_max, w_max).to(torch.int64))
    return out


class HardwareMLP:
    """An MLP whose every layer runs on CIM subarrays under the integer contract."""

    def __init__(
        self, dp: DesignPoint, plan: IntegerPlan | None = None, weights: list[Tensor] | None = None
    ) -> None:
        self.dp = dp
        self.plan = plan or make_plan(dp)
        # The schedule shifts updates relative to these; ADC recalibration never changes them.
        self.base_grad_shifts = [lp.grad_shift for lp in self.plan.layers]
        # The LFSR matrices depend only on seed and widths: generated once, not every step.
        self.feedback = (
            []
            if self.plan.rule == "bp"
            else [
                torch.from_numpy(self.plan.feedback(i).copy()).to(torch.float32)
                for i in range(len(dp.network.layers) - 2)
            ]
        )
        self.weights = [w.clone() for w in (weights or init_weights(dp))]
        self.step = 0
        self.gen = torch.Generator().manual_seed(dp.learning.seed + 1)
        self.devices: list[DeviceArray] | None = None
        self.read_noise = 0.0
        if dp.array.device_effects:
            params = DeviceParams.from_design(dp)
            self.read_noise = params.read_noise_sigma
            self.devices = [DeviceArray(w, self.plan.w_max, params, self.gen) for w in self.weights]
        self._refresh()

    # -- arrays ---------------------------------------------------------------------------
    def _refresh(self) -> None:
        """Re-read the arrays after weights or the plan changed."""
        read = [d.read() for d in self.devices] if self.devices else self.weights
        self.read_weights = read
        self.cells = [slice_weights(w, self.plan) for w in read]
        key = (self.plan.max_partial_sum, tuple(lp.adc for lp in self.plan.layers))
        if key != getattr(self, "_adc_key", None):
            # the converters depend only on the ADC tables (calibration changes them, steps
            # and learning-rate shifts do not)
            self._adc_key = key
            self.adcs = [Converter(lp.adc, self.plan.max_partial_sum) for lp in self.plan.layers]

    def calibrate_adc(self, a0: Tensor) -> list[int]:
        """Set each layer's ADC range to the configured percentile of its partial sums."""
        a = self.dp.array
        if a.adc_range == "full-scale" or a.adc_model == "table":
            return [self.plan.max_partial_sum] * len(self.weights)
        ranges = []
        x = a0
        for i in range(len(self.weights)):
            hist = partial_sum_histogram(x, self.cells[i], self.plan)
            ranges.append(percentile_from_histogram(hist, a.adc_percentile))
            if i < len(self.weights) - 1:
                x = self._layer(x, i)
        self.plan = self.plan.with_adc([uniform_adc(a.adc_bits, r) for r in ranges])
        self._refresh()
        return ranges

    def start_epoch(self, epoch: int) -> None:
        """Apply the epoch's learning-rate factor as a power-of-two extra update shift."""
        factor = max(lr_factor(self.dp, epoch), 2.0**-MAX_LR_SHIFT)
        extra = min(MAX_LR_SHIFT, max(0, round(-math.log2(factor))))
        self.plan = replace(
            self.plan,
            layers=tuple(
                replace(lp, grad_shift=base + extra)
                for lp, base in zip(self.plan.layers, self.base_grad_shifts, strict=True)
            ),
        )

    # -- forward --------------------------------------------------------------------------
    def _matmul(self, x: Tensor, i: int, requantize: Requantize | None = None) -> Tensor:
        return cim_matmul(
            x,
            self.cells[i],
            self.plan,
            self.adcs[i],
            self.weights[i].shape[1],
            read_noise=self.read_noise,
            generator=self.gen,
            requantize=requantize,
        )

    def _layer(self, x: Tensor, i: int) -> Tensor:
        """Hidden layer i: ReLU, the layer's shift, clipped to the activation range."""
        rq = Requantize("hidden", self.plan.layers[i].out_shift, self.plan.a_max)
        return self._matmul(x, i, rq)

    def forward(self, a0: Tensor) -> tuple[Tensor, list[Tensor]]:
        hidden = []
        x = a0.to(torch.int64)
        for i in range(len(self.weights) - 1):
            x = self._layer(x, i)
            hidden.append(x)
        e_max = 2 ** (self.plan.error_bits - 1) - 1
        rq = Requantize("output", self.plan.layers[-1].out_shift, e_max)
        return self._matmul(x, len(self.weights) - 1, rq), hidden

    def predict(self, a0: Tensor, chunk: int = 256) -> Tensor:
        return torch.cat(
            [self.forward(a0[i : i + chunk])[0].argmax(1) for i in range(0, len(a0), chunk)]
        )

    # -- learning -------------------------------------------------------------------------
    def train_step(self, a0: Tensor, labels: Tensor) -> tuple[Tensor, float]:
        """One step of the configured rule; returns output codes and the mean squared error."""
        plan = self.plan
        a0 = a0.to(torch.int64)
        o, hidden = self.forward(a0)
        lib = native.library()
        margin = plan.error == "margin"
        if lib is not None:
            e, sse = lib.output_error(o, labels, plan.target, plan.error_bits, margin)
        else:
            target = torch.zeros_like(o)
            target[torch.arange(len(labels)), labels] = plan.target
            e = _sat(o - target, plan.error_bits)
            if margin:
                e = torch.where(target > 0, e.clamp(max=0), e.clamp(min=0))
            sse = float(e.to(torch.float64).pow(2).sum())
        n = len(self.weights)
        e_max = 2 ** (plan.error_bits - 1) - 1
        deltas: list[Tensor] = [e] * n
        for i in range(n - 2, -1, -1):
            if plan.rule == "bp":
                u = _fmatmul(deltas[i + 1], self.read_weights[i + 1].t(), e_max * plan.w_max)
            else:
                src = e if plan.rule == "dfa" else deltas[i + 1]
                u = _fmatmul(src, self.feedback[i], e_max)
            shift = plan.layers[i].delta_shift
            if lib is not None:
                deltas[i] = lib.hidden_delta(u, hidden[i], shift, plan.error_bits)
            else:
                deltas[i] = _sat(rshift_round(u.to(torch.int64), shift), plan.error_bits) * (
                    hidden[i] > 0
                )
        inputs = [a0, *hidden]
        fused = lib is not None and not self.devices and self.cells[0].dtype == torch.int8
        for i in range(n):
            gf = _fmatmul(inputs[i].t(), deltas[i], plan.a_max * e_max)
            s = plan.layers[i].grad_shift
            dither = plan.rounding != "nearest"
            if lib is not None:
                dw = lib.update(
                    self.weights[i],
                    gf,
                    shift=s,
                    dither=dither,
                    layer=i,
                    step=self.step,
                    seed=plan.hash_seed,
                    gradient_bits=plan.gradient_bits,
                    weight_bits=plan.weight_bits,
                    want_dw=self.devices is not None,
                    cells=self.cells[i] if fused else None,
                    cell_bits=plan.cell_bits,
                    differential=plan.encoding == "differential",
                )
                if self.devices and dw is not None:
                    self.devices[i].update(dw.neg())
                continue
            g = gf.to(torch.int64)
            if s <= 0:
                r = g << (-s)
            elif not dither:
                r = rshift_round(g, s)
            else:
                words = _dither(i, self.step, (g.shape[0], g.shape[1]), plan.hash_seed)
                r = (g + (words >> (32 - s) if s <= 32 else words << (s - 32))) >> s
            dw = _sat(r, plan.gradient_bits)
            if self.devices:
                self.devices[i].update(dw.neg())
            self.weights[i] = _sat(self.weights[i] - dw, plan.weight_bits)
        self.step += 1
        if not fused:  # the update kernel rewrote the cells of the weights it updated in place
            self._refresh()
        return o, sse / (plan.target**2 * len(labels))

    # -- state ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "weights": self.weights,
            "plan": self.plan.to_dict(),
            "step": self.step,
            "gen": self.gen.get_state(),
            "devices": [d.state_dict() for d in self.devices] if self.devices else None,
        }

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.weights = [w.clone() for w in d["weights"]]
        self.plan = IntegerPlan.from_dict(d["plan"])
        self.step = int(d["step"])
        self.gen.set_state(d["gen"])
        if self.devices and d["devices"]:
            for dev, sd in zip(self.devices, d["devices"], strict=True):
                dev.load_state_dict(sd)
        self._refresh()
