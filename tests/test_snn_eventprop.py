"""EventProp: exact spike times and adjoint gradients against finite differences and BPTT."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from insitu import config
from insitu.algo import eventprop as ep
from insitu.algo.snn import Encoder, LifParams, lif_layer

F64 = torch.float64
P = LifParams(
    tau_mem=20.0,
    tau_syn=5.0,
    threshold=1.0,
    reset="zero",
    refractory=0.0,
    dt=0.5,
    t_max=40.0,
    surrogate_slope=5.0,
)


def _net(
    seed: int, sizes: tuple[int, ...]
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    t_in = torch.rand(3, sizes[0], generator=g, dtype=F64) * 15
    t_in, src = torch.sort(t_in, 1)
    ws = [
        torch.randn(a, b, generator=g, dtype=F64) * 3.0 + 4.0 for a, b in itertools.pairwise(sizes)
    ]
    return t_in, src, ws


def _loss(t_in, src, ws, labels, readout):  # type: ignore[no-untyped-def]
    recs = ep.forward(t_in, src, ws, P, max_spikes=16, readout=readout, n_obs=8)
    if readout == "membrane":
        return recs, ep.membrane_loss(recs[-1], labels)
    return recs, ep.first_spike_loss(recs[-1], labels, P, 2.0, 0.01, 15.0)


def test_spike_times_are_exact_threshold_crossings() -> None:
    t_in, src, ws = _net(1, (4, 6))
    rec = ep.forward(t_in, src, ws, P, max_spikes=16, readout="first-spike")[0]
    assert int(rec.counts.max()) >= 2
    # The dynamics are linear between resets and a reset to zero at the threshold subtracts
    # theta * exp(-(t - t_r) / tau_mem) from then on, so V(t_k-) has a closed form to check.
    for b in range(3):
        for j in range(6):
            for k in range(int(rec.counts[b, j])):
                t_k = float(rec.spike_t[b, j, k])
                v = sum(
                    ws[0][si, j].item() * _psp(t_k - ti)
                    for ti, si in zip(t_in[b].tolist(), src[b].tolist(), strict=True)
                    if ti < t_k
                )
                for r in range(k):
                    v -= math.exp(-(t_k - float(rec.spike_t[b, j, r])) / P.tau_mem)
                assert v == pytest.approx(P.threshold, abs=1e-9)


def _psp(s: float) -> float:
    ts, tm = P.tau_syn, P.tau_mem
    return ts / (ts - tm) * (math.exp(-s / ts) - math.exp(-s / tm))


@pytest.mark.parametrize("readout", ["first-spike", "membrane"])
def test_gradients_match_finite_differences(readout: str) -> None:
    t_in, src, ws = _net(0, (3, 4, 3))
    labels = torch.tensor([0, 1, 2])
    recs, (_, _, g) = _loss(t_in, src, ws, labels, readout)
    assert int(recs[0].counts.max()) >= 2  # several spikes per hidden neuron, resets included
    if readout == "membrane":
        grads = ep.backward(recs, ws, P, None, g, n_obs=8)
    else:
        assert int((recs[1].counts > 0).sum()) >= 5
        grads = ep.backward(recs, ws, P, g, None)
    eps = 1e-6
    for li, w in enumerate(ws):
        fd = torch.zeros_like(w)
        for idx in range(w.numel()):
            plus = [x.clone() for x in ws]
            minus = [x.clone() for x in ws]
            plus[li].view(-1)[idx] += eps
            minus[li].view(-1)[idx] -= eps
            lp = _loss(t_in, src, plus, labels, readout)[1][1]
            lm = _loss(t_in, src, minus, labels, readout)[1][1]
            fd.view(-1)[idx] = (lp - lm) / (2 * eps)
        rel = float((grads[li] - fd).norm() / fd.norm())
        assert fd.norm() > 1e-4
        assert rel < 1e-3, (li, rel)


def _bptt_first_spike_grad(dt: float, x: torch.Tensor, w: torch.Tensor, labels: torch.Tensor):  # type: ignore[no-untyped-def]
    """Autograd through the time-stepped LIF (snn.lif_layer) with the first crossing time
    interpolated linearly inside its step, the same loss as EventProp's first-spike loss."""
    dp = config.load(
        "yinyang",
        [
            "learning.rule=eventprop",
            "network.layers=[4, 3]",
            "snn.init_mean=1",
            f"snn.dt={dt}",
            "snn.t_max=40",
        ],
    )
    p = LifParams.from_design(dp)
    raster = Encoder(dp).raster(x).to(F64)
    wv = w.clone().requires_grad_(True)
    mem = lif_layer(raster @ wv, p, surrogate=False, record=True).membrane  # (T, B, N)
    above = mem >= p.threshold
    n = above.to(torch.int64).argmax(0)  # first step at threshold
    assert bool(above.any(0).all())
    v_n = mem.gather(0, n.unsqueeze(0)).squeeze(0)
    v_prev = mem.gather(0, (n - 1).clamp(min=0).unsqueeze(0)).squeeze(0)
    t_first = (n - 1 + 1).to(F64) * p.dt - p.dt + p.dt * (p.threshold - v_prev) / (v_n - v_prev)
    t_first = t_first + p.dt  # step n ends at (n + 1) dt
    logits = -t_first / 2.0
    prob = torch.softmax(logits, 1)
    rows = torch.arange(len(labels))
    loss = -torch.log(prob[rows, labels]) + 0.01 * (torch.exp(t_first[rows, labels] / 15.0) - 1)
    loss.mean().backward()
    assert wv.grad is not None
    return wv.grad


def test_gradients_match_bptt_in_the_small_time_step_limit() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.rand(4, 4, generator=g, dtype=torch.float32)
    w = torch.rand(5, 3, generator=g, dtype=F64) * 3 + 1.5
    labels = torch.tensor([0, 1, 2, 1])
    dp = config.load(
        "yinyang",
        ["learning.rule=eventprop", "network.layers=[4, 3]", "snn.init_mean=1", "snn.t_max=40"],
    )
    p = LifParams.from_design(dp)
    t, src = Encoder(dp).events(x)
    t = t.to(torch.float32).to(F64)  # the raster's float32 timing
    recs = ep.forward(t, src, [w], p, max_spikes=4, readout="first-spike")
    assert bool((recs[0].counts > 0).all())
    _, _, gl = ep.first_spike_loss(recs[0], labels, p, 2.0, 0.01, 15.0)
    exact = ep.backward(recs, [w], p, gl, None)[0]
    errors = []
    for dt in (0.1, 0.01, 0.002):
        bptt = _bptt_first_spike_grad(dt, x, w, labels)
        errors.append(float((bptt - exact).norm() / exact.norm()))
    assert errors[0] > errors[1] > errors[2], errors
    assert errors[-1] < 2e-2, errors


def test_silent_neurons_get_a_weight_bump() -> None:
    """snn.silent_bump: an output neuron silent for a sample of its label has no spike time
    and so no gradient; its input weights grow by the bump instead (and nothing else moves
    while the whole output layer is silent)."""
    from insitu.algo.snn_model import SpikingNet

    bump = 0.2
    sets = [
        "learning.rule=eventprop",
        "snn.init_mean=[1.5, -3]",  # outputs silent
        "snn.init_std=[1, 0.1]",
        f"snn.silent_bump={bump}",
    ]
    net = SpikingNet(config.load("yinyang", sets))
    before = [w.detach().clone() for w in net.params]
    x = torch.rand(8, 4)
    labels = torch.tensor([0, 0, 2, 2, 0, 2, 0, 2])
    net.train_step(x, labels)
    step = bump * net.p.threshold / net.p.kernel_peak() / net.widths[1]
    d_out = net.params[1].detach() - before[1]
    torch.testing.assert_close(d_out[:, 0], torch.full_like(d_out[:, 0], step))
    torch.testing.assert_close(d_out[:, 2], torch.full_like(d_out[:, 2], step))
    assert float(d_out[:, 1].abs().max()) == 0.0  # class 1 is no label in the batch
    off = SpikingNet(config.load("yinyang", [*sets[:-1], "snn.silent_bump=0"]))
    w0 = off.params[1].detach().clone()
    off.train_step(x, labels)
    assert float((off.params[1].detach() - w0).abs().max()) == 0.0  # silent: no gradient
