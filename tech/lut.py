"""Read the analog lookup tables that ``insitu analog characterize`` writes (npz + JSON).

A LUT folder holds ``lut.json`` (every table's named axes with units and coordinates, the
table's unit and meaning, and the provenance of the run) and ``tables.npz`` (the values). This
reader lives in ``tech`` because every layer reads it: ``algo`` turns the column-transfer and
ADC tables into the integer ADC table of the numerics contract, the energy model reads the
costs; none of them may import ``analog`` (which needs ngspice).

    >>> lut = Lut.open("runs/analog")                          # doctest: +SKIP
    >>> lut.table("adc_energy").interp(corner="tt", temperature=40.0, sample=0)  # doctest: +SKIP
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "insitu-lut/1"


class LutError(ValueError):
    """A LUT folder or query that cannot be used; the message names the file, table or axis."""


@dataclass(frozen=True)
class Axis:
    name: str
    unit: str
    values: tuple[Any, ...]

    @property
    def numeric(self) -> bool:
        return all(isinstance(v, int | float) and not isinstance(v, bool) for v in self.values)


@dataclass(frozen=True)
class Table:
    name: str
    unit: str
    description: str
    axes: tuple[Axis, ...]
    values: np.ndarray

    def axis(self, name: str) -> Axis:
        for a in self.axes:
            if a.name == name:
                return a
        raise LutError(
            f"table {self.name}: no axis {name!r}; axes: {', '.join(a.name for a in self.axes)}"
        )

    def interp(self, **coords: Any) -> np.ndarray:
        """Values at the given coordinates: exact match on a categorical axis, linear
        interpolation (clamped to the end points) on a numeric one; other axes stay."""
        out = self.values
        axes = list(self.axes)
        for key, want in coords.items():
            ax = self.axis(key)
            pos = axes.index(ax)
            if not ax.numeric:
                if want not in ax.values:
                    raise LutError(
                        f"table {self.name}: {key} = {want!r} is not in the LUT; "
                        f"allowed: {', '.join(map(str, ax.values))}"
                    )
                out = np.take(out, ax.values.index(want), axis=pos)
            else:
                xs = np.asarray(ax.values, dtype=np.float64)
                x = float(want)
                if len(xs) == 1:
                    out = np.take(out, 0, axis=pos)
                else:
                    j = int(np.clip(np.searchsorted(xs, x) - 1, 0, len(xs) - 2))
                    w = float(np.clip((x - xs[j]) / (xs[j + 1] - xs[j]), 0.0, 1.0))
                    out = (1 - w) * np.take(out, j, axis=pos) + w * np.take(out, j + 1, axis=pos)
            axes.pop(pos)
        return np.asarray(out)


class Lut:
    """An opened LUT folder."""

    def __init__(self, folder: Path, manifest: dict[str, Any], arrays: dict[str, np.ndarray]):
        self.folder = folder
        self.manifest = manifest
        self._arrays = arrays

    @classmethod
    def open(cls, folder: str | Path) -> Lut:
        folder = Path(folder)
        if folder.is_file() and folder.name == "lut.json":
            folder = folder.parent
        man_path, npz_path = folder / "lut.json", folder / "tables.npz"
        try:
            manifest = json.loads(man_path.read_text(encoding="utf-8"))
            with np.load(npz_path) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError) as exc:
            raise LutError(f"LUT {folder}: cannot read lut.json/tables.npz ({exc})") from None
        if manifest.get("format") != FORMAT:
            raise LutError(f"LUT {folder}: format {manifest.get('format')!r}, expected {FORMAT}")
        return cls(folder, manifest, arrays)

    @property
    def provenance(self) -> dict[str, Any]:
        return dict(self.manifest.get("provenance", {}))

    @property
    def names(self) -> list[str]:
        return sorted(self.manifest["tables"])

    def table(self, name: str) -> Table:
        spec = self.manifest["tables"].get(name)
        if spec is None or name not in self._arrays:
            raise LutError(f"LUT {self.folder}: no table {name!r}; tables: {', '.join(self.names)}")
        axes = tuple(Axis(a["name"], a["unit"], tuple(a["values"])) for a in spec["axes"])
        values = self._arrays[name]
        if values.shape != tuple(len(a.values) for a in axes):
            raise LutError(f"LUT {self.folder}: table {name} shape does not match its axes")
        return Table(name, spec["unit"], spec.get("description", ""), axes, values)


def adc_table_from_lut(
    folder: str | Path, bits: int, corner: str = "tt", temperature: float = 27.0
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Integer ADC table (thresholds on the ideal partial sum S, levels) of the numerics
    contract, from the LUT's column transfer and nominal ADC thresholds at corner/temperature.

    Threshold i is the smallest integer S whose mean effective column sum reaches the ADC's
    measured threshold i (in partial-sum units); levels are the ideal reconstruction values
    ``round(c * M / (L - 1))`` of the ADC's range M. A missing code (two thresholds on one
    integer) is kept one sum wide, so the table stays strictly increasing.
    """
    lut = Lut.open(folder)
    prov = lut.provenance
    if int(prov.get("adc_bits", -1)) != bits:
        raise LutError(
            f"LUT {lut.folder}: characterized for a {prov.get('adc_bits')}-bit ADC, "
            f"array.adc_bits={bits}"
        )
    m = int(prov["adc_range"])
    n = 2**bits
    thr = lut.table("adc_thresholds_sum").interp(corner=corner, temperature=temperature, sample=0)
    col = lut.table("column_transfer_mean").interp(corner=corner, temperature=temperature)
    col = np.maximum.accumulate(np.asarray(col, dtype=np.float64))
    out: list[int] = []
    for t in thr:
        s = int(np.searchsorted(col, t, side="left")) if np.isfinite(t) else len(col)
        if out and s <= out[-1]:
            s = out[-1] + 1
        out.append(s)
    levels = tuple((2 * c * m + (n - 1)) // (2 * (n - 1)) for c in range(n))
    return tuple(out), levels
