"""Design points: presets, files, overrides, schema, and the clear errors of bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from insitu import config


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "insitu.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def test_default_is_digits_and_every_field_has_a_default() -> None:
    dp = config.DesignPoint()
    assert dp.network.dataset == "digits"
    assert config.load("digits").network.layers == (64, 128, 128, 10)
    assert set(config.list_presets()) >= {"digits", "mnist", "procedural"}


def test_presets_validate() -> None:
    for name in config.list_presets():
        dp = config.load(name)
        assert dp.name == name


def test_overrides_apply_and_parse_as_data() -> None:
    dp = config.load(
        "mnist", ["learning.rule=bp", "array.adc_bits=4", "network.layers=[784, 100, 10]"]
    )
    assert dp.learning.rule == "bp"
    assert dp.array.adc_bits == 4
    assert dp.network.layers == (784, 100, 10)


def test_yaml_and_toml_files(tmp_path: Path) -> None:
    y = tmp_path / "d.yaml"
    y.write_text("learning:\n  rule: fa\n")
    t = tmp_path / "d.toml"
    t.write_text('[learning]\nrule = "bp"\n[array]\nadc_bits = 3\n')
    assert config.load(y).learning.rule == "fa"
    dp = config.load(t)
    assert (dp.learning.rule, dp.array.adc_bits) == ("bp", 3)


def test_design_point_is_immutable() -> None:
    dp = config.load("digits")
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen error type is internal
        dp.learning.epochs = 3  # type: ignore[misc]


def test_schema_is_json_schema() -> None:
    s = config.schema()
    assert "properties" in s and "array" in s["properties"]


MALFORMED = [
    # (overrides, file text, expected pieces of the message)
    (["array.bogus=1"], None, ["array.bogus", "unknown field", "adc_bits"]),
    (["array.rows=abc"], None, ["array.rows", "'abc'", "integer"]),
    (["array.rows=0"], None, ["array.rows", "0", "greater than or equal to 1"]),
    (["learning.rule=sgd"], None, ["learning.rule", "'sgd'", "'bp', 'fa', 'dfa'"]),
    (["array.adc_bits=12"], None, ["array.adc_bits", "12", "at most 9", "0..384"]),
    (
        ["precision.weight_bits=7"],
        None,
        ["precision.weight_bits", "7", "multiple of array.cell_bits=2"],
    ),
    (["network.layers=[10, 10]"], None, ["network.layers", "[10, 10]", "first entry 64"]),
    (["array.device=unobtainium"], None, ["array.device", "unobtainium", "rram"]),
    (["tech.node=3nm"], None, ["tech.node", "3nm", "32nm"]),
    (["array.adc_model=table"], None, ["array.adc_table", "adc_model is 'table'"]),
    (["learning.lr=-1"], None, ["learning.lr", "-1", "greater than 0"]),
    (["chip.wgu_row_blocks=0"], None, ["chip.wgu_row_blocks", "0", "'all' or an integer"]),
    (["chip.wgu_row_blocks=half"], None, ["chip.wgu_row_blocks", "'half'", "at least 1"]),
    (["rows=3"], None, ["rows", "unknown field", "network"]),
    (["learning.rule"], None, ["--set", "section.field=value"]),
    ([], "!!python/object/apply:os.system ['echo pwned']\n", ["not valid"]),
    ([], "- just\n- a list\n", ["top level must be a mapping"]),
    ([], "network: {layers: [64, 10], colour: red}\n", ["network.colour", "unknown field"]),
]


@pytest.mark.parametrize(("sets", "text", "pieces"), MALFORMED)
def test_malformed_design_points_fail_clearly(
    tmp_path: Path, sets: list[str], text: str | None, pieces: list[str]
) -> None:
    source = "digits"
    if text is not None:
        f = tmp_path / "bad.yaml"
        f.write_text(text)
        source = str(f)
    with pytest.raises(config.DesignError) as info:
        config.load(source, sets)
    msg = str(info.value)
    for piece in pieces:
        assert piece in msg, (piece, msg)


@pytest.mark.parametrize(("sets", "text", "pieces"), MALFORMED[:10])
def test_cli_exit_status_2_without_traceback(
    tmp_path: Path, sets: list[str], text: str | None, pieces: list[str]
) -> None:
    args = ["config", "show"]
    for s in sets:
        args += ["--set", s]
    r = run_cli(*args)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert pieces[0] in r.stderr
    assert r.stdout == ""


def test_cli_train_bad_input_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "run"
    r = run_cli("train", "digits", "--set", "array.adc_bits=99", "--out", str(out))
    assert r.returncode == 2
    assert not out.exists()
    r = run_cli("train", "digits", "--data-dir", str(tmp_path / "missing"), "--out", str(out))
    assert r.returncode == 2 and "--data-dir" in r.stderr
    assert not out.exists()


def test_cli_config_show_and_schema() -> None:
    r = run_cli("config", "show", "mnist", "--set", "learning.rule=bp", "--format", "json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["learning"]["rule"] == "bp" and data["network"]["layers"] == [784, 256, 256, 10]
    r = run_cli("config", "schema")
    assert r.returncode == 0 and json.loads(r.stdout)["title"] == "DesignPoint"
