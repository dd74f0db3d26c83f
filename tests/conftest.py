"""Shared fixtures: where the offline MNIST copy lives."""
from __future__ import annotations

import os
from pathlib import Path

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
