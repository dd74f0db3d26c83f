"""Reading and repairing submissions, and what the intake marks to run (no kernels: fast)."""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path

import corpus
import nbformat
import pytest

from autograder import samples
from autograder.config import Course, load_course
from autograder.intake import build_reference, read_cells, rebuild, take_in
from autograder.run import RUN_KEY, cells_to_run
from autograder.status import ORDER, worst

AE = corpus.AE


@pytest.fixture(scope="module")
def release():
    return corpus.release_dirs()


@pytest.fixture(scope="module")
def names(release):
    return sorted(p.stem for p in release[0].glob("*.ipynb"))


def _ref(release, name):
    """(reference, released notebook, filled-in source); the reference is built as grade.py does."""
    rel = nbformat.read(release[0] / f"{name}.ipynb", as_version=4)
    src = nbformat.read(release[1] / f"{name}.ipynb", as_version=4)
    return build_reference(name, rel, corpus.solution(name)), rel, src


def _cells(nb):
    """The cells as the intake reads them from a submitted file (read_cells)."""
    with tempfile.TemporaryDirectory() as tmp:
        cells, _ = read_cells(samples.write(nb, Path(tmp) / "nb.ipynb"))
    return cells


def _ids(nb):
    return [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells]


def _answers(nb):
    return {
        c.metadata["nbgrader"]["grade_id"]: c.source.strip()
        for c in nb.cells
        if c.metadata.get("nbgrader", {}).get("solution")
    }


# -------------------------------------------------------------------------- reading
@pytest.mark.parametrize(
    "content, words",
    [
        (b"", "empty"),
        (samples.PDF, "PDF"),
        (b"PK\x03\x04rest", "zip"),
        (b"\xff\xfe\x00garbage", "not a text file"),
        (b'{"cells": [', "not valid JSON"),
        (b"[1, 2, 3]", "not a notebook"),
        (b'{"nbformat": 5, "cells": []}', "format 5"),
        (b'{"metadata": {}}', "not supported"),
    ],
)
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
    nb = {
        "nbformat": 4,
        "nbformat_minor": 2,
        "metadata": {},
        "cells": [
            {"cell_type": "code", "source": ["a = 1\n", "b = 2"], "metadata": {}},
            {"cell_type": "weird"},
            "not a cell",
        ],
    }
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
    ref, rel, src = _ref(release, AE)
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
    assert 'reduction="sum"' in graded
    assert any("0 * logits.sum()" in c.source for c in out[: samples.find_cell(intake.nb, "ae_loss")])


def test_a_deleted_answer_is_graded_as_the_stub_and_named(release):
    ref, rel, src = _ref(release, AE)
    nb = samples.strip_metadata(samples.full(rel, src))
    del nb.cells[samples.find_cell(samples.full(rel, src), "ae_loss")]
    intake = rebuild(ref, _cells(nb))
    assert any("could not find the answer cell ae_loss" in n for n in intake.notes)
    assert "NotImplementedError" in intake.nb.cells[samples.find_cell(intake.nb, "ae_loss")].source


def test_free_code_cells_of_the_release_come_back(release):
    ref, rel, src = _ref(release, AE)
    nb = samples.full(rel, src)
    training = next(
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and "nbgrader" not in c.metadata and "train_autoencoder(ae" in c.source
    )
    del nb.cells[training]
    intake = rebuild(ref, _cells(nb))
    assert intake.status == "repaired"
    assert any("train_autoencoder(ae" in c.source for c in intake.nb.cells)


def test_student_cells_stay_after_the_cell_they_followed(release):
    ref, rel, src = _ref(release, AE)
    nb = samples.insert_after(samples.full(rel, src), "ae_loss", "print('my own check')")
    intake = rebuild(ref, _cells(nb))
    assert intake.status == "ok"
    k = samples.find_cell(intake.nb, "ae_loss")
    assert intake.nb.cells[k + 1].source == "print('my own check')"


def test_an_edited_test_cell_is_repaired_and_the_released_version_graded(release):
    ref, rel, src = _ref(release, AE)
    nb = samples.full(rel, src)
    k = samples.find_cell(nb, "test_ae_loss")
    nb.cells[k].source = "pass  # my own test instead"
    intake = rebuild(ref, _cells(nb))
    assert intake.status == "repaired"
    assert "locked cell test_ae_loss was edited: the released version was graded" in intake.notes
    assert intake.nb.cells[samples.find_cell(intake.nb, "test_ae_loss")].source == rel.cells[k].source


def test_an_edited_locked_code_cell_is_repaired_not_tampered(release):
    ref, rel, src = _ref(release, AE)
    nb = samples.full(rel, src)
    k = samples.find_cell(nb, "data")
    nb.cells[k].source += "\nimport os; os.system('rm -rf /')"
    intake = rebuild(ref, _cells(nb))
    assert intake.status == "repaired", intake.notes
    assert any("locked cell data was edited" in n for n in intake.notes)
    assert intake.nb.cells[samples.find_cell(intake.nb, "data")].source == rel.cells[k].source


def test_worst_status_order():
    assert worst("ok", "repaired") == "repaired"
    assert worst("repaired", "renamed") == "renamed"
    assert worst("renamed", "error") == "error"
    assert worst("repaired", "timeout", "tampered") == "tampered"
    assert worst("error", "timeout") == "timeout"
    assert worst("tampered", "missing", "unreadable") == "unreadable"
    assert ORDER[-1] == "ok" and "renamed" in ORDER


# -------------------------------------------------------------------------- outputs and what runs
def _labelled(nb):
    """grade_id (or the first line of the source) of each code cell -> (run?, outputs)."""
    out = {}
    for cell in nb.cells:
        if cell.cell_type == "code":
            label = cell.metadata.get("nbgrader", {}).get("grade_id") or cell.source.splitlines()[0]
            out[label] = (cell.metadata[RUN_KEY]["run"], cell.outputs)
    return out


def _with_outputs(nb):
    """Give every code cell an output of its own (what a student's notebook holds after Run All)."""
    nb = copy.deepcopy(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            cell.outputs = [
                nbformat.v4.new_output("stream", name="stdout", text=f"output of cell {i}\n"),
                nbformat.v4.new_output("display_data", data={"text/plain": f"figure {i}"}),
            ]
    return nb


def test_submitted_outputs_are_kept_on_rebuilt_code_cells(release):
    ref, rel, src = _ref(release, AE)
    nb = _with_outputs(samples.insert_after(samples.full(rel, src), "ae_loss", "print('mine')"))
    for stripped in (False, True):
        submitted = samples.strip_metadata(nb) if stripped else nb
        intake = rebuild(ref, _cells(submitted))
        given = {c.source: c.outputs for c in submitted.cells if c.cell_type == "code"}
        for cell in intake.nb.cells:
            if cell.cell_type != "code" or cell.source not in given:
                continue
            if cell.metadata.get("nbgrader", {}).get("grade"):
                assert cell.outputs == [], "a test cell's outputs come from the judge, not the student"
            else:
                assert [o.get("text") or o["data"]["text/plain"] for o in cell.outputs] == [
                    o.get("text") or o["data"]["text/plain"] for o in given[cell.source]
                ], (stripped, cell.source[:40])
        free = [c for c in intake.nb.cells if c.source.startswith("ae.eval()")]
        assert free and free[0].outputs, "the release's plotting cells keep the student's figures"


def test_run_marks_definitions_and_never_tests(release, names):
    for name in names:
        ref, rel, src = _ref(release, name)
        intake = rebuild(ref, _cells(samples.full(rel, src)))
        for cell in intake.nb.cells:
            if cell.cell_type != "code":
                assert RUN_KEY not in cell.metadata
                continue
            meta = cell.metadata.get("nbgrader", {})
            run = cell.metadata[RUN_KEY]["run"]
            if meta.get("grade"):
                assert run is False, (name, meta["grade_id"])
            elif meta.get("solution") or meta.get("locked"):
                assert run is True, (name, meta.get("grade_id"))
            else:  # the release's own training and plotting cells, untouched
                assert run is False, (name, cell.source[:60])
        labels = [label for label, _ in cells_to_run(intake.nb)]
        assert labels[:2] == ["setup", "data"] or labels[:1] == ["setup"], (name, labels)


def test_run_marks_the_students_own_and_changed_cells(release):
    ref, rel, src = _ref(release, AE)
    nb = samples.insert_after(samples.full(rel, src), "ae_loss", "def helper():\n    return 1")
    training = next(
        c
        for c in nb.cells
        if c.cell_type == "code" and "nbgrader" not in c.metadata and "train_autoencoder(ae" in c.source
    )
    training.source += "\nprint('changed')"
    intake = rebuild(ref, _cells(nb))
    marks = _labelled(intake.nb)
    assert marks["def helper():"][0] is True
    changed = next(c for c in intake.nb.cells if c.source.endswith("print('changed')"))
    assert changed.metadata[RUN_KEY]["run"] is True
    untouched = next(c for c in intake.nb.cells if c.source.startswith("ae.eval()"))
    assert untouched.metadata[RUN_KEY]["run"] is False
    assert marks["test_ae_loss"][0] is False and marks["ae_loss"][0] is True


def test_a_stub_left_unanswered_still_runs(release):
    ref, rel, _ = _ref(release, AE)
    intake = rebuild(ref, _cells(rel))
    marks = _labelled(intake.nb)
    for gid in ("setup", "data", "ae_model", "ae_loss", "train_autoencoder", "sample_autoencoder"):
        assert marks[gid][0] is True, gid


# -------------------------------------------------------------------------- earlier releases
def _setup_from(course: Course, name: str) -> str:
    source = corpus.solution(name)
    return course.substitute(source.cells[samples.find_cell(source, "setup")].source)


def test_a_setup_cell_from_another_course_toml_counts_as_unchanged(release):
    ref, rel, src = _ref(release, AE)
    here = load_course()
    assert "{{COURSE_" in corpus.solution(AE).cells[samples.find_cell(rel, "setup")].source
    earlier = Course(github_repo="someone-else/old-course", ref="v0.1", assignment=here.assignment)
    old_setup = _setup_from(earlier, AE)
    assert old_setup != rel.cells[samples.find_cell(rel, "setup")].source
    nb = samples.full(rel, src)
    nb.cells[samples.find_cell(nb, "setup")].source = old_setup
    for submitted in (nb, samples.strip_metadata(nb)):
        intake = rebuild(ref, _cells(submitted))
        assert not any("setup" in n for n in intake.notes), intake.notes
        assert intake.status == ("ok" if submitted is nb else "repaired"), intake.notes
        # the released version (this course's settings) is what runs
        assert (
            intake.nb.cells[samples.find_cell(intake.nb, "setup")].source
            == rel.cells[samples.find_cell(rel, "setup")].source
        )


def test_a_setup_cell_edited_beyond_the_placeholders_is_repaired(release):
    ref, rel, src = _ref(release, AE)
    nb = samples.full(rel, src)
    k = samples.find_cell(nb, "setup")
    nb.cells[k].source = nb.cells[k].source.replace("import subprocess, sys", "import subprocess, sys, os")
    intake = rebuild(ref, _cells(nb))
    assert intake.status == "repaired"
    assert "locked cell setup was edited: the released version was graded" in intake.notes
