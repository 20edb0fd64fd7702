"""The figures of ``insitu report``: each function draws one figure and returns its PNG bytes.

Owns the look of the report's figures (colors per learning rule and per cost component, axis
labels with units, legends). The numbers come ready-made from :mod:`.report`; nothing here
computes a result. Figures are drawn on matplotlib's Agg canvas directly (``Figure`` +
``FigureCanvasAgg``) rather than through pyplot, so no GUI backend is ever touched, no global
figure list grows, and importing this module does not change the backend of a caller's
notebook.
"""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, MaxNLocator

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from .report import AxisPlot, Curve, DepthRow, HardwareBar, ParetoPoint

__all__ = ["accuracy_axis", "depth_plot", "learning_curves", "pareto_plot", "stacked_bars"]

DPI = 110
RULE_COLORS = {"bp": "#1f77b4", "fa": "#ff7f0e", "dfa": "#2ca02c", "drtp": "#9467bd"}
_EXTRA = ("#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#d62728")
COMPONENT_COLORS = {
    "arrays": "#4e79a7",
    "adcs": "#f28e2b",
    "accumulation": "#e15759",
    "wgu": "#76b7b2",
    "buffers": "#59a14f",
    "interconnect": "#edc948",
    "offchip": "#b07aa1",
    "other": "#9c755f",
    "forward": "#4e79a7",
    "backward": "#e15759",
    "update": "#59a14f",
}
# legend entries a learning-curve panel names one by one (more: the table beside names them)
MAX_LEGEND = 14
# lines of one panel that get a min-max band over seeds (more bands hide each other)
MAX_BANDS = 4


def rule_color(rule: str) -> str:
    if rule in RULE_COLORS:
        return RULE_COLORS[rule]
    return _EXTRA[sum(map(ord, rule)) % len(_EXTRA)]


def _shade(color: str, i: int, n: int) -> tuple[float, float, float]:
    """The i-th of n shades of one rule's color, dark to light, so a rule's lines stay one hue."""
    if n <= 1:
        return to_rgb(color)
    t = -0.35 + 0.8 * i / (n - 1)  # <0: toward black, >0: toward white
    r, g, b = to_rgb(color)
    if t < 0:
        return (r * (1 + t), g * (1 + t), b * (1 + t))
    return (r + (1 - r) * t, g + (1 - g) * t, b + (1 - b) * t)


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    # no Software tag: it names matplotlib's web site, and the page should hold no URL at all
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _new(width: float, height: float, ncols: int = 1, nrows: int = 1) -> tuple[Figure, list[Axes]]:
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, [a for row in axes for a in row]


def _percent(x: float, _pos: int | None = None) -> str:
    # as many decimals as the tick needs: 25%, 27.5% (a fixed 0 would print 27.5% as 28%)
    return f"{round(100 * x, 3):g}%"


def _acc_axis(ax: Axes) -> None:
    ax.yaxis.set_major_formatter(FuncFormatter(_percent))
    ax.grid(True, alpha=0.3)


def learning_curves(curves: Sequence[Curve]) -> bytes:
    """Test and train accuracy against epoch, one line per point shaded within its rule's color.

    With several rules each rule gets its own column (test above, train below), so a sweep of
    many points stays readable; with one rule, test and train sit side by side.
    """
    by_rule: dict[str, list[Curve]] = {}
    for c in curves:
        by_rule.setdefault(c.rule, []).append(c)
    k = len(by_rule)
    if k == 1:
        fig, axes = _new(11.5, 4.3, ncols=2)
        cells = [(axes[0], axes[1])]
    else:
        fig, axes = _new(min(4.6 * k + 1.0, 16.0), 7.2, ncols=k, nrows=2)
        cells = [(axes[i], axes[k + i]) for i in range(k)]
    epochs = sorted({e for c in curves for e in c.epochs})
    for (ax_test, ax_train), (rule, cs) in zip(cells, by_rule.items(), strict=True):
        for i, c in enumerate(cs):
            color = _shade(rule_color(rule), i, len(cs))
            # in a rule's own column the rule's name in each label is redundant
            label = c.label.removeprefix(f"{rule} · ") if k > 1 else c.label
            for ax, vals in ((ax_test, c.test), (ax_train, c.train)):
                pts = [(e, v) for e, v in zip(c.epochs, vals, strict=True) if not math.isnan(v[0])]
                if not pts:
                    continue
                xs = [e for e, _ in pts]
                ax.plot(
                    xs,
                    [v[0] for _, v in pts],
                    color=color,
                    lw=1.6,
                    marker="o" if len(xs) <= 12 else None,
                    ms=3,
                    label=label,
                )
                if c.seeds > 1 and len(cs) <= MAX_BANDS:
                    ax.fill_between(
                        xs,
                        [v[1] for _, v in pts],
                        [v[2] for _, v in pts],
                        color=color,
                        alpha=0.12,
                        lw=0,
                    )
        for ax, what in ((ax_test, "test accuracy"), (ax_train, "train accuracy (running)")):
            ax.set_xlabel("epoch")
            ax.set_ylabel(what)
            ax.set_title(f"{rule}: {what}" if k > 1 else what.capitalize(), fontsize=10)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if len(epochs) == 1:
                ax.set_xticks(epochs)
            _acc_axis(ax)
        if len(cs) <= MAX_LEGEND:
            if k > 1:
                ax_test.legend(fontsize=6.5, loc="best", framealpha=0.7)
            else:
                ax_train.legend(
                    fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False
                )
    if k > 1:
        for row in (axes[:k], axes[k:]):
            lo = min(a.get_ylim()[0] for a in row)
            hi = max(a.get_ylim()[1] for a in row)
            for a in row:
                a.set_ylim(lo, hi)
    return _png(fig)


def accuracy_axis(ap: AxisPlot) -> bytes:
    """Mean test accuracy against one axis, one line per rule, min–max error bars; a panel per
    combination of the other axes."""
    n = len(ap.panels)
    ncols = min(n, 3)
    nrows = math.ceil(n / ncols)
    fig, axes = _new(4.4 * ncols + 1.2, 3.4 * nrows, ncols=ncols, nrows=nrows)
    for ax in axes[n:]:
        ax.set_visible(False)
    for ax, panel in zip(axes, ap.panels, strict=False):
        xs_all = sorted({x for line in panel.lines for x in line.xs})
        step = min((b - a for a, b in itertools.pairwise(xs_all)), default=1.0)
        k = len(panel.lines)
        for j, line in enumerate(panel.lines):
            # nudge each rule's points sideways so overlapping error bars stay readable
            off = (j - (k - 1) / 2) * 0.04
            xs = [x * (1 + off * 0.5) if ap.log_x else x + off * step for x in line.xs]
            ax.errorbar(
                xs,
                line.mean,
                yerr=[
                    [m - lo for m, lo in zip(line.mean, line.lo, strict=True)],
                    [hi - m for m, hi in zip(line.mean, line.hi, strict=True)],
                ],
                color=rule_color(line.rule),
                marker="o",
                ms=4,
                lw=1.6,
                capsize=3,
                label=line.rule,
            )
        if ap.log_x:
            ax.set_xscale("log", base=2 if all(float(x).is_integer() for x in xs_all) else 10)
        ax.set_xticks(xs_all if len(xs_all) <= 10 else ax.get_xticks())
        ax.set_xticklabels([f"{x:g}" for x in ax.get_xticks()])
        ax.set_xlabel(ap.label)
        ax.set_ylabel("test accuracy")
        if panel.title:
            ax.set_title(panel.title, fontsize=10)
        _acc_axis(ax)
    axes[0].legend(fontsize=8, title="rule", title_fontsize=8)
    fig.suptitle(f"Test accuracy against {ap.label}", fontsize=11)
    return _png(fig)


def stacked_bars(
    bars: Sequence[HardwareBar],
    get: Callable[[HardwareBar], dict[str, float]],
    keys: Sequence[str],
    scale: float,
    ylabel: str,
    split: str | None = None,
) -> bytes:
    """One stacked bar per point (components or phases stacked), outlined in the rule's color.

    ``split``: a component that, when it is most of some bar, hides the others; a second panel
    then shows the bars without it.
    """
    vals = {k: [get(b).get(k, 0.0) * scale for b in bars] for k in keys}
    totals = [sum(v[i] for v in vals.values()) for i in range(len(bars))]
    panels: list[tuple[str, Sequence[str]]] = [("", keys)]
    if split in vals and any(
        s > 0 and v / s > 0.5 for v, s in zip(vals[split], totals, strict=True)
    ):
        panels = [("all components", keys), (f"without {split}", [k for k in keys if k != split])]
    width = max(6.5, min(15.0, 2.2 + 0.75 * len(bars) * len(panels)))
    fig, axes = _new(width, 4.6, ncols=len(panels))
    xs = list(range(len(bars)))
    for ax, (title, ks) in zip(axes, panels, strict=True):
        bottom = [0.0] * len(bars)
        for k in ks:
            ax.bar(
                xs,
                vals[k],
                0.7,
                bottom=bottom,
                label=k,
                color=COMPONENT_COLORS.get(k, "#bab0ac"),
                edgecolor="white",
                lw=0.5,
            )
            bottom = [b + v for b, v in zip(bottom, vals[k], strict=True)]
        for x, b, top in zip(xs, bars, bottom, strict=True):
            ax.bar(x, top, 0.7, fill=False, edgecolor=rule_color(b.rule), lw=1.8)
        ax.set_xticks(xs)
        tilt = len(bars) > 3 or max(len(b.label) for b in bars) > 14
        ax.set_xticklabels(
            [b.label for b in bars],
            rotation=25 if tilt else 0,
            ha="right" if tilt else "center",
            fontsize=8,
        )
        for tick, b in zip(ax.get_xticklabels(), bars, strict=True):
            tick.set_color(rule_color(b.rule))
        ax.set_ylabel(ylabel)
        if title:
            ax.set_title(title, fontsize=10)
        ax.grid(True, axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    for rule in dict.fromkeys(b.rule for b in bars):
        handles.append(Patch(fill=False, edgecolor=rule_color(rule), lw=1.8))
        labels.append(f"rule {rule} (outline)")
    axes[-1].legend(
        handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False
    )
    return _png(fig)


def depth_plot(rows: Sequence[DepthRow], speedups: Sequence[tuple[int, float, float]]) -> bytes:
    """Left: latency per sample against N per rule; right: BP/DFA speedup with y = N."""
    fig, (ax_lat, ax_sp) = _new(11.0, 4.2, ncols=2)
    rules: dict[str, list[DepthRow]] = {}
    for r in rows:
        rules.setdefault(r.rule, []).append(r)
    for rule, rs in rules.items():
        rs = sorted(rs, key=lambda r: r.depth)
        c = rule_color(rule)
        ns = [r.depth for r in rs]
        ax_lat.plot(
            ns,
            [r.total * 1e6 for r in rs],
            color=c,
            marker="o",
            lw=1.8,
            label=f"{rule}: whole step",
        )
        ax_lat.plot(
            ns,
            [r.backward_update * 1e6 for r in rs],
            color=c,
            marker="s",
            lw=1.4,
            ls="--",
            label=f"{rule}: backward+update",
        )
    depths = sorted({r.depth for r in rows})
    ax_lat.set_xlabel("depth N (weight layers)")
    ax_lat.set_ylabel("latency per training sample (µs)")
    ax_lat.set_title("Latency per sample")
    ax_lat.set_xticks(depths)
    ax_lat.grid(True, alpha=0.3)
    ax_lat.legend(fontsize=8)
    if speedups:
        ns = [d for d, _, _ in speedups]
        ax_sp.plot(
            ns,
            [a for _, a, _ in speedups],
            color="#d62728",
            marker="o",
            lw=1.8,
            label="BP/DFA backward+update",
        )
        ax_sp.plot(
            ns,
            [b for _, _, b in speedups],
            color="#1f2d4a",
            marker="s",
            lw=1.8,
            label="BP/DFA whole step",
        )
        ax_sp.plot(depths, depths, color="#777777", ls=":", lw=1.5, label="y = N")
        ax_sp.set_xticks(depths)
        ax_sp.legend(fontsize=8)
    else:
        ax_sp.text(
            0.5,
            0.5,
            "needs bp and dfa at one depth",
            ha="center",
            va="center",
            transform=ax_sp.transAxes,
            color="#777777",
        )
    ax_sp.set_xlabel("depth N (weight layers)")
    ax_sp.set_ylabel("speedup (BP latency / DFA latency, ×)")
    ax_sp.set_title("Speedup of DFA over BP")
    ax_sp.grid(True, alpha=0.3)
    return _png(fig)


def pareto_plot(sets: Sequence[tuple[str, float, Sequence[ParetoPoint]]]) -> bytes:
    """Accuracy against each cost (label, scale, points), the front ringed and joined."""
    fig, axes = _new(5.6 * len(sets) + 0.6, 4.3, ncols=len(sets))
    for ax, (label, scale, pts) in zip(axes, sets, strict=True):
        for rule in dict.fromkeys(p.rule for p in pts):
            mine = [p for p in pts if p.rule == rule]
            ax.scatter(
                [p.cost * scale for p in mine],
                [p.accuracy for p in mine],
                s=30,
                color=rule_color(rule),
                label=rule,
                zorder=3,
                alpha=0.85,
            )
        fr = sorted((p for p in pts if p.front), key=lambda p: p.cost)
        if fr:
            ax.scatter(
                [p.cost * scale for p in fr],
                [p.accuracy for p in fr],
                s=110,
                facecolors="none",
                edgecolors="black",
                lw=1.3,
                zorder=4,
                label="non-dominated",
            )
            ax.step(
                [p.cost * scale for p in fr],
                [p.accuracy for p in fr],
                where="post",
                color="black",
                lw=1,
                alpha=0.6,
                zorder=2,
            )
            # numbers, not names: the table beside lists the front in the same order
            for i, p in enumerate(fr, 1):
                ax.annotate(
                    str(i),
                    (p.cost * scale, p.accuracy),
                    fontsize=8,
                    xytext=(5, -11),
                    textcoords="offset points",
                    color="#222222",
                    weight="bold",
                )
        costs = [p.cost for p in pts if p.cost > 0]
        if costs and max(costs) / min(costs) > 30:
            ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("test accuracy")
        ax.set_title(f"Accuracy vs {label.split(' (')[0]}", fontsize=10)
        _acc_axis(ax)
        ax.legend(fontsize=8)
    return _png(fig)
