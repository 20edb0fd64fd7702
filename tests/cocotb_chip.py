"""cocotb testbenches for the generated chip top (``insitu_chip``) against the golden model.

Not a pytest module: the simulator's embedded Python imports it (``run_cocotb(...,
"cocotb_chip", ...)`` from ``tests/test_hdl_cocotb.py``). It owns the chip-level random
verification: a host-port driver with random valid gaps and response backpressure, the random
stimulus (weights over the full signed range, inputs, labels, ADC tables, gradient shifts, step
values) and the bit-exact comparison of everything the chip stores with
:mod:`insitu.algo.golden` after every batch.

The design point arrives as a JSON file named by ``CHIP_TB_CONFIG`` (written by the pytest
side, ``tests/test_hdl_cocotb.py``)::

    {"chip": ChipParams.to_dict(), "plan": IntegerPlan.to_dict(), "seed": 1,
     "samples": 100, "adc": "mixed" | "random" | "plan", "gap": 0.3, "stall": 0.3,
     "infer_every": 5, "read_policy": "any" | "one", "model_error": false}

(every key but ``chip`` and ``plan`` is optional, see :class:`TbConfig`).

Benches (select with ``testcase=``):

- ``chip_random_batches``: loads random weights, then runs training batches of random size
  (1..batch, mostly full) until ``samples`` samples have been trained, with an inference-only
  batch about every ``infer_every`` batches (at least one, at the end). Per batch it may
  rewrite the ADC tables (random strictly increasing thresholds and sorted levels, or the
  plan's uniform table), the gradient shifts, the step register and some weights, in a
  shuffled command order; the first batch may also run on the registers' reset values. After
  START it waits for ``busy`` to fall, polls the BUSY register, or queues its reads behind the
  batch. It then reads back, in shuffled order, the outputs, hidden activations (ACT of layers
  >= 1), deltas of every layer, all weights, the step, the counters (and sometimes the inputs,
  labels and plan registers) and compares them bit for bit with the golden model; the first
  mismatch fails with a readable diff (what, layer, sample, index, expected vs got, plus the
  batch's inputs and plan registers). Counters: samples and batches exact, the phase cycles
  sum to ``cycles_busy``, ``host_words``/``dram_bits`` exact, the event counters count.
- ``chip_mismatch_report``: the bench with a deliberate model error must fail with that diff.
- ``chip_back_to_back_reads``: reads offered on consecutive cycles while the response is held
  off: every read must be answered exactly once, in order (a protocol check).

Inputs are driven right after a rising edge and outputs sampled right after the next one (the
pre-edge values, which is what the chip saw at that edge).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge

from insitu.algo import golden
from insitu.algo.plan import AdcTable, IntegerPlan
from insitu.hdl import host
from insitu.hdl.chip import CHIP_ID
from insitu.hdl.memory_map import COUNTERS, CTRL, Region, address, word_payload
from insitu.hdl.params import ChipParams, LayerHW

CONFIG_ENV = "CHIP_TB_CONFIG"
M32 = 0xFFFFFFFF
PHASES = ("cycles_forward", "cycles_backward", "cycles_update")


# --------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class TbConfig:
    """One run of the bench: the chip, its plan and the stimulus knobs."""

    chip: ChipParams
    plan: IntegerPlan
    seed: int = 1
    samples: int = 100
    adc: str = "mixed"  # mixed | random | plan
    gap: float = 0.3  # probability of an idle cycle before a command
    stall: float = 0.3  # probability that rsp__ready is low in a cycle
    infer_every: int = 5  # about one inference-only batch per this many (<= 0: only the last)
    # "one": offer no read while a read's response is outstanding; "any": reads back to back
    read_policy: str = "any"
    # a deliberate model error (expected W[0][0, 0] of layer 0 off by one after the first
    # training batch), to test that mismatches are reported
    model_error: bool = False
    max_cycles: int = 20_000_000


def chip_params_from_dict(d: dict[str, Any]) -> ChipParams:
    """Inverse of :meth:`ChipParams.to_dict` (JSON turns the tuples into lists)."""
    fields = {f.name for f in dataclasses.fields(ChipParams)}
    kw = {k: v for k, v in d.items() if k in fields}
    kw["widths"] = tuple(kw["widths"])
    kw["layers"] = tuple(
        LayerHW(**{**lay, "thresholds": tuple(lay["thresholds"]), "levels": tuple(lay["levels"])})
        for lay in kw["layers"]
    )
    return ChipParams(**kw)


def load_config() -> TbConfig:
    path = os.environ.get(CONFIG_ENV)
    if not path:
        raise RuntimeError(f"${CONFIG_ENV} must name the bench's JSON configuration")
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    knobs = {k: v for k, v in doc.items() if k not in ("chip", "plan")}
    return TbConfig(
        chip=chip_params_from_dict(doc["chip"]), plan=IntegerPlan.from_dict(doc["plan"]), **knobs
    )


def describe(p: ChipParams) -> str:
    return (
        f"{p.rule} {p.encoding} {p.rounding} {p.error} widths={list(p.widths)} rows={p.rows} "
        f"cols={p.cols} cell_bits={p.cell_bits} A={p.activation_bits} Wb={p.weight_bits} "
        f"E={p.error_bits} G={p.gradient_bits} adc_bits={p.adc_bits} "
        f"cols_per_adc={p.cols_per_adc} batch={p.batch} wgu={p.wgu} tiles={p.tiles}"
    )


# --------------------------------------------------------------------------- host port driver
def describe_address(addr: int) -> str:
    """``REGION layer L offset 0x..`` for error messages."""
    region = addr >> 28
    name = Region(region).name if region in set(Region) else f"region {region}"
    return f"{name} layer {(addr >> 24) & 0xF} offset {addr & 0xFFFFFF:#x}"


class HostPort:
    """Executes host commands on ``cmd``/``rsp`` with random gaps and backpressure."""

    def __init__(
        self,
        dut: Any,
        rng: random.Random,
        gap: float,
        stall: float,
        max_cycles: int,
        stuck_cycles: int = 200_000,
        read_policy: str = "any",
    ) -> None:
        self.dut = dut
        self.read_policy = read_policy
        self.stuck_cycles = stuck_cycles
        self.rng = rng
        self.gap = gap
        self.stall = stall
        self.max_cycles = max_cycles
        self.accepted = 0  # commands transferred since reset
        # data bits of a command's address (hdl.memory_map.word_payload) when set: bits_at[k]
        # is the payload of the first k + 1 commands, what dram_bits reads after command k + 1
        self.payload: Callable[[int], int] | None = None
        self.bits_at: list[int] = []
        self.cycles = 0
        self._valid = 0
        self._ready = -1
        self._edge = RisingEdge(dut.clk)
        self._cmd_ready = dut.cmd__ready
        self._rsp_valid = dut.rsp__valid
        self._rsp_payload = dut.rsp__payload
        dut.cmd__valid.value = 0
        dut.cmd__payload.value = 0
        dut.rsp__ready.value = 0

    def _set_valid(self, v: int) -> None:
        if v != self._valid:
            self.dut.cmd__valid.value = v
            self._valid = v

    def _set_ready(self, v: int) -> None:
        if v != self._ready:
            self.dut.rsp__ready.value = v
            self._ready = v

    async def run(
        self, cmds: Sequence[host.Command], *, gap: float | None = None, stall: float | None = None
    ) -> tuple[list[int], list[int]]:
        """Run ``cmds`` in order; returns (read data in order, ordinal of each command).

        The ordinal is the command's position among all commands accepted since reset,
        counting from 1 (what the ``host_words`` counter reads right after it).
        """
        gap = self.gap if gap is None else gap
        stall = self.stall if stall is None else stall
        rng = self.rng
        # local handles and one reusable trigger: this loop runs once per clock cycle
        edge, payload = self._edge, self.dut.cmd__payload
        cmd_ready, rsp_valid, rsp_payload = self._cmd_ready, self._rsp_valid, self._rsp_payload
        one_read = self.read_policy == "one"
        n_cmds = len(cmds)
        read_addrs = [c[0] for c in cmds if not c[2]]
        reads = len(read_addrs)
        data: list[int] = []
        ordinals: list[int] = []
        i = 0
        driving = False
        idle_cycles = 0
        reads_taken = 0  # reads accepted so far in this call
        while i < n_cmds or len(data) < reads:
            if not driving and i < n_cmds:
                addr, value, write = cmds[i]
                hold = one_read and not write and reads_taken > len(data)
                if not hold and (gap <= 0 or rng.random() >= gap):
                    payload.value = (addr & M32) | ((value & M32) << 32) | (int(write) << 64)
                    self._set_valid(1)
                    driving = True
                else:
                    self._set_valid(0)
            elif not driving:
                self._set_valid(0)
            ready = 0 if stall > 0 and rng.random() < stall else 1
            self._set_ready(ready)
            await edge
            self.cycles += 1
            idle_cycles += 1
            # pre-edge values: what the chip saw at this edge
            if driving and int(cmd_ready.value):
                self.accepted += 1
                ordinals.append(self.accepted)
                if self.payload is not None:
                    last = self.bits_at[-1] if self.bits_at else 0
                    self.bits_at.append(last + self.payload(cmds[i][0]))
                if not cmds[i][2]:
                    reads_taken += 1
                i += 1
                driving = False
                idle_cycles = 0
            if ready and int(rsp_valid.value):
                if len(data) >= reads:
                    raise AssertionError(
                        f"rsp__valid without a pending read (after command {self.accepted})"
                    )
                word = rsp_payload.value
                try:
                    data.append(word.to_unsigned())
                except ValueError:
                    addr = read_addrs[len(data)]
                    raise AssertionError(
                        f"response to the read of {addr:#010x} ({describe_address(addr)}) "
                        f"is {word} (X or Z bits)"
                    ) from None
                idle_cycles = 0
            if idle_cycles > self.stuck_cycles or self.cycles > self.max_cycles:
                raise AssertionError(
                    f"host port stuck: {i}/{n_cmds} commands sent, {len(data)}/{reads} "
                    f"responses, busy={int(self.dut.busy.value)}"
                )
        self._set_valid(0)
        return data, ordinals

    async def wait_idle(self, mode: str) -> None:
        """Wait for the batch started by the last command to finish.

        ``edge``: wait for ``busy`` to fall; ``poll``: read the BUSY register through the host
        port (CTRL reads are served while busy).
        """
        dut = self.dut
        await FallingEdge(dut.clk)
        if not int(dut.busy.value):
            raise AssertionError("busy did not rise after START")
        if mode == "edge":
            await FallingEdge(dut.busy)
            await RisingEdge(dut.clk)
            return
        busy_addr = address(Region.CTRL, CTRL["busy"])
        while True:
            (word,), _ = await self.run([(busy_addr, 0, False)])
            if word == 0:
                if int(dut.busy.value):
                    raise AssertionError("BUSY register reads 0 while busy is high")
                return
            if word != 1:
                raise AssertionError(f"BUSY register reads {word}, expected 0 or 1")


async def reset(dut: Any) -> None:
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    dut.cmd__valid.value = 0
    dut.cmd__payload.value = 0
    dut.rsp__ready.value = 0
    # two cycles: simulators disagree on whether the edge at time 0 counts
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    await RisingEdge(dut.clk)


# --------------------------------------------------------------------------- stimulus
def random_weights(p: ChipParams, rng: np.random.Generator) -> list[np.ndarray]:
    top = 2 ** (p.weight_bits - 1) - 1
    return [
        rng.integers(-top, top + 1, size=(lay.fan_in, lay.fan_out), dtype=np.int64)
        for lay in p.layers
    ]


def random_inputs(p: ChipParams, n: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform over the full range, sparse, or mostly saturated inputs."""
    top = 2**p.activation_bits - 1
    a = rng.integers(0, top + 1, size=(n, p.widths[0]), dtype=np.int64)
    style = rng.integers(0, 4)
    if style == 1:
        a[rng.random(a.shape) < 0.7] = 0
    elif style == 2:
        a[rng.random(a.shape) < 0.7] = top
    return a


def random_adc(p: ChipParams, rng: random.Random) -> AdcTable:
    """Random strictly increasing thresholds and sorted levels that fit the chip's registers."""
    n = p.adc_levels
    max_sum = p.rows * (2**p.cell_bits - 1)
    lo = 0 if rng.random() < 0.1 else 1
    t_top = min(2**p.threshold_bits - 1, max(max_sum + 2, lo + n - 2))
    thresholds = sorted(rng.sample(range(lo, t_top + 1), n - 1))
    v_top = rng.choice([max_sum, 2**p.level_bits - 1, rng.randint(0, 2**p.level_bits - 1)])
    if v_top + 1 >= n and rng.random() < 0.8:
        levels = sorted(rng.sample(range(v_top + 1), n))  # strictly increasing
    else:
        levels = sorted(rng.randint(0, v_top) for _ in range(n))  # repeats allowed
    if rng.random() < 0.5:
        levels[0] = 0
    return AdcTable(tuple(thresholds), tuple(levels))


def random_grad_shift(plan_shift: int, rng: random.Random) -> int:
    if rng.random() < 0.1:
        return rng.randint(0, 40)
    return min(63, max(0, plan_shift + rng.randint(-2, 2)))


# --------------------------------------------------------------------------- checking
@dataclass
class BatchState:
    """What the chip holds between batches, as the golden model tracks it."""

    weights: list[np.ndarray]
    plan: IntegerPlan  # current ADC tables and gradient shifts
    step: int
    counters: dict[str, int]


class Mismatch(AssertionError):
    pass


def compare(
    what: str,
    expected: np.ndarray,
    got: np.ndarray,
    index_names: tuple[str, str],
    context: str,
    extra: str = "",
) -> None:
    """Fail with a readable diff (up to 10 differing values) when the arrays differ."""
    expected = np.asarray(expected, dtype=np.int64)
    got = np.asarray(got, dtype=np.int64)
    if expected.shape == got.shape and np.array_equal(expected, got):
        return
    if expected.shape != got.shape:
        raise Mismatch(f"{context}: {what}: shape {got.shape}, expected {expected.shape}")
    bad = np.argwhere(expected != got)
    lines = [f"{context}: {what} differ at {len(bad)} of {expected.size} values:"]
    for row, col in bad[:10]:
        lines.append(
            f"  {index_names[0]} {row}, {index_names[1]} {col}: "
            f"expected {expected[row, col]}, got {got[row, col]}"
        )
    if len(bad) > 10:
        lines.append(f"  ... and {len(bad) - 10} more")
    if extra:
        lines.append(extra)
    raise Mismatch("\n".join(lines))


def _signed32(v: int) -> int:
    v &= M32
    return v - (1 << 32) if v >= 1 << 31 else v


class ChipBench:
    """Random batches on the chip, each checked against the golden model."""

    def __init__(self, dut: Any, cfg: TbConfig) -> None:
        self.dut = dut
        self.cfg = cfg
        self.p = cfg.chip
        self.rng = random.Random(cfg.seed)
        self.nrng = np.random.default_rng(cfg.seed)
        self.port = HostPort(
            dut, self.rng, cfg.gap, cfg.stall, cfg.max_cycles, read_policy=cfg.read_policy
        )
        self.port.payload = functools.partial(word_payload, self.p)
        self.log = dut._log
        self.samples_trained = 0
        self.samples_inferred = 0
        self.batches = 0

    # ----------------------------------------------------------------- one batch
    def _plan_writes(self, st: BatchState, first: bool) -> tuple[IntegerPlan, int, list[Any]]:
        """Maybe new ADC tables, gradient shifts and step; returns the plan, step, commands."""
        p, cfg, rng = self.p, self.cfg, self.rng
        plan, step = st.plan, st.step
        cmds: list[host.Command] = []
        if first or rng.random() < 0.5:
            tables = []
            for i in range(p.num_layers):
                mode = cfg.adc if cfg.adc != "mixed" else rng.choice(["random", "random", "plan"])
                tables.append(random_adc(p, rng) if mode == "random" else cfg.plan.layers[i].adc)
            shifts = [
                random_grad_shift(lp.grad_shift, rng) if rng.random() < 0.5 else lp.grad_shift
                for lp in cfg.plan.layers
            ]
            with_tables = plan.with_adc(tables)
            plan = dataclasses.replace(
                with_tables,
                layers=tuple(
                    dataclasses.replace(lp, grad_shift=s)
                    for lp, s in zip(with_tables.layers, shifts, strict=True)
                ),
            )
            new_step = step
            if first or rng.random() < 0.2:
                new_step = rng.choice([rng.getrandbits(32), M32 - rng.randint(0, 2), 0])
            cmds = host.write_plan(
                p, shifts, [(t.adc.thresholds, t.adc.levels) for t in plan.layers], new_step
            )
            if new_step == step and not first:
                cmds = cmds[1:]  # write_plan's first command is the step register
            step = new_step
        return plan, step, cmds

    async def batch(self, st: BatchState, *, first: bool, infer: bool) -> BatchState:
        p, rng = self.p, self.rng
        n = p.batch if rng.random() < 0.6 else rng.randint(1, p.batch)
        a0 = random_inputs(p, n, self.nrng)
        labels = self.nrng.integers(0, p.classes, size=n, dtype=np.int64)
        plan, step, setup = self._plan_writes(st, first)
        weights = [w.copy() for w in st.weights]
        if not first and rng.random() < 0.15:
            # rewrite some weights: host writes between updates
            fresh = random_weights(p, self.nrng)
            for i, w in enumerate(weights):
                pick = self.nrng.random(w.shape) < 0.3
                w[pick] = fresh[i][pick]
            setup += host.write_weights(p, weights)
        setup += host.write_batch(p, a0, labels)
        if rng.random() < 0.05:
            setup += host.start(0, rng.random() < 0.5)  # START of 0 samples: ignored
        rng.shuffle(setup)
        await self.port.run(setup)
        await self.port.run(host.start(n, infer))
        wait = rng.choice(["edge", "edge", "poll", "queue"])
        if wait != "queue":  # queue: the reads below stall until the chip is idle
            await self.port.wait_idle(wait)

        # reads, shuffled; keys say what each word is
        keyed: list[tuple[tuple[Any, ...], host.Command]] = []
        keyed += [
            (("out", b, c), cmd)
            for (b, c), cmd in self._grid(n, p.classes, host.read_outputs(p, n))
        ]
        for layer in range(1, p.num_layers):
            fan = p.layers[layer].fan_in
            keyed += [
                (("act", layer, b, k), cmd)
                for (b, k), cmd in self._grid(n, fan, host.read_acts(p, layer, n))
            ]
        if not infer:
            for layer in range(p.num_layers):
                fan = p.layers[layer].fan_out
                keyed += [
                    (("delta", layer, b, j), cmd)
                    for (b, j), cmd in self._grid(n, fan, host.read_deltas(p, layer, n))
                ]
        w_cmds = host.read_weights(p)
        pos = 0
        for layer, lay in enumerate(p.layers):
            for r in range(lay.fan_in):
                for c in range(lay.fan_out):
                    keyed.append((("w", layer, r, c), w_cmds[pos]))
                    pos += 1
        keyed += [(("ctr", k), cmd) for k, cmd in enumerate(host.read_counters())]
        keyed.append((("step",), (address(Region.CTRL, CTRL["step"]), 0, False)))
        keyed.append((("samples",), (address(Region.CTRL, CTRL["start"]), 0, False)))
        if first or rng.random() < 0.2:
            keyed.append((("id",), (address(Region.CTRL, CTRL["id"]), 0, False)))
            keyed += [
                (("a0", b, k), cmd)
                for (b, k), cmd in self._grid(n, p.widths[0], host.read_acts(p, 0, n))
            ]
            keyed += [(("label", b), (address(Region.LABEL, b), 0, False)) for b in range(n)]
            for i, lp in enumerate(plan.layers):
                keyed.append((("gs", i), (address(Region.CTRL, CTRL["grad_shift"] + i), 0, False)))
                keyed += [
                    (("thr", i, j), (address(Region.ADC_T, j, i), 0, False))
                    for j in range(len(lp.adc.thresholds))
                ]
                keyed += [
                    (("lev", i, j), (address(Region.ADC_L, j, i), 0, False))
                    for j in range(len(lp.adc.levels))
                ]
        rng.shuffle(keyed)
        if wait == "queue":
            # CTRL and COUNTER reads are served while busy: put a buffer read first, which
            # stalls until the batch is over, so that every read sees the final state
            first_buf = next(k for k, (key, _) in enumerate(keyed) if key[0] in ("out", "w"))
            keyed.insert(0, keyed.pop(first_buf))
        words, ordinals = await self.port.run([cmd for _, cmd in keyed])
        got = {key: w for (key, _), w in zip(keyed, words, strict=True)}
        host_words_at = dict(zip([k for k, _ in keyed], ordinals, strict=True))

        return self._check(st, plan, step, n, a0, labels, weights, infer, got, host_words_at)

    @staticmethod
    def _grid(
        n: int, width: int, cmds: list[host.Command]
    ) -> list[tuple[tuple[int, int], host.Command]]:
        assert len(cmds) == n * width
        return [((b, k), cmds[b * width + k]) for b in range(n) for k in range(width)]

    # ----------------------------------------------------------------- comparison
    def _check(
        self,
        st: BatchState,
        plan: IntegerPlan,
        step: int,
        n: int,
        a0: np.ndarray,
        labels: np.ndarray,
        weights: list[np.ndarray],
        infer: bool,
        got: dict[tuple[Any, ...], int],
        host_words_at: dict[tuple[Any, ...], int],
    ) -> BatchState:
        p = self.p
        kind = "inference-only" if infer else "training"
        ctx = f"batch {self.batches} ({kind}, {n} samples, step {step:#010x})"
        inputs = "\n".join(
            f"  sample {b}: label {int(labels[b])}, inputs {a0[b].tolist()}" for b in range(n)
        )
        tables = "\n".join(
            f"  layer {i}: thresholds {list(lp.adc.thresholds)}, levels {list(lp.adc.levels)}, "
            f"grad_shift {lp.grad_shift}"
            for i, lp in enumerate(plan.layers)
        )
        extra = (
            f"design: {describe(p)}, bench seed {self.cfg.seed}\n"
            f"inputs:\n{inputs}\nplan registers:\n{tables}"
        )

        def grid(tag: str, layer: int | None, rows: int, cols: int) -> np.ndarray:
            pre = (tag,) if layer is None else (tag, layer)
            return np.array(
                [[_signed32(got[(*pre, r, c)]) for c in range(cols)] for r in range(rows)],
                dtype=np.int64,
            ).reshape(rows, cols)

        # registers and buffers written by the host
        if ("id",) in got:
            if got[("id",)] != CHIP_ID:
                raise Mismatch(f"{ctx}: ID register {got[('id',)]:#x}, expected {CHIP_ID:#x}")
            compare(
                "stored inputs (ACT of layer 0)",
                a0,
                grid("a0", None, n, p.widths[0]),
                ("sample", "input"),
                ctx,
            )
            got_labels = np.array([[got[("label", b)] for b in range(n)]])
            compare("stored labels", labels[None, :], got_labels, ("row", "sample"), ctx)
            for i, lp in enumerate(plan.layers):
                regs = [
                    ("grad_shift", [lp.grad_shift], [got[("gs", i)]]),
                    (
                        "thresholds",
                        list(lp.adc.thresholds),
                        [got[("thr", i, j)] for j in range(len(lp.adc.thresholds))],
                    ),
                    (
                        "levels",
                        list(lp.adc.levels),
                        [got[("lev", i, j)] for j in range(len(lp.adc.levels))],
                    ),
                ]
                for name, exp, val in regs:
                    if exp != val:
                        raise Mismatch(
                            f"{ctx}: layer {i} {name} registers read {val}, expected {exp}"
                        )
        if got[("samples",)] != n:
            raise Mismatch(f"{ctx}: START register reads {got[('samples',)]}, expected {n}")

        # golden model
        o, hidden = golden.forward(plan, weights, a0)
        for layer in range(1, p.num_layers):
            compare(
                f"hidden activations h_{layer - 1} (ACT of layer {layer})",
                hidden[layer - 1],
                grid("act", layer, n, p.layers[layer].fan_in),
                ("sample", "index"),
                ctx,
                extra,
            )
        compare("output codes", o, grid("out", None, n, p.classes), ("sample", "class"), ctx, extra)
        if infer:
            new = weights
        else:
            e = golden.output_error(plan, o, labels)
            ds = golden.deltas(plan, weights, e, hidden)
            for layer in reversed(range(p.num_layers)):
                compare(
                    f"deltas of layer {layer}",
                    ds[layer],
                    grid("delta", layer, n, p.layers[layer].fan_out),
                    ("sample", "index"),
                    ctx,
                    extra + f"\nexpected output error: {e.tolist()}",
                )
            new, _ = golden.train_step(plan, weights, a0, labels, step)
            if self.cfg.model_error:
                new[0] = new[0].copy()
                new[0][0, 0] += 1
        for layer, lay in enumerate(p.layers):
            what = "weights (unchanged by inference)" if infer else "updated weights"
            compare(
                f"{what} of layer {layer}",
                new[layer],
                grid("w", layer, lay.fan_in, lay.fan_out),
                ("row", "col"),
                ctx,
                extra + f"\nweights before the batch:\n{weights[layer].tolist()}",
            )
        next_step = step if infer else (step + 1) & M32
        if got[("step",)] != next_step:
            raise Mismatch(f"{ctx}: step register {got[('step',)]:#x}, expected {next_step:#x}")

        # counters
        ctr = host.unpack_counters([got[("ctr", k)] for k in range(2 * len(COUNTERS))])
        d = {k: ctr[k] - st.counters.get(k, 0) for k in ctr}
        problems = []
        if d["samples"] != n:
            problems.append(f"samples +{d['samples']}, expected +{n}")
        if d["batches"] != (0 if infer else 1):
            problems.append(f"batches +{d['batches']}, expected +{0 if infer else 1}")
        if d["cycles_busy"] <= 0 or d["cycles_forward"] <= 0:
            problems.append("no busy or forward cycles")
        if not infer and (
            d["cycles_update"] <= 0 or (p.num_layers > 1 and d["cycles_backward"] <= 0)
        ):
            problems.append("no backward or update cycles in a training batch")
        if infer and (d["cycles_backward"] or d["cycles_update"]):
            problems.append("backward or update cycles in an inference-only batch")
        if sum(d[k] for k in PHASES) != d["cycles_busy"]:
            problems.append(
                f"phase cycles {[d[k] for k in PHASES]} sum to {sum(d[k] for k in PHASES)}, "
                f"cycles_busy +{d['cycles_busy']}"
            )
        for name in ("array_reads", "adc_conversions", "shift_adds", "buffer_bits_read"):
            if d[name] <= 0:
                problems.append(f"{name} did not count")
        if d["adc_conversions"] != d["shift_adds"]:
            problems.append("adc_conversions != shift_adds")
        # host_words counts every transferred command up to and including the read of its
        # low word (the value is latched the cycle after that read is taken)
        k_hw = [name for name, _ in COUNTERS].index("host_words")
        at = host_words_at[("ctr", 2 * k_hw)]
        if ctr["host_words"] & M32 != at:
            problems.append(f"host_words {ctr['host_words']}, expected {at} commands")
        # dram_bits: the payload of every command up to that read (counter reads carry none)
        k_dram = [name for name, _ in COUNTERS].index("dram_bits")
        bits = self.port.bits_at[host_words_at[("ctr", 2 * k_dram)] - 1] & M32
        if got[("ctr", 2 * k_dram)] != bits:
            problems.append(f"dram_bits low word {got[('ctr', 2 * k_dram)]}, expected {bits}")
        if not infer and d["wgu_macs"] <= 0:
            problems.append("wgu_macs did not count")
        if problems:
            raise Mismatch(
                f"{ctx}: counters: " + "; ".join(problems) + f"\ncounter deltas: {d}\n{extra}"
            )
        return BatchState(
            weights=[np.asarray(w) for w in new], plan=plan, step=next_step, counters=ctr
        )

    # ----------------------------------------------------------------- the run
    async def run(self) -> None:
        cfg, p = self.cfg, self.p
        self.log.info("chip bench: %s; seed %d, %d samples", describe(p), cfg.seed, cfg.samples)
        await reset(self.dut)
        weights = random_weights(p, self.nrng)
        cmds = host.write_weights(p, weights)
        self.rng.shuffle(cmds)
        await self.port.run(cmds)
        st = BatchState(weights=weights, plan=cfg.plan, step=0, counters={})
        # the first batch may run on the reset values of the plan registers (step 0)
        first = self.rng.random() < 0.7
        infer_done = False
        while self.samples_trained < cfg.samples or not infer_done:
            infer = (self.samples_trained >= cfg.samples) or (
                cfg.infer_every > 0 and self.batches > 0 and self.rng.random() < 1 / cfg.infer_every
            )
            before = st.counters.get("samples", 0)
            st = await self.batch(st, first=first, infer=infer)
            first = False
            done = st.counters["samples"] - before
            if infer:
                self.samples_inferred += done
                infer_done = True
            else:
                self.samples_trained += done
            self.batches += 1
            if self.batches % 100 == 0:
                self.log.info(
                    "%d batches: %d/%d samples trained, %d inferred",
                    self.batches,
                    self.samples_trained,
                    cfg.samples,
                    self.samples_inferred,
                )
        self.log.info(
            "chip bench passed: %d batches, %d samples trained, %d inferred, %d host cycles",
            self.batches,
            self.samples_trained,
            self.samples_inferred,
            self.port.cycles,
        )


@cocotb.test()
async def chip_random_batches(dut: Any) -> None:
    """Random training and inference batches, bit-exact against the golden model."""
    await ChipBench(dut, load_config()).run()


@cocotb.test()
async def chip_mismatch_report(dut: Any) -> None:
    """The bench itself: a deliberate model error is caught, with a readable diff."""
    cfg = dataclasses.replace(load_config(), model_error=True, samples=1, infer_every=0)
    lay = cfg.chip.layers[0]
    try:
        await ChipBench(dut, cfg).run()
    except Mismatch as exc:
        text = str(exc)
        want = [
            f"updated weights of layer 0 differ at 1 of {lay.fan_in * lay.fan_out} values",
            "row 0, col 0: expected ",
            "design: ",
            "inputs:",
            "plan registers:",
            "weights before the batch:",
        ]
        missing = [w for w in want if w not in text]
        if missing:
            raise AssertionError(f"the mismatch report lacks {missing}:\n{text}") from None
        dut._log.info("mismatch report as expected:\n%s", text)
    else:
        raise AssertionError("a deliberate model error went unnoticed")


@cocotb.test()
async def chip_back_to_back_reads(dut: Any) -> None:
    """Reads offered back to back while rsp__ready is low are each answered once, in order.

    Directed: reads of the ID and STEP registers offered on consecutive cycles with the
    response held off for ``hold`` cycles (0..4), then random: weight reads with no gaps and
    rsp__ready low 90% of the time.
    """
    cfg = load_config()
    p = cfg.chip
    await reset(dut)
    edge = RisingEdge(dut.clk)
    step_value = 0x5EED0000 | (cfg.seed & 0xFFFF)
    port = HostPort(dut, random.Random(cfg.seed), 0.0, 0.0, cfg.max_cycles, stuck_cycles=2000)
    await port.run([(address(Region.CTRL, CTRL["step"]), step_value, True)])
    reads = [address(Region.CTRL, CTRL["id"]), address(Region.CTRL, CTRL["step"])]
    expected = [CHIP_ID, step_value]
    for hold in range(5):
        got: list[int] = []
        taken: list[int] = []
        i = 0
        for cycle in range(hold + 12):
            if i < len(reads):
                dut.cmd__payload.value = reads[i]  # data 0, write 0
                dut.cmd__valid.value = 1
            else:
                dut.cmd__valid.value = 0
            ready = int(cycle >= hold + 1)
            dut.rsp__ready.value = ready
            await edge
            if i < len(reads) and int(dut.cmd__ready.value):
                taken.append(cycle)
                i += 1
            if ready and int(dut.rsp__valid.value):
                got.append(dut.rsp__payload.value.to_unsigned())
        dut.cmd__valid.value = 0
        if got != expected:
            raise Mismatch(
                f"two reads (ID, STEP) offered back to back, taken at cycles {taken}, with "
                f"rsp__ready low until cycle {hold + 1}: responses "
                f"{[hex(v) for v in got]}, expected {[hex(v) for v in expected]}"
                + (
                    " (the first response was overwritten by the second read's before the "
                    "host took it)"
                    if got == expected[1:]
                    else ""
                )
            )
    rng = np.random.default_rng(cfg.seed)
    weights = random_weights(p, rng)
    await port.run(host.write_weights(p, weights))
    cmds = host.read_weights(p)[:16]
    want = [int(v) & M32 for v in weights[0].reshape(-1)[:16]]
    words, _ = await port.run(cmds, gap=0.0, stall=0.9)
    if words != want:
        raise Mismatch(
            f"16 weight reads back to back, rsp__ready low 90% of cycles: got "
            f"{[_signed32(v) for v in words]}, expected {[_signed32(v) for v in want]}"
        )
