"""Tests for the H-tree interconnect (hdl/htree.py) in Amaranth's simulator.

Every bench is one async testbench that, each cycle, drives the inputs, lets the combinational
logic settle (``ctx.get`` after ``ctx.set``), records the handshakes that happen at the coming
edge, then ticks. Keeping producers and consumers in one coroutine makes the cycle accounting
exact and is cheaper than one process per port.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator

from insitu.hdl.htree import HTree

# Shape-only tests build HTrees they never elaborate.
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

CONFIGS = [(1, 8), (2, 4), (3, 8), (4, 1), (5, 6), (8, 16)]

Bench = Callable[[Any], Awaitable[None]]


def _simulate(dut: HTree, bench: Bench) -> None:
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def _leaf_share(dut: HTree, leaf: int) -> float:
    """Fraction of the root's bandwidth that leaf gets when every leaf always has data."""
    share = 1.0
    for level in range(dut.depth):
        node = leaf >> (dut.depth - level)
        children = sum(1 for c in (0, 1) if (2 * node + c) < dut.nodes_at(level + 1))
        share /= children
    return share


# -- construction -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"leaves": 0, "data_width": 8}, ValueError, r"leaves must be an integer >= 1, not 0"),
        ({"leaves": -3, "data_width": 8}, ValueError, r"leaves must be an integer >= 1, not -3"),
        ({"leaves": 2.0, "data_width": 8}, TypeError, r"leaves .* not 2\.0 \(of type float\)"),
        ({"leaves": True, "data_width": 8}, TypeError, r"leaves .* not True \(of type bool\)"),
        ({"leaves": "4", "data_width": 8}, TypeError, r"leaves .* not '4' \(of type str\)"),
        ({"leaves": 4, "data_width": 0}, ValueError, r"data_width must be an integer >= 1, not 0"),
        ({"leaves": 4, "data_width": None}, TypeError, r"data_width .* not None"),
    ],
)
def test_constructor_validation(kwargs: dict[str, Any], exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        HTree(**kwargs)


def test_constructor_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        HTree(4, 8)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("leaves", "depth", "links"),
    [(1, 1, 1), (2, 1, 2), (3, 2, 5), (4, 2, 6), (5, 3, 10), (8, 3, 14), (9, 4, 9 + 5 + 3 + 2)],
)
def test_shape_properties(leaves: int, depth: int, links: int) -> None:
    dut = HTree(leaves=leaves, data_width=5)
    assert (dut.leaves, dut.data_width, dut.depth, dut.links) == (leaves, 5, depth, links)
    with pytest.raises(AttributeError):
        dut.depth = 7  # type: ignore[misc]
    with pytest.raises(ValueError, match=rf"level must be in 0\.\.{depth}, not {depth + 1}"):
        dut.nodes_at(depth + 1)


@pytest.mark.parametrize("leaves", [1, 3, 8])
def test_verilog_export(leaves: int) -> None:
    text = verilog.convert(HTree(leaves=leaves, data_width=8), name="htree", emit_src=False)
    assert "module htree(" in text
    for port in ("down__valid", "down__ready", "up__payload", "hops", "hops_down", "hops_up"):
        assert port in text
    assert f"leaf__{leaves - 1}__payload" in text
    assert f"up_leaf__{leaves - 1}__ready" in text
    assert "(* src" not in text  # emit_src=False: no source attributes
    assert "[-1:0]" not in text  # no zero-width wires, which other tools misread


# -- downward path ------------------------------------------------------------------------


@pytest.mark.parametrize(("leaves", "data_width"), CONFIGS)
def test_down_random_traffic(leaves: int, data_width: int) -> None:
    """Unicast + broadcast (+ out-of-range dest), random valid gaps, random leaf backpressure."""
    rng = random.Random(7919 * leaves + data_width)
    dut = HTree(leaves=leaves, data_width=data_width)
    n_items = 1000
    slots = 1 << dut.depth
    items: list[tuple[int, int, int]] = []
    for _ in range(n_items):
        r = rng.random()
        if r < 0.25:
            dest, bcast = rng.randrange(slots), 1  # dest is ignored by a broadcast
        elif r < 0.30 and slots > leaves:
            dest, bcast = rng.randrange(leaves, slots), 0  # out of range: dropped at the root
        else:
            dest, bcast = rng.randrange(leaves), 0
        items.append((rng.randrange(1 << data_width), dest, bcast))
    expected = [[v for v, d, b in items if b or d == k] for k in range(leaves)]
    expected_hops = sum(dut.links if b else dut.depth if d < leaves else 0 for _, d, b in items)
    received: list[list[int]] = [[] for _ in range(leaves)]
    stats = {"cycles": 0, "hops": -1, "extra": 0}

    async def bench(ctx: Any) -> None:
        sent, holding = 0, False
        for cycle in range(60 * n_items):
            if not holding and sent < n_items and rng.random() < 0.7:
                holding = True
            if holding:
                value, dest, bcast = items[sent]
            else:  # garbage payload while idle must not matter
                value, dest, bcast = (rng.randrange(1 << data_width), rng.randrange(slots), 1)
            ctx.set(dut.down.payload, {"data": value, "dest": dest, "broadcast": bcast})
            ctx.set(dut.down.valid, holding)
            readies = [rng.random() < 0.6 for _ in range(leaves)]
            for port, ready in zip(dut.leaf, readies, strict=True):
                ctx.set(port.ready, ready)
            if holding and ctx.get(dut.down.ready):
                sent, holding = sent + 1, False
            for k, port in enumerate(dut.leaf):
                if readies[k] and ctx.get(port.valid):
                    received[k].append(ctx.get(port.payload))
            await ctx.tick()
            if sent == n_items and all(
                len(r) == len(e) for r, e in zip(received, expected, strict=True)
            ):
                stats["cycles"] = cycle + 1
                break
        ctx.set(dut.down.valid, 0)
        for _ in range(2 * dut.depth + 4):
            for port in dut.leaf:
                ctx.set(port.ready, 1)
                stats["extra"] += ctx.get(port.valid)
            await ctx.tick()
        stats["hops"] = ctx.get(dut.hops_down)
        assert ctx.get(dut.hops) == stats["hops"] + ctx.get(dut.hops_up)
        assert ctx.get(dut.hops_up) == 0

    _simulate(dut, bench)
    assert stats["cycles"] > 0, "traffic did not drain"
    assert received == expected
    assert stats["extra"] == 0
    assert stats["hops"] == expected_hops


@pytest.mark.parametrize("leaves", [1, 2, 3, 5, 8])
def test_down_latency_and_throughput(leaves: int) -> None:
    """No backpressure: arrival exactly `depth` cycles after acceptance, 1 item/cycle."""
    rng = random.Random(leaves)
    dut = HTree(leaves=leaves, data_width=8)
    n_items = 48
    # Item j carries data j, so arrivals identify themselves.
    plan = [(j, rng.randrange(leaves), int(rng.random() < 0.2)) for j in range(n_items)]
    gap = 3 * dut.depth  # an isolated unicast first, then a back-to-back burst
    accepted: dict[int, int] = {}
    arrivals: list[tuple[int, int, int]] = []  # (cycle, leaf, data)

    async def bench(ctx: Any) -> None:
        for port in dut.leaf:
            ctx.set(port.ready, 1)
        queue = [plan[0], *([None] * gap), *plan[1:], *([None] * (dut.depth + 2))]
        for cycle, item in enumerate(queue):
            ctx.set(dut.down.valid, item is not None)
            if item is not None:
                data, dest, bcast = item
                ctx.set(dut.down.payload, {"data": data, "dest": dest, "broadcast": bcast})
                assert ctx.get(dut.down.ready), f"root stalled at cycle {cycle}"
                accepted[data] = cycle
            for k, port in enumerate(dut.leaf):
                if ctx.get(port.valid):
                    arrivals.append((cycle, k, ctx.get(port.payload)))
            await ctx.tick()

    _simulate(dut, bench)
    expected = sorted(
        (accepted[data] + dut.depth, k, data)
        for data, dest, bcast in plan
        for k in range(leaves)
        if bcast or k == dest
    )
    assert sorted(arrivals) == expected
    burst = [accepted[j] for j in range(1, n_items)]
    assert burst == list(range(burst[0], burst[0] + n_items - 1)), "burst not 1 item/cycle"


def test_down_hop_count_hand_computed() -> None:
    """5 leaves, depth 3: links per level 2 + 3 + 5 = 10; unicast 3; out-of-range dest 0."""
    dut = HTree(leaves=5, data_width=4)
    readings: list[int] = []

    async def bench(ctx: Any) -> None:
        for port in dut.leaf:
            ctx.set(port.ready, 1)
        for dest, bcast in [(0, 1), (4, 0), (7, 0), (2, 0)]:
            ctx.set(dut.down.payload, {"data": 5, "dest": dest, "broadcast": bcast})
            ctx.set(dut.down.valid, 1)
            await ctx.tick()
            ctx.set(dut.down.valid, 0)
            await ctx.tick().repeat(dut.depth + 1)
            readings.append(ctx.get(dut.hops_down))

    _simulate(dut, bench)
    assert readings == [10, 13, 13, 16]


# -- upward path --------------------------------------------------------------------------


@pytest.mark.parametrize(("leaves", "data_width"), CONFIGS)
def test_up_random_traffic(leaves: int, data_width: int) -> None:
    """Random gaps at every leaf, random ready on `up`: each item once, right src, in order."""
    rng = random.Random(104729 * leaves + data_width)
    dut = HTree(leaves=leaves, data_width=data_width)
    per_leaf = -(-1000 // leaves)
    sources = [[rng.randrange(1 << data_width) for _ in range(per_leaf)] for _ in range(leaves)]
    delivered: list[list[int]] = [[] for _ in range(leaves)]
    stats = {"cycles": 0, "hops_up": -1, "hops": -1, "extra": 0}

    async def bench(ctx: Any) -> None:
        sent = [0] * leaves
        holding = [False] * leaves
        total = per_leaf * leaves
        for cycle in range(40 * total):
            for k, port in enumerate(dut.up_leaf):
                if not holding[k] and sent[k] < per_leaf and rng.random() < 0.5:
                    holding[k] = True
                value = sources[k][sent[k]] if holding[k] else rng.randrange(1 << data_width)
                ctx.set(port.payload, value)
                ctx.set(port.valid, holding[k])
            ready = rng.random() < 0.7
            ctx.set(dut.up.ready, ready)
            for k, port in enumerate(dut.up_leaf):
                if holding[k] and ctx.get(port.ready):
                    sent[k], holding[k] = sent[k] + 1, False
            if ready and ctx.get(dut.up.valid):
                out = ctx.get(dut.up.payload)
                assert out.src < leaves, f"bad src {out.src}"
                delivered[out.src].append(out.data)
            await ctx.tick()
            if sum(map(len, delivered)) == total:
                stats["cycles"] = cycle + 1
                break
        for port in dut.up_leaf:
            ctx.set(port.valid, 0)
        ctx.set(dut.up.ready, 1)
        for _ in range(2 * dut.depth + 4):
            stats["extra"] += ctx.get(dut.up.valid)
            await ctx.tick()
        stats["hops_up"] = ctx.get(dut.hops_up)
        stats["hops"] = ctx.get(dut.hops)

    _simulate(dut, bench)
    assert stats["cycles"] > 0, "traffic did not drain"
    assert delivered == sources
    assert stats["extra"] == 0
    assert stats["hops_up"] == stats["hops"] == dut.depth * per_leaf * leaves


@pytest.mark.parametrize("leaves", [1, 2, 3, 5, 8])
def test_up_latency_and_throughput(leaves: int) -> None:
    """An isolated item reaches `up` after `depth` cycles; saturated leaves give 1 item/cycle."""
    dut = HTree(leaves=leaves, data_width=8)
    cycles = 64
    seen: list[tuple[int, int, int]] = []  # (cycle, src, data)
    offered: dict[tuple[int, int], int] = {}  # (src, data) -> acceptance cycle

    async def bench(ctx: Any) -> None:
        ctx.set(dut.up.ready, 1)
        sent = [0] * leaves
        last = leaves - 1
        for cycle in range(cycles):
            # Cycle 0: only the last leaf offers one item; from cycle 3*depth on, every leaf does.
            for k, port in enumerate(dut.up_leaf):
                active = (cycle == 0 and k == last) or cycle >= 3 * dut.depth
                ctx.set(port.valid, active)
                ctx.set(port.payload, sent[k] & 0xFF)
            for k, port in enumerate(dut.up_leaf):
                if ctx.get(port.valid) and ctx.get(port.ready):
                    offered[(k, sent[k] & 0xFF)] = cycle
                    sent[k] += 1
            if ctx.get(dut.up.valid):
                out = ctx.get(dut.up.payload)
                seen.append((cycle, out.src, out.data))
            await ctx.tick()

    _simulate(dut, bench)
    first = seen[0]
    assert first == (dut.depth, leaves - 1, 0)
    for cycle, src, data in seen:
        assert cycle - offered[(src, data)] >= dut.depth
    saturated = [c for c, _, _ in seen if c >= 4 * dut.depth]
    assert saturated == list(range(4 * dut.depth, cycles)), "up path below 1 item/cycle"


@pytest.mark.parametrize("leaves", [2, 3, 5, 8])
def test_up_round_robin_no_starvation(leaves: int) -> None:
    """All leaves always valid, random ready: every leaf gets its per-node fair share."""
    rng = random.Random(leaves)
    dut = HTree(leaves=leaves, data_width=4)
    counts = [0] * leaves

    async def bench(ctx: Any) -> None:
        for port in dut.up_leaf:
            ctx.set(port.valid, 1)
        for _ in range(400):
            ready = rng.random() < 0.7
            ctx.set(dut.up.ready, ready)
            if ready and ctx.get(dut.up.valid):
                counts[ctx.get(dut.up.payload).src] += 1
            await ctx.tick()

    _simulate(dut, bench)
    total = sum(counts)
    assert total > 200
    for k in range(leaves):
        fair = _leaf_share(dut, k) * total
        assert abs(counts[k] - fair) <= dut.depth + 1, (k, counts, fair)
    if leaves & (leaves - 1) == 0:  # complete tree: globally equal shares
        assert max(counts) - min(counts) <= dut.depth
