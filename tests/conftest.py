"""Shared fixtures: where the offline MNIST copy lives, and an independent reader of its files."""

from __future__ import annotations

import gzip
import os
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

# Plots must render without a display, also when pytest is run without `make`.
os.environ.setdefault("MPLBACKEND", "Agg")

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    """The offline data folder: $VAEKIT_DATA, else ../shared/data next to the repository."""
    candidates = []
    if os.environ.get("VAEKIT_DATA"):
        candidates.append(Path(os.environ["VAEKIT_DATA"]).expanduser())
    candidates.append(REPO_ROOT.parent / "shared" / "data")
    for folder in candidates:
        if folder.is_dir():
            return folder.resolve()
    pytest.skip(
        "no offline MNIST copy: set VAEKIT_DATA to a folder holding mnist/t10k-*-ubyte.gz "
        f"(looked in {', '.join(str(c) for c in candidates)})"
    )


def _read_idx_gz(path: Path) -> np.ndarray:
    data = gzip.decompress(path.read_bytes())
    magic = struct.unpack(">I", data[:4])[0]
    ndim = magic & 0xFF
    assert magic >> 8 == 0x08, f"{path.name}: not unsigned-byte IDX data (magic {magic:#x})"
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims).copy()


@pytest.fixture(scope="session")
def read_idx_gz() -> Callable[[Path], np.ndarray]:
    """An IDX reader independent of vaekit and torchvision (the oracle): big-endian header, then uint8 data."""
    return _read_idx_gz
