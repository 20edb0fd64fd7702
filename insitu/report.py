"""The numbers of ``insitu report``: a sweep's (or runs') points and what each section shows.

Owns reading the inputs (a sweep folder's ``plan.json`` + ``results.sqlite``, a folder of run
folders, or run folders / ``summary.json`` files) and the numbers every section of the report
shows: grouping over seeds, learning curves, accuracy against each swept axis, hardware cost by
component, latency against depth, Pareto fronts. Plain data in, plain data out: the page is
assembled and written by :mod:`.report_cli` (``build_report``) and the figures are drawn by
:mod:`.report_plots`, so this module never imports matplotlib and can be tested on its own.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .config import DesignError
from .sweep_store import PLAN, STORE, Store, read_plan

__all__ = [
    "AxisPlot",
    "DepthRow",
    "Group",
    "HardwareBar",
    "ParetoPoint",
    "Point",
    "Sweep",
    "accuracy_axes",
    "depth_rows",
    "groups",
    "hardware_bars",
    "load",
    "pareto",
    "write_report",
]

SEED = "learning.seed"
# the field that tells apart the points of several sweeps reported on one page
SOURCE = "sweep"
RULE = "learning.rule"
# rules in the order the figures and tables list them; others follow alphabetically
RULE_ORDER = ("bp", "fa", "dfa", "drtp")
# most panels a figure of accuracy against one axis shows before it averages instead
MAX_PANELS = 6
# most bars a hardware figure shows before it averages per (rule, depth) instead
MAX_BARS = 16
ENERGY_COMPONENTS = (
    "arrays",
    "adcs",
    "accumulation",
    "wgu",
    "buffers",
    "interconnect",
    "offchip",
)
PHASES = ("forward", "backward", "update")
# fields that locate things or name the run, never an experiment's variable
_IGNORED_FIELDS = {"name", "network.data_dir"}

# x-axis labels (with units) of the axes the page knows by name; others use the field name
AXIS_LABELS = {
    "array.adc_bits": "ADC resolution (bits)",
    "array.rows": "subarray rows (cells per column)",
    "array.cols": "subarray columns",
    "array.cell_bits": "bits per cell",
    "array.cols_per_adc": "columns per ADC",
    "array.d2d_sigma": "device-to-device variation σ (relative)",
    "array.c2c_sigma": "cycle-to-cycle variation σ (relative)",
    "array.read_noise_sigma": "read noise σ (relative)",
    "array.stuck_at_rate": "stuck-at cell rate (fraction)",
    "precision.gradient_bits": "gradient precision (bits)",
    "precision.error_bits": "error precision (bits)",
    "precision.weight_bits": "weight precision (bits)",
    "precision.activation_bits": "activation precision (bits)",
    "learning.lr": "learning rate",
    "learning.hardware_lr": "hardware learning rate",
    "learning.batch_size": "batch size (samples)",
    "learning.epochs": "epochs",
    "chip.clock_mhz": "clock (MHz)",
    "chip.buffer_kib": "buffer (KiB)",
    "tech.temperature_c": "temperature (°C)",
    "width": "hidden layer width (neurons)",
    "depth": "depth N (weight layers)",
}


# --------------------------------------------------------------------------- the data


@dataclass(frozen=True)
class Point:
    """One point of the sweep (a store row, or one run's summary)."""

    key: str
    name: str  # the run folder's name, or the key for store rows
    status: str  # 'ok' | 'failed'
    command: str
    overrides: dict[str, Any]
    design: dict[str, Any]
    summary: dict[str, Any] | None
    error: str | None
    wall_s: float | None
    finished_at: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.summary is not None

    @property
    def rule(self) -> str:
        return str(self.design.get("learning", {}).get("rule", "?"))

    @property
    def layers(self) -> list[int]:
        return [int(n) for n in self.design.get("network", {}).get("layers", [])]

    @property
    def depth(self) -> int:
        """N: the number of weight layers."""
        return max(len(self.layers) - 1, 0)

    @property
    def width(self) -> int | None:
        """The widest hidden layer (None for a network without one)."""
        hidden = self.layers[1:-1]
        return max(hidden) if hidden else None

    @property
    def accuracy(self) -> float | None:
        s = self.summary or {}
        v = s.get("test_accuracy")
        return float(v) if isinstance(v, int | float) else None

    @property
    def is_cosim(self) -> bool:
        s = self.summary or {}
        return "latency_s" in s and "energy_j" in s and "area_mm2" in s

    @property
    def host_seconds(self) -> float | None:
        """Host wall-clock time of the training (not a chip cost)."""
        s = self.summary or {}
        v = s.get("wall_time_s", self.wall_s)
        return float(v) if isinstance(v, int | float) else None

    def value(self, name: str) -> Any:
        """A dotted design field, or the derived ``width`` / ``depth`` / ``command``."""
        if name == "width":
            return self.width
        if name == "depth":
            return self.depth
        if name == "command":
            return self.command
        node: Any = self.design
        for part in name.split("."):
            if not isinstance(node, dict) or part not in node:
                return self.overrides.get(name)
            node = node[part]
        return node


@dataclass
class Sweep:
    """What was read: the points and how they were planned."""

    name: str
    description: str
    source: str  # what the page's footer names as the data's origin
    kind: str  # 'sweep' (plan + store) | 'runs' (summary.json files)
    planned: int
    points: list[Point]
    axes: list[str]  # the fields varied between points, learning.seed left out
    rows_read: int
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> list[Point]:
        return [p for p in self.points if p.ok]

    @property
    def failed(self) -> list[Point]:
        return [p for p in self.points if p.status == "failed"]


def _is_summary(data: Any) -> bool:
    return (
        isinstance(data, dict)
        and isinstance(data.get("design"), dict)
        and ("test_accuracy" in data)
    )


def _flatten(node: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for k, v in node.items():
        name = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict):
            flat.update(_flatten(v, name))
        else:
            flat[name] = v
    return flat


def _load_store(folder: Path) -> Sweep:
    plan = read_plan(folder)
    stored = Store(folder).rows() if (folder / STORE).exists() else []
    rows = stored
    notes: list[str] = []
    if plan is not None:
        keys = [p["key"] for p in plan.get("points", [])]
        planned = set(keys)
        extra = [r for r in rows if r.key not in planned]
        if extra:
            # an earlier plan of the same folder left them; they are not part of this sweep
            notes.append(
                f"{len(extra)} stored rows from an earlier plan of this folder are left out"
            )
        rows = [r for r in rows if r.key in planned]
        axes = [a for a in plan.get("axes", []) if a != SEED]
        name = str(plan.get("name") or folder.name)
        description = str(plan.get("description") or "")
        n_planned = len(keys)
    else:
        axes = []
        for r in rows:
            axes += [k for k in r.overrides if k not in axes and k != SEED]
        name, description, n_planned = folder.name, "", len(rows)
    points = [
        Point(
            key=r.key,
            name=r.key,
            status=r.status,
            command=r.command,
            overrides=dict(r.overrides),
            design=r.design,
            summary=r.summary,
            error=r.error,
            wall_s=r.wall_s,
            finished_at=r.finished_at,
        )
        for r in rows
    ]
    return Sweep(
        name=name,
        description=description,
        source=str((folder / STORE).resolve()),
        kind="sweep",
        planned=n_planned,
        points=points,
        axes=axes,
        rows_read=len(stored),
        notes=notes,
    )


def _summary_files(paths: Sequence[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if not path.exists():
            raise DesignError(f"{path}: no such file or folder")
        if path.is_file():
            files.append(path)
        elif (path / "summary.json").is_file():
            files.append(path / "summary.json")
        else:
            # a folder of run folders (e.g. runs/): one level down, as `insitu train --out` makes
            files += sorted(path.glob("*/summary.json"))
    return files


def _load_runs(paths: Sequence[Path]) -> Sweep:
    files = _summary_files(paths)
    notes: list[str] = []
    loaded: list[tuple[Path, dict[str, Any]]] = []
    for f in files:
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            notes.append(f"{f}: skipped, not readable JSON ({exc})")
            continue
        if not _is_summary(data):
            notes.append(f"{f}: skipped, not a run summary (no design and test_accuracy)")
            continue
        loaded.append((f, data))
    where = ", ".join(str(p) for p in paths)
    if not loaded:
        raise DesignError(
            f"{where}: not a sweep folder (no {PLAN} or {STORE}) and no run summary.json found "
            "(give a folder written by `insitu sweep`, a folder of run folders, or run folders)"
        )
    flats = [
        {k: v for k, v in _flatten(s["design"]).items() if k not in _IGNORED_FIELDS}
        for _, s in loaded
    ]
    names: list[str] = []
    for flat in flats:
        names += [k for k in flat if k not in names]
    differ = [k for k in names if len({json.dumps(f.get(k), sort_keys=True) for f in flats}) > 1]
    commands = [str(s.get("command", "train")) for _, s in loaded]
    seen: dict[str, int] = {}
    points: list[Point] = []
    for (f, s), flat, command in zip(loaded, flats, commands, strict=True):
        run = f.parent.name if f.name == "summary.json" else f.stem
        seen[run] = seen.get(run, 0) + 1
        if seen[run] > 1:
            run = f"{run} ({seen[run]})"
        over = {k: flat.get(k) for k in differ}
        if len(set(commands)) > 1:
            over["command"] = command
        points.append(
            Point(
                key=run,
                name=run,
                status="ok",
                command=command,
                overrides=over,
                design=s["design"],
                summary=s,
                error=None,
                wall_s=s.get("wall_time_s"),
                finished_at=f.stat().st_mtime,
            )
        )
    axes = [k for k in differ if k != SEED] + (["command"] if len(set(commands)) > 1 else [])
    single = len(paths) == 1 and paths[0].is_dir()
    return Sweep(
        name=paths[0].resolve().name if single else "runs",
        description=f"{len(points)} runs compared",
        source=", ".join(str(f.resolve()) for f, _ in loaded),
        kind="runs",
        planned=len(points),
        points=points,
        axes=axes,
        rows_read=len(points),
        notes=notes,
    )


def _is_sweep_folder(path: Path) -> bool:
    return path.is_dir() and ((path / PLAN).exists() or (path / STORE).exists())


def _merge(sweeps: list[Sweep]) -> Sweep:
    """Several sources on one page: each point carries its source's name as the field
    ``sweep``, so points of different sweeps are never averaged as one configuration."""
    names: list[str] = []
    for sw in sweeps:
        name = sw.name
        while name in names:
            name += "'"
        names.append(name)
    points = [
        replace(p, overrides={SOURCE: name, **p.overrides})
        for sw, name in zip(sweeps, names, strict=True)
        for p in sw.points
    ]
    axes = [SOURCE]
    for sw in sweeps:
        axes += [a for a in sw.axes if a not in axes]
    return Sweep(
        name=" + ".join(names),
        description=" / ".join(sw.description for sw in sweeps if sw.description),
        source="; ".join(sw.source for sw in sweeps),
        kind="sweep" if any(sw.kind == "sweep" for sw in sweeps) else "runs",
        planned=sum(sw.planned for sw in sweeps),
        points=points,
        axes=axes,
        rows_read=sum(sw.rows_read for sw in sweeps),
        notes=[n for sw in sweeps for n in sw.notes],
    )


def load(paths: Sequence[str | Path]) -> Sweep:
    """Read sweep folders, folders of run folders, or run folders / summary files.

    Several sweep folders (or sweep folders and runs) share one page, their points told apart
    by the field ``sweep``. Raises DesignError, before anything is written, when there is
    nothing to report on.
    """
    if not paths:
        raise DesignError("give a sweep folder (or run folders) to report on")
    ps = [Path(p) for p in paths]
    for p in ps:
        if not p.exists():
            raise DesignError(f"{p}: no such file or folder")
    sweeps = [_load_store(p) for p in ps if _is_sweep_folder(p)]
    runs = [p for p in ps if not _is_sweep_folder(p)]
    if runs:
        sweeps.append(_load_runs(runs))
    sweep = sweeps[0] if len(sweeps) == 1 else _merge(sweeps)
    if not sweep.ok:
        where = ", ".join(str(p) for p in ps)
        raise DesignError(
            f"{where}: the sweep has no finished points yet ({sweep.planned} planned, "
            f"{len(sweep.failed)} failed); run `insitu sweep` first"
        )
    return sweep


# --------------------------------------------------------------------------- grouping


def rule_key(rule: str) -> tuple[int, str]:
    return (RULE_ORDER.index(rule) if rule in RULE_ORDER else len(RULE_ORDER), rule)


def fmt_value(v: Any) -> str:
    if isinstance(v, list):
        return "-".join(fmt_value(x) for x in v)
    if isinstance(v, float):
        return f"{v:g}"
    if v is None:
        return "preset"
    return str(v)


def short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


@dataclass
class Group:
    """Points that differ only in learning.seed (one configuration of the swept axes)."""

    config: tuple[tuple[str, str], ...]
    label: str
    rule: str
    points: list[Point]

    def mean(self, fn: Callable[[Point], float | None]) -> float | None:
        vals = [v for v in (fn(p) for p in self.points) if v is not None]
        return statistics.fmean(vals) if vals else None


def _config(p: Point) -> tuple[tuple[str, str], ...]:
    return tuple((k, json.dumps(v, sort_keys=True)) for k, v in p.overrides.items() if k != SEED)


def groups(sweep: Sweep, points: Iterable[Point] | None = None) -> list[Group]:
    """Finished points grouped over seeds, ordered by rule, then as the sweep planned them."""
    by: dict[tuple[tuple[str, str], ...], list[Point]] = {}
    for p in sweep.ok if points is None else points:
        by.setdefault(_config(p), []).append(p)
    out: list[Group] = []
    for cfg, pts in by.items():
        rule = pts[0].rule
        if sweep.kind == "runs":
            label = ", ".join(p.name for p in pts)
        else:
            parts = [
                fmt_value(json.loads(v))
                if k in (RULE, SOURCE)
                else f"{short(k)}={fmt_value(json.loads(v))}"
                for k, v in cfg
            ]
            label = " · ".join(parts) or "base"
        out.append(Group(cfg, label, rule, pts))
    out.sort(key=lambda g: rule_key(g.rule))
    return out


def stats(values: Sequence[float]) -> tuple[float, float, float, float]:
    """mean, min, max, sample standard deviation (0 for one value)."""
    m = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return m, min(values), max(values), sd


# --------------------------------------------------------------------------- learning curves


@dataclass
class Curve:
    label: str
    rule: str
    seeds: int
    epochs: list[int]
    test: list[tuple[float, float, float]]  # mean, min, max per epoch
    train: list[tuple[float, float, float]]


def curves(sweep: Sweep) -> list[Curve]:
    out: list[Curve] = []
    for g in groups(sweep):
        per_epoch: dict[int, tuple[list[float], list[float]]] = {}
        n = 0
        for p in g.points:
            hist = (p.summary or {}).get("history") or []
            if hist:
                n += 1
            for h in hist:
                te, tr = per_epoch.setdefault(int(h["epoch"]), ([], []))
                if h.get("test_accuracy") is not None:
                    te.append(float(h["test_accuracy"]))
                if h.get("train_accuracy") is not None:
                    tr.append(float(h["train_accuracy"]))
        epochs = sorted(e for e, (te, _) in per_epoch.items() if te)
        if not epochs:
            continue

        def band(vals: list[float]) -> tuple[float, float, float]:
            if not vals:
                return (math.nan, math.nan, math.nan)
            m, lo, hi, _ = stats(vals)
            return (m, lo, hi)

        out.append(
            Curve(
                label=g.label,
                rule=g.rule,
                seeds=n,
                epochs=epochs,
                test=[band(per_epoch[e][0]) for e in epochs],
                train=[band(per_epoch[e][1]) for e in epochs],
            )
        )
    return out


# --------------------------------------------------------------------------- accuracy vs axes


@dataclass
class AxisLine:
    rule: str
    xs: list[float]
    mean: list[float]
    lo: list[float]
    hi: list[float]
    sd: list[float]
    n: list[int]


@dataclass
class AxisPanel:
    title: str  # the other axes' values held in this panel ('' for one panel)
    lines: list[AxisLine]


@dataclass
class AxisPlot:
    name: str  # field name, or 'width' / 'depth' (derived from network.layers)
    label: str
    log_x: bool
    panels: list[AxisPanel]
    note: str


def _variables(sweep: Sweep, points: Sequence[Point] | None = None) -> list[str]:
    """The varied things a figure can be drawn against: axes, with network.layers split."""
    ok = sweep.ok if points is None else points
    out: list[str] = []
    for a in sweep.axes:
        if a == "network.layers":
            out += [d for d in ("width", "depth") if len({p.value(d) for p in ok}) > 1]
        elif a != RULE and len({json.dumps(p.value(a), sort_keys=True) for p in ok}) > 1:
            out.append(a)
    return out


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _axis_lines(points: Sequence[Point], var: str) -> list[AxisLine]:
    """Per rule: mean, min, max, std and count of the test accuracy at each value of var."""
    lines: list[AxisLine] = []
    for rule in sorted({p.rule for p in points}, key=rule_key):
        by_x: dict[float, list[float]] = {}
        for p in points:
            if p.rule == rule and p.accuracy is not None:
                by_x.setdefault(float(p.value(var)), []).append(p.accuracy)
        xs = sorted(by_x)
        st = [stats(by_x[x]) for x in xs]
        lines.append(
            AxisLine(
                rule,
                xs,
                mean=[s[0] for s in st],
                lo=[s[1] for s in st],
                hi=[s[2] for s in st],
                sd=[s[3] for s in st],
                n=[len(by_x[x]) for x in xs],
            )
        )
    return lines


def accuracy_axes(sweep: Sweep) -> tuple[list[AxisPlot], dict[str, list[str]]]:
    """One plot per numeric swept axis; also the axes left out, by reason ('categorical': not
    numbers; 'confounded': it never changes on its own, within one rule, between the points).

    The other varied axes are held: one panel per combination of their values in which the
    axis varies (up to MAX_PANELS), else an average over them that the plot's note states.
    """
    ok = [p for p in sweep.ok if p.accuracy is not None]
    variables = _variables(sweep)
    plots: list[AxisPlot] = []
    skipped: dict[str, list[str]] = {"categorical": [], "confounded": []}
    for var in variables:
        values = [p.value(var) for p in ok]
        nums = sorted({float(v) for v in values if _is_number(v)})
        if len(nums) < 2:
            if var != SOURCE:
                skipped["categorical"].append(var)
            continue
        note = ""
        if any(not _is_number(v) for v in values):
            odd = sorted({fmt_value(v) for v in values if not _is_number(v)})
            note = f"Points with {var} = {odd} (not a number) are left out. "
        others = [v for v in variables if v != var]
        by_combo: dict[tuple[str, ...], list[Point]] = {}
        for p in ok:
            if _is_number(p.value(var)):
                key = tuple(json.dumps(p.value(o), sort_keys=True) for o in others)
                by_combo.setdefault(key, []).append(p)

        def varies(pts: Sequence[Point], var: str = var) -> bool:
            # a trend needs two values of the axis under one rule with the other axes held
            return any(
                len({p.value(var) for p in pts if p.rule == r}) > 1 for r in {p.rule for p in pts}
            )

        combos = sorted(by_combo)
        informative = [c for c in combos if varies(by_combo[c])]
        names = ", ".join(others)
        chosen: list[tuple[str, ...]] | None = None  # None: one panel of every point
        if len(combos) > 1 and informative and len(informative) <= MAX_PANELS:
            chosen = informative
            note += f"One panel per value of {names}."
            if len(informative) < len(combos):
                note += (
                    f" {len(combos) - len(informative)} combinations where {var} takes one "
                    "value only are left out."
                )
        elif len(combos) > 1 and informative:
            note += f"Averaged over {len(combos)} combinations of {names} (too many panels)."
        elif len(combos) > 1 and sweep.kind == "sweep":
            # a random sweep holds nothing fixed: an average is the only summary there is
            note += (
                f"Averaged over {len(combos)} combinations of {names}: no two points differ "
                f"in {var} alone, so the other axes' effects mix in."
            )
        elif len(combos) > 1:
            # runs compared after the fact: an average would credit the axis with the others'
            # effects, and nothing says it was meant to be compared
            skipped["confounded"].append(var)
            continue
        if chosen is None:
            panels = [AxisPanel("", _axis_lines([p for c in combos for p in by_combo[c]], var))]
        else:
            panels = [
                AxisPanel(
                    ", ".join(
                        f"{short(o)}={fmt_value(json.loads(v))}"
                        for o, v in zip(others, c, strict=True)
                    ),
                    _axis_lines(by_combo[c], var),
                )
                for c in chosen
            ]
        if not any(len(line.xs) > 1 for panel in panels for line in panel.lines):
            skipped["confounded"].append(var)
            continue
        log_x = nums[0] > 0 and nums[-1] / nums[0] >= 16 and "bits" not in var
        plots.append(AxisPlot(var, AXIS_LABELS.get(var, var), log_x, panels, note.strip()))
    return plots, skipped


# --------------------------------------------------------------------------- hardware


def energy_per_sample(p: Point) -> dict[str, float]:
    """Energy per training sample by component (J): the run's totals scaled to one sample."""
    e = (p.summary or {})["energy_j"]
    total = float(e.get("total") or 0.0)
    per = float(e.get("per_sample") or 0.0)
    scale = per / total if total > 0 else 0.0
    return {c: float(v) * scale for c, v in e.get("by_component", {}).items()}


def latency_per_sample(p: Point) -> dict[str, float]:
    lat = (p.summary or {})["latency_s"]["per_sample"]
    return {ph: float(lat.get(ph, 0.0)) for ph in (*PHASES, "total")}


@dataclass
class HardwareBar:
    label: str
    rule: str
    depth: int
    n: int  # points averaged
    energy: dict[str, float]  # J per sample by component
    area: dict[str, float]  # mm² by component
    latency: dict[str, float]  # s per sample by phase


def _mean_dicts(ds: Sequence[dict[str, float]]) -> dict[str, float]:
    keys: list[str] = []
    for d in ds:
        keys += [k for k in d if k not in keys]
    return {k: statistics.fmean(d.get(k, 0.0) for d in ds) for k in keys}


def hardware_bars(sweep: Sweep) -> tuple[list[HardwareBar], str]:
    """Mean cost per configuration of the co-simulated points (per rule and depth if many)."""
    cos = [p for p in sweep.ok if p.is_cosim]
    if not cos:
        return [], ""
    gs = groups(sweep, cos)
    note = ""
    if len(gs) > MAX_BARS:
        note = (
            f"{len(gs)} configurations: averaged per learning rule and depth N "
            f"(more than {MAX_BARS} bars)."
        )
        by: dict[tuple[int, str], list[Point]] = {}
        for p in cos:
            by.setdefault((p.depth, p.rule), []).append(p)
        sets = [(f"{r} · N={d}", r, d, pts) for (d, r), pts in by.items()]
    else:
        sets = [(g.label, g.rule, g.points[0].depth, g.points) for g in gs]
    bars = [
        HardwareBar(
            label=label,
            rule=rule,
            depth=depth,
            n=len(pts),
            energy=_mean_dicts([energy_per_sample(p) for p in pts]),
            area=_mean_dicts(
                [
                    {c: float(v) for c, v in (p.summary or {})["area_mm2"]["by_component"].items()}
                    for p in pts
                ]
            ),
            latency=_mean_dicts([latency_per_sample(p) for p in pts]),
        )
        for label, rule, depth, pts in sets
    ]
    bars.sort(key=lambda b: (b.depth, rule_key(b.rule)))
    return bars, note


@dataclass
class DepthRow:
    """Mean per-sample latency (s) of one rule at one depth N."""

    depth: int
    rule: str
    n: int
    forward: float
    backward: float
    update: float
    total: float

    @property
    def backward_update(self) -> float:
        return self.backward + self.update


def depth_rows(sweep: Sweep) -> tuple[list[DepthRow], str]:
    """Latency per rule and depth from the co-simulated points (averaged over other axes)."""
    cos = [p for p in sweep.ok if p.is_cosim]
    by: dict[tuple[int, str], list[Point]] = {}
    for p in cos:
        by.setdefault((p.depth, p.rule), []).append(p)
    rows = []
    for (d, r), pts in sorted(by.items(), key=lambda kv: (kv[0][0], rule_key(kv[0][1]))):
        lat = _mean_dicts([latency_per_sample(p) for p in pts])
        rows.append(
            DepthRow(d, r, len(pts), lat["forward"], lat["backward"], lat["update"], lat["total"])
        )
    others = [v for v in _variables(sweep, cos) if v != "depth"]
    note = f"Averaged over {', '.join(others)} and seeds." if others else ""
    return rows, note


def speedups(rows: Sequence[DepthRow]) -> list[tuple[int, float, float]]:
    """(N, BP/DFA backward+update latency, BP/DFA whole-step latency) where both were run."""
    by = {(r.depth, r.rule): r for r in rows}
    out = []
    for d in sorted({r.depth for r in rows}):
        bp, dfa = by.get((d, "bp")), by.get((d, "dfa"))
        if bp and dfa and dfa.backward_update > 0 and dfa.total > 0:
            out.append((d, bp.backward_update / dfa.backward_update, bp.total / dfa.total))
    return out


# --------------------------------------------------------------------------- Pareto


@dataclass
class ParetoPoint:
    label: str
    rule: str
    accuracy: float
    cost: float
    front: bool


def front(pairs: Sequence[tuple[float, float]]) -> list[bool]:
    """Non-dominated flags (accuracy up, cost down): a point is dominated when another is at
    least as good in both and better in one."""
    out = []
    for i, (a, c) in enumerate(pairs):
        dominated = any(
            a2 >= a and c2 <= c and (a2 > a or c2 < c) for j, (a2, c2) in enumerate(pairs) if j != i
        )
        out.append(not dominated)
    return out


def pareto(
    sweep: Sweep, cost: Callable[[Point], float | None], points: Iterable[Point] | None = None
) -> list[ParetoPoint]:
    """Per configuration (mean over seeds) accuracy and cost, each marked on the front or not."""
    items: list[tuple[str, str, float, float]] = []
    for g in groups(sweep, points):
        acc = g.mean(lambda p: p.accuracy)
        c = g.mean(cost)
        if acc is not None and c is not None:
            items.append((g.label, g.rule, acc, c))
    on = front([(a, c) for _, _, a, c in items])
    return [ParetoPoint(lab, r, a, c, f) for (lab, r, a, c), f in zip(items, on, strict=True)]


def cosim_energy(p: Point) -> float | None:
    return float((p.summary or {})["energy_j"]["per_sample"]) if p.is_cosim else None


def cosim_latency(p: Point) -> float | None:
    return latency_per_sample(p)["total"] if p.is_cosim else None


def host_seconds(p: Point) -> float | None:
    return p.host_seconds


def write_report(paths: Sequence[str | Path], out: str | Path | None = None) -> Path:
    """Write the HTML report of *paths* (see :func:`.report_cli.build_report`); returns the
    page's path (default: ``DIR/report.html`` for one folder)."""
    from .report_cli import build_report  # the page imports this module: import it late

    return build_report(paths, out).html
