"""Characterization end to end on a small design: LUT contents, cache, retries, resume, CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from insitu import config
from insitu.analog import engine

why = engine.available()
pytestmark = pytest.mark.skipif(why is not None, reason=f"ngspice unavailable: {why}")

SMALL = ["array.rows=8", "array.adc_bits=3"]


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "insitu.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def small_lut(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from insitu.analog.characterize import Settings, characterize

    out = tmp_path_factory.mktemp("lut")
    dp = config.load("digits", SMALL)
    st = Settings(corners=("tt", "ss"), temperatures=(27.0, 85.0), mc=1, patterns=3)
    characterize(dp, st, out, workers=2)
    return out


def test_lut_has_named_axes_units_and_provenance(small_lut: Path) -> None:
    from insitu.tech.lut import Lut

    lut = Lut.open(small_lut)
    t = lut.table("adc_thresholds")
    assert [a.name for a in t.axes] == ["corner", "temperature", "sample", "code"]
    assert t.unit == "V" and t.axis("temperature").unit == "C"
    assert lut.provenance["pdk"] == "generic180" and len(lut.provenance["models_sha256"]) == 64
    assert lut.provenance["design"]["array"]["rows"] == 8
    # Interpolation between 27 and 85 C lies between the end points.
    e = lut.table("adc_energy")
    mid = float(e.interp(corner="tt", temperature=56.0, sample=0))
    lo, hi = sorted(float(e.interp(corner="tt", temperature=x, sample=0)) for x in (27, 85))
    assert lo <= mid <= hi and mid > 0


def test_adc_monotonic_no_missing_codes_at_nominal(small_lut: Path) -> None:
    s = json.loads((small_lut / "summary.json").read_text())
    assert s["failed"] == 0
    assert s["adc_monotonic"] and s["adc_missing_codes"] == 0
    assert s["adc_dnl_max_lsb"] < 0.5
    assert 0.1 < s["adc_energy_pj"] < 100


def test_mismatch_moves_thresholds_reproducibly(small_lut: Path) -> None:
    from insitu.tech.lut import Lut

    t = Lut.open(small_lut).table("adc_thresholds")
    nominal = t.interp(corner="tt", temperature=27.0, sample=0)
    mc = t.interp(corner="tt", temperature=27.0, sample=1)
    assert np.max(np.abs(mc - nominal)) > 1e-4  # mismatch is on in sample 1 ...
    assert np.max(np.abs(mc - nominal)) < 0.05  # ... and of Pelgrom size (V)


def test_column_transfer_close_to_ideal_and_used_by_algo(small_lut: Path) -> None:
    from insitu.algo.plan import make_plan, uniform_adc
    from insitu.tech.lut import Lut

    lut = Lut.open(small_lut)
    mean = lut.table("column_transfer_mean").interp(corner="tt", temperature=27.0)
    sums = np.arange(len(mean))
    assert np.max(np.abs(mean - sums)) < 0.5
    dp = config.load(
        "digits",
        [*SMALL, "learning.mode=hardware", "array.adc_model=table", f"array.adc_table={small_lut}"],
    )
    plan = make_plan(dp)
    table = plan.layers[0].adc
    assert len(table.levels) == 8
    # A near-ideal column and ADC give (nearly) the ideal uniform table over the same range.
    ideal = uniform_adc(3, 24)
    assert table.levels == ideal.levels
    assert max(abs(a - b) for a, b in zip(table.thresholds, ideal.thresholds, strict=True)) <= 1


def test_rerun_is_cached(small_lut: Path) -> None:
    from insitu.analog.characterize import Settings, characterize

    dp = config.load("digits", SMALL)
    st = Settings(corners=("tt", "ss"), temperatures=(27.0, 85.0), mc=1, patterns=3)
    t0 = time.perf_counter()
    s = characterize(dp, st, small_lut, workers=2)
    assert s["computed"] == 0 and s["cached"] == s["points"]
    assert time.perf_counter() - t0 < 5


def test_failed_point_is_recorded_and_the_sweep_goes_on(tmp_path: Path) -> None:
    from insitu.analog.circuits import Job
    from insitu.analog.sweep import Point, run_points

    bad = Job("iv", "* loop\nV1 a 0 1\nV2 a 0 2\n.dc V1 0 1 0.5\n.end\n", {"dc": ["v-sweep"]})
    good = Job(
        "synapse_iv",
        "* ok\nVD d 0 1\nVG g 0 0\nR1 d g 1k\n.dc VG 0 1 0.5\n.end\n",
        {"dc": ["v-sweep", "vd#branch"]},
    )
    pts = [Point(bad, {"what": "bad"}), Point(good, {"what": "good"})]
    outs, st = run_points(pts, tmp_path, workers=1)
    assert outs[0].failed and "singular" in outs[0].failed.lower() and outs[0].attempts == 3
    assert outs[1].failed is None and len(outs[1].arrays["vg"]) == 3
    assert (st.failed, st.computed) == (1, 2)
    outs2, st2 = run_points(pts, tmp_path, workers=1)
    assert st2.cached == 2 and outs2[0].failed == outs[0].failed


def test_killed_sweep_resumes_without_recomputing(tmp_path: Path) -> None:
    out = tmp_path / "lut"
    args = [
        sys.executable,
        "-m",
        "insitu.cli",
        "analog",
        "characterize",
        "digits",
        "--set",
        "array.rows=8",
        "--set",
        "array.adc_bits=3",
        "--out",
        str(out),
        "--corners",
        "tt,ff,ss",
        "--temps",
        "27,85",
        "--workers",
        "1",
        "-q",
    ]
    proc = subprocess.Popen(
        args, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    cache = out / "cache"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(cache.glob("*.npz"))) < 6:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list(cache.glob("*.npz")))
    assert 6 <= done < 24, done
    assert not (out / "lut.json").exists()
    r = cli(*args[3:])
    assert r.returncode == 0, r.stderr
    s = json.loads((out / "summary.json").read_text())
    assert s["cached"] >= done and s["cached"] + s["computed"] == s["points"] == 24


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--corners", "tt,xx"], "corner 'xx'"),
        (["--temps", "27,hot"], "--temps"),
        (["--adc", "pipeline"], "adc"),
        (["--pdk", "nope"], "generic180"),
        (["--set", "array.rows=1024"], "at most 512"),
        (["--workers", "0"], "--workers"),
    ],
)
def test_bad_input_exits_2_naming_it(tmp_path: Path, args: list[str], needle: str) -> None:
    out = tmp_path / "o"
    r = cli("analog", "characterize", "digits", "--out", str(out), *args, timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert needle in r.stderr
    assert not out.exists()


def test_plot_writes_pngs(small_lut: Path) -> None:
    r = cli("analog", "plot", str(small_lut), timeout=120)
    assert r.returncode == 0, r.stderr
    for f in ("iv.png", "column.png", "adc.png"):
        assert (small_lut / f).read_bytes()[:4] == b"\x89PNG"


def test_subthreshold_synapse_column_is_exact_where_calibrated_and_drifts_hot(
    tmp_path: Path,
) -> None:
    from insitu.analog.characterize import Settings, characterize
    from insitu.tech.lut import Lut

    dp = config.load("digits", ["array.device=subthreshold", *SMALL])
    st = Settings(corners=("tt",), temperatures=(27.0, 85.0), patterns=3)
    s = characterize(dp, st, tmp_path, workers=2)
    assert s["failed"] == 0
    lut = Lut.open(tmp_path)
    assert lut.provenance["cell"] == "subthreshold"
    rms = lut.table("column_error_rms")
    # Gate voltages are set from the 27 C I-V, so the column is exact there; weak-inversion
    # current grows with temperature, so the same gates read high at 85 C.
    assert float(rms.interp(corner="tt", temperature=27.0)) < 0.1
    mean85 = lut.table("column_transfer_mean").interp(corner="tt", temperature=85.0)
    assert mean85[-1] > 1.2 * (len(mean85) - 1)


def test_finer_flash_adc_decides_within_its_transient(tmp_path: Path) -> None:
    # A 5-bit flash's 1/2-LSB overdrive is half a 4-bit one's; its comparator decided after
    # the old fixed 12 ns window, and the LUT's delay and energy came out NaN.
    from insitu.analog.characterize import Settings, characterize

    dp = config.load("digits", ["array.rows=8", "array.adc_bits=5"])
    characterize(dp, Settings(corners=("tt",), temperatures=(27.0,), patterns=2), tmp_path)
    s = json.loads((tmp_path / "summary.json").read_text())
    assert np.isfinite(s["adc_delay_ns"]) and 1 < s["adc_delay_ns"] < 100
    assert np.isfinite(s["adc_energy_pj"]) and s["adc_energy_pj"] > 0
