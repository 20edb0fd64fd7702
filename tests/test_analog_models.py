"""The default model cards against physics (and GF180MCU when it is on this machine)."""

from __future__ import annotations

import pytest

from insitu.analog import engine
from insitu.analog.pdk import find_pdk

why = engine.available()
pytestmark = pytest.mark.skipif(why is not None, reason=f"ngspice unavailable: {why}")


def figures(pdk: str, temp: float) -> dict[str, dict[str, float]]:
    from insitu.analog.validate import device_figures

    return {r["device"]: r for r in device_figures(pdk, temp)}


def test_default_card_subthreshold_slope_and_currents_at_27c() -> None:
    f = figures("generic180", 27.0)
    for dev in ("nmos", "pmos"):
        assert 60.0 <= f[dev]["ss"] <= 100.0, f[dev]
        assert 0.25 <= f[dev]["vth"] <= 0.6, f[dev]
        assert f[dev]["ioff"] < 1e-9  # A/um
    assert 500e-6 <= f["nmos"]["ion"] <= 800e-6
    assert 200e-6 <= f["pmos"]["ion"] <= 350e-6


def test_slope_follows_temperature() -> None:
    cold, hot = figures("generic180", -40.0), figures("generic180", 85.0)
    # S = n kT/q ln10: proportional to absolute temperature (n roughly constant).
    ratio = hot["nmos"]["ss"] / cold["nmos"]["ss"]
    assert ratio == pytest.approx(358.15 / 233.15, rel=0.12)
    assert hot["nmos"]["ioff"] > 10 * cold["nmos"]["ioff"]


@pytest.mark.skipif(
    find_pdk("gf180mcu") is None,
    reason="GF180MCU models not found (PDK_ROOT unset and ../shared/pdk/gf180mcu absent)",
)
def test_default_card_next_to_gf180() -> None:
    ours, gf = figures("generic180", 27.0), figures("gf180mcu", 27.0)
    # Same node class: slopes within 15 mV/dec of each other (GF180 3.3 V: ~84, DESIGN.md).
    assert 70.0 <= gf["nmos"]["ss"] <= 95.0
    assert abs(ours["nmos"]["ss"] - gf["nmos"]["ss"]) < 15.0
    # GF180's 3.3 V devices have thicker oxide: higher Vth, lower leakage.
    assert gf["nmos"]["vth"] > ours["nmos"]["vth"]
    assert gf["nmos"]["ioff"] < ours["nmos"]["ioff"]
