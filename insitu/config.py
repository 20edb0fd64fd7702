"""The design point: one typed, validated, immutable description of network, learning rule and chip.

Every tool of the framework reads a :class:`DesignPoint`. Files are YAML or TOML, loaded as data
with safe loaders; presets ship in ``insitu/presets``; ``--set a.b.c=value`` overrides apply on
top. Every failure is a :class:`DesignError` whose message names the field, the value and what is
allowed, so the CLI can print it and exit with status 2.
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from insitu.tech.loader import list_devices, list_nodes

PRESET_DIR = Path(__file__).resolve().parent / "presets"

# Input features and classes of the datasets the framework knows, so that a design point whose
# layer sizes cannot match its dataset fails at load time instead of mid-training.
DATASET_SHAPES: dict[str, tuple[int, int]] = {
    "digits": (64, 10),
    "procedural": (40, 10),
    "mnist": (784, 10),
    "fashion-mnist": (784, 10),
    "yinyang": (4, 3),
}

#: Learning rules of spiking networks (``network.activation: lif``); the others train ReLU MLPs.
SPIKING_RULES = ("bptt", "error-triggered", "eventprop")


class DesignError(ValueError):
    """A design point that cannot be used; the message is meant for the user as is."""


def _names(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.yaml"))


def _one_of(value: str, allowed: list[str], kind: str) -> str:
    if value not in allowed:
        raise ValueError(f"unknown {kind}; allowed: {', '.join(allowed)}")
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class Network(_Section):
    """Network topology and data."""

    layers: tuple[int, ...] = Field(
        default=(64, 128, 128, 10),
        description="Layer widths from input features to classes, e.g. [784, 256, 256, 10].",
    )
    activation: Literal["relu", "lif"] = Field(
        default="relu",
        description="relu: an MLP (the integer contract defines ReLU); lif: a spiking network "
        "of current-based LIF neurons (section snn, rules bptt, error-triggered, eventprop).",
    )
    dataset: Literal["digits", "procedural", "mnist", "fashion-mnist", "yinyang"] = "digits"
    data_dir: str | None = Field(
        default=None, description="Folder of IDX files (torchvision names) for mnist/fashion-mnist."
    )

    @field_validator("layers")
    @classmethod
    def _layers(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if len(v) < 2:
            raise ValueError("needs at least 2 entries (inputs and classes)")
        for n in v:
            if not 1 <= n <= 65536:
                raise ValueError(f"every width must be in 1..65536, got {n}")
        return v


class Learning(_Section):
    """Learning rule and optimizer."""

    rule: Literal["bp", "fa", "dfa", "bptt", "error-triggered", "eventprop"] = Field(
        default="dfa",
        description="bp, fa, dfa: MLP rules; bptt, error-triggered, eventprop: spiking rules "
        "(network.activation: lif).",
    )
    mode: Literal["float", "hardware"] = Field(
        default="float",
        description="float: float32 training; hardware: the integer CIM contract "
        "(docs/numerics.md).",
    )
    optimizer: Literal["sgd", "momentum", "adam"] = Field(
        default="adam", description="Float mode only; hardware mode applies integer SGD."
    )
    lr: float = Field(default=1e-3, gt=0, le=10, description="Float-mode learning rate.")
    hardware_lr: float = Field(
        default=0.125,
        gt=0,
        le=1,
        description="Hardware-mode integer SGD step, rounded to a power of two (docs/numerics.md).",
    )
    batch_size: int = Field(default=32, ge=1, le=65536)
    epochs: int = Field(default=20, ge=1, le=10000)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    weight_decay: float = Field(default=0.0, ge=0, le=1)
    error: Literal["margin", "squared"] = Field(
        default="margin",
        description="Hardware-mode output error: squared (o - T*onehot) or margin (the same, "
        "but zero where the correct output is already >= T or a wrong one already <= 0).",
    )
    lr_schedule: Literal["constant", "cosine"] = Field(
        default="cosine",
        description="Learning rate per epoch: cosine decays towards 0; hardware mode rounds the "
        "factor to a power of two (at least 1/16), an extra shift of the weight update.",
    )


class Precision(_Section):
    """Bit widths of every quantity on the chip (hardware mode)."""

    activation_bits: int = Field(default=8, ge=1, le=16, description="Inputs and activations.")
    weight_bits: int = Field(default=8, ge=2, le=16, description="Signed weights, sign included.")
    error_bits: int = Field(default=8, ge=3, le=16, description="Signed errors/deltas.")
    gradient_bits: int = Field(default=8, ge=2, le=16, description="Signed weight updates.")
    rounding: Literal["nearest", "stochastic"] = Field(
        default="stochastic",
        description="Rounding of weight updates: nearest (half up) or hash-dithered stochastic.",
    )


class Array(_Section):
    """Subarray geometry, ADC and synaptic device."""

    rows: int = Field(default=128, ge=1, le=4096)
    cols: int = Field(default=128, ge=1, le=4096)
    cell_bits: int = Field(default=2, ge=1, le=8)
    cols_per_adc: int = Field(default=8, ge=1, le=4096, description="Column mux ratio.")
    adc_bits: int = Field(default=5, ge=1, le=16)
    adc_model: Literal["ideal-uniform", "table"] = "ideal-uniform"
    adc_table: str | None = Field(
        default=None, description="JSON file of integer thresholds/levels when adc_model=table."
    )
    adc_range: Literal["calibrated", "full-scale"] = "calibrated"
    adc_percentile: float = Field(default=99.9, gt=0, le=100)
    weight_encoding: Literal["differential", "offset-binary"] = "differential"
    device: str = Field(default="rram", description="Device preset: a file in tech/devices/.")
    device_effects: bool = Field(
        default=False,
        description="Apply the device model (variation, noise, nonlinear update, faults); "
        "off = deterministic digital stand-in, bit-exact with the golden model.",
    )
    d2d_sigma: float | None = Field(default=None, ge=0, le=1, description="None: preset value.")
    c2c_sigma: float | None = Field(default=None, ge=0, le=1, description="None: preset value.")
    read_noise_sigma: float | None = Field(default=None, ge=0, le=1)
    nl_ltp: float | None = Field(default=None, ge=-20, le=20)
    nl_ltd: float | None = Field(default=None, ge=-20, le=20)
    stuck_at_rate: float | None = Field(default=None, ge=0, le=1)

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        return _one_of(v, list_devices(), "device preset")

    @property
    def max_partial_sum(self) -> int:
        """Largest integer a column can produce for one input bit plane and one weight slice."""
        return self.rows * (2**self.cell_bits - 1)

    @property
    def adc_full_scale_bits(self) -> int:
        return math.ceil(math.log2(self.max_partial_sum + 1))


class Snn(_Section):
    """Spiking networks (``network.activation: lif``): neurons, encoder and spiking rules.

    Times are in milliseconds. Neurons are current-based LIF:
    ``tau_mem dV/dt = -V + I``, ``tau_syn dI/dt = -I``, an input spike adds its weight to I, and
    V reaching ``threshold`` emits a spike and resets V.
    """

    tau_mem: float = Field(default=20.0, gt=0, le=1e4, description="Membrane time constant (ms).")
    tau_syn: float = Field(default=5.0, gt=0, le=1e4, description="Synaptic time constant (ms).")
    threshold: float = Field(default=1.0, gt=0, le=1e3, description="Firing threshold.")
    reset: Literal["zero", "subtract"] = Field(
        default="zero", description="After a spike V is set to 0 or lowered by the threshold."
    )
    refractory: float = Field(
        default=0.0, ge=0, le=1e3, description="Refractory period (ms): V held at 0 after a spike."
    )
    t_max: float = Field(
        default=30.0, gt=0, le=1e5, description="Simulated window per sample (ms)."
    )
    dt: float = Field(
        default=0.5, gt=0, le=100, description="Time step of the time-stepped rules (ms)."
    )
    encoder: Literal["latency", "rate"] = Field(
        default="latency",
        description="latency: one spike per feature at t_early + (1 - x) (t_late - t_early), "
        "none for x <= latency_cutoff; rate: Bernoulli spikes each step with rate x * max_rate.",
    )
    t_early: float = Field(default=0.0, ge=0, le=1e5, description="Latency code: time of x = 1.")
    t_late: float = Field(default=15.0, ge=0, le=1e5, description="Latency code: time of x = 0.")
    latency_cutoff: float = Field(
        default=-1.0, ge=-1, lt=1, description="Latency code: features <= this emit no spike."
    )
    max_rate: float = Field(
        default=0.2, gt=0, le=10, description="Rate code: spikes per ms at x = 1."
    )
    bias_spike: bool = Field(
        default=True, description="An extra input neuron spiking at t = 0 (a learnable bias)."
    )
    loss: Literal["auto", "first-spike", "membrane"] = Field(
        default="auto",
        description="first-spike: cross-entropy of -t_first/ttfs_tau (eventprop only); membrane: "
        "cross-entropy of the output neurons' maximum membrane over time (non-spiking readout). "
        "auto: first-spike for eventprop, membrane otherwise.",
    )
    ttfs_tau: float = Field(
        default=2.0, gt=0, le=1e4, description="First-spike loss: softmax temperature (ms)."
    )
    ttfs_reg: float = Field(
        default=0.002,
        ge=0,
        le=10,
        description="First-spike loss: weight of exp(t_label / ttfs_reg_tau) - 1 (early spikes).",
    )
    ttfs_reg_tau: float = Field(default=15.0, gt=0, le=1e4)
    silent_bump: float = Field(
        default=0.05,
        ge=0,
        le=10,
        description="EventProp: after each batch, every input weight of an output neuron silent "
        "for a sample of its own label, and of a hidden neuron silent for the whole batch, grows "
        "by silent_bump * threshold / (PSP peak * fan_in) (drive in thresholds, as init_mean): a "
        "silent neuron has no spike time, hence no first-spike gradient (cf. the weight bumping of "
        "Göltz et al. 2021). 0: off.",
    )
    observations: int = Field(
        default=30,
        ge=1,
        le=10000,
        description="EventProp membrane loss: membrane samples, evenly spaced in (0, t_max].",
    )
    init_mean: float | tuple[float, ...] = Field(
        default=1.0,
        description="Weight init: mean drive of a layer, in thresholds, if all its inputs "
        "spiked together (one value, or one per weight layer).",
    )
    init_std: float | tuple[float, ...] = Field(
        default=1.0,
        description="Weight init: spread of that drive, in thresholds (one value, or one per "
        "weight layer).",
    )
    surrogate_slope: float = Field(
        default=5.0,
        gt=0,
        le=1e3,
        description="BPTT surrogate 1/(1 + slope |V - threshold| / threshold)^2.",
    )
    max_spikes: int = Field(
        default=16, ge=1, le=1000, description="EventProp: spikes kept per neuron and sample."
    )
    error_trigger: bool = Field(
        default=True,
        description="error-triggered rule: quantize errors into events (false: the dense "
        "three-factor rule, an update wherever error x window x trace is nonzero).",
    )
    error_threshold: float = Field(
        default=0.05, gt=0, le=1e3, description="Initial error threshold (one per layer)."
    )
    target_event_rate: float | None = Field(
        default=0.005,
        gt=0,
        le=1,
        description="Error events per neuron and time step the threshold adapts towards "
        "(None: fixed threshold).",
    )
    gate_window: float = Field(
        default=0.5,
        gt=0,
        le=10,
        description="Three-factor gate: updates only where |V - threshold| < gate_window * "
        "threshold (the surrogate derivative's window).",
    )
    trace_threshold: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="Presynaptic trace below this (fraction of its peak) gates the update off.",
    )
    update_levels: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Pulses per event and synapse: 1 = ternary (-1, 0, +1); n: the trace "
        "rounded to 0..n pulses.",
    )
    weight_range: float = Field(
        default=4.0,
        gt=0,
        le=1e4,
        description="Hardware mode: real value of the largest weight on the crossbar.",
    )


def _check_spiking(dp: DesignPoint) -> None:
    """Cross-field checks between network.activation, learning.rule and snn."""
    n, lr, s = dp.network, dp.learning, dp.snn
    spiking_rule = lr.rule in SPIKING_RULES
    if n.activation == "lif" and not spiking_rule:
        raise _Inconsistent(
            "learning.rule",
            lr.rule,
            f"one of {', '.join(SPIKING_RULES)} for a spiking network (network.activation: "
            "lif); bp, fa and dfa train ReLU MLPs",
        )
    if spiking_rule and n.activation != "lif":
        raise _Inconsistent(
            "network.activation",
            n.activation,
            f"'lif' for the spiking rule learning.rule={lr.rule!r} (bp, fa or dfa train ReLU MLPs)",
        )
    if not spiking_rule:
        return
    for name in ("init_mean", "init_std"):
        v = getattr(s, name)
        if isinstance(v, tuple) and len(v) != len(n.layers) - 1:
            raise _Inconsistent(
                f"snn.{name}", list(v), f"one number or {len(n.layers) - 1} (one per weight layer)"
            )
    if s.tau_mem == s.tau_syn:
        raise _Inconsistent("snn.tau_syn", s.tau_syn, f"different from snn.tau_mem={s.tau_mem}")
    if s.encoder == "latency" and s.t_late <= s.t_early:
        raise _Inconsistent("snn.t_late", s.t_late, f"greater than snn.t_early={s.t_early}")
    if s.encoder == "latency" and s.t_late > s.t_max:
        raise _Inconsistent("snn.t_late", s.t_late, f"at most snn.t_max={s.t_max}")
    if s.dt > s.t_max / 4:
        raise _Inconsistent("snn.dt", s.dt, f"at most snn.t_max / 4 = {s.t_max / 4}")
    if s.loss == "first-spike" and lr.rule != "eventprop":
        raise _Inconsistent(
            "snn.loss",
            s.loss,
            f"'membrane' or 'auto' for learning.rule={lr.rule!r} "
            "(the first-spike loss needs exact spike times: learning.rule=eventprop)",
        )
    if lr.rule == "eventprop":
        if s.refractory > 0:
            raise _Inconsistent("snn.refractory", s.refractory, "0 with learning.rule=eventprop")
        if s.reset != "zero":
            raise _Inconsistent("snn.reset", s.reset, "'zero' with learning.rule=eventprop")
        if s.encoder != "latency":
            raise _Inconsistent("snn.encoder", s.encoder, "'latency' with learning.rule=eventprop")


class Chip(_Section):
    """Chip organisation (NeuroSim-style hierarchy)."""

    pes_per_tile: int = Field(default=4, ge=1, le=1024)
    subarrays_per_pe: int = Field(default=4, ge=1, le=1024)
    tiles: int | Literal["auto"] = "auto"
    htree: bool = True
    buffer_kib: int = Field(default=64, ge=1, le=1 << 20)
    clock_mhz: float = Field(default=200.0, gt=0, le=10000)
    dram: Literal["ddr4", "lpddr4", "hbm2", "none"] = "ddr4"
    feedback_storage: Literal["lfsr", "stored"] = Field(
        default="lfsr", description="Where the DFA/FA feedback matrices live."
    )
    lfsr_seed: int = Field(default=0xACE1, ge=1, le=2**32 - 1)
    wgu: Literal["auto", "per-layer", "shared"] = Field(
        default="auto",
        description="Weight-gradient units: one per layer (auto for DFA, all layers update at "
        "once) or one shared by all layers (auto for BP and FA).",
    )
    feedback_lanes: int = Field(
        default=16, ge=1, le=256, description="LFSR feedback bits consumed per cycle per layer."
    )
    wgu_row_blocks: int | Literal["all"] = Field(
        default="all",
        description="Row blocks (subarrays stacked along a layer's inputs) a weight-gradient "
        "unit updates at once: all (one pass per weight row) or fewer lanes taking turns.",
    )

    @field_validator("wgu_row_blocks", mode="before")
    @classmethod
    def _wgu_row_blocks(cls, v: Any) -> Any:
        # one message for both spellings (pydantic would report each member of the union)
        if v == "all" or (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
            return v
        raise ValueError("must be 'all' or an integer of at least 1")


class Tech(_Section):
    """Technology node and operating point."""

    node: str = Field(default="32nm", description="A file in tech/nodes/.")
    vdd: float | None = Field(default=None, gt=0, le=5, description="None: the node's nominal.")
    temperature_c: float = Field(default=27.0, ge=-55, le=150)
    corner: Literal["tt", "ff", "ss", "fs", "sf"] = "tt"

    @field_validator("node")
    @classmethod
    def _node(cls, v: str) -> str:
        return _one_of(v, list_nodes(), "technology node")


class DesignPoint(_Section):
    """One design point: network + learning rule + chip. Every field has a default."""

    name: str = "design"
    network: Network = Network()
    learning: Learning = Learning()
    precision: Precision = Precision()
    array: Array = Array()
    chip: Chip = Chip()
    tech: Tech = Tech()
    snn: Snn = Snn()

    @model_validator(mode="after")
    def _consistent(self) -> DesignPoint:
        a, p, n = self.array, self.precision, self.network
        if p.weight_bits % a.cell_bits:
            raise _Inconsistent(
                "precision.weight_bits",
                p.weight_bits,
                f"a multiple of array.cell_bits={a.cell_bits} (weights are cut into whole cells)",
            )
        if a.adc_bits > a.adc_full_scale_bits:
            raise _Inconsistent(
                "array.adc_bits",
                a.adc_bits,
                f"at most {a.adc_full_scale_bits}: a {a.rows}-row column of {a.cell_bits}-bit "
                f"cells produces partial sums 0..{a.max_partial_sum}",
            )
        if a.adc_model == "table" and not a.adc_table:
            raise _Inconsistent("array.adc_table", None, "a file path when adc_model is 'table'")
        if a.cols_per_adc > a.cols:
            raise _Inconsistent("array.cols_per_adc", a.cols_per_adc, f"at most cols={a.cols}")
        feat, classes = DATASET_SHAPES[n.dataset]
        if n.layers[0] != feat or n.layers[-1] != classes:
            raise _Inconsistent(
                "network.layers",
                list(n.layers),
                f"first entry {feat} (features) and last entry {classes} (classes) "
                f"for dataset '{n.dataset}'",
            )
        _check_spiking(self)
        return self

    @property
    def num_slices(self) -> int:
        """Weight slices per weight (cells per weight per array polarity)."""
        return self.precision.weight_bits // self.array.cell_bits

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class _Inconsistent(ValueError):
    def __init__(self, field: str, value: object, allowed: str) -> None:
        super().__init__(f"{field} = {value!r} is not allowed: must be {allowed}")
        self.field = field


def list_presets() -> list[str]:
    return _names(PRESET_DIR)


def _format_validation(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"])
        ctx_err = e.get("ctx", {}).get("error")
        if isinstance(ctx_err, _Inconsistent):
            lines.append(str(ctx_err))
            continue
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            section = _section_for(e["loc"][:-1])
            allowed = ", ".join(section.model_fields) if section else "see `insitu config schema`"
            lines.append(f"{loc}: unknown field; allowed fields here: {allowed}")
        else:
            lines.append(f"{loc} = {e['input']!r}: {msg}")
    return "invalid design point:\n  " + "\n  ".join(lines)


def _section_for(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] = DesignPoint
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None or not (
            isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
        ):
            return None
        model = field.annotation
    return model


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DesignError(f"cannot read design point file {path}: {exc.strerror}") from None
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml", ".json"):
            data = yaml.safe_load(text)
        else:
            raise DesignError(
                f"design point file {path}: suffix must be .yaml, .yml, .toml or .json"
            )
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        raise DesignError(f"design point file {path} is not valid: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise DesignError(f"design point file {path}: top level must be a mapping of sections")
    return data


def resolve_source(source: str | Path | None) -> dict[str, Any]:
    """Raw data of a preset name or a file path (None: the default preset, digits)."""
    if source is None:
        source = "digits"
    path = Path(source)
    if str(source) in list_presets() and not path.exists():
        return _read_file(PRESET_DIR / f"{source}.yaml")
    if path.exists():
        return _read_file(path)
    raise DesignError(
        f"design point {str(source)!r} is neither a preset ({', '.join(list_presets())}) "
        "nor an existing file"
    )


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``a.b.c=value``; the value is read as a YAML scalar or list (data only)."""
    if "=" not in text:
        raise DesignError(f"--set {text!r}: expected the form section.field=value")
    key, _, raw = text.partition("=")
    path = [k for k in key.strip().split(".") if k]
    if not path:
        raise DesignError(f"--set {text!r}: empty field name")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return path, value


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    out = json.loads(json.dumps(data))  # deep copy of plain data
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise DesignError(f"--set {text!r}: {part} is not a section")
            node = child
        node[path[-1]] = value
    return out


def validate(data: Mapping[str, Any]) -> DesignPoint:
    try:
        return DesignPoint.model_validate(dict(data))
    except ValidationError as exc:
        raise DesignError(_format_validation(exc)) from None


def load(source: str | Path | None = None, overrides: Iterable[str] = ()) -> DesignPoint:
    """Load a preset or file, apply ``--set`` overrides, validate."""
    return validate(apply_overrides(resolve_source(source), overrides))


def schema() -> dict[str, Any]:
    return DesignPoint.model_json_schema()
