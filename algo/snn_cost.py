"""Hardware cost of spiking learning: every spike, error event, ADC conversion and cell update
counted, and priced by per-event energies of the technology node and the device preset.

Counts (:class:`EventCounts`) are accumulated by the spiking rules during training. Prices
(:func:`price`) come from ``tech/`` and name their sources:

- a spike or an error event is an address word of ``ceil(log2(layer width))`` bits written to an
  event buffer: ``buffer_bit_pj`` of the node per bit;
- a synaptic event (one spike reaching one postsynaptic neuron: one crossbar row read, one
  column) accumulates into the neuron's state: ``add_int16_pj`` of the node;
- an error event is also compared against the threshold: ``add_int16_pj``;
- a cell update costs ``write_energy_pj`` of the device preset per programming pulse.

Not priced, for lack of a sourced figure in ``tech/`` so far: the analog energy of a crossbar row
read and of ADC conversions (the analog layer's LUTs will supply them); they are counted.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from insitu.config import DesignPoint


@dataclass
class EventCounts:
    """Events of a run (or an epoch); all integers except where noted."""

    samples: int = 0
    input_spikes: int = 0
    spikes: int = 0  # hidden and output neurons
    synaptic_events: int = 0  # spikes x fan-out
    adc_conversions: int = 0
    error_events: int = 0
    cell_updates: int = 0  # (synapse, update) pairs: a cell programmed once
    pulses: int = 0  # programming pulses (>= cell_updates with few-level updates)
    address_bits: float = 0.0  # bits of all spike/error addresses (for pricing)

    def add(self, other: EventCounts) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EventCounts:
        return cls(**d)


def address_bits(width: int) -> int:
    return max(1, math.ceil(math.log2(max(width, 2))))


def price(counts: EventCounts, dp: DesignPoint) -> dict[str, Any]:
    """Energy per event class (pJ) with the source of each per-event figure."""
    from insitu.tech.loader import load_device, load_node

    node = load_node(dp.tech.node)
    dev = load_device(dp.array.device)
    rows = {
        "spike_and_error_addresses": (
            counts.address_bits,
            node.buffer_bit_pj,
            f"{dp.tech.node} buffer_bit_pj: {node.sources['buffer_bit_pj']}",
        ),
        "synaptic_accumulations": (
            counts.synaptic_events,
            node.add_int16_pj,
            f"{dp.tech.node} add_int16_pj: {node.sources['add_int16_pj']}",
        ),
        "error_threshold_compares": (
            counts.error_events,
            node.add_int16_pj,
            f"{dp.tech.node} add_int16_pj: {node.sources['add_int16_pj']}",
        ),
        "cell_programming_pulses": (
            counts.pulses,
            dev.write_energy_pj,
            f"{dp.array.device} write_energy_pj: {dev.sources['write_energy_pj']}",
        ),
    }
    out: dict[str, Any] = {"unit": "pJ", "items": {}}
    total = 0.0
    for name, (count, each, source) in rows.items():
        energy = float(count) * each
        total += energy
        out["items"][name] = {"count": count, "pj_each": each, "pj": energy, "source": source}
    out["total_pj"] = total
    out["not_priced"] = {
        "crossbar_row_reads": counts.synaptic_events,
        "adc_conversions": counts.adc_conversions,
        "why": "no sourced analog read or ADC energy in tech/ yet (analog/ LUTs will add them)",
    }
    return out
