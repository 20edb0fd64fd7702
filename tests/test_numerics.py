"""The numerics contract from both sides: the torch hardware path equals the golden model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from insitu import config
from insitu.algo import golden
from insitu.algo.cim import CIMLinear, Converter
from insitu.algo.hardware import HardwareMLP
from insitu.algo.lfsr import MASK, feedback_matrix, lfsr_bits
from insitu.algo.plan import (
    AdcTable,
    PlanError,
    adc_from_file,
    make_plan,
    quantize_inputs,
    uniform_adc,
)


def _random_batch(dp: config.DesignPoint, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.random((n, dp.network.layers[0])) ** 2  # skewed towards 0, like images
    return quantize_inputs(x, dp.precision.activation_bits), rng.integers(
        0, dp.network.layers[-1], n
    )


CASES = [
    # identity ADC path (small subarrays: the calibrated range fits the ADC)
    ["learning.rule=dfa", "array.rows=32"],
    # arithmetic uniform ADC, calibrated and full scale, both encodings, all rules
    ["learning.rule=dfa", "array.weight_encoding=offset-binary"],
    ["learning.rule=bp", "array.adc_range=full-scale", "array.adc_bits=4"],
    ["learning.rule=fa", "precision.rounding=nearest", "array.cell_bits=4", "array.adc_bits=3"],
    [
        "learning.rule=bp",
        "array.cell_bits=1",
        "precision.weight_bits=6",
        "precision.activation_bits=4",
    ],
    ["learning.rule=dfa", "array.rows=100", "precision.error_bits=6", "precision.gradient_bits=4"],
    ["learning.rule=bp", "learning.error=squared", "array.adc_bits=6"],
]


@pytest.mark.parametrize("sets", CASES)
def test_torch_path_matches_golden_over_training_steps(sets: list[str]) -> None:
    dp = config.load("digits", ["learning.mode=hardware", "network.layers=[64, 48, 40, 10]", *sets])
    a0, _ = _random_batch(dp, 64, 1)
    model = HardwareMLP(dp)
    model.calibrate_adc(torch.from_numpy(a0))
    plan = model.plan
    weights = [w.numpy().copy() for w in model.weights]
    for step in range(4):
        a, y = _random_batch(dp, 24, 10 + step)
        o_t, _ = model.train_step(torch.from_numpy(a), torch.from_numpy(y))
        weights, o_g = golden.train_step(plan, weights, a, y, step)
        np.testing.assert_array_equal(o_t.numpy(), o_g)
        for wt, wg in zip(model.weights, weights, strict=True):
            np.testing.assert_array_equal(wt.numpy(), wg)
    changed = sum(
        int((w != w0.numpy()).sum()) for w, w0 in zip(weights, HardwareMLP(dp).weights, strict=True)
    )
    assert changed > 0, "training steps must change weights for the comparison to mean anything"


def test_table_adc_from_file_matches_golden(tmp_path: Path) -> None:
    # A non-uniform (log-spaced) 3-bit table, as analog/ might characterize one.
    table = {"thresholds": [1, 2, 4, 8, 16, 32, 64], "levels": [0, 1, 3, 6, 12, 24, 48, 96]}
    f = tmp_path / "adc.json"
    f.write_text(json.dumps(table))
    dp = config.load(
        "digits",
        [
            "learning.mode=hardware",
            "array.adc_bits=3",
            "array.adc_model=table",
            f"array.adc_table={f}",
        ],
    )
    model = HardwareMLP(dp)
    a, y = _random_batch(dp, 32, 3)
    weights = [w.numpy().copy() for w in model.weights]
    o_t, _ = model.train_step(torch.from_numpy(a), torch.from_numpy(y))
    weights, o_g = golden.train_step(make_plan(dp), weights, a, y, 0)
    np.testing.assert_array_equal(o_t.numpy(), o_g)
    np.testing.assert_array_equal(model.weights[0].numpy(), weights[0])


def test_exact_adc_gives_the_exact_dot_product() -> None:
    dp = config.load(
        "digits", ["learning.mode=hardware", "array.adc_bits=9", "array.adc_range=full-scale"]
    )
    plan = make_plan(dp)
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (16, 64))
    w = rng.integers(-127, 128, (64, 128))
    np.testing.assert_array_equal(golden.cim_matvec(a, w, plan, 0), a @ w)


def test_low_bit_adc_clips_and_quantizes() -> None:
    dp = config.load(
        "digits", ["learning.mode=hardware", "array.adc_bits=2", "array.adc_range=full-scale"]
    )
    plan = make_plan(dp)
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (16, 64))
    w = rng.integers(-127, 128, (64, 128))
    assert not np.array_equal(golden.cim_matvec(a, w, plan, 0), a @ w)


@pytest.mark.parametrize(
    ("bits", "m", "max_sum"),
    [(1, 5, 20), (3, 7, 7), (3, 100, 384), (5, 384, 384), (5, 47, 384), (8, 1000, 4095)],
)
def test_uniform_adc_arithmetic_equals_table(bits: int, m: int, max_sum: int) -> None:
    table = uniform_adc(bits, m)
    s = torch.arange(max_sum + 1, dtype=torch.float32)
    np.testing.assert_array_equal(
        Converter(table, max_sum)(s.clone()).numpy(), table.lookup(max_sum)
    )
    assert len(table.levels) == 2**bits
    assert table.lookup(max_sum).max() == (max(m, 2**bits - 1) if m > 2**bits - 1 else 2**bits - 1)


def test_adc_table_validation(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="strictly increasing"):
        AdcTable((3, 2, 5), (0, 1, 2, 3))
    with pytest.raises(PlanError, match="need 3 thresholds"):
        AdcTable((1, 2), (0, 1, 2, 3))
    f = tmp_path / "t.json"
    f.write_text(json.dumps({"thresholds": [1], "levels": [0, 1]}))
    with pytest.raises(PlanError, match="adc_bits=3 needs 8"):
        adc_from_file(f, 3)


def test_rshift_round_is_half_up() -> None:
    v = np.array([-6, -5, -3, -2, -1, 0, 1, 2, 3, 5, 6])
    np.testing.assert_array_equal(golden.rshift_round(v, 1), [-3, -2, -1, -1, 0, 0, 1, 1, 2, 3, 3])
    np.testing.assert_array_equal(golden.rshift_round(v, -2), v * 4)


def test_stochastic_rounding_is_unbiased() -> None:
    g = np.full((64, 64), 3, dtype=np.int64)  # 3/8 = 0.375
    r = golden.round_gradient(g, 3, "stochastic", 0, 7, 0)
    assert set(np.unique(r)) <= {0, 1}
    assert abs(r.mean() - 0.375) < 0.03


def test_lfsr_is_the_specified_polynomial() -> None:
    # Golden vector of the contract: first 32 bits from seed 1 with mask 0x80200003.
    bits = lfsr_bits(1, 32)
    state, ref = 1, []
    for _ in range(32):
        b = state & 1
        state = (state >> 1) ^ (MASK if b else 0)
        ref.append(b)
    assert bits.tolist() == ref
    # Frozen vector (bit i of the word = output i): the RTL's LFSR must produce the same.
    assert int("".join(map(str, bits[::-1])), 2) == 0x8A2DB6DB
    m = feedback_matrix(0xACE1, 0, 10, 256)
    assert set(np.unique(m)) == {-1, 1}
    assert abs(m.mean()) < 0.1
    assert not np.array_equal(m, feedback_matrix(0xACE1, 1, 10, 256))


def test_cimlinear_module_trains_in_a_user_model() -> None:
    torch.manual_seed(0)
    x = torch.rand(32, 64)
    exact = CIMLinear(64, 10, adc_bits=9)  # full-scale 9-bit ADC: only 8-bit quantization left
    assert torch.allclose(exact(x), x @ exact.weight.t(), atol=0.05)
    layer = CIMLinear(64, 10, adc_bits=5)
    y = layer(x)
    assert y.shape == (32, 10)
    ref = x @ layer.weight.t()
    corr = torch.corrcoef(torch.stack([y.flatten(), ref.flatten()]))[0, 1]
    # A full-scale 5-bit ADC visibly quantizes, yet y still tracks x @ W.
    assert (y - ref).abs().max() > 0.05 and corr > 0.8
    y.sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="weight_bits=7 must be a multiple of cell_bits=2"):
        CIMLinear(4, 4, weight_bits=7)
    with pytest.raises(ValueError, match="encoding='x'"):
        CIMLinear(4, 4, encoding="x")
