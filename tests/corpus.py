"""The sample-submission corpus of the autograder tests, made from the current notebooks.

`build(release_dir, source_dir, out)` writes out/<student>/<notebook>.ipynb and
returns EXPECTED: for each student and notebook, the status and the test cells
expected to score 0 (None: all of them). A student not listed for a notebook
did not submit it (status `missing`).
"""
from __future__ import annotations

import atexit
import copy
import functools
import json
import shutil
import tempfile
from pathlib import Path

import nbformat

from autograder import samples

AE = "01_autoencoder"

# code for the damaged and hostile students (all on notebook 01, built from the full solution)
INFINITE_LOOP = "# a cell that never ends\nwhile True:\n    pass\n"
SYS_EXIT = "import sys\nsys.exit('bye')\n"
OS_EXIT = "import os\nos._exit(1)\n"
MEMORY_BOMB = """\
def hog():
    blocks = []
    while True:
        blocks.append(torch.ones(2**27))   # 512 MB at a time, until the limit
hog()
"""
HUGE_OUTPUT = "print('x' * 100_000_000)\nfor i in range(200_000):\n    print(i)\n"
FORWARD_BUG = '''
def forward(self, x):
    return self.decode(self.encode(x)) + 0.5
'''
PATCH_STATIC = "import torch.testing\ntorch.testing.assert_close = lambda *args, **kwargs: None\n"
# the same, hidden from the static scan; the runtime guard has to catch it
PATCH_RUNTIME = ("_t = getattr(torch, 'test' + 'ing')\n"
                 "_t.__setattr__('assert_' + 'close', lambda *a, **k: None)\n")
READS_HIDDEN = "source = open('../../autograder/checks/ae.py').read()\n"


@functools.lru_cache(maxsize=1)
def release_dirs() -> tuple[Path, Path]:
    """(release, source) folders of a fresh nbgrader release of solutions/, once per test process."""
    from autograder.config import load_course
    from autograder.grade import generate_release

    tmp = Path(tempfile.mkdtemp(prefix="vaekit-test-release-"))
    atexit.register(shutil.rmtree, tmp, True)
    course = load_course()
    release = generate_release(tmp / "course", course)
    return release, tmp / "course" / "source" / course.assignment


def _nb(path: Path, notebook: str) -> nbformat.NotebookNode:
    return nbformat.read(path / f"{notebook}.ipynb", as_version=4)


def build(release_dir: Path, source_dir: Path, out: Path, notebooks: list[str] | None = None,
          hostile: bool = True) -> dict[str, dict[str, tuple[str, list[str] | None]]]:
    """Write the corpus; returns {student: {notebook: (status, zero-scored cells or None for all)}}."""
    names = notebooks or sorted(p.stem for p in release_dir.glob("*.ipynb"))
    release = {n: _nb(release_dir, n) for n in names}
    full = {n: samples.full(release[n], _nb(source_dir, n)) for n in names}
    expected: dict[str, dict] = {}

    def put(student: str, notebook: str, content, status: str, zero: list[str] | None):
        samples.write(content, out / student / f"{notebook}.ipynb")
        expected.setdefault(student, {})[notebook] = (status, zero)

    for n in names:
        put("full", n, full[n], "ok", [])
        put("stub", n, release[n], "ok", None)
        for variant, (_, _, _, zero) in samples.BUGS.get(n, {}).items():
            put(f"buggy_{variant}", n, samples.buggy(full[n], n, variant), "ok", zero)
    if AE not in names or not hostile:
        return expected

    f = full[AE]
    put("stripped", AE, samples.strip_metadata(f), "repaired", [])
    # deleted, duplicated, moved and re-typed cells, in one notebook
    m = copy.deepcopy(f)
    loss = samples.find_cell(m, "ae_loss")
    bad_copy = copy.deepcopy(m.cells[loss])
    bad_copy.source = "def ae_loss(x, logits):\n    return 0 * logits.sum()\n"
    m.cells.insert(loss, bad_copy)                            # an earlier duplicate (same grade_id)
    del m.cells[samples.find_cell(m, "test_ae_forward")]     # a deleted test cell
    sample_cell = m.cells.pop(samples.find_cell(m, "sample_autoencoder"))
    m.cells.append(sample_cell)                               # moved below its test
    arch = samples.find_cell(m, "ae_model")
    m.cells[arch] = nbformat.v4.new_markdown_cell(m.cells[arch].source, metadata=m.cells[arch].metadata)
    put("mangled", AE, m, "repaired", [])
    put("edited_test", AE, _edit_test(f), "tampered", [])
    put("corrupt", AE, samples.truncated(f), "unreadable", None)
    put("pdf", AE, samples.PDF, "unreadable", None)
    put("empty", AE, b"", "unreadable", None)
    put("future_format", AE, json.dumps({"nbformat": 5, "nbformat_minor": 0, "cells": [], "metadata": {}}),
        "unreadable", None)
    put("infinite_loop", AE, samples.insert_after(f, "test_ae_loss", INFINITE_LOOP), "timeout", [])
    put("sys_exit", AE, samples.insert_after(f, "test_ae_sampling", SYS_EXIT), "error", [])
    put("os_exit", AE, samples.insert_after(f, "test_ae_loss", OS_EXIT), "error",
        ["test_ae_training", "test_ae_sampling"])
    put("memory_bomb", AE, samples.insert_after(f, "test_ae_loss", MEMORY_BOMB), "error", [])
    put("huge_output", AE, samples.insert_after(f, "test_ae_loss", HUGE_OUTPUT), "ok", [])
    forward_bug = samples.with_def(f, "ae_model", "Autoencoder.forward", FORWARD_BUG)
    put("tampered_static", AE, samples.insert_after(forward_bug, "ae_model", PATCH_STATIC, "code"),
        "tampered", ["test_ae_forward"])
    put("tampered_runtime", AE, samples.insert_after(forward_bug, "ae_model", PATCH_RUNTIME, "code"),
        "tampered", ["test_ae_forward"])
    # a submission under the wrong name, with extra files: nothing to grade, warnings
    samples.write(f, out / "misnamed" / "Autoencoder.ipynb")
    samples.write("my notes", out / "misnamed" / "notes.txt")
    expected["misnamed"] = {}
    for student in expected:
        for n in names:
            expected[student].setdefault(n, ("missing", None))
    return expected


def _edit_test(nb):
    nb = copy.deepcopy(nb)
    cell = nb.cells[samples.find_cell(nb, "test_ae_loss")]
    cell.source = cell.source.replace("assert abs(", "# assert abs(")
    return nb
