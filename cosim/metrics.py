"""Latency, energy, area and efficiency of a co-simulated training run, from the chip's counters.

This module owns the arithmetic that turns what the RTL counted into the figures of
``summary.json``: latency per phase (cycles x clock period), energy per event class and per
component (counter x :class:`~.costs.CostModel` price), area per component, memory utilization
and TOPS/W. Nothing here is estimated from the network alone: every count is the chip's own.
"""

from __future__ import annotations

from typing import Any

from ..config import DesignPoint
from ..hdl.asic_area import AsicArea
from ..hdl.params import ChipParams
from .costs import CostModel

__all__ = ["clock", "summarize", "training_ops"]

PHASES = ("forward", "backward", "update")


def clock(dp: DesignPoint, costs: CostModel) -> tuple[float, str]:
    """(period in s, what sets it): the digital clock, or the analog read when it is slower.

    A column read and its conversion must fit one cycle of the conversion phase: from the
    analog LUT (simulated column read delay + ADC delay) when the design point names one,
    else the read pulse of tech/periphery. The longer of that and the digital clock wins.
    """
    digital = 1e-6 / dp.chip.clock_mhz
    if "delay_ns" in costs.lut_costs:
        analog_ns, why = costs.lut_costs["delay_ns"]
    else:
        analog_ns, why = costs._per("read_pulse_ns")
    analog = analog_ns * 1e-9
    if analog > digital:
        return analog, f"analog read + conversion {analog_ns:.3g} ns ({why.split(':')[0]})"
    return digital, f"digital clock {dp.chip.clock_mhz} MHz (chip.clock_mhz)"


def training_ops(p: ChipParams) -> int:
    """Operations (2 per multiply-accumulate) of one training sample under the chip's rule."""
    fwd = sum(lay.fan_in * lay.fan_out for lay in p.layers)
    if p.rule == "bp":
        bwd = sum(lay.fan_in * lay.fan_out for lay in p.layers[1:])
    else:
        bwd = sum(
            p.layers[i].fan_out * p.layers[i].feedback_source for i in range(len(p.layers) - 1)
        )
    upd = fwd
    return 2 * (fwd + bwd + upd)


def summarize(
    dp: DesignPoint,
    p: ChipParams,
    counters: dict[str, int],
    *,
    verify_bits: int = 0,
    train_samples: int = 0,
    synth: AsicArea | None = None,
) -> dict[str, Any]:
    """Latency, energy, area and efficiency from cumulative training counters.

    ``verify_bits``: data bits the harness read back for verification (weights, deltas); they
    passed through the host port but are not part of training, so they are taken out of the
    off-chip traffic. ``train_samples``: samples per epoch (for per-epoch latency). ``synth``:
    the chip's synthesized area; without it the digital blocks get cited unit areas.
    """
    costs = CostModel(dp, p, synth)
    period, period_why = clock(dp, costs)
    samples = max(1, counters.get("samples", 0))
    cycles = {ph: counters.get(f"cycles_{ph}", 0) for ph in PHASES}
    cycles["busy"] = counters.get("cycles_busy", 0)
    per_sample = {ph: cycles[ph] / samples for ph in PHASES}
    latency = {ph: per_sample[ph] * period for ph in PHASES}
    latency["total"] = sum(latency[ph] for ph in PHASES)
    events = dict(counters)
    events["dram_bits"] = max(0, events.get("dram_bits", 0) - verify_bits)
    energy_events: dict[str, float] = {}
    energy_components: dict[str, float] = {}
    for name, cost in costs.costs.items():
        e = events.get(name, 0) * cost.energy_pj * 1e-12
        energy_events[name] = e
        energy_components[cost.component] = energy_components.get(cost.component, 0.0) + e
    total_energy = sum(energy_events.values())
    area = costs.area_by_component()
    used = sum(lay.fan_in * lay.fan_out for lay in p.layers) * p.polarities * p.slices
    cells = p.total_subarrays * p.rows * p.cols
    ops = training_ops(p) * samples
    return {
        "samples": counters.get("samples", 0),
        "cycles": {
            "per_sample": per_sample,
            "total": cycles,
        },
        "clock": {"period_s": period, "set_by": period_why},
        "latency_s": {
            "per_sample": latency,
            "per_epoch_estimate": {ph: v * train_samples for ph, v in latency.items()},
        },
        "energy_j": {
            "total": total_energy,
            "per_sample": total_energy / samples,
            "by_event": energy_events,
            "by_component": energy_components,
        },
        "area_mm2": {
            "total": sum(area.values()),
            "by_component": area,
            "source": costs.area_source,
            "blocks": [
                {
                    "component": it.component,
                    "block": it.block,
                    "count": it.count,
                    "mm2": it.total_um2 * 1e-6,
                    "formula": it.formula,
                }
                for it in costs.areas
            ],
        },
        "memory_utilization": used / cells if cells else 0.0,
        "tops_per_w": (ops / total_energy / 1e12) if total_energy > 0 else None,
        "counters": dict(counters),
        "offchip_bits": events["dram_bits"],
    }
