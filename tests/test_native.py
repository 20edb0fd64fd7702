"""The native kernels give exactly the torch path's integers, on random inputs and designs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from insitu import config
from insitu.algo import cim, native
from insitu.algo.hardware import HardwareMLP
from insitu.algo.plan import AdcTable, IntegerPlan, uniform_adc

LIB = native.library()
pytestmark = pytest.mark.skipif(LIB is None, reason=native.status())


def _plan(**kw: object) -> IntegerPlan:
    base: dict[str, object] = dict(
        rule="bp",
        activation_bits=8,
        weight_bits=8,
        error_bits=8,
        gradient_bits=8,
        rows=128,
        cell_bits=2,
        encoding="differential",
        rounding="nearest",
        error="squared",
        lfsr_seed=1,
        hash_seed=0,
    )
    base.update(kw)
    return IntegerPlan(**base)  # type: ignore[arg-type]


def _random_table(rng: np.random.Generator, bits: int, max_sum: int) -> AdcTable:
    n = 2**bits
    thresholds = np.sort(rng.choice(np.arange(1, max_sum + 1), n - 1, replace=False))
    levels = np.sort(rng.integers(0, max_sum + 1, n))
    return AdcTable(tuple(int(t) for t in thresholds), tuple(int(v) for v in levels))


def _torch_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(native, "library", lambda: None)


# (activation_bits, weight_bits, cell_bits, rows, encoding, K, N, ADC)
DESIGNS = [
    (8, 8, 2, 128, "differential", 300, 37, "uniform"),
    (8, 8, 2, 128, "differential", 300, 37, "table"),
    (4, 6, 1, 16, "differential", 50, 9, "uniform"),
    (8, 8, 4, 100, "offset-binary", 260, 11, "uniform"),
    (3, 12, 3, 7, "offset-binary", 30, 5, "table"),
    (8, 8, 8, 32, "differential", 70, 6, "uniform"),  # 8-bit cells: float32 products
    (8, 8, 2, 1, "differential", 20, 4, "identity"),
    (6, 8, 2, 32, "differential", 64, 8, "identity"),
    (16, 8, 4, 4096, "differential", 4100, 3, "uniform"),  # int64 accumulation
    (7, 16, 2, 64, "differential", 129, 5, "table"),  # 8 slices per polarity
    (8, 8, 2, 16, "differential", 90, 7, "offset"),  # level(0) > 0: zero rows still count
]


@pytest.mark.parametrize("design", DESIGNS, ids=[f"{d[4]}-{d[7]}-{d[3]}r" for d in DESIGNS])
def test_cim_matmul_native_equals_torch(
    design: tuple[int, int, int, int, str, int, int, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ab, wb, cb, rows, enc, k, n, kind = design
    plan = _plan(activation_bits=ab, weight_bits=wb, cell_bits=cb, rows=rows, encoding=enc)
    rng = np.random.default_rng(k * n + ab)
    max_sum = plan.max_partial_sum
    table = {
        "uniform": uniform_adc(5, max(40, max_sum // 3)),
        "identity": uniform_adc(3, 7) if max_sum >= 7 else uniform_adc(1, 1),
        "table": _random_table(rng, 4, max_sum) if max_sum >= 16 else uniform_adc(2, 3),
        "offset": AdcTable((3, 9, 20), (2, 6, 14, 30)),
    }[kind]
    w_max = 2 ** (wb - 1) - 1
    for trial in range(3):
        a = torch.from_numpy(rng.integers(0, 2**ab, (1 + 5 * trial, k)))
        a[:, rng.random(k) < 0.3] = 0
        w = torch.from_numpy(rng.integers(-w_max, w_max + 1, (k, n)))
        adc = cim.Converter(table, max_sum)
        if kind != "table":  # a random table may or may not map 0 to 0
            assert adc.zero_at_zero == (kind != "offset")
        cells = cim.slice_weights(w, plan)
        assert cells.dtype == (torch.int8 if cb <= 7 else torch.float32)
        fast = cim.cim_matmul(a, cells, plan, adc, n)
        with monkeypatch.context() as m:
            _torch_only(m)
            slow_cells = cim.slice_weights(w, plan)
            assert torch.equal(slow_cells, cells.to(torch.float32))
            slow = cim.cim_matmul(a, slow_cells, plan, cim.Converter(table, max_sum), n)
        assert torch.equal(fast, slow), f"trial {trial}"


def test_the_arithmetic_adc_is_used_for_uniform_tables() -> None:
    """The fast kernel must not silently fall back to the table for the common ADCs."""
    for bits in range(1, 9):
        for m in (2**bits, 97, 384, 1531):
            if m > 2**bits - 1:
                conv = cim.Converter(uniform_adc(bits, m), 384 if m <= 384 else 4096)
                assert conv.native_uniform is not None, (bits, m)
    assert cim.Converter(uniform_adc(5, 31), 384).native_uniform is not None


def test_uniform_check_rejects_a_wrong_formula() -> None:
    assert LIB is not None
    lut = cim.Converter(uniform_adc(5, 100), 384).lut_i32
    good = cim._native_uniform(uniform_adc(5, 100), lut)
    assert good is not None
    bad = good.clone()
    bad[1] -= 0.3
    assert not LIB.uniform_matches(bad, lut)


TRAIN = [
    ["learning.rule=dfa"],
    ["learning.rule=bp", "precision.rounding=nearest", "array.weight_encoding=offset-binary"],
    ["learning.rule=fa", "array.cell_bits=4", "array.adc_bits=3", "precision.gradient_bits=4"],
    ["learning.rule=dfa", "array.device_effects=true", "array.device=rram"],
]


@pytest.mark.parametrize("sets", TRAIN, ids=["dfa", "bp-nearest-offset", "fa", "dfa-device"])
def test_training_steps_native_equal_torch(
    sets: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    dp = config.load("digits", ["learning.mode=hardware", "network.layers=[64, 48, 40, 10]", *sets])
    rng = np.random.default_rng(7)
    xs = torch.from_numpy(rng.integers(0, 256, (6, 16, 64)))
    ys = torch.from_numpy(rng.integers(0, 10, (6, 16)))

    def run() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        model = HardwareMLP(dp)
        model.calibrate_adc(xs[0])
        outs = [model.train_step(x, y)[0] for x, y in zip(xs, ys, strict=True)]
        return model.weights, outs

    w_fast, o_fast = run()
    with monkeypatch.context() as m:
        _torch_only(m)
        w_slow, o_slow = run()
    for a, b in zip(o_fast, o_slow, strict=True):
        assert torch.equal(a, b)
    for a, b in zip(w_fast, w_slow, strict=True):
        assert torch.equal(a, b)


def test_update_kernel_shift_and_saturation() -> None:
    assert LIB is not None
    g = torch.tensor([[-1000, -9, -8, -7, 0, 7, 8, 9, 1000]], dtype=torch.int64)
    w = torch.zeros_like(g)
    dw = LIB.update(
        w, g, shift=3, dither=False, layer=0, step=0, seed=0, gradient_bits=4,
        weight_bits=4, want_dw=True,
    )  # fmt: skip
    # nearest, half up: -9/8 -> -1, -8/8 -> -1, -7/8 -> -1 (-0.875), 7/8 -> 1; saturated at 7
    assert dw is not None and dw.tolist() == [[-7, -1, -1, -1, 0, 1, 1, 1, 7]]
    assert w.tolist() == [[7, 1, 1, 1, 0, -1, -1, -1, -7]]
    w2 = torch.full_like(g, 6)
    LIB.update(w2, g, shift=-1, dither=False, layer=0, step=0, seed=0, gradient_bits=8,
               weight_bits=4)  # fmt: skip
    assert w2.tolist() == [[7, 7, 7, 7, 6, -7, -7, -7, -7]]


def test_disabled_native_path_says_why(tmp_path: Path) -> None:
    code = "from insitu.algo import native; print(native.library() is None); print(native.status())"
    env = {**os.environ, "INSITU_NATIVE": "0"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out[0] == "True"
    assert "INSITU_NATIVE=0" in out[1] and "torch only" in out[1]


def test_a_failed_build_is_reported_and_leaves_nothing(tmp_path: Path) -> None:
    env = {**os.environ, "INSITU_CACHE": str(tmp_path), "CC": "/bin/false"}
    code = "from insitu.algo import native; print(native.status())"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "native kernels unavailable" in out and "failed" in out
    assert not list((tmp_path / "native").glob("*.so"))


@pytest.mark.parametrize("kind", ["int", "float"])
def test_device_update_native_equals_torch(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from insitu.algo.device import DeviceArray, DeviceParams

    params = DeviceParams(
        levels=97, nl_ltp=2.4, nl_ltd=-4.88, c2c_sigma=0.035, d2d_sigma=0.2,
        read_noise_sigma=0.0, stuck_at_rate=0.05,
    )  # fmt: skip
    rng = np.random.default_rng(3)
    w = torch.from_numpy(rng.integers(-120, 121, (50, 30)))

    def run() -> tuple[torch.Tensor, torch.Tensor]:
        dev = DeviceArray(w, 127, params, torch.Generator().manual_seed(5))
        dev.read()
        for step in range(4):
            r = np.random.default_rng(step)
            dw = r.integers(-6, 7, w.shape) * (r.random(w.shape) < 0.3)
            t = torch.from_numpy(dw) if kind == "int" else torch.from_numpy(dw * 0.37)
            dev.update(t)
        return dev.g.clone(), dev.read().clone()

    g_fast, w_fast = run()
    with monkeypatch.context() as m:
        _torch_only(m)
        g_slow, w_slow = run()
    assert torch.equal(g_fast, g_slow)
    assert torch.equal(w_fast, w_slow)
    assert not torch.equal(w_fast, w)  # the updates did something


def test_without_int_mm_the_cells_stay_float(monkeypatch: pytest.MonkeyPatch) -> None:
    """A torch without the private ``_int_mm`` keeps float32 cells and the native ADC."""
    plan = _plan()
    rng = np.random.default_rng(11)
    a = torch.from_numpy(rng.integers(0, 256, (4, 200)))
    w = torch.from_numpy(rng.integers(-127, 128, (200, 9)))
    adc = cim.Converter(uniform_adc(5, 60), plan.max_partial_sum)
    fast = cim.cim_matmul(a, cim.slice_weights(w, plan), plan, adc, 9)
    monkeypatch.setattr(cim, "_HAS_INT_MM", False)
    cells = cim.slice_weights(w, plan)
    assert cells.dtype == torch.float32
    assert torch.equal(cim.cim_matmul(a, cells, plan, adc, 9), fast)


@pytest.mark.parametrize("encoding", ["differential", "offset-binary"])
def test_read_noise_path_native_equals_torch(
    encoding: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The noisy path (float partial sums, then the native ADC and reduce) matches torch."""
    plan = _plan(encoding=encoding, rows=64)
    rng = np.random.default_rng(13)
    a = torch.from_numpy(rng.integers(0, 256, (5, 150)))
    w = torch.from_numpy(rng.integers(-127, 128, (150, 7)))
    table = uniform_adc(5, 90)
    rq = cim.Requantize("output", 6, 127)

    def run() -> torch.Tensor:
        adc = cim.Converter(table, plan.max_partial_sum)
        gen = torch.Generator().manual_seed(3)
        cells = cim.slice_weights(w, plan)
        return cim.cim_matmul(a, cells, plan, adc, 7, read_noise=0.05, generator=gen, requantize=rq)

    fast = run()
    with monkeypatch.context() as m:
        _torch_only(m)
        slow = run()
    assert torch.equal(fast, slow)
