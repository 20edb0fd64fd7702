"""PNG figures of a LUT folder: device I-V with subthreshold slope, column transfer and error,
ADC transfer with INL/DNL. Reads only the LUT (``insitu.tech.lut``), never ngspice."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from insitu.atomic import write_bytes_with
from insitu.tech.lut import Lut


def _save(fig: object, path: Path) -> None:
    import matplotlib.pyplot as plt

    write_bytes_with(path, lambda f: fig.savefig(f, format="png", dpi=110))  # type: ignore[attr-defined]
    plt.close(fig)  # type: ignore[arg-type]


def plot_all(folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lut = Lut.open(folder)
    prov = lut.provenance
    corners = list(lut.table("device_ss").axis("corner").values)
    temps = list(lut.table("device_ss").axis("temperature").values)
    c0 = corners[0]
    t0 = 27.0 if 27.0 in temps else temps[0]
    written = []

    # I-V.
    iv = lut.table("device_iv")
    vg = np.asarray(iv.axis("vgs").values, dtype=float)
    ss = lut.table("device_ss")
    fig, ax = plt.subplots(1, 2, figsize=(11, 4.2))
    for t in temps:
        i = iv.interp(corner=c0, temperature=t, device="nmos", bias="lin")
        s = float(ss.interp(corner=c0, temperature=t, device="nmos"))
        ax[0].semilogy(vg, np.maximum(i, 1e-16), label=f"{t:g} C: SS {s:.0f} mV/dec")
    ax[0].set(xlabel="Vgs (V)", ylabel="Id (A/um), Vds = 0.1 V", title=f"{prov['pdk']} NMOS, {c0}")
    ax[0].legend(fontsize=8)
    for c in corners:
        i = iv.interp(corner=c, temperature=t0, device="nmos", bias="sat")
        ax[1].plot(vg, i * 1e6, label=f"{c}")
    ax[1].set(xlabel="Vgs (V)", ylabel="Id (uA/um), Vds = VDD", title=f"NMOS at {t0:g} C")
    ax[1].legend(fontsize=8)
    fig.tight_layout()
    written.append(folder / "iv.png")
    _save(fig, written[-1])

    # Column transfer and error.
    cm = lut.table("column_transfer_mean")
    cs = lut.table("column_transfer_std")
    sums = np.asarray(cm.axis("ideal_sum").values, dtype=float)
    fig, ax = plt.subplots(1, 2, figsize=(11, 4.2))
    with np.load(folder / "tables.npz") as z:
        if "_scatter_ideal" in z.files:
            x, y = z["_scatter_ideal"], z["_scatter_effective"]
            ax[0].plot(x, y, ".", ms=2, alpha=0.4, label=f"points ({c0}, {t0:g} C)")
            ax[1].plot(x, y - x, ".", ms=2, alpha=0.4, label=f"points ({c0}, {t0:g} C)")
        transfer = (
            (z["_transfer_vin"], z["_transfer_codes"]) if "_transfer_vin" in z.files else None
        )
    for c in corners:
        for t in temps:
            mean = cm.interp(corner=c, temperature=t)
            ax[1].plot(sums, mean - sums, lw=1, label=f"{c} {t:g} C")
    mean0 = cm.interp(corner=c0, temperature=t0)
    std0 = cs.interp(corner=c0, temperature=t0)
    ax[0].plot(sums, mean0, "k-", lw=1, label="mean")
    ax[0].fill_between(sums, mean0 - std0, mean0 + std0, alpha=0.3, label="+-1 sigma")
    ax[0].plot(sums, sums, "k:", lw=0.8, label="ideal")
    ax[0].set(
        xlabel="ideal partial sum",
        ylabel="effective sum",
        title=f"{prov['rows']}-row {prov['cell']} column ({prov['device']})",
    )
    ax[0].legend(fontsize=8)
    ax[1].set(
        xlabel="ideal partial sum",
        ylabel="effective - ideal (LSB)",
        title=f"column error, wire {prov['wire_r_ohm']:.3g} ohm/segment",
    )
    ax[1].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    written.append(folder / "column.png")
    _save(fig, written[-1])

    # ADC transfer, DNL, INL.
    dnl = lut.table("adc_dnl").interp(corner=c0, temperature=t0, sample=0)
    inl = lut.table("adc_inl").interp(corner=c0, temperature=t0, sample=0)
    e = float(lut.table("adc_energy").interp(corner=c0, temperature=t0, sample=0))
    fig, ax = plt.subplots(1, 3, figsize=(14, 4))
    if transfer is not None:
        ax[0].step(transfer[0], transfer[1], where="post")
    ax[0].set(
        xlabel="input (V)",
        ylabel="code",
        title=f"{prov['adc_bits']}-bit {prov['adc']} ADC ({c0}, {t0:g} C), {e * 1e12:.2f} pJ",
    )
    ax[1].bar(np.arange(1, len(dnl) + 1), dnl)
    ax[1].set(xlabel="code", ylabel="DNL (LSB)", title="DNL")
    ax[2].plot(np.arange(1, len(inl) + 1), inl, "o-")
    ns = len(lut.table("adc_inl").axis("sample").values)
    for s in range(1, ns):
        ax[2].plot(
            np.arange(1, len(inl) + 1),
            lut.table("adc_inl").interp(corner=c0, temperature=t0, sample=s),
            lw=0.5,
            alpha=0.5,
        )
    ax[2].set(xlabel="code", ylabel="INL (LSB)", title=f"INL (nominal + {ns - 1} MC samples)")
    fig.tight_layout()
    written.append(folder / "adc.png")
    _save(fig, written[-1])
    return written
