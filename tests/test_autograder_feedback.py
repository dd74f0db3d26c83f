"""Feedback cleaning, the CLI's refusals and the demo's pieces (fast: no kernels)."""
from __future__ import annotations

import subprocess
import sys

import nbformat
import pytest

from autograder.config import REPO
from autograder.demo import make_submissions, table
from autograder.feedback import clean, render, secret_lines

import corpus




@pytest.fixture(scope="module")
def ae():
    release_dir, source_dir = corpus.release_dirs()
    name = sorted(p.stem for p in release_dir.glob("*.ipynb"))[0]
    rel = nbformat.read(release_dir / f"{name}.ipynb", as_version=4)
    src = nbformat.read(source_dir / f"{name}.ipynb", as_version=4)
    return name, rel, src


def _autograded(src):
    """What nbgrader leaves after autograding: hidden tests back in, outputs, a failing check."""
    nb = nbformat.from_dict(nbformat.reads(nbformat.writes(src), as_version=4))
    test = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "code")
    test.outputs = [nbformat.v4.new_output(
        "error", ename="AssertionError", evalue="the loss should be a scalar",
        traceback=["\x1b[0;31mAssertionError\x1b[0m Traceback", "File /tmp/x/autograder/checks/ae.py:12",
                   "    require(close(loss, expected, rtol=1e-4),", "AssertionError: the loss should be a scalar"])]
    free = next(c for c in nb.cells if c.cell_type == "code" and "nbgrader" not in c.metadata)
    free.outputs = [nbformat.v4.new_output("stream", name="stdout", text="hello\n")]
    return nb, test.metadata["nbgrader"]["grade_id"]


def _public(rel):
    return [c.source for c in rel.cells] + [p.read_text() for p in (REPO / "vaekit").glob("*.py")]


def test_clean_removes_hidden_tests_and_check_frames(ae):
    name, rel, src = ae
    nb, gid = _autograded(src)
    released = {c.metadata["nbgrader"]["grade_id"]: c.source for c in rel.cells
                if c.metadata.get("nbgrader", {}).get("grade")}
    secrets = secret_lines([src], REPO / "autograder" / "checks", _public(rel))
    out = clean(nb, released, {gid: (0.0, 2.0)}, secrets, tampered=False)
    text = nbformat.writes(out)
    assert "BEGIN HIDDEN TESTS" not in text and "hidden.check_" not in text
    test = next(c for c in out.cells if c.metadata.get("nbgrader", {}).get("grade_id") == gid)
    assert test.outputs[0]["traceback"] == ["AssertionError: the loss should be a scalar"]
    assert test.metadata["nbgrader"]["score"] == 0.0
    assert any(o.get("text") == "hello\n" for c in out.cells if c.cell_type == "code" for o in c.outputs)


def test_clean_drops_student_outputs_when_tampered_and_leaks_always(ae):
    name, rel, src = ae
    nb, gid = _autograded(src)
    secrets = secret_lines([src], REPO / "autograder" / "checks", _public(rel))
    leak = next(iter(sorted(secrets)))
    free = [c for c in nb.cells if c.cell_type == "code" and "nbgrader" not in c.metadata]
    free[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"stolen: {leak}\n")]
    out = clean(nb, {}, {}, secrets, tampered=False)
    assert leak not in nbformat.writes(out)
    assert "hello" in nbformat.writes(out)
    out = clean(nb, {}, {}, secrets, tampered=True)
    assert "hello" not in nbformat.writes(out)


def test_render_writes_html_with_scores(ae, tmp_path):
    name, rel, src = ae
    nb, gid = _autograded(src)
    out = clean(nb, {}, {gid: (0.0, 2.0)}, set(), tampered=False)
    path = render(out, "ada", name, "repaired", ["a note"], 13.0, 17.0, tmp_path / "f.html")
    text = path.read_text()
    assert "Score: 13.0 / 17.0" in text and "a note" in text and "repaired" in text


def test_sample_submissions_of_the_demo(tmp_path):
    release_dir, source_dir = corpus.release_dirs()
    described = make_submissions(release_dir, source_dir, tmp_path)
    assert set(described) == {"alice", "bob", "carol", "dave"}
    names = sorted(p.stem for p in release_dir.glob("*.ipynb"))
    assert sorted(p.stem for p in (tmp_path / "alice").glob("*.ipynb")) == names


def test_demo_table_is_readable(tmp_path):
    (tmp_path / "summary.csv").write_text("student,total,max_total,01_a,02_b,status\nann,3,10,2,1,repaired\n")
    (tmp_path / "report.csv").write_text("student,notebook,status,points,max_points,detail\n"
                                         "ann,01_a,ok,2,5,\nann,02_b,repaired,1,5,metadata\n")
    text = table(tmp_path / "summary.csv", tmp_path / "report.csv")
    lines = text.splitlines()
    assert lines[0].split() == ["student", "01_a", "(/5)", "02_b", "(/5)", "total"]
    assert lines[2].split() == ["ann", "2", "1", "repaired", "3", "/", "10"]


@pytest.mark.parametrize("case", ["no_folder", "out_inside"])
def test_grade_refuses_bad_folders(tmp_path, case):
    subs = tmp_path / "subs"
    if case == "out_inside":
        subs.mkdir()
        out = subs / "out"
    else:
        out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "autograder", "grade", str(subs), "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "error:" in proc.stderr
    assert not (subs / "out").exists()
