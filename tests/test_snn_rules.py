"""Spiking rules end to end: datasets, encoders, LIF, config errors, training, event counts."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from insitu import config
from insitu.algo import yinyang
from insitu.algo.data import Dataset, load_dataset
from insitu.algo.snn import Encoder, LifParams, lif_layer
from insitu.algo.snn_model import SpikingNet
from insitu.algo.train import train


def _subset(name: str, n_train: int, n_test: int) -> Dataset:
    d = load_dataset(name)
    return Dataset(
        name,
        d.x_train[:n_train],
        d.y_train[:n_train],
        d.x_test[:n_test],
        d.y_test[:n_test],
        d.num_classes,
    )


def test_yinyang_dataset_is_the_reference_geometry() -> None:
    d = load_dataset("yinyang")
    assert d.x_train.shape == (5000, 4) and d.x_test.shape == (1000, 4)
    assert d.num_classes == 3
    counts = np.bincount(d.y_train, minlength=3) / 5000
    assert counts.min() > 0.3
    x, y = d.x_train[:, 0].astype(np.float64), d.x_train[:, 1].astype(np.float64)
    np.testing.assert_allclose(d.x_train[:, 2], 1 - d.x_train[:, 0], atol=1e-6)
    assert (np.hypot(x - 0.5, y - 0.5) <= 0.5 + 1e-6).all()
    labels = [
        yinyang.which_class(float(a), float(b)) for a, b in zip(x[:500], y[:500], strict=True)
    ]
    assert (np.array(labels) == d.y_train[:500]).mean() > 0.99  # float32 rounding at borders
    # Different seeds for train and test, fixed across calls.
    assert not np.array_equal(d.x_train[:1000], d.x_test)
    np.testing.assert_array_equal(load_dataset("yinyang").x_test, d.x_test)


@pytest.mark.parametrize(
    ("sets", "pieces"),
    [
        (["learning.rule=bp"], ["learning.rule", "bptt, error-triggered, eventprop"]),
        (["network.activation=relu"], ["network.activation", "'lif'"]),
        (["learning.rule=eventprop", "snn.refractory=2"], ["snn.refractory", "eventprop"]),
        (["learning.rule=eventprop", "snn.encoder=rate"], ["snn.encoder", "latency"]),
        (["snn.loss=first-spike"], ["snn.loss", "eventprop"]),
        (["snn.tau_syn=20"], ["snn.tau_syn", "tau_mem"]),
        (["snn.init_mean=[1, 2, 3]"], ["snn.init_mean", "one per weight layer"]),
        (["snn.t_late=50"], ["snn.t_late", "t_max"]),
        (["snn.threshold=0"], ["snn.threshold"]),
    ],
)
def test_inconsistent_spiking_design_points_fail_clearly(
    sets: list[str], pieces: list[str]
) -> None:
    with pytest.raises(config.DesignError) as info:
        config.load("yinyang", sets)
    for piece in pieces:
        assert piece in str(info.value), str(info.value)


def test_spiking_rule_on_an_mlp_preset_fails() -> None:
    with pytest.raises(config.DesignError, match=r"network\.activation"):
        config.load("digits", ["learning.rule=eventprop"])


def test_cli_refuses_mlp_rules_on_the_spiking_preset(tmp_path: Path) -> None:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "insitu.cli",
            "train",
            "yinyang",
            "--set",
            "learning.rule=dfa",
            "--out",
            str(tmp_path / "r"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 2
    assert "learning.rule" in r.stderr and "lif" in r.stderr
    assert not (tmp_path / "r").exists()


def _params(**kw: float | str) -> LifParams:
    base: dict[str, float | str] = dict(
        tau_mem=20.0,
        tau_syn=5.0,
        threshold=1.0,
        reset="zero",
        refractory=0.0,
        dt=1.0,
        t_max=200.0,
        surrogate_slope=5.0,
    )
    base.update(kw)
    return LifParams(**base)  # type: ignore[arg-type]


def test_lif_refractory_period_and_reset_modes() -> None:
    drive = torch.zeros(200, 1, 1)
    drive[0] = 5.0  # a strong current that decays with tau_syn
    drive[1:] = 0.35  # and a steady input
    free = lif_layer(drive, _params(), surrogate=False).spikes.flatten().nonzero().flatten()
    ref = lif_layer(drive, _params(refractory=6.0), surrogate=False).spikes.flatten()
    ref_t = ref.nonzero().flatten()
    assert len(free) > len(ref_t) >= 3
    assert int(torch.diff(ref_t).min()) >= 7  # 6 refractory steps, then integrate again
    sub = lif_layer(drive, _params(reset="subtract"), surrogate=False).spikes.sum()
    assert int(sub) >= len(free)  # subtracting keeps the excess: at least as many spikes


def test_encoders() -> None:
    dp = config.load("yinyang", ["snn.dt=1.0"])
    enc = Encoder(dp)
    x = torch.tensor([[1.0, 0.0, 0.5, 0.2]])
    t = enc.latency_times(x)
    assert t.tolist()[0] == pytest.approx([0.0, 15.0, 7.5, 12.0, 0.0])  # last: the bias
    raster = enc.raster(x)
    assert raster.shape == (30, 1, 5)
    assert int((raster > 0).sum()) == 5
    # 7.5 ms lands in step (7, 8] with the current left at its end.
    assert float(raster[7, 0, 2]) == pytest.approx(math.exp(-0.5 / 5.0), rel=1e-6)
    rate = Encoder(
        config.load(
            "digits",
            [
                "network.activation=lif",
                "learning.rule=bptt",
                "snn.encoder=rate",
                "snn.max_rate=0.5",
            ],
        )
    )
    xr = torch.full((200, 64), 0.4)
    r = rate.raster(xr, torch.Generator().manual_seed(0))
    assert r.shape == (60, 200, 65)
    assert float(r[:, :, :64].mean()) == pytest.approx(0.4 * 0.5 * 0.5, rel=0.05)


@pytest.mark.parametrize(
    ("rule", "sets", "n_train", "epochs", "floor"),
    [
        ("bptt", ["learning.lr=0.01"], 1000, 2, 0.70),
        ("eventprop", ["learning.lr=0.004"], 500, 2, 0.45),
        ("error-triggered", ["learning.lr=0.01"], 1000, 2, 0.45),
    ],
)
def test_rules_learn_yinyang(
    tmp_path: Path, rule: str, sets: list[str], n_train: int, epochs: int, floor: float
) -> None:
    dp = config.load("yinyang", [f"learning.rule={rule}", f"learning.epochs={epochs}", *sets])
    s = train(dp, tmp_path, data=_subset("yinyang", n_train, 300))
    assert s["test_accuracy"] >= floor, s["history"]
    ev = s["spiking"]["events"]
    assert ev["spikes"] > 0 and ev["cell_updates"] > 0
    assert s["history"][0]["events"]["samples"] == n_train


def test_spike_encoded_digits_learn(tmp_path: Path) -> None:
    sets = [
        "network.activation=lif",
        "learning.rule=bptt",
        "network.layers=[64, 64, 10]",
        "snn.encoder=rate",
        "snn.max_rate=0.5",
        "snn.t_max=20",
        "snn.dt=1.0",
        "learning.epochs=3",
        "learning.lr=0.01",
        "snn.init_mean=[1.5, 3]",
    ]
    s = train(config.load("digits", sets), tmp_path, data=_subset("digits", 800, 300))
    assert s["test_accuracy"] >= 0.6, s["history"]


def test_error_triggered_updates_far_less_than_the_dense_rule(tmp_path: Path) -> None:
    data = _subset("yinyang", 800, 200)
    base = ["learning.rule=error-triggered", "learning.epochs=1", "learning.lr=0.01"]
    trig = train(config.load("yinyang", base), tmp_path / "t", data=data)
    dense = train(
        config.load("yinyang", [*base, "snn.error_trigger=false"]), tmp_path / "d", data=data
    )
    t_ev, d_ev = trig["spiking"]["events"], dense["spiking"]["events"]
    assert d_ev["error_events"] == 0 and t_ev["error_events"] > 0
    assert d_ev["cell_updates"] > 5 * t_ev["cell_updates"], (d_ev, t_ev)


def test_error_threshold_tracks_the_target_event_rate() -> None:
    dp = config.load("yinyang", ["learning.rule=error-triggered", "snn.target_event_rate=0.01"])
    net = SpikingNet(dp)
    d = _subset("yinyang", 640, 10)
    x, y = torch.from_numpy(d.x_train), torch.from_numpy(d.y_train)
    rates = []
    for i in range(0, 640, 32):
        before = net.counts.error_events
        net.train_step(x[i : i + 32], y[i : i + 32])
        steps = net.p.steps * 32 * (120 + 3)
        rates.append((net.counts.error_events - before) / steps)
    assert 0.004 < float(np.mean(rates[-5:])) < 0.025, rates


def test_error_triggered_pulses_are_programmed_into_the_devices() -> None:
    dp = config.load(
        "yinyang",
        ["learning.rule=error-triggered", "learning.mode=hardware", "precision.weight_bits=8"],
    )
    net = SpikingNet(dp)
    d = _subset("yinyang", 64, 10)
    before = [w.clone() for w in net.xbar.read()]
    requested: list[torch.Tensor] = [torch.zeros_like(w) for w in before]
    update = net.xbar.update

    def spy(layer: int, dw: torch.Tensor) -> torch.Tensor:
        requested[layer] += dw
        return update(layer, dw)

    net.xbar.update = spy  # type: ignore[method-assign]
    net.train_step(torch.from_numpy(d.x_train[:32]), torch.from_numpy(d.y_train[:32]))
    after = net.xbar.read()
    lsb = net.xbar.lsb
    for b, a, r in zip(before, after, requested, strict=True):
        assert float(r.abs().sum()) > 0
        # The ideal device (device_effects off) moves each weight by whole pulses of one LSB,
        # except where the weight saturates.
        expect = (b + r).clamp(-127 * lsb, 127 * lsb)
        torch.testing.assert_close(a, expect, atol=1e-9, rtol=0)
    assert net.counts.pulses >= net.counts.cell_updates > 0


def test_hardware_mode_quantizes_column_sums_with_the_adc(tmp_path: Path) -> None:
    dp = config.load("yinyang", ["learning.mode=hardware", "array.adc_bits=3", "learning.epochs=1"])
    net = SpikingNet(dp)
    d = _subset("yinyang", 256, 10)
    net.calibrate(torch.from_numpy(d.x_train))
    s = torch.randn(50, 7) * 5
    q = net.xbar.convert(0, s)
    assert len(torch.unique(q)) <= 2**3 - 1
    s2 = train(dp, tmp_path, data=_subset("yinyang", 300, 100))
    assert s2["spiking"]["events"]["adc_conversions"] > 0


def test_bptt_on_noisy_crossbar_devices_keeps_finite_gradients() -> None:
    """Read noise scales with sqrt(sum x^2 w^2), which is 0 in a step without input spikes;
    differentiating it gave inf * 0 = NaN weights (the docs' hardware command crashed)."""
    sets = [
        "learning.mode=hardware",
        "array.device_effects=true",
        "array.device=subthreshold",
        "array.adc_bits=5",
    ]
    net = SpikingNet(config.load("yinyang", sets))
    assert net.xbar.params.read_noise_sigma > 0
    d = _subset("yinyang", 64, 10)
    x, y = torch.from_numpy(d.x_train), torch.from_numpy(d.y_train)
    net.calibrate(x)
    for i in range(0, 64, 32):
        _, loss = net.train_step(x[i : i + 32], y[i : i + 32])
        assert math.isfinite(loss)
    assert all(bool(torch.isfinite(w).all()) for w in net.params)
    assert all(p.grad is not None and bool(torch.isfinite(p.grad).all()) for p in net.params)


def test_resume_is_identical_for_a_spiking_rule(tmp_path: Path) -> None:
    data = _subset("yinyang", 200, 50)
    sets = ["learning.rule=error-triggered", "snn.encoder=rate"]
    full = train(config.load("yinyang", [*sets, "learning.epochs=2"]), tmp_path / "f", data=data)
    train(config.load("yinyang", [*sets, "learning.epochs=1"]), tmp_path / "c", data=data)
    resumed = train(
        config.load("yinyang", [*sets, "learning.epochs=2"]),
        tmp_path / "c",
        resume=True,
        data=data,
    )

    def strip(h: list[dict]) -> list[dict]:  # type: ignore[type-arg]
        return [{k: v for k, v in e.items() if k != "seconds"} for e in h]

    assert strip(resumed["history"]) == strip(full["history"])
    assert resumed["spiking"]["events"] == full["spiking"]["events"]


def test_events_are_priced_with_sources(tmp_path: Path) -> None:
    dp = config.load("yinyang", ["learning.rule=error-triggered", "learning.epochs=1"])
    s = train(dp, tmp_path, data=_subset("yinyang", 100, 20))
    energy = s["spiking"]["energy"]
    assert energy["total_pj"] == pytest.approx(sum(i["pj"] for i in energy["items"].values()))
    for item in energy["items"].values():
        assert item["source"] and item["pj_each"] > 0
    ev = s["spiking"]["events"]
    assert energy["items"]["cell_programming_pulses"]["count"] == ev["pulses"]
