"""cocotb testbenches for the registered 8-bit adder of tests/test_hdl_flows.py.

Not a pytest module: the simulator's embedded Python imports it (``run_cocotb(...,
"cocotb_adder", ...)``). Two benches, selected with ``testcase=``:

- ``adder_random_vectors`` drives the adder itself (top ``adder``: ``clk``, ``rst``, ``a``,
  ``b``, ``sum``) with random vectors and occasional resets, against a Python model.
- ``ioshell_scan`` drives the same adder through the scan-chain I/O shell of
  :func:`insitu.hdl.fpga.write_io_shell` (top ``adder_ioshell``), whose chain layout arrives as
  JSON in ``IOSHELL_LAYOUT``.

Inputs are driven on the falling edge, so the rising edge samples settled values in every
simulator. Configuration comes from the environment: ``ADDER_VECTORS``, ``ADDER_SEED``, and
``ADDER_MODEL_OFFSET`` (a deliberate model error, to test that failures are reported).
"""

from __future__ import annotations

import json
import os
import random
from typing import Any

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, RisingEdge

WIDTH = 8
MASK = (1 << WIDTH) - 1


def _model(a: int, b: int) -> int:
    """The adder's registered output for inputs *a*, *b* (plus the deliberate test error)."""
    return (a + b + int(os.environ.get("ADDER_MODEL_OFFSET", "0"))) & ((1 << (WIDTH + 1)) - 1)


@cocotb.test()
async def adder_random_vectors(dut: Any) -> None:
    """Random vectors with ~10% reset cycles; sum must equal a + b one clock later."""
    vectors = int(os.environ.get("ADDER_VECTORS", "200"))
    rng = random.Random(int(os.environ.get("ADDER_SEED", "1")))
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    dut.a.value = 0
    dut.b.value = 0
    # Hold reset two cycles: at time 0 simulators disagree on whether the first edge counts.
    await ClockCycles(dut.clk, 2)
    await ReadOnly()
    assert dut.sum.value.to_unsigned() == 0, "sum not cleared by reset"

    expected = 0
    for i in range(vectors):
        await FallingEdge(dut.clk)
        a, b = rng.randrange(MASK + 1), rng.randrange(MASK + 1)
        reset = rng.random() < 0.1
        dut.a.value = a
        dut.b.value = b
        dut.rst.value = int(reset)
        await RisingEdge(dut.clk)
        # Right after the edge cocotb still sees the register's pre-edge value.
        assert dut.sum.value.to_unsigned() == expected, f"vector {i}: pre-edge value changed"
        await ReadOnly()
        expected = 0 if reset else _model(a, b)
        got = dut.sum.value.to_unsigned()
        assert got == expected, f"vector {i}: {a} + {b} (rst={int(reset)}) gave {got}"


@cocotb.test()
async def ioshell_scan(dut: Any) -> None:
    """Shift vectors into the shell, let the adder run, shift the sum out, MSB first."""
    layout = json.loads(os.environ["IOSHELL_LAYOUT"])
    inputs = {p["name"]: p for p in layout["inputs"]}
    outputs = {p["name"]: p for p in layout["outputs"]}
    in_bits = sum(p["width"] for p in inputs.values())
    out_bits = sum(p["width"] for p in outputs.values())
    vectors = int(os.environ.get("ADDER_VECTORS", "20"))
    rng = random.Random(int(os.environ.get("ADDER_SEED", "1")))

    Clock(dut.clk, 10, unit="ns").start()
    dut.scan_en.value = 0
    dut.scan_in.value = 0
    await FallingEdge(dut.clk)

    async def shift_in(values: dict[str, int]) -> None:
        word = sum(values[name] << port["offset"] for name, port in inputs.items())
        dut.scan_en.value = 1
        for bit in reversed(range(in_bits)):
            dut.scan_in.value = (word >> bit) & 1
            await FallingEdge(dut.clk)
        dut.scan_en.value = 0

    async def capture_and_shift_out() -> dict[str, int]:
        # Edge 1: the adder registers its inputs' sum; edge 2: the output chain captures it.
        await ClockCycles(dut.clk, 2)
        await FallingEdge(dut.clk)
        dut.scan_en.value = 1
        word = 0
        for _ in range(out_bits):
            word = (word << 1) | int(dut.scan_out.value)  # 1-bit handles give a Logic
            await FallingEdge(dut.clk)
        dut.scan_en.value = 0
        return {
            name: (word >> port["offset"]) & ((1 << port["width"]) - 1)
            for name, port in outputs.items()
        }

    await shift_in({"a": 0x5A, "b": 0x33, "rst": 1})
    assert (await capture_and_shift_out())["sum"] == 0, "reset through the shell failed"
    for i in range(vectors):
        a, b = rng.randrange(MASK + 1), rng.randrange(MASK + 1)
        await shift_in({"a": a, "b": b, "rst": 0})
        got = (await capture_and_shift_out())["sum"]
        assert got == _model(a, b), f"vector {i}: {a} + {b} gave {got} through the shell"
