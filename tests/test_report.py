"""``insitu report``: the HTML page of a sweep, from a store built here with known numbers.

The stores hold synthetic summaries shaped like real ``insitu train`` / ``insitu cosim`` ones,
with latencies, energies and accuracies chosen so that the page's tables can be checked
against values worked out by hand: the BP/DFA speedups, the Pareto fronts, the mean accuracy
at one ADC resolution. The error cases run the real command line and check exit status 2 and
that nothing was written.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from insitu import config
from insitu.config import DesignError
from insitu.report import front, load, write_report
from insitu.report_cli import build_report
from insitu.sweep_store import Store, write_plan

INSITU = [sys.executable, "-m", "insitu.cli"]
SECTIONS = (
    "1. Summary",
    "2. Learning curves",
    "3. Accuracy against the swept axes",
    "4. Hardware cost (co-simulated points)",
    "5. Training latency against depth N",
    "6. Pareto front",
)
US = 1e-6
NJ = 1e-9
SAMPLES = 1000


# --------------------------------------------------------------------------- synthetic data


def design(overrides: dict[str, Any]) -> dict[str, Any]:
    sets = [f"{k}={json.dumps(v)}" for k, v in overrides.items()]
    data: dict[str, Any] = config.load("digits", ["learning.mode=hardware", *sets]).dump()
    return data


def train_summary(dp: dict[str, Any], acc: float, epochs: int = 3) -> dict[str, Any]:
    history = [
        {
            "epoch": e,
            "loss": 1.0 / e,
            "train_accuracy": acc * e / epochs + 0.01,
            "test_accuracy": acc * e / epochs,
            "seconds": 0.5,
        }
        for e in range(1, epochs + 1)
    ]
    return {
        "command": "train",
        "test_accuracy": acc,
        "train_accuracy": acc + 0.01,
        "epochs": epochs,
        "history": history,
        "wall_time_s": 0.5 * epochs,
        "design": dp,
    }


def cosim_summary(
    dp: dict[str, Any],
    acc: float,
    latency_us: tuple[float, float, float],
    energy_nj: dict[str, float],
    area_mm2: dict[str, float],
) -> dict[str, Any]:
    """As `insitu cosim` writes it: totals over SAMPLES samples, per-sample figures beside."""
    s = train_summary(dp, acc)
    fwd, bwd, upd = (x * US for x in latency_us)
    period = 1e-8
    per_sample_j = sum(energy_nj.values()) * NJ
    s.update(
        command="cosim",
        mismatches=0,
        samples=SAMPLES,
        cycles={
            "per_sample": {
                "forward": fwd / period,
                "backward": bwd / period,
                "update": upd / period,
            },
            "total": {"busy": (fwd + bwd + upd) / period * SAMPLES},
        },
        clock={"period_s": period, "set_by": "analog read + conversion 10 ns"},
        latency_s={
            "per_sample": {
                "forward": fwd,
                "backward": bwd,
                "update": upd,
                "total": fwd + bwd + upd,
            },
            "per_epoch_estimate": {"total": (fwd + bwd + upd) * SAMPLES},
        },
        energy_j={
            "total": per_sample_j * SAMPLES,
            "per_sample": per_sample_j,
            "by_event": {"adc_conversions": energy_nj["adcs"] * NJ * SAMPLES},
            "by_component": {c: v * NJ * SAMPLES for c, v in energy_nj.items()},
        },
        area_mm2={"total": sum(area_mm2.values()), "by_component": dict(area_mm2)},
        memory_utilization=0.7,
        tops_per_w=0.13,
    )
    return s


def put(
    store: Store,
    key: str,
    overrides: dict[str, Any],
    summary: dict[str, Any] | None,
    command: str,
    error: str | None = None,
) -> None:
    store.put(
        key,
        status="ok" if summary is not None else "failed",
        command=command,
        overrides=overrides,
        design=design(overrides),
        summary=summary,
        error=error,
        wall_s=1.0,
        worker="test:1",
    )


LAYERS = {2: [64, 16, 10], 3: [64, 16, 16, 10], 4: [64, 16, 16, 16, 10]}


def latency(rule: str, n: int) -> tuple[float, float, float]:
    """µs per sample: BP's backward and update grow with N, DFA's stay flat.

    So BP/DFA of backward+update = 1.8N / 0.9 = 2N, and of the whole step 2.8N / (N + 0.9).
    """
    if rule == "bp":
        return (1.0 * n, 0.6 * n, 1.2 * n)
    return (1.0 * n, 0.3, 0.6)


def accuracy(rule: str, n: int, adc: int, seed: int) -> float:
    return 0.5 + 0.05 * adc + 0.01 * seed - (0.02 * n if rule == "dfa" else 0.0)


def cosim_depth_sweep(folder: Path) -> None:
    """rule × depth × ADC bits × 2 seeds, co-simulated; one failed point, one pending."""
    store = Store(folder)
    points = []
    for rule in ("bp", "dfa"):
        for n, layers in LAYERS.items():
            for adc in (4, 5):
                for seed in (0, 1):
                    over = {
                        "learning.rule": rule,
                        "network.layers": layers,
                        "array.adc_bits": adc,
                        "learning.seed": seed,
                    }
                    key = f"{rule}-{n}-{adc}-{seed}"
                    points.append({"key": key, "overrides": over})
                    energy = {
                        "arrays": 1.0 * n,
                        "adcs": 0.5 * adc * n,
                        "buffers": 2.0,
                        "offchip": 5.0 + (1.0 if rule == "bp" else 0.0),
                    }
                    area = {"arrays": 0.001 * n, "adcs": 0.02 * adc, "wgu": 0.002}
                    s = cosim_summary(
                        design(over), accuracy(rule, n, adc, seed), latency(rule, n), energy, area
                    )
                    put(store, key, over, s, "cosim")
    failed = {"learning.rule": "fa", "network.layers": LAYERS[2], "array.adc_bits": 4}
    points.append({"key": "fa-failed", "overrides": failed})
    put(store, "fa-failed", failed, None, "cosim", error="RuntimeError: verilator build failed")
    points.append({"key": "pending", "overrides": {"learning.rule": "fa"}})
    write_plan(
        folder,
        {
            "name": "depth-sweep",
            "description": "BP against DFA over depth and ADC bits",
            "command": "cosim",
            "base": "digits",
            "set": {},
            "axes": ["learning.rule", "network.layers", "array.adc_bits"],
            "seeds": [0, 1],
            "points": points,
        },
    )


# --------------------------------------------------------------------------- reading the page


class Tables(HTMLParser):
    """Every <table> of a page: its class and its rows of cell text; and every <img> src."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tables: list[tuple[str, list[list[str]]]] = []
        self.images: list[str] = []
        self.headings: list[str] = []
        self._cell: list[str] | None = None
        self._heading: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table":
            self.tables.append((a.get("class") or "", []))
        elif tag == "tr" and self.tables:
            self.tables[-1][1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(a.get("src") or "")
        elif tag == "h2":
            self._heading = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][1][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "h2" and self._heading is not None:
            self.headings.append("".join(self._heading))
            self._heading = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._heading is not None:
            self._heading.append(data)

    def table(self, cls: str) -> list[list[str]]:
        found = [rows for c, rows in self.tables if cls in c.split()]
        assert len(found) == 1, f"{len(found)} tables of class {cls}"
        return found[0]


# --------------------------------------------------------------------------- tests


def test_cosim_depth_sweep_report(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    cosim_depth_sweep(sweep)
    rep = build_report([sweep])
    assert rep.html == sweep / "report.html"
    text = rep.html.read_text()
    page = Tables(text)
    assert page.headings == list(SECTIONS)
    # curves, accuracy vs depth and vs ADC bits, energy, area, latency, depth, Pareto
    assert len(page.images) == 8
    assert all(src.startswith("data:image/png;base64,") for src in page.images)
    assert sorted(p.name for p in (sweep / "report").iterdir()) == sorted(
        p.name for p in rep.figures
    )
    assert len(rep.figures) == 8
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in rep.figures)
    # no external reference: every figure is inline, no URL outside the base64 data
    assert "http" not in re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", text)
    assert "<script" not in text.lower()
    assert "depth-sweep" in text and "BP against DFA over depth and ADC bits" in text

    summary = dict((r[0], r[1]) for r in page.table("counts")[1:])
    assert summary["points planned"] == "26"
    assert summary["finished"] == "24" and summary["failed"] == "1" and summary["pending"] == "1"
    failed = page.table("failed")
    assert failed[1][1] == "fa-failed" and "verilator build failed" in failed[1][2]
    rules = {r[0]: r for r in page.table("rules")[1:]}
    # best BP: adc 5, seed 1 -> 0.76; best DFA: N=2, adc 5, seed 1 -> 0.72
    assert rules["bp"][2] == "76.0%" and rules["dfa"][2] == "72.0%"

    # accuracy against ADC bits, one panel per depth: bp, N=3, 4 bits = mean(0.70, 0.71)
    adc_rows = [r for c, rows in page.tables for r in rows if r[:3] == ["depth=3", "bp", "4"]]
    assert adc_rows and adc_rows[0][3] == "70.5%"

    # speedup BP/DFA: backward+update 2N, whole step 2.8N / (N + 0.9)
    speed = page.table("speedup")[1:]
    assert [int(r[0]) for r in speed] == [2, 3, 4]
    for r in speed:
        n = int(r[0])
        assert float(r[1]) == pytest.approx(2 * n, abs=1e-3)
        assert float(r[2]) == pytest.approx(2.8 * n / (n + 0.9), abs=1e-3)
    lat = {(r[0], r[1]): r for r in page.table("latency")[1:]}
    assert float(lat[("4", "bp")][7]) == pytest.approx(11.2)  # total µs
    assert float(lat[("4", "dfa")][6]) == pytest.approx(0.9)  # backward+update µs


def pareto_store(folder: Path) -> None:
    """Five cosim configs (two seeds each) whose fronts are worked out by hand.

    config  acc   energy(nJ)  latency(µs)
    A       0.90  10          4      energy front; latency: dominated by C (0.95 at 3)
    B       0.85  12          2      energy: dominated by A; latency front
    C       0.95  20          3      both fronts
    D       0.80   5          5      energy front; latency: dominated by B
    E       0.95  25          3      dominated in both by C (equal accuracy, more energy;
                                     equal latency and accuracy: a tie, so both are on it)
    """
    table = {
        "A": (0.90, 10.0, 4.0),
        "B": (0.85, 12.0, 2.0),
        "C": (0.95, 20.0, 3.0),
        "D": (0.80, 5.0, 5.0),
        "E": (0.95, 25.0, 3.0),
    }
    store = Store(folder)
    points = []
    for i, (name, (acc, e, t)) in enumerate(table.items()):
        for seed in (0, 1):
            # seeds scatter ±0.01 around the config's accuracy: the mean is the table's
            over = {"array.adc_bits": 3 + i, "learning.seed": seed}
            key = f"{name}{seed}"
            points.append({"key": key, "overrides": over})
            s = cosim_summary(
                design(over),
                acc + (0.01 if seed else -0.01),
                (t / 2, t / 4, t / 4),
                {"arrays": e / 2, "adcs": e / 2},
                {"arrays": 0.01},
            )
            put(store, key, over, s, "cosim")
    write_plan(
        folder,
        {
            "name": "pareto",
            "description": "",
            "command": "cosim",
            "axes": ["array.adc_bits"],
            "seeds": [0, 1],
            "points": points,
        },
    )


def test_pareto_fronts(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    pareto_store(folder)
    out = tmp_path / "elsewhere" / "page.html"
    rep = build_report([folder], out)
    assert rep.html == out and (tmp_path / "elsewhere" / "page").is_dir()
    page = Tables(out.read_text())
    names = {
        "adc_bits=3": "A",
        "adc_bits=4": "B",
        "adc_bits=5": "C",
        "adc_bits=6": "D",
        "adc_bits=7": "E",
    }
    energy = [names[r[1]] for r in page.table("pareto-energy")[1:]]
    latency = [names[r[1]] for r in page.table("pareto-latency")[1:]]
    assert energy == ["D", "A", "C"]  # by cost, ascending
    assert sorted(latency) == ["B", "C", "E"]
    assert page.table("pareto-energy")[1][3:] == ["80.0%", "5"]
    # one depth only: the depth figure is replaced by a line saying what would produce it
    assert "sweep network.layers over several depths" in out.read_text()


def test_front_ties_and_domination() -> None:
    assert front([(0.9, 1.0), (0.9, 1.0), (0.8, 2.0), (0.95, 3.0)]) == [True, True, False, True]


def train_sweep(folder: Path, runs: Path | None = None) -> None:
    """rule × gradient bits, trained only; each summary also as a run folder under *runs*."""
    store = Store(folder)
    points = []
    for rule in ("bp", "fa"):
        for bits in (4, 6, 8):
            over = {"learning.rule": rule, "precision.gradient_bits": bits}
            key = f"{rule}{bits}"
            points.append({"key": key, "overrides": over})
            s = train_summary(design(over), 0.6 + 0.03 * bits - (0.05 if rule == "fa" else 0))
            put(store, key, over, s, "train")
            if runs is not None:
                (runs / key).mkdir(parents=True)
                (runs / key / "summary.json").write_text(json.dumps(s))
    write_plan(
        folder,
        {
            "name": "bits",
            "description": "gradient bits",
            "command": "train",
            "axes": ["learning.rule", "precision.gradient_bits"],
            "points": points,
        },
    )


def test_train_sweep_and_run_folders(tmp_path: Path) -> None:
    """A train-only sweep: no hardware figures, a cost axis that says it is host time; and the
    same summaries read as run folders, whose differing fields become the axes."""
    folder, runs_dir = tmp_path / "t", tmp_path / "runs"
    train_sweep(folder, runs_dir)
    (runs_dir / "junk").mkdir()
    (runs_dir / "junk" / "summary.json").write_text('{"not": "a run"}')
    rep = build_report([folder])
    text = rep.html.read_text()
    page = Tables(text)
    assert page.headings == list(SECTIONS)
    assert len(page.images) == 3  # curves, accuracy vs gradient bits, Pareto (host time)
    assert "host wall-clock training time" in text
    assert "No co-simulated points" in text

    runs = load([runs_dir])
    assert runs.kind == "runs" and len(runs.points) == 6
    assert runs.axes == ["learning.rule", "precision.gradient_bits"]
    assert any("junk" in n for n in runs.notes)
    rep2 = build_report(
        [runs_dir / "bp4", runs_dir / "fa8" / "summary.json"], tmp_path / "two.html"
    )
    # curves and Pareto only: the two runs differ in rule and bits at once, so no trend
    assert len(rep2.figures) == 2
    assert "change only together with other fields" in rep2.html.read_text()


def test_two_sweeps_on_one_page(tmp_path: Path) -> None:
    """As `insitu demo` writes it: a co-simulated sweep and a trained sweep, told apart."""
    cos, trained = tmp_path / "cosim", tmp_path / "adc"
    pareto_store(cos)
    train_sweep(trained)
    out = write_report([cos, trained], tmp_path / "both.html")
    assert out == tmp_path / "both.html"
    page = Tables(out.read_text())
    summary = dict((r[0], r[1]) for r in page.table("counts")[1:])
    assert summary["points planned"] == "16" and summary["command"] == "cosim, train"
    # hardware sections from the co-simulated sweep only
    assert len(page.table("pareto-energy")) == 4
    labels = [r[0] for r in page.table("curves")[1:]]
    assert "pareto · adc_bits=3" in labels and "bits · bp · gradient_bits=4" in labels
    with pytest.raises(DesignError, match="--out"):
        write_report([cos, trained])


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*INSITU, "report", *args], capture_output=True, text=True, timeout=60)


def test_bad_inputs_exit_2_and_write_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run_cli(str(tmp_path / "missing"))
    assert r.returncode == 2 and "error:" in r.stderr and "no such file" in r.stderr
    r = run_cli(str(empty))
    assert r.returncode == 2 and "not a sweep folder" in r.stderr
    assert list(empty.iterdir()) == []
    # a sweep whose only point failed
    sweep = tmp_path / "failed"
    over = {"learning.rule": "bp"}
    put(Store(sweep), "k", over, None, "train", error="ValueError: boom")
    write_plan(sweep, {"name": "f", "points": [{"key": "k", "overrides": over}]})
    before = sorted(p.name for p in sweep.iterdir())
    r = run_cli(str(sweep))
    assert r.returncode == 2 and "no finished points" in r.stderr
    assert sorted(p.name for p in sweep.iterdir()) == before
    with pytest.raises(DesignError, match="no finished points"):
        build_report([sweep])


CHROMIUM = next(
    (p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if Path(p).exists()), None
)


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="no headless Chromium (Debian package `chromium`): the page is not rendered",
)
def test_page_renders_in_headless_chromium_without_console_messages(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    cosim_depth_sweep(sweep)
    rep = build_report([sweep])
    shot = tmp_path / "shot.png"
    # the flags keep Chromium off the network (this machine has none) and out of the sandbox
    # that a root user cannot enter; console messages are logged to stderr as CONSOLE lines
    res = subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1400,4000",
            f"--screenshot={shot}",
            "--enable-logging=stderr",
            "--v=0",
            rep.html.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.exists() and shot.stat().st_size > 50_000, res.stderr[-2000:]
    console = [line for line in res.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []
