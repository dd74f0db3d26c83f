"""The benchmarks' data: MNIST through vaekit, and Fashion-MNIST, which students never need.

Fashion-MNIST has MNIST's size and file format, so it times full-scale training (60,000
images) where only MNIST's 10,000-image test split is available offline. It goes through
vaekit's own loader (the same file search, decoding and cache), with Debian's
`dataset-fashion-mnist` package folder as one more place to look.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

import vaekit
from vaekit.data import DataSplits, _Dataset, _load

REPO = Path(__file__).resolve().parents[1]
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST = _Dataset("fashion-mnist", "FashionMNIST", ("fashion-mnist", "fashion_mnist", str(DEBIAN_FASHION_MNIST)))
DATASETS = ("mnist", "fashion-mnist")


def data_root() -> Path:
    """$VAEKIT_DATA, else ../shared/data beside the repository (the offline copy CI uses)."""
    return Path(os.environ["VAEKIT_DATA"]) if os.environ.get("VAEKIT_DATA") else REPO.parent / "shared" / "data"


def load_splits(
    dataset: str, root: Path, download: bool | None = None, device: torch.device | str = "cpu"
) -> DataSplits:
    """`vaekit.load_mnist` for `dataset` ("mnist" or "fashion-mnist"), quietly."""
    if dataset == "mnist":
        return vaekit.load_mnist(root, download=download, device=device, verbose=False)
    if dataset == "fashion-mnist":
        return _load(FASHION_MNIST, root, download, None, device, False)
    raise ValueError(f"unknown dataset {dataset!r}; choose one of {DATASETS}")


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every benchmark that loads data and trains on the CPU shares."""
    parser.add_argument("--root", type=Path, default=None, help="data folder (default: $VAEKIT_DATA or ../shared/data)")
    parser.add_argument("--download", action="store_true", help="let vaekit download missing files")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch.set_num_threads; 0 keeps torch's default (one per core). Default 1: on 2 cores shared with "
        "other processes, 2 threads made a 1-second epoch take 0.7-66 s (RESULTS.md); 1 thread stays steady",
    )
