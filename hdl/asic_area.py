"""Area of a chip's digital blocks from logic synthesis onto cited standard cells.

This module owns the "how many um^2 is each block" question for the generated RTL:

- it splits the generated Verilog into modules and groups identical modules into classes
  (Amaranth emits one module per instance; hundreds of WGU lanes are one circuit), and counts
  each class's instances from the top down;
- one yosys run maps one module of every class onto the standard cells of ``tech/cells``
  (written out as a small Liberty file), with the hierarchy kept so each module's area is its
  own, the stand-ins of the analog parts (the subarray and what it instantiates) as black
  boxes, and RAMs kept as memories and counted in bits (a chip builds them as SRAM macros,
  priced per bit by the caller); ROMs (memories without write ports) become logic;
- results are cached by the hash of the Verilog, the cells and the script.

Areas are at the cell library's node (45 nm); callers scale them with the node's
``logic_area_scale``. Flip-flops with enables or resets map to a plain D flip-flop plus gates.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..tech.loader import CellLibrary, load_cells
from .synth import atomic_write_text, tail
from .toolchain import ToolError, find_tool, run_tool

__all__ = [
    "AsicArea",
    "ModuleArea",
    "liberty_text",
    "module_classes",
    "split_modules",
    "synthesize_area",
]

_MODULE = re.compile(r"^module (\S+) ?\((.*?)^endmodule\b[^\n]*\n?", re.S | re.M)
_INSTANCE = re.compile(r"^  (\\\S+ |[A-Za-z_][\w$]*) +(\\\S+ |[A-Za-z_][\w$]*) *\($", re.M)
_PORT_DECL = re.compile(r"^  (?:input|output|inout)\b[^;]*;", re.M)
# Amaranth/yosys number internal names design-wide ($123, port$4567$0); identical modules
# differ only there.
_NUMBER = re.compile(r"\$\d+")

_SCRIPT = """read_verilog -sv design.v
hierarchy -check
synth -run begin:fine
memory -nomap
memory_map t:$mem_v2 r:WR_PORTS=0 %i
opt -fast -full
techmap
opt -fast
dfflegalize -cell $_DFF_P_ 01
dfflibmap -liberty cells.lib
abc -liberty cells.lib
opt_clean
tee -q -o stat.txt stat -liberty cells.lib
tee -q -o mems.txt select -list t:$mem_v2
dump -o mems.il t:$mem_v2
"""


def _name(token: str) -> str:
    return token.strip().removeprefix("\\")


def split_modules(text: str) -> dict[str, str]:
    """Module name (without a leading backslash) -> its text, ``module`` to ``endmodule``."""
    return {_name(m.group(1)): m.group(0) for m in _MODULE.finditer(text)}


def _children(body: str, known: Iterable[str]) -> list[str]:
    names = set(known)
    return [t for t in (_name(m.group(1)) for m in _INSTANCE.finditer(body)) if t in names]


def module_classes(
    modules: dict[str, str], top: str, standins: Sequence[str] = ()
) -> tuple[dict[str, str], dict[str, int], dict[str, list[str]]]:
    """Classes of identical modules, instance counts and children.

    Returns ``(cls, count, children)``: ``cls[m]`` names the class (its first module in text
    order) of every module reachable from ``top`` except the stand-ins and what only they
    instantiate; ``count[m]`` is how many times ``m`` is instantiated in the design (1 for the
    top); ``children[m]`` lists the module types ``m`` instantiates, once per instance.
    """
    if top not in modules:
        raise ToolError(f"top module {top!r} is not in the Verilog (modules: {len(modules)})")
    children = {name: _children(body, modules) for name, body in modules.items()}
    skip: set[str] = set()
    stack = [s for s in standins if s in modules]
    while stack:
        s = stack.pop()
        if s not in skip:
            skip.add(s)
            stack.extend(children[s])
    keys: dict[str, str] = {}

    def key(name: str) -> str:
        if name not in keys:
            body = modules[name].replace(name, "<self>")
            for child in set(children[name]):
                body = body.replace(child, f"<{key(child)}>")
            keys[name] = hashlib.sha256(_NUMBER.sub("$N", body).encode()).hexdigest()[:16]
        return keys[name]

    count: dict[str, int] = defaultdict(int)
    count[top] = 1
    order: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> None:  # post-order, so parents come after children
        if name in seen:
            return
        seen.add(name)
        for c in children[name]:
            if c not in skip:
                visit(c)
        order.append(name)

    visit(top)
    for name in reversed(order):  # parents first
        for c in children[name]:
            if c not in skip:
                count[c] += count[name]
    first: dict[str, str] = {}
    for name in modules:  # text order, so the class name is stable
        if name in seen:
            first.setdefault(key(name), name)
    cls = {name: first[key(name)] for name in order}
    return cls, dict(count), children


def liberty_text(lib: CellLibrary) -> str:
    """A Liberty file with the cells' areas, pins and functions (enough for abc/dfflibmap)."""
    out = [f"library({lib.name}) {{", "  delay_model : table_lookup;", '  time_unit : "1ns";']
    for name, c in lib.cells.items():
        out.append(f"  cell({name}) {{")
        out.append(f"    area : {c.area_um2};")
        if c.clocked_on is not None:
            out.append(
                f'    ff(IQ, IQN) {{ next_state : "{c.next_state}"; '
                f'clocked_on : "{c.clocked_on}"; }}'
            )
        for pin in c.inputs:
            clock = " clock : true;" if pin == c.clocked_on else ""
            out.append(f"    pin({pin}) {{ direction : input;{clock} }}")
        func = "IQ" if c.clocked_on is not None else c.function
        out.append(f'    pin({c.output}) {{ direction : output; function : "{func}"; }}')
        out.append("  }")
    out.append("}")
    return "\n".join(out) + "\n"


@dataclass(frozen=True)
class ModuleArea:
    """One class of identical modules: the area of one instance and the instance count."""

    name: str  # the module synthesized for the class
    members: tuple[str, ...]  # every module of the class
    instances: int  # instances of the class's modules in the design, all together
    area_um2: float  # logic of one instance (its own cells; children are counted apart)
    cells: dict[str, int]
    rams: dict[str, tuple[int, int]]  # RAM name -> (words, bits per word), one instance

    @property
    def ram_bits(self) -> int:
        return sum(words * width for words, width in self.rams.values())


@dataclass(frozen=True)
class AsicArea:
    """Synthesized area of every digital block class of a design."""

    top: str
    library: str
    library_source: str
    node_nm: float
    yosys: str
    standins: tuple[str, ...]
    modules: dict[str, ModuleArea]  # by class name
    seconds: float  # synthesis time (0 when read from the cache)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for m in data["modules"].values():
            m["rams"] = {k: list(v) for k, v in m["rams"].items()}
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AsicArea:
        mods = {
            k: ModuleArea(
                name=v["name"],
                members=tuple(v["members"]),
                instances=int(v["instances"]),
                area_um2=float(v["area_um2"]),
                cells={c: int(n) for c, n in v["cells"].items()},
                rams={r: (int(a), int(b)) for r, (a, b) in v["rams"].items()},
            )
            for k, v in data["modules"].items()
        }
        return cls(
            top=data["top"],
            library=data["library"],
            library_source=data["library_source"],
            node_nm=float(data["node_nm"]),
            yosys=data["yosys"],
            standins=tuple(data["standins"]),
            modules=mods,
            seconds=0.0,
        )

    @property
    def logic_um2(self) -> float:
        return sum(m.area_um2 * m.instances for m in self.modules.values())

    @property
    def ram_bits(self) -> int:
        return sum(m.ram_bits * m.instances for m in self.modules.values())


def _stub(body: str) -> str:
    """The module's header and port declarations only, marked as a black box."""
    header = body[: body.index(");") + 2]
    ports = "\n".join(_PORT_DECL.findall(body))
    return f"(* blackbox *)\n{header}\n{ports}\nendmodule\n"


def _parse_stat(text: str) -> dict[str, tuple[float, dict[str, int]]]:
    """Per module: (area of its own cells, cell counts by type) from ``stat -liberty``.

    A module whose cells are all black boxes or that has none gets no area line: area 0.
    """
    area: dict[str, float] = {}
    cells: dict[str, dict[str, int]] = {}
    name, in_cells = None, False
    for line in text.splitlines():
        if m := re.match(r"^=== (\S+) ===", line):
            name, in_cells = _name(m.group(1)), False
            if name != "design":
                area[name], cells[name] = 0.0, {}
        elif name is None or name not in cells:
            continue
        elif line.strip().startswith("Number of cells:"):
            in_cells = True
        elif in_cells and (m := re.match(r"^\s{5}(\S+)\s+(\d+)\s*$", line)):
            cells[name][_name(m.group(1))] = int(m.group(2))
        elif m := re.match(r"^\s*Chip area for module '\\?([^']+)': ([0-9.eE+-]+)", line):
            area[_name(m.group(1))] = float(m.group(2))
            in_cells = False
        elif line.strip() == "":
            in_cells = False
    return {k: (area[k], cells[k]) for k in area}


def _parse_mems(listing: str, dump: str) -> dict[str, dict[str, tuple[int, int]]]:
    """Per module: memory name -> (words, width) of its ``$mem_v2`` cells.

    ``listing`` is ``select -list`` (``module/cell`` lines), ``dump`` the cells' RTLIL, which
    names no module; both walk the design in the same order, which is checked name by name.
    """
    where = [ln.strip() for ln in listing.splitlines() if "/" in ln]
    cells: list[tuple[str, dict[str, int]]] = []
    for line in dump.splitlines():
        s = line.strip()
        if s.startswith("cell $mem_v2 "):
            cells.append((_name(s.split()[2]), {}))
        elif s.startswith("parameter ") and cells:
            parts = s.split()
            if len(parts) >= 3 and _name(parts[1]) in ("SIZE", "WIDTH"):
                value = parts[2].split("'")[-1]  # 12 or 32'00000000000000000001000000000000
                cells[-1][1][_name(parts[1])] = int(value, 2 if "'" in parts[2] else 10)
    if len(where) != len(cells):
        raise ToolError(f"yosys listed {len(where)} memories but dumped {len(cells)}")
    out: dict[str, dict[str, tuple[int, int]]] = defaultdict(dict)
    for path, (cell, params) in zip(where, cells, strict=True):
        module, _, listed = path.rpartition("/")
        if _name(listed) != cell:
            raise ToolError(f"memory listing and dump disagree: {path!r} vs {cell!r}")
        out[_name(module)][cell] = (params.get("SIZE", 0), params.get("WIDTH", 0))
    return dict(out)


def _run_yosys(
    yosys: list[str],
    modules: dict[str, str],
    reps: list[str],
    lib_text: str,
    work: Path,
    timeout_s: float,
) -> tuple[dict[str, tuple[float, dict[str, int]]], dict[str, dict[str, tuple[int, int]]], str]:
    work.mkdir(parents=True, exist_ok=True)
    needed = set(reps)
    stubs: set[str] = set()
    for r in reps:
        for c in _children(modules[r], modules):
            if c not in needed:
                stubs.add(c)
    text = "".join(modules[r] for r in reps) + "".join(_stub(modules[s]) for s in sorted(stubs))
    (work / "design.v").write_text(text, encoding="utf-8")
    (work / "area.ys").write_text(_SCRIPT, encoding="utf-8")
    (work / "cells.lib").write_text(lib_text, encoding="utf-8")
    proc = run_tool(
        [*yosys, "-q", "-l", "yosys.log", "-s", "area.ys"], cwd=work, timeout_s=timeout_s
    )
    log = (work / "yosys.log").read_text(errors="replace") if (work / "yosys.log").exists() else ""
    if proc.returncode != 0:
        raise ToolError(
            f"yosys (area) failed with exit status {proc.returncode} in {work}:\n"
            + tail(log + proc.stdout)
        )
    stat = _parse_stat((work / "stat.txt").read_text(errors="replace"))
    listing, dump = work / "mems.txt", work / "mems.il"
    mems = (
        _parse_mems(listing.read_text(errors="replace"), dump.read_text(errors="replace"))
        if dump.exists()
        else {}
    )
    version = next((ln for ln in log.splitlines() if ln.startswith("Yosys ")), "")
    return {r: stat[r] for r in reps if r in stat}, mems, version.strip()


def synthesize_area(
    verilog: str,
    top: str,
    *,
    standins: Sequence[str] = (),
    library: str = "nangate45",
    jobs: int = 2,
    cache: Path | None = None,
    timeout_s: float = 3600.0,
    nice: int = 0,
) -> AsicArea:
    """Synthesize one module of every class of *verilog* onto *library*'s cells.

    ``standins`` (and the modules only they instantiate) are black boxes: the caller prices
    them otherwise (the subarray stands for the analog array and ADCs). ``jobs`` yosys
    processes share the classes, largest first. With ``cache``, the result is kept in
    ``cache/<hash>.json`` and reused. ``nice`` > 0 runs yosys at that lower priority (the
    co-simulation's training keeps the cores).

    Raises:
        ToolError: yosys is missing or fails, or the top is not in the text.
    """
    lib = load_cells(library)
    lib_text = liberty_text(lib)
    yosys = find_tool("yosys")
    digest = hashlib.sha256(
        "\0".join([verilog, lib_text, _SCRIPT, top, *standins, " ".join(yosys)]).encode()
    ).hexdigest()[:24]
    cached = cache / f"area-{digest}.json" if cache is not None else None
    if cached is not None and cached.exists():
        return AsicArea.from_json(json.loads(cached.read_text(encoding="utf-8")))

    modules = split_modules(verilog)
    renice = shutil.which("nice") if nice > 0 else None
    run_as = [renice, "-n", str(nice), *yosys] if renice else yosys
    cls, count, _ = module_classes(modules, top, standins)

    t0 = time.perf_counter()
    reps = sorted(set(cls.values()), key=lambda r: -len(modules[r]))
    bins: list[list[str]] = [[] for _ in range(max(1, min(jobs, len(reps))))]
    loads = [0] * len(bins)
    for r in reps:  # largest first onto the lightest bin
        i = loads.index(min(loads))
        bins[i].append(r)
        loads[i] += len(modules[r])
    with tempfile.TemporaryDirectory(prefix="insitu-area-") as tmp:
        with ThreadPoolExecutor(len(bins)) as pool:
            futures = [
                pool.submit(
                    _run_yosys, run_as, modules, b, lib_text, Path(tmp) / f"job{i}", timeout_s
                )
                for i, b in enumerate(bins)
            ]
            results = [f.result() for f in futures]
    stat: dict[str, tuple[float, dict[str, int]]] = {}
    mems: dict[str, dict[str, tuple[int, int]]] = {}
    version = ""
    for s, mm, v in results:
        stat |= s
        mems |= mm
        version = version or v
    missing = [r for r in reps if r not in stat]
    if missing:
        raise ToolError(f"yosys reported no area for {len(missing)} module(s): {missing[:5]}")
    members: dict[str, list[str]] = defaultdict(list)
    for name, c in cls.items():
        members[c].append(name)
    area = AsicArea(
        top=top,
        library=lib.name,
        library_source=lib.source,
        node_nm=lib.node_nm,
        yosys=version,
        standins=tuple(standins),
        modules={
            r: ModuleArea(
                name=r,
                members=tuple(sorted(members[r])),
                instances=sum(count.get(m, 0) for m in members[r]),
                area_um2=stat[r][0],
                cells={k: v for k, v in stat[r][1].items() if k in lib.cells},
                rams={k: v for k, v in mems.get(r, {}).items() if v[0] > 0 and v[1] > 0},
            )
            for r in reps
        },
        seconds=time.perf_counter() - t0,
    )
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(cached, json.dumps(area.to_json(), indent=1) + "\n")
    return area
