"""Training runs: accuracy on digits, checkpoints, resume, summary.json, device model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from insitu import config
from insitu.algo.device import DeviceArray, DeviceParams
from insitu.algo.train import train


def _ckpt_weights(run: Path) -> list[torch.Tensor]:
    return torch.load(run / "checkpoint.pt", weights_only=False)["model"]["weights"]


@pytest.mark.parametrize(
    ("sets", "floor"),
    [
        (["learning.rule=bp", "learning.epochs=8"], 0.93),
        (["learning.rule=dfa", "learning.epochs=8"], 0.90),
        (["learning.rule=fa", "learning.epochs=8"], 0.88),
        (["learning.rule=dfa", "learning.mode=hardware", "learning.epochs=6"], 0.88),
        (["learning.rule=bp", "learning.mode=hardware", "learning.epochs=6"], 0.88),
    ],
)
def test_digits_learns(tmp_path: Path, sets: list[str], floor: float) -> None:
    s = train(config.load("digits", sets), tmp_path)
    assert s["test_accuracy"] >= floor, s["history"]
    assert s["history"][-1]["loss"] < s["history"][0]["loss"]


@pytest.mark.parametrize("mode", ["float", "hardware"])
def test_resume_is_identical_to_an_uninterrupted_run(tmp_path: Path, mode: str) -> None:
    sets = [f"learning.mode={mode}", "network.layers=[64, 32, 10]"]
    full = train(config.load("digits", [*sets, "learning.epochs=3"]), tmp_path / "full")
    train(
        config.load("digits", [*sets, "learning.epochs=1"]), tmp_path / "cut"
    )  # "killed" after epoch 1
    resumed = train(
        config.load("digits", [*sets, "learning.epochs=3"]), tmp_path / "cut", resume=True
    )
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in full["history"]]
    assert [{k: v for k, v in h.items() if k != "seconds"} for h in resumed["history"]] == strip
    for a, b in zip(_ckpt_weights(tmp_path / "full"), _ckpt_weights(tmp_path / "cut"), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("mode", ["float", "hardware"])
def test_a_run_killed_inside_an_epoch_resumes_from_its_last_batch_checkpoint(
    tmp_path: Path, mode: str
) -> None:
    sets = [f"learning.mode={mode}", "network.layers=[64, 32, 10]", "learning.epochs=2"]
    dp = config.load("digits", sets)
    full = train(dp, tmp_path / "full")

    def kill(info: dict[str, Any]) -> None:
        if info.get("epoch") == 1 and info.get("batch") == 30:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(dp, tmp_path / "cut", progress=kill, checkpoint_every=12)
    ckpt = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)
    assert (ckpt["epoch"], ckpt["batch"]) == (1, 24)  # the last checkpoint before the kill
    trained: list[int] = []
    resumed = train(
        dp,
        tmp_path / "cut",
        resume=True,
        checkpoint_every=12,
        progress=lambda i: trained.append(i["batch"]) if "batch" in i else None,
    )
    assert trained[0] == 25  # batches 1..24 of epoch 2 are not trained again
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in full["history"]]
    assert [{k: v for k, v in h.items() if k != "seconds"} for h in resumed["history"]] == strip
    for a, b in zip(_ckpt_weights(tmp_path / "full"), _ckpt_weights(tmp_path / "cut"), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(config.DesignError, match="--checkpoint-every = -1: allowed: 0 or more"):
        train(dp, tmp_path / "neg", checkpoint_every=-1)


def test_resume_refuses_another_design_and_fresh_run_refuses_old_folder(tmp_path: Path) -> None:
    train(config.load("digits", ["learning.epochs=1", "network.layers=[64, 16, 10]"]), tmp_path)
    with pytest.raises(config.DesignError, match="different design point"):
        train(
            config.load("digits", ["learning.epochs=2", "network.layers=[64, 17, 10]"]),
            tmp_path,
            resume=True,
        )
    with pytest.raises(config.DesignError, match="--resume"):
        train(config.load("digits", ["learning.epochs=1", "network.layers=[64, 16, 10]"]), tmp_path)


def test_cli_train_writes_summary(tmp_path: Path) -> None:
    out = tmp_path / "run"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "insitu.cli",
            "train",
            "digits",
            "--set",
            "learning.epochs=2",
            "--set",
            "network.layers=[64, 16, 10]",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    s = json.loads((out / "summary.json").read_text())
    for key in ("test_accuracy", "train_accuracy", "history", "design", "wall_time_s"):
        assert key in s
    assert len(s["history"]) == 2 and s["design"]["network"]["layers"] == [64, 16, 10]
    assert "test accuracy" in r.stdout


def _params(**kw: float) -> DeviceParams:
    base = dict(
        levels=255,
        nl_ltp=0.0,
        nl_ltd=0.0,
        c2c_sigma=0.0,
        d2d_sigma=0.0,
        read_noise_sigma=0.0,
        stuck_at_rate=0.0,
    )
    base.update(kw)
    return DeviceParams(**base)  # type: ignore[arg-type]


def test_ideal_device_updates_like_the_digital_weights() -> None:
    w = torch.randint(-100, 100, (32, 16))
    dev = DeviceArray(w, 127, _params(), torch.Generator().manual_seed(0))
    assert torch.equal(dev.read(), w)
    dw = torch.randint(-5, 6, (32, 16))
    dev.update(dw)
    assert torch.equal(dev.read(), (w + dw).clamp(-127, 127))


def test_nonlinear_device_steps_shrink_towards_the_top() -> None:
    dev = DeviceArray(
        torch.tensor([[-120, 0, 100]]), 127, _params(nl_ltp=3.0), torch.Generator().manual_seed(0)
    )
    before = dev.g.clone()
    dev.update(torch.full((1, 3), 4))
    steps = (dev.g - before)[0]
    assert steps[0] > steps[1] > steps[2] > 0


def test_c2c_variation_spreads_updates_and_stuck_devices_stay() -> None:
    w = torch.zeros(200, 200, dtype=torch.int64)
    noisy = DeviceArray(w, 127, _params(c2c_sigma=0.02), torch.Generator().manual_seed(0))
    noisy.update(torch.ones_like(w))
    spread = noisy.read().double().std()
    assert spread > 1.0
    stuck = DeviceArray(w, 127, _params(stuck_at_rate=0.1), torch.Generator().manual_seed(0))
    frac = stuck.stuck.double().mean()
    assert 0.08 < frac < 0.12
    before = stuck.read()[stuck.stuck].clone()
    stuck.update(torch.full_like(w, 10))
    assert torch.equal(stuck.read()[stuck.stuck], before)


def test_device_effects_run_in_training(tmp_path: Path) -> None:
    dp = config.load(
        "digits",
        [
            "learning.mode=hardware",
            "learning.epochs=2",
            "array.device_effects=true",
            "array.device=rram",
            "network.layers=[64, 32, 10]",
        ],
    )
    s = train(dp, tmp_path)
    assert 0.1 < s["test_accuracy"] <= 1.0
