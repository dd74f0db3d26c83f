"""A tiny class for the sharded-grading tests: a release, three students, `grade` through the real CLI.

alice submits notebook 01 filled in (points, and written answers to grade by hand), bob the
untouched release of 01, carol nothing. In sorted order `--shard 1/2` grades alice and carol,
`--shard 2/2` bob.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import nbformat
from corpus import rows, snapshot  # noqa: F401  (the helpers every grading test uses, re-exported)

from autograder import samples
from autograder.config import REPO, SOLUTIONS, load_course
from autograder.release import generate, prepare_course

AE = "01_autoencoder"
STUDENTS = ("alice", "bob", "carol")


def build(base: Path) -> Path:
    """Write base/subs/<student>/… and return base/subs."""
    course = load_course()
    release = generate(prepare_course(base / "course", course), course)
    subs = base / "subs"
    rel = nbformat.read(release / f"{AE}.ipynb", as_version=4)
    src = nbformat.read(SOLUTIONS / f"{AE}.ipynb", as_version=4)
    samples.write(samples.full(rel, src), subs / "alice" / f"{AE}.ipynb")
    samples.write(rel, subs / "bob" / f"{AE}.ipynb")
    (subs / "carol").mkdir(parents=True)
    return subs


def cli(*args: str, timeout: float = 900, env: dict | None = None) -> SimpleNamespace:
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "autograder", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    return SimpleNamespace(
        proc=proc, rc=proc.returncode, out=proc.stdout, err=proc.stderr, seconds=time.monotonic() - t0
    )


def grade(subs: Path, out: Path, *extra: str, env: dict | None = None) -> SimpleNamespace:
    return cli("grade", str(subs), "--out", str(out), "--no-progress", "--timeout", "120", *extra, env=env)


def set_manual(url: str, student: str, score: float, comment: str) -> str:
    """Grade alice's first written answer by hand, as formgrader stores it; returns the cell's name."""
    from nbgrader.api import Gradebook

    with warnings.catch_warnings(), Gradebook(url) as gb:
        warnings.simplefilter("ignore")
        answer = next(
            g
            for g in sorted(gb.find_submission_notebook(AE, "vae", student).grades, key=lambda g: g.name)
            if g.cell.cell_type == "markdown"
        )
        answer.manual_score = score
        gb.find_comment(answer.name, AE, "vae", student).manual_comment = comment
        gb.db.commit()
        return answer.name


def manual(url: str, student: str, cell: str) -> tuple[float | None, str | None]:
    from nbgrader.api import Gradebook

    with warnings.catch_warnings(), Gradebook(url) as gb:
        warnings.simplefilter("ignore")
        return (
            gb.find_grade(cell, AE, "vae", student).manual_score,
            gb.find_comment(cell, AE, "vae", student).manual_comment,
        )
