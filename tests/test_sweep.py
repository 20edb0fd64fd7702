"""Sweeps on dask.distributed: sweep files, the results store, kill-and-resume, a remote scheduler.

The kill test runs the real command in its own process group, kills it with SIGKILL once some
points are in the store, runs it again and checks that every planned point is in the store
exactly once and that no finished point ran twice. The scheduler test starts ``dask scheduler``
and ``dask worker`` on loopback, as a user scaling out would.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from insitu.cli import app
from insitu.config import DesignError
from insitu.sweep import sweep_status
from insitu.sweep_spec import expand, load_sweep
from insitu.sweep_store import Store

INSITU = [sys.executable, "-m", "insitu.cli"]
DASK = Path(sys.executable).parent / "dask"

SWEEP24 = """\
description: 24 small float points
base: digits
set:
  network.layers: [64, 16, 10]
  learning.epochs: 2
axes:
  learning.rule: [bp, fa, dfa]
  learning.lr: [0.001, 0.002, 0.004, 0.008]
seeds: [0, 1]
"""


def write(tmp_path: Path, text: str, name: str = "sweep.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def rows(folder: Path) -> list[tuple[str, str, float]]:
    with sqlite3.connect(folder / "results.sqlite") as con:
        return con.execute("SELECT key, status, finished_at FROM points").fetchall()


def test_grid_seeds_and_keys(tmp_path: Path) -> None:
    spec = load_sweep(write(tmp_path, SWEEP24))
    points = expand(spec)
    assert len(points) == 24 and len({p.key for p in points}) == 24
    assert points[0].overrides == {"learning.rule": "bp", "learning.lr": 0.001, "learning.seed": 0}
    assert list(points[0].design.network.layers) == [64, 16, 10]
    # the key follows the resolved design, not its spelling: lr 0.001 twice is one point
    dup = SWEEP24.replace("[0.001, 0.002,", "[0.001, 1.0e-3, 0.002,")
    assert [p.key for p in expand(load_sweep(write(tmp_path, dup, "d.yaml")))] == [
        p.key for p in points
    ]
    # the data folder locates data; it does not change the point
    moved = expand(spec, extra_sets=["network.data_dir=/elsewhere"])
    assert [p.key for p in moved] == [p.key for p in points]


def test_random_and_list(tmp_path: Path) -> None:
    text = """\
method: random
samples: 5
random_seed: 3
axes:
  learning.lr: {low: 0.0001, high: 0.01, log: true}
  precision.gradient_bits: {low: 4, high: 8, integer: true}
  learning.rule: [bp, dfa]
"""
    a = expand(load_sweep(write(tmp_path, text)))
    b = expand(load_sweep(write(tmp_path, text)))
    assert len(a) == 5 and [p.key for p in a] == [p.key for p in b]
    assert all(1e-4 <= p.overrides["learning.lr"] <= 1e-2 for p in a)
    assert all(isinstance(p.overrides["precision.gradient_bits"], int) for p in a)
    listed = """\
method: list
points:
  - {learning.rule: bp, array.adc_bits: 4}
  - {learning.rule: dfa}
"""
    pts = expand(load_sweep(write(tmp_path, listed, "l.yaml")))
    assert [p.design.learning.rule for p in pts] == ["bp", "dfa"]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (
            "axes: {learning.rule: [bp, sgd]}",
            "sweep point 2 (learning.rule=sgd): invalid design point: learning.rule = 'sgd'",
        ),
        ("axez: {}", "axez: unknown field; allowed: name, description, base"),
        ("method: random\naxes: {learning.lr: [0.1]}", "needs samples"),
        ("axes: {learning.lr: {low: 0.1, high: 0.2}}", "only method = 'random' samples ranges"),
        ("axes: {learning.lr: []}", "axis 'learning.lr' has no values"),
        ("base: nosuchpreset", "neither a preset"),
        ("- just a list", "top level must be a mapping"),
        ("command: synth", "command = 'synth'"),
    ],
)
def test_bad_sweep_files(tmp_path: Path, text: str, needle: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(DesignError, match=None) as info:
        expand(load_sweep(path))
    assert needle in " ".join(str(info.value).split())
    # the command says the same, exits 2 and writes nothing
    out = tmp_path / "out"
    res = subprocess.run(
        [*INSITU, "sweep", str(path), "--out", str(out)], capture_output=True, text=True
    )
    assert res.returncode == 2, res.stderr
    assert needle in " ".join(res.stderr.split()) and "Traceback" not in res.stderr
    assert not out.exists()


def test_failed_point_is_recorded_and_the_sweep_goes_on(tmp_path: Path) -> None:
    text = """\
base: digits
set: {network.layers: [64, 16, 10], learning.epochs: 2, learning.lr: 0.01}
method: list
points:
  - {learning.rule: bp}
  - {network.dataset: mnist, network.layers: [784, 16, 10], network.data_dir: /nonexistent}
"""
    out = tmp_path / "out"
    res = CliRunner().invoke(
        app, ["sweep", str(write(tmp_path, text)), "--out", str(out), "--workers", "1", "-q"]
    )
    assert res.exit_code == 1, res.output
    st = sweep_status(out)
    assert (st["finished"], st["failed"], st["pending"]) == (1, 1, 0)
    assert "nonexistent" in st["failures"][0]["error"]
    ok = Store(out).rows("ok")[0]
    assert ok.summary is not None and ok.summary["test_accuracy"] > 0.5
    res = CliRunner().invoke(app, ["sweep", "status", str(out)])
    assert "1 finished, 1 failed, 0 pending" in res.output


def test_store_appears_with_its_table_and_is_never_recreated(tmp_path: Path) -> None:
    import threading

    # a reader polling a store being created must never find a file without the table
    for i in range(40):
        folder = tmp_path / f"s{i}"
        store = Store(folder)
        writer = threading.Thread(
            target=store.put,
            args=("k",),
            kwargs=dict(status="ok", command="c", overrides={}, design={}),
        )
        writer.start()
        while writer.is_alive():
            if store.path.exists():
                rows(folder)  # raises "no such table" if the file came before its table
        writer.join()
        assert [r.key for r in store.rows()] == ["k"]
        assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]
    store._create()  # a second creator leaves the rows alone
    assert [r.key for r in store.rows()] == ["k"]


def test_killed_sweep_resumes_with_every_point_once(tmp_path: Path) -> None:
    path = write(tmp_path, SWEEP24)
    out = tmp_path / "out"
    cmd = [*INSITU, "sweep", str(path), "--out", str(out), "--workers", "2", "-q"]
    proc = subprocess.Popen(
        cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / "results.sqlite").exists() and len(rows(out)) >= 6:
                break
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the client and its cluster's workers
        proc.wait()
    first = {k: t for k, _, t in rows(out)}
    assert 6 <= len(first) < 24, f"{len(first)} points finished before the kill"
    st = sweep_status(out)
    assert st["pending"] == 24 - len(first)
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert f"{len(first)} were already done, {24 - len(first)} finished now" in res.stdout
    final = rows(out)
    keys = [k for k, _, _ in final]
    plan = json.loads((out / "plan.json").read_text())
    assert sorted(keys) == sorted(p["key"] for p in plan["points"])  # every point, once
    assert all(s == "ok" for _, s, _ in final)
    assert all(t == first[k] for k, _, t in final if k in first)  # none ran twice
    # a third run finds nothing to do
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert "24 were already done, 0 finished now" in res.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_sweep_on_a_separately_started_scheduler(tmp_path: Path) -> None:
    if not DASK.exists():
        pytest.skip(f"{DASK} not installed (dask[distributed] is a dependency of insitu)")
    port = _free_port()
    addr = f"tcp://127.0.0.1:{port}"
    log = (tmp_path / "dask.log").open("w")
    procs = [
        subprocess.Popen(
            [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    ]
    try:
        procs.append(
            subprocess.Popen(
                [str(DASK), "worker", addr, "--nworkers", "2", "--nthreads", "1", "--no-dashboard"],
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        )
        out = tmp_path / "out"
        res = subprocess.run(
            [
                *INSITU,
                "sweep",
                str(write(tmp_path, SWEEP24)),
                "--out",
                str(out),
                "--scheduler",
                addr,
                "-q",
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert res.returncode == 0, res.stderr + (tmp_path / "dask.log").read_text()[-3000:]
        got = Store(out).rows()
        assert len(got) == 24 and len({r.key for r in got}) == 24
        # the points ran in the workers' processes, not in the client
        workers = {r.worker for r in got}
        assert len(workers) >= 1 and all(w and str(os.getpid()) not in w for w in workers)
    finally:
        for p in reversed(procs):
            os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        log.close()


def test_command_line_replaces_seeds_and_cosim_options(tmp_path: Path) -> None:
    path = write(tmp_path, SWEEP24)
    res = CliRunner().invoke(app, ["sweep", str(path), "--dry-run", "--seeds", "3"])
    assert res.exit_code == 0 and "12 points" in res.output and "learning.seed=3" in res.output
    res = CliRunner().invoke(app, ["sweep", str(path), "--dry-run", "--seeds", "a"])
    assert res.exit_code != 0 and "--seeds = 'a'" in str(res.exception)
    res = CliRunner().invoke(app, ["sweep", str(path), "--dry-run", "--rtl-every", "5"])
    assert "apply to cosim sweeps" in str(res.exception)
    cos = write(
        tmp_path, "base: digits-chip\ncommand: cosim\naxes: {learning.rule: [bp]}\n", "c.yaml"
    )
    a = CliRunner().invoke(app, ["sweep", str(cos), "--dry-run"]).output.split()[0]
    b = CliRunner().invoke(app, ["sweep", str(cos), "--dry-run", "--rtl-every", "5"]).output
    assert a not in b  # the option is part of the point's key
