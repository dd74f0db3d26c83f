"""One place that decides how much training a notebook does.

Full settings normally; small ones when `VAEKIT_FAST=1` or when nbgrader runs the
notebook (it sets `NBGRADER_EXECUTION` to `autograde` or `validate`), so that every
notebook runs top to bottom in well under a minute on a laptop CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


def _is_fast() -> bool:
    """True when notebooks should shrink their training (fast mode or grading)."""
    fast = os.environ.get("VAEKIT_FAST", "").strip().lower() not in ("", "0", "false", "no")
    return fast or bool(os.environ.get("NBGRADER_EXECUTION"))


@dataclass(frozen=True)
class Budget:
    """How much to train: epochs and how many training images (None: all)."""

    num_epochs: int
    num_train: int | None
    fast: bool

    def take(self, x: torch.Tensor, *others: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """The first `num_train` rows of `x` (and of each tensor in `others`)."""
        if self.num_train is None:
            return (x, *others) if others else x
        cut = [t[: self.num_train] for t in (x, *others)]
        return tuple(cut) if others else cut[0]


def run_budget(
    num_epochs: int,
    num_train: int | None = None,
    *,
    fast_epochs: int = 1,
    fast_train: int = 1024,
    verbose: bool = True,
) -> Budget:
    """The budget for this run: the full values given, or the fast ones.

    Example: `budget = run_budget(num_epochs=10)` trains 10 epochs on all the data
    normally and 1 epoch on 1,024 images when grading.
    """
    if num_epochs < 1:
        raise ValueError(f"num_epochs must be at least 1, got {num_epochs}")
    fast = _is_fast()
    if fast:
        budget = Budget(
            min(fast_epochs, num_epochs), fast_train if num_train is None else min(fast_train, num_train), True
        )
    else:
        budget = Budget(num_epochs, num_train, False)
    if verbose:
        size = "all" if budget.num_train is None else f"{budget.num_train:,}"
        mode = "FAST mode (VAEKIT_FAST or grading): results will look rough" if fast else "full settings"
        print(f"run budget: {budget.num_epochs} epoch(s) on {size} training images — {mode}")
    return budget
