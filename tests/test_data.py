"""Tests for insitu.algo.data: datasets, IDX parsing and minibatching."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from insitu.algo import data
from insitu.algo.data import (
    DATASETS,
    Dataset,
    DatasetError,
    batches,
    find_shared_mnist,
    load_dataset,
    read_idx,
)

# --------------------------------------------------------------------------- helpers


def _check_dataset(ds: Dataset, n_features: int) -> None:
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        assert x.dtype == np.float32
        assert y.dtype == np.int64
        assert x.ndim == 2 and x.shape[1] == n_features
        assert y.shape == (x.shape[0],)
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
        assert int(y.min()) >= 0 and int(y.max()) < ds.num_classes
    assert ds.num_features == n_features


def _idx_bytes(arr: np.ndarray, magic: int) -> bytes:
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def _write(path: Path, payload: bytes) -> Path:
    if path.name.endswith(".gz"):
        with gzip.open(path, "wb") as fh:
            fh.write(payload)
    else:
        path.write_bytes(payload)
    return path


def _write_idx_set(
    folder: Path, n_train: int = 6, n_test: int = 4, gz: bool = False, seed: int = 0
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, arr in arrays.items():
        magic = data.IDX_IMAGES_MAGIC if arr.ndim == 3 else data.IDX_LABELS_MAGIC
        _write(folder / (name + (".gz" if gz else "")), _idx_bytes(arr, magic))
    return arrays


# --------------------------------------------------------------------------- digits


def test_digits_shapes_dtypes_ranges() -> None:
    ds = load_dataset("digits")
    _check_dataset(ds, 64)
    assert ds.name == "digits" and ds.num_classes == 10
    assert len(ds.x_train) + len(ds.x_test) == 1797
    assert len(ds.x_test) == 360  # ceil(0.2 * 1797)
    assert float(ds.x_train.max()) == 1.0  # /16 scaling reaches the top


def test_digits_split_is_stratified_and_seeded() -> None:
    ds = load_dataset("digits", seed=0)
    tr = np.bincount(ds.y_train, minlength=10) / len(ds.y_train)
    te = np.bincount(ds.y_test, minlength=10) / len(ds.y_test)
    np.testing.assert_allclose(tr, te, atol=0.01)
    again = load_dataset("digits", seed=0)
    np.testing.assert_array_equal(ds.x_train, again.x_train)
    other = load_dataset("digits", seed=1)
    assert not np.array_equal(ds.y_train, other.y_train)


# --------------------------------------------------------------------------- procedural


def test_procedural_shapes_dtypes_ranges() -> None:
    ds = load_dataset("procedural")
    _check_dataset(ds, 40)
    assert (len(ds.x_train), len(ds.x_test)) == (4000, 1000)
    assert ds.num_classes == 10
    assert set(np.unique(ds.y_train)) == set(range(10))
    # The fixed global scale uses most of [0, 1] without heavy clipping.
    assert float(ds.x_train.min()) < 0.1 and float(ds.x_train.max()) > 0.9
    assert float(np.mean((ds.x_train == 0.0) | (ds.x_train == 1.0))) < 0.01


def test_procedural_deterministic_and_seed_dependent() -> None:
    a = load_dataset("procedural", seed=3)
    b = load_dataset("procedural", seed=3)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    c = load_dataset("procedural", seed=4)
    assert not np.array_equal(a.x_train, c.x_train)


def test_procedural_amplitude_survives_normalization() -> None:
    # Per-sample normalization would pin every sample's max at 1; the global scale must not.
    x = load_dataset("procedural").x_train
    assert float(np.std(x.max(axis=1))) > 0.02


# --------------------------------------------------------------------------- limits / names


def test_limits_take_first_n() -> None:
    full = load_dataset("procedural", seed=1)
    small = load_dataset("procedural", seed=1, limit_train=50, limit_test=7)
    assert small.x_train.shape == (50, 40) and small.x_test.shape == (7, 40)
    np.testing.assert_array_equal(small.x_train, full.x_train[:50])
    np.testing.assert_array_equal(small.y_test, full.y_test[:7])


def test_unknown_dataset_lists_allowed_names() -> None:
    with pytest.raises(DatasetError) as exc:
        load_dataset("cifar")
    msg = str(exc.value)
    assert "cifar" in msg
    for name in DATASETS:
        assert name in msg
    assert isinstance(exc.value, ValueError)


# --------------------------------------------------------------------------- IDX parser


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_roundtrip(tmp_path: Path, suffix: str) -> None:
    imgs = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    labels = np.array([1, 0, 9], dtype=np.uint8)
    p_img = _write(tmp_path / f"imgs{suffix}", _idx_bytes(imgs, data.IDX_IMAGES_MAGIC))
    p_lab = _write(tmp_path / f"labs{suffix}", _idx_bytes(labels, data.IDX_LABELS_MAGIC))
    np.testing.assert_array_equal(read_idx(p_img, data.IDX_IMAGES_MAGIC), imgs)
    np.testing.assert_array_equal(read_idx(p_lab, data.IDX_LABELS_MAGIC), labels)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_bad_magic_names_file(tmp_path: Path, suffix: str) -> None:
    labels = np.array([1, 2, 3], dtype=np.uint8)
    p = _write(tmp_path / f"bad-magic{suffix}", _idx_bytes(labels, 0x00000802))
    with pytest.raises(DatasetError, match="magic") as exc:
        read_idx(p, data.IDX_LABELS_MAGIC)
    assert str(p) in str(exc.value)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_truncated_names_file(tmp_path: Path, suffix: str) -> None:
    imgs = np.ones((4, 28, 28), dtype=np.uint8)
    full = _idx_bytes(imgs, data.IDX_IMAGES_MAGIC)
    p = _write(tmp_path / f"trunc{suffix}", full[:-10])
    with pytest.raises(DatasetError, match="truncated") as exc:
        read_idx(p, data.IDX_IMAGES_MAGIC)
    assert str(p) in str(exc.value)
    p2 = _write(tmp_path / f"header-only{suffix}", full[:9])
    with pytest.raises(DatasetError, match="truncated"):
        read_idx(p2, data.IDX_IMAGES_MAGIC)


def test_read_idx_corrupt_gzip_names_file(tmp_path: Path) -> None:
    p = tmp_path / "broken.gz"
    p.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DatasetError) as exc:
        read_idx(p, data.IDX_LABELS_MAGIC)
    assert str(p) in str(exc.value)


@pytest.mark.parametrize("gz", [False, True])
def test_load_idx_folder_plain_and_gzip(tmp_path: Path, gz: bool) -> None:
    arrays = _write_idx_set(tmp_path / "flat", gz=gz)
    ds = load_dataset("fashion-mnist", data_dir=tmp_path / "flat")
    _check_dataset(ds, 784)
    assert (len(ds.x_train), len(ds.x_test)) == (6, 4)
    expected = arrays["train-images-idx3-ubyte"].reshape(6, -1).astype(np.float32) / 255.0
    np.testing.assert_allclose(ds.x_train, expected, rtol=1e-6)
    np.testing.assert_array_equal(ds.y_test, arrays["t10k-labels-idx1-ubyte"])
    assert not ds.x_train.flags.writeable and not ds.y_train.flags.writeable


def test_load_idx_torchvision_layout_and_cache(tmp_path: Path) -> None:
    _write_idx_set(tmp_path / "MNIST" / "raw", gz=True)
    a = load_dataset("mnist", data_dir=tmp_path)
    b = load_dataset("mnist", data_dir=tmp_path, limit_train=2)
    assert a.x_train.shape == (6, 784)
    assert b.x_train.shape == (2, 784)
    assert np.shares_memory(a.x_train, b.x_train)  # served from the cache
    # FashionMNIST layout is not mistaken for MNIST's
    with pytest.raises(DatasetError, match="FashionMNIST"):
        load_dataset("fashion-mnist", data_dir=tmp_path)


def test_load_idx_count_mismatch(tmp_path: Path) -> None:
    _write_idx_set(tmp_path, n_train=5)
    labels = np.zeros(4, dtype=np.uint8)
    _write(tmp_path / "train-labels-idx1-ubyte", _idx_bytes(labels, data.IDX_LABELS_MAGIC))
    with pytest.raises(DatasetError, match="mismatch"):
        load_dataset("fashion-mnist", data_dir=tmp_path)


def test_missing_idx_folder_message(tmp_path: Path) -> None:
    empty = tmp_path / "nothing-here"
    empty.mkdir()
    with pytest.raises(DatasetError) as exc:
        load_dataset("mnist", data_dir=empty)
    msg = str(exc.value)
    assert str(empty) in msg and "--data-dir" in msg and "train-images-idx3-ubyte" in msg
    with pytest.raises(DatasetError, match="--data-dir"):
        load_dataset("fashion-mnist")


def test_find_shared_mnist_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(data.MNIST_ENV_VAR, str(tmp_path))
    assert find_shared_mnist() == tmp_path
    monkeypatch.setenv(data.MNIST_ENV_VAR, str(tmp_path / "absent"))
    found = find_shared_mnist()
    assert found is None or found.name == "mnist"


def test_mnist_without_data_dir_reports_searched_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(data.MNIST_ENV_VAR, str(tmp_path))  # exists but holds no IDX files
    monkeypatch.setattr(data, "_repo_root", lambda: tmp_path / "repo")
    with pytest.raises(DatasetError) as exc:
        load_dataset("mnist")
    msg = str(exc.value)
    assert str(tmp_path) in msg and "shared" in msg and "--data-dir" in msg


# --------------------------------------------------------------------------- shared MNIST


def test_shared_mnist_loads() -> None:
    expected = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "mnist"
    folder = find_shared_mnist()
    if folder is None:
        pytest.skip(f"shared MNIST not found at {expected}: set $INSITU_MNIST_DIR to enable")
    ds = load_dataset("mnist", data_dir=folder)
    assert ds.x_train.shape == (60000, 784) and ds.x_test.shape == (10000, 784)
    assert ds.y_train.shape == (60000,) and ds.y_test.shape == (10000,)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert float(ds.x_train.max()) == 1.0 and float(ds.x_train.min()) == 0.0
    assert set(np.unique(ds.y_test)) == set(range(10))
    assert not ds.x_train.flags.writeable
    # default data_dir (None) finds the same folder
    default = load_dataset("mnist", limit_train=10, limit_test=10)
    np.testing.assert_array_equal(default.x_train, ds.x_train[:10])


# --------------------------------------------------------------------------- batches


def test_batches_cover_every_index_once() -> None:
    n = 103
    x = np.arange(n, dtype=np.float32)[:, None]
    y = np.arange(n, dtype=np.int64)
    got = list(batches(x, y, 10, seed=0, epoch=0))
    assert [len(b[1]) for b in got] == [10] * 10 + [3]
    seen = np.concatenate([b[1] for b in got])
    assert sorted(seen.tolist()) == list(range(n))
    for bx, by in got:
        np.testing.assert_array_equal(bx[:, 0].astype(np.int64), by)  # x and y stay paired
    assert not np.array_equal(seen, np.arange(n))  # shuffled


def test_batches_reproducible_per_seed_and_epoch() -> None:
    x = np.random.default_rng(0).random((50, 3)).astype(np.float32)
    y = np.arange(50, dtype=np.int64)

    def order(seed: int, epoch: int) -> np.ndarray:
        return np.concatenate([b[1] for b in batches(x, y, 8, seed=seed, epoch=epoch)])

    np.testing.assert_array_equal(order(1, 3), order(1, 3))
    assert not np.array_equal(order(1, 3), order(1, 4))
    assert not np.array_equal(order(1, 3), order(2, 3))
    # A resumed run at epoch k sees the same order as an uninterrupted one.
    uninterrupted = [order(5, e) for e in range(4)]
    np.testing.assert_array_equal(order(5, 3), uninterrupted[3])


def test_batches_no_shuffle_and_bad_size() -> None:
    x = np.zeros((5, 2), dtype=np.float32)
    y = np.arange(5, dtype=np.int64)
    got = [b[1].tolist() for b in batches(x, y, 2, seed=0, epoch=0, shuffle=False)]
    assert got == [[0, 1], [2, 3], [4]]
    with pytest.raises(ValueError):
        list(batches(x, y, 0, seed=0, epoch=0))
