"""Datasets: this module owns every dataset the project trains and evaluates on.

Four datasets are available by name (see :data:`DATASETS`):

``digits``
    scikit-learn's embedded 8x8 handwritten digits (1797 images, 64 features),
    split 80/20 train/test, stratified, with ``seed``.
``procedural``
    a synthetic 1-D dataset in the spirit of MNIST-1D, generated here in numpy
    from ``seed``: ten 12-sample class templates placed at a random offset in a
    40-sample signal, scaled, sheared, time-stretched and corrupted by
    correlated and white noise (40 features, 4000 train / 1000 test).
``mnist`` / ``fashion-mnist``
    IDX files under torchvision's file names (plain or ``.gz``) read from a
    folder; MNIST falls back to the shared copy found by
    :func:`find_shared_mnist`.

Every dataset comes back as a :class:`Dataset` with float32 features in
[0, 1] of shape (N, F) and int64 labels 0..C-1. :func:`batches` yields
minibatches whose order depends only on (seed, epoch), so a resumed run sees
the same order as an uninterrupted one.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "DATASETS",
    "Dataset",
    "DatasetError",
    "batches",
    "find_shared_mnist",
    "load_dataset",
    "read_idx",
]

DATASETS: tuple[str, ...] = ("digits", "procedural", "mnist", "fashion-mnist")

#: Environment variable naming a folder of MNIST IDX files (checked first).
MNIST_ENV_VAR = "INSITU_MNIST_DIR"

IDX_IMAGES_MAGIC = 0x00000803
IDX_LABELS_MAGIC = 0x00000801

_IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_TORCHVISION_SUBDIRS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}

# Parsed IDX datasets keyed by (dataset name, resolved folder); arrays are read-only.
_IDX_CACHE: dict[tuple[str, Path], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}


class DatasetError(ValueError):
    """A dataset could not be found, read or understood (message is user-facing)."""


@dataclass(frozen=True)
class Dataset:
    """A train/test split: float32 features in [0, 1], int64 labels 0..num_classes-1."""

    name: str
    x_train: np.ndarray  # float32, (N, F)
    y_train: np.ndarray  # int64, (N,)
    x_test: np.ndarray  # float32, (M, F)
    y_test: np.ndarray  # int64, (M,)
    num_classes: int

    @property
    def num_features(self) -> int:
        return int(self.x_train.shape[1])


# --------------------------------------------------------------------------- public API


def load_dataset(
    name: str,
    *,
    data_dir: str | Path | None = None,
    seed: int = 0,
    limit_train: int | None = None,
    limit_test: int | None = None,
) -> Dataset:
    """Load dataset ``name`` (one of :data:`DATASETS`).

    ``seed`` drives the train/test split of ``digits`` and the generator of
    ``procedural``; MNIST-style datasets have a fixed split. ``data_dir`` is
    the folder of IDX files for ``mnist``/``fashion-mnist``. ``limit_train``
    and ``limit_test`` keep only the first N samples of each split.
    """
    key = name.strip().lower() if isinstance(name, str) else name
    if key == "digits":
        ds = _load_digits(seed)
    elif key == "procedural":
        ds = _load_procedural(seed)
    elif key in ("mnist", "fashion-mnist"):
        ds = _load_idx_dataset(key, data_dir)
    else:
        raise DatasetError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    return _limit(ds, limit_train, limit_test)


def find_shared_mnist() -> Path | None:
    """Return the first existing MNIST folder: ``$INSITU_MNIST_DIR``, then
    ``<repo>/../shared/data/mnist``; ``None`` if neither exists."""
    for cand in _mnist_candidates():
        if cand.is_dir():
            return cand
    return None


def batches(
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    *,
    seed: int,
    epoch: int,
    shuffle: bool = True,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(x, y)`` minibatches covering every sample once; the last may be partial.

    The order comes from ``np.random.default_rng([seed, epoch])`` only, so
    epoch ``k`` of a resumed run matches epoch ``k`` of an uninterrupted one.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    n = len(x)
    if len(y) != n:
        raise ValueError(f"x and y lengths differ: {n} vs {len(y)}")
    order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        yield x[idx], y[idx]


def read_idx(path: str | Path, expected_magic: int) -> np.ndarray:
    """Read one IDX file of unsigned bytes (plain or ``.gz``) into a uint8 array.

    Raises :class:`DatasetError` naming the file on a bad magic number, a
    truncated file or an unreadable/corrupt gzip stream.
    """
    path = Path(path)
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                raw = fh.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError) as exc:
        raise DatasetError(f"cannot read IDX file {path}: {exc}") from exc

    if len(raw) < 4:
        raise DatasetError(f"IDX file {path} is truncated: {len(raw)} bytes, no header")
    magic = int.from_bytes(raw[:4], "big")
    if magic != expected_magic:
        raise DatasetError(
            f"IDX file {path} has bad magic number 0x{magic:08x} "
            f"(expected 0x{expected_magic:08x}); is it the right file?"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"IDX file {path} is truncated: header needs {header} bytes")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    size = int(np.prod(dims, dtype=np.int64))
    if len(raw) - header < size:
        raise DatasetError(
            f"IDX file {path} is truncated: dims {dims} need {size} data bytes, "
            f"found {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=np.uint8, count=size, offset=header).reshape(dims)


# --------------------------------------------------------------------------- helpers


def _limit(ds: Dataset, limit_train: int | None, limit_test: int | None) -> Dataset:
    for label, lim in (("limit_train", limit_train), ("limit_test", limit_test)):
        if lim is not None and lim < 0:
            raise DatasetError(f"{label} must be >= 0, got {lim}")
    if limit_train is None and limit_test is None:
        return ds
    return Dataset(
        name=ds.name,
        x_train=ds.x_train[:limit_train],
        y_train=ds.y_train[:limit_train],
        x_test=ds.x_test[:limit_test],
        y_test=ds.y_test[:limit_test],
        num_classes=ds.num_classes,
    )


def _repo_root() -> Path:
    # repo = parent of the folder holding this file (algo/), symlinks resolved.
    return Path(__file__).resolve().parent.parent


def _mnist_candidates() -> list[Path]:
    cands: list[Path] = []
    env = os.environ.get(MNIST_ENV_VAR)
    if env:
        cands.append(Path(env).expanduser())
    cands.append((_repo_root().parent / "shared" / "data" / "mnist").resolve())
    return cands


def _load_digits(seed: int) -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = (np.asarray(bunch.data, dtype=np.float32) / 16.0).astype(np.float32)
    y = np.asarray(bunch.target, dtype=np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=0.2, random_state=seed, stratify=y, shuffle=True
    )
    return Dataset(
        name="digits",
        x_train=np.ascontiguousarray(x_tr, dtype=np.float32),
        y_train=np.ascontiguousarray(y_tr, dtype=np.int64),
        x_test=np.ascontiguousarray(x_te, dtype=np.float32),
        y_test=np.ascontiguousarray(y_te, dtype=np.int64),
        num_classes=10,
    )


# --------------------------------------------------------------------------- IDX datasets


def _find_idx_file(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        p = folder / name
        if p.is_file():
            return p
    return None


def _idx_folder(name: str, root: Path) -> Path | None:
    """The folder under ``root`` holding all four IDX files (flat or torchvision layout)."""
    for folder in (root, root / _TORCHVISION_SUBDIRS[name] / "raw"):
        if all(_find_idx_file(folder, stem) for stem in _IDX_FILES.values()):
            return folder
    return None


def _load_idx_dataset(name: str, data_dir: str | Path | None) -> Dataset:
    if data_dir is not None:
        roots = [Path(data_dir).expanduser()]
    elif name == "mnist":
        roots = _mnist_candidates()
    else:
        roots = []
    if not roots:
        raise DatasetError(
            f"dataset {name!r} needs --data-dir pointing to a folder of IDX files with "
            f"torchvision's names ({', '.join(_IDX_FILES.values())}, plain or .gz)"
        )
    folder: Path | None = None
    for root in roots:
        folder = _idx_folder(name, root)
        if folder is not None:
            break
    if folder is None:
        sub = _TORCHVISION_SUBDIRS[name]
        searched = "; ".join(f"{r} (and {r / sub / 'raw'})" for r in roots)
        raise DatasetError(
            f"dataset {name!r}: no IDX files found; searched {searched}. "
            f"--data-dir must point to a folder of IDX files with torchvision's names "
            f"({', '.join(_IDX_FILES.values())}, plain or .gz)"
        )

    key = (name, folder.resolve())
    if key not in _IDX_CACHE:
        _IDX_CACHE[key] = _parse_idx_folder(folder)
    x_tr, y_tr, x_te, y_te = _IDX_CACHE[key]
    return Dataset(name=name, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te, num_classes=10)


def _parse_idx_folder(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    out: list[np.ndarray] = []
    for split in ("train", "test"):
        img_path = _find_idx_file(folder, _IDX_FILES[f"{split}_images"])
        lab_path = _find_idx_file(folder, _IDX_FILES[f"{split}_labels"])
        assert img_path is not None and lab_path is not None
        images = read_idx(img_path, IDX_IMAGES_MAGIC)
        labels = read_idx(lab_path, IDX_LABELS_MAGIC)
        if images.shape[0] != labels.shape[0]:
            raise DatasetError(
                f"IDX count mismatch: {img_path} has {images.shape[0]} images but "
                f"{lab_path} has {labels.shape[0]} labels"
            )
        if labels.size and int(labels.max()) > 9:
            raise DatasetError(f"IDX file {lab_path} has label {int(labels.max())} > 9")
        x = images.reshape(images.shape[0], -1).astype(np.float32)
        x *= np.float32(1.0 / 255.0)
        y = labels.astype(np.int64)
        x.flags.writeable = False
        y.flags.writeable = False
        out += [x, y]
    return out[0], out[1], out[2], out[3]


# --------------------------------------------------------------------------- procedural

PROCEDURAL_LENGTH = 40  # features per sample
PROCEDURAL_TEMPLATE_LENGTH = 12
PROCEDURAL_TRAIN = 4000
PROCEDURAL_TEST = 1000
# Generator knobs (tuned so a linear model is clearly below a small MLP).
_SCALE_RANGE = (0.7, 1.3)
_SHEAR_STD = 0.3  # std of the linear trend, in signal units across the whole window
_STRETCH_RANGE = (0.85, 1.15)
_CORR_NOISE_STD = 0.1
_CORR_NOISE_SIGMA = 2.0  # Gaussian filter width, in samples
_IID_NOISE_STD = 0.05
# Fixed global normalization: signal value -> [0, 1] (then clipped).
_GLOBAL_LO, _GLOBAL_HI = -1.5, 1.5


def _procedural_templates() -> np.ndarray:
    """Ten class templates (10, 12), each defined by a formula, amplitude within [-1, 1]."""
    u = np.linspace(0.0, 1.0, PROCEDURAL_TEMPLATE_LENGTH)
    bump = np.exp(-(((u - 0.5) / 0.18) ** 2))
    templates = [
        bump,  # 0 smooth bump
        -bump,  # 1 smooth dip
        np.where(u < 0.5, -0.7, 0.7),  # 2 step up
        np.where(u < 0.5, 0.7, -0.7),  # 3 step down
        2.0 * ((2.0 * u) % 1.0) - 1.0,  # 4 two saw teeth
        np.sin(2.0 * np.pi * u),  # 5 one sine period
        np.sin(4.0 * np.pi * u),  # 6 two sine periods
        1.0 - 2.0 * np.abs(2.0 * u - 1.0),  # 7 triangle (tent)
        np.exp(-(((u - 0.2) / 0.1) ** 2)) + np.exp(-(((u - 0.8) / 0.1) ** 2)) - 0.3,  # 8 twin peaks
        np.where(np.abs(u - 0.5) < 0.2, 1.0, -0.5),  # 9 square pulse
    ]
    return np.stack(templates).astype(np.float64)


def _gaussian_filter_matrix(n: int, sigma: float) -> np.ndarray:
    """(n, n) row-normalized Gaussian smoothing matrix (edge-renormalized)."""
    i = np.arange(n)
    k = np.exp(-0.5 * ((i[:, None] - i[None, :]) / sigma) ** 2)
    return k / k.sum(axis=1, keepdims=True)


def generate_procedural(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Generate ``n`` procedural samples: float32 (n, 40) in [0, 1], int64 labels (n,)."""
    rng = np.random.default_rng(seed)
    length = PROCEDURAL_LENGTH
    tlen = PROCEDURAL_TEMPLATE_LENGTH
    templates = _procedural_templates()
    y = rng.integers(0, len(templates), size=n).astype(np.int64)

    # Place each (scaled) template at a random offset in a zero canvas.
    offsets = rng.integers(0, length - tlen + 1, size=n)
    scale = rng.uniform(*_SCALE_RANGE, size=n)
    canvas = np.zeros((n, length))
    cols = offsets[:, None] + np.arange(tlen)[None, :]
    canvas[np.arange(n)[:, None], cols] = templates[y] * scale[:, None]

    # Linear shear / trend across the window.
    t = np.linspace(-0.5, 0.5, length)
    canvas += rng.normal(0.0, _SHEAR_STD, size=(n, 1)) * t[None, :]

    # Correlated noise: Gaussian-filtered white noise, rescaled to unit std.
    smoother = _gaussian_filter_matrix(length, _CORR_NOISE_SIGMA)
    corr = rng.normal(size=(n, length)) @ smoother.T
    corr /= corr.std()
    canvas += _CORR_NOISE_STD * corr

    # Random time stretch around the centre, resampled (linear interpolation) to 40 points.
    stretch = rng.uniform(*_STRETCH_RANGE, size=n)
    grid = np.arange(length, dtype=np.float64)
    centre = (length - 1) / 2.0
    src = centre + (grid[None, :] - centre) / stretch[:, None]  # (n, length) source positions
    src = np.clip(src, 0.0, length - 1.0)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, length - 1)
    frac = src - lo
    rows = np.arange(n)[:, None]
    signal = canvas[rows, lo] * (1.0 - frac) + canvas[rows, hi] * frac

    # Independent per-feature noise.
    signal += rng.normal(0.0, _IID_NOISE_STD, size=signal.shape)

    # Fixed global min-max normalization (keeps amplitude information), clipped.
    x = (signal - _GLOBAL_LO) / (_GLOBAL_HI - _GLOBAL_LO)
    return np.clip(x, 0.0, 1.0).astype(np.float32), y


def _load_procedural(seed: int) -> Dataset:
    n_train, n_test = PROCEDURAL_TRAIN, PROCEDURAL_TEST
    x, y = generate_procedural(n_train + n_test, seed)
    return Dataset(
        name="procedural",
        x_train=x[:n_train],
        y_train=y[:n_train],
        x_test=x[n_train:],
        y_test=y[n_train:],
        num_classes=10,
    )
