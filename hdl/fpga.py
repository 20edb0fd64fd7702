"""FPGA place-and-route of RTL blocks: iCE40 UP5K and ECP5-25F, utilization and fmax.

This module owns the "does it fit and how fast is it" question for an RTL block:
:func:`place_and_route` synthesizes (yosys ``synth_ice40``/``synth_ecp5``, flattened), places and
routes (nextpnr), reads nextpnr's JSON report (``--report``) for utilization and the post-route
maximum frequency, and packs a bitstream (icepack / ecppack). Results land in *out_dir* as
``fpga_<target>.*`` files; the summary is ``fpga_<target>.json``, written atomically.

Small packages have few pins (39 user I/Os on the UP5K SG48), so a block with wide ports will not
place as is. ``wrap_io=True`` puts the block inside a generated scan-chain *I/O shell*
(:func:`write_io_shell`) with four pins: the clock, ``scan_in``, ``scan_en`` and ``scan_out``.
While ``scan_en`` is high, an input shift register (one flip-flop per input bit, fed from
``scan_in``) and an output shift register (one flip-flop per output bit, read at ``scan_out``)
shift one bit per clock, most significant bit first; while ``scan_en`` is low the input chain
holds its value and the output chain captures the block's outputs every clock. Every block port
except the clock (reset included) is driven from, or observed by, a chain bit, so no logic is
optimized away, every block I/O path becomes register-to-register (so fmax covers the block's
I/O paths too), and the shell is usable on real hardware. The report's ``io_shell_ffs`` is the
shell's flip-flop overhead, counted in the utilization.

Without the shell, a block whose outputs are registered but whose inputs come straight from pins
has no register-to-register paths, and nextpnr reports no fmax for it (``fmax_mhz`` is None).
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from .synth import (
    atomic_write_text,
    classify_cells,
    count_latches,
    latch_messages,
    parse_stat_json,
    synth_command,
    tail,
    yosys_quote,
)
from .toolchain import ToolError, find_tool, run_tool, tool_path

__all__ = [
    "DEVICES",
    "FpgaReport",
    "FpgaTarget",
    "IoShell",
    "Port",
    "ShellPort",
    "place_and_route",
    "read_ports",
    "write_io_shell",
]

FpgaTarget = Literal["ice40-up5k", "ecp5-25f"]


@dataclass(frozen=True)
class _Device:
    family: Literal["ice40", "ecp5"]
    synth: str  # yosys command, flattening (the default) for place-and-route
    nextpnr: str  # tool name for find_tool
    device_args: tuple[str, ...]
    constraints_ext: str  # .pcf / .lpf
    constraints_flag: str
    allow_unconstrained: str
    pnr_out_flag: str  # nextpnr's bitstream-source output
    pnr_out_ext: str
    packer: str
    bitstream_ext: str
    user_ios: int  # package pins usable as I/O (the placer's limit)
    default_freq_mhz: float
    lc_resource: str  # nextpnr resource counting LUT4 logic cells
    ff_resource: str | None  # None where FFs share the logic cell (iCE40)
    bram_resources: tuple[str, ...]
    dsp_resources: tuple[str, ...]
    io_resource: str


DEVICES: dict[str, _Device] = {
    # iCE40UP5K-SG48: 39 user I/Os (checked: 39 single-bit ports place, 40 do not).
    "ice40-up5k": _Device(
        family="ice40",
        synth="synth_ice40 -dsp",
        nextpnr="nextpnr-ice40",
        device_args=("--up5k", "--package", "sg48"),
        constraints_ext=".pcf",
        constraints_flag="--pcf",
        allow_unconstrained="--pcf-allow-unconstrained",
        pnr_out_flag="--asc",
        pnr_out_ext=".asc",
        packer="icepack",
        bitstream_ext=".bin",
        user_ios=39,
        default_freq_mhz=48.0,  # the UP5K's internal HFOSC rate
        lc_resource="ICESTORM_LC",
        ff_resource=None,
        bram_resources=("ICESTORM_RAM",),
        dsp_resources=("ICESTORM_DSP",),
        io_resource="SB_IO",
    ),
    # LFE5U-25F-CABGA256: 197 user I/Os (nextpnr's TRELLIS_IO count for the package).
    "ecp5-25f": _Device(
        family="ecp5",
        # -nowidelut: yosys 0.23's ABC maps wide functions onto LUT4 + PFUMX/L6MUX21 trees
        # that cost up to 8 LUT4s each; without them the chip's subarray took 761 LUT4s
        # instead of 2,459 (same logic, same CCU2C carries).
        synth="synth_ecp5 -nowidelut",
        nextpnr="nextpnr-ecp5",
        device_args=("--25k", "--package", "CABGA256"),
        constraints_ext=".lpf",
        constraints_flag="--lpf",
        allow_unconstrained="--lpf-allow-unconstrained",
        pnr_out_flag="--textcfg",
        pnr_out_ext=".config",
        packer="ecppack",
        bitstream_ext=".bit",
        user_ios=197,
        default_freq_mhz=100.0,
        lc_resource="TRELLIS_COMB",
        ff_resource="TRELLIS_FF",
        bram_resources=("DP16KD",),
        dsp_resources=("MULT18X18D",),
        io_resource="TRELLIS_IO",
    ),
}
"""Supported place-and-route targets."""


@dataclass(frozen=True)
class Port:
    """A top-level port of a Verilog module."""

    name: str
    direction: Literal["input", "output", "inout"]
    width: int


@dataclass(frozen=True)
class ShellPort:
    """A block port's slice of an I/O shell chain: bits ``[offset + width - 1 : offset]``."""

    name: str
    width: int
    offset: int


@dataclass(frozen=True)
class IoShell:
    """A generated scan-chain I/O shell (see the module docstring for the protocol).

    Input ports occupy the input chain from bit 0 up in ``inputs`` order, outputs likewise in the
    output chain. To apply input value ``v`` (``in_bits`` wide), shift ``v`` in MSB first with
    ``scan_en`` high for ``in_bits`` clocks; outputs shift out MSB first at ``scan_out``.
    """

    module: str
    path: Path
    block: str
    clock_port: str
    inputs: tuple[ShellPort, ...]
    outputs: tuple[ShellPort, ...]

    @property
    def in_bits(self) -> int:
        """Length of the input chain."""
        return sum(p.width for p in self.inputs)

    @property
    def out_bits(self) -> int:
        """Length of the output chain."""
        return sum(p.width for p in self.outputs)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (e.g. to hand the chain layout to a cocotb test)."""
        return {
            "module": self.module,
            "path": str(self.path),
            "block": self.block,
            "clock_port": self.clock_port,
            "inputs": [asdict(p) for p in self.inputs],
            "outputs": [asdict(p) for p in self.outputs],
        }


@dataclass(frozen=True)
class FpgaReport:
    """Result of :func:`place_and_route`.

    Attributes:
        target, top: what was placed; *placed_top* is the I/O shell module when wrapped.
        io_wrapped: whether the block sat inside the scan-chain I/O shell.
        io_shell_ffs: flip-flops the shell adds (input plus output chain bits); 0 unwrapped.
        freq_target_mhz: the frequency given to nextpnr (``--freq``).
        fmax_mhz: post-route maximum frequency of *clock_port*'s domain; None when the design
            has no register-to-register path in that domain.
        timing_met: fmax_mhz >= the constraint; None when there is no fmax.
        clocks_mhz: every clock domain nextpnr reported, by its net name.
        lcs: LUT4 logic cells used (iCE40 ICESTORM_LC, which also hold the FFs; ECP5
            TRELLIS_COMB).
        luts: LUT4 cells in the synthesized netlist (ECP5 counts a CCU2C as two).
        ffs: flip-flops (ECP5: nextpnr's TRELLIS_FF; iCE40: SB_DFF* cells after synthesis).
        brams, dsps, ios: block RAMs, DSP multipliers, I/O pins used (from nextpnr).
        utilization: every nextpnr resource as ``[used, available]``.
        latches: latches yosys inferred ("Latch inferred" messages or latch cells).
        bitstream: the packed bitstream; the other paths are the logs and reports.
    """

    target: str
    top: str
    placed_top: str
    io_wrapped: bool
    io_shell_ffs: int
    clock_port: str
    freq_target_mhz: float
    fmax_mhz: float | None
    timing_met: bool | None
    clocks_mhz: dict[str, float]
    lcs: int
    luts: int
    ffs: int
    brams: int
    dsps: int
    ios: int
    utilization: dict[str, list[int]]
    latches: int
    yosys: list[str]
    nextpnr: list[str]
    seed: int
    bitstream: Path = field(compare=False)
    report_path: Path = field(compare=False)
    synth_log: Path = field(compare=False)
    pnr_log: Path = field(compare=False)
    pnr_report: Path = field(compare=False)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (paths as strings)."""
        data = asdict(self)
        for key in ("bitstream", "report_path", "synth_log", "pnr_log", "pnr_report"):
            data[key] = str(data[key])
        return data


# Names that must be escaped when used as identifiers (Verilog-2005 plus common SV words).
_KEYWORDS_TEXT = (
    "always and assign begin bit buf byte case casex casez default else end endcase "
    "endmodule function if initial inout input int integer logic module nand nor not or "
    "output parameter reg supply0 supply1 wire xnor xor"
)
_VERILOG_KEYWORDS = frozenset(_KEYWORDS_TEXT.split())


def _vid(name: str) -> str:
    """A Verilog identifier for *name*, escaped (``\\name ``) when it is not a plain one."""
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*", name) and name not in _VERILOG_KEYWORDS:
        return name
    if any(c.isspace() for c in name):
        raise ToolError(f"port name with white space cannot be written in Verilog: {name!r}")
    return f"\\{name} "


def _check_sources(verilog: Sequence[Path]) -> list[Path]:
    if not verilog:
        raise ValueError("no Verilog sources given")
    sources = [Path(p).resolve() for p in verilog]
    for src in sources:
        if not src.is_file():
            raise ToolError(f"Verilog source not found: {src}")
    return sources


def read_ports(verilog: Sequence[Path], top: str, *, timeout_s: float | None = 300.0) -> list[Port]:
    """The top-level ports of module *top*, in declaration order, as yosys elaborates them.

    Blackboxing the top throws away its processes and cells, so this is quick even for large
    designs and ``write_json`` (which refuses unprocessed ``always`` blocks) can run.
    """
    sources = _check_sources(verilog)
    yosys = find_tool("yosys")
    with tempfile.TemporaryDirectory(prefix="insitu-ports-") as tmp_name:
        tmp = Path(tmp_name).resolve()
        script = "\n".join(
            [
                "read_verilog -sv " + " ".join(yosys_quote(tool_path(s, tmp)) for s in sources),
                f"hierarchy -check -top {top}",
                f"blackbox {top}",
                f"hierarchy -top {top}",
                "write_json ports.json",
                "",
            ]
        )
        (tmp / "ports.ys").write_text(script, encoding="utf-8")
        proc = run_tool([*yosys, "-q", "-s", "ports.ys"], cwd=tmp, timeout_s=timeout_s)
        if proc.returncode != 0:
            raise ToolError(f"yosys could not read the ports of {top}:\n{tail(proc.stdout)}")
        netlist = json.loads((tmp / "ports.json").read_text(encoding="utf-8"))
    module = netlist["modules"].get(top) or netlist["modules"].get(f"\\{top}")
    if module is None:
        raise ToolError(f"yosys netlist has no module {top!r}")
    ports: list[Port] = []
    for name, info in module["ports"].items():
        direction = info["direction"]
        if direction not in ("input", "output", "inout"):
            raise ToolError(f"port {name!r} has unknown direction {direction!r}")
        ports.append(Port(name=name, direction=direction, width=len(info["bits"])))
    return ports


def _shell_module_name(top: str) -> str:
    return re.sub(r"\W", "_", top) + "_ioshell"


def write_io_shell(
    verilog: Sequence[Path], top: str, out_path: Path, *, clock_port: str = "clk"
) -> IoShell:
    """Write the scan-chain I/O shell around *top* to *out_path*; return its layout.

    The shell module is named ``<top>_ioshell`` (non-identifier characters become ``_``); its
    ports are *clock_port*, ``scan_in``, ``scan_en`` and ``scan_out``. *clock_port* is passed
    through to the block when the block has that input; every other input (reset included) is
    a chain bit. Single-clock blocks only.

    Raises:
        ToolError: the block has ``inout`` ports or no outputs (nothing would survive synthesis).
    """
    ports = read_ports(verilog, top)
    inouts = [p.name for p in ports if p.direction == "inout"]
    if inouts:
        raise ToolError(f"the I/O shell cannot wrap inout ports: {inouts}")
    has_clock = any(p.name == clock_port and p.direction == "input" for p in ports)
    inputs: list[ShellPort] = []
    outputs: list[ShellPort] = []
    for port in ports:
        if port.name == clock_port and port.direction == "input":
            continue
        chain = inputs if port.direction == "input" else outputs
        offset = sum(p.width for p in chain)
        chain.append(ShellPort(name=port.name, width=port.width, offset=offset))
    if not outputs:
        raise ToolError(f"{top} has no outputs; synthesis would remove all of it")
    n_in = sum(p.width for p in inputs)
    n_out = sum(p.width for p in outputs)
    module = _shell_module_name(top)
    clk = _vid(clock_port)

    lines = [
        f"// Generated by insitu hdl/fpga.py write_io_shell: scan-chain I/O shell around {top}.",
        f"// Pins: {clock_port}, scan_in, scan_en, scan_out. scan_en=1: both chains shift one",
        "// bit per clock, MSB first; scan_en=0: the input chain holds and the output chain",
        "// captures the block's outputs every clock.",
        f"module {module} (",
        f"  input wire {clk},",
        "  input wire scan_in,",
        "  input wire scan_en,",
        "  output wire scan_out",
        ");",
    ]
    if n_in:
        lines.append(f"  reg [{n_in - 1}:0] in_chain = {n_in}'d0;")
    lines += [
        f"  wire [{n_out - 1}:0] outs;",
        f"  reg [{n_out - 1}:0] out_chain = {n_out}'d0;",
        f"  always @(posedge {clk}) begin",
        "    if (scan_en) begin",
    ]
    if n_in:
        shift_in = f"{{in_chain[{n_in - 2}:0], scan_in}}" if n_in > 1 else "scan_in"
        lines.append(f"      in_chain <= {shift_in};")
    shift_out = f"{{out_chain[{n_out - 2}:0], 1'b0}}" if n_out > 1 else "1'b0"
    lines += [
        f"      out_chain <= {shift_out};",
        "    end else begin",
        "      out_chain <= outs;",
        "    end",
        "  end",
        f"  assign scan_out = out_chain[{n_out - 1}];",
        f"  {_vid(top)} dut (",
    ]
    conns = [f"    .{clk}({clk})"] if has_clock else []
    conns += [f"    .{_vid(p.name)}(in_chain[{p.offset + p.width - 1}:{p.offset}])" for p in inputs]
    conns += [f"    .{_vid(p.name)}(outs[{p.offset + p.width - 1}:{p.offset}])" for p in outputs]
    lines += [",\n".join(conns), "  );", "endmodule", ""]
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_path, "\n".join(lines))
    return IoShell(
        module=module,
        path=out_path,
        block=top,
        clock_port=clock_port,
        inputs=tuple(inputs),
        outputs=tuple(outputs),
    )


def _constraints_text(dev: _Device, clock_port: str | None, freq_mhz: float) -> str:
    # No pin assignments: nextpnr places every I/O itself (with *_allow_unconstrained).
    head = "generated by insitu hdl/fpga.py: no pin assignments, nextpnr places the I/O"
    if dev.family == "ice40":
        lines = [f"# {head}"]
        if clock_port is not None:
            lines.append(f"set_frequency {clock_port} {freq_mhz:g}")
    else:
        lines = [f"# {head}"]
        if clock_port is not None:
            lines.append(f'FREQUENCY PORT "{clock_port}" {freq_mhz:g} MHz;')
    return "\n".join(lines) + "\n"


def _pick_clock(fmax: dict[str, Any], clock_port: str) -> tuple[str, dict[str, Any]] | None:
    """nextpnr's fmax entry for *clock_port* (its net names decorate the port name with ``$``)."""
    for name, entry in fmax.items():
        if name == clock_port or clock_port in name.split("$"):
            return name, entry
    if len(fmax) == 1:
        return next(iter(fmax.items()))
    return None


def _move_out(src: Path, dst: Path) -> None:
    if src.exists():
        # Same file system (the temp folder is inside out_dir), so this is an atomic rename.
        src.replace(dst)


def place_and_route(
    verilog: Sequence[Path],
    top: str,
    out_dir: Path,
    target: FpgaTarget = "ice40-up5k",
    *,
    clock_port: str = "clk",
    freq_mhz: float | None = None,
    constraints: Path | None = None,
    wrap_io: bool = False,
    seed: int = 1,
    timeout_s: float | None = 600.0,
) -> FpgaReport:
    """Synthesize, place, route and pack *top* for *target*; report utilization and fmax.

    Args:
        verilog: Verilog sources (e.g. Amaranth ``verilog.convert`` output).
        top: top module of the block.
        out_dir: where ``fpga_<target>.*`` files go (created if needed).
        target: ``ice40-up5k`` (SG48 package) or ``ecp5-25f`` (CABGA256 package).
        clock_port: the block's clock input; its fmax is reported.
        freq_mhz: target frequency for timing-driven placement (default 48 MHz on iCE40,
            100 MHz on ECP5). A miss does not fail the run (``--timing-allow-fail``); see
            ``timing_met``.
        constraints: a ``.pcf``/``.lpf`` file to use instead of the generated one (which only
            sets the clock frequency and leaves every pin to the placer).
        wrap_io: place the block inside the scan-chain I/O shell (module docstring), so any
            block fits the package and its I/O paths are register-to-register.
        seed: placer seed (fixed by default so runs are reproducible).
        timeout_s: per-tool time limit.

    Raises:
        ToolError: a tool is missing or fails, or the block has more port bits than the package
            has pins and *wrap_io* is False.
    """
    try:
        dev = DEVICES[target]
    except KeyError:
        raise ValueError(f"unknown FPGA target {target!r}; use one of {list(DEVICES)}") from None
    sources = _check_sources(verilog)
    yosys = find_tool("yosys")
    nextpnr = find_tool(dev.nextpnr)
    packer = find_tool(dev.packer)
    freq = float(freq_mhz) if freq_mhz is not None else dev.default_freq_mhz
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"fpga_{target}"
    synth_log = out_dir / f"{stem}_synth.log"
    pnr_log = out_dir / f"{stem}_pnr.log"
    pnr_report = out_dir / f"{stem}_nextpnr.json"
    bitstream = out_dir / f"{stem}{dev.bitstream_ext}"
    report_path = out_dir / f"{stem}.json"

    shell: IoShell | None = None
    placed_top = top
    if wrap_io:
        shell = write_io_shell(
            sources, top, out_dir / f"{_shell_module_name(top)}.v", clock_port=clock_port
        )
        sources = [*sources, shell.path.resolve()]
        placed_top = shell.module

    with tempfile.TemporaryDirectory(dir=out_dir, prefix=f".{stem}-") as tmp_name:
        tmp = Path(tmp_name).resolve()
        # yosys: flattened synthesis to the JSON netlist nextpnr reads, plus a cell histogram.
        script = "\n".join(
            [
                "read_verilog -sv " + " ".join(yosys_quote(tool_path(s, tmp)) for s in sources),
                f"hierarchy -check -top {placed_top}",
                f"{synth_command(yosys, dev.synth)} -top {placed_top}",
                "tee -q -o stat.json stat -json",
                "write_json netlist.json",
                "",
            ]
        )
        (tmp / "synth.ys").write_text(script, encoding="utf-8")
        proc = run_tool(
            [*yosys, "-q", "-l", "synth.log", "-s", "synth.ys"], cwd=tmp, timeout_s=timeout_s
        )
        synth_text = (tmp / "synth.log").read_text(encoding="utf-8", errors="replace")
        _move_out(tmp / "synth.log", synth_log)
        if proc.returncode != 0:
            raise ToolError(
                f"yosys ({dev.synth}) failed with exit status {proc.returncode}; log "
                f"{synth_log}:\n{tail(synth_text + proc.stdout)}"
            )
        netlist = json.loads((tmp / "netlist.json").read_text(encoding="utf-8"))
        stat = parse_stat_json((tmp / "stat.json").read_text(encoding="utf-8"))

        top_module = netlist["modules"].get(placed_top) or netlist["modules"].get(f"\\{placed_top}")
        if top_module is None:
            raise ToolError(f"yosys netlist has no module {placed_top!r}")
        port_names = set(top_module["ports"])
        port_bits = sum(len(p["bits"]) for p in top_module["ports"].values())
        if port_bits > dev.user_ios:
            raise ToolError(
                f"{placed_top} has {port_bits} port bits but the {target} package has "
                f"{dev.user_ios} user I/O pins; pass wrap_io=True to place it inside the "
                "scan-chain I/O shell"
            )
        stat_modules = stat.get("modules", {})
        stat_top = (
            stat_modules.get(f"\\{placed_top}")
            or stat_modules.get(placed_top)
            or stat.get("design", {})
        )
        cells = {
            k.removeprefix("\\"): int(v)
            for k, v in stat_top.get("num_cells_by_type", {}).items()
            if k != "$scopeinfo"
        }
        classes = classify_cells(dev.family, cells)

        # nextpnr: place and route; --timing-allow-fail so a missed target still reports fmax.
        if constraints is not None:
            cons_path = Path(constraints).resolve()
            if not cons_path.is_file():
                raise ToolError(f"constraints file not found: {cons_path}")
        else:
            cons_path = tmp / f"{stem}{dev.constraints_ext}"
            cons_text = _constraints_text(
                dev, clock_port if clock_port in port_names else None, freq
            )
            cons_path.write_text(cons_text, encoding="utf-8")
        pnr_out = f"{stem}{dev.pnr_out_ext}"
        pnr_cmd = [
            *nextpnr,
            *dev.device_args,
            "--json",
            "netlist.json",
            dev.constraints_flag,
            tool_path(cons_path, tmp),
            dev.allow_unconstrained,
            "--freq",
            f"{freq:g}",
            "--timing-allow-fail",
            "--seed",
            str(seed),
            "--report",
            "nextpnr.json",
            "-l",
            "pnr.log",
            "-q",
            dev.pnr_out_flag,
            pnr_out,
        ]
        proc = run_tool(pnr_cmd, cwd=tmp, timeout_s=timeout_s)
        pnr_text = (
            (tmp / "pnr.log").read_text(encoding="utf-8", errors="replace")
            if (tmp / "pnr.log").exists()
            else proc.stdout
        )
        _move_out(tmp / "pnr.log", pnr_log)
        if proc.returncode != 0 or not (tmp / "nextpnr.json").exists():
            raise ToolError(
                f"{dev.nextpnr} failed with exit status {proc.returncode}; log {pnr_log}:\n"
                + tail(pnr_text if "ERROR" in pnr_text else pnr_text + proc.stdout)
            )
        pnr = json.loads((tmp / "nextpnr.json").read_text(encoding="utf-8"))
        _move_out(tmp / "nextpnr.json", pnr_report)
        if constraints is None:
            _move_out(cons_path, out_dir / cons_path.name)
        _move_out(tmp / "netlist.json", out_dir / f"{stem}_netlist.json")

        # Pack the bitstream into the temp folder, then move it into place.
        bit_tmp = tmp / bitstream.name
        proc = run_tool([*packer, pnr_out, bit_tmp.name], cwd=tmp, timeout_s=timeout_s)
        if proc.returncode != 0 or not bit_tmp.exists():
            raise ToolError(
                f"{dev.packer} failed with exit status {proc.returncode}:\n" + tail(proc.stdout)
            )
        _move_out(tmp / pnr_out, out_dir / pnr_out)
        _move_out(bit_tmp, bitstream)

    util = {
        name: [int(v.get("used", 0)), int(v.get("available", 0))]
        for name, v in sorted(pnr.get("utilization", {}).items())
    }

    def used(*names: str) -> int:
        return sum(util.get(n, [0, 0])[0] for n in names)

    fmax_all: dict[str, Any] = pnr.get("fmax", {}) or {}
    clocks = {name: float(entry["achieved"]) for name, entry in sorted(fmax_all.items())}
    picked = _pick_clock(fmax_all, clock_port)
    fmax_mhz: float | None = None
    timing_met: bool | None = None
    if picked is not None:
        _, entry = picked
        fmax_mhz = float(entry["achieved"])
        timing_met = fmax_mhz >= float(entry.get("constraint", freq))

    report = FpgaReport(
        target=target,
        top=top,
        placed_top=placed_top,
        io_wrapped=shell is not None,
        io_shell_ffs=(shell.in_bits + shell.out_bits) if shell is not None else 0,
        clock_port=clock_port,
        freq_target_mhz=freq,
        fmax_mhz=fmax_mhz,
        timing_met=timing_met,
        clocks_mhz=clocks,
        lcs=used(dev.lc_resource),
        luts=int(classes["luts"] or 0),
        ffs=used(dev.ff_resource) if dev.ff_resource else int(classes["ffs"] or 0),
        brams=used(*dev.bram_resources),
        dsps=used(*dev.dsp_resources),
        ios=used(dev.io_resource),
        utilization=util,
        latches=max(count_latches(cells), len(latch_messages(synth_text))),
        yosys=yosys,
        nextpnr=nextpnr,
        seed=seed,
        bitstream=bitstream,
        report_path=report_path,
        synth_log=synth_log,
        pnr_log=pnr_log,
        pnr_report=pnr_report,
    )
    atomic_write_text(report_path, json.dumps(report.to_json(), indent=2) + "\n")
    return report
