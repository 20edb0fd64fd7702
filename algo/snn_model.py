"""A spiking network trained by one of the spiking rules, behind the training loop's interface.

:class:`SpikingNet` holds the encoder, the weights (float or on crossbar devices, see
:mod:`insitu.algo.snn_crossbar`), the rule's state and the event counters, and offers what
:func:`insitu.algo.train.train` calls on every model: ``start_epoch``, ``train_step``,
``predict``, ``state_dict``/``load_state_dict``, plus ``calibrate`` (ADC ranges in hardware mode)
and ``report`` (events and their energy for the summary).

- ``bptt``: surrogate-gradient backpropagation through time (autograd through
  :func:`insitu.algo.snn.network_forward`), output = maximum of the readout membrane, softmax
  cross-entropy, the design point's optimizer;
- ``eventprop``: exact gradients of :mod:`insitu.algo.eventprop`, same optimizer;
- ``error-triggered``: :class:`insitu.algo.three_factor.ErrorTriggeredRule`.

In hardware mode the optimizer's step of ``bptt``/``eventprop`` is programmed into the devices
(the optimizer keeps a float copy of what the devices read back).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from insitu.config import DesignPoint

from . import eventprop as ep
from .floatnet import lr_factor
from .snn import Encoder, LifParams, NetworkTrace, init_weights, network_forward
from .snn_cost import EventCounts, address_bits, price
from .snn_crossbar import SpikingCrossbar
from .three_factor import ErrorTriggeredRule

PREDICT_CHUNK = 500


def resolved_loss(dp: DesignPoint) -> str:
    """``snn.loss`` with ``auto`` resolved: first-spike for eventprop, else membrane."""
    if dp.snn.loss != "auto":
        return dp.snn.loss
    return "first-spike" if dp.learning.rule == "eventprop" else "membrane"


class SpikingNet:
    """A feed-forward spiking network (LIF hidden layers) and its learning rule."""

    def __init__(self, dp: DesignPoint) -> None:
        self.dp = dp
        self.rule = dp.learning.rule
        self.p = LifParams.from_design(dp)
        self.encoder = Encoder(dp)
        self.loss_kind = resolved_loss(dp)
        seed = dp.learning.seed
        w0 = init_weights(dp, self.encoder.inputs, torch.Generator().manual_seed(seed))
        self.device_gen = torch.Generator().manual_seed(seed + 1)
        self.rate_gen = torch.Generator().manual_seed(seed + 2)
        self.xbar = SpikingCrossbar(dp, w0, self.device_gen)
        self.widths = [self.encoder.inputs, *dp.network.layers[1:]]
        self.counts = EventCounts()
        self.epoch_counts = EventCounts()
        self.three: ErrorTriggeredRule | None = None
        self.params: list[Tensor] = []
        self.opt: torch.optim.Optimizer | None = None
        if self.rule == "error-triggered":
            self.three = ErrorTriggeredRule(dp)
        else:
            dtype = torch.float64 if self.rule == "eventprop" else torch.float32
            self.params = [w.to(dtype).clone().requires_grad_(True) for w in self.xbar.read()]
            lr, wd = dp.learning.lr, dp.learning.weight_decay
            if dp.learning.optimizer == "adam":
                self.opt = torch.optim.Adam(self.params, lr=lr, weight_decay=wd)
            elif dp.learning.optimizer == "momentum":
                self.opt = torch.optim.SGD(self.params, lr=lr, momentum=0.9, weight_decay=wd)
            else:
                self.opt = torch.optim.SGD(self.params, lr=lr, weight_decay=wd)

    # ------------------------------------------------------------------ training loop API

    def start_epoch(self, epoch: int) -> None:
        self.epoch_counts = EventCounts()
        factor = lr_factor(self.dp, epoch)
        if self.opt is not None:
            for group in self.opt.param_groups:
                group["lr"] = self.dp.learning.lr * factor
        if self.three is not None:
            self.three.lr_factor = factor

    def calibrate(self, x: Tensor) -> None:
        """ADC ranges of every layer from a calibration batch (hardware mode only)."""
        if not self.xbar.hardware:
            return
        weights = self.xbar.read()
        if self.rule == "eventprop":
            for li, w in enumerate(weights):
                self.xbar.calibrate(li, w)
            return
        raster = self.encoder.raster(x, torch.Generator().manual_seed(self.dp.learning.seed))
        sums: list[Tensor] = []

        def grab(li: int, s: Tensor, xin: Tensor, w: Tensor) -> Tensor:
            sums.append(s)
            return s

        with torch.no_grad():
            network_forward(raster, [w.to(torch.float32) for w in weights], self.p, convert=grab)
        for li, s in enumerate(sums):
            self.xbar.calibrate(li, s)

    def train_step(self, x: Tensor, labels: Tensor) -> tuple[Tensor, float]:
        counts = EventCounts(samples=len(x))
        if self.rule == "eventprop":
            logits, loss = self._eventprop_step(x, labels, counts)
        else:
            raster = self.encoder.raster(x, self.rate_gen)
            counts.input_spikes += int((raster > 0).sum())
            if self.three is not None:
                logits, loss, tr = self.three.step(raster, labels, self.xbar, counts)
            else:
                logits, loss, tr = self._bptt_step(raster, labels, counts)
            counts.synaptic_events += counts.input_spikes * self.widths[1]
            with torch.no_grad():
                for li, t in enumerate(tr.hidden):
                    self._count_spikes(li, t.spikes, counts)
                self._count_adc(tr.inputs, counts)
        self.epoch_counts.add(counts)
        self.counts.add(counts)
        return logits.detach().to(torch.float32), loss

    def predict(self, x: Tensor) -> Tensor:
        out = []
        weights = self._read_weights()
        gen = torch.Generator().manual_seed(self.dp.learning.seed + 3)
        with torch.no_grad():
            for i in range(0, len(x), PREDICT_CHUNK):
                xb = x[i : i + PREDICT_CHUNK]
                if self.rule == "eventprop":
                    out.append(self._eventprop_logits(xb, weights)[0].argmax(1))
                else:
                    raster = self.encoder.raster(xb, gen)
                    ws = [w.to(torch.float32) for w in weights]
                    tr = network_forward(raster, ws, self.p, convert=self.xbar.convert)
                    out.append(tr.v_out.max(0).values.argmax(1))
        return torch.cat(out)

    def state_dict(self) -> dict[str, Any]:
        return {
            "params": [w.detach().clone() for w in self.params],
            "opt": self.opt.state_dict() if self.opt is not None else None,
            "xbar": self.xbar.state_dict(),
            "rule": self.three.state_dict() if self.three is not None else None,
            "counts": self.counts.to_dict(),
            "device_gen": self.device_gen.get_state(),
            "rate_gen": self.rate_gen.get_state(),
        }

    def load_state_dict(self, d: dict[str, Any]) -> None:
        with torch.no_grad():
            for w, v in zip(self.params, d["params"], strict=True):
                w.copy_(v)
        if self.opt is not None:
            self.opt.load_state_dict(d["opt"])
        self.xbar.load_state_dict(d["xbar"])
        if self.three is not None:
            self.three.load_state_dict(d["rule"])
        self.counts = EventCounts.from_dict(d["counts"])
        self.device_gen.set_state(d["device_gen"])
        self.rate_gen.set_state(d["rate_gen"])

    def report(self) -> dict[str, Any]:
        """Event counts of the whole run and their energy (for summary.json)."""
        out: dict[str, Any] = {
            "rule": self.rule,
            "loss": self.loss_kind,
            "events": self.counts.to_dict(),
            "energy": price(self.counts, self.dp),
        }
        if self.three is not None:
            out["error_thresholds"] = list(self.three.thresholds)
        return out

    # ------------------------------------------------------------------ rules

    def _read_weights(self) -> list[Tensor]:
        if self.params and not self.xbar.hardware:
            return [w.detach() for w in self.params]
        return self.xbar.read()

    def _apply(self, counts: EventCounts, bumps: list[Tensor] | None = None) -> None:
        """Optimizer step (plus ``bumps``, added to the weights after it); in hardware mode
        programmed into the devices and read back."""
        assert self.opt is not None

        def step() -> None:
            assert self.opt is not None
            self.opt.step()
            if bumps is not None:
                with torch.no_grad():
                    for w, bump in zip(self.params, bumps, strict=True):
                        w.add_(bump.to(w.dtype))

        if not self.xbar.hardware:
            step()
            n = sum(w.numel() for w in self.params)
            counts.cell_updates += n
            counts.pulses += n
            return
        before = [w.detach().clone() for w in self.params]
        step()
        for li, (w, b) in enumerate(zip(self.params, before, strict=True)):
            pulses = self.xbar.update(li, w.detach() - b)
            counts.cell_updates += int((pulses != 0).sum())
            counts.pulses += int(pulses.abs().sum())
        with torch.no_grad():
            for w, r in zip(self.params, self.xbar.read(), strict=True):
                w.copy_(r)

    def _bptt_step(
        self, raster: Tensor, labels: Tensor, counts: EventCounts
    ) -> tuple[Tensor, float, NetworkTrace]:
        assert self.opt is not None
        self.opt.zero_grad()
        tr = network_forward(raster, self.params, self.p, convert=self.xbar.convert)
        logits = tr.v_out.max(0).values
        loss = torch.nn.functional.cross_entropy(logits, labels)
        loss.backward()
        self._apply(counts)
        return logits, float(loss.detach()), tr

    def _eventprop_logits(
        self, x: Tensor, weights: list[Tensor]
    ) -> tuple[Tensor, list[ep.LayerRecord]]:
        t, src = self.encoder.events(x)
        ws = [self.xbar.convert(li, w) for li, w in enumerate(weights)]
        s = self.dp.snn
        recs = ep.forward(
            t,
            src,
            ws,
            self.p,
            max_spikes=s.max_spikes,
            readout=self.loss_kind,
            n_obs=s.observations,
        )
        if self.loss_kind == "first-spike":
            logits = -ep.first_spike_times(recs[-1], self.p.t_max) / s.ttfs_tau
        else:
            assert recs[-1].v_obs is not None
            logits = recs[-1].v_obs.max(2).values
        return logits, recs

    def _eventprop_step(
        self, x: Tensor, labels: Tensor, counts: EventCounts
    ) -> tuple[Tensor, float]:
        assert self.opt is not None
        s = self.dp.snn
        weights = [w.detach() for w in self.params]
        _, recs = self._eventprop_logits(x, weights)
        ws = [self.xbar.convert(li, w) for li, w in enumerate(weights)]
        if self.loss_kind == "first-spike":
            logits, loss, g = ep.first_spike_loss(
                recs[-1], labels, self.p, s.ttfs_tau, s.ttfs_reg, s.ttfs_reg_tau
            )
            grads = ep.backward(recs, ws, self.p, g, None)
        else:
            logits, loss, g = ep.membrane_loss(recs[-1], labels)
            grads = ep.backward(recs, ws, self.p, None, g, n_obs=s.observations)
        self.opt.zero_grad()
        for w, gr in zip(self.params, grads, strict=True):
            w.grad = gr.to(w.dtype)
        self._apply(counts, self._silent_bumps(recs, labels) if s.silent_bump > 0 else None)
        counts.input_spikes += int(torch.isfinite(recs[0].t_in).sum())
        for li, rec in enumerate(recs):
            if rec.spiking:
                n_sp = int(rec.counts.sum())
                counts.spikes += n_sp
                counts.address_bits += n_sp * address_bits(self.widths[li + 1])
                if li + 1 < len(self.widths) - 1:
                    counts.synaptic_events += n_sp * self.widths[li + 2]
        counts.synaptic_events += counts.input_spikes * self.widths[1]
        if self.xbar.hardware:
            counts.adc_conversions += counts.synaptic_events
        return logits, loss

    def _silent_bumps(self, recs: list[ep.LayerRecord], labels: Tensor) -> list[Tensor]:
        """Weight bumps for silent neurons (``snn.silent_bump``): every input weight of an output
        neuron that stayed silent for a sample of its label, and of a hidden neuron silent for
        the whole batch, grows by ``silent_bump`` thresholds of drive over the fan-in."""
        gain = self.p.threshold / self.p.kernel_peak()
        out = []
        for li, rec in enumerate(recs):
            fan_in = self.widths[li]
            silent = rec.counts == 0  # (B, N)
            if li == len(recs) - 1:
                if not rec.spiking:
                    out.append(torch.zeros(fan_in, silent.shape[1], dtype=torch.float64))
                    continue
                rows = torch.arange(len(labels))
                hit = torch.zeros_like(silent)
                hit[rows, labels] = silent[rows, labels]
                bump = hit.any(0)
            else:
                bump = silent.all(0)
            step = self.dp.snn.silent_bump * gain / fan_in
            out.append((bump.to(torch.float64) * step).expand(fan_in, -1).clone())
        return out

    # ------------------------------------------------------------------ counting

    def _count_spikes(self, li: int, spikes: Tensor, counts: EventCounts) -> None:
        n_sp = int((spikes > 0).sum())
        counts.spikes += n_sp
        counts.address_bits += n_sp * address_bits(self.widths[li + 1])
        counts.synaptic_events += n_sp * self.widths[li + 2]

    def _count_adc(self, inputs: list[Tensor], counts: EventCounts) -> None:
        if self.xbar.hardware:
            for li, x in enumerate(inputs):
                active = int((x.sum(2) > 0).sum())
                counts.adc_conversions += active * self.widths[li + 1]
