"""Progress bars that behave in notebooks, terminals and under the grader."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(iterable: Iterable[T], desc: str | None = None, total: int | None = None, **kwargs: Any) -> Iterable[T]:
    """`tqdm.auto` progress bar; silent while nbgrader grades (feedback stays clean)."""
    kwargs.setdefault("disable", bool(os.environ.get("NBGRADER_EXECUTION")))
    kwargs.setdefault("leave", False)
    return tqdm(iterable, desc=desc, total=total, **kwargs)
