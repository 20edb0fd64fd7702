"""Sweep files: the schema of ``insitu sweep SWEEP`` and its expansion into design points.

A sweep file is YAML data (safe loader, nothing executed). It names a base design point
(preset or file), fixed overrides (``set``), the axes (field -> list of values, or a range for
random sampling), how the axes combine (``grid``: their product; ``random``: ``samples`` draws;
``list``: explicit ``points``) and the seeds every point is repeated over. Every point is
resolved and validated before anything runs, so a bad value stops the sweep with one message
naming the point, the field and what is allowed, and nothing is written.

Each point's key is the hash of its resolved design point (plus the command and its options):
two sweeps that share a point share its result, and a re-run finds finished points by key.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .config import DesignError, DesignPoint, apply_overrides, resolve_source, validate

__all__ = ["Point", "Range", "SweepSpec", "load_sweep", "point_key"]

# Fields that locate things rather than define the experiment: left out of a point's key so a
# moved data folder or a renamed preset does not re-run finished points.
_KEY_EXCLUDED = (("network", "data_dir"), ("name",))


class Range(BaseModel):
    """A numeric range for ``method: random``: uniform, or log-uniform, optionally integer."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    low: float
    high: float
    log: bool = False
    integer: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if not self.low < self.high:
            raise ValueError(f"low = {self.low} must be below high = {self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"log = true needs low > 0, got low = {self.low}")
        return self

    def draw(self, rng: random.Random) -> float | int:
        if self.log:
            v = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        else:
            v = rng.uniform(self.low, self.high)
        return round(v) if self.integer else v


class CosimOptions(BaseModel):
    """Options of ``command: cosim`` points (as ``insitu cosim`` takes them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    rtl_every: int = Field(1, ge=1)
    engine: Literal["verilator", "amaranth"] = "verilator"
    fast_build: bool = False
    weight_check_every: int = Field(50, ge=1)


class SweepSpec(BaseModel):
    """One sweep file."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str | None = None
    description: str = ""
    base: str = "digits"
    command: Literal["train", "cosim"] = "train"
    set: dict[str, Any] = Field(default_factory=dict)
    axes: dict[str, list[Any] | Range] = Field(default_factory=dict)
    method: Literal["grid", "random", "list"] = "grid"
    samples: int | None = Field(None, ge=1)
    random_seed: int = 0
    points: list[dict[str, Any]] = Field(default_factory=list)
    seeds: list[int] = Field(default_factory=list)
    cosim: CosimOptions = Field(default_factory=CosimOptions)  # type: ignore[arg-type]

    @field_validator("axes")
    @classmethod
    def _non_empty(cls, axes: dict[str, Any]) -> dict[str, Any]:
        for name, values in axes.items():
            if isinstance(values, list) and not values:
                raise ValueError(f"axis {name!r} has no values")
        return axes

    @model_validator(mode="after")
    def _consistent(self) -> SweepSpec:
        ranges = [k for k, v in self.axes.items() if isinstance(v, Range)]
        if self.method == "grid" and ranges:
            raise ValueError(
                f"axes {ranges} are ranges: only method = 'random' samples ranges; "
                "give a grid a list of values"
            )
        if self.method == "random" and self.samples is None:
            raise ValueError("method = 'random' needs samples = <number of points>")
        if self.method != "random" and self.samples is not None:
            raise ValueError(f"samples = {self.samples} is only allowed with method = 'random'")
        if self.method == "list":
            if not self.points:
                raise ValueError("method = 'list' needs points = [ {field: value, ...}, ... ]")
            if self.axes:
                raise ValueError("method = 'list' takes points, not axes")
        elif self.points:
            raise ValueError(
                f"points are only allowed with method = 'list' (method = {self.method!r})"
            )
        if "learning.seed" in self.axes and self.seeds:
            raise ValueError(
                "give the seeds either as seeds or as the axis learning.seed, not both"
            )
        return self


@dataclass(frozen=True)
class Point:
    """One resolved point of a sweep."""

    index: int
    key: str
    overrides: dict[str, Any]  # the axis values (and seed) that make this point
    design: DesignPoint = field(compare=False, repr=False)

    def label(self) -> str:
        return ", ".join(f"{k}={_fmt(v)}" for k, v in self.overrides.items()) or "base"


def _fmt(v: Any) -> str:
    return json.dumps(v) if not isinstance(v, str) else v


def point_key(dp: DesignPoint, command: str, options: dict[str, Any]) -> str:
    """The hash that identifies a point's result: its resolved design, command and options."""
    data = dp.dump()
    for path in _KEY_EXCLUDED:
        node = data
        for part in path[:-1]:
            node = node.get(part, {})
        node.pop(path[-1], None)
    blob = json.dumps({"design": data, "command": command, "options": options}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _combinations(spec: SweepSpec) -> list[dict[str, Any]]:
    if spec.method == "list":
        return [dict(p) for p in spec.points]
    names = list(spec.axes)
    if spec.method == "grid":
        lists = [spec.axes[n] for n in names]
        return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*lists)]
    rng = random.Random(spec.random_seed)
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    assert spec.samples is not None
    # a finite grid can hold fewer distinct points than asked for: stop after many repeats
    attempts = 0
    while len(out) < spec.samples and attempts < 100 * spec.samples:
        attempts += 1
        combo = {}
        for n in names:
            ax = spec.axes[n]
            combo[n] = ax.draw(rng) if isinstance(ax, Range) else rng.choice(ax)
        tag = json.dumps(combo, sort_keys=True)
        if tag not in seen:
            seen.add(tag)
            out.append(combo)
    return out


def _as_set(field_name: str, value: Any) -> str:
    return f"{field_name}={json.dumps(value)}"


def expand(
    spec: SweepSpec, base_dir: Path | None = None, extra_sets: list[str] | None = None
) -> list[Point]:
    """Every point of the sweep, resolved and validated (DesignError names the bad one)."""
    base_path = Path(spec.base)
    if base_dir is not None and not base_path.is_absolute() and (base_dir / base_path).exists():
        base_path = base_dir / base_path
    base = resolve_source(str(base_path) if base_path.exists() else spec.base)
    fixed = [_as_set(k, v) for k, v in spec.set.items()] + list(extra_sets or [])
    if spec.command == "cosim" and not any(x.startswith("learning.mode=") for x in fixed):
        # as ``insitu cosim``: the chip computes the integer contract
        fixed.insert(0, "learning.mode=hardware")
    seeds: list[int | None] = list(spec.seeds) or [None]
    options = spec.cosim.model_dump() if spec.command == "cosim" else {}
    points: list[Point] = []
    seen: dict[str, int] = {}
    for combo in _combinations(spec):
        for seed in seeds:
            over = dict(combo)
            if seed is not None:
                over["learning.seed"] = seed
            sets = fixed + [_as_set(k, v) for k, v in over.items()]
            try:
                dp = validate(apply_overrides(base, sets))
            except DesignError as exc:
                label = ", ".join(f"{k}={_fmt(v)}" for k, v in over.items()) or "base"
                raise DesignError(f"sweep point {len(points) + 1} ({label}): {exc}") from None
            key = point_key(dp, spec.command, options)
            if key in seen:
                continue  # two spellings of one design point run once
            seen[key] = len(points)
            points.append(Point(len(points), key, over, dp))
    if not points:
        raise DesignError("the sweep has no points")
    return points


def _flatten_set(raw: Any) -> Any:
    """``set`` may be a nested mapping of sections or dotted keys; both become dotted keys."""
    if not isinstance(raw, dict):
        return raw
    flat: dict[str, Any] = {}

    def walk(prefix: str, node: dict[str, Any]) -> None:
        for k, v in node.items():
            name = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, dict) and "." not in str(k) and prefix == "":
                walk(name, v)
            else:
                flat[name] = v

    walk("", raw)
    return flat


def _format(exc: ValidationError, path: Path) -> str:
    lines = []
    for e in exc.errors():
        loc = ".".join(str(p) for p in e["loc"])
        got = e.get("input")
        shown = "" if isinstance(got, dict) else f" = {got!r}"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown field; allowed: " + ", ".join(SweepSpec.model_fields)
        lines.append(f"{loc or 'sweep'}{shown}: {msg}")
    return f"sweep file {path}: " + "; ".join(lines)


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and validate a sweep file (YAML)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DesignError(f"cannot read sweep file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise DesignError(f"sweep file {path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise DesignError(f"sweep file {path}: top level must be a mapping (base, set, axes, ...)")
    raw = dict(raw)
    if "set" in raw:
        raw["set"] = _flatten_set(raw["set"])
    try:
        spec = SweepSpec.model_validate(raw)
    except ValidationError as exc:
        raise DesignError(_format(exc, path)) from None
    if spec.name is None:
        spec = spec.model_copy(update={"name": path.stem})
    return spec
