"""The PDK registry: which ngspice model libraries a characterization uses, and how.

A PDK is a folder of ngspice model libraries plus a small description (``pdk.yaml``, or a file
in ``tech/pdks/`` for the known ones): supply, corner -> library section, NMOS/PMOS model names
and minimum sizes, the parameters to set before the library is read, and the Pelgrom
coefficient used for Monte Carlo mismatch. Known PDKs: ``generic180`` (the project's own cards in
``tech/models``) and ``gf180mcu`` (found under ``PDK_ROOT`` in volare's layout, or in
``../shared/pdk/gf180mcu``). Any folder holding a ``pdk.yaml`` is a PDK too.
"""

from __future__ import annotations

import hashlib
import os
from functools import cached_property
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from insitu.tech import loader as tech_loader

from .spice import Netlist, NetlistError, name

PDK_DIR = Path(tech_loader.__file__).resolve().parent / "pdks"
PROJECT_ROOT = Path(tech_loader.__file__).resolve().parent.parent
CORNERS = ("tt", "ff", "ss", "fs", "sf")


class PdkError(ValueError):
    """A PDK that cannot be found or used; the message says where it was looked for."""


class Device(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    model: str
    kind: Literal["M", "X"] = "M"
    l_min_um: float = Field(gt=0, le=100)
    w_min_um: float = Field(gt=0, le=1000)

    @field_validator("model")
    @classmethod
    def _model(cls, v: str) -> str:
        try:
            return name(v, "model")
        except NetlistError as exc:
            raise ValueError(str(exc)) from None


class PdkSpec(BaseModel):
    """A PDK description (``pdk.yaml``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    description: str = ""
    node: str = "180nm"
    vdd: float = Field(gt=0, le=10)
    library: str
    include: str | None = None
    search: tuple[str, ...] = ()
    corners: dict[str, str]
    params: dict[str, float] = {}
    nmos: Device
    pmos: Device
    avt_mv_um: float = Field(gt=0, le=100)
    avt_source: str

    @field_validator("corners")
    @classmethod
    def _corners(cls, v: dict[str, str]) -> dict[str, str]:
        for corner, section in v.items():
            name(corner, "corner", CORNERS)
            try:
                name(section, "lib section")
            except NetlistError as exc:
                raise ValueError(str(exc)) from None
        if "tt" not in v:
            raise ValueError("must name a 'tt' corner")
        return v

    @field_validator("params")
    @classmethod
    def _params(cls, v: dict[str, float]) -> dict[str, float]:
        for key in v:
            try:
                name(key, "param")
            except NetlistError as exc:
                raise ValueError(str(exc)) from None
        return v


class Pdk:
    """A located PDK: its description and the folder its libraries are in."""

    def __init__(self, spec: PdkSpec, folder: Path) -> None:
        self.spec = spec
        self.folder = folder
        self.library = (folder / spec.library).resolve()
        self.include_file = (folder / spec.include).resolve() if spec.include else None
        for f in (self.library, self.include_file):
            if f is not None and not f.is_file():
                raise PdkError(f"PDK {spec.name}: model file {f} does not exist")

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def corners(self) -> list[str]:
        return list(self.spec.corners)

    def check_corner(self, corner: str) -> str:
        return name(corner, "corner", self.corners)

    @cached_property
    def models_hash(self) -> str:
        """sha256 of the model files (part of every cache key)."""
        h = hashlib.sha256()
        for f in (self.include_file, self.library):
            if f is not None:
                h.update(f.read_bytes())
        for sub in sorted(self.library.parent.glob("*")):
            # Libraries that pull in sibling files change when those do.
            if sub.is_file() and sub.suffix in (".lib", ".ngspice", ".spice", ".mod"):
                h.update(sub.name.encode())
                h.update(hashlib.sha256(sub.read_bytes()).digest())
        return h.hexdigest()

    def add_models(self, net: Netlist, corner: str) -> None:
        """Model include/params/library section for ``corner`` into a netlist."""
        self.check_corner(corner)
        if self.include_file is not None:
            net.include(self.include_file)
        for key, value in self.spec.params.items():
            net.param(key, value)
        net.lib(self.library, self.spec.corners[corner])

    def sigma_vth(self, w_um: float, l_um: float) -> float:
        """Per-device threshold-voltage mismatch sigma (V): A_VT / sqrt(2 W L) (Pelgrom)."""
        return self.spec.avt_mv_um * 1e-3 / (2.0 * w_um * l_um) ** 0.5


def _read_spec(file: Path) -> PdkSpec:
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
        return PdkSpec.model_validate(data)
    except (OSError, yaml.YAMLError) as exc:
        raise PdkError(f"PDK description {file}: {exc}") from None
    except ValidationError as exc:
        fields = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise PdkError(f"PDK description {file}: {fields}") from None


def list_pdks() -> list[str]:
    return sorted(p.stem for p in PDK_DIR.glob("*.yaml"))


def _candidates(spec: PdkSpec, base: Path) -> list[Path]:
    out = []
    for entry in spec.search or (str(Path(spec.library).parent),):
        if "$PDK_ROOT" in entry:
            root = os.environ.get("PDK_ROOT")
            if not root:
                continue
            entry = entry.replace("$PDK_ROOT", root)
        entry = entry.replace("$PROJECT", str(PROJECT_ROOT))
        p = Path(entry)
        out.append(p if p.is_absolute() else base / p)
    return out


def load_pdk(which: str | Path = "generic180") -> Pdk:
    """A known PDK by name, or a folder holding ``pdk.yaml``."""
    p = Path(which)
    if str(which) in list_pdks() and not p.exists():
        spec = _read_spec(PDK_DIR / f"{which}.yaml")
        if not spec.search:
            return Pdk(spec, PDK_DIR)
        tried = []
        for folder in _candidates(spec, PDK_DIR):
            tried.append(str(folder))
            if (folder / spec.library).is_file():
                return Pdk(spec, folder.resolve())
        raise PdkError(
            f"PDK {which!r} not found; looked in: {', '.join(tried) or '(none)'} "
            "(set PDK_ROOT to a volare PDK root, e.g. `volare enable --pdk gf180mcu`)"
        )
    if p.is_dir() and (p / "pdk.yaml").is_file():
        return Pdk(_read_spec(p / "pdk.yaml"), p.resolve())
    raise PdkError(
        f"--pdk {str(which)!r} is not allowed: must be one of {', '.join(list_pdks())} "
        "or a folder holding pdk.yaml"
    )


def find_pdk(which: str) -> Pdk | None:
    """``load_pdk`` or None when that PDK is not installed here."""
    try:
        return load_pdk(which)
    except PdkError:
        return None
