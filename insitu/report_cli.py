"""``insitu report``: the HTML page of a sweep's results, and the command that writes it.

Owns the page: its sections (each a figure beside the table of the numbers it shows, or one
line naming the sweep axis or command that would produce it), the inline CSS, embedding every
figure as a base64 PNG (no JavaScript, no external URL), and writing the page and its PNGs
atomically once everything is drawn, so a bad input writes nothing. The numbers come from
:mod:`.report`, the figures from :mod:`.report_plots`.
"""

from __future__ import annotations

import base64
import html
import math
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, BinaryIO

import typer
from rich.console import Console

from .atomic import write_bytes_with, write_text
from .config import DesignError
from .report import (
    ENERGY_COMPONENTS,
    PHASES,
    SEED,
    SOURCE,
    Group,
    HardwareBar,
    ParetoPoint,
    Sweep,
    accuracy_axes,
    cosim_energy,
    cosim_latency,
    curves,
    depth_rows,
    fmt_value,
    groups,
    hardware_bars,
    host_seconds,
    load,
    pareto,
    rule_key,
    short,
    speedups,
    stats,
)

__all__ = ["Report", "build_report", "render", "report_command"]

out = Console()


@dataclass
class Figure:
    slug: str
    title: str
    png: bytes


@dataclass
class Report:
    html: Path
    figures: list[Path]
    seconds: float
    sections: list[str]


def _esc(v: Any) -> str:
    return html.escape(str(v), quote=True)


def pct(v: float | None) -> str:
    return "–" if v is None or math.isnan(v) else f"{100 * v:.1f}%"


def num(v: float | None, digits: int = 4) -> str:
    return "–" if v is None or math.isnan(v) else f"{v:.{digits}g}"


def table(head: Sequence[str], rows: Iterable[Sequence[Any]], cls: str = "", left: int = 1) -> str:
    """An HTML table; the first ``left`` columns are text (left-aligned), the rest numbers."""

    def cell(tag: str, i: int, v: Any) -> str:
        c = ' class="l"' if i < left else ""
        return f"<{tag}{c}>{_esc(v)}</{tag}>"

    h = "".join(cell("th", i, v) for i, v in enumerate(head))
    body = "".join(
        "<tr>" + "".join(cell("td", i, v) for i, v in enumerate(r)) + "</tr>" for r in rows
    )
    c = f' class="{cls}"' if cls else ""
    return f"<table{c}><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


CSS = """
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,
sans-serif;color:#1c2333;background:#f4f6f9}
header{background:#1f2d4a;color:#fff;padding:22px 40px}
header h1{margin:0 0 4px;font-size:1.6rem;font-weight:600}
header p{margin:2px 0;color:#cfd8ea}
nav{padding:10px 40px;background:#e9edf4;font-size:.9rem}
nav a{color:#1f4f9a;margin-right:16px;text-decoration:none}
main{max-width:1500px;margin:0 auto;padding:4px 40px 24px}
section{background:#fff;border:1px solid #dde2ea;border-radius:8px;padding:14px 24px 18px;
margin:18px 0}
h2{font-size:1.2rem;margin:4px 0 10px;color:#1f2d4a}
h3{font-size:1rem;margin:14px 0 6px;color:#33405c}
.row{display:flex;flex-wrap:wrap;gap:20px;align-items:flex-start;margin:8px 0 14px}
figure{margin:0;flex:0 1 820px;min-width:320px}
figure img{width:100%;height:auto;border:1px solid #eceff4;border-radius:4px}
figcaption{font-size:.85rem;color:#56607a;margin-top:4px}
.tables{flex:1 1 380px;max-height:560px;overflow:auto}
table{border-collapse:collapse;font-size:.84rem;font-variant-numeric:tabular-nums;margin:0 0 12px}
th,td{padding:3px 9px;border-bottom:1px solid #e5e8ef;text-align:right;white-space:nowrap}
th{background:#eef1f6;font-weight:600;position:sticky;top:0}
th.l,td.l{text-align:left}
table.failed td{white-space:normal}
tbody tr:nth-child(even){background:#fafbfd}
.note{color:#56607a;font-size:.88rem;margin:4px 0}
.missing{color:#6b4e00;background:#fff7e0;border-left:4px solid #e5b000;padding:8px 12px;
margin:6px 0;font-size:.92rem}
footer{max-width:1500px;margin:0 auto;padding:8px 40px 32px;color:#56607a;font-size:.85rem}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.85em}
"""


class _Page:
    """Sections of HTML and the figures they embed."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.figures: list[Figure] = []
        self.sections: list[tuple[str, str]] = []  # (id, title)

    def section(self, sid: str, title: str) -> None:
        if self.sections:
            self.parts.append("</section>")
        self.sections.append((sid, title))
        self.parts.append(f'<section id="{sid}"><h2>{_esc(title)}</h2>')

    def missing(self, text: str) -> None:
        self.parts.append(f'<p class="missing">{_esc(text)}</p>')

    def note(self, text: str) -> None:
        if text:
            self.parts.append(f'<p class="note">{_esc(text)}</p>')

    def figure(self, slug: str, title: str, png: bytes, tables: str, caption: str = "") -> None:
        n = len(self.figures) + 1
        slug = f"fig{n:02d}-{re.sub(r'[^a-z0-9]+', '-', slug.lower()).strip('-')}"
        self.figures.append(Figure(slug, title, png))
        data = base64.b64encode(png).decode("ascii")
        cap = f"<figcaption>{_esc(caption)}</figcaption>" if caption else ""
        self.parts.append(
            f'<div class="row"><figure><img alt="{_esc(title)}" '
            f'src="data:image/png;base64,{data}">{cap}</figure>'
            f'<div class="tables">{tables}</div></div>'
        )

    def html(self, title: str, subtitle: list[str], footer: str) -> str:
        nav = "".join(f'<a href="#{sid}">{_esc(t)}</a>' for sid, t in self.sections)
        sub = "".join(f"<p>{_esc(s)}</p>" for s in subtitle if s)
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_esc(title)}</title><style>{CSS}</style></head><body>"
            f"<header><h1>{_esc(title)}</h1>{sub}</header><nav>{nav}</nav><main>"
            + "".join(self.parts)
            + ("</section>" if self.sections else "")
            + f"</main><footer>{footer}</footer></body></html>\n"
        )


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(t))


def _summary_section(page: _Page, sweep: Sweep) -> None:
    page.section("summary", "1. Summary")
    ok, failed = sweep.ok, sweep.failed
    pending = max(sweep.planned - len(ok) - len(failed), 0)
    commands = sorted({p.command for p in sweep.points})
    counts = [
        ("points planned", sweep.planned),
        ("finished", len(ok)),
        ("failed", len(failed)),
        ("pending", pending),
        ("command", ", ".join(commands)),
        ("swept axes", ", ".join(a for a in sweep.axes if a != SOURCE) or "–"),
        ("seeds", len({p.value(SEED) for p in sweep.points})),
    ]
    cos = [p for p in ok if p.is_cosim]
    if cos:
        counts.append(
            (
                "RTL mismatches (co-simulated points)",
                sum(int((p.summary or {}).get("mismatches", 0)) for p in cos),
            )
        )
    parts = [table(["", "value"], counts, cls="counts", left=1)]
    rules: dict[str, list[tuple[float, Group]]] = {}
    for g in groups(sweep):
        for p in g.points:
            if p.accuracy is not None:
                rules.setdefault(g.rule, []).append((p.accuracy, g))
    rows = []
    for rule in sorted(rules, key=rule_key):
        accs = [a for a, _ in rules[rule]]
        m, lo, hi, sd = stats(accs)
        _, best_g = max(rules[rule], key=lambda t: t[0])
        rows.append((rule, len(accs), pct(hi), best_g.label, pct(m), pct(sd), pct(lo)))
    parts.append(
        table(
            ["rule", "points", "best test acc", "best point", "mean", "std", "worst"],
            rows,
            cls="rules",
            left=1,
        )
    )
    page.parts.append(
        '<div class="row">' + "".join(f'<div class="tables">{t}</div>' for t in parts) + "</div>"
    )
    if failed:
        page.parts.append(
            "<h3>Failed points</h3>"
            + table(
                ["point", "key", "reason"],
                [
                    (
                        ", ".join(f"{short(k)}={fmt_value(v)}" for k, v in p.overrides.items())
                        or "base",
                        p.key,
                        p.error or "",
                    )
                    for p in failed
                ],
                cls="failed",
                left=3,
            )
        )
    for n in sweep.notes:
        page.note(n)


def _curves_section(page: _Page, sweep: Sweep, plots: Any) -> None:
    page.section("curves", "2. Learning curves")
    cs = curves(sweep)
    if not cs:
        page.missing(
            "No per-epoch history in the summaries: `insitu train` and `insitu cosim` "
            "record it; re-run the points with either command."
        )
        return
    epochs = sorted({e for c in cs for e in c.epochs})
    shown = (
        epochs
        if len(epochs) <= 10
        else sorted({epochs[round(i * (len(epochs) - 1) / 9)] for i in range(10)})
    )
    rows = []
    for c in cs:
        at = dict(zip(c.epochs, c.test, strict=True))
        rows.append(
            [c.label, c.seeds, c.epochs[-1], pct(c.test[-1][0]), pct(c.train[-1][0])]
            + [pct(at[e][0]) if e in at else "–" for e in shown]
        )
    head = ["point", "seeds", "epochs", "final test", "final train"]
    tab = table(head + [f"test ep {e}" for e in shown], rows, cls="curves", left=1)
    banded = any(c.seeds > 1 for c in cs)
    per_rule = max(sum(1 for c in cs if c.rule == r) for r in {c.rule for c in cs})
    band = ""
    if banded:
        band = (
            ", band: min–max over seeds"
            if per_rule <= plots.MAX_BANDS
            else f"; min–max bands left out with more than {plots.MAX_BANDS} lines per panel"
        )
    caption = (
        f"Test accuracy (mean over seeds{band}) and running train accuracy per epoch; color: "
        "learning rule, shade: point."
    )
    page.figure("learning-curves", "Learning curves", plots.learning_curves(cs), tab, caption)
    if len(shown) < len(epochs):
        page.note(f"The table shows {len(shown)} of {len(epochs)} epochs.")


def _axes_section(page: _Page, sweep: Sweep, plots: Any) -> None:
    page.section("axes", "3. Accuracy against the swept axes")
    axis_plots, skipped = accuracy_axes(sweep)
    if not axis_plots:
        page.missing(
            (
                "No numeric field changes on its own between these points. "
                if any(skipped.values())
                else "No numeric axis was swept. "
            )
            + "Sweep e.g. array.adc_bits, array.rows, array.d2d_sigma, array.c2c_sigma, "
            "precision.gradient_bits, precision.error_bits or network.layers (axes: in the "
            "sweep file) to see accuracy against it."
        )
    for ap in axis_plots:
        rows = []
        for panel in ap.panels:
            for line in panel.lines:
                for x, m, lo, hi, sd, n in zip(
                    line.xs, line.mean, line.lo, line.hi, line.sd, line.n, strict=True
                ):
                    rows.append(
                        [
                            panel.title or "all",
                            line.rule,
                            num(x),
                            pct(m),
                            pct(sd),
                            f"{pct(lo)}–{pct(hi)}",
                            n,
                        ]
                    )
        head = ["panel", "rule", short(ap.name), "mean acc", "std", "min–max", "n"]
        if all(p.title == "" for p in ap.panels):
            head, rows = head[1:], [r[1:] for r in rows]
        tab = table(head, rows, left=1 if len(head) == 6 else 2)
        page.parts.append(f"<h3>{_esc(ap.label)}</h3>")
        page.note(ap.note)
        page.figure(
            f"accuracy-vs-{ap.name}",
            f"Test accuracy against {ap.label}",
            plots.accuracy_axis(ap),
            tab,
            "Mean test accuracy over seeds; error bars: min–max; one line per rule.",
        )
    if skipped["categorical"]:
        page.note("Not drawn, not numbers: " + ", ".join(skipped["categorical"]) + ".")
    if skipped["confounded"]:
        page.note(
            "Not drawn, they change only together with other fields (no two points differ in "
            "one alone): " + ", ".join(skipped["confounded"]) + "."
        )


def _hardware_section(page: _Page, sweep: Sweep, plots: Any) -> None:
    page.section("hardware", "4. Hardware cost (co-simulated points)")
    bars, note = hardware_bars(sweep)
    if not bars:
        page.missing(
            "No co-simulated points: run the sweep with `command: cosim` (or "
            "`insitu cosim`) to get energy, area and latency by component."
        )
        return
    page.note(note)

    def comp_table(
        unit: str,
        scale: float,
        get: Callable[[HardwareBar], dict[str, float]],
        keys: Sequence[str],
        digits: int = 4,
    ) -> str:
        rows = [
            [b.label, b.n]
            + [num(get(b).get(k, 0.0) * scale, digits) for k in keys]
            + [num(sum(get(b).get(k, 0.0) for k in keys) * scale, digits)]
            for b in bars
        ]
        return table(["point", "n", *keys, f"total ({unit})"], rows, left=1)

    ecomps = _ordered_keys([b.energy for b in bars], ENERGY_COMPONENTS)
    acomps = _ordered_keys([b.area for b in bars], (*ENERGY_COMPONENTS, "other"))
    page.parts.append("<h3>Energy per training sample by component</h3>")
    page.figure(
        "energy-by-component",
        "Energy per sample by component",
        plots.stacked_bars(
            bars,
            lambda b: b.energy,
            ecomps,
            1e9,
            "energy per training sample (nJ)",
            split="offchip",
        ),
        comp_table("nJ", 1e9, lambda b: b.energy, ecomps),
        "Each run's energy totals divided by its samples (forward, backward and update "
        "of one training sample, off-chip traffic included).",
    )
    page.parts.append("<h3>Area by component</h3>")
    page.figure(
        "area-by-component",
        "Area by component",
        plots.stacked_bars(bars, lambda b: b.area, acomps, 1.0, "area (mm²)"),
        comp_table("mm²", 1.0, lambda b: b.area, acomps),
    )
    page.parts.append("<h3>Latency per training sample by phase</h3>")
    page.figure(
        "latency-by-phase",
        "Latency per sample by phase",
        plots.stacked_bars(
            bars, lambda b: b.latency, PHASES, 1e6, "latency per training sample (µs)"
        ),
        comp_table("µs", 1e6, lambda b: b.latency, PHASES),
        "Cycles per sample from the RTL's counters times the clock period.",
    )


def _ordered_keys(ds: Sequence[dict[str, float]], order: Sequence[str]) -> list[str]:
    keys = {k for d in ds for k in d}
    return [k for k in order if k in keys] + sorted(keys - set(order))


def _depth_section(page: _Page, sweep: Sweep, plots: Any) -> None:
    page.section("depth", "5. Training latency against depth N")
    rows, note = depth_rows(sweep)
    if not rows:
        page.missing(
            "No co-simulated points: run a cosim sweep over network.layers of several "
            "depths with learning.rule: [bp, dfa] to see latency against depth N."
        )
        return
    sp = speedups(rows)
    depths = sorted({r.depth for r in rows})
    lat = table(
        [
            "N",
            "rule",
            "points",
            "forward (µs)",
            "backward (µs)",
            "update (µs)",
            "backward+update (µs)",
            "total (µs)",
        ],
        [
            [
                r.depth,
                r.rule,
                r.n,
                num(r.forward * 1e6),
                num(r.backward * 1e6),
                num(r.update * 1e6),
                num(r.backward_update * 1e6),
                num(r.total * 1e6),
            ]
            for r in rows
        ],
        cls="latency",
        left=2,
    )
    spt = (
        table(
            ["N", "BP/DFA backward+update", "BP/DFA whole step", "reference N"],
            [[d, f"{a:.3f}", f"{b:.3f}", d] for d, a, b in sp],
            cls="speedup",
            left=0,
        )
        if sp
        else ""
    )
    if len(depths) < 2:
        page.missing(
            f"All co-simulated points have depth N = {depths[0]}: sweep network.layers "
            "over several depths (e.g. [64,16,10], [64,16,16,10], [64,16,16,16,10]) "
            "to see latency and speedup against N."
        )
        if not sp:
            page.missing("Run both learning.rule bp and dfa to get the BP/DFA speedup.")
        page.parts.append('<div class="row"><div class="tables">' + lat + spt + "</div></div>")
        return
    page.note(note)
    if not sp:
        page.missing("The speedup BP/DFA needs both learning.rule bp and dfa at the same depth.")
    page.figure(
        "latency-vs-depth",
        "Latency against depth N",
        plots.depth_plot(rows, sp),
        spt + lat,
        "Per-sample latency by rule against N (solid: whole step, dashed: backward + "
        "update); right: BP over DFA latency with the y = N reference.",
    )


def _pareto_section(page: _Page, sweep: Sweep, plots: Any) -> None:
    page.section("pareto", "6. Pareto front")
    cos = [p for p in sweep.ok if p.is_cosim]
    sets: list[tuple[str, str, float, list[ParetoPoint]]] = []  # slug, axis label, scale, points
    if cos:
        sets.append(
            ("energy", "energy per training sample (nJ)", 1e9, pareto(sweep, cosim_energy, cos))
        )
        sets.append(
            ("latency", "latency per training sample (µs)", 1e6, pareto(sweep, cosim_latency, cos))
        )
    else:
        page.missing(
            "No co-simulated points, so no chip cost: the cost axis below is the host's "
            "wall-clock training time per point, which measures the simulator, not the "
            "chip. Run `command: cosim` for energy and latency per sample."
        )
        sets.append(("wall", "host wall-clock training time (s)", 1.0, pareto(sweep, host_seconds)))
    tabs = ""
    for slug, label, scale, pts in sets:
        fr = sorted((p for p in pts if p.front), key=lambda p: p.cost)
        tabs += f"<h3>Non-dominated: accuracy vs {_esc(label.split(' (')[0])}</h3>" + table(
            ["#", "point", "rule", "test acc", label],
            [
                [i, p.label, p.rule, pct(p.accuracy), num(p.cost * scale)]
                for i, p in enumerate(fr, 1)
            ],
            cls=f"pareto pareto-{slug}",
            left=3,
        )
    page.figure(
        "pareto",
        "Pareto front",
        plots.pareto_plot([(label, scale, pts) for _, label, scale, pts in sets]),
        tabs,
        "Mean over seeds per point; ringed, numbered as in the table and joined: non-dominated "
        "(no other point has higher accuracy at no more cost, or less cost at no less accuracy).",
    )


def render(sweep: Sweep, origin: str) -> tuple[str, list[Figure], list[str]]:
    """The page's HTML, its figures (PNG) and its section titles."""
    from . import report_plots as plots

    page = _Page()
    _summary_section(page, sweep)
    _curves_section(page, sweep, plots)
    _axes_section(page, sweep, plots)
    _hardware_section(page, sweep, plots)
    _depth_section(page, sweep, plots)
    _pareto_section(page, sweep, plots)
    now = time.time()
    done = [p.finished_at for p in sweep.points if p.finished_at]
    subtitle = [
        sweep.description,
        f"{sweep.kind}: {origin}",
        f"report made {_when(now)}" + (f"; last point finished {_when(max(done))}" if done else ""),
    ]
    footer = (
        f"Data: <code>{_esc(sweep.source)}</code> ({sweep.rows_read} "
        f"{'rows' if sweep.kind == 'sweep' else 'run summaries'} read, "
        f"{len(sweep.points)} reported). Every number and figure on this page comes from "
        f"these files. Made by <code>insitu report</code> on {_esc(_when(now))}."
    )
    title = f"insitu report: {sweep.name}"
    return page.html(title, subtitle, footer), page.figures, [t for _, t in page.sections]


def default_out(paths: Sequence[Path]) -> Path:
    if len(paths) == 1 and paths[0].is_dir():
        return paths[0] / "report.html"
    raise DesignError("several inputs: give the page's path with --out FILE.html")


def _writer(data: bytes) -> Callable[[BinaryIO], None]:
    def write(fh: BinaryIO) -> None:
        fh.write(data)

    return write


def build_report(paths: Sequence[str | Path], out: str | Path | None = None) -> Report:
    """Read, analyse, draw, then write the page and its PNGs (nothing is written on error).

    The PNGs go in a folder beside the page named after it (``report.html`` -> ``report/``);
    PNGs this command wrote there before (``figNN-*.png``) that the new page does not have are
    removed, so the folder always matches the page.
    """
    t0 = time.perf_counter()
    ps = [Path(p) for p in paths]
    sweep = load(ps)
    html_path = Path(out) if out is not None else default_out(ps)
    if html_path.suffix.lower() not in (".html", ".htm"):
        raise DesignError(f"--out {html_path}: the page's name must end in .html")
    origin = ", ".join(str(p) for p in ps)
    text, figures, sections = render(sweep, origin)
    fig_dir = html_path.with_suffix("")
    written: list[Path] = []
    for f in figures:
        path = fig_dir / f"{f.slug}.png"
        write_bytes_with(path, _writer(f.png))
        written.append(path)
    for old in fig_dir.glob("fig[0-9][0-9]-*.png"):
        if old not in written:
            old.unlink()
    write_text(html_path, text)
    return Report(html_path, written, time.perf_counter() - t0, sections)


def report_command(
    sources: Annotated[
        list[Path],
        typer.Argument(
            help="A sweep folder (plan.json + results.sqlite from `insitu sweep`), a folder of "
            "run folders, or run folders / summary.json files.",
            show_default=False,
            metavar="DIR",
        ),
    ],
    out_file: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="The HTML page (default: DIR/report.html); its PNGs go in a folder beside it "
            "named after it (DIR/report/).",
        ),
    ] = None,
) -> None:
    """Write one self-contained HTML report of a sweep (or of runs): summary, learning curves,
    accuracy against each swept axis, hardware cost, latency against depth, Pareto fronts."""
    rep = build_report(sources, out_file)
    out.print(
        f"report: {rep.html} ({len(rep.figures)} figures, also as PNG in "
        f"{rep.html.with_suffix('')}/) in {rep.seconds:.1f} s",
        highlight=False,
        soft_wrap=True,
    )
