"""Spiking building blocks: current-based LIF neurons in discrete time, input encoders, weight init.

This module owns the neuron model and the spike encodings shared by every spiking rule
(``bptt``, ``error-triggered``, ``eventprop``):

- :class:`LifParams`: time constants, threshold, reset, refractory period and time step, read
  from the design point's ``snn`` section (times in ms);
- :func:`lif_layer`: one layer of current-based LIF neurons simulated over all time steps,
  ``tau_syn dI/dt = -I``, ``tau_mem dV/dt = -V + I``, integrated exactly between steps
  (``V <- beta V + c I``, ``I <- alpha I + input``), spike where V >= threshold, reset to zero or by
  subtraction, optional refractory steps; the spike's backward pass is a surrogate derivative
  (:class:`SurrogateSpike`), so the same function serves BPTT (autograd) and the explicit
  three-factor rule (which reads the membrane trace);
- :func:`leaky_readout`: the non-spiking output layer (membrane potential over time);
- :class:`Encoder`: latency code (one spike per feature, early for large values, exact times for
  the event-driven simulator and sub-step amplitudes for the time-stepped ones) and rate code
  (Bernoulli spikes each step); an optional bias input spiking at t = 0;
- :func:`init_weights`: Gaussian weights scaled so that a layer's mean drive is
  ``snn.init_mean`` thresholds if all its inputs spiked together.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from insitu.config import DesignPoint


@dataclass(frozen=True)
class LifParams:
    """Neuron constants (ms) and the time grid of the time-stepped rules."""

    tau_mem: float
    tau_syn: float
    threshold: float
    reset: str
    refractory: float
    dt: float
    t_max: float
    surrogate_slope: float

    @classmethod
    def from_design(cls, dp: DesignPoint) -> LifParams:
        s = dp.snn
        return cls(
            tau_mem=s.tau_mem,
            tau_syn=s.tau_syn,
            threshold=s.threshold,
            reset=s.reset,
            refractory=s.refractory,
            dt=s.dt,
            t_max=s.t_max,
            surrogate_slope=s.surrogate_slope,
        )

    @property
    def steps(self) -> int:
        return math.ceil(self.t_max / self.dt - 1e-9)

    @property
    def alpha(self) -> float:
        """Synaptic decay per step."""
        return math.exp(-self.dt / self.tau_syn)

    @property
    def beta(self) -> float:
        """Membrane decay per step."""
        return math.exp(-self.dt / self.tau_mem)

    @property
    def coupling(self) -> float:
        """V gained over one step from a unit current at the step's start (exact integration)."""
        ts, tm = self.tau_syn, self.tau_mem
        return ts / (ts - tm) * (self.alpha - self.beta)

    @property
    def refractory_steps(self) -> int:
        return round(self.refractory / self.dt)

    def kernel_peak(self) -> float:
        """Peak of V after a unit current jump at rest (the PSP of a weight-1 spike)."""
        ts, tm = self.tau_syn, self.tau_mem
        t_peak = math.log(tm / ts) * tm * ts / (tm - ts)
        return ts / (tm - ts) * (math.exp(-t_peak / tm) - math.exp(-t_peak / ts))


class SurrogateSpike(torch.autograd.Function):
    """Heaviside spike of ``v - threshold`` with the fast-sigmoid surrogate derivative
    ``1 / (1 + slope |v - threshold| / threshold)^2`` (Zenke and Ganguli 2018)."""

    @staticmethod
    def forward(ctx: Any, v: Tensor, threshold: float, slope: float) -> Tensor:
        ctx.save_for_backward(v)
        ctx.threshold, ctx.slope = threshold, slope
        return (v >= threshold).to(v.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        (v,) = ctx.saved_tensors
        x = ctx.slope * (v - ctx.threshold).abs() / ctx.threshold
        return grad / (1 + x) ** 2, None, None


@dataclass
class LayerTrace:
    """What one time-stepped layer did: spikes and pre-reset membrane, (T, B, N) each."""

    spikes: Tensor
    membrane: Tensor


def lif_layer(
    current_in: Tensor, p: LifParams, *, surrogate: bool = True, record: bool = False
) -> LayerTrace:
    """Simulate LIF neurons driven by ``current_in`` (T, B, N): the synaptic input arriving
    during each step (weights times input spike amplitudes). Returns spikes and, with
    ``record``, the membrane before reset; with ``surrogate`` spikes carry surrogate gradients.
    """
    steps, b, n = current_in.shape
    alpha, beta, c, th = p.alpha, p.beta, p.coupling, p.threshold
    i_syn = current_in.new_zeros(b, n)
    v = current_in.new_zeros(b, n)
    ref = torch.zeros(b, n, dtype=torch.int64) if p.refractory_steps > 0 else None
    spikes, mem = [], []
    for t in range(steps):
        v = beta * v + c * i_syn
        i_syn = alpha * i_syn + current_in[t]
        if ref is not None:
            v = torch.where(ref > 0, torch.zeros_like(v), v)
        s = SurrogateSpike.apply(v, th, p.surrogate_slope) if surrogate else (v >= th).to(v.dtype)
        if record:
            mem.append(v)
        spikes.append(s)
        # The reset is not differentiated (detached), as is common for surrogate gradients.
        sd = s.detach()
        v = v * (1 - sd) if p.reset == "zero" else v - th * sd
        if ref is not None:
            ref = torch.where(sd > 0, p.refractory_steps, (ref - 1).clamp(min=0))
    return LayerTrace(torch.stack(spikes), torch.stack(mem) if record else current_in[:0])


def leaky_readout(current_in: Tensor, p: LifParams) -> Tensor:
    """Membrane of non-spiking LIF neurons (T, B, N) driven by ``current_in`` (T, B, N)."""
    steps, b, n = current_in.shape
    i_syn = current_in.new_zeros(b, n)
    v = current_in.new_zeros(b, n)
    out = []
    for t in range(steps):
        v = p.beta * v + p.coupling * i_syn
        i_syn = p.alpha * i_syn + current_in[t]
        out.append(v)
    return torch.stack(out)


def presynaptic_trace(raster: Tensor, p: LifParams) -> Tensor:
    """The synaptic-current kernel of each input (T, B, K): ``P <- alpha P + x``, peak 1 for a
    single spike (the eligibility factor of the three-factor rule)."""
    out = []
    tr = raster.new_zeros(raster.shape[1:])
    for t in range(raster.shape[0]):
        tr = p.alpha * tr + raster[t]
        out.append(tr)
    return torch.stack(out)


# --------------------------------------------------------------------------- encoders


class Encoder:
    """Features in [0, 1] -> input spikes (plus the bias input spiking at t = 0 if enabled)."""

    def __init__(self, dp: DesignPoint) -> None:
        s = dp.snn
        self.kind = s.encoder
        self.t_early, self.t_late, self.cutoff = s.t_early, s.t_late, s.latency_cutoff
        self.max_rate = s.max_rate
        self.bias = s.bias_spike
        self.p = LifParams.from_design(dp)
        self.features = dp.network.layers[0]

    @property
    def inputs(self) -> int:
        """Input neurons: the features plus the bias neuron."""
        return self.features + int(self.bias)

    def latency_times(self, x: Tensor) -> Tensor:
        """Spike time of every input neuron (B, inputs), float64; inf where none."""
        x = x.to(torch.float64)
        t = self.t_early + (1.0 - x) * (self.t_late - self.t_early)
        t = torch.where(x > self.cutoff, t, torch.full_like(t, math.inf))
        if self.bias:
            t = torch.cat([t, torch.zeros(len(t), 1, dtype=torch.float64)], 1)
        return t

    def events(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Latency code as sorted events: times (B, K) float64 (inf padding), sources (B, K)."""
        if self.kind != "latency":
            raise ValueError("event-driven inputs need the latency encoder (snn.encoder)")
        t = self.latency_times(x)
        t, src = torch.sort(t, dim=1)
        return t, src

    def raster(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Input spikes per time step (T, B, inputs), float32.

        Latency spikes land in the step (t_(n-1), t_n] holding their time, with amplitude
        ``exp(-(t_n - t) / tau_syn)``: the synaptic current they leave at the step's end, so the
        input timing is resolved finer than the step. Rate spikes have amplitude 1.
        """
        p = self.p
        steps, b = p.steps, len(x)
        if self.kind == "latency":
            t = self.latency_times(x)
            step = torch.clamp(torch.ceil(t / p.dt - 1e-9), min=1)
            ok = torch.isfinite(t) & (step <= steps)
            step_i = torch.where(ok, step, torch.ones_like(step)).to(torch.int64) - 1
            amp = torch.exp(-(step * p.dt - t) / p.tau_syn)
            amp = torch.where(ok, amp, torch.zeros_like(amp)).to(torch.float32)
            out = torch.zeros(steps, b, t.shape[1], dtype=torch.float32)
            out.scatter_(0, step_i.unsqueeze(0), amp.unsqueeze(0))
            return out
        prob = (x.to(torch.float32) * self.max_rate * p.dt).clamp(0, 1)
        u = torch.rand(steps, *prob.shape, generator=generator)
        out = (u < prob).to(torch.float32)
        if self.bias:
            bias = torch.zeros(steps, b, 1)
            bias[0] = math.exp(-p.dt / p.tau_syn)
            out = torch.cat([out, bias], 2)
        return out


def _per_layer(v: float | tuple[float, ...], layer: int) -> float:
    return float(v[layer]) if isinstance(v, tuple) else float(v)


def init_weights(dp: DesignPoint, n_inputs: int, generator: torch.Generator) -> list[Tensor]:
    """Gaussian float64 weights (fan_in, fan_out) per layer, scaled by the PSP peak: the mean
    drive of a layer is ``init_mean`` thresholds when all its inputs spike together, its spread
    ``init_std`` thresholds."""
    p = LifParams.from_design(dp)
    gain = p.threshold / p.kernel_peak()
    widths = [n_inputs, *dp.network.layers[1:]]
    out = []
    for li, (fan_in, fan_out) in enumerate(itertools.pairwise(widths)):
        mean = _per_layer(dp.snn.init_mean, li) * gain / fan_in
        std = _per_layer(dp.snn.init_std, li) * gain / math.sqrt(fan_in)
        w = mean + std * torch.randn(fan_in, fan_out, generator=generator, dtype=torch.float64)
        out.append(w)
    return out


Convert = Callable[[int, Tensor, Tensor, Tensor], Tensor]


@dataclass
class NetworkTrace:
    """A time-stepped forward pass: each layer's input spikes and LIF trace, output membrane."""

    inputs: list[Tensor]  # (T, B, fan_in) per layer
    hidden: list[LayerTrace]  # per hidden layer
    v_out: Tensor  # (T, B, classes)


def network_forward(
    raster: Tensor,
    weights: list[Tensor],
    p: LifParams,
    *,
    convert: Convert | None = None,
    surrogate: bool = True,
    record: bool = False,
) -> NetworkTrace:
    """Hidden LIF layers then a non-spiking readout; ``convert(layer, column_sums, x, w)`` stands
    for the crossbar's read-out (ADC, noise) of each layer's column sums."""
    x = raster
    inputs, hidden = [], []
    v_out = raster.new_zeros(0)
    for li, w in enumerate(weights):
        inputs.append(x)
        cur = x @ w
        if convert is not None:
            cur = convert(li, cur, x, w)
        if li == len(weights) - 1:
            v_out = leaky_readout(cur, p)
        else:
            tr = lif_layer(cur, p, surrogate=surrogate, record=record)
            hidden.append(tr)
            x = tr.spikes
    return NetworkTrace(inputs, hidden, v_out)
