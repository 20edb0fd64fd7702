"""Side-by-side device figures of two PDKs (the default cards against GF180MCU, say).

Runs the same :func:`~insitu.analog.circuits.mos_iv` sweep on each PDK's typical corner in this
process and reports Vth, subthreshold slope, Ion and Ioff per um of width.
"""

from __future__ import annotations

from typing import Any

from . import circuits, engine
from .characterize import iv_metrics
from .pdk import PdkError, load_pdk
from .reduce import reduce


def device_figures(pdk_name: str, temp: float = 27.0) -> list[dict[str, Any]]:
    pdk = load_pdk(pdk_name)
    job = circuits.mos_iv(pdk, "tt", temp)
    res = engine.run(job.netlist, 0, job.vectors)
    m = iv_metrics(reduce(job.kind, job.meta, res.plots), pdk)
    return [{"pdk": pdk.name, "device": d, "vdd": pdk.spec.vdd, **m[d]} for d in ("nmos", "pmos")]


def compare(default: str, reference: str, temp: float = 27.0) -> list[dict[str, Any]]:
    """Rows for ``default`` and, when it is installed, ``reference`` (else a PdkError)."""
    rows = device_figures(default, temp)
    try:
        rows += device_figures(reference, temp)
    except PdkError:
        raise
    return rows
