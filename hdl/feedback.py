"""The DFA/FA feedback path of one hidden layer: ``u = src @ B``, B from the LFSR or stored.

B (``n_src x n_out``, entries +-1, row-major) comes from one of two places
(``chip.feedback_storage``):

- ``lfsr``: never stored; a 32-bit Galois LFSR restarted from the layer's seed regenerates it
  on every use (docs/numerics.md, "Feedback matrices"). The last chunk of a row may be
  shorter, so the LFSR advances by ``lanes`` or by the remainder (two precomputed GF(2) step
  matrices).
- ``stored``: a memory of ``n_src * chunks`` words of ``lanes`` bits, one word per (row,
  chunk), read combinationally, holding the same bits (:func:`~.arith.lfsr_chunks`), so both
  chips compute the same numbers; the stored chip trades the LFSR's logic for B's storage
  (``n_src x n_out`` bits) and one memory read per cycle.

Each cycle the engine takes ``lanes`` bits of row ``k`` and adds ``+src[k]`` or ``-src[k]`` to
``lanes`` accumulators. Cycles per use: ``n_src * ceil(n_out / lanes)``. For DFA ``src`` is
the output error (every hidden layer's engine runs at once); for FA it is the next layer's
delta.
"""

from __future__ import annotations

import math

from amaranth.hdl import Array, Module, Mux, Signal, Value, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .arith import apply_masks, lfsr_chunks, lfsr_unrolled
from .params import bits_for


class FeedbackEngine(wiring.Component):
    """``u[j] = sum_k src[k] * B[k, j]`` for one layer; ``src`` values are wired in."""

    def __init__(
        self,
        *,
        src: list[Value],
        n_out: int,
        lanes: int,
        seed: int,
        src_bits: int,
        storage: str = "lfsr",
    ) -> None:
        if not src:
            raise ValueError("src must hold at least one value")
        if not lanes >= 1:
            raise ValueError(f"lanes must be >= 1, got {lanes}")
        if not 0 < seed < 2**32:
            raise ValueError(f"seed must be in 1..2^32-1, got {seed}")
        if storage not in ("lfsr", "stored"):
            raise ValueError(f"storage must be 'lfsr' or 'stored', got {storage!r}")
        self._storage = storage
        self._src = src
        self._n_out = n_out
        self._lanes = min(lanes, n_out)
        self._seed = seed
        self.chunks = math.ceil(n_out / self._lanes)
        self.cycles = len(src) * self.chunks
        self.acc_width = src_bits + bits_for(len(src)) + 1
        super().__init__(
            {
                "start": In(1),
                "busy": Out(1),
                "u": Out(signed(self.acc_width)).array(n_out),
                "adds": Out(range(self._lanes + 1)),  # accumulations this cycle (counters)
            }
        )

    @property
    def lanes(self) -> int:
        return self._lanes

    @property
    def storage(self) -> str:
        return self._storage

    @property
    def stored_bits(self) -> int:
        """Bits of B this engine stores (0 for the LFSR)."""
        return len(self._src) * self._n_out if self._storage == "stored" else 0

    def elaborate(self, platform: object) -> Module:
        m = Module()
        n_src, n_out, lanes, chunks = len(self._src), self._n_out, self._lanes, self.chunks
        rem = n_out - (chunks - 1) * lanes
        k = Signal(range(max(2, n_src)))
        q = Signal(range(max(2, chunks)))
        bits = Signal(lanes)
        last = q == chunks - 1
        lfsr = self._storage == "lfsr"
        if lfsr:
            state = Signal(32, init=self._seed)
            out_full, next_full = lfsr_unrolled(lanes)
            _, next_rem = lfsr_unrolled(rem)
            m.d.comb += bits.eq(apply_masks(state, out_full))
        else:
            words = lfsr_chunks(self._seed, n_src, n_out, lanes)
            m.submodules.b = mem = Memory(shape=lanes, depth=len(words), init=words)
            rd = mem.read_port(domain="comb")
            m.d.comb += [rd.addr.eq(k * chunks + q), bits.eq(rd.data)]
        src = Signal(signed(self.acc_width))
        m.d.comb += src.eq(Array(self._src)[k])

        with m.If(self.start):
            m.d.sync += [k.eq(0), q.eq(0), self.busy.eq(1)]
            if lfsr:
                m.d.sync += state.eq(self._seed)
            m.d.sync += [u.eq(0) for u in self.u]
        with m.Elif(self.busy):
            with m.If(last):
                m.d.sync += [q.eq(0), k.eq(k + 1)]
                if lfsr:
                    m.d.sync += state.eq(apply_masks(state, next_rem))
                with m.If(k == n_src - 1):
                    m.d.sync += self.busy.eq(0)
            with m.Else():
                m.d.sync += q.eq(q + 1)
                if lfsr:
                    m.d.sync += state.eq(apply_masks(state, next_full))
            for j in range(n_out):
                qi, t = divmod(j, lanes)
                with m.If(q == qi):
                    m.d.sync += self.u[j].eq(self.u[j] + Mux(bits[t], src, -src))
            m.d.comb += self.adds.eq(
                Array([lanes] * (chunks - 1) + [rem])[q] if chunks > 1 else rem
            )
        return m
