"""Reading and repairing submissions, and the static tamper scan (no kernels: fast)."""
from __future__ import annotations

import copy
import json

import nbformat
import pytest

from autograder import samples
from autograder.intake import build_reference, rebuild, read_cells, take_in, worst
from autograder.tamper import Scanner

import corpus




@pytest.fixture(scope="module")
def release():
    return corpus.release_dirs()


@pytest.fixture(scope="module")
def names(release):
    return sorted(p.stem for p in release[0].glob("*.ipynb"))


def _ref(release, name):
    rel = nbformat.read(release[0] / f"{name}.ipynb", as_version=4)
    src = nbformat.read(release[1] / f"{name}.ipynb", as_version=4)
    return build_reference(name, rel, src), rel, src


def _cells(nb):
    return json.loads(json.dumps(nb))["cells"]


def _ids(nb):
    return [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells]


def _answers(nb):
    return {c.metadata["nbgrader"]["grade_id"]: c.source.strip() for c in nb.cells
            if c.metadata.get("nbgrader", {}).get("solution")}


# -------------------------------------------------------------------------- reading
@pytest.mark.parametrize("content, words", [
    (b"", "empty"),
    (samples.PDF, "PDF"),
    (b"PK\x03\x04rest", "zip"),
    (b"\xff\xfe\x00garbage", "not a text file"),
    (b'{"cells": [', "not valid JSON"),
    (b"[1, 2, 3]", "not a notebook"),
    (b'{"nbformat": 5, "cells": []}', "format 5"),
    (b'{"metadata": {}}', "not supported"),
])
def test_unreadable_files_say_why(tmp_path, content, words):
    path = tmp_path / "nb.ipynb"
    path.write_bytes(content)
    from autograder.intake import Unreadable

    with pytest.raises(Unreadable, match=words):
        read_cells(path)


def test_unreadable_status_for_a_truncated_notebook(release, names, tmp_path):
    ref, rel, src = _ref(release, names[0])
    path = samples.write(samples.truncated(samples.full(rel, src)), tmp_path / "nb.ipynb")
    intake = take_in(ref, path)
    assert intake.status == "unreadable" and intake.nb is None and "JSON" in intake.notes[0]


def test_sources_as_lists_and_odd_cells_are_read(tmp_path):
    nb = {"nbformat": 4, "nbformat_minor": 2, "metadata": {},
          "cells": [{"cell_type": "code", "source": ["a = 1\n", "b = 2"], "metadata": {}},
                    {"cell_type": "weird"}, "not a cell"]}
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(nb))
    cells, notes = read_cells(path)
    assert [c["source"] for c in cells] == ["a = 1\nb = 2"]
    assert notes == ["skipped a damaged cell", "skipped a damaged cell"]


# -------------------------------------------------------------------------- matching
def test_release_and_full_solution_pass_untouched(release, names):
    for name in names:
        ref, rel, src = _ref(release, name)
        for nb in (rel, samples.full(rel, src)):
            intake = rebuild(ref, _cells(nb))
            assert intake.status == "ok", (name, intake.notes)
            assert _ids(intake.nb) == _ids(rel)
            assert [c.cell_type for c in intake.nb.cells] == [c.cell_type for c in rel.cells]


def test_stripped_metadata_is_restored_by_content(release, names):
    for name in names:
        ref, rel, src = _ref(release, name)
        full = samples.full(rel, src)
        intake = rebuild(ref, _cells(samples.strip_metadata(full)))
        assert intake.status == "repaired", (name, intake.notes)
        assert "metadata" in intake.notes[0]
        assert _ids(intake.nb) == _ids(rel), name
        assert _answers(intake.nb) == _answers(full), name


def test_deleted_duplicated_moved_and_retyped_cells(release):
    ref, rel, src = _ref(release, "01_autoencoder")
    nb = samples.full(rel, src)
    loss = samples.find_cell(nb, "ae_loss")
    early = copy.deepcopy(nb.cells[loss])
    early.source = "def ae_loss(x, logits):\n    return 0 * logits.sum()\n"
    nb.cells.insert(loss, early)
    del nb.cells[samples.find_cell(nb, "test_ae_forward")]
    nb.cells.append(nb.cells.pop(samples.find_cell(nb, "sample_autoencoder")))
    model = samples.find_cell(nb, "ae_model")
    nb.cells[model] = nbformat.v4.new_markdown_cell(nb.cells[model].source, metadata=nb.cells[model].metadata)
    intake = rebuild(ref, _cells(nb))
    notes = " | ".join(intake.notes)
    assert intake.status == "repaired", notes
    for words in ("appears 2 times", "test_ae_forward was deleted", "moved", "changed back to code"):
        assert words in notes
    ids = [i for i in _ids(intake.nb) if i]
    assert ids == [i for i in _ids(rel) if i]
    out = intake.nb.cells
    assert out[samples.find_cell(intake.nb, "ae_model")].cell_type == "code"
    # the last copy of the duplicated answer is graded; the earlier one runs before it
    graded = out[samples.find_cell(intake.nb, "ae_loss")].source
    assert "reduction=\"sum\"" in graded
    assert any("0 * logits.sum()" in c.source for c in out[:samples.find_cell(intake.nb, "ae_loss")])


def test_a_deleted_answer_is_graded_as_the_stub_and_named(release):
    ref, rel, src = _ref(release, "01_autoencoder")
    nb = samples.strip_metadata(samples.full(rel, src))
    del nb.cells[samples.find_cell(samples.full(rel, src), "ae_loss")]
    intake = rebuild(ref, _cells(nb))
    assert any("could not find the answer cell ae_loss" in n for n in intake.notes)
    assert "NotImplementedError" in intake.nb.cells[samples.find_cell(intake.nb, "ae_loss")].source


def test_free_code_cells_of_the_release_come_back(release):
    ref, rel, src = _ref(release, "01_autoencoder")
    nb = samples.full(rel, src)
    training = next(i for i, c in enumerate(nb.cells)
                    if c.cell_type == "code" and "nbgrader" not in c.metadata and "train_autoencoder(ae" in c.source)
    del nb.cells[training]
    intake = rebuild(ref, _cells(nb))
    assert intake.status == "repaired"
    assert any("train_autoencoder(ae" in c.source for c in intake.nb.cells)


def test_student_cells_stay_after_the_cell_they_followed(release):
    ref, rel, src = _ref(release, "01_autoencoder")
    nb = samples.insert_after(samples.full(rel, src), "ae_loss", "print('my own check')")
    intake = rebuild(ref, _cells(nb))
    assert intake.status == "ok"
    k = samples.find_cell(intake.nb, "ae_loss")
    assert intake.nb.cells[k + 1].source == "print('my own check')"


def test_an_edited_test_cell_is_tampering_and_restored(release):
    ref, rel, src = _ref(release, "01_autoencoder")
    nb = samples.full(rel, src)
    k = samples.find_cell(nb, "test_ae_loss")
    nb.cells[k].source = nb.cells[k].source.replace("assert abs(", "# assert abs(")
    intake = rebuild(ref, _cells(nb))
    assert intake.status == "tampered"
    assert intake.nb.cells[samples.find_cell(intake.nb, "test_ae_loss")].source == rel.cells[k].source


def test_worst_status_order():
    assert worst("ok", "repaired") == "repaired"
    assert worst("repaired", "timeout", "tampered") == "tampered"
    assert worst("error", "timeout") == "timeout"


# -------------------------------------------------------------------------- tamper scan
HOSTILE = [
    "torch.testing.assert_close = lambda *a, **k: None",
    "import torch.testing as tt\ntt.assert_close = print",
    "torch.allclose = lambda *a, **k: True",
    "torch.Tensor.allclose = lambda *a, **k: True",
    "setattr(torch, 'allclose', lambda *a: True)",
    "import builtins\nbuiltins.abs = lambda x: 0",
    "__builtins__.len = lambda x: 0",
    "import sys\nsys.modules['autograder.checks.ae'] = None",
    "vaekit.check_shape = lambda *a, **k: None",
    "def f():\n    F.binary_cross_entropy_with_logits = None",
    "torch = None",
    "def vaekit():\n    pass",
    "from autograder.checks import ae",
    "text = open('../../autograder/checks/ae.py').read()",
    "import sqlite3",
    "exec('x = 1')",
    "get_ipython().set_custom_exc((Exception,), lambda *a, **k: None)",
    "import inspect\ninspect.currentframe().f_back.f_globals['x'] = 1",
    "hidden.check_ae_loss.__code__ = (lambda *a: None).__code__",
    "!cat ../../gradebook.db",
    "vars(torch.testing).update(assert_close=print)",
    "torch.testing.__dict__['assert_close'] = print",
    "from pathlib import Path\nroot = Path(vaekit.__file__).parents[1]\nprint((root / 'solutions').iterdir())",
]
HARMLESS = [
    "model.encoder = nn.Linear(2, 2)",
    "torch.backends.cudnn.benchmark = True",
    "self.fc = nn.Linear(4, 4)\nsetattr(self, 'layer', nn.ReLU())",
    "x = torch.zeros(3)\nx[0] = 1",
    "%matplotlib inline\nprint('hello')",
    "history = {'loss': []}\nhistory['loss'].append(1.0)",
    "import numpy as np\nnp.random.seed(0)",
    "print('Training... done.')",
    "def ae_loss(x, logits):\n    return F.binary_cross_entropy_with_logits(logits, x, reduction='sum') / len(x)",
]


@pytest.mark.parametrize("code", HOSTILE)
def test_scan_flags_tampering(code):
    assert Scanner(protected={"torch", "vaekit", "F", "nn", "math"}).scan(code), code


@pytest.mark.parametrize("code", HARMLESS)
def test_scan_leaves_ordinary_code_alone(code):
    assert Scanner(protected={"torch", "vaekit", "F", "nn", "math"}).scan(code) == []


def test_scan_finds_nothing_in_the_solutions(release, names):
    for name in names:
        ref, rel, src = _ref(release, name)
        intake = rebuild(ref, _cells(samples.full(rel, src)))
        assert intake.status == "ok", (name, intake.notes)
        for cell in src.cells:
            if cell.cell_type == "code" and not cell.metadata.get("nbgrader", {}).get("locked"):
                assert ref.scanner.scan(cell.source) == [], (name, cell.source[:80])
