"""`python -m autograder demo` (`make demo`): the whole grading pipeline on four sample students.

1. builds the student notebooks with nbgrader into demo_output/release/
   (what `python -m autograder release` writes to assignments/);
2. makes sample submissions in demo_output/submissions/: alice (the solutions),
   bob (the untouched student notebooks), carol (the solutions with one bug),
   dave (a notebook whose nbgrader metadata an editor dropped, and a notebook
   cut off in the middle);
3. grades them with two workers into demo_output/grades/;
4. prints a table and says where the CSVs and the feedback are.

Everything it writes is under demo_output/ (or --out).
"""

from __future__ import annotations

import csv
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from autograder import samples
from autograder.config import load_course


def make_submissions(release_dir: Path, source_dir: Path, out: Path) -> dict[str, str]:
    """The four sample students; returns a line of description for each."""
    names = sorted(p.stem for p in release_dir.glob("*.ipynb"))
    release = {n: nbformat.read(release_dir / f"{n}.ipynb", as_version=4) for n in names}
    full = {n: samples.full(release[n], nbformat.read(source_dir / f"{n}.ipynb", as_version=4)) for n in names}
    first = names[0]
    bug_nb = next((n for n in names if n in samples.BUGS), None)
    described = {}
    for n in names:
        samples.write(full[n], out / "alice" / f"{n}.ipynb")
        samples.write(release[n], out / "bob" / f"{n}.ipynb")
    described["alice"] = "the solutions: full marks for the autograded cells"
    described["bob"] = "the student notebooks, untouched: zero, without crashing anything"
    if bug_nb:
        variant = next(iter(samples.BUGS[bug_nb]))
        samples.write(samples.buggy(full[bug_nb], bug_nb, variant), out / "carol" / f"{bug_nb}.ipynb")
        lost = ", ".join(samples.BUGS[bug_nb][variant][3])
        described["carol"] = f"{bug_nb} with one bug ({variant}): loses {lost} only; other notebooks missing"
    samples.write(samples.strip_metadata(full[first]), out / "dave" / f"{first}.ipynb")
    described["dave"] = f"{first} without nbgrader metadata (repaired)"
    if len(names) > 1:
        samples.write(samples.truncated(full[names[1]]), out / "dave" / f"{names[1]}.ipynb")
        described["dave"] += f", {names[1]} truncated (unreadable)"
    return described


def table(summary: Path, report: Path) -> str:
    """The grading summary as a plain-text table: one row per student, points per notebook and non-ok statuses."""
    rows = list(csv.DictReader(summary.open()))
    status = {(r["student"], r["notebook"]): r["status"] for r in csv.DictReader(report.open())}
    maxima = {}
    for r in csv.DictReader(report.open()):
        maxima[r["notebook"]] = r["max_points"]
    names = [k for k in rows[0] if k not in ("student", "total", "max_total", "status")] if rows else []
    header = ["student", *(f"{n} (/{maxima.get(n, '?')})" for n in names), "total"]
    lines = [header]
    for r in rows:
        cells = [r["student"]]
        for n in names:
            s = status.get((r["student"], n), "")
            cells.append(r[n] + ("" if s == "ok" else f" {s}"))
        cells.append(f"{r['total']} / {r['max_total']}")
        lines.append(cells)
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    out = []
    for k, line in enumerate(lines):
        out.append("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def demo(out: Path = Path("demo_output"), jobs: int = 2) -> int:
    """Release the course, grade a sample class of submissions into `out` and print the results; the exit status."""
    from autograder.grade import GradingError, Options, grade
    from autograder.release import prepare_course
    from autograder.release import release as write_release

    t0 = time.monotonic()
    course = load_course()
    out = out.resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    print(f"1. building the student notebooks with nbgrader -> {out / 'release'}", flush=True)
    write_release(out / "release", course)
    with tempfile.TemporaryDirectory(prefix="vaekit-demo-") as tmp:
        # the solutions, placeholders filled in as for the release
        source_dir = prepare_course(Path(tmp) / "course", course) / "source" / course.assignment
        print(f"2. sample submissions -> {out / 'submissions'}", flush=True)
        described = make_submissions(out / "release", source_dir, out / "submissions")
    for student, text in described.items():
        print(f"   {student:<6} {text}")
    print(
        f"3. grading with `python -m autograder grade {out / 'submissions'} --out {out / 'grades'} --jobs {jobs}`",
        flush=True,
    )
    try:
        grade(out / "submissions", out / "grades", Options(jobs=jobs))
    except GradingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    grades = out / "grades"
    print("\n4. results (autograded points; written answers are graded by hand in formgrader)\n")
    print(table(grades / "summary.csv", grades / "report.csv"))
    print(f"\nper cell:      {grades / 'grades.csv'}")
    print(f"per student:   {grades / 'summary.csv'}")
    print(f"what happened: {grades / 'report.csv'}")
    print(f"feedback:      {grades / 'feedback'}/<student>/<notebook>.html (no hidden tests)")
    print(f"class report:  {grades / 'class_report.html'} (instructor only: misconceptions, similar code)")
    print(
        f"\nnext: grade the written answers in nbgrader's formgrader (course folder {grades / 'nbgrader'}),\n"
        f"then `python -m autograder feedback {grades}` puts those points into the feedback\n"
        f"and writes {grades / 'final_grades.csv'}"
    )
    print(f"done in {time.monotonic() - t0:.0f} s")
    return 0
