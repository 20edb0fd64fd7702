"""The native kernels of hardware-aware training: ``native.c`` built on demand, cached, loaded.

Hardware-aware training spends its time on work torch cannot fuse: every column partial sum of
every bit plane, weight slice and subarray goes through the ADC and is shifted and added into
the output. ``native.c`` does that in one pass (plus the bit planes, the cell slicing and the
stochastic-rounding dither), and ``torch._int_mm`` does the partial sums on int8 operands. Both
are exact integer arithmetic, so results are identical to the torch path in ``cim.py``
(tested on random inputs).

The library is compiled once per machine with the system C compiler (``$CC``, else ``cc``)
into ``$INSITU_CACHE/native`` (default ``~/.cache/insitu/native``), keyed by the source, the
flags and the CPU's feature flags, built in a temporary file and renamed into place. Where no
compiler is found or the build fails, or with ``INSITU_NATIVE=0``, :func:`library` returns
``None``, the torch path runs instead, and :func:`status` says why (``insitu train`` prints it).
"""

from __future__ import annotations

import ctypes
import fcntl
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import torch
from torch import Tensor

SOURCE = Path(__file__).with_name("native.c")
# -fno-math-errno and -fno-trapping-math let the float ADC loop vectorize; neither changes a
# finite result (no fast-math: every operation stays IEEE-rounded). GCC 12's unroll-and-jam
# turns the ADC's row loop inside out, 9x slower (measured): it is off.
FLAGS = (
    "-O3",
    "-march=native",
    "-fno-math-errno",
    "-fno-trapping-math",
    "-fno-loop-unroll-and-jam",
    "-shared",
    "-fPIC",
    "-std=c11",
)
# What a compiler that rejects one of FLAGS (clang has no -fno-loop-unroll-and-jam) gets.
PLAIN_FLAGS = ("-O2", "-shared", "-fPIC", "-std=c11")
LIBRARY = "libinsitu_native.so"

_lock = threading.Lock()
_reason = ""

_P = ctypes.c_void_p
_I = ctypes.c_int64


def cache_dir() -> Path:
    """``$INSITU_CACHE/native`` or ``~/.cache/insitu/native``."""
    root = os.environ.get("INSITU_CACHE") or Path.home() / ".cache" / "insitu"
    return Path(root) / "native"


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return ""


def _build(cc: str) -> Path:
    source = SOURCE.read_text(encoding="utf-8")
    key = hashlib.sha256("\n".join([source, cc, *FLAGS, _cpu_flags()]).encode()).hexdigest()[:20]
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{key}-{LIBRARY}"
    with open(folder / f".{key}.lock", "w") as lock:
        # other processes (pytest-xdist workers, sweep workers) wait for one build
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_file():
            return target
        fd, tmp = tempfile.mkstemp(prefix=f".{key}-", suffix=".so", dir=folder)
        os.close(fd)
        try:
            for flags in (FLAGS, PLAIN_FLAGS):
                proc = subprocess.run(
                    [cc, *flags, "-o", tmp, str(SOURCE)],
                    capture_output=True,
                    text=True,
                    timeout=120,
                    check=False,
                )
                if proc.returncode == 0:
                    break
            if proc.returncode != 0:
                tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-10:])
                raise OSError(f"{cc} failed ({proc.returncode}): {tail}")
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return target


class Native:
    """Typed wrappers of the kernels; tensors must be contiguous and of the stated dtypes."""

    def __init__(self, path: Path) -> None:
        lib = ctypes.CDLL(str(path), mode=os.RTLD_LOCAL)
        lib.insitu_bit_planes.argtypes = [_P, _I, _I, _I, _I, _I, _I, _P, _P, _P]
        lib.insitu_bit_planes.restype = None
        lib.insitu_slice_cells.argtypes = [_P, _I, _I, _I, _I, _I, _I, _P]
        lib.insitu_slice_cells.restype = None
        for fn in (lib.insitu_adc_subarray32, lib.insitu_adc_subarray64):
            fn.argtypes = [_P, _P, _I, _I, _I, _P, _I, _P]
            fn.restype = ctypes.c_int64
        lib.insitu_uniform_subarray.argtypes = [_P, _P, _I, _I, _I, _P, _P]
        lib.insitu_uniform_subarray.restype = ctypes.c_int64
        lib.insitu_reduce_cells.argtypes = [_P, _I, _I, _I, _P, _P, _I, _I, _I, _I, _P]
        lib.insitu_reduce_cells.restype = None
        lib.insitu_uniform_check.argtypes = [_P, _P, _I]
        lib.insitu_uniform_check.restype = ctypes.c_int64
        lib.insitu_output_error.argtypes = [_P, _P, _I, _I, _I, _I, _I, _P]
        lib.insitu_output_error.restype = ctypes.c_double
        lib.insitu_hidden_delta.argtypes = [_P, _I, _P, _I, _I, _I, _P]
        lib.insitu_hidden_delta.restype = None
        lib.insitu_device_gather.argtypes = [_P, _I, _I, _P, _P, _P, _P, _P, _P]
        lib.insitu_device_gather.restype = ctypes.c_int64
        lib.insitu_device_scatter.argtypes = [_P, _I, _P, _P, _P, _P, _P, _I, _P]
        lib.insitu_device_scatter.restype = None
        lib.insitu_update.argtypes = [_P, _P, _I, _I, _I, _I, _I, _I, _I, _I, _I, _P, _I, _I, _P]
        lib.insitu_update.restype = None
        self._lib = lib
        self.path = path

    def bit_planes(
        self, a: Tensor, bits: int, rows: int, *, skip_zero: bool = False
    ) -> tuple[Tensor, Tensor, list[int]]:
        """int64 (B, K) -> the bit-plane rows of each subarray block, sample-major.

        Returns ``planes`` int8 (n_sub, B * bits, rows), ``rowmap`` int32 (n_sub, B * bits)
        with ``b * bits + p`` for each listed row, and the number of rows of each block (all
        ``B * bits``, or fewer with ``skip_zero``: all-zero rows left out).
        """
        a = a.to(torch.int64).contiguous()
        b, k = a.shape
        n_sub = -(-k // rows)
        out = torch.empty(n_sub, bits * b, rows, dtype=torch.int8)
        rowmap = torch.empty(n_sub, bits * b, dtype=torch.int32)
        counts = torch.empty(n_sub, dtype=torch.int64)
        self._lib.insitu_bit_planes(
            a.data_ptr(), b, k, bits, rows, n_sub, int(skip_zero), out.data_ptr(),
            rowmap.data_ptr(), counts.data_ptr(),
        )  # fmt: skip
        return out, rowmap, counts.tolist()

    def slice_cells(
        self, w: Tensor, weight_bits: int, cell_bits: int, differential: bool, rows: int
    ) -> Tensor:
        """int64 (K, N) -> int8 (n_sub, rows, N * arrays * slices), as ``cim.slice_weights``."""
        w = w.contiguous()
        k, n = w.shape
        n_sub = -(-k // rows)
        cpo = (2 if differential else 1) * (weight_bits // cell_bits)
        out = torch.empty(n_sub, rows, n * cpo, dtype=torch.int8)
        self._lib.insitu_slice_cells(
            w.data_ptr(), k, n, weight_bits, cell_bits, int(differential), n_sub * rows,
            out.data_ptr(),
        )  # fmt: skip
        return out

    def uniform_matches(self, q: Tensor, lut: Tensor) -> bool:
        """Whether the arithmetic ADC ``q`` (float32: a, b, top code, c, d) gives ``lut``
        (int32) on every partial sum 0..len(lut)-1."""
        return self._lib.insitu_uniform_check(q.data_ptr(), lut.data_ptr(), lut.numel()) == 0

    def _check_rows(self, ps: Tensor, rowmap: Tensor, nrows: int, bits: int, acc: Tensor) -> None:
        batch, width = acc.shape
        if not (ps.is_contiguous() and ps.dtype == torch.int32 and ps.shape[1:] == (width,)):
            raise ValueError(f"partial sums {tuple(ps.shape)} {ps.dtype} do not match acc")
        if not (acc.is_contiguous() and acc.dtype == torch.int64):
            raise ValueError("acc must be contiguous int64")
        if not (rowmap.is_contiguous() and rowmap.dtype == torch.int32):
            raise ValueError("rowmap must be contiguous int32")
        if not nrows <= min(ps.shape[0], rowmap.numel(), batch * bits):
            raise ValueError(f"{nrows} rows do not fit the partial sums or the row map")

    def adc_subarray(
        self,
        ps: Tensor,
        rowmap: Tensor,
        nrows: int,
        bits: int,
        lut: Tensor,
        acc: Tensor,
        *,
        narrow: bool = False,
    ) -> None:
        """Add one subarray's converted, plane-weighted partial sums into ``acc``.

        ``ps``: int32 (>= nrows, width), row r of sample ``rowmap[r] // bits`` and plane
        ``rowmap[r] % bits`` (a sample's rows consecutive); ``acc``: int64 (B, width); ``lut``:
        the ADC table (int32). ``narrow``: a sample's planes may be summed in int32 (the
        caller knows ``(2**bits - 1) * max level`` fits).
        """
        self._check_rows(ps, rowmap, nrows, bits, acc)
        fn = self._lib.insitu_adc_subarray32 if narrow else self._lib.insitu_adc_subarray64
        if fn(ps.data_ptr(), rowmap.data_ptr(), nrows, bits, acc.shape[1], lut.data_ptr(),
              lut.numel(), acc.data_ptr()) != 0:  # fmt: skip
            raise MemoryError("insitu_adc_subarray: out of memory")

    def uniform_subarray(
        self, ps: Tensor, rowmap: Tensor, nrows: int, bits: int, uniform: Tensor, acc: Tensor
    ) -> None:
        """:meth:`adc_subarray` with the arithmetic ADC ``uniform`` (checked with
        :meth:`uniform_matches`) and a sample's planes summed in float32: the caller checks
        that ``(2**bits - 1) * max level < 2**24`` and that every partial sum lies inside the
        table (products of bit planes and cells always do)."""
        self._check_rows(ps, rowmap, nrows, bits, acc)
        self._lib.insitu_uniform_subarray(
            ps.data_ptr(), rowmap.data_ptr(), nrows, bits, acc.shape[1], uniform.data_ptr(),
            acc.data_ptr(),
        )  # fmt: skip

    def reduce_cells(
        self,
        acc: Tensor,
        coef: Tensor,
        *,
        rowsum: Tensor | None = None,
        offset: int = 0,
        mode: int = 0,
        shift: int = 0,
        limit: int = 0,
    ) -> Tensor:
        """int64 (B, N * cpo) -> int64 (B, N): ``sum_c coef[c] * acc[:, n * cpo + c]``, minus
        ``offset * rowsum`` when given, then requantized (``mode`` 1: hidden, 2: output; see
        ``cim.Requantize``)."""
        acc = acc.contiguous()
        batch, width = acc.shape
        cpo = coef.numel()
        y = torch.empty(batch, width // cpo, dtype=torch.int64)
        if rowsum is not None:
            rowsum = rowsum.to(torch.int64).contiguous()
        self._lib.insitu_reduce_cells(
            acc.data_ptr(), batch, width // cpo, cpo, coef.data_ptr(),
            rowsum.data_ptr() if rowsum is not None else None, offset, mode, shift, limit,
            y.data_ptr(),
        )  # fmt: skip
        return y

    def output_error(
        self, o: Tensor, labels: Tensor, target: int, error_bits: int, margin: bool
    ) -> tuple[Tensor, float]:
        """The output error codes (int64, like o) and the sum of their squares."""
        o = o.to(torch.int64).contiguous()
        labels = labels.to(torch.int64).contiguous()
        if labels.shape != (o.shape[0],):
            raise ValueError(f"output_error: {tuple(labels.shape)} labels for {len(o)} samples")
        if int(labels.min()) < 0 or int(labels.max()) >= o.shape[1]:
            raise ValueError(f"output_error: labels must lie in 0..{o.shape[1] - 1}")
        e = torch.empty_like(o)
        sse = self._lib.insitu_output_error(
            o.data_ptr(), labels.data_ptr(), o.shape[0], o.shape[1], target,
            2 ** (error_bits - 1) - 1, int(margin), e.data_ptr(),
        )  # fmt: skip
        return e, float(sse)

    def hidden_delta(self, u: Tensor, hidden: Tensor, shift: int, error_bits: int) -> Tensor:
        """``sat(rshift_round(u, shift)) * (hidden > 0)`` from an exact float product u."""
        if u.dtype not in (torch.float32, torch.float64) or u.shape != hidden.shape:
            raise ValueError("hidden_delta: u must be float32/float64 of hidden's shape")
        u = u.contiguous()
        hidden = hidden.to(torch.int64).contiguous()
        delta = torch.empty_like(hidden)
        self._lib.insitu_hidden_delta(
            u.data_ptr(), 1 if u.dtype == torch.float32 else 2, hidden.data_ptr(), u.numel(),
            shift, 2 ** (error_bits - 1) - 1, delta.data_ptr(),
        )  # fmt: skip
        return delta

    def device_gather(self, dw: Tensor, g: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, int]:
        """The devices with a nonzero request ``dw`` (int64 or float64, any shape), those with
        a positive one first (each group by ascending index): their flat indices, their ranks
        among all of them by ascending index, requests (float64), conductances ``g`` (float64,
        dw's shape), and how many are positive."""
        dw = dw.reshape(-1).contiguous()
        if dw.dtype not in (torch.int64, torch.float64) or g.dtype != torch.float64:
            raise ValueError("device_gather: dw int64/float64 and g float64 expected")
        if not g.is_contiguous() or g.numel() != dw.numel():
            raise ValueError("device_gather: g must be contiguous, one value per request")
        n = dw.numel()
        idx = torch.empty(n, dtype=torch.int64)
        rank = torch.empty(n, dtype=torch.int64)
        req = torch.empty(n, dtype=torch.float64)
        gk = torch.empty(n, dtype=torch.float64)
        n_pos = ctypes.c_int64(0)
        k = self._lib.insitu_device_gather(
            dw.data_ptr(), 0 if dw.dtype == torch.int64 else 1, n, g.data_ptr(),
            idx.data_ptr(), rank.data_ptr(), req.data_ptr(), gk.data_ptr(),
            ctypes.addressof(n_pos),
        )  # fmt: skip
        return idx[:k], rank[:k], req[:k], gk[:k], int(n_pos.value)

    def device_scatter(
        self,
        idx: Tensor,
        new_g: Tensor,
        g: Tensor,
        *,
        gain: Tensor,
        stuck: Tensor,
        stuck_value: Tensor,
        w_max: int,
        w: Tensor | None,
    ) -> None:
        """``g[idx] = new_g`` in place and, with ``w``, re-read those devices into it (as
        ``DeviceArray.read``)."""
        tensors = (g, gain, stuck, stuck_value, *([w] if w is not None else []))
        dtypes = (torch.float64, torch.float64, torch.bool, torch.int64, torch.int64)
        for t, dt in zip(tensors, dtypes, strict=False):
            if not t.is_contiguous() or t.dtype != dt or t.numel() != g.numel():
                raise ValueError("device_scatter: device state tensors do not match")
        idx, new_g = idx.contiguous(), new_g.to(torch.float64).contiguous()
        self._lib.insitu_device_scatter(
            idx.data_ptr(), idx.numel(), new_g.data_ptr(), g.data_ptr(), gain.data_ptr(),
            stuck.data_ptr(), stuck_value.data_ptr(), w_max,
            w.data_ptr() if w is not None else None,
        )  # fmt: skip

    def update(
        self,
        w: Tensor,
        g: Tensor,
        *,
        shift: int,
        dither: bool,
        layer: int,
        step: int,
        seed: int,
        gradient_bits: int,
        weight_bits: int,
        want_dw: bool = False,
        cells: Tensor | None = None,
        cell_bits: int = 1,
        differential: bool = True,
    ) -> Tensor | None:
        """``w -= sat(round(g / 2**shift))``, saturated, in place (int64, contiguous), as
        ``HardwareMLP.train_step``; returns the applied dw when ``want_dw``. ``g`` is int64 or an
        integer-valued float32/float64 product (read as is, no rounding pass). ``cells`` (int8,
        as :meth:`slice_cells` made them for ``w``) are rewritten for the new weights."""
        if not (w.is_contiguous() and w.dtype == torch.int64 and w.shape == g.shape):
            raise ValueError("update: w must be a contiguous int64 tensor of g's shape")
        if cells is not None:
            cpo = (2 if differential else 1) * (weight_bits // cell_bits)
            if not (
                cells.is_contiguous()
                and cells.dtype == torch.int8
                and cells.numel() >= w.numel() * cpo
                and cells.shape[-1] == w.shape[1] * cpo
            ):
                raise ValueError("update: cells do not match w")
        kinds = {torch.int64: 0, torch.float32: 1, torch.float64: 2}
        if g.dtype not in kinds:
            g = g.to(torch.int64)
        g = g.contiguous()
        dw = torch.empty_like(w) if want_dw else None
        self._lib.insitu_update(
            w.data_ptr(), g.data_ptr(), kinds[g.dtype], g.numel(), shift, int(dither), layer, step,
            seed,
            2 ** (gradient_bits - 1) - 1, 2 ** (weight_bits - 1) - 1,
            dw.data_ptr() if dw is not None else None,
            cell_bits, int(differential), cells.data_ptr() if cells is not None else None,
        )  # fmt: skip
        return dw


@functools.lru_cache(maxsize=1)
def _load() -> Native | None:
    global _reason
    if os.environ.get("INSITU_NATIVE", "1") == "0":
        _reason = "INSITU_NATIVE=0"
        return None
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        _reason = "no C compiler found (set $CC or install gcc)"
        return None
    try:
        return Native(_build(cc))
    except (OSError, subprocess.SubprocessError) as exc:
        _reason = f"building {SOURCE.name} failed: {exc}"
        return None


def library() -> Native | None:
    """The loaded kernels, or None (then :func:`status` says why)."""
    with _lock:
        return _load()


def status() -> str:
    """One line: which path hardware-aware training takes, and why."""
    lib = library()
    if lib is not None:
        return f"native kernels: {lib.path}"
    return f"native kernels unavailable ({_reason}); hardware-aware training uses torch only"
