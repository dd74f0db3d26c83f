"""The real `python -m autograder grade` on the sample corpus (tests/corpus.py): nbgrader, kernels, CSVs.

One grading run of the whole corpus (--jobs 2) is shared by the tests of this
module; a second, small run with --jobs 1 must give the same rows.
"""
from __future__ import annotations

import csv
import hashlib
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest

from autograder.config import REPO
from autograder.feedback import secret_lines

import corpus

pytestmark = pytest.mark.slow

# seconds: the longest honest cell (03's sweep of five VAEs) takes ~8 s on an idle 2-core machine and
# ~40 s on one loaded five times over; the endless loops of the corpus carry a shorter timeout of their own
CELL_TIMEOUT = 120


def grade(submissions: Path, out: Path, jobs: int, *extra: str) -> SimpleNamespace:
    cmd = [sys.executable, "-m", "autograder", "grade", str(submissions), "--out", str(out),
           "--jobs", str(jobs), "--timeout", str(CELL_TIMEOUT), "--no-progress", *extra]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1500)
    return SimpleNamespace(proc=proc, seconds=time.monotonic() - t0, out=out)


def rows(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def run(tmp_path_factory):
    release_dir, source_dir = corpus.release_dirs()
    base = tmp_path_factory.mktemp("grading")
    submissions = base / "submissions"
    expected = corpus.build(release_dir, source_dir, submissions, bugs=[corpus.AE])
    before = snapshot(submissions)
    result = grade(submissions, base / "out", jobs=2)
    print(f"\ncorpus graded in {result.seconds:.0f} s\n{result.proc.stderr[-3000:]}")
    return SimpleNamespace(expected=expected, submissions=submissions, before=before, base=base,
                           release_dir=release_dir, source_dir=source_dir, **vars(result))


def test_grading_succeeds(run):
    assert run.proc.returncode == 0, run.proc.stderr[-3000:]
    for name in ("grades.csv", "summary.csv", "report.csv"):
        assert (run.out / name).is_file()


def test_every_submission_gets_its_status_and_points(run):
    graded = rows(run.out / "grades.csv")
    by = {}
    for r in graded:
        by.setdefault((r["student"], r["notebook"]), []).append(r)
    problems = []
    for student, notebooks in sorted(run.expected.items()):
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
    assert not problems, "\n".join(problems) + "\n\nreport:\n" + (run.out / "report.csv").read_text()


def test_grades_csv_has_one_sorted_row_per_test_cell(run):
    text = (run.out / "grades.csv").read_text()
    assert text.splitlines()[0] == "student,notebook,cell,points,max_points,status"
    graded = rows(run.out / "grades.csv")
    tests = {}
    for name in run.expected["full"]:
        nb = nbformat.read(run.release_dir / f"{name}.ipynb", as_version=4)
        tests[name] = [c.metadata["nbgrader"]["grade_id"] for c in nb.cells
                       if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")]
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
    ae = corpus.AE
    assert "metadata" in detail[("stripped", ae)]
    assert "test_ae_forward was deleted" in detail[("mangled", ae)]
    assert "PDF" in detail[("pdf", ae)] and "JSON" in detail[("corrupt", ae)]
    assert "timed out" in detail[("loops", ae)] and "ignored the interrupt" in detail[("loops", ae)]
    assert "memory" in detail[("crashes", ae)] and "kernel died" in detail[("crashes", ae)]
    assert "sys.exit" in detail[("flood", ae)] and "output truncated" in detail[("flood", ae)]
    assert "torch.testing.assert_close" in detail[("tampered_static", ae)]
    assert "test_ae_loss was edited" in detail[("tampered_static", ae)]
    assert "torch.testing.assert_close" in detail[("tampered_runtime", ae)]


def test_extra_and_misnamed_files_are_reported(run):
    assert "misnamed: extra file Autoencoder.ipynb (expected 01_autoencoder.ipynb?)" in run.proc.stderr
    assert "misnamed: extra file notes.txt" in run.proc.stderr


def test_submissions_are_never_written(run):
    assert snapshot(run.submissions) == run.before


def test_feedback_for_every_notebook_without_hidden_tests(run):
    sources = [nbformat.read(p, as_version=4) for p in sorted(run.source_dir.glob("*.ipynb"))]
    releases = [nbformat.read(p, as_version=4) for p in sorted(run.release_dir.glob("*.ipynb"))]
    public = [c.source for nb in releases for c in nb.cells]
    public += [p.read_text() for p in (REPO / "vaekit").glob("*.py")]
    secrets = secret_lines(sources, REPO / "autograder" / "checks", public)
    assert len(secrets) > 20
    for student, notebooks in run.expected.items():
        for notebook in notebooks:
            path = run.out / "feedback" / student / f"{notebook}.html"
            assert path.is_file(), path
            text = path.read_text()
            plain = re.sub(r"<[^>]+>", "", text)
            for marker in ("BEGIN HIDDEN TESTS", "from autograder", "hidden.check_", "autograder/checks"):
                assert marker not in plain, (path, marker)
            import html as html_module

            plain = html_module.unescape(plain)
            leaked = [s for s in secrets if s in plain]
            assert not leaked, (path, leaked[:3])
            assert len(text) < 5_000_000, path


def test_feedback_shows_scores_and_messages(run):
    ae = corpus.AE
    text = (run.out / "feedback" / "buggy_ae_loss_mean" / f"{ae}.html").read_text()
    assert "each of the 784 pixels should cost log 2" in text
    assert re.search(r"Score: 13\.0 / \d+\.0", text)
    assert "Grader report" in text


def test_every_run_kernel_was_forked_warm(run):
    said = re.search(r"(\d+) notebook\(s\) run, \d+ s each on average, (\d+) kernel\(s\) warm", run.proc.stderr)
    assert said, run.proc.stderr[-2000:]
    assert int(said.group(1)) > 0 and said.group(2) == said.group(1), said.group(0)


def test_jobs_1_and_cold_kernels_give_the_same_rows(run, tmp_path):
    """--jobs 1 --cold-kernels on a few of the students: the same rows as in the warm --jobs 2 run of everyone."""
    some = ["corrupt", "stripped"]
    subs = tmp_path / "submissions"
    for s in some:
        shutil.copytree(run.submissions / s, subs / s)
    again = grade(subs, tmp_path / "out", 1, "--cold-kernels")
    assert again.proc.returncode == 0, again.proc.stderr[-3000:]
    assert "notebook(s) run" in again.proc.stderr and "kernel(s) warm" not in again.proc.stderr
    for name in ("grades.csv", "report.csv", "summary.csv"):
        first = [r for r in rows(run.out / name) if r["student"] in some]
        assert rows(tmp_path / "out" / name) == first, name


def test_results_land_in_an_nbgrader_course_for_manual_grading(run):
    """OUT/nbgrader is a course folder nbgrader itself reads: `nbgrader export`, then manual
    points and a comment as formgrader would store them, then `python -m autograder feedback OUT`."""
    import warnings

    from nbgrader.api import Gradebook

    from autograder.release import tool_env

    root = run.out / "nbgrader"
    proc = subprocess.run([sys.executable, "-m", "autograder.nbgrader_main", "export",
                           f"--CourseDirectory.root={root}"], cwd=root, capture_output=True, text=True,
                          timeout=300, env=tool_env(PYTHONPATH=str(REPO)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    exported = rows(root / "grades.csv")
    assert sorted(r["student_id"] for r in exported) == sorted(run.expected)
    full = next(r for r in exported if r["student_id"] == "full")
    auto = sum(float(r["max_points"]) for r in rows(run.out / "grades.csv") if r["student"] == "full")
    assert float(full["score"]) == auto

    ae = corpus.AE
    with warnings.catch_warnings(), Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        warnings.simplefilter("ignore")
        answer = next(g for g in gb.find_submission_notebook(ae, "vae", "full").grades
                      if g.cell.cell_type == "markdown")
        assert answer.needs_manual_grade
        answer.manual_score = 1
        comment = gb.find_comment(answer.name, ae, "vae", "full")
        comment.manual_comment = "Right idea; say where the codes of real images lie."
        gb.db.commit()
        name = answer.name
    proc = subprocess.run([sys.executable, "-m", "autograder", "feedback", str(run.out)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    final = {(r["student"], r["notebook"], r["cell"]): r for r in rows(run.out / "final_grades.csv")}
    assert final[("full", ae, name)]["graded"] == "manual" and final[("full", ae, name)]["points"] == "1"
    assert final[("stub", ae, name)]["graded"] == "auto"   # an unanswered answer scores 0 at once
    others = [r for k, r in final.items() if k[0] == "full" and k[2].startswith("answer") and k[2] != name]
    assert others and all(r["graded"] == "pending" for r in others)
    html = (run.out / "feedback" / "full" / f"{ae}.html").read_text()
    assert "Right idea; say where the codes of real images lie." in html
    assert "BEGIN HIDDEN TESTS" not in html and "hidden.check_" not in html


def test_ctrl_c_stops_every_process_and_keeps_what_was_graded(run, tmp_path):
    """Ctrl-C while kernels run: a clear message, the CSVs so far, no process or temporary folder left."""
    import os
    import signal

    subs = tmp_path / "submissions"
    for s in ("full", "crashes", "loops"):
        shutil.copytree(run.submissions / s, subs / s)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    cmd = [sys.executable, "-m", "autograder", "grade", str(subs), "--out", str(tmp_path / "out"), "--jobs", "2",
           "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=dict(os.environ, TMPDIR=str(tmpdir)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    said = []
    for line in proc.stderr:
        said.append(line)
        if line.startswith("grading "):
            break
    time.sleep(8)  # kernels are running now
    assert proc.poll() is None, "".join(said)
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=120)
    said.append(rest)
    assert proc.returncode != 0 and "interrupted: the CSVs hold the students graded so far" in rest, "".join(said)
    left = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(tmpdir) in cmdline.read_bytes().decode(errors="replace"):
                left.append(cmdline.read_bytes().decode(errors="replace").replace("\0", " "))
        except OSError:
            pass
    assert not left, f"still running after Ctrl-C: {left}"
    assert list(tmpdir.iterdir()) == [], "the grader's temporary folder was left behind"
