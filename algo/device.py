"""Synaptic device model for hardware-aware training: what the analog array does to the weights.

Each weight is one device (a differential pair read as one signed value) whose normalized
conductance ``g`` in [0, 1] maps to the weight ``(2g - 1) * w_max``. Effects, all optional:

- limited levels: an update is a whole number of pulses, ``levels - 1`` pulses span the range;
  fractional pulse counts round stochastically;
- nonlinear, asymmetric update: potentiation follows
  ``g(P) = (1 - exp(-P/A)) / (1 - exp(-1/A))`` over normalized pulse number P, depression the
  mirrored curve, with ``A = 1/|nl|`` (nl = 0: linear). The presets' ``nl_ltp``/``nl_ltd`` are the
  published NeuroSim nonlinearity labels used as this factor, which orders devices as NeuroSim
  does but is not NeuroSim's exact A(NL) table;
- cycle-to-cycle variation: Gaussian noise of ``c2c_sigma * sqrt(pulses)`` (fraction of the
  range) on every programmed device;
- device-to-device variation: a fixed per-device gain ``N(1, d2d_sigma)`` on the read weight;
- stuck-at faults: a fixed fraction of devices stuck at 0 or at +-w_max;
- read noise: relative conductance noise on every column read (applied in algo/cim.py).

The RTL stays deterministic; this model lives only in the algorithm layer (DESIGN.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from insitu.config import DesignPoint

from . import native


@dataclass(frozen=True)
class DeviceParams:
    levels: int
    nl_ltp: float
    nl_ltd: float
    c2c_sigma: float
    d2d_sigma: float
    read_noise_sigma: float
    stuck_at_rate: float

    @classmethod
    def from_design(cls, dp: DesignPoint) -> DeviceParams:
        from insitu.tech.loader import load_device

        preset = load_device(dp.array.device)
        a = dp.array

        def pick(override: float | None, value: float) -> float:
            return float(value if override is None else override)

        return cls(
            levels=int(preset.levels),
            nl_ltp=pick(a.nl_ltp, preset.nl_ltp),
            nl_ltd=pick(a.nl_ltd, preset.nl_ltd),
            c2c_sigma=pick(a.c2c_sigma, preset.c2c_sigma),
            d2d_sigma=pick(a.d2d_sigma, preset.d2d_sigma),
            read_noise_sigma=pick(a.read_noise_sigma, preset.read_noise_sigma),
            stuck_at_rate=pick(a.stuck_at_rate, preset.stuck_at_rate),
        )


def _curve(p: Tensor, nl: float) -> Tensor:
    if abs(nl) < 1e-6:
        return p
    a = 1.0 / abs(nl)
    return (1 - torch.exp(-p / a)) / (1 - math.exp(-1 / a))


def _inverse(g: Tensor, nl: float) -> Tensor:
    if abs(nl) < 1e-6:
        return g
    a = 1.0 / abs(nl)
    return -a * torch.log1p(-g * (1 - math.exp(-1 / a)))


class DeviceArray:
    """Device state of one weight matrix."""

    def __init__(
        self, w: Tensor, w_max: int, params: DeviceParams, generator: torch.Generator
    ) -> None:
        self.params = params
        self.w_max = w_max
        self.gen = generator
        shape = w.shape
        self.g = ((w.to(torch.float64) / w_max + 1) / 2).clamp(0, 1).contiguous()
        self.gain = (
            1 + params.d2d_sigma * torch.randn(shape, generator=generator, dtype=torch.float64)
        ).clamp(min=0)
        stuck = torch.rand(shape, generator=generator, dtype=torch.float64) < params.stuck_at_rate
        high = torch.rand(shape, generator=generator, dtype=torch.float64) < 0.5
        self.stuck = stuck
        self.stuck_value = torch.where(
            high, torch.sign(torch.randn(shape, generator=generator)) * w_max, 0.0
        ).to(torch.int64)
        self._w: Tensor | None = None

    def _read(self, g: Tensor, gain: Tensor, stuck: Tensor, stuck_value: Tensor) -> Tensor:
        w = torch.round((2 * g - 1) * self.w_max * gain).clamp(-self.w_max, self.w_max)
        return torch.where(stuck, stuck_value, w.to(torch.int64))

    def read(self) -> Tensor:
        """The weights the array reads now (int64). Kept up to date by :meth:`update`, which
        re-reads only the devices it programmed; do not modify the returned tensor."""
        if self._w is None:
            self._w = self._read(self.g, self.gain, self.stuck, self.stuck_value)
        return self._w

    def update(self, dw: Tensor) -> None:
        """Apply the requested change ``dw`` (weight LSBs, sign = direction; the SNN rules pass
        fractions). Only the devices with a nonzero request are programmed, so the random
        draws (stochastic pulse rounding, C2C noise) are made for those alone."""
        p = self.params
        lib = native.library()
        fast = lib is not None and dw.dtype in (torch.int64, torch.float64)
        # the programmed devices, potentiated ones first, so that each curve is evaluated only
        # where it applies; the random draws are made in ascending device order (rank), as they
        # always were
        if fast:
            assert lib is not None
            idx, rank, req, g, n_up = lib.device_gather(dw, self.g)
        else:
            flat = dw.reshape(-1)
            every = torch.nonzero(flat, as_tuple=True)[0]
            up = flat[every] > 0
            rank = torch.cat(
                [torch.nonzero(up, as_tuple=True)[0], torch.nonzero(~up, as_tuple=True)[0]]
            )
            idx = every[rank]
            n_up = int(up.sum())
            req = flat[idx].to(torch.float64)
            g = self.g.view(-1)[idx]
        if idx.numel() == 0:
            return
        pulses_f = req * (p.levels - 1) / (2 * self.w_max)
        floor = torch.floor(pulses_f)
        # float32 draws: torch's float64 normal sampler is ~6x slower on CPU
        u = torch.rand(idx.numel(), generator=self.gen, dtype=torch.float32)[rank]
        pulses = floor + (u.to(torch.float64) < pulses_f - floor)
        step = pulses / (p.levels - 1)
        g0, g1, s0, s1 = g[:n_up], g[n_up:], step[:n_up], step[n_up:]
        g_up = _curve((_inverse(g0, p.nl_ltp) + s0).clamp(0, 1), p.nl_ltp)
        # Depression runs the mirrored curve from the top of the range.
        g_down = 1 - _curve((_inverse(1 - g1, p.nl_ltd) - s1).clamp(0, 1), p.nl_ltd)
        # a request that rounded to no pulse leaves the device as it was
        new = torch.cat([torch.where(s0 > 0, g_up, g0), torch.where(s1 < 0, g_down, g1)])
        if p.c2c_sigma > 0:
            noise = torch.randn(idx.numel(), generator=self.gen, dtype=torch.float32)[rank]
            new = new + (pulses != 0) * p.c2c_sigma * torch.sqrt(pulses.abs()) * noise
        new = new.clamp(0, 1)
        if fast:
            assert lib is not None
            lib.device_scatter(
                idx,
                new,
                self.g,
                gain=self.gain,
                stuck=self.stuck,
                stuck_value=self.stuck_value,
                w_max=self.w_max,
                w=self._w,
            )
            return
        self.g.view(-1)[idx] = new
        if self._w is not None:
            self._w.view(-1)[idx] = self._read(
                new,
                self.gain.view(-1)[idx],
                self.stuck.view(-1)[idx],
                self.stuck_value.view(-1)[idx],
            )

    def state_dict(self) -> dict[str, Tensor]:
        return {
            "g": self.g,
            "gain": self.gain,
            "stuck": self.stuck,
            "stuck_value": self.stuck_value,
        }

    def load_state_dict(self, d: dict[str, Tensor]) -> None:
        self.g, self.gain, self.stuck, self.stuck_value = (
            d["g"].contiguous(),
            d["gain"].contiguous(),
            d["stuck"].contiguous(),
            d["stuck_value"].contiguous(),
        )
        self._w = None
