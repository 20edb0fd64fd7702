"""The weights of a spiking network on crossbar arrays: device model, weight grid and ADC.

In ``learning.mode: hardware`` every weight is a device of :mod:`insitu.algo.device` on a grid of
``precision.weight_bits`` (signed, ``snn.weight_range`` the real value of the largest weight):
the forward pass reads the devices (device-to-device variation, stuck-at faults, limited levels
when ``array.device_effects`` is on; an ideal device with one level per weight LSB otherwise) and
every weight change goes through :meth:`DeviceArray.update` (nonlinear, asymmetric, cycle-to-cycle
noise). Each time step's column sum of a layer (the synaptic input of its neurons) passes a signed
uniform ADC of ``array.adc_bits`` over a range calibrated per layer each epoch (the
``array.adc_percentile`` of |column sum|), with read noise of ``read_noise_sigma`` on the cells
that conduct. The event-driven rule reads one row per spike, so its ADC quantizes single weights.

In float mode the weights are plain float64 tensors and nothing is quantized.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from insitu.config import DesignPoint

from .device import DeviceArray, DeviceParams


def ideal_device(w_max: int) -> DeviceParams:
    """A device with one level per weight LSB and no variation (device_effects off)."""
    return DeviceParams(
        levels=2 * w_max + 1,
        nl_ltp=0.0,
        nl_ltd=0.0,
        c2c_sigma=0.0,
        d2d_sigma=0.0,
        read_noise_sigma=0.0,
        stuck_at_rate=0.0,
    )


class SpikingCrossbar:
    """Weights of every layer: float tensors (float mode) or crossbar devices (hardware mode)."""

    def __init__(self, dp: DesignPoint, weights: list[Tensor], generator: torch.Generator) -> None:
        self.hardware = dp.learning.mode == "hardware"
        self.w_range = dp.snn.weight_range
        self.w_max = 2 ** (dp.precision.weight_bits - 1) - 1
        self.adc_bits = dp.array.adc_bits
        self.percentile = dp.array.adc_percentile
        self.gen = generator
        self.params = (
            DeviceParams.from_design(dp) if dp.array.device_effects else ideal_device(self.w_max)
        )
        self.float_weights = [w.to(torch.float64).clone() for w in weights]
        self.arrays: list[DeviceArray] = []
        if self.hardware:
            lsb = self.w_range / self.w_max
            for w in weights:
                q = torch.round(w / lsb).clamp(-self.w_max, self.w_max).to(torch.int64)
                self.arrays.append(DeviceArray(q, self.w_max, self.params, generator))
        self.adc_range: list[float] = [math.inf] * len(weights)

    @property
    def lsb(self) -> float:
        return self.w_range / self.w_max

    @property
    def pulse(self) -> float:
        """Real weight change of one device pulse."""
        return 2.0 * self.w_range / (self.params.levels - 1)

    def read(self) -> list[Tensor]:
        """The weights the arrays present to the neurons (float64)."""
        if not self.hardware:
            return self.float_weights
        return [a.read().to(torch.float64) * self.lsb for a in self.arrays]

    def update(self, layer: int, dw: Tensor) -> Tensor:
        """Change layer ``layer``'s weights by ``dw`` (real units); returns device pulses per
        cell (hardware) or the number of changed cells as a 0/1 tensor (float mode)."""
        if not self.hardware:
            self.float_weights[layer] += dw.to(torch.float64)
            return (dw != 0).to(torch.float64)
        self.arrays[layer].update(dw.to(torch.float64) / self.lsb)
        return (dw.abs() / self.pulse).round()

    def calibrate(self, layer: int, column_sums: Tensor) -> None:
        """Set the layer's ADC range from a sample of its column sums (hardware mode)."""
        if not self.hardware:
            return
        mags = column_sums.detach().abs().flatten().to(torch.float64)
        mags = mags[mags > 0]
        if mags.numel() == 0:
            self.adc_range[layer] = 1.0
            return
        self.adc_range[layer] = float(torch.quantile(mags[:1_000_000], self.percentile / 100))

    def convert(
        self, layer: int, s: Tensor, x: Tensor | None = None, w: Tensor | None = None
    ) -> Tensor:
        """Column sums ``s`` through read noise and the layer's ADC (identity in float mode);
        ``x`` and ``w`` (inputs and weights) size the read noise."""
        if not self.hardware:
            return s
        sigma = self.params.read_noise_sigma
        if sigma > 0 and x is not None and w is not None:
            # Noise carries no gradient (sqrt's derivative at a silent step's 0 is inf, and
            # inf * 0 turned BPTT's gradients into NaN).
            with torch.no_grad():
                spread = torch.sqrt((x * x) @ (w * w).to(x.dtype))
                noise = sigma * spread * torch.randn(s.shape, generator=self.gen, dtype=s.dtype)
            s = s + noise
        r = self.adc_range[layer]
        if not math.isfinite(r):
            return s
        half = 2 ** (self.adc_bits - 1) - 1
        step = r / half
        q = torch.clamp(torch.round(s.detach() / step), -half, half) * step
        return s + (q - s).detach()  # straight-through for BPTT

    def state_dict(self) -> dict[str, Any]:
        return {
            "float_weights": [w.clone() for w in self.float_weights],
            "arrays": [a.state_dict() for a in self.arrays],
            "adc_range": list(self.adc_range),
        }

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.float_weights = [w.clone() for w in d["float_weights"]]
        for a, s in zip(self.arrays, d["arrays"], strict=True):
            a.load_state_dict(s)
        self.adc_range = list(d["adc_range"])
