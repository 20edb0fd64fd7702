"""Random verification of the generated RTL with cocotb on Icarus and Verilator.

Owns the pytest side of the cocotb benches in ``tests/cocotb_chip.py`` (the chip top against
the golden model) and ``tests/cocotb_subarray.py`` (the subarray block against a numpy model
of the contract): random design points that together cover the rules (bp, fa, dfa), both
weight encodings, both rounding modes, 1- and 2-bit cells, per-layer and shared WGUs, both
error modes, random and uniform ADC tables, 2 to 4 weight layers and batches of 1 to 4; their
Verilog and the benches' JSON configuration; the simulator settings (below) and the runs,
through ``tests/hdl_sim.py``.

The default run stays short (under a minute on one core): Verilator on three small design
points with 100 training samples each, Icarus on one with 12 (plus the bench's own
failure-report check in the same simulation), the protocol bench on a tiny chip, and the
subarray block on Icarus. The ``slow`` tests run 1,000 training samples per design point,
and 2,000 subarray vectors, on both simulators. ``INSITU_COCOTB_SEED`` shifts every seed
(new random design points and stimulus).
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hdl_sim import Simulator, require_simulator, run_cocotb

from insitu.algo.plan import IntegerPlan, make_plan
from insitu.config import load
from insitu.hdl.params import ChipParams
from insitu.hdl.toolchain import verilator_env

SEED_SHIFT = int(os.environ.get("INSITU_COCOTB_SEED", "0"))


#: size: (weight layers (0: 2..4 drawn), widest layer, most rows)
SIZES = {"tiny": (2, 5, 4), "small": (2, 8, 6), "medium": (3, 8, 8), "large": (0, 12, 8)}


@dataclass(frozen=True)
class Case:
    """A random design point: the categorical choices are fixed, the sizes drawn from seed."""

    name: str
    rule: str
    encoding: str
    rounding: str
    cell_bits: int
    wgu: str
    error: str
    adc: str  # the bench's ADC table mode: mixed | random | plan
    seed: int
    size: str = "large"  # tiny | small | medium | large (see SIZES)
    batch: int | None = None  # fixed learning.batch_size (default: drawn)
    adc_bits: int | None = None  # fixed array.adc_bits (default: drawn)

    def overrides(self) -> tuple[list[str], tuple[int, ...]]:
        """Design-point overrides and layer widths drawn from the seed."""
        rng = random.Random(self.seed + SEED_SHIFT)
        c = self.cell_bits
        wbits = rng.choice([b for b in (2, 3, 4, 5, 6) if b % c == 0 and b // c <= 3])
        pols = 2 if self.encoding == "differential" else 1
        n_layers, top_width, top_rows = SIZES[self.size]
        rows = rng.randint(4, top_rows)
        per_weight = pols * wbits // c  # physical columns per weight
        cols = rng.randint(max(8, min(2 * per_weight, 16)), 16)  # >= 2 weights per row if room
        max_sum = rows * (2**c - 1)
        adc_bits = self.adc_bits or rng.randint(1, min(4, max_sum.bit_length()))
        layers = n_layers or rng.randint(2, 4)
        widths = tuple(rng.randint(5, top_width) for _ in range(layers + 1))
        over = [
            f"learning.rule={self.rule}",
            f"learning.error={self.error}",
            f"learning.batch_size={self.batch or rng.randint(1, 4)}",
            f"learning.seed={rng.randrange(2**31)}",
            f"learning.hardware_lr={rng.choice([0.0625, 0.125, 0.5])}",
            f"precision.activation_bits={rng.randint(2, 4)}",
            f"precision.weight_bits={wbits}",
            f"precision.error_bits={rng.randint(5, 8)}",
            f"precision.gradient_bits={rng.randint(3, 6)}",
            f"precision.rounding={self.rounding}",
            f"array.rows={rows}",
            f"array.cols={cols}",
            f"array.cell_bits={c}",
            f"array.adc_bits={adc_bits}",
            f"array.cols_per_adc={rng.randint(1, 4)}",
            f"array.weight_encoding={self.encoding}",
            f"chip.wgu={self.wgu}",
            f"chip.lfsr_seed={rng.randrange(1, 2**32)}",
            f"chip.feedback_lanes={rng.randint(1, 16)}",
            f"chip.pes_per_tile={rng.randint(1, 2)}",
            f"chip.subarrays_per_pe={rng.randint(1, 2)}",
            # drawn last so the earlier draws (and the cases they made) stay as they were
            f"chip.feedback_storage={rng.choice(['lfsr', 'stored'])}",
            f"chip.wgu_row_blocks={rng.choice(['all', 1, 2])}",
        ]
        return over, widths

    def build(self) -> tuple[ChipParams, IntegerPlan]:
        over, widths = self.overrides()
        dp = load("digits", over)
        dp = dp.model_copy(update={"network": dp.network.model_copy(update={"layers": widths})})
        plan = make_plan(dp)
        return ChipParams.from_design(dp, plan.to_dict()), plan


def _case(name: str, seed: int, size: str = "large", **kw: Any) -> Case:
    """A case named ``rule-encoding-rounding-cN-wgu-error-adc``."""
    rule, enc, rnd, cells, wgu, err, adc = name.split("-")
    return Case(
        name=name,
        rule=rule,
        encoding={"diff": "differential", "offset": "offset-binary"}[enc],
        rounding={"near": "nearest", "stoch": "stochastic"}[rnd],
        cell_bits=int(cells[1:]),
        wgu={"perlayer": "per-layer", "shared": "shared"}[wgu],
        error=err,
        adc=adc,
        seed=seed,
        size=size,
        **kw,
    )


CASES = {
    c.name: c
    for c in (
        # default run: small networks, together every rule, encoding, rounding, cell size,
        # WGU mode, error mode and ADC table mode
        _case("bp-diff-near-c1-shared-margin-mixed", 110, "medium"),
        _case("fa-offset-stoch-c2-perlayer-squared-random", 101, "small"),
        _case("dfa-diff-stoch-c2-shared-margin-plan", 112, "medium"),
        _case("dfa-offset-near-c1-perlayer-margin-mixed", 44, "small"),
        # slow runs add larger networks (up to 4 weight layers of up to 12 neurons)
        _case("bp-offset-stoch-c1-perlayer-squared-mixed", 55),
        _case("fa-diff-near-c2-shared-margin-mixed", 66, batch=1, adc_bits=1),
        _case("dfa-diff-stoch-c1-perlayer-margin-random", 77),
        _case("bp-diff-stoch-c2-shared-margin-plan", 88),
    )
}
FAST_VERILATOR = [
    "bp-diff-near-c1-shared-margin-mixed",
    "fa-offset-stoch-c2-perlayer-squared-random",
    "dfa-diff-stoch-c2-shared-margin-plan",
]
FAST_ICARUS = ["dfa-offset-near-c1-perlayer-margin-mixed"]
# protocol and failure-report benches: a tiny chip on Icarus
TINY = _case("dfa-diff-near-c1-perlayer-margin-mixed", 99, "tiny")


def _verilog(case: Case, folder: Path) -> tuple[Path, ChipParams, IntegerPlan]:
    from insitu.hdl.export import to_verilog

    p, plan = case.build()
    _, text = to_verilog(p)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "insitu_chip.v"
    path.write_text(text, encoding="utf-8")
    return path, p, plan


# Verilator build speed-ups (the C++ compile dominates; the benches are Python-bound): VPI
# symbols only for the ports (a control file instead of cocotb's --public-flat-rw on every
# internal signal), one translation unit without optimization instead of precompiled headers
# and -Os, and Verilator's run-time library compiled once and reused (OBJCACHE hook below):
# about 4-5x faster builds.
VERILATOR_MAKEFLAGS = "VM_PARALLEL_BUILDS=0 OPT_FAST=-O0 OPT_SLOW=-O0 OPT_GLOBAL=-O0"

# Verilator's Makefile runs every compile as `$(OBJCACHE) c++ ... -c -o X.o SRC.cpp`. This hook
# reuses the objects of Verilator's own run-time library ($VERILATOR_ROOT/include/*.cpp; they
# do not depend on the design), keyed by the command line, the compiler and the sources, and
# runs every other compile unchanged.
OBJCACHE_SCRIPT = r"""#!/bin/sh
set -e
out=""; src=""; prev=""
for a in "$@"; do
  if [ "$prev" = "-o" ]; then out=$a; fi
  case $a in *.cpp) src=$a ;; esac
  prev=$a
done
case $src in
  "$VERILATOR_ROOT"/include/*) ;;
  *) exec "$@" ;;
esac
key=$( { printf '%s\n' "$@"; "$1" -dumpfullversion;
        cat "$src" "$VERILATOR_ROOT/include/verilated.h"; } | cksum | tr ' ' _)
obj="$(dirname "$0")/$key.o"
if [ -f "$obj" ]; then cp "$obj" "$out"; exit 0; fi
"$@"
cp "$out" "$obj.$$" && mv "$obj.$$" "$obj"
"""


@pytest.fixture(scope="session")
def objcache(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The OBJCACHE hook, in pytest's cache folder (kept between runs) when there is one."""
    cache = getattr(request.config, "cache", None)
    folder = (
        Path(cache.mkdir("insitu-verilator-objects"))
        if cache is not None
        else tmp_path_factory.mktemp("verilator-objects")
    )
    script = folder / "objcache.sh"
    if not script.exists() or script.read_text() != OBJCACHE_SCRIPT:
        tmp = folder / f".objcache.{os.getpid()}"
        tmp.write_text(OBJCACHE_SCRIPT)
        tmp.chmod(0o755)
        tmp.replace(script)
    return script


# cocotb's runner compiles with -g2012, under which Icarus 11 runs a variable's declaration
# initializer before any process starts: Yosys' `reg \$auto...dump_module$1 = 0;` trick then
# triggers no `always @*` block at time 0, and combinational logic whose inputs never change
# stays X (seen: the shift_adds counter of a chip with cols_per_adc = 1). The later -g2005 wins.
ICARUS_BUILD_ARGS = ("-g2005",)


def _sim_env(
    sim: Simulator, folder: Path, top: str, ports: tuple[str, ...], objcache: Path | None
) -> tuple[dict[str, str], tuple[str, ...]]:
    """Extra environment and build flags for *sim*; *ports*: patterns of the top's ports."""
    if sim == "icarus":
        return {}, ICARUS_BUILD_ARGS
    vlt = folder / "ports.vlt"
    vlt.write_text(
        "`verilator_config\n"
        + "".join(f'public_flat_rw -module "{top}" -var "{p}"\n' for p in ports),
        encoding="utf-8",
    )
    flags = verilator_env().get("MAKEFLAGS", "")
    env = {"MAKEFLAGS": f"{flags} {VERILATOR_MAKEFLAGS}".strip()}
    if objcache is not None:
        env["OBJCACHE"] = str(objcache)
    return env, ("--no-public-flat-rw", str(vlt))


CHIP_PORTS = ("clk", "rst", "busy", "cmd__*", "rsp__*")


def _chip_config(path: Path, p: ChipParams, plan: IntegerPlan, **knobs: Any) -> dict[str, str]:
    doc = {"chip": p.to_dict(), "plan": plan.to_dict(), **knobs}
    path.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return {"CHIP_TB_CONFIG": str(path)}


def _run_chip(
    case: Case,
    sim: Simulator,
    tmp_path: Path,
    testcase: str | tuple[str, ...],
    objcache: Path | None = None,
    **knobs: Any,
) -> None:
    require_simulator(sim)
    src, p, plan = _verilog(case, tmp_path / "rtl")
    env, build_args = _sim_env(sim, tmp_path / "rtl", "insitu_chip", CHIP_PORTS, objcache)
    knobs.setdefault("seed", case.seed + SEED_SHIFT)
    knobs.setdefault("adc", case.adc)
    env.update(_chip_config(tmp_path / "bench.json", p, plan, **knobs))
    result = run_cocotb(
        [src],
        "insitu_chip",
        "cocotb_chip",
        sim,
        tmp_path / sim,
        env,
        testcase=testcase,
        build_args=build_args,
    )
    assert set(result.passed) == ({testcase} if isinstance(testcase, str) else set(testcase))


@pytest.mark.parametrize("name", FAST_VERILATOR)
def test_chip_random_verilator(name: str, tmp_path: Path, objcache: Path) -> None:
    _run_chip(CASES[name], "verilator", tmp_path, "chip_random_batches", objcache, samples=100)


@pytest.mark.parametrize("name", FAST_ICARUS)
def test_chip_random_icarus(name: str, tmp_path: Path) -> None:
    # also checks that a deliberate model error is reported (same build, second bench)
    benches = ("chip_random_batches", "chip_mismatch_report")
    _run_chip(CASES[name], "icarus", tmp_path, benches, samples=12)


def test_chip_back_to_back_reads_icarus(tmp_path: Path) -> None:
    _run_chip(TINY, "icarus", tmp_path, "chip_back_to_back_reads")


@pytest.mark.slow
@pytest.mark.parametrize("sim", ["verilator", "icarus"])
@pytest.mark.parametrize("name", list(CASES))
def test_chip_random_slow(name: str, sim: Simulator, tmp_path: Path, objcache: Path) -> None:
    _run_chip(CASES[name], sim, tmp_path, "chip_random_batches", objcache, samples=1000)


# --------------------------------------------------------------------------- subarray block
SUBARRAY_PORTS = (
    "clk",
    "rst",
    "row",
    "read",
    "clear",
    "accumulate",
    "act",
    "convert",
    "conv_plane",
    "conv_sel",
    "y__*",
    "delta__*",
    "transposed",
    "weights__*",
    "waddr",
    "wdata",
    "wen",
    "thresholds__*",
    "levels__*",
)


def _run_subarray(
    case: Case, sim: Simulator, tmp_path: Path, vectors: int, objcache: Path | None = None
) -> None:
    from amaranth.back import verilog

    from insitu.hdl.subarray import Subarray

    require_simulator(sim)
    p, _ = case.build()
    folder = tmp_path / "rtl"
    folder.mkdir(parents=True, exist_ok=True)
    src = folder / "insitu_subarray.v"
    src.write_text(verilog.convert(Subarray(p), name="insitu_subarray", emit_src=False))
    env, build_args = _sim_env(sim, folder, "insitu_subarray", SUBARRAY_PORTS, objcache)
    config = folder / "subarray.json"
    config.write_text(
        json.dumps({"chip": p.to_dict(), "seed": case.seed + SEED_SHIFT, "vectors": vectors})
    )
    env["SUBARRAY_TB_CONFIG"] = str(config)
    result = run_cocotb(
        [src],
        "insitu_subarray",
        "cocotb_subarray",
        sim,
        tmp_path / sim,
        env,
        build_args=build_args,
    )
    assert result.passed == ("subarray_random_vectors",)


SUBARRAY_CASES = [
    "bp-diff-near-c1-shared-margin-mixed",
    "fa-offset-stoch-c2-perlayer-squared-random",
]


@pytest.mark.parametrize("name", SUBARRAY_CASES)
def test_subarray_random_icarus(name: str, tmp_path: Path) -> None:
    _run_subarray(CASES[name], "icarus", tmp_path, vectors=400)


@pytest.mark.slow
@pytest.mark.parametrize("sim", ["verilator", "icarus"])
@pytest.mark.parametrize("name", list(CASES))
def test_subarray_random_slow(name: str, sim: Simulator, tmp_path: Path, objcache: Path) -> None:
    _run_subarray(CASES[name], sim, tmp_path, vectors=2000, objcache=objcache)
