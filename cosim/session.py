"""A running chip, driven batch by batch: load weights, set the plan, train or infer, read back.

This module owns the co-simulation's view of one chip instance: :class:`ChipSession` turns
the host programs of :mod:`insitu.hdl.host` into record arrays once (addresses are fixed by
the design; only the data change per batch) and runs them on a backend, a whole batch per
call. Backends: :class:`VerilatorBackend` (the compiled model, :mod:`.verilator_model`) and
:class:`AmaranthBackend` (Amaranth's simulator, no compiler needed, tiny designs only).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ..algo.plan import IntegerPlan
from ..hdl import host
from ..hdl.memory_map import Region, payload_table, word_payload
from ..hdl.params import ChipParams
from .verilator_model import OP_READ, OP_WAIT, OP_WRITE, VerilatorModel, Workload, build

__all__ = [
    "AmaranthBackend",
    "Backend",
    "BatchResult",
    "ChipSession",
    "VerilatorBackend",
    "training_workload",
]


class Backend(Protocol):
    """Executes record programs ``(op, addr, data)``; returns the read data in order."""

    def run(self, program: np.ndarray) -> np.ndarray: ...

    @property
    def cycles(self) -> int: ...

    def close(self) -> None: ...


class VerilatorBackend:
    """The chip's Verilog built by Verilator (cached) and loaded as a shared library."""

    def __init__(
        self,
        verilog: str,
        *,
        cache: Path | None = None,
        threads: int = 1,
        jobs: int = 2,
        fast_build: bool = False,
        sources: dict[str, str] | None = None,
        pgo: Workload | None = None,
    ) -> None:
        self.verilog = verilog
        self.build = build(
            verilog,
            cache=cache,
            threads=threads,
            jobs=jobs,
            fast_build=fast_build,
            sources=sources,
            pgo=pgo,
        )
        self.model = VerilatorModel(self.build.library)

    def run(self, program: np.ndarray) -> np.ndarray:
        return self.model.run(program)

    @property
    def cycles(self) -> int:
        return self.model.cycles

    def close(self) -> None:
        self.model.close()


class AmaranthBackend:
    """Amaranth's simulator of the chip: each call simulates from reset and replays history.

    Amaranth 0.5's simulator cannot be paused and resumed between testbench calls, so this
    backend keeps every program it has run and re-simulates them all with the new one
    appended; only tiny design points and short runs suit it (unit tests, no compiler).
    """

    def __init__(self, p: ChipParams) -> None:
        from ..hdl.chip import Chip

        self._chip = Chip(p)
        self._history: list[np.ndarray] = []
        self._reads_before = 0
        self._cycles = 0

    def run(self, program: np.ndarray) -> np.ndarray:
        from ..hdl.amaranth_sim import WAIT, Step, simulate

        self._history.append(np.asarray(program, dtype=np.int64))
        steps: list[Step] = []
        for prog in self._history:
            for op, addr, data in prog.tolist():
                steps.append(WAIT if op == OP_WAIT else (addr, data, op == OP_WRITE))
        reads, cycles = simulate(self._chip, steps)
        new = np.asarray(reads[self._reads_before :], dtype=np.uint32)
        self._reads_before = len(reads)
        self._cycles = cycles
        return new

    @property
    def cycles(self) -> int:
        return self._cycles

    def close(self) -> None:
        self._history.clear()


def records(cmds: Sequence[host.Command]) -> np.ndarray:
    """Host commands as an ``(n, 3)`` uint32 record array."""
    return np.array(
        [(OP_WRITE if w else OP_READ, a & 0xFFFFFFFF, d & 0xFFFFFFFF) for a, d, w in cmds],
        dtype=np.uint32,
    ).reshape(-1, 3)


WAIT_RECORD = np.array([[OP_WAIT, 0, 0]], dtype=np.uint32)


def training_workload(
    model: VerilatorModel, p: ChipParams, batches: int = 8, seed: int = 1
) -> None:
    """Random weights, then *batches* training runs of random batches (START until idle) and
    the counters: the profile of a profile-guided build (``make_backends(pgo=True)``)."""
    rng = np.random.default_rng(seed)
    top = 2 ** (p.weight_bits - 1) - 1
    weights = [rng.integers(-top, top + 1, size=(lay.fan_in, lay.fan_out)) for lay in p.layers]
    model.run(records(host.write_weights(p, weights)))
    run = np.concatenate([records(host.start(p.batch)), WAIT_RECORD])
    for _ in range(batches):
        a0 = rng.integers(0, 2**p.activation_bits, size=(p.batch, p.widths[0]))
        labels = rng.integers(0, p.classes, size=p.batch)
        model.run(records(host.write_batch(p, a0, labels)))
        model.run(run)
    model.run(records(host.read_counters()))


@dataclass(frozen=True)
class BatchResult:
    """What one batch on the chip returned."""

    outputs: np.ndarray  # (n, classes) output codes, signed
    counters: dict[str, int]  # counters after the batch (cumulative since reset)
    deltas: list[np.ndarray] | None  # per layer (n, fan_out), when asked for


class ChipSession:
    """One chip instance with precomputed host programs for its design."""

    def __init__(self, p: ChipParams, backend: Backend) -> None:
        self.p = p
        self.backend = backend
        zeros = np.zeros((p.batch, p.widths[0]), dtype=np.int64)
        self._batch = records(host.write_batch(p, zeros, np.zeros(p.batch, dtype=np.int64)))
        # the inputs of each ACT_PACK word of a sample, for host.pack_words
        self._pack = host.pack_table(p)
        self._outputs = records(host.read_outputs(p, p.batch))
        self._counters = records(host.read_counters())
        self._weights = records(host.read_weights(p))
        self._weight_writes = records(
            host.write_weights(
                p, [np.zeros((lay.fan_in, lay.fan_out), dtype=np.int64) for lay in p.layers]
            )
        )
        self._deltas = [records(host.read_deltas(p, i, p.batch)) for i in range(len(p.layers))]
        self.host_words = 0
        # data bits spent on checking rather than training (read-back of weights, deltas,
        # counters), in the units of the chip's dram_bits counter
        self.verify_bits = 0
        self._payload = np.array(payload_table(p), dtype=np.int64)

    def payload(self, program: np.ndarray) -> int:
        """Data bits of a program's host words, as the chip's ``dram_bits`` counts them."""
        ops = program[program[:, 0] != OP_WAIT]
        addrs = ops[:, 1].astype(np.int64)
        regions = (addrs >> 28) & 0xF
        packed = regions == Region.ACT_PACK
        # ACT_PACK words carry a varying number of inputs
        extra = sum(word_payload(self.p, int(a)) for a in addrs[packed])
        return int(self._payload[regions[~packed]].sum()) + extra

    # -- loading --------------------------------------------------------------------------
    def _exec(self, program: np.ndarray) -> np.ndarray:
        self.host_words += int(np.count_nonzero(program[:, 0] != OP_WAIT))
        return self.backend.run(program)

    def load_weights(self, weights: Sequence[np.ndarray], *, harness: bool = False) -> None:
        """Write every weight; ``harness``: a re-load the simulation needs (the golden model
        trained batches on its own, or a resumed run), not traffic of the chip's training."""
        prog = self._weight_writes.copy()
        if harness:
            self.verify_bits += self.payload(prog)
        # host.write_weights writes layer by layer, row-major: the same order as ravel()
        prog[:, 2] = np.concatenate([np.asarray(w).ravel() for w in weights]).astype(np.int64) & (
            0xFFFFFFFF
        )
        self._exec(prog)

    def set_plan(self, plan: IntegerPlan, step: int, *, harness: bool = False) -> None:
        """Write the runtime plan registers: gradient shifts, ADC tables and the step
        (``harness``: a rewrite the simulation needs, not the chip's training traffic)."""
        for i, lp in enumerate(plan.layers):
            lay = self.p.layers[i]
            if (lp.out_shift, lp.delta_shift) != (lay.out_shift, lay.delta_shift):
                raise ValueError(
                    f"layer {i}: the plan's shifts (out {lp.out_shift}, delta {lp.delta_shift}) "
                    f"differ from the generated chip's ({lay.out_shift}, {lay.delta_shift})"
                )
        adc = [(lp.adc.thresholds, lp.adc.levels) for lp in plan.layers]
        prog = records(host.write_plan(self.p, [lp.grad_shift for lp in plan.layers], adc, step))
        if harness:
            self.verify_bits += self.payload(prog)
        self._exec(prog)

    # -- running --------------------------------------------------------------------------
    def run_batch(
        self,
        a0: np.ndarray,
        labels: np.ndarray,
        *,
        infer_only: bool = False,
        read_deltas: bool = False,
    ) -> BatchResult:
        """Write the batch, START, wait, read outputs (and deltas) and the counters."""
        n = len(a0)
        if not 0 < n <= self.p.batch:
            raise ValueError(f"a batch holds 1..{self.p.batch} samples, got {n}")
        per = len(self._pack) + 1
        prog_in = self._batch[: n * per].copy()
        words = host.pack_words(self.p, a0, self._pack)
        data = np.concatenate([words, np.asarray(labels, dtype=np.int64)[:, None]], 1)
        prog_in[:, 2] = data.ravel()
        k = self.p.classes
        checks = [d[: n * self.p.layers[i].fan_out] for i, d in enumerate(self._deltas)]
        checks = (checks if read_deltas else []) + [self._counters]
        self.verify_bits += sum(self.payload(x) for x in checks)
        parts = [prog_in, records(host.start(n, infer_only)), WAIT_RECORD, self._outputs[: n * k]]
        reads = self._exec(np.concatenate(parts + checks))
        outputs = host.signed_words(reads[: n * k]).reshape(n, k)
        pos = n * k
        deltas = None
        if read_deltas:
            deltas = []
            for lay in self.p.layers:
                m = n * lay.fan_out
                deltas.append(host.signed_words(reads[pos : pos + m]).reshape(n, lay.fan_out))
                pos += m
        counters = host.unpack_counters(reads[pos:].tolist())
        return BatchResult(outputs=outputs, counters=counters, deltas=deltas)

    def read_weights(self) -> list[np.ndarray]:
        self.verify_bits += self.payload(self._weights)
        return host.unpack_weights(self.p, self._exec(self._weights).tolist())

    def read_counters(self) -> dict[str, int]:
        self.verify_bits += self.payload(self._counters)
        return host.unpack_counters(self._exec(self._counters).tolist())

    def close(self) -> None:
        self.backend.close()
