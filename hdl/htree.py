"""H-tree interconnect between the chip's global buffer and its tiles (owns :class:`HTree`).

The H-tree is a binary tree whose root attaches to the global buffer and whose ``leaves`` leaves
attach to the tiles. It carries two independent traffic classes:

* **Downward** (global buffer -> tiles): one input stream ``down`` whose payload is
  ``{data, dest, broadcast}`` (:func:`down_layout`). A unicast item goes to leaf ``dest``; a
  broadcast item goes to every leaf (the DFA output error reaches every tile at once).
* **Upward** (tiles -> global buffer): one input stream ``up_leaf[k]`` per leaf, merged into one
  output stream ``up`` whose payload is ``{data, src}`` (:func:`up_layout`), ``src`` being the
  index of the leaf that sent the item.

Tree shape
    ``depth = max(1, ceil(log2(leaves)))`` levels of links. Leaf ``k`` sits at slot ``k`` of a
    complete tree with ``2**depth`` slots; subtrees that hold no real leaf are pruned, so a
    non-power-of-two ``leaves`` gives an incomplete tree in which *every* leaf is still exactly
    ``depth`` hops from the root (uniform latency, which keeps the sequencer simple). Nodes left
    with one child keep their register: they are a hop on the wire like any other.
    ``leaves == 1`` degenerates to one register stage in each direction (``depth == 1``), not to
    a wire, so the timing of a 1-tile chip matches that of larger ones.

Pipelining (one hop = one register = one clock cycle)
    Downward, each link has a register at its child end holding one item; upward, each link has
    a register at its parent end. With no backpressure an item accepted at the root in cycle
    ``t`` is valid at its leaf in cycle ``t + depth`` (and an item accepted at a leaf reaches
    ``up`` ``depth`` cycles later), and both trees sustain one item per cycle.

Downward flow control: one item per node, all-or-nothing fan-out
    A node forwards its item only in a cycle where *every* child it targets (one for a unicast,
    all existing children for a broadcast) can take it; a child can take it when its register is
    empty or is being emptied in the same cycle. This keeps per-leaf order trivially and needs no
    per-child pending bits. The price is head-of-line blocking: a broadcast waits at each node
    for its slowest child, and items behind it wait too. ``ready`` propagates combinationally
    from the leaves to the root through ``depth`` levels (no skid buffers), which is what lets a
    full tree accept an item every cycle.

Upward flow control: round-robin merge
    Every node with two children arbitrates between them with a two-way round-robin pointer
    (when both offer an item, the one not served last wins), so no leaf starves. The share is
    fair per node, not globally: under saturation a leaf gets ``1/2`` per node with two children
    on its path (``1/leaves`` each in a complete tree; in an incomplete tree a leaf without a
    sibling gets more).

Protocol notes
    Output ``valid`` and payload come straight from registers (never from ``ready``) and stay
    stable until transferred. Input ``ready`` depends combinationally on the inputs' ``valid``
    and payload (``down.ready`` on ``dest``/``broadcast``; ``up_leaf[k].ready`` on its sibling's
    ``valid``), which stream consumers may do. A unicast whose ``dest >= leaves`` (possible when
    ``leaves`` is not a power of two) is accepted and dropped at the root without any hop.

Activity counters (priced by the energy model)
    ``hops_down`` counts one per (item, link) on every downward link an item is loaded across:
    ``depth`` per unicast, :attr:`HTree.links` per broadcast (every link of the pruned tree), 0
    per dropped item. ``hops_up`` counts ``depth`` per upward item. ``hops`` is their sum. Each is
    32 bits and wraps. Bits moved on the wires are ``hops * data_width`` (address/``src`` bits
    are not counted). The counters reset with the ``sync`` domain.

Verilog: ``amaranth.back.verilog.convert(HTree(leaves=..., data_width=...), name="htree",
emit_src=False)``. Struct payloads become flat vectors, fields packed LSB first in the order of
their layout (``down__payload = {broadcast, dest, data}``, ``up__payload = {src, data}``).
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["HTree", "down_layout", "up_layout"]

COUNTER_WIDTH = 32
_NONE = Const(0, 0)  # stands for routing state that a stage does not have


def _positive_int(name: str, value: object) -> int:
    # bool is an int subclass; HTree(leaves=True) is surely a mistake, so reject it by name.
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"{name} must be an integer >= 1, not {value!r} (of type {type(value).__name__})"
        )
    if value < 1:
        raise ValueError(f"{name} must be an integer >= 1, not {value!r}")
    return value


def _depth(leaves: int) -> int:
    return max(1, (leaves - 1).bit_length())


def down_layout(data_width: int, leaves: int) -> data.StructLayout:
    """Payload of ``HTree.down``: ``data``, ``dest`` (leaf index) and ``broadcast``."""
    return data.StructLayout({"data": data_width, "dest": _depth(leaves), "broadcast": 1})


def up_layout(data_width: int, leaves: int) -> data.StructLayout:
    """Payload of ``HTree.up``: ``data`` and ``src`` (index of the sending leaf)."""
    return data.StructLayout({"data": data_width, "src": _depth(leaves)})


@dataclass
class _DownStage:
    valid: Value
    data: Value
    dest: Value  # only the address bits still needed below this node
    broadcast: Value
    fire: Signal  # the item leaves this stage this cycle


@dataclass
class _UpStage:
    valid: Value
    data: Value
    src: Value  # address bits of the leaf below this node that sent the item
    take: Signal  # the parent (or the `up` port) takes the item this cycle if valid


class HTree(wiring.Component):
    """Pipelined binary H-tree between the global buffer (root) and ``leaves`` tiles.

    See the module docstring for the tree shape, flow control and counters.

    Parameters
    ----------
    leaves : int
        Number of tiles, ``>= 1``; any integer (a non-power-of-two gives an incomplete tree).
    data_width : int
        Width of the data carried in each direction, ``>= 1``.

    Members
    -------
    down : ``In(stream.Signature(down_layout(data_width, leaves)))``
    leaf : ``Out(stream.Signature(data_width)).array(leaves)``
    up_leaf : ``In(stream.Signature(data_width)).array(leaves)``
    up : ``Out(stream.Signature(up_layout(data_width, leaves)))``
    hops_down, hops_up, hops : ``Out(32)``
    """

    def __init__(self, *, leaves: int, data_width: int) -> None:
        self._leaves = _positive_int("leaves", leaves)
        self._data_width = _positive_int("data_width", data_width)
        self._depth = _depth(self._leaves)
        super().__init__(
            {
                "down": In(stream.Signature(down_layout(self._data_width, self._leaves))),
                "leaf": Out(stream.Signature(self._data_width)).array(self._leaves),
                "up_leaf": In(stream.Signature(self._data_width)).array(self._leaves),
                "up": Out(stream.Signature(up_layout(self._data_width, self._leaves))),
                "hops_down": Out(COUNTER_WIDTH),
                "hops_up": Out(COUNTER_WIDTH),
                "hops": Out(COUNTER_WIDTH),
            }
        )

    @property
    def leaves(self) -> int:
        """Number of tiles at the leaves."""
        return self._leaves

    @property
    def data_width(self) -> int:
        """Width of the data carried in each direction."""
        return self._data_width

    @property
    def depth(self) -> int:
        """Register levels = hops from the root to any leaf = ``max(1, ceil(log2(leaves)))``."""
        return self._depth

    def nodes_at(self, level: int) -> int:
        """Nodes at ``level`` (0 = root, ``depth`` = leaves) of the pruned tree."""
        if not 0 <= level <= self._depth:
            raise ValueError(f"level must be in 0..{self._depth}, not {level!r}")
        span = 1 << (self._depth - level)
        return -(-self._leaves // span)

    @property
    def links(self) -> int:
        """Links of the pruned tree = downward hops of one broadcast."""
        return sum(self.nodes_at(level) for level in range(1, self._depth + 1))

    def elaborate(self, platform: object) -> Module:
        m = Module()
        loads_down = self._elaborate_down(m)
        loads_up = self._elaborate_up(m)
        inc_down = _sum(loads_down)
        inc_up = _sum(loads_up)
        m.d.sync += [
            self.hops_down.eq(self.hops_down + inc_down),
            self.hops_up.eq(self.hops_up + inc_up),
            self.hops.eq(self.hops + inc_down + inc_up),
        ]
        return m

    def _elaborate_down(self, m: Module) -> list[Value]:
        d, dw = self._depth, self._data_width
        stages: dict[tuple[int, int], _DownStage] = {
            (0, 0): _DownStage(
                valid=self.down.valid,
                data=self.down.payload.data,
                dest=self.down.payload.dest,
                broadcast=self.down.payload.broadcast,
                fire=Signal(name="dn0_0_fire"),
            )
        }
        for level in range(1, d + 1):
            for i in range(self.nodes_at(level)):
                name = f"dn{level}_{i}"
                # Payload registers skip reset (valid qualifies them), saving reset muxes. Leaf
                # stages need no routing state; a zero-width Signal would also come out of the
                # Verilog backend as a `[-1:0]` wire, which other tools read as 2 bits.
                dest: Value = _NONE
                broadcast: Value = _NONE
                if level < d:
                    dest = Signal(d - level, name=f"{name}_dest", reset_less=True)
                    broadcast = Signal(name=f"{name}_broadcast", reset_less=True)
                stages[(level, i)] = _DownStage(
                    valid=Signal(name=f"{name}_valid"),
                    data=Signal(dw, name=f"{name}_data", reset_less=True),
                    dest=dest,
                    broadcast=broadcast,
                    fire=Signal(name=f"{name}_fire"),
                )

        loads: list[Value] = []
        for level in range(d):
            for i in range(self.nodes_at(level)):
                parent = stages[(level, i)]
                sel = parent.dest[d - level - 1]
                routable: Value = Const(1)
                if level == 0 and self._leaves != 1 << d:
                    routable = parent.broadcast | (parent.dest < self._leaves)
                can_go: list[Value] = []
                for c in (0, 1):
                    child = stages.get((level + 1, 2 * i + c))
                    if child is None:
                        continue
                    target = Signal(name=f"dn{level}_{i}_to{c}")
                    load = Signal(name=f"dn{level}_{i}_load{c}")
                    m.d.comb += [
                        target.eq(routable & (parent.broadcast | (sel == c))),
                        load.eq(parent.fire & target),
                    ]
                    can_go.append(~target | ~child.valid | child.fire)
                    loads.append(load)
                    with m.If(load):
                        m.d.sync += [child.valid.eq(1), child.data.eq(parent.data)]
                        if level + 1 < d:
                            m.d.sync += [
                                child.dest.eq(parent.dest[: d - level - 1]),
                                child.broadcast.eq(parent.broadcast),
                            ]
                    with m.Elif(child.fire):
                        m.d.sync += child.valid.eq(0)
                ready = Cat(*can_go).all()
                m.d.comb += parent.fire.eq(parent.valid & ready)
                if level == 0:
                    m.d.comb += self.down.ready.eq(ready)

        for k in range(self._leaves):
            stage = stages[(d, k)]
            port = self.leaf[k]
            m.d.comb += [
                port.valid.eq(stage.valid),
                port.payload.eq(stage.data),
                stage.fire.eq(stage.valid & port.ready),
            ]
        return loads

    def _elaborate_up(self, m: Module) -> list[Value]:
        d, dw = self._depth, self._data_width
        stages: dict[tuple[int, int], _UpStage] = {}
        for k in range(self._leaves):
            port = self.up_leaf[k]
            take = Signal(name=f"up{d}_{k}_take")
            m.d.comb += port.ready.eq(take)
            stages[(d, k)] = _UpStage(valid=port.valid, data=port.payload, src=_NONE, take=take)
        for level in range(d):
            for i in range(self.nodes_at(level)):
                name = f"up{level}_{i}"
                stages[(level, i)] = _UpStage(
                    valid=Signal(name=f"{name}_valid"),
                    data=Signal(dw, name=f"{name}_data", reset_less=True),
                    src=Signal(d - level, name=f"{name}_src", reset_less=True),
                    take=Signal(name=f"{name}_take"),
                )

        loads: list[Value] = []
        for level in range(d):
            for i in range(self.nodes_at(level)):
                name = f"up{level}_{i}"
                node = stages[(level, i)]
                accept = ~node.valid | node.take
                load = Signal(name=f"{name}_load")
                loads.append(load)
                kids = [
                    (c, stages[(level + 1, 2 * i + c)])
                    for c in (0, 1)
                    if (level + 1, 2 * i + c) in stages
                ]
                if len(kids) == 2:
                    (_, left), (_, right) = kids
                    last = Signal(name=f"{name}_last")
                    grant = Signal(name=f"{name}_grant")
                    # Two-way round robin: on contention serve the child not served last time.
                    m.d.comb += [
                        grant.eq(Mux(left.valid & right.valid, ~last, right.valid)),
                        left.take.eq(accept & ~grant),
                        right.take.eq(accept & grant),
                        load.eq(accept & (left.valid | right.valid)),
                    ]
                    new_data = Mux(grant, right.data, left.data)
                    new_src = grant
                    if level + 1 < d:  # leaf ports carry no src bits; avoid a 0-bit Mux
                        new_src = Cat(Mux(grant, right.src, left.src), grant)
                    with m.If(load):
                        m.d.sync += last.eq(grant)
                else:
                    ((c, only),) = kids
                    m.d.comb += [only.take.eq(accept), load.eq(accept & only.valid)]
                    new_data = only.data
                    new_src = Const(c, 1)
                    if level + 1 < d:
                        new_src = Cat(only.src, new_src)
                with m.If(load):
                    m.d.sync += [node.valid.eq(1), node.data.eq(new_data), node.src.eq(new_src)]
                with m.Elif(node.valid & node.take):
                    m.d.sync += node.valid.eq(0)

        root = stages[(0, 0)]
        m.d.comb += [
            self.up.valid.eq(root.valid),
            self.up.payload.data.eq(root.data),
            self.up.payload.src.eq(root.src),
            root.take.eq(self.up.ready),
        ]
        return loads


def _sum(terms: list[Value]) -> Value:
    # Balanced adder tree: a linear chain would put every load bit on one long carry path.
    if not terms:
        return Const(0, 1)
    level = [t.as_unsigned() for t in terms]
    while len(level) > 1:
        level = [
            level[j] + level[j + 1] if j + 1 < len(level) else level[j]
            for j in range(0, len(level), 2)
        ]
    return level[0]
