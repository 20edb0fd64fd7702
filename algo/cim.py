"""Vectorized compute-in-memory matrix products in torch, exact to the numerics contract.

All bit planes, weight slices, array polarities and subarrays of a layer go through one batched
matrix product; partial sums are small integers, so they are exact in it. Two paths give the
same integers (tested):

- native (the default where :mod:`.native` could build its kernels): cells and bit planes are
  int8, the partial sums an int8 x int8 -> int32 product (``torch._int_mm``, VNNI on x86), and
  one fused kernel applies the ADC table to every partial sum and shifts and adds them;
- torch: float32 cells and planes, float32 BLAS, the ADC evaluated arithmetically (uniform) or
  as a gather (any table), then the shift-add.

``CIMLinear`` wraps the same arithmetic as a ``torch.nn.Module`` (straight-through gradients)
for users' own models.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from . import native
from .plan import AdcTable, IntegerPlan, uniform_adc, uniform_parameters

_F32_EXACT = 2**24
_I32_MAX = 2**31 - 1
# int8 cells hold at most 7-bit cells (torch._int_mm takes signed int8 operands)
_INT8_CELL_BITS = 7
# torch._int_mm is not public API: without it the cells stay float32 (float BLAS products)
_HAS_INT_MM = hasattr(torch, "_int_mm")


def slice_weights(w: Tensor, plan: IntegerPlan) -> Tensor:
    """Cells of a weight matrix (K, N) as (n_sub, rows, N * arrays * slices).

    The last axis is ordered (column, array polarity, slice), slice 0 holding the LSBs. int8
    from the native kernel where it is available and cells fit; otherwise float32, each
    weight's cells from a table over every weight value (a gather, far cheaper per step than
    shifting and masking every weight in torch).
    """
    lib = native.library()
    if lib is not None and plan.cell_bits <= _INT8_CELL_BITS and _HAS_INT_MM:
        return lib.slice_cells(
            w.to(torch.int64),
            plan.weight_bits,
            plan.cell_bits,
            plan.encoding == "differential",
            plan.rows,
        )
    table = _cell_table(plan.weight_bits, plan.cell_bits, plan.encoding)
    w_max = 2 ** (plan.weight_bits - 1) - 1
    k = w.shape[0]
    flat = table[(w.to(torch.int64) + w_max).flatten()].view(k, -1)
    n_sub = math.ceil(k / plan.rows)
    flat = nn.functional.pad(flat, (0, 0, 0, n_sub * plan.rows - k))
    return flat.view(n_sub, plan.rows, -1)


@functools.lru_cache(maxsize=16)
def _cell_table(weight_bits: int, cell_bits: int, encoding: str) -> Tensor:
    """(2 * w_max + 1, arrays * slices) float32: the cells of every weight value."""
    w_max = 2 ** (weight_bits - 1) - 1
    values = torch.arange(-w_max, w_max + 1, dtype=torch.int64)
    if encoding == "differential":
        mags = torch.stack([values.clamp(min=0), (-values).clamp(min=0)], dim=-1)
    else:
        mags = (values + 2 ** (weight_bits - 1)).unsqueeze(-1)
    shifts = torch.arange(weight_bits // cell_bits, dtype=torch.int64) * cell_bits
    cells = (mags.unsqueeze(-1) >> shifts) & ((1 << cell_bits) - 1)
    return cells.reshape(len(values), -1).to(torch.float32)


def slice_coefficients(plan: IntegerPlan) -> Tensor:
    """Signed weights 2**(cell_bits*s) of each (polarity, slice), float64."""
    signs = [1.0, -1.0] if plan.encoding == "differential" else [1.0]
    return torch.tensor(
        [sg * 2.0 ** (plan.cell_bits * s) for sg in signs for s in range(plan.num_slices)],
        dtype=torch.float64,
    )


@functools.lru_cache(maxsize=16)
def _coefficients(cell_bits: int, slices: int, differential: bool) -> Tensor:
    signs = [1, -1] if differential else [1]
    return torch.tensor(
        [sg * 2 ** (cell_bits * s) for sg in signs for s in range(slices)], dtype=torch.int64
    )


def _cell_coefficients(plan: IntegerPlan) -> Tensor:
    """``slice_coefficients`` as int64 (for the native kernel)."""
    return _coefficients(plan.cell_bits, plan.num_slices, plan.encoding == "differential")


def bit_planes(a: Tensor, bits: int, rows: int) -> Tensor:
    """Inputs (B, K) as bit planes in subarray blocks: float32 (n_sub, bits * B, rows)."""
    b, k = a.shape
    n_sub = math.ceil(k / rows)
    shifts = torch.arange(bits, dtype=torch.int64).view(bits, 1, 1)
    planes = ((a.to(torch.int64).unsqueeze(0) >> shifts) & 1).to(torch.float32)
    planes = nn.functional.pad(planes, (0, n_sub * rows - k))
    return planes.view(bits * b, n_sub, rows).transpose(0, 1)


def partial_sums(a: Tensor, cells: Tensor, plan: IntegerPlan) -> Tensor:
    """Every column partial sum S: (n_sub, bits * B, N * arrays * slices).

    int32 for int8 cells (the native path), float32 for float32 cells.
    """
    bits, rows = plan.activation_bits, plan.rows
    if cells.dtype != torch.int8:
        return torch.bmm(bit_planes(a, bits, rows), cells)
    planes = bit_planes(a, bits, rows).to(torch.int8).contiguous()
    out = torch.empty(planes.shape[0], planes.shape[1], cells.shape[2], dtype=torch.int32)
    for s in range(planes.shape[0]):
        torch._int_mm(planes[s], cells[s], out=out[s])
    return out


class Converter:
    """The ADC of one layer applied to a tensor of partial sums (float, integer-valued).

    A uniform table is evaluated arithmetically (eight times faster than a gather on this
    machine's CPU); any other table is a lookup indexed by the partial sum. Both give exactly
    ``table.lookup`` (tested).
    """

    def __init__(self, table: AdcTable, max_sum: int) -> None:
        self.table = table
        self.max_sum = max_sum
        self.lut = torch.from_numpy(table.lookup(max_sum)).to(torch.float32)
        self.lut_i32 = self.lut.to(torch.int32)
        self.native_uniform = _native_uniform(table, self.lut_i32)
        self.zero_at_zero = int(self.lut_i32[0]) == 0
        n = len(table.levels)
        self.identity_top: float | None = None
        self.uniform = uniform_parameters(table)
        if table.levels == tuple(range(n)) and table.thresholds == tuple(range(1, n)):
            self.identity_top = float(n - 1)
        if self.uniform:
            _, m = self.uniform
            self.dtype = (
                torch.float32 if 2 * (n - 1) * (max_sum + m) < _F32_EXACT else torch.float64
            )

    def __call__(self, s: Tensor) -> Tensor:
        if self.identity_top is not None:
            return s.clamp_(max=self.identity_top)
        if self.uniform:
            bits, m = self.uniform
            lm1 = float(2**bits - 1)
            x = s.to(self.dtype)
            code = torch.floor_(x.mul_(2 * lm1).add_(m).div_(2 * m)).clamp_(max=lm1)
            return torch.floor_(code.mul_(2 * m).add_(lm1).div_(2 * lm1)).to(s.dtype)
        return self.lut[s.to(torch.int64)]


def _native_uniform(table: AdcTable, lut: Tensor) -> Tensor | None:
    """The float32 parameters of the native kernel's arithmetic ADC for a uniform (or
    identity) table, when they reproduce the table on every partial sum; else None.

    ``code = floor((2(L-1)S + M) / 2M)`` is ``floor(S (L-1)/M + 1/2)``: exact quotients lie at
    least ``1/2M`` from the next integer, so a bias of ``1/4M`` above one half absorbs float32
    rounding without moving any floor (and the native check proves it over the whole table).
    """
    lib = native.library()
    if lib is None:
        return None
    n = len(table.levels)
    uniform = uniform_parameters(table)
    if uniform is not None:
        m, lm1 = uniform[1], n - 1
        q = [lm1 / m, 0.5 + 0.25 / m, lm1, m / lm1, 0.5 + 0.25 / lm1]
    elif table.levels == tuple(range(n)) and table.thresholds == tuple(range(1, n)):
        q = [1.0, 0.25, n - 1, 1.0, 0.25]
    else:
        return None
    params = torch.tensor(q, dtype=torch.float32)
    return params if lib.uniform_matches(params, lut) else None


def accumulate(converted: Tensor, batch: int, n_out: int, plan: IntegerPlan, top: int) -> Tensor:
    """Shift-add over subarrays, bit planes, polarities and slices: int64 (B, N).

    ``top`` bounds the converted values; float32 is used while every sum stays exact in it.
    """
    bits = plan.activation_bits
    n_sub = converted.shape[0]
    exact32 = (2**bits - 1) * n_sub * top < _F32_EXACT
    dt = torch.float32 if exact32 else torch.float64
    summed = converted.to(dt).sum(0).view(bits, -1)
    plane_w = (2.0 ** torch.arange(bits, dtype=dt)).view(1, bits)
    per_slice = (plane_w @ summed).view(batch, n_out, -1).to(torch.float64)
    y = per_slice @ slice_coefficients(plan)
    return y.round().to(torch.int64)


@dataclass(frozen=True)
class Requantize:
    """The tile's requantization of a layer's sums (numerics contract): ``hidden``:
    ``min(rshift_round(max(y, 0), shift), limit)``; ``output``:
    ``sat(rshift_round(y, shift), limit)``."""

    kind: str  # "hidden" | "output"
    shift: int
    limit: int

    def __call__(self, y: Tensor) -> Tensor:
        if self.kind == "hidden":
            return rshift_round(y.clamp(min=0), self.shift).clamp(max=self.limit)
        return rshift_round(y, self.shift).clamp(-self.limit, self.limit)

    @property
    def mode(self) -> int:
        return 1 if self.kind == "hidden" else 2


def rshift_round(v: Tensor, s: int) -> Tensor:
    """``v / 2**s`` rounded half up (``v << -s`` for s <= 0), the contract's shift."""
    return v << (-s) if s <= 0 else (v + (1 << (s - 1))) >> s


def cim_matmul(
    a: Tensor,
    cells: Tensor,
    plan: IntegerPlan,
    adc: Converter,
    n_out: int,
    *,
    read_noise: float = 0.0,
    generator: torch.Generator | None = None,
    requantize: Requantize | None = None,
) -> Tensor:
    """y = a @ W through the array: int64 (B, N), bit-exact with ``golden.cim_matvec``, then
    ``requantize`` when given (fused into the native kernel's last pass).

    With ``read_noise`` > 0 each partial sum gets Gaussian noise of standard deviation
    ``read_noise * sqrt(S * (2**cell_bits - 1))`` (cell conductances with relative noise) and the
    ADC sees the noisy analog value.
    """
    lib = native.library()
    top = max(adc.table.levels)
    narrow = (2**plan.activation_bits - 1) * top <= _I32_MAX
    uniform = adc.native_uniform
    bits = plan.activation_bits
    if lib is None:
        ps = partial_sums(a, cells, plan)
        if read_noise > 0:
            ps = _noisy(ps, plan, adc, read_noise, generator)
        y = accumulate(adc(ps.to(torch.float32)), a.shape[0], n_out, plan, top)
        if plan.encoding == "offset-binary":
            y = y - (2 ** (plan.weight_bits - 1)) * a.to(torch.int64).sum(1, keepdim=True)
        return requantize(y) if requantize else y
    if read_noise == 0 and cells.dtype == torch.int8:
        # each subarray's product is converted while it is still in cache; all-zero input
        # planes are skipped (they add nothing when the ADC's level of 0 is 0)
        planes, rowmap, counts = lib.bit_planes(a, bits, plan.rows, skip_zero=adc.zero_at_zero)
        acc = torch.zeros(a.shape[0], cells.shape[2], dtype=torch.int64)
        ps = torch.empty(planes.shape[1], cells.shape[2], dtype=torch.int32)
        float_planes = (2**bits - 1) * top < _F32_EXACT
        for s, n in enumerate(counts):
            if n == 0:
                continue
            out = ps[:n]
            torch._int_mm(planes[s, :n], cells[s], out=out)
            if uniform is not None and float_planes:
                lib.uniform_subarray(out, rowmap[s], n, bits, uniform, acc)
            else:
                lib.adc_subarray(out, rowmap[s], n, bits, adc.lut_i32, acc, narrow=narrow)
    else:
        ps = partial_sums(a, cells, plan)
        if read_noise > 0:
            ps = _noisy(ps, plan, adc, read_noise, generator)
        # sample-major rows for the kernel
        n_sub, width, batch = ps.shape[0], ps.shape[2], a.shape[0]
        ps = ps.to(torch.int32).view(n_sub, bits, batch, width).transpose(1, 2).contiguous()
        ps = ps.view(n_sub, batch * bits, width)
        rows = torch.arange(batch * bits, dtype=torch.int32)
        acc = torch.zeros(batch, width, dtype=torch.int64)
        for s in range(n_sub):
            lib.adc_subarray(ps[s], rows, batch * bits, bits, adc.lut_i32, acc, narrow=narrow)
    offset_binary = plan.encoding == "offset-binary"
    return lib.reduce_cells(
        acc,
        _cell_coefficients(plan),
        rowsum=a.sum(1) if offset_binary else None,
        offset=2 ** (plan.weight_bits - 1) if offset_binary else 0,
        mode=requantize.mode if requantize else 0,
        shift=requantize.shift if requantize else 0,
        limit=requantize.limit if requantize else 0,
    )


def _noisy(
    ps: Tensor,
    plan: IntegerPlan,
    adc: Converter,
    read_noise: float,
    generator: torch.Generator | None,
) -> Tensor:
    """Partial sums with relative conductance read noise, floored and clamped to the ADC input."""
    ps = ps.to(torch.float32)
    sigma = read_noise * torch.sqrt(ps * (2**plan.cell_bits - 1))
    noise = torch.randn(ps.shape, generator=generator, dtype=torch.float32)
    return torch.floor(ps + sigma * noise).clamp_(0, adc.max_sum)


def partial_sum_histogram(a: Tensor, cells: Tensor, plan: IntegerPlan) -> Tensor:
    """Counts of every partial-sum value 0..max (for ADC range calibration)."""
    ps = partial_sums(a, cells, plan).to(torch.int64).flatten()
    return torch.bincount(ps, minlength=plan.max_partial_sum + 1)


def percentile_from_histogram(hist: Tensor, percentile: float) -> int:
    cdf = torch.cumsum(hist.to(torch.float64), 0)
    k = int(torch.searchsorted(cdf, cdf[-1] * percentile / 100.0).item())
    return max(1, min(k, hist.numel() - 1))


class _StraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor, y: Tensor) -> Tensor:
        ctx.save_for_backward(x, w)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, None]:
        x, w = ctx.saved_tensors
        # Leading batch dimensions of any rank fold into one for the weight gradient.
        g2 = grad.reshape(-1, grad.shape[-1])
        return grad @ w, g2.t() @ x.reshape(-1, x.shape[-1]), None


class CIMLinear(nn.Module):
    """A bias-free linear layer computed as a CIM array: quantized inputs and weights, bit-serial
    inputs, bit-sliced weights on ``rows``-row subarrays and an ADC on every column partial sum.

    Gradients pass straight through the quantizers to the float weights (a
    quantization-aware-training layer). Inputs are expected in [0, 1) (e.g. after a sigmoid or a
    clipped ReLU); ``w_range`` is the real value of the largest weight.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        activation_bits: int = 8,
        weight_bits: int = 8,
        cell_bits: int = 2,
        rows: int = 128,
        adc_bits: int = 5,
        adc_range: int | None = None,
        encoding: str = "differential",
        w_range: float = 1.0,
    ) -> None:
        super().__init__()
        for name, v, lo in (
            ("in_features", in_features, 1),
            ("out_features", out_features, 1),
            ("activation_bits", activation_bits, 1),
            ("weight_bits", weight_bits, 2),
            ("cell_bits", cell_bits, 1),
            ("rows", rows, 1),
            ("adc_bits", adc_bits, 1),
        ):
            if not isinstance(v, int) or v < lo:
                raise ValueError(f"CIMLinear: {name}={v!r} must be an integer >= {lo}")
        if weight_bits % cell_bits:
            raise ValueError(
                f"CIMLinear: weight_bits={weight_bits} must be a multiple of cell_bits={cell_bits}"
            )
        if encoding not in ("differential", "offset-binary"):
            raise ValueError(
                f"CIMLinear: encoding={encoding!r} must be 'differential' or 'offset-binary'"
            )
        if w_range <= 0:
            raise ValueError(f"CIMLinear: w_range={w_range} must be > 0")
        self.in_features, self.out_features = in_features, out_features
        self.w_range = w_range
        full = rows * (2**cell_bits - 1)
        self.plan = IntegerPlan(
            rule="bp",
            activation_bits=activation_bits,
            weight_bits=weight_bits,
            error_bits=8,
            gradient_bits=8,
            rows=rows,
            cell_bits=cell_bits,
            encoding=encoding,
            rounding="nearest",
            error="squared",
            lfsr_seed=1,
            hash_seed=0,
        )
        table = uniform_adc(adc_bits, min(adc_range or full, full))
        self.adc = Converter(table, full)
        bound = math.sqrt(6.0 / in_features)
        self.weight = nn.Parameter(torch.empty(out_features, in_features).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        a_scale = 2**self.plan.activation_bits
        w_scale = self.plan.w_max / self.w_range
        with torch.no_grad():
            a = torch.clamp(torch.floor(x * a_scale + 0.5), 0, a_scale - 1).to(torch.int64)
            w = torch.clamp(torch.round(self.weight * w_scale), -self.plan.w_max, self.plan.w_max)
            cells = slice_weights(w.t().to(torch.int64), self.plan)
            y_int = cim_matmul(
                a.reshape(-1, self.in_features), cells, self.plan, self.adc, self.out_features
            )
            y = (y_int.to(x.dtype) / (a_scale * w_scale)).reshape(*x.shape[:-1], self.out_features)
        return _StraightThrough.apply(x, self.weight, y)

    def extra_repr(self) -> str:
        p = self.plan
        return (
            f"in={self.in_features}, out={self.out_features}, a_bits={p.activation_bits}, "
            f"w_bits={p.weight_bits}, cell_bits={p.cell_bits}, rows={p.rows}"
        )
