"""vaekit.data against the offline MNIST test split, with the network blocked."""

from __future__ import annotations

import gzip
import hashlib
import math
import re
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

import vaekit
import vaekit.data
from vaekit.data import MNIST, DataNotFoundError, DataSplits, load_mnist

T10K = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
FIRST_TEST_LABELS = [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]  # the official MNIST test split starts with these
REAL_DOWNLOAD = vaekit.data._download  # kept before the fixture below replaces it


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Every download fails as it would offline, and records that it was tried."""
    calls = []

    def refuse(root, dataset):
        calls.append((Path(root), dataset))
        raise OSError("network disabled in tests")

    def no_connect(*args, **kwargs):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(vaekit.data, "_download", refuse)
    monkeypatch.setattr(socket.socket, "connect", no_connect)
    monkeypatch.delenv("VAEKIT_DATA", raising=False)
    return calls


@pytest.fixture(autouse=True)
def own_cache(monkeypatch, tmp_path_factory) -> Path:
    """Each test decodes into its own empty cache (never the user's ~/.cache)."""
    folder = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("VAEKIT_CACHE", str(folder))
    return folder


@pytest.fixture(scope="module")
def t10k_dir(mnist_root: Path) -> Path:
    """The folder of the offline copy that holds the two t10k files."""
    for folder in (mnist_root / "mnist", mnist_root / "MNIST" / "raw", mnist_root):
        if all((folder / name).is_file() for name in T10K):
            return folder
    pytest.fail(f"{mnist_root} has no {' and '.join(T10K)} in mnist/, MNIST/raw/ or itself")


@pytest.fixture(scope="module")
def oracle(t10k_dir: Path, read_idx_gz) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx_gz(t10k_dir / T10K[0])
    labels = read_idx_gz(t10k_dir / T10K[1])
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    return images, labels


def copy_t10k(t10k_dir: Path, dest: Path, gunzip: bool = False, as_train: bool = False) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in T10K:
        targets = [name] + ([name.replace("t10k", "train")] if as_train else [])
        for target in targets:
            if gunzip:
                with gzip.open(t10k_dir / name, "rb") as src, open(dest / target[:-3], "wb") as dst:
                    shutil.copyfileobj(src, dst)
            else:
                shutil.copyfile(t10k_dir / name, dest / target)
    return dest


@pytest.fixture(scope="module")
def test_only(t10k_dir: Path, tmp_path_factory) -> DataSplits:
    """Loaded once for the read-only checks: only the two t10k files in root/mnist."""
    root = tmp_path_factory.mktemp("data")
    copy_t10k(t10k_dir, root / "mnist")
    return load_mnist(root, download=False, verbose=False)


def test_offline_files_match_the_readme_md5(t10k_dir: Path):
    readme = t10k_dir / "README.md"
    if not readme.is_file():
        pytest.skip(f"{readme} is not there to compare against")
    table = dict(re.findall(r"\|\s*(\S+\.gz)\s*\|\s*([0-9a-f]{32})\s*\|", readme.read_text()))
    assert set(T10K) <= set(table), f"README lists {sorted(table)}, expected both t10k files"
    for name, md5 in table.items():
        assert hashlib.md5((t10k_dir / name).read_bytes()).hexdigest() == md5, name


def test_loads_the_offline_copy_from_its_own_folder(mnist_root: Path, oracle):
    data = load_mnist(mnist_root, download=False, verbose=False)
    for x in (data.train_x, data.val_x):
        assert x.dtype == torch.float32 and x.shape[1:] == (1, 28, 28)
        assert x.min().item() >= 0.0 and x.max().item() <= 1.0
    for y in (data.train_y, data.val_y):
        assert y.dtype == torch.int64 and y.min().item() >= 0 and y.max().item() <= 9
    # the last 2,000 test images are held out either way: the validation part of
    # the test-only split, or the tail of the official test split
    torch.testing.assert_close(data.val_x[-2000:, 0], torch.from_numpy(oracle[0][-2000:]).float() / 255)


def test_test_split_shapes_dtypes_and_range(test_only):
    assert test_only.train_x.shape == (8000, 1, 28, 28)
    assert test_only.val_x.shape == (2000, 1, 28, 28)
    assert test_only.train_y.shape == (8000,) and test_only.val_y.shape == (2000,)
    assert test_only.train_x.dtype == test_only.val_x.dtype == torch.float32
    assert test_only.train_y.dtype == test_only.val_y.dtype == torch.int64
    # MNIST has pure black and pure white pixels: [0, 255] must map onto exactly [0, 1]
    assert test_only.train_x.min().item() == 0.0 and test_only.train_x.max().item() == 1.0
    assert test_only.val_x.min().item() >= 0.0 and test_only.val_x.max().item() <= 1.0


def test_first_ten_labels_of_the_test_split(test_only):
    assert test_only.train_y[:10].tolist() == FIRST_TEST_LABELS


def test_images_and_labels_match_an_independent_reader(test_only, oracle):
    images, labels = oracle
    expected = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    torch.testing.assert_close(test_only.train_x, expected[:8000])
    torch.testing.assert_close(test_only.val_x, expected[8000:])
    assert torch.equal(test_only.train_y, torch.from_numpy(labels[:8000].astype(np.int64)))
    assert torch.equal(test_only.val_y, torch.from_numpy(labels[8000:].astype(np.int64)))


def test_test_split_only_notice_and_8000_2000_split(t10k_dir: Path, tmp_path: Path, capsys, no_network):
    copy_t10k(t10k_dir, tmp_path / "mnist")
    data = load_mnist(tmp_path, download=False)
    out = capsys.readouterr().out
    assert "TEST SPLIT ONLY" in out
    assert "8,000 train + 2,000 validation" in out
    assert str(tmp_path / "mnist") in out
    assert "TEST SPLIT ONLY" in data.source and "(8000, 1, 28, 28)" in repr(data)
    assert no_network == [], "download=False must not try to download"


def test_a_test_split_alone_is_used_without_trying_the_network(t10k_dir: Path, tmp_path: Path, capsys, no_network):
    copy_t10k(t10k_dir, tmp_path / "mnist")
    data = load_mnist(tmp_path)
    assert no_network == [], "an offline test split must not cost a download attempt on every call"
    assert "download=True" in capsys.readouterr().out
    assert len(data.train_x) == 8000 and not (tmp_path / "MNIST").exists()


def test_failed_download_falls_back_to_the_test_split(t10k_dir: Path, tmp_path: Path, capsys, no_network):
    copy_t10k(t10k_dir, tmp_path / "mnist")
    data = load_mnist(tmp_path, download=True)
    out = capsys.readouterr().out
    assert no_network == [(tmp_path, MNIST)]
    assert "could not download the mnist training split (OSError)" in out
    assert "TEST SPLIT ONLY" in out
    assert len(data.train_x) == 8000 and len(data.val_x) == 2000


def test_a_successful_download_is_used(t10k_dir: Path, tmp_path: Path, monkeypatch, capsys):
    copy_t10k(t10k_dir, tmp_path / "mnist")

    def fake_download(root, dataset):  # what torchvision leaves on disk: root/MNIST/raw
        copy_t10k(t10k_dir, Path(root) / "MNIST" / "raw", as_train=True)

    monkeypatch.setattr(vaekit.data, "_download", fake_download)
    data = load_mnist(tmp_path, download=True)
    out = capsys.readouterr().out
    assert "TEST SPLIT ONLY" not in out
    assert str(tmp_path / "MNIST" / "raw") in data.source
    assert len(data.train_x) == 10000 and len(data.val_x) == 10000


def test_torchvision_layout_with_gz_files(t10k_dir: Path, tmp_path: Path, test_only):
    raw = copy_t10k(t10k_dir, tmp_path / "MNIST" / "raw")
    assert sorted(p.name for p in raw.iterdir()) == sorted(T10K)
    data = load_mnist(tmp_path, download=False, verbose=False)
    assert str(raw) in data.source
    assert torch.equal(data.train_x, test_only.train_x) and torch.equal(data.val_y, test_only.val_y)


def test_plain_idx_files_in_the_root_itself(t10k_dir: Path, tmp_path: Path, test_only):
    copy_t10k(t10k_dir, tmp_path, gunzip=True)
    data = load_mnist(tmp_path, download=False, verbose=False)
    assert torch.equal(data.train_x, test_only.train_x) and torch.equal(data.val_x, test_only.val_x)
    assert torch.equal(data.train_y, test_only.train_y)


def test_full_layout_uses_train_files_and_the_test_split_for_validation(
    t10k_dir: Path, tmp_path: Path, capsys, no_network
):
    copy_t10k(t10k_dir, tmp_path / "MNIST" / "raw", as_train=True)
    data = load_mnist(tmp_path)
    out = capsys.readouterr().out
    assert no_network == [], "nothing is missing, so nothing should be downloaded"
    assert "10,000 train + 10,000 test images" in out and "TEST SPLIT ONLY" not in out
    assert data.val_y[:10].tolist() == FIRST_TEST_LABELS


def test_root_defaults_to_vaekit_data(t10k_dir: Path, tmp_path: Path, monkeypatch):
    copy_t10k(t10k_dir, tmp_path / "mnist")
    monkeypatch.setenv("VAEKIT_DATA", str(tmp_path))
    assert vaekit.data.default_root() == tmp_path
    data = load_mnist(download=False, verbose=False)
    assert str(tmp_path) in data.source


def test_default_root_without_vaekit_data(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert vaekit.data.default_root() == tmp_path / ".cache" / "vaekit" / "data"


def test_device_is_honoured(t10k_dir: Path, tmp_path: Path):
    copy_t10k(t10k_dir, tmp_path / "mnist")
    data = load_mnist(tmp_path, download=False, verbose=False, device="meta")
    assert {t.device.type for t in (data.train_x, data.train_y, data.val_x, data.val_y)} == {"meta"}
    assert data.train_x.dtype == torch.float32 and data.train_y.dtype == torch.int64


def test_missing_data_names_the_folder_and_the_files(tmp_path: Path, no_network):
    with pytest.raises(DataNotFoundError) as info:
        load_mnist(tmp_path)
    msg = str(info.value)
    assert no_network == [(tmp_path, MNIST)]
    assert str(tmp_path / "MNIST" / "raw") in msg
    for name in (*T10K, "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        assert name in msg
    assert "OSError: network disabled in tests" in msg
    assert "VAEKIT_DATA" in msg
    assert isinstance(info.value, FileNotFoundError)


def test_missing_data_without_download(tmp_path: Path, no_network):
    with pytest.raises(DataNotFoundError, match=re.escape(str(tmp_path / "MNIST" / "raw"))) as info:
        load_mnist(tmp_path, download=False)
    assert no_network == []
    assert "download failed" not in str(info.value)


def test_only_labels_file_is_not_enough(t10k_dir: Path, tmp_path: Path):
    (tmp_path / "mnist").mkdir()
    shutil.copyfile(t10k_dir / T10K[1], tmp_path / "mnist" / T10K[1])
    with pytest.raises(DataNotFoundError):
        load_mnist(tmp_path, download=False)


def test_dynamic_binarization_is_refused_with_a_pointer_to_batches(tmp_path: Path):
    with pytest.raises(ValueError, match="dynamic_binarize=True"):
        load_mnist(tmp_path, download=False, binarize="dynamic")


def test_download_goes_through_torchvision_for_both_splits(tmp_path: Path, monkeypatch):
    import torchvision

    calls = []

    class FakeMNIST:
        def __init__(self, root, train, download):
            calls.append((root, train, download))

    monkeypatch.setattr(torchvision.datasets, "MNIST", FakeMNIST)
    REAL_DOWNLOAD(tmp_path, MNIST)
    assert sorted(calls) == [(str(tmp_path), False, True), (str(tmp_path), True, True)]


# ---- static binarization -------------------------------------------------------------


@pytest.fixture(scope="module")
def static(t10k_dir: Path, tmp_path_factory) -> DataSplits:
    root = tmp_path_factory.mktemp("static")
    copy_t10k(t10k_dir, root / "mnist")
    return load_mnist(root, download=False, verbose=False, binarize="static")


def test_static_binarization_gives_only_zeros_and_ones(static):
    for x in (static.train_x, static.val_x):
        assert x.dtype == torch.float32 and x.shape[1:] == (1, 28, 28)
        assert set(torch.unique(x).tolist()) == {0.0, 1.0}


def test_static_binarization_is_deterministic(static, t10k_dir: Path, tmp_path: Path):
    copy_t10k(t10k_dir, tmp_path / "mnist")
    again = load_mnist(tmp_path, download=False, verbose=False, binarize="static")
    assert torch.equal(again.train_x, static.train_x) and torch.equal(again.val_x, static.val_x)


def test_static_binarization_follows_the_intensities(static, test_only):
    for grey, binary in ((test_only.train_x, static.train_x), (test_only.val_x, static.val_x)):
        # black pixels stay black, white ones stay white
        assert not binary[grey == 0].any() and binary[grey == 1].all()
        # the mean of independent Bernoulli(p) pixels: sd = sqrt(sum p(1-p)) / n
        n = grey.numel()
        sd = math.sqrt((grey * (1 - grey)).sum().item()) / n
        assert abs(binary.mean().item() - grey.mean().item()) < 5 * sd


def test_static_binarization_samples_dark_grey_pixels_instead_of_rounding_them(static, test_only):
    dark = (test_only.train_x > 0.05) & (test_only.train_x < 0.45)  # rounding would make them all 0
    p, b = test_only.train_x[dark], static.train_x[dark]
    sd = math.sqrt((p * (1 - p)).sum().item()) / p.numel()
    assert abs(b.mean().item() - p.mean().item()) < 5 * sd


# ---------------------------------------------------------------- decoded cache
def count_decodes(monkeypatch) -> list[Path]:
    decoded = []
    real = vaekit.data._decode_idx

    def counting(path):
        decoded.append(path)
        return real(path)

    monkeypatch.setattr(vaekit.data, "_decode_idx", counting)
    return decoded


def test_second_load_comes_from_the_cache(t10k_dir: Path, tmp_path: Path, own_cache: Path, monkeypatch, oracle):
    root = copy_t10k(t10k_dir, tmp_path / "data")
    decoded = count_decodes(monkeypatch)
    first = load_mnist(root, download=False, verbose=False)
    assert sorted(p.name for p in decoded) == sorted(T10K)
    assert len(list(own_cache.glob("*.pt"))) == 2, "one cache file per data file"
    second = load_mnist(root, download=False, verbose=False)
    assert len(decoded) == 2, "the second load decoded the files again instead of using the cache"
    for a, b in zip(vars(first).values(), vars(second).values(), strict=True):
        assert torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b
    torch.testing.assert_close(second.val_x[:, 0], torch.from_numpy(oracle[0][-2000:]).float() / 255)


def test_a_changed_data_file_is_decoded_again(t10k_dir: Path, tmp_path: Path, monkeypatch):
    root = copy_t10k(t10k_dir, tmp_path / "data")
    load_mnist(root, download=False, verbose=False)
    decoded = count_decodes(monkeypatch)
    labels = root / T10K[1]
    labels.write_bytes(gzip.compress(gzip.decompress(labels.read_bytes())[:8] + bytes([3]) * 10000))
    data = load_mnist(root, download=False, verbose=False)
    assert [p.name for p in decoded] == [T10K[1]]
    assert set(data.train_y.tolist()) == {3}


def test_a_corrupt_cache_file_is_replaced(t10k_dir: Path, tmp_path: Path, own_cache: Path, monkeypatch, test_only):
    root = copy_t10k(t10k_dir, tmp_path / "data")
    load_mnist(root, download=False, verbose=False)
    for cached in own_cache.glob("*.pt"):
        cached.write_bytes(b"not a tensor")
    decoded = count_decodes(monkeypatch)
    data = load_mnist(root, download=False, verbose=False)
    assert len(decoded) == 2
    assert torch.equal(data.train_x, test_only.train_x)
    load_mnist(root, download=False, verbose=False)
    assert len(decoded) == 2, "the corrupt cache files were not rewritten"


def test_an_unwritable_cache_is_skipped(t10k_dir: Path, tmp_path: Path, monkeypatch, test_only):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("VAEKIT_CACHE", str(blocker / "cache"))
    root = copy_t10k(t10k_dir, tmp_path / "data")
    data = load_mnist(root, download=False, verbose=False)
    assert torch.equal(data.val_x, test_only.val_x)
    assert blocker.read_text() == "a file where the cache folder should be"
    assert list(tmp_path.glob("**/*.tmp")) == []


def test_cache_defaults_to_the_home_cache(monkeypatch, tmp_path: Path):
    monkeypatch.delenv("VAEKIT_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert vaekit.data.cache_dir() == tmp_path / ".cache" / "vaekit" / "tensors"
