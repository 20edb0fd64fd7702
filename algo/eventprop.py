"""EventProp: exact event-driven simulation of LIF layers and the adjoint backward pass.

This module owns the exact gradient of spiking networks (Wunderlich and Pehle, "Event-based
backpropagation can compute exact gradients for spiking neural networks", Sci. Rep. 11, 12829
(2021); Pehle et al., arXiv 2302.07141). Layers are feed-forward, neurons current-based LIF with
reset to zero: ``tau_mem V' = -V + I``, ``tau_syn I' = -I``, an input spike adds its weight to I.

Forward (:func:`layer_forward`): between input events the state has a closed form,
``V(s) = (V0 - A) exp(-s/tau_mem) + A exp(-s/tau_syn)`` with ``A = I0 tau_syn / (tau_syn -
tau_mem)``, which has at most one extremum, so every threshold crossing is bracketed on a
monotone piece and solved to machine precision by safeguarded Newton steps: spike times are
exact (float64), not bound to a time grid.

Backward (:func:`layer_backward`): the adjoint ``lambda_V = dL/dV(t)``, ``lambda_I = dL/dI(t)``
runs backwards in time with ``-lambda_V' = -lambda_V / tau_mem`` and ``-lambda_I' = lambda_V /
tau_mem - lambda_I / tau_syn`` (closed form between events) and jumps only at events:

- at a spike t_k of the neuron (``I`` the current there, ``Vdot- = (I - theta) / tau_mem``,
  ``Vdot+ = I / tau_mem``): ``lambda_V- = (Vdot+ lambda_V+ - dL/dt_k) / Vdot-``;
- at a membrane observation ``V(t_o)`` entering the loss: ``lambda_V- = lambda_V+ + dL/dV(t_o)``;
- at an input spike of presynaptic neuron i: ``dL/dw_ij += lambda_I,j`` and that spike's time
  gets ``dL/dt += w_ij (lambda_I,j / tau_syn - lambda_V,j / tau_mem)``, which becomes the
  ``dL/dt_k`` of the presynaptic layer's spike.

Losses (:func:`first_spike_loss`, :func:`membrane_loss`): cross-entropy of ``-t_first / tau``
over the output neurons' first spike times with the regularizer ``alpha (exp(t_label / tau1) -
1)`` (Wunderlich and Pehle's Yin-Yang loss), or cross-entropy of the maximum over observation
times of non-spiking output membranes (optional membrane observations).

Tested: gradients agree with central finite differences to < 1e-3 relative error on random
small networks, and with autograd through the time-stepped simulation as the step shrinks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .snn import LifParams

F64 = torch.float64
_NEWTON_ITERS = 80


@dataclass
class LayerRecord:
    """One layer's forward pass: its input events, its spikes, what the backward pass needs."""

    t_in: Tensor  # (B, K) sorted input spike times, inf padding
    src_in: Tensor  # (B, K) presynaptic neuron of each input spike
    spike_t: Tensor  # (B, N, S) spike times per neuron, in order, inf padding
    spike_i: Tensor  # (B, N, S) synaptic current at each spike
    counts: Tensor  # (B, N) spikes per neuron (capped at S)
    v_obs: Tensor | None  # (B, N, O) membrane at the observation times
    spiking: bool


# --------------------------------------------------------------------------- closed forms


def _free(v: Tensor, i: Tensor, s: Tensor, p: LifParams) -> tuple[Tensor, Tensor]:
    """State after a duration ``s`` without events or threshold."""
    ts, tm = p.tau_syn, p.tau_mem
    a = i * (ts / (ts - tm))
    es, em = torch.exp(-s / ts), torch.exp(-s / tm)
    return (v - a) * em + a * es, i * es


def _bracket(v: Tensor, i: Tensor, rem: Tensor, p: LifParams) -> tuple[Tensor, Tensor, Tensor]:
    """Where V reaches the threshold within ``[0, rem]``: (has, lo, hi) with V increasing on
    [lo, hi], ``V(lo) < theta <= V(hi)`` (lo = hi = 0 when V already is at threshold)."""
    ts, tm, th = p.tau_syn, p.tau_mem, p.threshold
    a = i * (ts / (ts - tm))
    b = v - a
    with torch.no_grad():
        r = -a * tm / (b * ts)
        s_star = torch.log(r) / (1.0 / ts - 1.0 / tm)
    s_star = torch.nan_to_num(s_star, nan=-1.0, posinf=-1.0, neginf=-1.0)
    interior = (s_star > 0) & (s_star < rem)
    v_end = b * torch.exp(-rem / tm) + a * torch.exp(-rem / ts)
    s_safe = torch.where(interior, s_star, torch.zeros_like(s_star))
    v_star = b * torch.exp(-s_safe / tm) + a * torch.exp(-s_safe / ts)
    rising = i > v  # V'(0) > 0: an interior extremum is a maximum
    at_th = v >= th
    peak_cross = interior & rising & (v_star >= th)
    has = at_th | peak_cross | (v_end >= th)
    zero = torch.zeros_like(rem)
    hi = torch.where(peak_cross, s_star, rem)
    lo = torch.where(interior & ~rising, s_star, zero)
    hi = torch.where(at_th, zero, hi)
    lo = torch.where(at_th, zero, lo)
    return has, lo, hi


def _solve(v: Tensor, i: Tensor, lo: Tensor, hi: Tensor, p: LifParams) -> Tensor:
    """The crossing time in [lo, hi] (V increasing there) by safeguarded Newton steps."""
    ts, tm, th = p.tau_syn, p.tau_mem, p.threshold
    a = i * (ts / (ts - tm))
    b = v - a
    s = hi.clone()
    done = lo >= hi
    for _ in range(_NEWTON_ITERS):
        em, es = torch.exp(-s / tm), torch.exp(-s / ts)
        f = b * em + a * es - th
        df = -b / tm * em - a / ts * es
        lo = torch.where(f < 0, s, lo)
        hi = torch.where(f >= 0, s, hi)
        step = s - f / df
        bad = ~((step > lo) & (step < hi))
        nxt = torch.where(bad, 0.5 * (lo + hi), step)
        nxt = torch.where(done, s, nxt)
        delta = (nxt - s).abs()
        s = nxt
        if bool((delta <= 1e-12 * (1.0 + s.abs())).all()):
            break
    return s


# --------------------------------------------------------------------------- forward


def layer_forward(
    t_in: Tensor,
    src_in: Tensor,
    w: Tensor,
    p: LifParams,
    *,
    spiking: bool = True,
    max_spikes: int = 16,
    t_obs: Tensor | None = None,
) -> LayerRecord:
    """Simulate one layer exactly over [0, p.t_max] for sorted input events (B, K)."""
    b = t_in.shape[0]
    n_in, n = w.shape
    t_end = p.t_max
    w_ext = torch.cat([w.to(F64), torch.zeros(1, n, dtype=F64)])  # row n_in: observation events
    n_obs = 0 if t_obs is None else len(t_obs)
    if n_obs:
        assert t_obs is not None
        t_ev = torch.cat([t_in, t_obs.to(F64).expand(b, n_obs)], 1)
        code = torch.cat([src_in, -1 - torch.arange(n_obs).expand(b, n_obs)], 1)
        t_ev, order = torch.sort(t_ev, dim=1, stable=True)
        code = code.gather(1, order)
    else:
        t_ev, code = t_in, src_in
    v = torch.zeros(b, n, dtype=F64)
    i = torch.zeros(b, n, dtype=F64)
    spike_t = torch.full((b, n, max_spikes), math.inf, dtype=F64)
    spike_i = torch.zeros(b, n, max_spikes, dtype=F64)
    counts = torch.zeros(b, n, dtype=torch.int64)
    v_obs = torch.zeros(b, n, n_obs, dtype=F64) if n_obs else None
    t_cur = torch.zeros(b, 1, dtype=F64)

    def evolve(v: Tensor, i: Tensor, dt: Tensor) -> tuple[Tensor, Tensor]:
        rem = dt.expand(b, n).clone()
        tt = t_cur.expand(b, n).clone()
        while spiking:
            has, lo, hi = _bracket(v, i, rem, p)
            has &= counts < max_spikes
            if not bool(has.any()):
                break
            idx = has.nonzero(as_tuple=True)
            s = _solve(v[idx], i[idx], lo[idx], hi[idx], p)
            i_at = i[idx] * torch.exp(-s / p.tau_syn)
            c = counts[idx]
            spike_t[(*idx, c)] = tt[idx] + s
            spike_i[(*idx, c)] = i_at
            counts[idx] = c + 1
            v = v.index_put(idx, torch.zeros_like(s))
            i = i.index_put(idx, i_at)
            tt = tt.index_put(idx, tt[idx] + s)
            rem = rem.index_put(idx, (rem[idx] - s).clamp(min=0))
        return _free(v, i, rem, p)

    for k in range(t_ev.shape[1]):
        t_next = t_ev[:, k : k + 1].clamp(max=t_end)
        v, i = evolve(v, i, (t_next - t_cur).clamp(min=0))
        t_cur = torch.maximum(t_cur, t_next)
        valid = torch.isfinite(t_ev[:, k]) & (t_ev[:, k] <= t_end)
        c = code[:, k]
        row = torch.where(c >= 0, c, torch.full_like(c, n_in))
        i = i + w_ext[row] * valid.unsqueeze(1)
        if v_obs is not None:
            is_obs = c < 0
            if bool(is_obs.any()):
                o = (-1 - c).clamp(min=0)
                rows = is_obs.nonzero(as_tuple=True)[0]
                v_obs[rows, :, o[rows]] = v[rows]
    v, i = evolve(v, i, (t_end - t_cur).clamp(min=0))
    used = max(1, int(counts.max()))
    return LayerRecord(
        t_in, src_in, spike_t[:, :, :used], spike_i[:, :, :used], counts, v_obs, spiking
    )


def spikes_to_events(rec: LayerRecord) -> tuple[Tensor, Tensor, Tensor]:
    """A layer's spikes as the next layer's sorted input events: times (B, K), sources (B, K)
    and the flat (neuron * S + slot) position of each event, to route gradients back."""
    b, n, s = rec.spike_t.shape
    flat = rec.spike_t.reshape(b, n * s)
    t, pos = torch.sort(flat, dim=1, stable=True)
    k = max(1, int(torch.isfinite(t).sum(1).max()))
    t, pos = t[:, :k], pos[:, :k]
    return t, pos // s, pos


def forward(
    t_in: Tensor,
    src_in: Tensor,
    weights: list[Tensor],
    p: LifParams,
    *,
    max_spikes: int,
    readout: str,
    n_obs: int = 0,
) -> list[LayerRecord]:
    """All layers; the output layer spikes for the first-spike readout and is a non-spiking
    membrane observed ``n_obs`` times for the membrane readout."""
    records = []
    t, src = t_in, src_in
    t_obs = obs_times(p, n_obs) if readout == "membrane" else None
    for li, w in enumerate(weights):
        last = li == len(weights) - 1
        rec = layer_forward(
            t,
            src,
            w,
            p,
            spiking=not (last and readout == "membrane"),
            max_spikes=max_spikes,
            t_obs=t_obs if last else None,
        )
        records.append(rec)
        if not last:
            t, src, _ = spikes_to_events(rec)
    return records


def obs_times(p: LifParams, n_obs: int) -> Tensor:
    """Membrane observation times, evenly spaced in (0, t_max]."""
    return torch.arange(1, n_obs + 1, dtype=F64) * (p.t_max / n_obs)


# --------------------------------------------------------------------------- backward


def layer_backward(
    rec: LayerRecord,
    w: Tensor,
    g_spike: Tensor | None,
    g_obs: Tensor | None,
    p: LifParams,
    t_obs: Tensor | None = None,
    *,
    input_grad: bool = True,
) -> tuple[Tensor, Tensor | None]:
    """Adjoint pass of one layer: dL/dW (n_in, N) and dL/dt of every input event (B, K)."""
    ts, tm, th, t_end = p.tau_syn, p.tau_mem, p.threshold, p.t_max
    b, k_in = rec.t_in.shape
    n_in, n = w.shape
    w = w.to(F64)
    parts_t = [rec.t_in.unsqueeze(1).expand(b, n, k_in)]
    parts_c = [torch.zeros(b, n, k_in, dtype=torch.int64)]
    parts_i = [torch.arange(k_in).expand(b, n, k_in)]
    s_n = rec.spike_t.shape[2]
    if rec.spiking and g_spike is not None:
        parts_t.append(rec.spike_t)
        parts_c.append(torch.ones(b, n, s_n, dtype=torch.int64))
        parts_i.append(torch.arange(s_n).expand(b, n, s_n))
    if g_obs is not None and t_obs is not None:
        o = len(t_obs)
        parts_t.append(t_obs.to(F64).expand(b, n, o))
        parts_c.append(torch.full((b, n, o), 2, dtype=torch.int64))
        parts_i.append(torch.arange(o).expand(b, n, o))
    times = torch.cat(parts_t, 2)
    kinds = torch.cat(parts_c, 2)
    index = torch.cat(parts_i, 2)
    valid = torch.isfinite(times) & (times <= t_end)
    times = torch.where(valid, times, torch.full_like(times, t_end))
    times, order = torch.sort(times, dim=2, descending=True, stable=True)
    kinds, index, valid = kinds.gather(2, order), index.gather(2, order), valid.gather(2, order)

    lam_v = torch.zeros(b, n, dtype=F64)
    lam_i = torch.zeros(b, n, dtype=F64)
    dw = torch.zeros(n_in * n, dtype=F64)
    g_in = torch.zeros(b, k_in, dtype=F64) if input_grad else None
    cols = torch.arange(n).expand(b, n)
    t_prev = torch.full((b, n), t_end, dtype=F64)
    c_ratio = ts / (tm - ts)
    for m in range(times.shape[2]):
        t_m = times[:, :, m]
        dt = t_prev - t_m
        t_prev = t_m
        em, es = torch.exp(-dt / tm), torch.exp(-dt / ts)
        c = lam_v * c_ratio
        lam_i = (lam_i - c) * es + c * em
        lam_v = lam_v * em
        kind, idx, ok = kinds[:, :, m], index[:, :, m], valid[:, :, m]
        is_in = ok & (kind == 0)
        if bool(is_in.any()):
            src = rec.src_in.gather(1, idx.clamp(max=k_in - 1))
            contrib = torch.where(is_in, lam_i, torch.zeros_like(lam_i))
            dw.scatter_add_(0, (src * n + cols).flatten(), contrib.flatten())
            if g_in is not None:
                g = w[src, cols] * (lam_i / ts - lam_v / tm)
                g_in.scatter_add_(1, idx.clamp(max=k_in - 1), torch.where(is_in, g, 0.0))
        if g_spike is not None and rec.spiking:
            is_sp = ok & (kind == 1)
            if bool(is_sp.any()):
                j = idx.clamp(max=s_n - 1).unsqueeze(2)
                i_k = rec.spike_i.gather(2, j).squeeze(2)
                g_k = g_spike.gather(2, j).squeeze(2)
                vdot_minus = (i_k - th) / tm
                vdot_plus = i_k / tm
                jumped = (vdot_plus * lam_v - g_k) / torch.where(is_sp, vdot_minus, 1.0)
                lam_v = torch.where(is_sp, jumped, lam_v)
        if g_obs is not None:
            is_ob = ok & (kind == 2)
            if bool(is_ob.any()):
                j = idx.clamp(max=g_obs.shape[2] - 1).unsqueeze(2)
                lam_v = lam_v + torch.where(is_ob, g_obs.gather(2, j).squeeze(2), 0.0)
    return dw.view(n_in, n), g_in


def backward(
    records: list[LayerRecord],
    weights: list[Tensor],
    p: LifParams,
    g_out_spike: Tensor | None,
    g_out_obs: Tensor | None,
    n_obs: int = 0,
) -> list[Tensor]:
    """dL/dW of every layer, from the loss's sensitivity to the output layer's spike times
    (B, N, S) or observed membranes (B, N, O)."""
    grads: list[Tensor] = [torch.empty(0)] * len(weights)
    g_spike, g_obs = g_out_spike, g_out_obs
    t_obs = obs_times(p, n_obs) if g_out_obs is not None else None
    for li in range(len(weights) - 1, -1, -1):
        rec = records[li]
        dw, g_in = layer_backward(rec, weights[li], g_spike, g_obs, p, t_obs, input_grad=li > 0)
        grads[li] = dw
        if li > 0:
            assert g_in is not None
            prev = records[li - 1]
            b, n_prev, s_prev = prev.spike_t.shape
            _, _, pos = spikes_to_events(prev)
            g_prev = torch.zeros(b, n_prev * s_prev, dtype=F64)
            g_prev.scatter_add_(1, pos, g_in)
            g_spike = g_prev.view(b, n_prev, s_prev)
            g_obs, t_obs = None, None
    return grads


# --------------------------------------------------------------------------- losses


def first_spike_times(rec: LayerRecord, t_end: float) -> Tensor:
    """(B, N) first spike time of each output neuron, ``t_end`` for silent ones."""
    t = rec.spike_t[:, :, 0]
    return torch.where(torch.isfinite(t), t, torch.full_like(t, t_end))


def first_spike_loss(
    rec: LayerRecord, labels: Tensor, p: LifParams, tau: float, reg: float, reg_tau: float
) -> tuple[Tensor, float, Tensor]:
    """Logits ``-t_first / tau`` (B, N), the mean loss, and dL/dt (B, N, S) (first spikes only;
    silent neurons have no spike time and get no gradient)."""
    t = first_spike_times(rec, p.t_max)
    logits = -t / tau
    prob = torch.softmax(logits, 1)
    b = len(labels)
    rows = torch.arange(b)
    t_lab = t[rows, labels]
    loss = -torch.log(prob[rows, labels].clamp_min(1e-300)) + reg * (torch.exp(t_lab / reg_tau) - 1)
    onehot = torch.zeros_like(prob)
    onehot[rows, labels] = 1.0
    g_t = (prob - onehot) * (-1.0 / tau)
    g_t = g_t + onehot * (reg / reg_tau) * torch.exp(t / reg_tau)
    g_t = torch.where(torch.isfinite(rec.spike_t[:, :, 0]), g_t, torch.zeros_like(g_t)) / b
    g = torch.zeros_like(rec.spike_t)
    g[:, :, 0] = g_t
    return logits, float(loss.mean()), g


def membrane_loss(rec: LayerRecord, labels: Tensor) -> tuple[Tensor, float, Tensor]:
    """Logits = maximum observed membrane (B, N); the mean cross-entropy; dL/dV_obs (B, N, O)."""
    assert rec.v_obs is not None
    logits, arg = rec.v_obs.max(2)
    prob = torch.softmax(logits, 1)
    b = len(labels)
    rows = torch.arange(b)
    loss = -torch.log(prob[rows, labels].clamp_min(1e-300))
    onehot = torch.zeros_like(prob)
    onehot[rows, labels] = 1.0
    g = torch.zeros_like(rec.v_obs)
    g.scatter_(2, arg.unsqueeze(2), ((prob - onehot) / b).unsqueeze(2))
    return logits, float(loss.mean()), g
