"""One ngspice instance per process (PySpice shared mode) and the convergence-retry ladder.

ngspice's shared library is not re-entrant within one process, so each worker process holds
exactly one instance, created on first use with ``num_threads=1`` (the OpenMP default of 2
made runs 3-6x slower on these machines; parallelism comes from processes). A point that does
not converge is retried with gmin and source stepping, then with the operating-point iteration
skipped; if every attempt fails the caller gets :class:`SimulationFailed` with the reason.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

# PySpice warns "Unsupported Ngspice version 39" (harmless, DESIGN.md) and logs every ngspice
# stdout line; the reasons of failures are read from stderr below instead.
logging.getLogger("PySpice").setLevel(logging.CRITICAL)
# Belt and braces with `set num_threads=1` below: libgomp reads this when the library loads.
os.environ.setdefault("OMP_NUM_THREADS", "1")
if not os.environ.get("NGSPICE_LIBRARY_PATH"):
    # Without libngspice0-dev there is no unversioned libngspice.so (DESIGN.md).
    import ctypes.util

    if ctypes.util.find_library("ngspice") is None:
        os.environ["NGSPICE_LIBRARY_PATH"] = "libngspice.so.0"

#: Extra ``.option`` lines of each attempt: plain, gmin + source stepping, no op iteration.
RETRY_LADDER: tuple[tuple[str, ...], ...] = (
    (),
    (".option gminsteps=200 srcsteps=200 itl1=1000 itl2=500 itl4=100",),
    (".option noopiter gminsteps=1000 srcsteps=1000 itl1=5000 itl2=2000 itl4=500 rshunt=1e12",),
)

_instance: Any = None


class SimulationFailed(RuntimeError):
    """Every attempt of the retry ladder failed; ``reason`` holds ngspice's last error lines."""

    def __init__(self, reason: str, attempts: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.attempts = attempts


class NgspiceMissing(RuntimeError):
    """The ngspice shared library or PySpice is not installed."""


@dataclass
class Result:
    """Vectors of each analysis, by analysis kind ('dc', 'tran', 'op'), plus attempts used."""

    plots: dict[str, dict[str, np.ndarray]]
    attempts: int


def available() -> str | None:
    """None when ngspice can run here, else the reason it cannot."""
    try:
        _ng()
    except NgspiceMissing as exc:
        return str(exc)
    return None


def _ng() -> Any:
    global _instance
    if _instance is None:
        try:
            from PySpice.Spice.NgSpice.Shared import NgSpiceShared
        except ImportError as exc:  # pragma: no cover - PySpice is a dependency
            raise NgspiceMissing(f"PySpice is not installed ({exc})") from None
        try:
            inst = NgSpiceShared.new_instance()
        except Exception as exc:
            raise NgspiceMissing(
                f"cannot load the ngspice shared library ({exc}); install it with "
                "`apt-get install ngspice libngspice0-dev` or set NGSPICE_LIBRARY_PATH"
            ) from None
        inst.exec_command("set num_threads=1")
        _instance = inst
    return _instance


def _error_lines(ng: Any) -> str:
    text = ng.stderr if isinstance(ng.stderr, str) else ""
    lines = [ln for ln in text.splitlines() if re.search(r"error|fail|abort|singular", ln, re.I)]
    return "; ".join(lines[-4:]) or "ngspice reported a failure without a message"


def run(netlist: str, seed: int, vectors: dict[str, list[str]]) -> Result:
    """Run a netlist (ending in ``.end``); return the requested vectors of each analysis.

    ``vectors`` maps an analysis kind ('dc', 'tran', 'op') to vector names (lower case, as
    ngspice names them: ``v(node)`` as ``node``, source currents as ``vname#branch``, sweep
    variable ``v-sweep``, time ``time``).
    """
    ng = _ng()
    body = netlist.rstrip().removesuffix(".end").rstrip()
    reason = ""
    for attempt, extra in enumerate(RETRY_LADDER, start=1):
        text = "\n".join([body, *extra, ".end", ""])
        ng.clear_output() if hasattr(ng, "clear_output") else None
        ng._stderr = []  # only this attempt's messages go into a failure reason
        try:
            # setseed before the circuit is parsed: agauss()/gauss() parameters in a PDK's
            # statistical sections are drawn at parse time (DESIGN.md: setseed, not rndseed).
            ng.exec_command(f"setseed {int(seed) + 1}")  # ngspice rejects 0
            ng.load_circuit(text)
            ng.run()
            plots = _collect(ng, vectors)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}; {_error_lines(ng)}"
            _cleanup(ng)
            continue
        _cleanup(ng)
        return Result(plots, attempt)
    raise SimulationFailed(reason, len(RETRY_LADDER))


def _collect(ng: Any, wanted: dict[str, list[str]]) -> dict[str, dict[str, np.ndarray]]:
    out: dict[str, dict[str, np.ndarray]] = {}
    names = [p for p in ng.plot_names if p != "const"]
    for kind, vecs in wanted.items():
        plot_name = next((p for p in names if re.fullmatch(rf"{kind}\d+", p)), None)
        if plot_name is None:
            raise RuntimeError(f"no {kind} results (plots: {', '.join(names)})")
        plot = ng.plot(None, plot_name)
        got: dict[str, np.ndarray] = {}
        for v in vecs:
            if v not in plot:
                raise RuntimeError(f"{kind}: no vector {v!r}")
            got[v] = np.asarray(plot[v]._data).real.astype(np.float64).copy()
        out[kind] = got
    return out


def _cleanup(ng: Any) -> None:
    # ngspice keeps every circuit and plot of the process; drop them so memory stays flat.
    for cmd in ("destroy all", "remcirc"):
        with contextlib.suppress(Exception):
            ng.exec_command(cmd)
