"""Parameterized netlists: MOSFET I-V, crossbar columns (1T1R, subthreshold synapses), ADCs.

Each builder returns a :class:`Job`: the netlist text (built only through
:class:`~insitu.analog.spice.Netlist`, so every value is a checked number or name), the vectors
to read back, and what :mod:`insitu.analog.reduce` needs to turn them into numbers. Many points
go into one analysis: a column's active-row patterns are one ``.dc`` sweep of a decoder
variable (row i is on when the sweep passes its rank), an ADC's transfer is one ``.dc`` sweep of
its input. Mismatch samples are drawn here from ``numpy`` generators seeded by the point, so a
Monte Carlo point is the same netlist every time (and so the same cache key).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .pdk import Pdk
from .spice import Netlist

SUB_W_UM, SUB_L_UM = 0.5, 1.0  # subthreshold synapse: long channel for matching, low DIBL
CMP_W_UM, CMP_L_UM = 2.0, 0.5  # comparator input pair / loads
TIA_GAIN, TIA_GBW_HZ = 1e4, 200e6  # ASSUMPTION: behavioural op-amp of a transimpedance read-out
LADDER_R_OHM = 5000.0  # ASSUMPTION: poly ladder segment
LADDER_R_SIGMA = 0.002  # ASSUMPTION: 0.2 % poly resistor mismatch per segment
CAP_UNIT_F = 20e-15  # ASSUMPTION: SAR unit capacitor (MIM)
CAP_SIGMA_UNIT = 0.003  # ASSUMPTION: 0.3 % unit-capacitor mismatch, scaling 1/sqrt(C)
BIAS_A = 10e-6  # comparator tail current


@dataclass
class Job:
    kind: str
    netlist: str
    vectors: dict[str, list[str]]
    meta: dict[str, Any] = field(default_factory=dict)


def _head(pdk: Pdk, title: str, corner: str, temp: float) -> Netlist:
    net = Netlist(title)
    pdk.add_models(net, corner)
    # gmin 1e-15: the default 1e-12 floors subthreshold currents near 1 pA (DESIGN.md).
    net.options(gmin=1e-15, abstol=1e-15, reltol=1e-4)
    net.temp(temp)
    return net


def _rng(*seed: int) -> np.random.Generator:
    return np.random.default_rng([int(s) for s in seed])


# --- MOSFET I-V ---------------------------------------------------------------------------
def mos_iv(pdk: Pdk, corner: str, temp: float, vds_lin: float = 0.1) -> Job:
    """NMOS and PMOS (W = 1 um, L = minimum) Id-Vg at |Vds| = vds_lin and VDD, one sweep."""
    vdd = pdk.spec.vdd
    net = _head(pdk, "mos_iv", corner, temp)
    n, p = pdk.spec.nmos, pdk.spec.pmos
    net.v("DD", "vdd", "0", vdd)
    net.v("DL", "dl", "0", vds_lin)
    net.v("DS", "ds", "0", vdd)
    net.v("PL", "pl", "0", vdd - vds_lin)
    net.v("PS", "ps", "0", 0.0)
    net.v("G", "g", "0", 0.0)
    net.vcvs("GP", "gp", "vdd", "g", "0", -1.0)  # PMOS gate at VDD - Vg
    net.mos("N1", "dl", "g", "0", "0", n.model, 1.0, n.l_min_um, kind=n.kind)
    net.mos("N2", "ds", "g", "0", "0", n.model, 1.0, n.l_min_um, kind=n.kind)
    net.mos("P1", "pl", "gp", "vdd", "vdd", p.model, 1.0, p.l_min_um, kind=p.kind)
    net.mos("P2", "ps", "gp", "vdd", "vdd", p.model, 1.0, p.l_min_um, kind=p.kind)
    net.dc("VG", 0.0, vdd, vdd / 360)
    vecs = ["v-sweep", "vdl#branch", "vds#branch", "vpl#branch", "vps#branch"]
    return Job("iv", net.text(), {"dc": vecs}, {"vdd": vdd, "vds_lin": vds_lin, "w_um": 1.0})


def synapse_iv(pdk: Pdk, vds: float) -> Job:
    """Id-Vg of the subthreshold synapse device at Vds (tt, 27 C): the gate-voltage table."""
    vdd = pdk.spec.vdd
    net = _head(pdk, "synapse_iv", "tt", 27.0)
    n = pdk.spec.nmos
    net.v("D", "d", "0", vds)
    net.v("G", "g", "0", 0.0)
    net.mos("S1", "d", "g", "0", "0", n.model, SUB_W_UM, SUB_L_UM, kind=n.kind)
    net.dc("VG", 0.0, vdd * 0.6, vdd / 1200)
    return Job("synapse_iv", net.text(), {"dc": ["v-sweep", "vd#branch"]}, {"vds": vds})


# --- crossbar column ----------------------------------------------------------------------
@dataclass(frozen=True)
class ColumnSpec:
    """What a column netlist needs (all numbers; names are checked by the builder)."""

    rows: int
    cell_bits: int
    cell: str  # "1t1r" or "subthreshold"
    g_min_s: float
    g_max_s: float
    v_read: float
    wire_r_ohm: float
    wire_c_f: float
    d2d_sigma: float
    patterns: int
    gate_table: tuple[tuple[float, ...], tuple[float, ...]] | None = None  # (vg, log10 I)


def column(
    pdk: Pdk, corner: str, temp: float, spec: ColumnSpec, seed: int, mc: int, tran: bool
) -> Job:
    """``patterns`` data columns + one reference column (all cells at level 0) sharing rows.

    DC: sweep ``sw`` from 0 to rows; row r is on when sw > rank[r] - 0.5 (a random order per
    point), so one analysis reads every number of active rows of every pattern. TIA outputs
    hold the bitlines at virtual ground; the effective sum is the output difference to the
    reference column over the ideal LSB (reduce.py). ``tran``: all rows on at once at 1 ns, for
    read delay and row-driver energy.
    """
    vdd = pdk.spec.vdd
    n = spec.rows
    levels_max = 2**spec.cell_bits - 1
    rng = _rng(seed, 1)
    ranks = rng.permutation(n)
    # Pattern p draws levels ~ Binomial(levels_max, (p + 1) / patterns): sparse to dense
    # columns, the last one all at the top level, so the sweep covers every partial sum.
    dens = (np.arange(spec.patterns) + 1.0) / spec.patterns
    lv = rng.binomial(levels_max, dens[:, None], size=(spec.patterns, n))
    if tran:
        # Settling is measured on the largest current: one column with every cell at the top.
        lv = np.full((1, n), levels_max)
    k = len(lv)
    g_step = (spec.g_max_s - spec.g_min_s) / levels_max
    i_lsb = spec.v_read * g_step
    full = n * levels_max
    rf = 0.5 * vdd / (i_lsb * full)  # full-scale column current -> VDD/2 swing
    # Feedback capacitor for ~65 deg phase margin with the bitline's capacitance at the
    # virtual ground (the pole Rf*C_in would otherwise sit far below the op-amp's GBW).
    c_in = n * (spec.wire_c_f + 2e-15)
    cf = 1.4 * float(np.sqrt(c_in / (2 * np.pi * rf * TIA_GBW_HZ)))
    tau = rf * cf
    net = _head(pdk, "column_tran" if tran else "column", corner, temp)
    mrng = _rng(seed, 2, mc)
    nm = pdk.spec.nmos
    sub = spec.cell == "subthreshold"
    net.v("DD", "vdd", "0", vdd)
    vbl = spec.v_read if sub else 0.0  # subthreshold: drain bias; 1T1R: virtual ground at 0
    net.v("BL", "vbl", "0", vbl)
    if not sub:
        net.v("RD", "sl", "0", spec.v_read)
    net.v("RG", "rgnd", "0", 0.0)  # return of every row driver: their charge is measured
    if tran:
        net.v_pulse("SW", "sw", "0", 0.0, float(n), 1e-9, 50e-12)
    else:
        net.v("SW", "sw", "0", 0.0)
    sigma_acc = pdk.sigma_vth(nm.w_min_um * 2, nm.l_min_um) if mc else 0.0
    sigma_sub = pdk.sigma_vth(SUB_W_UM, SUB_L_UM) if mc else 0.0
    gate_of = _gate_voltages(spec) if sub else None
    for r in range(n):
        # Row driver: 1T1R word line (gate) to VDD, or synapse source line to 0 when active.
        on, off = (0.0, spec.v_read) if sub else (vdd, 0.0)
        net.switch_above(f"ROW{r}", f"row{r}", "rgnd", "sw", float(ranks[r]) + 0.5, on, off)
    for j in range(k + 1):
        col_levels = lv[j] if j < k else np.zeros(n, dtype=int)
        for r in range(n):
            bl = f"b{j}_{r}"
            level = int(col_levels[r])
            if sub:
                assert gate_of is not None
                vg = gate_of[level]
                net.v(f"G{j}_{r}", f"g{j}_{r}", "0", vg)
                net.mos(
                    f"S{j}_{r}",
                    bl,
                    f"g{j}_{r}",
                    f"row{r}",
                    "0",
                    nm.model,
                    SUB_W_UM,
                    SUB_L_UM,
                    delvto=float(mrng.normal(0, sigma_sub)) if mc else 0.0,
                    kind=nm.kind,
                )
            else:
                g = spec.g_min_s + level * g_step
                if mc and spec.d2d_sigma:
                    g *= max(0.05, 1.0 + float(mrng.normal(0.0, spec.d2d_sigma)))
                net.r(f"C{j}_{r}", "sl", f"x{j}_{r}", 1.0 / g)
                net.mos(
                    f"A{j}_{r}",
                    f"x{j}_{r}",
                    f"row{r}",
                    bl,
                    "0",
                    nm.model,
                    nm.w_min_um * 2,
                    nm.l_min_um,
                    delvto=float(mrng.normal(0, sigma_acc)) if mc else 0.0,
                    kind=nm.kind,
                )
            nxt = f"b{j}_{r + 1}" if r + 1 < n else f"in{j}"
            net.r(f"W{j}_{r}", bl, nxt, max(spec.wire_r_ohm, 1e-6))
            if spec.wire_c_f > 0:
                net.c(f"CW{j}_{r}", bl, "0", spec.wire_c_f)
        # Transimpedance amplifier: single-pole op-amp (gm = 1 S into A ohm || C) + feedback.
        c_pole = TIA_GAIN / (2 * np.pi * TIA_GAIN * TIA_GBW_HZ)
        net.vccs(f"OA{j}", f"oa{j}", "0", f"in{j}", "vbl", 1.0)
        net.r(f"OA{j}", f"oa{j}", "0", TIA_GAIN)
        net.c(f"OA{j}", f"oa{j}", "0", c_pole)
        net.vcvs(f"OB{j}", f"out{j}", "vbl", f"oa{j}", "0", 1.0)
        net.r(f"F{j}", f"out{j}", f"in{j}", rf)
        net.c(f"F{j}", f"out{j}", f"in{j}", cf)
    outs = [f"out{j}" for j in range(k + 1)]
    if tran:
        net.save(
            ["time", *[f"v({o})" for o in outs], "vrg#branch"] + ([] if sub else ["vrd#branch"])
        )
        net.tran(tau / 20, 1e-9 + 15 * tau)
        vec = {"tran": ["time", *outs, "vrg#branch"] + ([] if sub else ["vrd#branch"])}
    else:
        net.save([*[f"v({o})" for o in outs]] + ([] if sub else ["vrd#branch"]))
        net.dc("VSW", 0.0, float(n), 1.0)
        vec = {"dc": ["v-sweep", *outs] + ([] if sub else ["vrd#branch"])}
    meta = {
        "ranks": ranks.tolist(),
        "levels": lv.tolist(),
        "rf": rf,
        "cf": cf,
        "tau": tau,
        "i_lsb": i_lsb,
        "v_read": spec.v_read,
        "vdd": vdd,
        "rows": n,
        "levels_max": levels_max,
        "cell": spec.cell,
    }
    return Job("column_tran" if tran else "column", net.text(), vec, meta)


def _gate_voltages(spec: ColumnSpec) -> list[float]:
    """Gate voltage of each level so the nominal current is linear in the level (log interp)."""
    assert spec.gate_table is not None
    vg = np.asarray(spec.gate_table[0])
    logi = np.asarray(spec.gate_table[1])
    i_min, i_max = spec.g_min_s * spec.v_read, spec.g_max_s * spec.v_read
    lm = 2**spec.cell_bits - 1
    targets = [i_min + lev * (i_max - i_min) / lm for lev in range(lm + 1)]
    order = np.argsort(logi)
    return [float(np.interp(np.log10(t), logi[order], vg[order])) for t in targets]


# --- comparators and ADCs -----------------------------------------------------------------
def _comparator(
    net: Netlist, pdk: Pdk, tag: str, inp: str, inm: str, out: str, vdd_node: str, dv: np.ndarray
) -> None:
    """Two-stage static comparator (NMOS pair, PMOS mirror, CS stage, inverter); dv = delvto
    of the 4 matched transistors (pair, mirror)."""
    n, p = pdk.spec.nmos, pdk.spec.pmos
    w, ll = CMP_W_UM, CMP_L_UM
    net.mos(f"{tag}1", f"d1{tag}", inp, f"t{tag}", "0", n.model, w, ll, float(dv[0]), n.kind)
    net.mos(f"{tag}2", f"d2{tag}", inm, f"t{tag}", "0", n.model, w, ll, float(dv[1]), n.kind)
    net.mos(
        f"{tag}3", f"d1{tag}", f"d1{tag}", vdd_node, vdd_node, p.model, w, ll, float(dv[2]), p.kind
    )
    net.mos(
        f"{tag}4", f"d2{tag}", f"d1{tag}", vdd_node, vdd_node, p.model, w, ll, float(dv[3]), p.kind
    )
    net.mos(f"{tag}5", f"t{tag}", "vbn", "0", "0", n.model, w, 2 * ll, kind=n.kind)
    # Second stage: d2 rises with inp; the PMOS CS stage inverts, the inverter restores.
    net.mos(f"{tag}6", f"o{tag}", f"d2{tag}", vdd_node, vdd_node, p.model, 2 * w, ll, kind=p.kind)
    net.mos(f"{tag}7", f"o{tag}", "vbn", "0", "0", n.model, w, 2 * ll, kind=n.kind)
    net.mos(f"{tag}8", out, f"o{tag}", vdd_node, vdd_node, p.model, 1.0, p.l_min_um, kind=p.kind)
    net.mos(f"{tag}9", out, f"o{tag}", "0", "0", n.model, 0.5, n.l_min_um, kind=n.kind)


def adc_range(vdd: float) -> tuple[float, float]:
    """Input range of the ADCs (V): where the NMOS-pair comparator keeps its gain."""
    return 0.40 * vdd, 0.75 * vdd


def adc(pdk: Pdk, corner: str, temp: float, kind: str, bits: int, seed: int, mc: int) -> Job:
    """Flash (ladder + 2^b - 1 comparators) or SAR (binary C-DAC + one comparator).

    DC: one sweep of the input reads every comparator's trip point (flash: each comparator
    against its ladder tap; SAR: copies of the one comparator, same mismatch, against each
    ideal tap, i.e. its offset at every common-mode level). Transient: a 1/2-LSB overdrive step
    for the decision delay and supply energy; SAR also steps its C-DAC through every code.
    """
    vdd = pdk.spec.vdd
    lo, hi = adc_range(vdd)
    ncode = 2**bits
    lsb = (hi - lo) / (ncode - 1)
    taps = [lo + (i - 0.5) * lsb for i in range(1, ncode)]
    net = _head(pdk, f"adc_{kind}", corner, temp)
    net.flag_options("klu")
    rng = _rng(seed, 3, mc)
    sig = pdk.sigma_vth(CMP_W_UM, CMP_L_UM) if mc else 0.0
    net.v("DD", "vdd", "0", vdd)
    net.v("DDC", "vddc", "0", vdd)  # the transient comparator's own supply (its energy)
    net.i("B", "vdd", "vbn", BIAS_A)
    net.mos(
        "B0",
        "vbn",
        "vbn",
        "0",
        "0",
        pdk.spec.nmos.model,
        CMP_W_UM,
        2 * CMP_L_UM,
        kind=pdk.spec.nmos.kind,
    )
    mid = taps[len(taps) // 2]
    net.v_pulse("IN", "vin", "0", mid - 0.5 * lsb, mid + 0.5 * lsb, 2e-9, 20e-12)
    outs = [f"q{i}" for i in range(1, ncode)]
    shared = rng.normal(0.0, sig, size=4) if mc else np.zeros(4)
    if kind == "flash":
        # Ladder: half segments at both ends put the taps at (i - 1/2) LSB (mid-tread).
        # Ladder refn=lo .. refp=hi with half segments at both ends: taps at (i - 1/2) LSB.
        net.v("RP", "refp", "0", hi)
        net.v("RN", "refn", "0", lo)
        segs = [0.5] + [1.0] * (ncode - 2) + [0.5]
        nodes = ["refn", *[f"tap{i}" for i in range(1, ncode)], "refp"]
        for s, (na, nb) in enumerate(itertools.pairwise(nodes)):
            r = LADDER_R_OHM * segs[s]
            if mc:
                r *= 1.0 + float(rng.normal(0.0, LADDER_R_SIGMA))
            net.r(f"L{s}", na, nb, r)
        for i in range(1, ncode):
            dv = rng.normal(0.0, sig, size=4) if mc else np.zeros(4)
            _comparator(net, pdk, f"K{i}", "vin", f"tap{i}", f"q{i}", "vdd", dv)
        ref_vecs = ["vrp#branch"]
    else:
        for i in range(1, ncode):
            net.v(f"T{i}", f"tap{i}", "0", taps[i - 1])
            _comparator(net, pdk, f"K{i}", "vin", f"tap{i}", f"q{i}", "vdd", shared)
        # Binary C-DAC: bottom plates step through every code (1 ns each); top plate biased
        # through 1e15 ohm so its DC level is lo - LSB/2 and each code adds its charge share.
        cu = CAP_UNIT_F
        vref = (hi - lo) * ncode / (ncode - 1)
        net.v("TOPB", "topb", "0", lo - 0.5 * lsb)
        net.r("TOPB", "topb", "top", 1e15)
        net.c("DUM", "top", "0", cu * (1.0 + (float(rng.normal(0, CAP_SIGMA_UNIT)) if mc else 0)))
        for b in range(bits):
            c = cu * 2**b
            if mc:
                c *= 1.0 + float(rng.normal(0.0, CAP_SIGMA_UNIT / np.sqrt(2**b)))
            pts = []
            for code in range(ncode):
                val = vref if (code >> b) & 1 else 0.0
                t0 = 3e-9 + code * 1e-9
                pts += [t0, val, t0 + 0.9e-9, val]
            net.lines.append(
                f"VB{b} bit{b} 0 dc 0.0 pwl(0.0 0.0 " + " ".join(repr(float(x)) for x in pts) + ")"
            )
            net.c(f"B{b}", f"bit{b}", "top", c)
        ref_vecs = [f"vb{b}#branch" for b in range(bits)]
    # Transient comparator on its own supply: decision delay and energy per decision.
    _comparator(net, pdk, "KT", "vin", "vmid", "qt", "vddc", shared)
    net.v("MID", "vmid", "0", mid)
    net.dc("VIN", lo - 1.5 * lsb, hi + 1.5 * lsb, lsb / 64)
    # A 1/2-LSB overdrive halves with every bit, and a static comparator's decision time
    # grows as 1/overdrive: the window doubles per bit above 4 (10 ns decided 4 bits; 5- and
    # 6-bit flash ADCs had not decided by 12 ns, leaving their delay and energy NaN).
    window = 10e-9 * 2 ** max(0, bits - 4)
    tstop = 3e-9 + ncode * 1e-9 + 1e-9 if kind == "sar" else 2e-9 + window
    net.tran(5e-12, tstop)
    tran_vecs = ["time", "qt", "vddc#branch", "vdd#branch", *ref_vecs]
    if kind == "sar":
        tran_vecs.append("top")
    meta = {
        "kind": kind,
        "bits": bits,
        "lo": lo,
        "hi": hi,
        "lsb": lsb,
        "vdd": vdd,
        "taps": taps,
        "mid": mid,
        "vref": (hi - lo) * ncode / (ncode - 1) if kind == "sar" else 0.0,
    }
    return Job(f"adc_{kind}", net.text(), {"dc": ["v-sweep", *outs], "tran": tran_vecs}, meta)
