"""The sample-submission corpus of the autograder tests, made from the current notebooks, and the
helpers the grading tests share (a fresh release, running `python -m autograder grade`, reading CSVs).

`build(release_dir, source_dir, out)` writes out/<student>/<notebook>.ipynb and
returns EXPECTED: for each student and notebook, the status and the test cells
expected to score 0 (None: all of them). A student not listed for a notebook
did not submit it (status `missing`).
"""

from __future__ import annotations

import atexit
import copy
import csv
import functools
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import nbformat
import torch

from autograder import samples
from autograder.checks import reference
from autograder.config import REPO, SOLUTIONS

AE = "01_autoencoder"

# seconds a cell or check may take: only definitions run in the sandbox, and the checks are small,
# but a loaded 2-core machine is slow
CELL_TIMEOUT = 120

# code for the damaged and hostile students (all on notebook 01, built from the full solution)
FORWARD_BUG = """
def forward(self, x):
    return self.decode(self.encode(x)) + 0.5
"""
# patching the comparison a check might use, in the kernel: the judge compares in the grader's process
PATCH = (
    "import torch.testing\ntorch.testing.assert_close = lambda *args, **kwargs: None\n"
    "torch.allclose = lambda *a, **k: True\n"
)
# reaching for the instructor's files: evidence of an attempt (tampered)
SNOOP = "try:\n    open({path!r}).read()\nexcept OSError:\n    pass\n"


@functools.lru_cache(maxsize=1)
def release_dirs() -> tuple[Path, Path]:
    """(release, source) folders of a fresh nbgrader release of solutions/, once per test process.

    source holds the sources with the course placeholders filled in (nbgrader's source/ folder).
    """
    from autograder.config import load_course
    from autograder.release import generate, prepare_course

    tmp = Path(tempfile.mkdtemp(prefix="vaekit-test-release-"))
    atexit.register(shutil.rmtree, tmp, True)
    course = load_course()
    root = prepare_course(tmp / "course", course)
    return generate(root, course), root / "source" / course.assignment


def notebook_names(release_dir: Path) -> list[str]:
    return sorted(p.stem for p in release_dir.glob("*.ipynb"))


def solution(name: str) -> nbformat.NotebookNode:
    """The unfilled source of a notebook (solutions/, course placeholders kept)."""
    return nbformat.read(SOLUTIONS / f"{name}.ipynb", as_version=4)


# ------------------------------------------------------------------------------ running the grader
def grade(submissions: Path, out: Path, jobs: int = 2, *extra: str, env: dict | None = None) -> SimpleNamespace:
    """`python -m autograder grade SUBMISSIONS --out OUT --jobs N` in its own process."""
    cmd = [
        sys.executable,
        "-m",
        "autograder",
        "grade",
        str(submissions),
        "--out",
        str(out),
        "--jobs",
        str(jobs),
        "--timeout",
        str(CELL_TIMEOUT),
        "--no-progress",
        *extra,
    ]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1500, env=env)
    return SimpleNamespace(proc=proc, seconds=time.monotonic() - t0, out=out)


def rows(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def point_problems(expected: dict, graded: list[dict]) -> list[str]:
    """Where grades.csv differs from EXPECTED (status and points of every test cell)."""
    by: dict[tuple[str, str], list[dict]] = {}
    for r in graded:
        by.setdefault((r["student"], r["notebook"]), []).append(r)
    problems = []
    for student, notebooks in sorted(expected.items()):
        for notebook, (status, zero) in sorted(notebooks.items()):
            mine = by.get((student, notebook))
            if not mine:
                problems.append(f"{student}/{notebook}: no rows")
                continue
            statuses = {r["status"] for r in mine}
            if statuses != {status}:
                problems.append(f"{student}/{notebook}: status {statuses}, expected {status}")
            for r in mine:
                want = 0.0 if zero is None or r["cell"] in zero else float(r["max_points"])
                if float(r["points"]) != want:
                    problems.append(f"{student}/{notebook}/{r['cell']}: {r['points']} points, expected {want:g}")
    return problems


# ------------------------------------------------------------------------------ the corpus
def _nb(path: Path, notebook: str) -> nbformat.NotebookNode:
    return nbformat.read(path / f"{notebook}.ipynb", as_version=4)


def build(
    release_dir: Path,
    source_dir: Path,
    out: Path,
    notebooks: list[str] | None = None,
    hostile: bool = True,
    bugs: list[str] | None = None,
    basics: bool = True,
) -> dict[str, dict[str, tuple[str, list[str] | None]]]:
    """Write the corpus; returns {student: {notebook: (status, zero-scored cells or None for all)}}.

    notebooks: the notebooks of the course (default: all released); basics: the `full` and
    `stub` students; bugs: the notebooks whose buggy variants to include (default: all);
    hostile: the damaged and hostile students (on notebook 01).
    """
    names = notebooks or sorted(p.stem for p in release_dir.glob("*.ipynb"))
    release = {n: _nb(release_dir, n) for n in names}
    full = {n: samples.full(release[n], _nb(source_dir, n)) for n in names}
    expected: dict[str, dict] = {}

    def put(student: str, notebook: str | None, content, status: str, zero: list[str] | None):
        entry = expected.setdefault(student, {})
        if notebook:
            samples.write(content, out / student / f"{notebook}.ipynb")
            entry[notebook] = (status, zero)

    for n in names:
        if basics:
            put("full", n, full[n], "ok", [])
            put("stub", n, release[n], "ok", None)
        if bugs is not None and n not in bugs:
            continue
        for variant, (_, _, _, zero) in samples.BUGS.get(n, {}).items():
            put(f"buggy_{variant}", n, samples.buggy(full[n], n, variant), "ok", zero)
    if AE in names and hostile:
        _hostile(full[AE], put, out)
    for student in expected:
        for n in names:
            expected[student].setdefault(n, ("missing", None))
    return expected


def _hostile(f, put, out: Path) -> None:
    put("stripped", AE, samples.strip_metadata(f), "repaired", [])
    # deleted, duplicated, moved and re-typed cells, in one notebook
    m = copy.deepcopy(f)
    loss = samples.find_cell(m, "ae_loss")
    bad_copy = copy.deepcopy(m.cells[loss])
    bad_copy.source = "def ae_loss(x, logits):\n    return 0 * logits.sum()\n"
    m.cells.insert(loss, bad_copy)  # an earlier duplicate (same grade_id)
    del m.cells[samples.find_cell(m, "test_ae_forward")]  # a deleted test cell
    sample_cell = m.cells.pop(samples.find_cell(m, "sample_autoencoder"))
    m.cells.append(sample_cell)  # moved below its test
    arch = samples.find_cell(m, "ae_model")
    m.cells[arch] = nbformat.v4.new_markdown_cell(m.cells[arch].source, metadata=m.cells[arch].metadata)
    put("mangled", AE, m, "repaired", [])
    put("corrupt", AE, samples.truncated(f), "unreadable", None)
    put("pdf", AE, samples.PDF, "unreadable", None)
    put("empty", AE, b"", "unreadable", None)
    put(
        "future_format",
        AE,
        json.dumps({"nbformat": 5, "nbformat_minor": 0, "cells": [], "metadata": {}}),
        "unreadable",
        None,
    )
    # a wrong forward, the comparisons patched in the kernel, and an edited test cell: the judge
    # compares in its own process (the patch changes nothing), the released test is graded (repaired)
    forward_bug = samples.with_def(f, "ae_model", "Autoencoder.forward", FORWARD_BUG)
    put(
        "patched", AE, _edit_test(samples.insert_after(forward_bug, "ae_model", PATCH)), "repaired", ["test_ae_forward"]
    )
    # reading the hidden checks (not shown in the sandbox): evidence, so tampered
    snoop = SNOOP.format(path=str(REPO / "autograder" / "checks" / "ae.py"))
    put("snoop", AE, samples.insert_after(f, "ae_model", snoop), "tampered", [])
    # a submission under the wrong name, with extra files: nothing to grade, warnings
    samples.write(f, out / "misnamed" / "Autoencoder.ipynb")
    samples.write("my notes", out / "misnamed" / "notes.txt")
    put("misnamed", None, None, "missing", None)


def _edit_test(nb):
    nb = copy.deepcopy(nb)
    cell = nb.cells[samples.find_cell(nb, "test_ae_loss")]
    cell.source = "pass  # my own test instead\n"
    return nb


# ------------------------------------------------------------------------------ known bugs shared by tests
def evaluate_mean_of_batch_means(model, x, beta=1.0, batch_size=500):
    """The pitfall notebook 3 names: a plain average of batch means (wrong when the last batch is smaller)."""
    model.eval()
    values = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            b = x[start : start + batch_size]
            logits, mu, logvar = model(b)
            values.append([t.item() for t in reference.vae_loss(b, logits, mu, logvar, beta)])
    loss, recon, kl = torch.tensor(values).mean(0).tolist()
    return {"loss": loss, "recon": recon, "kl": kl}
