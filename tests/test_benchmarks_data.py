"""benchmarks/bench_data.py: Fashion-MNIST through vaekit's loader, which students never import."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import vaekit
from benchmarks.bench_data import DEBIAN_FASHION_MNIST, load_splits
from vaekit.data import DataNotFoundError

T10K = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


@pytest.fixture(autouse=True)
def own_cache(monkeypatch, tmp_path_factory) -> None:
    """Decode into an empty cache of this test's own, never the user's ~/.cache."""
    monkeypatch.setenv("VAEKIT_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def t10k_files(mnist_root: Path) -> list[Path]:
    """The offline MNIST test split's two files, wherever the offline copy keeps them."""
    for folder in (mnist_root / "mnist", mnist_root / "MNIST" / "raw", mnist_root):
        files = [folder / name for name in T10K]
        if all(f.is_file() for f in files):
            return files
    pytest.fail(f"{mnist_root} has no {' and '.join(T10K)}")


def test_fashion_mnist_files_are_found_in_their_own_folder(t10k_files: list[Path], tmp_path: Path):
    # files in Fashion-MNIST's format (MNIST's own files stand in for them) in root/fashion-mnist
    (tmp_path / "fashion-mnist").mkdir()
    for f in t10k_files:
        shutil.copy(f, tmp_path / "fashion-mnist")
    fashion = load_splits("fashion-mnist", tmp_path, download=False)
    assert fashion.source.startswith(f"fashion-mnist TEST SPLIT ONLY from {tmp_path / 'fashion-mnist'}")
    mnist = vaekit.load_mnist(t10k_files[0].parent, download=False, verbose=False)
    assert torch.equal(fashion.train_x, mnist.train_x) and torch.equal(fashion.val_y, mnist.val_y)


def test_missing_fashion_mnist_names_its_torchvision_folder(tmp_path: Path):
    if (DEBIAN_FASHION_MNIST / T10K[0]).is_file():
        pytest.skip(f"Fashion-MNIST is installed in {DEBIAN_FASHION_MNIST}, so it is never missing")
    with pytest.raises(DataNotFoundError, match="fashion-mnist is not in") as info:
        load_splits("fashion-mnist", tmp_path, download=False)
    assert str(tmp_path / "FashionMNIST" / "raw") in str(info.value)


def test_unknown_dataset_is_refused(tmp_path: Path):
    with pytest.raises(ValueError, match="unknown dataset 'cifar10'"):
        load_splits("cifar10", tmp_path)


@pytest.mark.skipif(
    not (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file(),
    reason=f"no Fashion-MNIST in {DEBIAN_FASHION_MNIST} (Debian's dataset-fashion-mnist)",
)
def test_full_fashion_mnist_from_the_system_folder(tmp_path: Path, read_idx_gz):
    data = load_splits("fashion-mnist", tmp_path, download=False)
    assert data.train_x.shape == (60000, 1, 28, 28) and data.val_x.shape == (10000, 1, 28, 28)
    assert data.train_x.dtype == torch.float32 and data.train_y.dtype == torch.int64
    assert str(DEBIAN_FASHION_MNIST) in data.source and "TEST SPLIT ONLY" not in data.source
    labels = read_idx_gz(DEBIAN_FASHION_MNIST / "train-labels-idx1-ubyte.gz")
    assert torch.equal(data.train_y, torch.from_numpy(labels.astype(np.int64)))
    assert torch.bincount(data.val_y).tolist() == [1000] * 10
    first = read_idx_gz(DEBIAN_FASHION_MNIST / "t10k-images-idx3-ubyte.gz")[:100]
    torch.testing.assert_close(data.val_x[:100, 0], torch.from_numpy(first).float() / 255)
