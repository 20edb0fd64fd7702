"""Amaranth expressions for the arithmetic of the numerics contract (docs/numerics.md).

Rounding shifts, saturation, the weight-cell encodings, the feedback LFSR unrolled over several
steps per cycle, and the stochastic-rounding hash. These are written independently of
``algo/golden.py`` (hdl never imports algo); the tests compare the two bit for bit.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, ShapeLike, Signal, Value

from .params import LFSR_MASK, bits_for

M32 = 0xFFFFFFFF


def rshift_round(v: Value, s: int) -> Value:
    """``floor((v + 2^(s-1)) / 2^s)`` for s > 0 (arithmetic for signed v); ``v << -s`` else."""
    if s <= 0:
        return v << (-s)
    return (v + (1 << (s - 1))) >> s


def saturate(v: Value, bits: int) -> Value:
    """Clamp to the symmetric signed range of ``bits`` bits; the result is ``signed(bits)``."""
    m = 2 ** (bits - 1) - 1
    return Mux(v > m, m, Mux(v < -m, -m, v)).as_signed()[:bits].as_signed()


def clamp_unsigned(v: Value, top: int) -> Value:
    """min(v, top) for a non-negative v, as an unsigned value of top's width."""
    width = max(1, top.bit_length())
    return Mux(v > top, top, v)[:width]


def encode_cells(w: Value, weight_bits: int, encoding: str) -> Value:
    """Cells of one weight, polarity-major: differential ``Cat(P, N)``, offset-binary ``U``."""
    if encoding == "differential":
        pos = Mux(w > 0, w, 0)[:weight_bits]
        neg = Mux(w < 0, -w, 0)[:weight_bits]
        return Cat(pos, neg)
    return (w + (1 << (weight_bits - 1)))[:weight_bits]


def decode_cells(cells: Value, weight_bits: int, encoding: str) -> Value:
    """The signed weight stored in ``cells`` (inverse of :func:`encode_cells`)."""
    if encoding == "differential":
        pos = cells[:weight_bits].as_unsigned()
        neg = cells[weight_bits : 2 * weight_bits].as_unsigned()
        return (pos - neg).as_signed()
    return (cells[:weight_bits].as_unsigned() - (1 << (weight_bits - 1))).as_signed()


# ------------------------------------------------------------------------------ LFSR
def _lfsr_step(state: list[int]) -> tuple[int, list[int]]:
    """One Galois step over GF(2): each state bit is a 32-bit mask of the initial bits."""
    out = state[0]
    nxt = [*state[1:], 0]
    for b in range(32):
        if (LFSR_MASK >> b) & 1:
            nxt[b] ^= out
    return out, nxt


def lfsr_unrolled(steps: int) -> tuple[list[int], list[int]]:
    """Masks over the current state for the next ``steps`` output bits and for the new state."""
    state = [1 << b for b in range(32)]
    outs = []
    for _ in range(steps):
        out, state = _lfsr_step(state)
        outs.append(out)
    return outs, state


def _parity_masks(state: int, masks: list[int]) -> int:
    """``apply_masks`` on a Python integer state: bit i is parity(state & masks[i])."""
    return sum((bin(state & mk).count("1") & 1) << i for i, mk in enumerate(masks))


def lfsr_chunks(seed: int, n_src: int, n_out: int, lanes: int) -> list[int]:
    """B's bits as the feedback engine consumes them: row k, chunk q -> word ``k*chunks+q``.

    Bit t of a word is entry ``(k, q*lanes+t)`` of B (1 means +1); the last chunk of a row holds
    ``n_out - (chunks-1)*lanes`` bits. The same sequence the LFSR engine generates on the fly,
    so a chip that stores B computes exactly what one that regenerates it does.
    """
    chunks = -(-n_out // lanes)
    rem = n_out - (chunks - 1) * lanes
    out_full, next_full = lfsr_unrolled(lanes)
    out_rem, next_rem = lfsr_unrolled(rem)
    words = []
    state = seed
    for _ in range(n_src):
        for q in range(chunks):
            last = q == chunks - 1
            words.append(_parity_masks(state, out_rem if last else out_full))
            state = _parity_masks(state, next_rem if last else next_full)
    return words


def apply_masks(state: Value, masks: list[int]) -> Value:
    """Cat of the GF(2) dot products ``parity(state & mask)``."""
    return Cat(*[(state & Const(m, 32)).xor() for m in masks])


# ------------------------------------------------------------------------------ hashing
HASH_INDEX_MUL = 0x27D4EB2F


def hash_start(index: Value, step: Value, layer: Value | int, seed: int) -> Value:
    """The first word of the stochastic-rounding hash: ``index*K1 + step*K2 + layer*K3 +
    seed`` mod 2^32. It is linear in ``index``, so the weight-gradient unit computes it once
    per row and adds each lane's ``offset * HASH_INDEX_MUL`` as a constant."""
    return (
        (index * HASH_INDEX_MUL)[:32]
        + (step * 0x165667B1)[:32]
        + ((layer * 0x61C88647) & M32)
        + (seed & M32)
    )[:32]


def hash_finish(m: Module, x0: Value, tag: str) -> Value:
    """The 32-bit hash word from :func:`hash_start`'s word (the mixing rounds)."""
    x = wire(m, x0, 32, f"hash{tag}_0")
    x = wire(m, x ^ (x >> 16), 32, f"hash{tag}_1")
    x = wire(m, (x * 0x7FEB352D)[:32], 32, f"hash{tag}_2")
    x = wire(m, x ^ (x >> 15), 32, f"hash{tag}_3")
    x = wire(m, (x * 0x2C1B3C6D)[:32], 32, f"hash{tag}_4")
    return x ^ (x >> 16)


def dither_word(
    m: Module, index: Value, step: Value, layer: Value | int, seed: int, tag: str
) -> Value:
    """The 32-bit hash word(seed, step, layer, index) of stochastic rounding."""
    return hash_finish(m, hash_start(index, step, layer, seed), tag)


def round_shift(g: Value, shift: Value, dither: Value | None) -> Value:
    """Round ``g`` (signed) right by a runtime ``shift`` (0..63).

    ``dither`` None: round half up, ``(g + 2^(s-1)) >> s``. Otherwise stochastic:
    ``(g + d) >> s`` with ``d = word >> (32 - s)`` (``word << (s - 32)`` above 32).
    """
    if dither is None:
        # |g| < 2^(w-1) for a w-bit g, so (g + 2^(s-1)) >> s is 0 for every s >= w: clamping
        # the shift to w keeps the adder and barrel shifter w + 2 bits wide instead of 65
        # (on the WGU that was ~600 LUTs per lane).
        w = len(g)
        s = Mux(shift > w, w, shift)[: bits_for(w)]
        half = ((Const(1, 1) << s) >> 1)[:w]
        return (g + Cat(half, Const(0, 1)).as_signed()) >> s
    # d = floor(word * 2^(s-32)), 0 <= d < 2^s: one right shift of word * 2^32 covers both
    # s <= 32 and s > 32, in 64 bits
    wide = Cat(Const(0, 32), dither)
    d = (wide >> (Const(64, 7) - shift).as_unsigned()[:7])[:64]
    w = len(g)
    if w >= 64:
        return (g + Cat(d, Const(0, 1)).as_signed()) >> shift
    # (g + d) >> s in full takes 66-bit arithmetic for every lane (a third of the Verilated
    # MNIST chip's cycle went there). With |g| < 2^(w-1) it needs only w + 2 bits: for
    # s <= w, d < 2^w; for s > w the result is -1, 0 or 1. Write d = hi * 2^w + lo and
    # t = g + lo = c * 2^w + (t mod 2^w) with c in {-1, 0, 1}: then (g + d) >> s =
    # (hi + c) >> (s - w), which is 1 when c = 1 and hi is all ones (s - w bits), -1 when
    # c = -1 and hi = 0, and 0 otherwise (docs/numerics.md's rule, unchanged).
    t = g + Cat(d[:w], Const(0, 1)).as_signed()
    near = t >> Mux(shift > w, w, shift)[: bits_for(w)]
    c = t >> w
    hi = d[w:]
    ones = Const(2 ** len(hi) - 1, len(hi)) >> (Const(len(hi) + w, 7) - shift).as_unsigned()[:7]
    far = Mux((c == 1) & (hi == ones), 1, Mux((c == -1) & (hi == 0), -1, 0))
    return Mux(shift > w, far, near)


def mul_small(a: Value, d: Value) -> Value:
    """``a * d`` for an unsigned ``a`` of a few bits, as a shift-add of ``len(a)`` terms.

    The same product as ``a * d``; written out so that synthesis builds it from a few LUTs
    instead of spending a DSP block on a 2 x 6-bit product (yosys maps every ``$mul`` of at
    least 2 x 2 bits to a DSP on iCE40 and ECP5, and they have 8 and 28 of them).
    """
    return tree_sum([Mux(a[i], d << i, 0) for i in range(len(a))])


def mul_const(v: Value, c: int) -> Value | int:
    """``v * c`` for a constant ``c >= 0`` as a sum of shifted copies of ``v`` (yosys maps a
    ``$mul`` by a constant that is not a power of two to a DSP block)."""
    return tree_sum([v << i for i in range(c.bit_length()) if (c >> i) & 1])


def tree_sum(values: list[Value] | list[Value | int]) -> Value | int:
    """Balanced adder tree, so that widths grow with log2 of the count, not linearly."""
    items = list(values)
    if not items:
        return 0
    while len(items) > 1:
        nxt = [items[i] + items[i + 1] for i in range(0, len(items) - 1, 2)]
        if len(items) % 2:
            nxt.append(items[-1])
        items = nxt
    return items[0]


def wire(m: Module, value: Value | int, shape: ShapeLike, name: str) -> Signal:
    """Name an intermediate result. Amaranth expressions are trees, so a value used several
    times (as saturate and the encoders do) would otherwise be rebuilt at every use; on the
    weight-gradient unit that made the netlist 40x larger and its export take a minute."""
    s = Signal(shape, name=name)
    m.d.comb += s.eq(value)
    return s
