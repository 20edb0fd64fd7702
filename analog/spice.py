"""Safe netlist text: every value that reaches ngspice is a checked number or a name from a set.

A shared design point or PDK description must never smuggle control commands into a netlist
(ngspice's ``shell`` would run them). So netlists are built only through :class:`Netlist`,
whose methods accept numbers (finite, formatted by this module) and names that match a strict
pattern or a fixed set; paths are checked to exist and to contain no quote or newline.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]{0,63}$")
_NODE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.]{0,63}$")
_PATH_FORBIDDEN = set("'\"\n\r;`$")


class NetlistError(ValueError):
    """A value that may not reach a netlist; the message names it and what is allowed."""


def num(value: float | int, what: str = "value") -> str:
    """A finite number as SPICE text (``repr``-exact, no unit suffix)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise NetlistError(f"{what} = {value!r} is not allowed: must be a number")
    v = float(value)
    if not math.isfinite(v):
        raise NetlistError(f"{what} = {value!r} is not allowed: must be a finite number")
    return repr(int(value)) if isinstance(value, int) else repr(v)


def name(value: str, what: str = "name", allowed: Iterable[str] | None = None) -> str:
    """An identifier (node, device, model, section); from ``allowed`` when given."""
    if not isinstance(value, str) or not _NAME.match(value):
        raise NetlistError(
            f"{what} = {value!r} is not allowed: must be an identifier "
            "(letters, digits, '_' and '.', starting with a letter or '_', at most 64)"
        )
    if allowed is not None:
        allowed = list(allowed)
        if value not in allowed:
            raise NetlistError(
                f"{what} = {value!r} is not allowed: must be one of {', '.join(allowed)}"
            )
    return value


def node(value: str) -> str:
    """A node name: letters, digits, '_' and '.' (``0`` is ground)."""
    if not isinstance(value, str) or not _NODE.match(value):
        raise NetlistError(
            f"node = {value!r} is not allowed: letters, digits, '_' and '.', at most 64"
        )
    return value


def path(value: str | Path, what: str = "path") -> str:
    """An existing file's absolute path, quoted for ``.lib``/``.include``."""
    p = Path(value).resolve()
    text = str(p)
    if any(c in _PATH_FORBIDDEN for c in text) or not text.isprintable():
        raise NetlistError(f"{what} = {text!r} is not allowed: quotes, ';', '$' or control chars")
    if not p.is_file():
        raise NetlistError(f"{what} = {text!r}: no such file")
    return f"'{text}'"


class Netlist:
    """Lines of a netlist, appended only through checked helpers."""

    def __init__(self, title: str) -> None:
        self.lines: list[str] = [f"* {name(title, 'title')}"]

    def text(self) -> str:
        return "\n".join([*self.lines, ".end", ""])

    # --- models and options --------------------------------------------------------------
    def include(self, file: str | Path) -> None:
        self.lines.append(f".include {path(file, 'include file')}")

    def lib(self, file: str | Path, section: str) -> None:
        self.lines.append(f".lib {path(file, 'model library')} {name(section, 'lib section')}")

    def param(self, key: str, value: float) -> None:
        self.lines.append(f".param {name(key, 'param')}={num(value, key)}")

    def options(self, **opts: float) -> None:
        self.lines.append(
            ".option " + " ".join(f"{name(k, 'option')}={num(v, k)}" for k, v in opts.items())
        )

    def flag_options(self, *flags: str) -> None:
        allowed = ("klu", "noopiter", "nomod", "noacct", "noinit")
        self.lines.append(".option " + " ".join(name(f, "option", allowed) for f in flags))

    def temp(self, celsius: float) -> None:
        self.lines.append(f".temp {num(celsius, 'temperature')}")

    # --- elements ---------------------------------------------------------------------------
    def r(self, ref: str, a: str, b: str, ohm: float) -> None:
        self._el("R", ref, (a, b), num(ohm, f"R{ref}"))

    def c(self, ref: str, a: str, b: str, farad: float) -> None:
        self._el("C", ref, (a, b), num(farad, f"C{ref}"))

    def v(self, ref: str, p: str, n: str, volt: float) -> None:
        self._el("V", ref, (p, n), "dc " + num(volt, f"V{ref}"))

    def v_pulse(
        self, ref: str, p: str, n: str, v1: float, v2: float, delay: float, rise: float
    ) -> None:
        vals = " ".join(num(x, f"V{ref}") for x in (v1, v2, delay, rise, rise, 1.0, 2.0))
        self._el("V", ref, (p, n), f"dc {num(v1, 'v1')} pulse({vals})")

    def i(self, ref: str, p: str, n: str, amp: float) -> None:
        self._el("I", ref, (p, n), "dc " + num(amp, f"I{ref}"))

    def vcvs(self, ref: str, p: str, n: str, cp: str, cn: str, gain: float) -> None:
        self._el("E", ref, (p, n, cp, cn), num(gain, f"E{ref}"))

    def vccs(self, ref: str, p: str, n: str, cp: str, cn: str, gm: float) -> None:
        self._el("G", ref, (p, n, cp, cn), num(gm, f"G{ref}"))

    def switch_above(
        self, ref: str, p: str, n: str, ctrl: str, threshold: float, hi: float, lo: float
    ) -> None:
        """A behavioural source: ``hi`` when V(ctrl) > threshold else ``lo`` (sweep decoders)."""
        expr = (
            f"V = v({node(ctrl)}) > {num(threshold, 'threshold')} ? "
            f"{num(hi, 'hi')} : {num(lo, 'lo')}"
        )
        self._el("B", ref, (p, n), expr)

    def mos(
        self,
        ref: str,
        d: str,
        g: str,
        s: str,
        b: str,
        model: str,
        w_um: float,
        l_um: float,
        delvto: float = 0.0,
        kind: str = "M",
    ) -> None:
        """A MOSFET (``kind="M"``) or a PDK subcircuit wrapping one (``kind="X"``)."""
        geom = f"{name(model, 'model')} w={num(w_um, 'w')}u l={num(l_um, 'l')}u"
        if delvto:
            geom += f" delvto={num(delvto, 'delvto')}"
        self._el(name(kind, "kind", ("M", "X")), ref, (d, g, s, b), geom)

    def dc(self, source: str, start: float, stop: float, step: float) -> None:
        vals = " ".join(num(x, "dc sweep") for x in (start, stop, step))
        self.lines.append(f".dc {name(source, 'source')} {vals}")

    def tran(self, step: float, stop: float) -> None:
        self.lines.append(f".tran {num(step, 'tstep')} {num(stop, 'tstop')}")

    def op(self) -> None:
        self.lines.append(".op")

    def save(self, vectors: Sequence[str]) -> None:
        """Save only what is read back (big columns otherwise store every node)."""
        out = []
        for v in vectors:
            m = re.fullmatch(r"([vi])\(([A-Za-z_][A-Za-z0-9_.]*)\)", v)
            if m is None and v.endswith("#branch"):
                out.append(name(v.removesuffix("#branch"), "source") + "#branch")
            elif m is None:
                out.append(name(v, "vector"))
            else:
                out.append(f"{m.group(1)}({node(m.group(2))})")
        self.lines.append(".save " + " ".join(out))

    def _el(self, kind: str, ref: str, nodes: Sequence[str], tail: str) -> None:
        nn = " ".join(node(n) for n in nodes)
        self.lines.append(f"{kind}{node(ref)} {nn} {tail}")
