"""Feedback pages (feedback.graded_notebook / render / write), the CLI's refusals and the demo's pieces
(fast: no kernels)."""

from __future__ import annotations

import html
import re
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import corpus
import nbformat
import pytest

from autograder import feedback, samples
from autograder.config import REPO
from autograder.demo import make_submissions, table
from autograder.grade import Result
from autograder.intake import build_reference, read_cells, rebuild
from autograder.status import Verdict

AE = corpus.AE
ATTACKS = {
    "markdown_script": "<script>alert('md-script')</script>",
    "markdown_img": '<img src="x.png" onerror="alert(\'md-img\')">',
    "markdown_link": "[click me](javascript:alert('md-link'))",
    "output_html": "<b>bold</b><script>alert('out-html')</script><a href=\"javascript:alert('out-a')\">x</a>",
    "output_js": "alert('out-js')",
}


@pytest.fixture(scope="module")
def ae():
    release_dir, source_dir = corpus.release_dirs()
    rel = nbformat.read(release_dir / f"{AE}.ipynb", as_version=4)
    src = nbformat.read(source_dir / f"{AE}.ipynb", as_version=4)
    return rel, src, build_reference(AE, rel, corpus.solution(AE))


def _intake(ref, nb):
    with tempfile.TemporaryDirectory() as tmp:
        cells, _ = read_cells(samples.write(nb, Path(tmp) / "nb.ipynb"))
    return rebuild(ref, cells).nb


def _submitted(rel, src):
    """The full solution as a student submits it: outputs of their own run, and a hostile answer."""
    nb = samples.full(rel, src)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"student output {i}\n")]
    answer = nb.cells[samples.find_cell(nb, "answer_ae_samples")]
    answer.source = "My answer. " + " ".join(ATTACKS[k] for k in ("markdown_script", "markdown_img", "markdown_link"))
    plot = next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith("ae.eval()"))
    plot.outputs.append(
        nbformat.v4.new_output(
            "display_data",
            data={
                "text/html": ATTACKS["output_html"],
                "application/javascript": ATTACKS["output_js"],
                "text/plain": "<figure>",
            },
        )
    )
    return nb


def _tests(nb):
    return [
        c.metadata["nbgrader"]["grade_id"]
        for c in nb.cells
        if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")
    ]


@pytest.fixture(scope="module")
def page(ae, tmp_path_factory):
    rel, src, ref = ae
    tests = _tests(rel)
    failed = "test_ae_loss"
    verdicts = {t: Verdict(True, "") for t in tests}
    verdicts[failed] = Verdict(False, "each of the 784 pixels should cost log 2 on a blank image", "loss_mean")
    scores = {t: (0.0 if t == failed else ref.max_points[t], ref.max_points[t]) for t in tests}
    graded = feedback.graded_notebook(
        _intake(ref, _submitted(rel, src)),
        {
            c.metadata["nbgrader"]["grade_id"]: c.source
            for c in rel.cells
            if c.metadata.get("nbgrader", {}).get("grade")
        },
        verdicts,
        scores,
    )
    result = Result(
        "ada", AE, "repaired", ["a note <b>for ada</b>"], [(t, *scores[t]) for t in tests], verdicts, graded
    )
    path = feedback.write(result, tmp_path_factory.mktemp("feedback") / "ada" / f"{AE}.html")
    return path.read_text(), graded, result


def test_graded_notebook_keeps_submitted_outputs_and_puts_verdicts_on_tests(page, ae):
    rel, _, _ = ae
    _, graded, _ = page
    for cell in graded.cells:
        meta = cell.metadata.get("nbgrader", {})
        assert "vaekit" not in cell.metadata
        if cell.cell_type != "code":
            continue
        if meta.get("grade"):
            assert cell.source == rel.cells[samples.find_cell(rel, meta["grade_id"])].source
            assert len(cell.outputs) == 1
            if meta["grade_id"] == "test_ae_loss":
                assert cell.outputs[0].output_type == "error" and "784 pixels" in cell.outputs[0].evalue
                assert meta["score"] == 0.0
            else:
                assert "passed" in cell.outputs[0].text and meta["score"] == meta["points"]
        else:
            assert any("student output" in o.get("text", "") for o in cell.outputs), cell.source[:60]


def test_page_shows_submitted_outputs_the_message_and_the_score(page):
    text, _, result = page
    plain = html.unescape(re.sub(r"<[^>]+>", "", text))
    assert "student output" in plain
    assert "each of the 784 pixels should cost log 2 on a blank image" in plain
    assert f"Score: {result.score:g}" in plain.replace(".0 ", " ") or f"Score: {result.score}" in plain
    assert "Grader report for ada" in plain and "repaired" in plain
    assert "a note <b>for ada</b>" in plain, "the notes are shown as text"
    assert "My answer." in plain


def _check_lines() -> set[str]:
    """Lines of the hidden checks that appear nowhere public (release notebooks, vaekit, the answers)."""
    release_dir, source_dir = corpus.release_dirs()
    public = "\n".join(p.read_text() for p in release_dir.glob("*.ipynb"))
    public += "\n".join(
        c.source
        for p in source_dir.glob("*.ipynb")
        for c in nbformat.read(p, as_version=4).cells
        if c.metadata.get("nbgrader", {}).get("solution")
    )
    public += "\n".join(p.read_text() for p in (REPO / "vaekit").rglob("*.py"))
    lines = set()
    for path in (REPO / "autograder" / "checks").glob("*.py"):
        for line in path.read_text().splitlines():
            line = line.strip()
            if len(line) >= 25 and line not in public:
                lines.add(line)
    return lines


def test_page_shows_released_tests_only(page):
    text, _, _ = page
    plain = html.unescape(re.sub(r"<[^>]+>", "", text))
    for marker in ("BEGIN HIDDEN TESTS", "END HIDDEN TESTS", "from autograder", "hidden.check_", "autograder/checks"):
        assert marker not in plain, marker
    secret = _check_lines()
    assert len(secret) > 50
    leaked = [line for line in secret if line in plain]
    assert not leaked, leaked[:5]
    # the hidden part of the source is really absent, and the visible part present
    source = corpus.solution(AE)
    hidden = source.cells[samples.find_cell(source, "test_ae_loss")].source
    assert "BEGIN HIDDEN TESTS" in hidden
    visible = hidden.split("### BEGIN HIDDEN TESTS")[0].strip().splitlines()[0]
    assert html.unescape(visible) in plain


class _Executable(HTMLParser):
    """What a browser would run: script contents, on* handlers, javascript: URLs."""

    def __init__(self):
        super().__init__()
        self.found: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self._in_script = tag == "script"
        for name, value in attrs:
            if name.lower().startswith("on"):
                self.found.append(f"<{tag} {name}={value}>")
            if (
                name.lower() in ("href", "src", "action", "formaction")
                and value
                and value.strip().lower().startswith(("javascript:", "data:text/html"))
            ):
                self.found.append(f"<{tag} {name}={value}>")

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script and "alert(" in data:
            self.found.append(f"<script>{data[:80]}")


def test_page_is_sanitized(page):
    text, _, _ = page
    parser = _Executable()
    parser.feed(text)
    assert not parser.found, parser.found
    for attack in ("md-script", "md-img", "md-link", "out-html", "out-a", "out-js"):
        # escaped as text at most, never live
        assert f"alert('{attack}')" not in text or f"<script>alert('{attack}')" not in text
    assert "<b>bold</b>" in text, "harmless HTML output is kept"
    assert re.search(r"<h2[^>]*>The data", text), "the release's markdown still renders"


def test_write_plain_for_a_missing_notebook(tmp_path):
    result = Result("bob <x>", AE, "missing", ["01_autoencoder.ipynb not found"], [("test_ae_loss", 0.0, 2.0)])
    path = feedback.write(result, tmp_path / feedback.safe_name(result.student) / f"{AE}.html")
    text = path.read_text()
    assert "was not found" in text and "Score: 0 / 2" in text and "<x>" not in text
    assert path.parent.name == "bob__x_"


def test_sample_submissions_of_the_demo(tmp_path):
    release_dir, source_dir = corpus.release_dirs()
    described = make_submissions(release_dir, source_dir, tmp_path)
    assert set(described) == {"alice", "bob", "carol", "dave"}
    names = corpus.notebook_names(release_dir)
    assert sorted(p.stem for p in (tmp_path / "alice").glob("*.ipynb")) == names


def test_demo_table_is_readable(tmp_path):
    (tmp_path / "summary.csv").write_text("student,total,max_total,01_a,02_b,status\nann,3,10,2,1,repaired\n")
    (tmp_path / "report.csv").write_text(
        "student,notebook,status,points,max_points,detail\nann,01_a,ok,2,5,\nann,02_b,repaired,1,5,metadata\n"
    )
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
    proc = subprocess.run(
        [sys.executable, "-m", "autograder", "grade", str(subs), "--out", str(out), "--unsafe-no-sandbox"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "error:" in proc.stderr
    assert not (subs / "out").exists()
