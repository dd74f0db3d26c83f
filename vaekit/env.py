"""Seeding, device choice and the one-line environment report of a setup cell."""

from __future__ import annotations

import os
import platform
import random
import sys

import numpy as np
import torch


def _in_colab() -> bool:
    """True inside Google Colab."""
    return "google.colab" in sys.modules


def _seed_everything(seed: int = 0, deterministic: bool = True) -> None:
    """Seed `random`, numpy and torch (CPU and every CUDA device).

    With `deterministic=True`, cuDNN picks deterministic kernels so that the same
    seed gives the same numbers on the same device (at some cost in speed).
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if deterministic:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def _pick_device() -> torch.device:
    """`$VAEKIT_DEVICE` if set, else cuda, then Apple's mps, then cpu."""
    prefer = os.environ.get("VAEKIT_DEVICE")
    if prefer:
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def setup(seed: int = 0, deterministic: bool = True, verbose: bool = True) -> torch.device:
    """Everything a notebook's setup cell needs: seeds, device, a short report.

    Seeds `random`, numpy and torch; with `deterministic=True` cuDNN also picks
    deterministic kernels. Returns the device to put models and data on: cuda, then
    Apple's mps, then cpu, unless `$VAEKIT_DEVICE` names one.
    """
    _seed_everything(seed, deterministic)
    device = _pick_device()
    if verbose:
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"
        print(
            f"device: {device} ({name}) | torch {torch.__version__} | python {platform.python_version()} | seed {seed}"
        )
        if device.type == "cpu" and _in_colab():
            print(
                "No GPU in this Colab session. Training will be slow: choose "
                "Runtime → Change runtime type → T4 GPU, then Runtime → Run all."
            )
    return device
