"""Turn one simulation's vectors into the few numbers a LUT keeps (runs in the worker process).

Every function takes the :class:`~insitu.analog.circuits.Job` meta and the vectors ngspice
returned and gives plain float arrays, so cache files stay small and the parent never sees
ngspice objects.
"""

from __future__ import annotations

from typing import Any

import numpy as np

Arrays = dict[str, np.ndarray]


def reduce(kind: str, meta: dict[str, Any], plots: dict[str, dict[str, np.ndarray]]) -> Arrays:
    fn = {
        "iv": _iv,
        "synapse_iv": _synapse_iv,
        "column": _column,
        "column_tran": _column_tran,
        "adc_flash": _adc,
        "adc_sar": _adc,
    }[kind]
    return fn(meta, plots)


def _iv(meta: dict[str, Any], plots: dict[str, dict[str, np.ndarray]]) -> Arrays:
    dc = plots["dc"]
    w = meta["w_um"]
    return {
        "vg": dc["v-sweep"],
        "idn_lin": np.abs(dc["vdl#branch"]) / w,
        "idn_sat": np.abs(dc["vds#branch"]) / w,
        "idp_lin": np.abs(dc["vpl#branch"]) / w,
        "idp_sat": np.abs(dc["vps#branch"]) / w,
    }


def _synapse_iv(meta: dict[str, Any], plots: dict[str, dict[str, np.ndarray]]) -> Arrays:
    dc = plots["dc"]
    i = np.maximum(np.abs(dc["vd#branch"]), 1e-30)
    return {"vg": dc["v-sweep"], "log10_id": np.log10(i)}


def _column(meta: dict[str, Any], plots: dict[str, dict[str, np.ndarray]]) -> Arrays:
    dc = plots["dc"]
    ranks = np.asarray(meta["ranks"])
    levels = np.asarray(meta["levels"])
    k = np.rint(dc["v-sweep"]).astype(int)
    npat = levels.shape[0]
    # ideal[p, i] = sum of the levels of the rows active at sweep point i (rank < k).
    active = ranks[None, :] < k[:, None]  # (points, rows)
    ideal = levels @ active.T.astype(np.int64)  # (patterns, points)
    ref = dc[f"out{npat}"]
    scale = meta["rf"] * meta["i_lsb"]
    # The TIA output falls (1T1R, current into the virtual ground) or rises (synapse, current
    # out of it) with the column current: the sign is the same for data and reference.
    sign = 1.0 if meta["cell"] == "1t1r" else -1.0
    eff = np.stack([sign * (ref - dc[f"out{p}"]) / scale for p in range(npat)])
    vbl = meta["v_read"] if meta["cell"] == "subthreshold" else 0.0
    cur = np.stack([np.abs(dc[f"out{p}"] - vbl) / meta["rf"] for p in range(npat + 1)])
    return {
        "active_rows": k.astype(np.float64),
        "ideal": ideal.astype(np.float64),
        "effective": eff,
        "column_current": cur[:npat].mean(axis=0),
    }


def settle_time(t: np.ndarray, v: np.ndarray, t0: float, tol: float) -> float:
    """Time after t0 from which v stays within tol of its final value."""
    final = v[-1]
    outside = np.nonzero(np.abs(v - final) > tol)[0]
    if len(outside) == 0:
        return 0.0
    last = outside[-1]
    if last + 1 >= len(t):
        return float("nan")
    return float(max(0.0, t[last + 1] - t0))


def _column_tran(meta: dict[str, Any], plots: dict[str, dict[str, np.ndarray]]) -> Arrays:
    tr = plots["tran"]
    t = tr["time"]
    out = tr["out0"]
    lsb_v = meta["rf"] * meta["i_lsb"]
    delay = settle_time(t, out, 1e-9, 0.5 * lsb_v)
    # Row drivers: charge beyond the steady-state current over the switching window, times
    # the drive swing, is the energy of turning the rows on (all rows switch together here).
    i_rows = tr["vrg#branch"]
    dyn = np.trapezoid(np.abs(i_rows - i_rows[-1]), t)
    swing = meta["v_read"] if meta["cell"] == "subthreshold" else meta["vdd"]
    return {
        "delay": np.array([delay]),
        "row_energy": np.array([swing * dyn / meta["rows"]]),
    }


def _crossings(v: np.ndarray, q: np.ndarray, level: float) -> float:
    above = q > level
    if not above.any():
        return float("nan")
    i = int(np.argmax(above))
    if i == 0:
        return float(v[0])
    # Linear interpolation between the two sweep points around the trip.
    return float(np.interp(level, [q[i - 1], q[i]], [v[i - 1], v[i]]))


def _adc(meta: dict[str, Any], plots: dict[str, dict[str, np.ndarray]]) -> Arrays:
    dc, tr = plots["dc"], plots["tran"]
    vin = dc["v-sweep"]
    vdd = meta["vdd"]
    ncode = 2 ** meta["bits"]
    trips = np.array([_crossings(vin, dc[f"q{i}"], vdd / 2) for i in range(1, ncode)])
    t = tr["time"]
    qt = tr["qt"]
    after = t > 2e-9
    hit = np.nonzero(after & (qt > vdd / 2))[0]
    delay = float(t[hit[0]] - 2e-9) if len(hit) else float("nan")
    p_dec = vdd * (abs(float(tr["vddc#branch"][-1])) + 10e-6)
    if meta["kind"] == "flash":
        codes = np.stack([dc[f"q{i}"] > vdd / 2 for i in range(1, ncode)]).sum(axis=0)
        p_all = vdd * abs(float(tr["vdd#branch"][-1])) + abs(
            float(tr["vrp#branch"][-1]) * (meta["hi"] - meta["lo"])
        )
        t_conv = 2 * delay
        energy = p_all * t_conv
        thresholds = trips
    else:
        # C-DAC level of every code at the end of its 1 ns slot; the comparator's offset at
        # each common-mode level from the DC copies; then the binary search itself.
        top = tr["top"]
        dac = np.array([np.interp(3e-9 + c * 1e-9 + 0.85e-9, t, top) for c in range(ncode)])
        offset = trips - np.asarray(meta["taps"])
        thr = np.concatenate([[np.nan], dac[1:] + offset])
        codes = np.zeros(len(vin), dtype=int)
        for b in range(meta["bits"] - 1, -1, -1):
            trial = codes | (1 << b)
            codes = np.where(vin > thr[trial], trial, codes)
        thresholds = np.array(
            [vin[np.argmax(codes >= i)] if (codes >= i).any() else np.nan for i in range(1, ncode)]
        )
        e_dac = 0.0
        for b in range(meta["bits"]):
            e_dac += float(np.trapezoid(np.abs(tr[f"vb{b}#branch"]), t)) * meta["vref"]
        t_conv = meta["bits"] * 2 * delay
        energy = meta["bits"] * p_dec * 2 * delay + e_dac / ncode * meta["bits"]
    return {
        "vin": vin,
        "codes": codes.astype(np.float64),
        "thresholds": thresholds,
        "delay": np.array([t_conv]),
        "energy": np.array([energy]),
        "comparator_delay": np.array([delay]),
    }
