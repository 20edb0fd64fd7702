"""Print the tables of README.md from the sweep stores (run from the project root).

    .venv/bin/python studies/wolters2022/tables.py [RUNS_DIR]   # default runs/studies

Reads DIR/results.sqlite through insitu.sweep_store.Store for each sweep folder that exists
and prints one markdown table per study. Nothing here trains or simulates.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path
from statistics import mean

from insitu.sweep_store import Store


def _rows(folder: Path):
    return (
        [r for r in Store(folder).rows(status="ok")] if (folder / "results.sqlite").exists() else []
    )


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def accuracy_table(folder: Path, axis: str, label: str) -> None:
    rows = _rows(folder)
    if not rows:
        return
    acc: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    epochs = set()
    # one row per (swept values, rule, seed): a point that ran again under a new key (a
    # design-point field added since) counts once, the latest run
    latest: dict[tuple, object] = {}
    for r in sorted(rows, key=lambda r: r.finished_at):
        # list-valued axes (network.layers) become hashable tuples
        key = tuple(
            tuple(v) if isinstance(v, list) else v
            for v in (r.overrides.get(a) for a in axis.split("+"))
        )
        latest[(key, r.overrides["learning.rule"], r.design["learning"]["seed"])] = r
    for (key, rule, _), r in latest.items():
        acc[key][rule].append(r.summary["test_accuracy"])  # type: ignore[attr-defined]
        epochs.add(r.design["learning"]["epochs"])  # type: ignore[attr-defined]
    seeds = {len(v) for d in acc.values() for v in d.values()}
    print(
        f"\n### {folder.name}: test accuracy (%), epochs {sorted(epochs)}, "
        f"seeds per point {sorted(seeds)}\n"
    )
    print(f"| {label} | BP | DFA | BP - DFA (pp) |")
    print("|---|---|---|---|")

    def cell(v: list[float]) -> str:
        if not v:
            return "-"
        if len(v) == 1:
            return _pct(v[0])
        return f"{_pct(mean(v))} ({_pct(min(v))}-{_pct(max(v))})"

    def order(k):
        return tuple(
            float("inf") if v is None else (v if not isinstance(v, tuple) else sum(v)) for v in k
        )

    for key in sorted(acc, key=order):
        bp = mean(acc[key]["bp"]) if acc[key]["bp"] else None
        dfa = mean(acc[key]["dfa"]) if acc[key]["dfa"] else None
        gap = "-" if bp is None or dfa is None else f"{100 * (bp - dfa):+.2f}"
        name = ", ".join("-".join(map(str, v)) if isinstance(v, tuple) else str(v) for v in key)
        print(f"| {name} | {cell(acc[key]['bp'])} | {cell(acc[key]['dfa'])} | {gap} |")


def cosim_tables(folder: Path, axis: str) -> None:
    rows = _rows(folder)
    if not rows:
        return
    by = {}
    for r in rows:
        v = r.overrides[axis]
        n = len(v) - 1 if isinstance(v, list) else v
        by[(n, r.overrides["learning.rule"])] = r
    keys = sorted({k[0] for k in by}, key=str)
    print(f"\n### {folder.name}: latency per training sample (ns, from the RTL's cycle counters)\n")
    print(
        "| N | BP fwd | BP bwd | BP upd | BP total | DFA fwd | DFA bwd | DFA upd | DFA total "
        "| BP/DFA total | BP/DFA bwd+upd |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for n in keys:
        b, d = by.get((n, "bp")), by.get((n, "dfa"))
        cells = []
        for r in (b, d):
            if r is None:
                cells += ["-"] * 4
                continue
            lat = r.summary["latency_s"]["per_sample"]
            cells += [f"{1e9 * lat[p]:.0f}" for p in ("forward", "backward", "update", "total")]
        if b and d:
            lb, ld = b.summary["latency_s"]["per_sample"], d.summary["latency_s"]["per_sample"]
            cells.append(f"{lb['total'] / ld['total']:.2f}")
            cells.append(f"{(lb['backward'] + lb['update']) / (ld['backward'] + ld['update']):.2f}")
        else:
            cells += ["-", "-"]
        print(f"| {n} | " + " | ".join(cells) + " |")
    print(
        f"\n### {folder.name}: energy per sample (nJ), area (mm^2) and its split, test accuracy\n"
    )
    print(
        "| N | rule | energy/sample nJ | on-chip nJ | area mm^2 | ADC % | WGU % | accumulation % "
        "| buffers % | other % | test acc % |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for n in keys:
        for rule in ("bp", "dfa"):
            r = by.get((n, rule))
            if r is None:
                continue
            s = r.summary
            e = s["energy_j"]
            per = e["per_sample"]
            total = e["total"]
            off = e["by_component"].get("offchip", 0.0)
            onchip = per * (1 - off / total) if total else 0.0
            a = s["area_mm2"]
            comp = a["by_component"]
            tot = a["total"]
            rest = tot - comp["adcs"] - comp["wgu"] - comp["accumulation"] - comp["buffers"]
            print(
                f"| {n} | {rule.upper()} | {1e9 * per:.1f} | {1e9 * onchip:.2f} | {tot:.4f} "
                f"| {100 * comp['adcs'] / tot:.1f} | {100 * comp['wgu'] / tot:.1f} "
                f"| {100 * comp['accumulation'] / tot:.1f} | {100 * comp['buffers'] / tot:.1f} "
                f"| {100 * rest / tot:.1f} | {_pct(s['test_accuracy'])} |"
            )


def area_table(folder: Path) -> None:
    rows = _rows(folder)
    if not rows:
        return
    print(f"\n### {folder.name}: rule x WGU arrangement (latency ns/sample, area)\n")
    print("| rule | chip.wgu | bwd | upd | total | area mm^2 | ADC mm^2 | WGU mm^2 | WGU % |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: (r.overrides["learning.rule"], r.overrides["chip.wgu"])):
        lat = r.summary["latency_s"]["per_sample"]
        a = r.summary["area_mm2"]
        c = a["by_component"]
        print(
            f"| {r.overrides['learning.rule'].upper()} | {r.overrides['chip.wgu']} "
            f"| {1e9 * lat['backward']:.0f} | {1e9 * lat['update']:.0f} | {1e9 * lat['total']:.0f} "
            f"| {a['total']:.4f} | {c['adcs']:.4f} | {c['wgu']:.4f} "
            f"| {100 * c['wgu'] / a['total']:.1f} |"
        )


def walls(base: Path) -> None:
    print("\n### wall time per sweep (sum of the points' wall_s, minutes)\n")
    for folder in sorted(p for p in base.iterdir() if (p / "results.sqlite").exists()):
        rows = Store(folder).rows()
        ok = sum(r.status == "ok" for r in rows)
        w = sum(r.wall_s or 0 for r in rows) / 60
        print(f"- {folder.name}: {ok} ok / {len(rows)} rows, {w:.1f} min of point wall time")


def main() -> None:
    base = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/studies")
    cosim_tables(base / "depth_latency", "network.layers")
    area_table(base / "area")
    accuracy_table(base / "adc_bits", "array.adc_bits", "ADC bits")
    accuracy_table(base / "variation_c2c", "array.c2c_sigma", "c2c sigma")
    accuracy_table(base / "variation_d2d", "array.d2d_sigma", "d2d sigma")
    accuracy_table(base / "subarray", "array.rows", "rows = cols")
    accuracy_table(
        base / "precision",
        "precision.error_bits+precision.gradient_bits",
        "error bits, gradient bits",
    )
    accuracy_table(base / "width", "network.layers", "layers")
    walls(base)


if __name__ == "__main__":
    main()
