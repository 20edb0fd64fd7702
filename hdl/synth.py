"""Logic synthesis with yosys and the per-block cell report.

This module owns the "how big is each block" question: :func:`synthesize` runs yosys on Verilog
(typically Amaranth's ``verilog.convert`` output) for a generic gate library, iCE40 or ECP5,
keeps the hierarchy so every module gets its own cell counts, then flattens for the design total.
It writes ``synth_<target>.log`` and ``synth_<target>.json`` into the output folder, each
atomically (temp file + :func:`os.replace`), so a reader never sees half a report.

Latches are counted twice over on purpose: as latch cells in the netlist, and as yosys's
"Latch inferred for signal" messages, because ``synth_ice40``/``synth_ecp5`` turn latches into
LUT feedback loops and the cells alone would hide them.
"""

from __future__ import annotations

import functools
import json
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from .toolchain import ToolError, find_tool, run_tool, tool_path

__all__ = [
    "SynthReport",
    "SynthTarget",
    "atomic_write_text",
    "classify_cells",
    "count_latches",
    "latch_messages",
    "parse_stat_json",
    "synth_command",
    "synthesize",
    "tail",
    "yosys_quote",
]

SynthTarget = Literal["generic", "ice40", "ecp5"]

# `-noflatten` keeps one netlist module per RTL block for the per-module report. `-dsp` maps
# multipliers onto the UP5K's SB_MAC16 (the iCE40 part this project targets has 8 of them);
# synth_ecp5 infers MULT18X18D by default; `-nowidelut` because yosys 0.23's ABC otherwise builds
# wide functions from LUT4 + PFUMX/L6MUX21 trees at up to 8 LUT4s each (the chip's subarray:
# 2,459 LUT4s with them, 761 without; hdl/fpga.py does the same).
_SYNTH_CMD: dict[str, str] = {
    "generic": "synth",
    "ice40": "synth_ice40 -dsp -noflatten",
    "ecp5": "synth_ecp5 -nowidelut -noflatten",
}

# Coarse ($dlatch) and fine-grained ($_DLATCH_P_) latch cells; $sr/$_SR_ are set-reset latches.
_LATCH_CELL = re.compile(r"^\$(?:dlatch|adlatch|dlatchsr|sr|_DLATCH_|_DLATCHSR_|_SR_)")
# Generic flip-flops after `synth` (fine-grained) and, for safety, coarse ones.
_GENERIC_FF_CELL = re.compile(
    r"^\$(?:_(?:FF|DFF|DFFE|SDFF|SDFFE|SDFFCE|DFFSR|DFFSRE|ALDFF|ALDFFE)_"
    r"|(?:ff|dff|dffe|adff|adffe|sdff|sdffe|sdffce|aldff|aldffe|dffsr|dffsre)$)"
)
# "No latch inferred for ..." is also logged (lower-case l), so match the capital L only.
# yosys >= 0.40 prefixes the message with "Warning: ".
_LATCH_MSG = re.compile(r"Latch inferred for signal .*")
# Bookkeeping cells newer yosys (YoWASP builds) keeps after flatten; they are not logic.
_IGNORED_CELLS = frozenset({"$scopeinfo"})


@functools.cache
def _latches_option(yosys: tuple[str, ...], command: str) -> str:
    """``" -latches warn"`` when this yosys's *command* takes it, else ``""``.

    yosys >= 0.5x aborts ``synth_ice40`` on latches by default (``-latches error``) while 0.23
    (Debian) maps them to LUT loops silently and has no such option. Asking for ``warn``
    everywhere makes both versions synthesize and report latches the same way.
    """
    proc = run_tool([*yosys, "-p", f"help {command}"], cwd=Path.cwd(), timeout_s=120)
    return " -latches warn" if "-latches <" in proc.stdout else ""


def synth_command(yosys: Sequence[str], command: str) -> str:
    """*command* (e.g. ``"synth_ice40 -dsp"``) plus the latch option this yosys needs."""
    return command + _latches_option(tuple(yosys), command.split()[0])


def yosys_quote(path: Path | str) -> str:
    """Quote a file name for yosys frontends/backends (``read_verilog``, ``write_json``).

    yosys splits script words on blanks; frontends strip double quotes, but ``tee -o`` does not.
    """
    text = str(path)
    if '"' in text:
        raise ToolError(f"yosys cannot take file names with double quotes: {text!r}")
    return f'"{text}"'


def atomic_write_text(path: Path, text: str) -> None:
    """Write *text* to *path* via a temp file in the same folder and :func:`os.replace`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; reports are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def tail(text: str, lines: int = 25) -> str:
    """The last *lines* lines of *text* (for error messages)."""
    return "\n".join(text.splitlines()[-lines:])


def latch_messages(log_text: str) -> tuple[str, ...]:
    """yosys's "Latch inferred for signal ..." messages in a log, in order."""
    return tuple(m.group(0).strip() for m in _LATCH_MSG.finditer(log_text))


def count_latches(cells_by_type: Mapping[str, int]) -> int:
    """Number of latch cells ($dlatch, $_DLATCH_*, $sr, ...) in a cell-type histogram."""
    return sum(n for t, n in cells_by_type.items() if _LATCH_CELL.match(t))


def classify_cells(target: str, cells_by_type: Mapping[str, int]) -> dict[str, int | None]:
    """LUT/FF/BRAM/DSP counts from a flattened cell-type histogram.

    ``generic`` has no LUTs/BRAM/DSP (``None``) but does count flip-flops. On ECP5 each CCU2C
    carry cell fills both LUT4s of a slice half, so it counts as two LUTs (nextpnr's
    TRELLIS_COMB count agrees). iCE40 carries (SB_CARRY) share the LUT's logic cell and are
    not counted as LUTs.
    """

    def total(pred: Any) -> int:
        return sum(n for t, n in cells_by_type.items() if pred(t))

    if target == "ice40":
        return {
            "luts": total(lambda t: t == "SB_LUT4"),
            "ffs": total(lambda t: t.startswith("SB_DFF")),
            "brams": total(lambda t: t.startswith("SB_RAM40")),
            "dsps": total(lambda t: t == "SB_MAC16"),
        }
    if target == "ecp5":
        return {
            "luts": total(lambda t: t == "LUT4") + 2 * total(lambda t: t == "CCU2C"),
            "ffs": total(lambda t: t == "TRELLIS_FF"),
            "brams": total(lambda t: t == "DP16KD"),
            "dsps": total(lambda t: t == "MULT18X18D"),
        }
    return {
        "luts": None,
        "ffs": total(lambda t: bool(_GENERIC_FF_CELL.match(t))),
        "brams": None,
        "dsps": None,
    }


@dataclass(frozen=True)
class SynthReport:
    """Result of :func:`synthesize`.

    Attributes:
        top: top module name.
        target: ``generic``, ``ice40`` or ``ecp5``.
        yosys: the yosys version line that produced it.
        modules: per netlist module (hierarchy kept), cell counts by cell type. Instances of
            submodules appear as cells whose type is the submodule's name.
        module_cells: per module, the total of ``modules[name]``.
        total_cells: cells of the flattened design (submodules expanded once per instance).
        total_by_type: cell counts by type of the flattened design.
        luts, ffs, brams, dsps: FPGA resource counts from the flattened netlist (see
            :func:`classify_cells`); ``None`` where the target has no such resource.
        latches: max(latch cells in the flattened netlist, number of "Latch inferred"
            messages). FPGA targets rewrite latches as LUT loops, so the message count is what
            catches them there.
        latch_messages: the "Latch inferred for signal ..." lines from the log.
        area: for ``generic``, yosys's ``stat -tech cmos`` transistor estimate; else ``None``.
        area_unit: what *area* counts; says "lower bound" when yosys could not price some cells
            (it prints ``N+``, e.g. for latches).
        log_path, report_path: the files written into the output folder.
    """

    top: str
    target: str
    yosys: str
    modules: dict[str, dict[str, int]]
    module_cells: dict[str, int]
    total_cells: int
    total_by_type: dict[str, int]
    luts: int | None
    ffs: int | None
    brams: int | None
    dsps: int | None
    latches: int
    latch_messages: tuple[str, ...]
    area: float | None
    area_unit: str | None
    log_path: Path = field(compare=False)
    report_path: Path = field(compare=False)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (paths as strings)."""
        data = asdict(self)
        data["latch_messages"] = list(self.latch_messages)
        data["log_path"] = str(self.log_path)
        data["report_path"] = str(self.report_path)
        return data


def _cells_by_type(stat_module: Mapping[str, Any]) -> dict[str, int]:
    raw = stat_module.get("num_cells_by_type", {})
    return {
        name.removeprefix("\\"): int(count)
        for name, count in sorted(raw.items())
        if name not in _IGNORED_CELLS
    }


def _transistors(stat_module: Mapping[str, Any]) -> tuple[float | None, str | None]:
    raw = stat_module.get("estimated_num_transistors")
    if raw is None:
        return None, None
    match = re.match(r"\s*(\d+)(\+?)", str(raw))
    if match is None:
        return None, None
    unit = "transistors (yosys stat -tech cmos)"
    if match.group(2):
        unit = "transistors (yosys stat -tech cmos; lower bound, some cells unpriced)"
    return float(match.group(1)), unit


# yosys 0.23's `stat -json` on a design whose submodules have submodules of their own also
# logs the text report's per-instance lines ("       leaf     1") between the "modules" object
# and "design", which breaks the JSON (fixed in later yosys). Such a line has no quote, brace,
# bracket, comma or colon, which every line of the real JSON has.
_STAT_TEXT_LINE = re.compile(r"^[ \t]*[^\s\"{}\[\],:]+[ \t]+\d+[ \t]*$", re.MULTILINE)


def parse_stat_json(text: str) -> dict[str, Any]:
    """Parse yosys's ``stat -json`` output, repairing the known defect of yosys 0.23.

    Raises:
        ValueError: the text is not JSON even without the stray text-report lines.
    """
    try:
        data: dict[str, Any] = json.loads(text)
    except ValueError:
        repaired = _STAT_TEXT_LINE.sub("", text)
        if repaired == text:
            raise
        data = json.loads(repaired)
    return data


def _read_stat(path: Path) -> dict[str, Any]:
    try:
        return parse_stat_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ToolError(f"yosys wrote no readable stat report {path.name}: {exc}") from exc


def synthesize(
    verilog: Sequence[Path],
    top: str,
    out_dir: Path,
    target: SynthTarget = "generic",
    *,
    timeout_s: float | None = 600.0,
) -> SynthReport:
    """Synthesize *verilog* with yosys for *target* and report cells per module and in total.

    The script is ``read_verilog -sv``, ``hierarchy -check -top``, the target's synth command
    without flattening (``synth``, ``synth_ice40 -dsp -noflatten``, ``synth_ecp5 -nowidelut
    -noflatten``), ``stat -json`` per module, then ``flatten`` and ``stat -json`` for the total
    (``-tech cmos`` added for ``generic`` to get a transistor estimate).

    Writes ``synth_<target>.log`` (full yosys log) and ``synth_<target>.json`` (this report)
    into *out_dir*, both atomically.

    Raises:
        ToolError: yosys is missing or fails (the message ends with the log's last lines).
        ValueError: unknown *target* or no sources.
    """
    if target not in _SYNTH_CMD:
        raise ValueError(f"unknown synthesis target {target!r}; use one of {list(_SYNTH_CMD)}")
    if not verilog:
        raise ValueError("no Verilog sources given")
    sources = [Path(p).resolve() for p in verilog]
    for src in sources:
        if not src.is_file():
            raise ToolError(f"Verilog source not found: {src}")
    yosys = find_tool("yosys")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / f"synth_{target}.log"
    report_path = out_dir / f"synth_{target}.json"
    tech = " -tech cmos" if target == "generic" else ""

    with tempfile.TemporaryDirectory(dir=out_dir, prefix=f".synth_{target}-") as tmp_name:
        tmp = Path(tmp_name).resolve()
        # `tee -o` takes its file name literally (quotes included), so the stat reports use
        # fixed relative names in the temp folder, which is yosys's working directory.
        hier_json, flat_json = tmp / "stat_hier.json", tmp / "stat_flat.json"
        script = "\n".join(
            [
                "read_verilog -sv " + " ".join(yosys_quote(tool_path(s, tmp)) for s in sources),
                f"hierarchy -check -top {top}",
                f"{synth_command(yosys, _SYNTH_CMD[target])} -top {top}",
                f"tee -q -o {hier_json.name} stat -json{tech}",
                "flatten",
                f"tee -q -o {flat_json.name} stat -json{tech}",
                "",
            ]
        )
        script_path = tmp / "synth.ys"
        script_path.write_text(script, encoding="utf-8")
        tmp_log = tmp / "yosys.log"
        # -q keeps stdout to warnings/errors; -l still gets the full log.
        proc = run_tool(
            [*yosys, "-q", "-l", tmp_log.name, "-s", script_path.name],
            cwd=tmp,
            timeout_s=timeout_s,
        )
        log_text = tmp_log.read_text(encoding="utf-8", errors="replace") if tmp_log.exists() else ""
        if proc.stdout.strip() and proc.stdout not in log_text:
            log_text += "\n# --- yosys stdout/stderr ---\n" + proc.stdout
        atomic_write_text(log_path, log_text)
        if proc.returncode != 0:
            raise ToolError(
                f"yosys ({target}) failed with exit status {proc.returncode}; log {log_path}:\n"
                + tail(log_text)
            )
        hier, flat = _read_stat(hier_json), _read_stat(flat_json)

    modules = {
        name.removeprefix("\\"): _cells_by_type(stats)
        for name, stats in sorted(hier.get("modules", {}).items())
    }
    flat_modules = flat.get("modules", {})
    flat_top = flat_modules.get(f"\\{top}") or flat_modules.get(top) or flat.get("design", {})
    total_by_type = _cells_by_type(flat_top)
    messages = latch_messages(log_text)
    area, area_unit = _transistors(flat_top) if target == "generic" else (None, None)
    classes = classify_cells(target, total_by_type)
    report = SynthReport(
        top=top,
        target=target,
        yosys=str(flat.get("creator", "")),
        modules=modules,
        module_cells={name: sum(cells.values()) for name, cells in modules.items()},
        total_cells=sum(total_by_type.values()),
        total_by_type=total_by_type,
        luts=classes["luts"],
        ffs=classes["ffs"],
        brams=classes["brams"],
        dsps=classes["dsps"],
        latches=max(count_latches(total_by_type), len(messages)),
        latch_messages=messages,
        area=area,
        area_unit=area_unit,
        log_path=log_path,
        report_path=report_path,
    )
    atomic_write_text(report_path, json.dumps(report.to_json(), indent=2) + "\n")
    return report
