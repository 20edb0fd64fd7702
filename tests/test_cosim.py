"""Co-simulation: the generated chip in the training loop, bit-exact with the golden model.

Covers the Verilator engine (built once per session on a small digits network; the build is
cached in a session folder) and the Amaranth engine (no compiler), a full ``insitu cosim``
epoch with resume, a deliberate divergence that must stop the run with a readable diff,
metrics that follow from the counters, ``--explain-costs``, ``insitu compare`` of summaries
and the design points the co-simulation must refuse.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from insitu import config
from insitu.algo.hardware import HardwareMLP
from insitu.cli import app
from insitu.cosim.costs import CostModel
from insitu.cosim.metrics import summarize
from insitu.cosim.rtl_model import Mismatch, RtlCheckedMLP
from insitu.cosim.run import chip_for, core_for, make_backend, run_cosim
from insitu.cosim.segments import SegmentedRtlMLP
from insitu.cosim.session import AmaranthBackend, ChipSession, VerilatorBackend
from insitu.hdl.export import to_verilog
from insitu.hdl.params import ChipParams
from insitu.hdl.toolchain import ToolError, have_tool, verilator_env

# learns digits to ~70% in 2 epochs; one Verilator build (fast_build) serves every test
SMALL = [
    "learning.mode=hardware",
    "learning.rule=dfa",
    "network.layers=[64,16,10]",
    "array.rows=32",
    "array.cols=32",
    "precision.weight_bits=6",
    "learning.batch_size=8",
    "learning.epochs=1",
]


def small(*extra: str) -> config.DesignPoint:
    return config.load("digits", [*SMALL, *extra])


@pytest.fixture(scope="session")
def verilator_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        verilator_env()
    except ToolError as exc:
        pytest.skip(str(exc))
    # one folder for all xdist workers (the parent of their base temp folders): the build
    # lock lets one worker build while the others wait and reuse it
    shared = tmp_path_factory.getbasetemp().parent / "insitu-cache"
    cache = Path(os.environ.get("INSITU_CACHE", shared))
    os.environ["INSITU_CACHE"] = str(cache)
    return cache


def _random_batches(dp: config.DesignPoint, n: int, seed: int) -> list[tuple[np.ndarray, ...]]:
    rng = np.random.default_rng(seed)
    b = dp.learning.batch_size
    return [
        (
            rng.integers(0, 2**dp.precision.activation_bits, size=(rng.integers(1, b + 1), 64)),
            rng.integers(0, 10, size=b),
        )
        for _ in range(n)
    ]


def _check_session(dp: config.DesignPoint, session: ChipSession, batches: int) -> None:
    model = HardwareMLP(dp)
    session.load_weights([w.numpy() for w in model.weights])
    session.set_plan(model.plan, model.step)
    for a0, lab in _random_batches(dp, batches, seed=3):
        lab = lab[: len(a0)]
        res = session.run_batch(a0, lab)
        o, _ = model.train_step(torch.from_numpy(a0), torch.from_numpy(lab))
        assert np.array_equal(res.outputs, o.numpy())
    for got, want in zip(session.read_weights(), model.weights, strict=True):
        assert np.array_equal(got, want.numpy())
    ctr = session.read_counters()
    assert ctr["batches"] == batches and ctr["cycles_busy"] > 0


def _backend(p: ChipParams, cache: Path) -> VerilatorBackend:
    return VerilatorBackend(to_verilog(p)[1], cache=cache / "verilator", fast_build=True)


def test_verilator_session_matches_golden(verilator_cache: Path) -> None:
    dp = small()
    p = chip_for(dp)
    backend = _backend(p, verilator_cache)
    with_session = ChipSession(p, backend)
    _check_session(dp, with_session, batches=12)
    with_session.close()


@pytest.mark.slow
def test_profile_guided_build_matches_golden(verilator_cache: Path) -> None:
    # build(pgo=...): the instrumented build, the workload in a child interpreter, the final
    # build with its counts (a missing count file is an error); a key of its own, and the
    # chip it builds is the same chip
    dp = small()
    p = chip_for(dp)
    backend = make_backend(p, "verilator", fast_build=True, pgo=True)
    assert isinstance(backend, VerilatorBackend)
    folder = backend.build.folder
    built = json.loads((folder / "built.json").read_text(encoding="utf-8"))
    assert set(built["pgo"]) == {"instrumented_build_s", "workload_s", "final_build_s"}
    assert any((folder / "profile").glob("*.gcda"))
    assert not (folder / "instrumented").exists()
    assert backend.build.key != _backend(p, verilator_cache).build.key
    _check_session(dp, ChipSession(p, backend), batches=4)
    backend.close()


def test_model_core_chip_matches_rtl_core_chip(verilator_cache: Path) -> None:
    # the same chip with the behavioural subarray cores (cosim/subarray_model.py) in place of
    # the RTL cores: the same outputs, deltas, weights, counters and cycles, batch for batch
    dp = small("learning.rule=bp")
    p = chip_for(dp)
    rtl = ChipSession(p, make_backend(p, "verilator", fast_build=True, core="rtl"))
    mod = ChipSession(p, make_backend(p, "verilator", fast_build=True, core="model"))
    model = HardwareMLP(dp)
    for s in (rtl, mod):
        s.load_weights([w.numpy() for w in model.weights])
        s.set_plan(model.plan, model.step)
    for a0, lab in _random_batches(dp, 6, seed=11):
        lab = lab[: len(a0)]
        a, b = (s.run_batch(a0, lab, read_deltas=True) for s in (rtl, mod))
        assert np.array_equal(a.outputs, b.outputs)
        assert a.deltas is not None and b.deltas is not None
        assert all(np.array_equal(x, y) for x, y in zip(a.deltas, b.deltas, strict=True))
        assert a.counters == b.counters and a.counters["cycles_forward"] > 0
        o, _ = model.train_step(torch.from_numpy(a0), torch.from_numpy(lab))
        assert np.array_equal(b.outputs, o.numpy())
    for x, y in zip(rtl.read_weights(), mod.read_weights(), strict=True):
        assert np.array_equal(x, y)
    assert rtl.backend.cycles == mod.backend.cycles
    rtl.close()
    mod.close()


def test_instances_check_segments_and_agree_with_one_chip(
    tmp_path: Path, verilator_cache: Path
) -> None:
    # two chip instances, each checking half of every epoch: the same training, the same
    # samples through the RTL and the same chip events as one instance running it all
    one = run_cosim(small(), tmp_path / "one", fast_build=True)
    two = run_cosim(small(), tmp_path / "two", fast_build=True, instances=2)
    assert two["mismatches"] == 0 and two["instances"] == 2
    assert two["test_accuracy"] == one["test_accuracy"]
    assert two["rtl"]["rtl_samples"] == one["rtl"]["rtl_samples"] > 1000
    c1, c2 = one["counters"], two["counters"]
    # the second instance's state load is harness traffic, left out of the off-chip bits
    assert {k: v for k, v in c2.items() if k not in ("host_words", "dram_bits")} == {
        k: v for k, v in c1.items() if k not in ("host_words", "dram_bits")
    }
    assert two["offchip_bits"] == one["offchip_bits"]
    assert two["rtl"]["weight_checks"] >= 2  # each segment's end at least
    # a second epoch on fresh instances, from the checkpoint, continues the counts
    more = run_cosim(
        small("learning.epochs=2"), tmp_path / "two", fast_build=True, instances=2, resume=True
    )
    assert more["mismatches"] == 0 and more["epochs"] == 2
    assert (
        more["rtl"]["rtl_samples"] == more["counters"]["samples"] == 2 * one["rtl"]["rtl_samples"]
    )


def test_instances_report_a_chip_that_diverges(verilator_cache: Path) -> None:
    dp = small()
    p = chip_for(dp)
    sessions = [ChipSession(p, _backend(p, verilator_cache)) for _ in range(2)]
    model = SegmentedRtlMLP(dp, sessions, batches_per_epoch=4, weight_check_every=100)
    model.start_epoch(0)
    batches = _random_batches(dp, 4, seed=7)
    for b, (a0, lab) in enumerate(batches):
        if b == 1:  # the golden weights change behind the first instance's back
            model.weights[0][5, 3] += 1
            model._refresh()
        model.train_step(torch.from_numpy(a0), torch.from_numpy(lab[: len(a0)]))
    with pytest.raises(Mismatch, match="chip instance 0, at the end of its segment"):
        model.join()
    model.close()
    for s in sessions:
        s.close()


def test_instances_are_refused_where_they_cannot_work(tmp_path: Path) -> None:
    with pytest.raises(config.DesignError, match="--instances = 2"):
        run_cosim(small(), tmp_path / "x", instances=2, rtl_every=3)
    with pytest.raises(config.DesignError, match="--instances = 0"):
        run_cosim(small(), tmp_path / "y", instances=0)
    with pytest.raises(config.DesignError, match="--pgo with --engine = 'amaranth': allowed only"):
        run_cosim(small(), tmp_path / "z", engine="amaranth", pgo=True)
    with pytest.raises(config.DesignError, match="--area = 'exact': allowed: synth, model"):
        run_cosim(small(), tmp_path / "w", area="exact")  # type: ignore[arg-type]
    assert not any((tmp_path / d).exists() for d in "xyzw")


def test_subarray_core_choice() -> None:
    big = chip_for(config.load("mnist", ["learning.mode=hardware"]))
    assert core_for(big, "verilator", "auto") == "model"
    chip = chip_for(config.load("digits-chip", ["learning.mode=hardware"]))
    assert core_for(chip, "verilator", "auto") == "rtl"  # 10 subarrays, 2,400 registers
    assert core_for(chip_for(small()), "verilator", "model") == "model"
    assert core_for(big, "verilator", "rtl") == "rtl"
    assert core_for(big, "amaranth", "auto") == "rtl"
    with pytest.raises(config.DesignError, match="allowed: auto, rtl, model"):
        core_for(big, "verilator", "fast")
    with pytest.raises(config.DesignError, match="needs --engine verilator"):
        core_for(big, "amaranth", "model")


def test_amaranth_session_matches_golden() -> None:
    dp = config.load(
        "digits",
        [
            "learning.mode=hardware",
            "network.layers=[64,6,10]",
            "array.rows=32",
            "array.cols=16",
            "precision.weight_bits=4",
            "precision.activation_bits=2",
            "learning.batch_size=2",
            "learning.rule=bp",
        ],
    )
    p = chip_for(dp)
    _check_session(dp, ChipSession(p, AmaranthBackend(p)), batches=2)


def test_cosim_epoch_resume_and_metrics(tmp_path: Path, verilator_cache: Path) -> None:
    dp = small()
    out = tmp_path / "run"
    s1 = run_cosim(dp, out, weight_check_every=20, fast_build=True)
    n_train = s1["rtl"]["rtl_samples"]
    assert s1["mismatches"] == 0 and n_train > 1000  # every training sample through the RTL
    assert s1["rtl"]["weight_checks"] >= n_train // (20 * 8)
    assert s1["test_accuracy"] > 0.3  # chance is 0.1
    # a second epoch on a fresh chip (loaded from the checkpoint) continues bit-exactly
    dp2 = small("learning.epochs=2")
    s2 = run_cosim(dp2, out, resume=True, weight_check_every=20, fast_build=True)
    assert s2["mismatches"] == 0 and s2["epochs"] == 2
    assert s2["rtl"]["rtl_samples"] == 2 * n_train
    assert s2["counters"]["samples"] == 2 * n_train
    # metrics follow from the counters and the cost table
    p = chip_for(dp2)
    costs = CostModel(dp2, p)
    m = summarize(dp2, p, s2["counters"], verify_bits=s2["rtl"]["verify_bits"])
    assert m["energy_j"]["total"] == pytest.approx(s2["energy_j"]["total"])
    by_event = sum(
        s2["counters"][k] * c.energy_pj * 1e-12 for k, c in costs.costs.items() if k != "dram_bits"
    )
    assert by_event < s2["energy_j"]["total"]  # off-chip bits add the rest
    period = s2["clock"]["period_s"]
    fwd = s2["counters"]["cycles_forward"] / s2["counters"]["samples"] * period
    assert s2["latency_s"]["per_sample"]["forward"] == pytest.approx(fwd)
    assert set(s2["area_mm2"]["by_component"]) >= {"arrays", "adcs", "wgu", "buffers"}
    assert 0 < s2["memory_utilization"] <= 1
    # the digital blocks' area is synthesized (default --area synth), or the run says why not
    source = s2["area_mm2"]["source"]
    if have_tool("yosys"):
        assert source["digital"].startswith("synthesis") and "synthesis" not in source
        blocks = {b["block"]: b for b in s2["area_mm2"]["blocks"]}
        lanes = [b for name, b in blocks.items() if ".lane" in name]
        assert len(lanes) == 1 and lanes[0]["count"] > 1  # every WGU lane: one class
        assert sum(b["mm2"] for b in blocks.values()) == pytest.approx(s2["area_mm2"]["total"])
    else:
        assert "yosys is not installed" in source["synthesis"]
    # --area model: cited unit areas for every block
    m2 = summarize(dp2, p, s2["counters"])
    assert m2["area_mm2"]["source"]["digital"].startswith("cited unit areas")


def test_cosim_killed_inside_an_epoch_resumes_bit_exact(
    tmp_path: Path, verilator_cache: Path
) -> None:
    # a checkpoint every 50 batches: killed at batch 120, the run resumes on a fresh chip at
    # batch 101 and ends as the uninterrupted run does
    full = run_cosim(small(), tmp_path / "full", fast_build=True, area="model")

    def kill(info: dict[str, Any]) -> None:
        if info.get("batch") == 120:
            raise KeyboardInterrupt

    def cut_run(**kw: Any) -> dict[str, Any]:
        return run_cosim(
            small(), tmp_path / "cut", fast_build=True, area="model", checkpoint_every=50, **kw
        )

    with pytest.raises(KeyboardInterrupt):
        cut_run(progress=kill)
    ckpt = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)
    assert (ckpt["epoch"], ckpt["batch"]) == (0, 100)
    cut = cut_run(resume=True)
    assert cut["mismatches"] == 0
    assert cut["test_accuracy"] == full["test_accuracy"]
    assert cut["history"][0]["loss"] == full["history"][0]["loss"]
    # every sample went through the RTL once, across the two processes
    assert cut["rtl"]["rtl_samples"] == full["rtl"]["rtl_samples"] == cut["counters"]["samples"]
    with pytest.raises(config.DesignError, match="--checkpoint-every = 5 with --instances = 2"):
        run_cosim(small(), tmp_path / "x", instances=2, checkpoint_every=5)


def test_spot_checks_compare_weights_and_keep_reloads_out_of_offchip(
    tmp_path: Path, verilator_cache: Path
) -> None:
    # every 4th batch on the RTL: the weights the chip wrote must still be compared (the
    # golden model moves on before any later check could), and re-loading the golden weights
    # into the chip is the harness's traffic, not the chip's
    s = run_cosim(small(), tmp_path / "spot", rtl_every=4, fast_build=True)
    rtl = s["rtl"]
    assert s["mismatches"] == 0 and rtl["golden_only_batches"] >= 2 * rtl["rtl_batches"]
    assert rtl["weight_checks"] >= rtl["rtl_batches"]
    p = chip_for(small())
    reload_bits = sum(lay.fan_in * lay.fan_out for lay in p.layers) * p.weight_bits
    assert rtl["verify_bits"] >= (rtl["rtl_batches"] - 1) * reload_bits
    # what is left is one weight load and plan, then each RTL batch's inputs, labels, outputs
    per_sample = (s["offchip_bits"] - 2 * reload_bits) / rtl["rtl_samples"]
    assert per_sample <= p.widths[0] * p.activation_bits + 8 + p.classes * p.error_bits + 64


def test_divergence_stops_with_a_readable_diff(verilator_cache: Path) -> None:
    dp = small("learning.rule=bp")
    p = chip_for(dp)
    session = ChipSession(
        p, VerilatorBackend(to_verilog(p)[1], cache=verilator_cache / "verilator")
    )
    model = RtlCheckedMLP(dp, session, weight_check_every=1)
    a0, lab = _random_batches(dp, 1, seed=5)[0]
    a0 = np.full((8, 64), 2**dp.precision.activation_bits - 1)
    model.train_step(torch.from_numpy(a0), torch.from_numpy(lab))
    # the golden model's weight changes behind the chip's back
    model.weights[1][3, 7] += 1
    model._refresh()
    with pytest.raises(Mismatch) as info:
        model.train_step(torch.from_numpy(a0), torch.from_numpy(lab))
    msg = str(info.value)
    assert "differ between the RTL and the golden model" in msg
    assert "RTL" in msg and "golden" in msg and ("sample" in msg or "layer 1" in msg)
    session.close()


def _insitu(*args: str) -> subprocess.CompletedProcess[str]:
    """The real entry point (it maps design errors to exit status 2)."""
    return subprocess.run(
        [sys.executable, "-c", "from insitu.cli import main; main()", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "250"},
    )


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--set", "array.device_effects=true"], "array.device_effects"),
        (["--set", "learning.mode=float"], "learning.mode"),
        (["--rtl-every", "0"], "--rtl-every"),
        (["--engine", "icarus"], "--engine"),
        (
            ["--set", "array.adc_model=table", "--set", "array.adc_table=/nonexistent"],
            "/nonexistent",
        ),
    ],
)
def test_cli_refuses_what_the_rtl_cannot_reproduce(
    extra: list[str], needle: str, tmp_path: Path
) -> None:
    proc = _insitu("cosim", "digits", "--out", str(tmp_path / "x"), "-q", *extra)
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x" / "summary.json").exists()


def test_explain_costs_names_sources() -> None:
    proc = _insitu("cosim", "digits", "--explain-costs")
    assert proc.returncode == 0, proc.stderr
    for needle in ("adc_conversions", "Walden", "NeuroSim", "Horowitz", "dram_bits", "clock"):
        assert needle in proc.stdout, needle


def test_compare_reads_summary_files(tmp_path: Path) -> None:
    dp = small()
    p = chip_for(dp)
    counters = {
        "samples": 10,
        "cycles_forward": 1000,
        "cycles_backward": 100,
        "cycles_update": 500,
        "cycles_busy": 1600,
        "adc_conversions": 5000,
        "dram_bits": 32000,
    }
    s = {
        "command": "cosim",
        "design": dp.dump(),
        "test_accuracy": 0.9,
        "train_accuracy": 0.9,
        "epochs": 1,
        "wall_time_s": 1.0,
        "mismatches": 0,
        **summarize(dp, p, counters),
    }
    f = tmp_path / "a.json"
    f.write_text(json.dumps(s))
    res = CliRunner().invoke(app, ["compare", str(f), str(f)])
    assert res.exit_code == 0, res.output
    assert "cycles/sample forward" in res.output and "area" in res.output
