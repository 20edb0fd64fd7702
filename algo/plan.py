"""The integer plan: every number the chip's arithmetic needs, derived once from a design point.

A plan fixes, per layer, the power-of-two scales (weight fraction bits, activation/output shift,
delta shift, gradient shift) and the ADC table. The torch hardware path, the numpy golden model
and the RTL all consume the same plan, so none of them can drift (docs/numerics.md).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from insitu.config import DesignPoint

from .lfsr import feedback_matrix


class PlanError(ValueError):
    """A plan or ADC table that cannot be used; the message names the file or field."""


@dataclass(frozen=True)
class AdcTable:
    """Sorted integer thresholds and integer reconstruction levels of one ADC.

    ``code = #{i : thresholds[i] <= S}``; the converter returns ``levels[code]``.
    """

    thresholds: tuple[int, ...]
    levels: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.levels) != len(self.thresholds) + 1:
            raise PlanError(
                f"ADC table: {len(self.levels)} levels need {len(self.levels) - 1} thresholds, "
                f"got {len(self.thresholds)}"
            )
        if any(b <= a for a, b in zip(self.thresholds, self.thresholds[1:], strict=False)):
            raise PlanError("ADC table: thresholds must be strictly increasing integers")

    def lookup(self, max_sum: int) -> np.ndarray:
        """``levels[code(S)]`` for every S in 0..max_sum (int64)."""
        s = np.arange(max_sum + 1, dtype=np.int64)
        codes = np.searchsorted(np.asarray(self.thresholds, dtype=np.int64), s, side="right")
        return np.asarray(self.levels, dtype=np.int64)[codes]


def uniform_adc(bits: int, full_range: int) -> AdcTable:
    """Uniform ADC over 0..full_range (M) with L = 2**bits codes.

    ``code(S) = min(floor((2(L-1)S + M) / 2M), L-1)`` (S(L-1)/M rounded half up) and
    ``level(c) = floor((2cM + L-1) / 2(L-1))`` (cM/(L-1) rounded half up); the thresholds are
    the smallest S of each code, ``ceil((2i-1)M / 2(L-1))``. When M <= L-1 the ADC is exact up
    to its top code and clips above it.
    """
    n = 2**bits
    if full_range < 1:
        raise PlanError(f"ADC range must be >= 1, got {full_range}")
    if full_range <= n - 1:
        return AdcTable(tuple(range(1, n)), tuple(range(n)))
    m, d = full_range, 2 * (n - 1)
    levels = tuple((2 * c * m + (n - 1)) // d for c in range(n))
    thresholds = tuple(-((-(2 * i - 1) * m) // d) for i in range(1, n))
    return AdcTable(thresholds, levels)


def uniform_parameters(table: AdcTable) -> tuple[int, int] | None:
    """(bits, M) when ``table`` is exactly ``uniform_adc(bits, M)`` with M > L-1, else None."""
    n = len(table.levels)
    m = table.levels[-1]
    if n < 2 or n & (n - 1) or m <= n - 1:
        return None
    bits = n.bit_length() - 1
    return (bits, m) if uniform_adc(bits, m) == table else None


def adc_from_file(
    path: str | Path, bits: int, corner: str = "tt", temperature: float = 27.0
) -> AdcTable:
    """Read ``{"thresholds": [...], "levels": [...]}`` (integers) written by analog/ or a user,
    or derive them from an analog LUT folder (its column transfer and ADC thresholds at the
    design point's corner and temperature; ``insitu.tech.lut.adc_table_from_lut``)."""
    p = Path(path)
    if p.is_dir() or p.name == "lut.json":
        from insitu.tech.lut import LutError, adc_table_from_lut

        try:
            return AdcTable(*adc_table_from_lut(p, bits, corner, temperature))
        except (LutError, KeyError, ValueError) as exc:
            raise PlanError(f"ADC LUT {p}: {exc}") from None
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
        table = AdcTable(
            tuple(int(t) for t in data["thresholds"]), tuple(int(v) for v in data["levels"])
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PlanError(f"ADC table {p}: {exc}") from None
    if len(table.levels) != 2**bits:
        raise PlanError(
            f"ADC table {p}: has {len(table.levels)} levels, array.adc_bits={bits} needs {2**bits}"
        )
    return table


@dataclass(frozen=True)
class LayerPlan:
    fan_in: int
    fan_out: int
    w_frac: int  # real weight = W / 2**w_frac
    out_shift: int  # hidden: h = sat(rshift(relu(y), out_shift)); output: o = sat(rshift(y, .))
    delta_shift: int  # delta = sat(rshift(feedback product, delta_shift)); unused for output
    grad_shift: int  # dW = sat(round(a^T delta, grad_shift))
    adc: AdcTable


@dataclass(frozen=True)
class IntegerPlan:
    rule: str
    activation_bits: int
    weight_bits: int
    error_bits: int
    gradient_bits: int
    rows: int
    cell_bits: int
    encoding: str
    rounding: str
    lfsr_seed: int
    hash_seed: int
    error: str = "margin"
    layers: tuple[LayerPlan, ...] = field(default_factory=tuple)

    @property
    def a_max(self) -> int:
        return 2**self.activation_bits - 1

    @property
    def w_max(self) -> int:
        return 2 ** (self.weight_bits - 1) - 1

    @property
    def e_max(self) -> int:
        return 2 ** (self.error_bits - 1) - 1

    @property
    def g_max(self) -> int:
        return 2 ** (self.gradient_bits - 1) - 1

    @property
    def target(self) -> int:
        """The integer that stands for 1.0 in outputs and errors."""
        return 2 ** (self.error_bits - 2)

    @property
    def num_slices(self) -> int:
        return self.weight_bits // self.cell_bits

    @property
    def max_partial_sum(self) -> int:
        return self.rows * (2**self.cell_bits - 1)

    def feedback(self, i: int) -> np.ndarray:
        """The +-1 feedback matrix of hidden layer i (DFA: classes x width; FA: next x width)."""
        widths = [lp.fan_in for lp in self.layers] + [self.layers[-1].fan_out]
        src = widths[-1] if self.rule == "dfa" else widths[i + 2]
        return feedback_matrix(self.lfsr_seed, i, src, widths[i + 1])

    def with_adc(self, tables: list[AdcTable]) -> IntegerPlan:
        return replace(
            self,
            layers=tuple(replace(lp, adc=t) for lp, t in zip(self.layers, tables, strict=True)),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IntegerPlan:
        layers = tuple(
            LayerPlan(
                **{
                    **lp,
                    "adc": AdcTable(tuple(lp["adc"]["thresholds"]), tuple(lp["adc"]["levels"])),
                }
            )
            for lp in d["layers"]
        )
        return cls(**{**d, "layers": layers})


def _ceil_log2(x: float) -> int:
    return math.ceil(math.log2(x))


def weight_range_exponent(fan_in: int) -> int:
    """Real weights span +-2**omega, with omega covering 4 standard deviations of He init."""
    return _ceil_log2(4.0 * math.sqrt(2.0 / fan_in))


def make_plan(dp: DesignPoint, adc_ranges: list[int] | None = None) -> IntegerPlan:
    """Derive the integer plan of a design point (ADC ranges: calibrated values or full scale)."""
    p, a, lr = dp.precision, dp.array, dp.learning
    widths = dp.network.layers
    n_layers = len(widths) - 1
    A, E = p.activation_bits, p.error_bits
    full = a.rows * (2**a.cell_bits - 1)
    lr_log2 = round(math.log2(lr.hardware_lr))
    batch_log2 = round(math.log2(lr.batch_size))
    w_fracs = [p.weight_bits - 1 - weight_range_exponent(widths[i]) for i in range(n_layers)]
    # Real scale of the deltas of each layer (fraction bits), from the output backwards.
    d_frac = [0] * n_layers
    d_frac[-1] = E - 2
    delta_shift = [0] * n_layers
    for i in range(n_layers - 2, -1, -1):
        if lr.rule == "bp":
            delta_shift[i] = w_fracs[i + 1]
            d_frac[i] = d_frac[i + 1]
        else:
            # +-1 feedback entries stand for +-2**-shift, the scale of a 1/sqrt(n) init.
            src = widths[-1] if lr.rule == "dfa" else widths[i + 2]
            delta_shift[i] = max(0, round(math.log2(math.sqrt(src))))
            d_frac[i] = (E - 2) if lr.rule == "dfa" else d_frac[i + 1]
    layers = []
    for i in range(n_layers):
        rng = adc_ranges[i] if adc_ranges is not None else full
        if a.adc_model == "table" and a.adc_table:
            adc = adc_from_file(a.adc_table, a.adc_bits, dp.tech.corner, dp.tech.temperature_c)
        else:
            adc = uniform_adc(a.adc_bits, max(1, min(rng, full)))
        out_shift = w_fracs[i] if i < n_layers - 1 else A + w_fracs[i] - (E - 2)
        grad_shift = batch_log2 - lr_log2 + A + d_frac[i] - w_fracs[i]
        layers.append(
            LayerPlan(
                fan_in=widths[i],
                fan_out=widths[i + 1],
                w_frac=w_fracs[i],
                out_shift=out_shift,
                delta_shift=delta_shift[i],
                grad_shift=grad_shift,
                adc=adc,
            )
        )
    return IntegerPlan(
        rule=lr.rule,
        activation_bits=A,
        weight_bits=p.weight_bits,
        error_bits=E,
        gradient_bits=p.gradient_bits,
        rows=a.rows,
        cell_bits=a.cell_bits,
        encoding=a.weight_encoding,
        rounding=p.rounding,
        lfsr_seed=dp.chip.lfsr_seed,
        hash_seed=lr.seed,
        error=lr.error,
        layers=tuple(layers),
    )


def quantize_inputs(x: np.ndarray, bits: int) -> np.ndarray:
    """Pixels in [0, 1] to ``bits``-bit integers: min(floor(x * 2**bits + 1/2), 2**bits - 1)."""
    q = np.floor(np.asarray(x, dtype=np.float64) * 2**bits + 0.5)
    return np.clip(q, 0, 2**bits - 1).astype(np.int64)
