"""vaekit.env (seeding, device), vaekit.budget (run size) and vaekit.progress."""

from __future__ import annotations

import random
import sys
import types

import numpy as np
import pytest
import torch

import vaekit
from vaekit import run_budget
from vaekit.budget import Budget


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("VAEKIT_FAST", "NBGRADER_EXECUTION", "VAEKIT_DEVICE"):
        monkeypatch.delenv(name, raising=False)
    # setup() flips global cuDNN flags: put them back afterwards
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", torch.backends.cudnn.deterministic)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", torch.backends.cudnn.benchmark)


def draws() -> tuple:
    return torch.randn(5).tolist(), np.random.rand(5).tolist(), [random.random() for _ in range(5)]


# ---- setup and seeding ------------------------------------------------------------------


def test_setup_same_seed_same_numbers(monkeypatch):
    monkeypatch.setenv("VAEKIT_DEVICE", "cpu")
    vaekit.setup(seed=123, verbose=False)
    first = draws()
    draws()  # move every generator on
    vaekit.setup(seed=123, verbose=False)
    assert draws() == first


def test_setup_different_seed_different_numbers(monkeypatch):
    monkeypatch.setenv("VAEKIT_DEVICE", "cpu")
    vaekit.setup(seed=1, verbose=False)
    a = draws()
    vaekit.setup(seed=2, verbose=False)
    b = draws()
    assert all(x != y for x, y in zip(a, b, strict=True)), "each of torch, numpy and random must be reseeded"


def test_setup_sets_deterministic_cudnn(monkeypatch):
    monkeypatch.setenv("VAEKIT_DEVICE", "cpu")
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = False, True
    vaekit.setup(0, verbose=False)
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark


def test_setup_can_leave_cudnn_alone(monkeypatch):
    monkeypatch.setenv("VAEKIT_DEVICE", "cpu")
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = False, True
    vaekit.setup(0, deterministic=False, verbose=False)
    assert not torch.backends.cudnn.deterministic and torch.backends.cudnn.benchmark


def test_setup_returns_the_device_and_reports(monkeypatch, capsys):
    monkeypatch.setenv("VAEKIT_DEVICE", "cpu")
    device = vaekit.setup(seed=7)
    assert device == torch.device("cpu")
    out = capsys.readouterr().out
    assert out.startswith("device: cpu") and "seed 7" in out and torch.__version__ in out
    assert "Colab" not in out


def test_setup_in_colab_without_gpu_says_how_to_get_one(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setenv("VAEKIT_DEVICE", "cpu")
    vaekit.setup()
    assert "Change runtime type" in capsys.readouterr().out


def test_setup_quiet(monkeypatch, capsys):
    monkeypatch.setenv("VAEKIT_DEVICE", "cpu")
    vaekit.setup(verbose=False)
    assert capsys.readouterr().out == ""


def test_vaekit_device_chooses_the_device(monkeypatch):
    monkeypatch.setenv("VAEKIT_DEVICE", "meta")
    assert vaekit.setup(verbose=False) == torch.device("meta")


def test_setup_prefers_cuda_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert vaekit.setup(verbose=False) == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert vaekit.setup(verbose=False) == torch.device("cpu")


# ---- run budget -------------------------------------------------------------------------


def test_full_budget_by_default(capsys):
    assert run_budget(10) == Budget(num_epochs=10, num_train=None, fast=False)
    assert run_budget(10, 5000, verbose=False) == Budget(10, 5000, False)
    assert "full settings" in capsys.readouterr().out


@pytest.mark.parametrize("value", ["1", "true", "yes", "TRUE", " 1 "])
def test_vaekit_fast_switches_to_the_fast_budget(monkeypatch, capsys, value):
    monkeypatch.setenv("VAEKIT_FAST", value)
    assert run_budget(10) == Budget(num_epochs=1, num_train=1024, fast=True)
    assert "FAST mode" in capsys.readouterr().out


@pytest.mark.parametrize("value", ["", "0", "false", "no", "No"])
def test_vaekit_fast_off_values(monkeypatch, value):
    monkeypatch.setenv("VAEKIT_FAST", value)
    assert run_budget(10, verbose=False) == Budget(10, None, False)


@pytest.mark.parametrize("value", ["autograde", "validate"])
def test_nbgrader_execution_switches_to_the_fast_budget(monkeypatch, value):
    monkeypatch.setenv("NBGRADER_EXECUTION", value)
    assert run_budget(20, verbose=False) == Budget(1, 1024, True)
    monkeypatch.delenv("NBGRADER_EXECUTION")
    assert run_budget(20, verbose=False) == Budget(20, None, False)


def test_fast_budget_never_exceeds_the_full_one(monkeypatch):
    monkeypatch.setenv("VAEKIT_FAST", "1")
    assert run_budget(2, 500, fast_epochs=3, fast_train=1024, verbose=False) == Budget(2, 500, True)
    assert run_budget(9, fast_epochs=3, fast_train=256, verbose=False) == Budget(3, 256, True)


def test_budget_needs_an_epoch():
    with pytest.raises(ValueError, match="num_epochs must be at least 1"):
        run_budget(0)


def test_budget_take():
    x, y = torch.arange(10), torch.arange(10) * 2
    assert Budget(1, None, False).take(x) is x
    assert Budget(1, 3, True).take(x).tolist() == [0, 1, 2]
    xs, ys = Budget(1, 3, True).take(x, y)
    assert xs.tolist() == [0, 1, 2] and ys.tolist() == [0, 2, 4]
    full = Budget(1, None, False).take(x, y)
    assert full[0] is x and full[1] is y


# ---- progress ---------------------------------------------------------------------------


def test_progress_yields_everything_and_shows_by_default():
    bar = vaekit.progress(range(5), desc="epoch")
    assert not bar.disable  # checked first: tqdm sets it when the bar closes
    assert list(bar) == [0, 1, 2, 3, 4]


def test_progress_is_silent_while_grading(monkeypatch, capsys):
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    bar = vaekit.progress(range(3), desc="epoch")
    assert bar.disable
    assert list(bar) == [0, 1, 2]
    captured = capsys.readouterr()
    assert "epoch" not in captured.err + captured.out
