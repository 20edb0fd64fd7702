"""Run host programs on the chip in Amaranth's simulator (no compiler needed; tiny designs).

A program is a list of steps: a command ``(address, data, write)`` or :data:`WAIT`, which
waits until the chip is idle. The reads' data come back in order. This is the slowest backend
(thousands of cycles per second); unit tests and tiny design points use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from amaranth.sim import Simulator

from .chip import Chip
from .host import Command

WAIT = "wait"
Step = Command | str


def simulate(
    chip: Chip, program: Sequence[Step], *, max_cycles: int = 10_000_000
) -> tuple[list[int], int]:
    """Execute ``program``; returns (read data, cycles simulated)."""
    results: list[int] = []
    cycles = [0]

    async def bench(ctx: Any) -> None:
        ctx.set(chip.rsp.ready, 1)

        async def tick() -> None:
            await ctx.tick()
            cycles[0] += 1
            if cycles[0] > max_cycles:
                raise RuntimeError(f"simulation passed {max_cycles} cycles")

        await tick()
        await tick()
        for item in program:
            if isinstance(item, str):
                while ctx.get(chip.busy):
                    await tick()
                continue
            addr, data, write = item
            ctx.set(chip.cmd.payload, {"addr": addr, "data": data, "write": int(write)})
            ctx.set(chip.cmd.valid, 1)
            while True:
                ready = ctx.get(chip.cmd.ready)
                await tick()
                if ready:
                    break
            ctx.set(chip.cmd.valid, 0)
            if not write:
                while not ctx.get(chip.rsp.valid):
                    await tick()
                results.append(int(ctx.get(chip.rsp.payload)))
                await tick()

    sim = Simulator(chip)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return results, cycles[0]
