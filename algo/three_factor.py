"""The error-triggered three-factor rule (Payvand, Fouda, Kurdahi, Eltawil and Neftci,
"Error-triggered Three-Factor Learning Dynamics for Crossbar Arrays", arXiv 1910.06152).

Each weight update is the product of three local factors, as on a crossbar with the error
broadcast along columns and the presynaptic trace along rows:

- the **error** of postsynaptic neuron i at time step t: at the output ``e = softmax(V_t) -
  onehot(label)`` (the readout membrane V_t as per-step logits); in hidden layer l the output
  error sent through a fixed random +-1 matrix (the project's LFSR feedback, scaled by
  1/sqrt(classes)), i.e. a direct-feedback-alignment local error;
- the **postsynaptic gate**: the surrogate derivative's window ``|V - theta| < gate_window *
  theta`` (hidden layers; the readout has none);
- the **presynaptic trace** P_j, the synaptic-current kernel of the inputs (peak 1).

Error-triggered (``snn.error_trigger: true``): the gated error is quantized by the layer's
threshold into signed events: each neuron integrates it over the sample and emits an event of
its sign whenever the integral has moved by the threshold (a sigma-delta quantizer: an event
carries ``threshold`` of error, so the event count follows the error's size smoothly and the
threshold can be steered to a target rate); only an event updates the synapses of its neuron,
by ``update_levels``-level pulses: ternary (one pulse where ``P_j >=
trace_threshold``) or the trace rounded to ``0..update_levels`` pulses. After each batch the
threshold moves towards ``snn.target_event_rate`` events per neuron and step
(``threshold *= clip(sqrt(rate / target), 1/2, 2)``). In hardware mode a pulse is one device
programming pulse of :mod:`insitu.algo.device` (the threshold then sets the learning rate); in
float mode it changes the weight by ``learning.lr * threshold``, the error it stands for, times
the epoch's ``learning.lr_schedule`` factor.

Dense (``snn.error_trigger: false``): the same three factors without quantization, ``dW = -lr
sum_t P E gate``, one update wherever the product is nonzero: the baseline the event counts are
compared with.

Every update is counted: an (event, synapse) pair with a nonzero pulse count is one cell update,
as the chip would program it online; the batch's pulses are applied to the devices summed at the
end of the batch (the simulation's only batching).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from insitu.config import DesignPoint

from .lfsr import feedback_matrix
from .snn import LifParams, NetworkTrace, network_forward, presynaptic_trace
from .snn_cost import EventCounts, address_bits
from .snn_crossbar import SpikingCrossbar


class ErrorTriggeredRule:
    """Explicit per-layer three-factor updates of a time-stepped spiking network."""

    def __init__(self, dp: DesignPoint) -> None:
        s = dp.snn
        self.p = LifParams.from_design(dp)
        self.trigger = s.error_trigger
        self.target = s.target_event_rate
        self.window = s.gate_window * s.threshold
        self.trace_threshold = s.trace_threshold
        self.levels = s.update_levels
        self.lr = dp.learning.lr
        self.lr_factor = 1.0  # the design point's schedule (float mode), set per epoch
        widths = dp.network.layers
        classes = widths[-1]
        n_layers = len(widths) - 1
        self.thresholds = [float(s.error_threshold)] * n_layers
        self.feedback = [
            torch.from_numpy(feedback_matrix(dp.chip.lfsr_seed, i, classes, widths[i + 1]).copy())
            .to(torch.float32)
            .div(math.sqrt(classes))
            for i in range(n_layers - 1)
        ]

    def step(
        self, raster: Tensor, labels: Tensor, xbar: SpikingCrossbar, counts: EventCounts
    ) -> tuple[Tensor, float, NetworkTrace]:
        """One batch: forward, local errors, events, updates; returns logits, the loss and the
        forward pass's trace."""
        p = self.p
        weights = [w.to(torch.float32) for w in xbar.read()]
        with torch.no_grad():
            trace = network_forward(raster, weights, p, convert=xbar.convert, record=True)
            v = trace.v_out  # (T, B, C)
            logits = v.max(0).values
            prob_t = torch.softmax(v, 2)
            onehot = torch.zeros_like(logits)
            onehot[torch.arange(len(labels)), labels] = 1.0
            e = prob_t - onehot.unsqueeze(0)  # (T, B, C)
            n_layers = len(weights)
            for li in range(n_layers):
                if li == n_layers - 1:
                    err = e
                else:
                    mem = trace.hidden[li].membrane
                    gate = ((mem - p.threshold).abs() < self.window).to(torch.float32)
                    err = (e @ self.feedback[li]) * gate
                pre = presynaptic_trace(trace.inputs[li], p)  # (T, B, K)
                self._update(li, err, pre, xbar, counts)
            loss = float(torch.nn.functional.cross_entropy(logits.to(torch.float64), labels).item())
        return logits, loss, trace

    def _update(
        self, li: int, err: Tensor, pre: Tensor, xbar: SpikingCrossbar, counts: EventCounts
    ) -> None:
        steps, b, n = err.shape
        if not self.trigger:
            dw = -self.lr * self.lr_factor * torch.einsum("tbk,tbn->kn", pre, err)
            nz_pre = (pre != 0).sum(2).to(torch.float64)
            nz_err = (err != 0).sum(2).to(torch.float64)
            updates = int((nz_pre * nz_err).sum())
            xbar.update(li, dw)
            counts.cell_updates += updates
            counts.pulses += updates
            return
        th = self.thresholds[li]
        events = _sigma_delta(err, th)
        if self.levels == 1:
            q = (pre >= self.trace_threshold).to(torch.float32)
        else:
            q = torch.round(pre.clamp(0, 1) * self.levels)
            q = q * (pre >= self.trace_threshold)
        pulses = torch.einsum("tbk,tbn->kn", q, events)  # net pulses per synapse
        n_events = events.abs().sum(2).to(torch.float64)  # (T, B)
        cells = ((q > 0).sum(2).to(torch.float64) * n_events).sum()
        pulse_count = (q.sum(2).to(torch.float64) * n_events).sum()
        step_w = xbar.pulse if xbar.hardware else self.lr * self.lr_factor * th
        xbar.update(li, -step_w * pulses.to(torch.float64))
        total_events = int(n_events.sum())
        counts.error_events += total_events
        counts.address_bits += total_events * address_bits(n)
        counts.cell_updates += int(cells)
        counts.pulses += int(pulse_count)
        if self.target is not None:
            rate = total_events / float(steps * b * n)
            factor = min(2.0, max(0.5, math.sqrt(max(rate, 1e-12) / self.target)))
            self.thresholds[li] = th * factor

    def state_dict(self) -> dict[str, Any]:
        return {"thresholds": list(self.thresholds)}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.thresholds = list(d["thresholds"])


def _sigma_delta(err: Tensor, threshold: float) -> Tensor:
    """Signed error events (T, B, N): each neuron integrates its gated error over the sample and
    emits an event of the error's sign each time the integral has moved by ``threshold`` (the
    integral is lowered by the event), so an event carries ``threshold`` of error."""
    acc = torch.zeros_like(err[0])
    out = torch.empty_like(err)
    for t in range(err.shape[0]):
        acc = acc + err[t]
        ev = torch.sign(acc) * (acc.abs() >= threshold)
        acc = acc - threshold * ev
        out[t] = ev
    return out
