"""``insitu demo``: the README's main job, end to end (slow: two Verilator builds), and its
argument checks (fast)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from insitu.sweep_store import Store

INSITU = [sys.executable, "-m", "insitu.cli"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [(["--workers", "0"], "--workers = 0"), (["--epochs", "0"], "--epochs = 0")],
)
def test_bad_arguments_exit_2_and_write_nothing(
    tmp_path: Path, args: list[str], needle: str
) -> None:
    out = tmp_path / "demo"
    res = subprocess.run(
        [*INSITU, "demo", "--out", str(out), *args], capture_output=True, text=True
    )
    assert res.returncode == 2 and needle in res.stderr
    assert not out.exists()


@pytest.mark.slow
def test_demo_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    res = subprocess.run(
        [*INSITU, "demo", "--out", str(out), "-q"], capture_output=True, text=True, timeout=1800
    )
    assert res.returncode == 0, res.stderr[-3000:]
    lut = json.loads((out / "analog" / "summary.json").read_text())
    assert lut["failed"] == 0 and lut["adc_energy_pj"] > 0
    for rule in ("bp", "dfa"):
        assert (out / f"rtl-{rule}" / "insitu_chip.v").stat().st_size > 10_000
    cosim = {r.design["learning"]["rule"]: r for r in Store(out / "cosim").rows()}
    assert set(cosim) == {"bp", "dfa"}
    for r in cosim.values():
        s = r.summary
        assert r.status == "ok" and s is not None
        assert s["mismatches"] == 0 and s["rtl"]["rtl_samples"] > 1000
        assert s["test_accuracy"] > 0.6
        assert s["design"]["array"]["adc_model"] == "table"
    # DFA's backward pass is shorter than BP's on the same chip
    lat = {k: v.summary["latency_s"]["per_sample"] for k, v in cosim.items() if v.summary}
    assert lat["dfa"]["backward"] < lat["bp"]["backward"]
    assert len(Store(out / "adc").rows("ok")) == 20
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 4
    # a second run reuses every finished step
    res = subprocess.run(
        [*INSITU, "demo", "--out", str(out), "-q"], capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0 and "2 already in the store" in res.stderr
