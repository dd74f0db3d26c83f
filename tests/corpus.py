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

LOOP_TIMEOUT = 10   # seconds, for the cells that never end

# code for the damaged and hostile students (all on notebook 01, built from the full solution)
LOOP = "import time\nwhile True:          # never ends, but stops when interrupted\n    time.sleep(0.1)\n"
STUBBORN_LOOP = """\
import time
while True:              # never ends, and ignores the interrupt
    try:
        time.sleep(0.5)
    except KeyboardInterrupt:
        pass
"""
MEMORY_BOMB = """\
def hog():
    blocks = []
    while True:
        blocks.append(torch.ones(2**27))   # 512 MB at a time, until the kernel's limit
hog()
"""
OS_EXIT = "import os\nos._exit(1)\n"
HUGE_OUTPUT = "print('x' * 100_000_000)\nfor i in range(100_000):\n    print(i)\n"
SYS_EXIT = "import sys\nsys.exit('bye')\n"
FORWARD_BUG = '''
def forward(self, x):
    return self.decode(self.encode(x)) + 0.5
'''
PATCH_STATIC = "import torch.testing\ntorch.testing.assert_close = lambda *args, **kwargs: None\n"
# the same, hidden from the static scan: the runtime guard has to catch it
PATCH_RUNTIME = ("_t = getattr(torch, 'test' + 'ing')\n"
                 "_t.__setattr__('assert_' + 'close', lambda *a, **k: None)\n")


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
          hostile: bool = True, bugs: list[str] | None = None, basics: bool = True,
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
    m.cells.insert(loss, bad_copy)                            # an earlier duplicate (same grade_id)
    del m.cells[samples.find_cell(m, "test_ae_forward")]     # a deleted test cell
    sample_cell = m.cells.pop(samples.find_cell(m, "sample_autoencoder"))
    m.cells.append(sample_cell)                               # moved below its test
    arch = samples.find_cell(m, "ae_model")
    m.cells[arch] = nbformat.v4.new_markdown_cell(m.cells[arch].source, metadata=m.cells[arch].metadata)
    put("mangled", AE, m, "repaired", [])
    put("corrupt", AE, samples.truncated(f), "unreadable", None)
    put("pdf", AE, samples.PDF, "unreadable", None)
    put("empty", AE, b"", "unreadable", None)
    put("future_format", AE, json.dumps({"nbformat": 5, "nbformat_minor": 0, "cells": [], "metadata": {}}),
        "unreadable", None)
    # a loop that stops when interrupted (later cells still run), then one that does not (they cannot)
    loops = samples.insert_after(samples.insert_after(f, "test_ae_loss", LOOP), "test_ae_training", STUBBORN_LOOP)
    for cell in loops.cells:   # a cell may lower its own timeout: the test need not wait for the long one
        if "while True" in cell.source:
            cell.metadata["timeout"] = LOOP_TIMEOUT
    put("loops", AE, loops, "timeout", ["test_ae_sampling"])
    # a cell that fills the memory limit (later cells still run), then os._exit (they cannot)
    crashes = samples.insert_after(samples.insert_after(f, "test_ae_loss", MEMORY_BOMB), "test_ae_training", OS_EXIT)
    put("crashes", AE, crashes, "error", ["test_ae_sampling"])
    # 100 MB of output, then sys.exit() (IPython turns it into an error in that cell only)
    flood = samples.insert_after(samples.insert_after(f, "test_ae_loss", HUGE_OUTPUT), "test_ae_sampling", SYS_EXIT)
    put("flood", AE, flood, "error", [])
    # monkeypatching the comparison the tests use, to hide a wrong forward; and an edited test cell
    forward_bug = samples.with_def(f, "ae_model", "Autoencoder.forward", FORWARD_BUG)
    put("tampered_static", AE, _edit_test(samples.insert_after(forward_bug, "ae_model", PATCH_STATIC)),
        "tampered", ["test_ae_forward"])
    put("tampered_runtime", AE, samples.insert_after(forward_bug, "ae_model", PATCH_RUNTIME),
        "tampered", ["test_ae_forward"])
    # a submission under the wrong name, with extra files: nothing to grade, warnings
    samples.write(f, out / "misnamed" / "Autoencoder.ipynb")
    samples.write("my notes", out / "misnamed" / "notes.txt")
    put("misnamed", None, None, "missing", None)


def _edit_test(nb):
    nb = copy.deepcopy(nb)
    cell = nb.cells[samples.find_cell(nb, "test_ae_loss")]
    cell.source = cell.source.replace("assert abs(", "# assert abs(")
    return nb
