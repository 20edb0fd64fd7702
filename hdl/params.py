"""Hardware parameters of the generated chip, derived once from a design point and its plan.

Like Gemmini's configs, one immutable object carries every number the RTL is elaborated from
(array geometry, bit widths, ADC tables, shifts, floorplan) plus the values derived from them,
and the same object is written into ``manifest.json`` so that software reading the chip cannot
drift from the hardware. ``hdl`` must not import ``algo`` (DESIGN.md, layers), so the integer
plan arrives as the plain dict of ``IntegerPlan.to_dict()``; the CLI builds it.

Physical layout of one subarray (docs/hdl.md): ``rows`` word lines; each row holds
``weights_per_row`` weights, weight ``j`` occupying physical columns
``(j * polarities + pol) * slices + s`` (polarity 0 = positive/offset array, slice 0 = LSBs),
so a row is one memory word of ``cols * cell_bits`` bits.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from insitu.config import DesignPoint

#: Widest runtime gradient shift the update unit supports (register width 6 bits).
MAX_GRAD_SHIFT = 63


class HardwareError(ValueError):
    """A design point the RTL generator cannot build; the message names field, value, allowed."""


def bits_for(value: int) -> int:
    """Unsigned bits needed to hold 0..value (at least 1)."""
    return max(1, int(value).bit_length())


@dataclass(frozen=True)
class LayerHW:
    """One weight layer (fan_in x fan_out) mapped onto a grid of subarrays."""

    index: int
    fan_in: int
    fan_out: int
    row_blocks: int  # subarrays stacked along the inputs (rows); the last may be partly unused
    col_blocks: int  # subarrays side by side along the outputs
    out_shift: int
    delta_shift: int
    grad_shift: int
    w_frac: int
    thresholds: tuple[int, ...]
    levels: tuple[int, ...]
    feedback_seed: int  # LFSR seed of this layer's B (DFA) or F (FA) matrix; 0 if unused
    feedback_source: int  # rows of the feedback matrix: classes (DFA) or next width (FA)
    first_tile: int  # floorplan: index of the first tile holding this layer
    tiles: int
    tile_col_blocks: int  # column blocks per tile (1 when a column spans several tiles)
    tile_row_blocks: int  # row blocks per tile: all of them, or a chain's share of a column

    @property
    def subarrays(self) -> int:
        return self.row_blocks * self.col_blocks

    @property
    def tile_chain(self) -> int:
        """Tiles one column block spans (its partial sums pass from tile to tile)."""
        return -(-self.row_blocks // self.tile_row_blocks)

    @property
    def tile_groups(self) -> int:
        """Groups of column blocks, one chain of tiles each."""
        return -(-self.col_blocks // self.tile_col_blocks)

    def tile_index(self, group: int, link: int) -> int:
        """Chip-wide index (H-tree leaf) of link ``link`` of column group ``group``."""
        return self.first_tile + group * self.tile_chain + link


@dataclass(frozen=True)
class ChipParams:
    """Everything the RTL is elaborated from. Build it with :meth:`from_design`."""

    name: str
    rule: str  # bp | fa | dfa
    widths: tuple[int, ...]
    activation_bits: int
    weight_bits: int
    error_bits: int
    gradient_bits: int
    cell_bits: int
    encoding: str  # differential | offset-binary
    rows: int
    cols: int
    cols_per_adc: int
    adc_bits: int
    rounding: str  # nearest | stochastic
    error: str  # margin | squared
    hash_seed: int
    batch: int  # samples the batch buffers hold
    feedback_lanes: int  # B bits consumed per cycle by each feedback engine
    feedback_storage: str  # lfsr (B regenerated) | stored (B in a memory); FA and DFA only
    wgu: str  # per-layer | shared
    wgu_row_blocks: int  # row blocks a WGU updates at once (its lanes: this x weights_per_row)
    pes_per_tile: int
    subarrays_per_pe: int
    tiles: int
    clock_mhz: float
    layers: tuple[LayerHW, ...]

    # ----------------------------------------------------------------- derived values
    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def classes(self) -> int:
        return self.widths[-1]

    @property
    def polarities(self) -> int:
        return 2 if self.encoding == "differential" else 1

    @property
    def slices(self) -> int:
        return self.weight_bits // self.cell_bits

    @property
    def weights_per_row(self) -> int:
        return self.cols // (self.polarities * self.slices)

    @property
    def used_cols(self) -> int:
        """Physical columns holding cells (cols may leave a few unused at the right)."""
        return self.weights_per_row * self.polarities * self.slices

    @property
    def adcs_per_subarray(self) -> int:
        return math.ceil(self.used_cols / self.cols_per_adc)

    @property
    def conversions_per_adc(self) -> int:
        """Conversions each ADC makes per matrix-vector product: every plane of its columns."""
        return self.activation_bits * self.cols_per_adc

    @property
    def column_sum_bits(self) -> int:
        return bits_for(self.rows * (2**self.cell_bits - 1))

    @property
    def level_bits(self) -> int:
        top = max(max(lay.levels) for lay in self.layers)
        return max(self.column_sum_bits, bits_for(top))

    @property
    def threshold_bits(self) -> int:
        top = max(max(lay.thresholds, default=0) for lay in self.layers)
        return max(self.column_sum_bits + 1, bits_for(top))

    @property
    def subarray_y_max(self) -> int:
        """Largest |y| of a subarray column group: every ADC level at its register's maximum,
        shifted and added over planes and slices (one polarity's sum; the other subtracts)."""
        level_max = 2**self.level_bits - 1
        planes = 2**self.activation_bits - 1
        return level_max * planes * sum(2 ** (self.cell_bits * s) for s in range(self.slices))

    @property
    def subarray_y_bits(self) -> int:
        """Signed width of a subarray's ``y`` outputs: holds +-subarray_y_max exactly."""
        return bits_for(self.subarray_y_max) + 1

    def layer_y_bits(self, lay: LayerHW) -> int:
        """Signed width of a layer's outputs before requantization: the row blocks' sum and,
        for offset-binary, the removed ``2^(Wb-1) x sum(a)`` over every row the layer reads."""
        bound = lay.row_blocks * self.subarray_y_max
        if self.encoding == "offset-binary":
            a_max = 2**self.activation_bits - 1
            bound += lay.row_blocks * self.rows * a_max * 2 ** (self.weight_bits - 1)
        return bits_for(bound) + 1

    @property
    def input_sum_bits(self) -> int:
        """Width of the sum of a layer's inputs over its rows (offset-binary removes
        ``2^(Wb-1)`` times it)."""
        top = max(lay.row_blocks for lay in self.layers) * self.rows
        return self.activation_bits + bits_for(top) + 1

    @property
    def adc_levels(self) -> int:
        return 2**self.adc_bits

    @property
    def total_subarrays(self) -> int:
        return sum(lay.subarrays for lay in self.layers)

    @property
    def htree_depth(self) -> int:
        return max(1, math.ceil(math.log2(max(1, self.tiles))))

    @property
    def target(self) -> int:
        return 2 ** (self.error_bits - 2)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["derived"] = {
            k: getattr(self, k)
            for k in (
                "polarities",
                "slices",
                "weights_per_row",
                "adcs_per_subarray",
                "conversions_per_adc",
                "column_sum_bits",
                "level_bits",
                "threshold_bits",
                "total_subarrays",
                "htree_depth",
            )
        }
        return d

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_design(
        cls,
        dp: DesignPoint,
        plan: dict[str, Any],
        *,
        batch: int | None = None,
    ) -> ChipParams:
        """Map a design point and its integer plan (``IntegerPlan.to_dict()``) onto hardware."""
        a, p, c = dp.array, dp.precision, dp.chip
        rule = plan["rule"]
        if rule not in ("bp", "fa", "dfa"):
            raise HardwareError(f"learning.rule = {rule!r}: the RTL implements bp, fa and dfa")
        pols = 2 if a.weight_encoding == "differential" else 1
        slices = p.weight_bits // a.cell_bits
        if a.cols < pols * slices:
            raise HardwareError(
                f"array.cols = {a.cols} is too small: one {p.weight_bits}-bit weight in "
                f"{a.cell_bits}-bit cells ({a.weight_encoding}) needs {pols * slices} columns"
            )
        batch = dp.learning.batch_size if batch is None else batch
        if not 1 <= batch <= 4096:
            raise HardwareError(f"batch = {batch} is not allowed: must be 1..4096 samples")
        wgu_mode = ("per-layer" if rule == "dfa" else "shared") if c.wgu == "auto" else c.wgu
        lanes = c.feedback_lanes
        widths = (*[lp["fan_in"] for lp in plan["layers"]], plan["layers"][-1]["fan_out"])
        nw = a.cols // (pols * slices)
        per_tile = c.pes_per_tile * c.subarrays_per_pe
        layers: list[LayerHW] = []
        tile = 0
        for i, lp in enumerate(plan["layers"]):
            rb = math.ceil(lp["fan_in"] / a.rows)
            cb = math.ceil(lp["fan_out"] / nw)
            tile_cb, tile_rb = floorplan(rb, c.subarrays_per_pe, c.pes_per_tile)
            n_tiles = math.ceil(cb / tile_cb) * math.ceil(rb / tile_rb)
            if not 0 <= lp["grad_shift"] <= MAX_GRAD_SHIFT:
                raise HardwareError(
                    f"layer {i} gradient shift {lp['grad_shift']} is not supported: must be "
                    f"0..{MAX_GRAD_SHIFT} (raise learning.batch_size or lower "
                    "learning.hardware_lr)"
                )
            hidden = i < len(plan["layers"]) - 1
            src = 0
            seed = 0
            if hidden and rule in ("fa", "dfa"):
                src = widths[-1] if rule == "dfa" else widths[i + 2]
                seed = matrix_seed(plan["lfsr_seed"], i)
            layers.append(
                LayerHW(
                    index=i,
                    fan_in=lp["fan_in"],
                    fan_out=lp["fan_out"],
                    row_blocks=rb,
                    col_blocks=cb,
                    out_shift=lp["out_shift"],
                    delta_shift=lp["delta_shift"],
                    grad_shift=lp["grad_shift"],
                    w_frac=lp["w_frac"],
                    thresholds=tuple(lp["adc"]["thresholds"]),
                    levels=tuple(lp["adc"]["levels"]),
                    feedback_seed=seed,
                    feedback_source=src,
                    first_tile=tile,
                    tiles=n_tiles,
                    tile_col_blocks=tile_cb,
                    tile_row_blocks=tile_rb,
                )
            )
            tile += n_tiles
        if c.tiles != "auto" and c.tiles < tile:
            raise HardwareError(
                f"chip.tiles = {c.tiles} is too few: the floorplan needs {tile} tiles of "
                f"{per_tile} subarrays ({c.pes_per_tile} PEs x {c.subarrays_per_pe}) "
                "for this network"
            )
        return cls(
            name=dp.name,
            rule=rule,
            widths=widths,
            activation_bits=p.activation_bits,
            weight_bits=p.weight_bits,
            error_bits=p.error_bits,
            gradient_bits=p.gradient_bits,
            cell_bits=a.cell_bits,
            encoding=a.weight_encoding,
            rows=a.rows,
            cols=a.cols,
            cols_per_adc=min(a.cols_per_adc, nw * pols * slices),
            adc_bits=a.adc_bits,
            rounding=plan["rounding"],
            error=plan["error"],
            hash_seed=plan["hash_seed"],
            batch=batch,
            feedback_lanes=lanes,
            feedback_storage=c.feedback_storage if rule in ("fa", "dfa") else "lfsr",
            wgu=wgu_mode,
            wgu_row_blocks=min(
                max(lay.row_blocks for lay in layers),
                10**9 if c.wgu_row_blocks == "all" else int(c.wgu_row_blocks),
            ),
            pes_per_tile=c.pes_per_tile,
            subarrays_per_pe=c.subarrays_per_pe,
            tiles=tile if c.tiles == "auto" else int(c.tiles),
            clock_mhz=c.clock_mhz,
            layers=tuple(layers),
        )


def floorplan(row_blocks: int, subarrays_per_pe: int, pes_per_tile: int) -> tuple[int, int]:
    """Column blocks and row blocks per tile of a layer with ``row_blocks`` row blocks.

    A column block's row blocks form ``ceil(row_blocks / subarrays_per_pe)`` PEs. A tile holds
    whole columns when they fit (as many as its ``pes_per_tile`` PEs allow), so that it ends
    with the column's complete sum and can apply ReLU and requantize; a column needing more
    PEs than a tile has is split over a chain of tiles of ``pes_per_tile`` PEs each, whose
    partial sums pass from tile to tile and whose last tile requantizes.
    """
    pes_per_col = math.ceil(row_blocks / subarrays_per_pe)
    if pes_per_col <= pes_per_tile:
        return pes_per_tile // pes_per_col, row_blocks
    return 1, pes_per_tile * subarrays_per_pe


_GOLDEN = 0x9E3779B9
LFSR_MASK = 0x80200003


def matrix_seed(lfsr_seed: int, index: int) -> int:
    """Seed of feedback matrix ``index`` (docs/numerics.md, "Feedback matrices")."""
    return ((lfsr_seed ^ (_GOLDEN * (index + 1))) & 0xFFFFFFFF) or 1
