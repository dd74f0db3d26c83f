"""`python -m autograder grade SUBMISSIONS --out OUT [--jobs N]`: a folder of submissions to grades.

The pipeline, one module per stage, data moving one way:

    intake      (intake.py)    read each file, rebuild it on the released cells; the student's
                               own earlier notebooks become the parts 03/04 import (parts.py)
    run         (run.py)       a fresh sandbox per notebook (sandbox.py) runs the definitions
    judge       (judge.py)     the hidden checks, in this process, on the student's code over
                               the wire; the verdicts are the only source of autograded points
    gradebook   (gradebook.py) nbgrader's gradebook and course folder in OUT/nbgrader
    feedback    (feedback.py)  OUT/feedback/<student>/<notebook>.html
    report      (report.py)    OUT/grades.csv, summary.csv, report.csv, checks.csv
    class report (class_report.py) OUT/class_report.html and class_report/*.csv, from the above

`Grader` only wires the stages together: it prepares what every student's grading
needs once (`Course` below: the release, the references, the hidden checks), grades
students on N worker threads, and writes each student's rows as soon as they are
done (an interruption loses only the students in progress).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbformat.notebooknode import NotebookNode

from autograder import feedback, gradebook, report
from autograder.config import REPO, SOLUTIONS, Course, load_course
from autograder.intake import Intake, Reference, build_reference, take_in
from autograder.judge import CheckCall, hidden_calls
from autograder.parts import student_parts
from autograder.release import generate, prepare_course
from autograder.run import NotebookRun, RunSettings, run_notebook
from autograder.sandbox import INSTALL_HINT, Limits, Mounts, SandboxUnavailable, bwrap_path, write_harness
from autograder.status import Verdict, worst
from autograder.submissions import find_notebooks
from autograder.warm import WarmSlot


@dataclass
class Options:
    """How a grading run goes: parallel jobs, time and memory limits, sandboxing, which students, where."""

    jobs: int = 1
    timeout: int = 60  # seconds per cell or check
    notebook_timeout: int = 900  # seconds per notebook
    memory_mb: int = 4096  # RLIMIT_DATA of a kernel
    shard: tuple[int, int] | None = None
    progress: bool = True
    db_url: str | None = None  # a shared gradebook (e.g. PostgreSQL) instead of OUT/nbgrader's SQLite
    unsafe_no_sandbox: bool = False
    warm_kernels: bool = True  # fork kernels from a warm server per slot (zygote.py) instead of cold starts
    students: tuple[str, ...] = ()  # grade these again even if their submission did not change
    fresh: bool = False  # forget earlier results in OUT (after a backup) and grade everyone
    cluster: str | None = None  # a Dask scheduler (tcp://HOST:8786) or local:N: grade there (cluster.py)


class GradingError(RuntimeError):
    """Grading itself could not run (not a problem of a submission)."""


@dataclass
class Result:
    """One student's notebook: its status, notes and points per test cell, and its feedback notebook."""

    student: str
    notebook: str
    status: str
    notes: list[str] = field(default_factory=list)
    cells: list[tuple[str, float, float]] = field(default_factory=list)  # (grade_id, points, max)
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    graded: NotebookNode | None = field(default=None, repr=False, compare=False)
    graded_path: Path | None = field(default=None, repr=False, compare=False)  # where formgrader reads it
    seconds: float = field(default=0.0, repr=False, compare=False)

    @property
    def score(self) -> float:
        """Points earned over the notebook's test cells."""
        return sum(p for _, p, _ in self.cells)

    @property
    def max_score(self) -> float:
        """Points available over the notebook's test cells."""
        return sum(m for _, _, m in self.cells)

    def to_dict(self) -> dict:
        """Everything but the notebook (that is on disk at graded_path): for OUT's state file."""
        return {
            "student": self.student,
            "notebook": self.notebook,
            "status": self.status,
            "notes": self.notes,
            "cells": [list(c) for c in self.cells],
            "seconds": self.seconds,
            "graded_path": str(self.graded_path) if self.graded_path else None,
            "verdicts": {k: [v.passed, v.message, v.misconception, v.timeout] for k, v in self.verdicts.items()},
        }

    @classmethod
    def from_dict(cls, d: dict) -> Result:
        """A Result from its to_dict form (without the graded notebook)."""
        return cls(
            d["student"],
            d["notebook"],
            d["status"],
            list(d["notes"]),
            [(str(c), float(p), float(m)) for c, p, m in d["cells"]],
            {k: Verdict(bool(v[0]), str(v[1]), v[2], bool(v[3])) for k, v in d.get("verdicts", {}).items()},
            graded_path=Path(d["graded_path"]) if d.get("graded_path") else None,
            seconds=float(d.get("seconds", 0.0)),
        )


def data_dir() -> Path | None:
    """Where the offline MNIST copy is: $VAEKIT_DATA, else ../shared/data beside the repository."""
    env = os.environ.get("VAEKIT_DATA")
    if env:
        return Path(env).resolve()
    shared = REPO.parent / "shared" / "data"
    return shared.resolve() if shared.is_dir() else None


# ------------------------------------------------------------------------------ once per run
@dataclass
class Prepared:
    """What grading any student needs, made once per run in a temporary folder."""

    base: Path
    course: Course
    names: list[str]
    releases: dict[str, NotebookNode]
    refs: dict[str, Reference]
    checks: dict[str, dict[str, list[CheckCall]]]  # notebook -> test cell -> check calls
    released_tests: dict[str, dict[str, str]]  # notebook -> test cell -> released source
    harness: Path
    data: Path | None
    cache: Path | None


def prepare(base: Path, course: Course, solutions: Path = SOLUTIONS, data: Path | bool | None = True) -> Prepared:
    """The release (nbgrader generate_assignment), references, hidden checks, harness, data cache.

    solutions, data: where the source notebooks and the MNIST copy are (a cluster worker passes
    those of its course bundle; data=True: `data_dir()`).
    """
    root = base / "release-course"
    prepare_course(root, course, solutions)
    release_dir = generate(root, course)
    names = sorted(p.stem for p in release_dir.glob("*.ipynb"))
    releases = {n: nbformat.read(release_dir / f"{n}.ipynb", as_version=4) for n in names}
    sources = {n: nbformat.read(solutions / f"{n}.ipynb", as_version=4) for n in names}
    refs = {n: build_reference(n, releases[n], sources[n]) for n in names}
    checks = {
        n: {
            c.metadata["nbgrader"]["grade_id"]: hidden_calls(c.source)
            for c in sources[n].cells
            if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")
        }
        for n in names
    }
    released_tests = {
        n: {
            c.metadata["nbgrader"]["grade_id"]: c.source
            for c in releases[n].cells
            if c.metadata.get("nbgrader", {}).get("grade")
        }
        for n in names
    }
    data = data_dir() if data is True else data or None
    cache = base / "tensor-cache"
    _warm_cache(data, cache)
    return Prepared(
        base,
        course,
        names,
        releases,
        refs,
        checks,
        released_tests,
        write_harness(base / "harness"),
        data,
        cache if any(cache.iterdir()) else None,
    )


def _warm_cache(data: Path | None, cache: Path) -> None:
    """Decode the data files once here, so that no sandbox needs torchvision to read them."""
    cache.mkdir(parents=True, exist_ok=True)
    if data is None:
        return
    saved = {k: os.environ.get(k) for k in ("VAEKIT_CACHE", "VAEKIT_DATA")}
    os.environ.update(VAEKIT_CACHE=str(cache), VAEKIT_DATA=str(data))
    try:
        import vaekit

        vaekit.load_mnist(root=str(data), download=False, verbose=False)
        for path in cache.rglob("*"):  # written 0600 (mkstemp): the sandbox's own user must read them
            path.chmod(0o755 if path.is_dir() else 0o644)
        cache.chmod(0o755)
    except Exception:  # no data here: each notebook's data cell then says so, and grading goes on
        pass
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# ------------------------------------------------------------------------------ one student
@dataclass
class Submission:
    """One student's files as read where SUBMISSIONS is (the client): they travel as bytes.

    files: released stem -> (the file's name, its bytes); found: what the name matching said.
    """

    student: str
    files: dict[str, tuple[str, bytes]]
    renamed: dict[str, str]
    notes: dict[str, list[str]]

    @property
    def digest(self) -> str:
        """A hash of what was submitted: an unchanged submission need not be graded again."""
        h = hashlib.sha256()
        for stem in sorted(self.files):
            name, data = self.files[stem]
            h.update(f"{stem}\0{name}\0{len(data)}\0".encode())
            h.update(data)
        return h.hexdigest()


def read_submission(student: str, folder: Path, names: list[str], assignment: str) -> Submission:
    """Find and read one student's notebooks (never follows a link, never writes)."""
    found = find_notebooks(folder, names, assignment)
    files = {}
    for stem, path in found.files.items():
        try:
            files[stem] = (path.name, path.read_bytes())
        except OSError as exc:
            found.notes.setdefault(stem, []).append(f"{path.name} could not be read ({exc.strerror or exc})")
    return Submission(student, files, dict(found.renamed), {k: list(v) for k, v in found.notes.items()})


def run_settings(options: Options, instructor_paths: tuple[str, ...]) -> RunSettings:
    """The per-notebook run settings of `options`; `instructor_paths` are what no sandbox may reach."""
    return RunSettings(
        limits=Limits(memory_mb=options.memory_mb, cpu_seconds=options.notebook_timeout + 60),
        timeout=float(options.timeout),
        notebook_timeout=float(options.notebook_timeout),
        unsafe=options.unsafe_no_sandbox,
        instructor_paths=instructor_paths,
        shown_paths=(str(Path(sys.prefix).resolve()),),
    )


def blank(prep: Prepared, student: str, notebook: str, status: str, notes: list[str]) -> Result:
    """A notebook with nothing to grade (missing, unreadable): zero on every test cell."""
    return Result(student, notebook, status, notes, [(c, 0.0, m) for c, m in prep.refs[notebook].max_points.items()])


def slot_folder(prep: Prepared, slot: int) -> Path:
    """The work folder of one grading slot; its parts/ folder is what that slot's sandboxes show."""
    return prep.base / "students" / f"slot{slot}"


def grade_submission(
    prep: Prepared,
    sub: Submission,
    settings: RunSettings,
    slot: int = 0,
    stopping=lambda: False,
    warm: WarmSlot | None = None,
) -> list[Result]:
    """Intake, sandboxed run and judge for one student; returns a Result per released notebook.

    Writes only into its own slot's work folder under prep.base (one slot per concurrent
    worker). Its parts/ folder keeps its identity (a warm server's sandbox shows it): only
    the files in it are replaced.
    """
    work = slot_folder(prep, slot)
    shutil.rmtree(work / "in", ignore_errors=True)
    (work / "in").mkdir(parents=True)
    for old in (work / "parts").glob("*") if (work / "parts").is_dir() else []:
        old.unlink()
    intakes: dict[str, Intake] = {}
    results: list[Result] = []
    for n in prep.names:
        notes = list(sub.notes.get(n, []))
        if n not in sub.files:
            results.append(blank(prep, sub.student, n, "missing", notes or [f"{n}.ipynb not found in the submission"]))
            continue
        path = work / "in" / f"{n}.ipynb"
        path.write_bytes(sub.files[n][1])
        try:
            intake = take_in(prep.refs[n], path)
        except Exception as exc:  # a bug of the grader on an odd notebook: report it, go on
            intake = Intake("error", [f"the grader could not read this notebook ({type(exc).__name__})"])
        intake.notes = notes + intake.notes
        if n in sub.renamed and intake.nb is not None:
            intake.status = worst(intake.status, "renamed")
        intakes[n] = intake
        if intake.nb is None:
            results.append(blank(prep, sub.student, n, intake.status, intake.notes))
    parts = work / "parts"
    fallback = student_parts(parts, {n: i.nb for n, i in intakes.items()}, prep.releases)
    for n, intake in intakes.items():
        if intake.nb is None or stopping():
            continue
        run = run_notebook(
            intake.nb,
            prep.checks[n],
            settings,
            Mounts(harness=prep.harness, data=prep.data, cache=prep.cache, parts=parts),
            work / f"{n}.log",
            slot,
            warm,
        )
        results.append(_result(prep, sub.student, n, intake, run, fallback, settings.unsafe))
    return sorted(results, key=lambda r: r.notebook)


def _result(
    prep: Prepared, student: str, n: str, intake: Intake, run: NotebookRun, fallback: list[str], unsafe: bool
) -> Result:
    status = intake.status
    if run.evidence:
        status = worst(status, "tampered")
    if run.timed_out:
        status = worst(status, "timeout")
    if run.crashed:
        status = worst(status, "error")
    notes = list(intake.notes) + [f"tampering: {e}" for e in run.evidence] + run.notes
    uses = [m for m in fallback if m < n]
    if uses and any(f'import_parts("{m}")' in c.source for c in prep.releases[n].cells for m in uses):
        notes.append(f"no submission of {', '.join(uses)}: this notebook imported the release's stubs instead")
    if unsafe:
        notes.append("graded WITHOUT a sandbox (--unsafe-no-sandbox)")
    cells = []
    for grade_id, max_points in prep.refs[n].max_points.items():
        verdict = run.verdicts.get(grade_id, Verdict(False, "not graded", "not_run"))
        cells.append((grade_id, max_points if verdict.passed else 0.0, max_points))
    graded = feedback.graded_notebook(intake.nb, prep.released_tests[n], run.verdicts, {g: (p, m) for g, p, m in cells})
    return Result(student, n, status, list(dict.fromkeys(notes)), cells, run.verdicts, graded, seconds=run.seconds)


# ------------------------------------------------------------------------------ OUT's memory
class State:
    """OUT/.vaekit/state.json: each graded student's submission hash and result rows.

    It is what lets a second `grade` into the same OUT regrade only what changed (and an
    interrupted run go on where it stopped); `checks` is a hash of the hidden tests and
    checks, so that changing them regrades everyone. Each graded student is appended to
    state.jsonl at once (constant cost per student, however large the class); `save`
    folds that journal into state.json (at the start and the end of a run).
    """

    def __init__(self, out: Path):
        self.path = out / ".vaekit" / "state.json"
        self.journal = self.path.with_suffix(".jsonl")
        data = json.loads(self.path.read_text()) if self.path.is_file() else {}
        self.checks: str | None = data.get("checks")
        self.students: dict[str, dict] = data.get("students", {})
        if self.journal.is_file():
            for line in self.journal.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    break  # the half line of a run killed while writing it
                if entry.get("checks") == self.checks:
                    self.students[entry["student"]] = {"digest": entry["digest"], "results": entry["results"]}

    def results(self, student: str) -> list[Result]:
        """The results kept for `student` from an earlier run (empty if none)."""
        return [Result.from_dict(d) for d in self.students.get(student, {}).get("results", [])]

    def record(self, student: str, digest: str, results: list[Result]) -> None:
        """Keep `student`'s results for the submission with `digest`, appended to the journal at once."""
        entry = {"digest": digest, "results": [r.to_dict() for r in results]}
        self.students[student] = entry
        self.journal.parent.mkdir(parents=True, exist_ok=True)
        with self.journal.open("a") as f:
            f.write(json.dumps({"student": student, "checks": self.checks, **entry}, sort_keys=True) + "\n")

    def save(self) -> None:
        """Write every student's results to state.json and drop the journal folded into it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"checks": self.checks, "students": self.students}, sort_keys=True))
        os.replace(tmp, self.path)
        self.journal.unlink(missing_ok=True)


def checks_fingerprint() -> str:
    """A hash of what decides the autograded points: the source notebooks and the hidden checks."""
    h = hashlib.sha256()
    for path in sorted(SOLUTIONS.glob("*.ipynb")) + sorted((REPO / "autograder" / "checks").glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def backup_out(out: Path) -> Path:
    """Copy OUT's results (CSVs, state, gradebook, feedback) aside before they are replaced."""
    target = out / "backups" / f"{datetime.datetime.now():%Y%m%d-%H%M%S}"
    target.mkdir(parents=True, exist_ok=False)
    for name in (
        "grades.csv",
        "summary.csv",
        "report.csv",
        "checks.csv",
        "final_grades.csv",
        "final_summary.csv",
        ".vaekit",
        "nbgrader",
        "feedback",
    ):
        src = out / name
        if src.is_dir():
            shutil.copytree(src, target / name)
        elif src.is_file():
            shutil.copy2(src, target / name)
    return target


# ------------------------------------------------------------------------------ the class
class Grader:
    """One grading run of a folder of submissions into OUT: runs, judges, and writes grades and feedback."""

    def __init__(self, submissions: Path, out: Path, options: Options, course: Course | None = None):
        self.submissions = submissions
        self.out = out
        self.options = options
        self.course = course or load_course()
        self.results: dict[tuple[str, str], Result] = {}
        self.warnings: list[str] = []
        self.lock = threading.Lock()
        self.bar = None
        self.stopping = False
        self.state: State | None = None
        self.in_csvs: set[str] = set()  # students whose rows the CSVs hold (appended since the last rewrite)

    # -- input
    def students(self) -> dict[str, Path]:
        """The students to grade: their folders in SUBMISSIONS by name (not links, nor names starting with . or __)."""
        if not self.submissions.is_dir():
            raise GradingError(
                f"{self.submissions} is not a folder of submissions: expected SUBMISSIONS/<student>/<notebook>.ipynb"
            )
        found = {}
        for entry in sorted(self.submissions.iterdir(), key=lambda p: p.name):
            if entry.name.startswith((".", "__")):
                continue
            if entry.is_dir() and not entry.is_symlink():
                found[entry.name] = entry
            else:
                self.warnings.append(f"{entry.name}: not a student folder (ignored)")
        unknown = sorted(set(self.options.students) - set(found))
        if unknown:
            raise GradingError(f"--students names {', '.join(unknown)}, not found in {self.submissions}")
        if self.options.shard:
            i, n = self.options.shard
            found = {s: p for k, (s, p) in enumerate(found.items()) if k % n == i - 1}
        return found

    def settings(self, base: Path) -> RunSettings:
        """The run settings of this grading, with the instructor's own folders (repo, OUT, submissions, `base`)."""
        o = self.options
        instructor = tuple(str(p.resolve()) for p in (REPO, self.out, self.submissions, base))
        return run_settings(o, instructor)

    def check_sandbox(self) -> None:
        """Refuse to grade without a working sandbox, unless --unsafe-no-sandbox (then warn)."""
        if self.options.unsafe_no_sandbox:
            self.say(
                "WARNING: grading WITHOUT a sandbox (--unsafe-no-sandbox): every submission runs with "
                "your user's rights and can read, change or delete your files. Only for code you trust."
            )
        elif bwrap_path() is None:
            raise GradingError(f"grading needs a sandbox and bubblewrap (bwrap) is not installed: {INSTALL_HINT}")

    # -- output
    def add(self, prep: Prepared, digest: str, results: list[Result]) -> None:
        """One student graded: feedback pages, graded notebooks, state and CSVs (the only writer of OUT)."""
        for r in results:
            path = self.feedback_path(r)
            try:
                feedback.write(r, path)
            except Exception as exc:  # never lose the grades over a page that does not render
                self.say(f"warning: {r.student}/{r.notebook}: feedback could not be rendered ({type(exc).__name__})")
                feedback.write_plain(r, path)
            r.graded_path = gradebook.keep_graded(self.out, prep.course.assignment, r)
            r.graded = None  # the notebooks stay on disk, not in memory
        with self.lock:
            for r in results:
                self.results[(r.student, r.notebook)] = r
            if results and self.state is not None:
                self.state.record(results[0].student, digest, results)
            students = {r.student for r in results}
            if students & self.in_csvs:  # graded twice in one run: rewrite, never a duplicate row
                self.write_csvs(prep)
            else:
                report.append_csvs(self.out, results, prep.names, self.cell_order(prep))
                self.in_csvs |= students

    def cell_order(self, prep: Prepared) -> dict[str, list[str]]:
        """Each notebook's test cells in notebook order (the order of the CSVs' rows)."""
        return {n: list(prep.refs[n].max_points) for n in prep.names}

    def write_csvs(self, prep: Prepared) -> None:
        """Rewrite the CSVs, sorted, from every result known (at the start and the end of a run)."""
        report.write_csvs(self.out, list(self.results.values()), prep.names, self.cell_order(prep))
        self.in_csvs = {student for student, _ in self.results}

    def feedback_path(self, r: Result) -> Path:
        """Where the HTML feedback on result `r` is written."""
        return self.out / "feedback" / feedback.safe_name(r.student) / f"{r.notebook}.html"

    def say(self, text: str) -> None:
        """Print a message to stderr without breaking the progress bar."""
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    # -- main
    def run(self) -> int:
        """Grade every student (skipping unchanged submissions), write OUT's files; the exit status."""
        import signal

        _INTERRUPTED.clear()
        main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, _on_sigint) if main_thread else None
        try:
            return self._run()
        finally:
            if main_thread:
                signal.signal(signal.SIGINT, previous)

    def _run(self) -> int:
        t0 = time.monotonic()
        sub, out = self.submissions.resolve(), self.out.resolve()
        if out == sub or sub in out.parents:
            raise GradingError(f"--out {self.out} is inside the submissions folder, which the grader never writes to")
        self.check_sandbox()
        students = self.students()
        if self.options.db_url:  # a shared gradebook: reachable and usable before anything is graded
            self.options.db_url = gradebook.check_database(self.options.db_url)
        self.out.mkdir(parents=True, exist_ok=True)
        said = []
        if self.options.fresh and any(self.out.iterdir()):
            kept = backup_out(self.out)
            for name in (".vaekit", "feedback", "nbgrader"):
                shutil.rmtree(self.out / name, ignore_errors=True)
            said.append(f"--fresh: earlier results backed up in {kept}, then started over")
        self.state = State(self.out)
        fingerprint = checks_fingerprint()
        if self.state.students and self.state.checks != fingerprint:
            said.append("the hidden tests or checks changed since the last run: every student is graded again")
            self.state.students = {}
        self.state.checks = fingerprint
        self.state.save()
        with tempfile.TemporaryDirectory(prefix="vaekit-grade-", ignore_cleanup_errors=True) as tmp:
            base = Path(tmp)
            self.say("building the release with nbgrader…")
            prep = prepare(base, self.course)
            if self.options.db_url:
                self.say(
                    f"writing assignment {prep.course.assignment!r} into the shared gradebook "
                    f"{gradebook.shown(self.options.db_url)} with nbgrader…"
                )
                gradebook.init_database(self.options.db_url, prep.base / "release-course", prep.course, prep.base)
            for w in self.warnings:
                self.say(f"warning: {w}")
            todo, unchanged = self.plan(prep, students)
            for student in sorted(self.state.students):
                if student not in students and not self.options.shard:
                    unchanged.append(student)  # no longer in SUBMISSIONS: their results stay
            for student in unchanged:
                for r in self.state.results(student):
                    self.results[(r.student, r.notebook)] = r
            self.write_csvs(prep)
            try:
                self.grade_all(prep, todo)
            finally:  # sorted again, journal folded in: also after Ctrl-C or a failed run
                with self.lock:
                    self.write_csvs(prep)
                    self.state.save()
            kept = gradebook.export(
                self.out, prep.base / "release-course", prep.course, list(self.results.values()), self.options.db_url
            )
        graded_now = {s.student for s in todo}
        run = [r.seconds for r in self.results.values() if r.seconds and r.student in graded_now]
        per = f"; {len(run)} notebook(s) run, {sum(run) / len(run):.1f} s each on average" if run else ""
        self.say(
            f"graded {len(todo)} student(s) in {time.monotonic() - t0:.0f} s{per}"
            f"{'; NO SANDBOX' if self.options.unsafe_no_sandbox else ''}"
        )
        said.append(f"graded {len(todo)} new or changed submission(s), kept {len(unchanged)} unchanged")
        if kept:
            said.append(kept)
        self.say("; ".join(said))
        self.say(
            f"grades:   {self.out / 'grades.csv'}\nsummary:  {self.out / 'summary.csv'}\n"
            f"report:   {self.out / 'report.csv'}\nfeedback: {self.out / 'feedback'}/<student>/<notebook>.html\n"
            f"nbgrader course for manual grading (formgrader): {self.out / 'nbgrader'}"
        )
        self.class_report()
        return 0

    def class_report(self) -> None:
        """OUT/class_report.html for the instructor; a failure of it never fails grading."""
        try:
            from autograder.class_report import build

            self.say(f"class report (instructor only): {build(self.out)}")
        except Exception as exc:
            self.say(
                f"warning: the class report could not be built ({type(exc).__name__}: {exc}); "
                f"the grades are complete, try `python -m autograder report {self.out}`"
            )

    def plan(self, prep: Prepared, students: dict[str, Path]) -> tuple[list[Submission], list[str]]:
        """Which students to grade now (new, changed, or named by --students) and which to keep."""
        todo, unchanged = [], []
        assert self.state is not None
        for student, folder in students.items():
            sub = read_submission(student, folder, prep.names, prep.course.assignment)
            known = self.state.students.get(student)
            if known and known.get("digest") == sub.digest and student not in self.options.students:
                unchanged.append(student)
            else:
                todo.append(sub)
        return todo, unchanged

    def grade_all(self, prep: Prepared, todo: list[Submission]) -> None:
        """Grade `todo` and write each student as they are done: in this process for --jobs 1, on --jobs
        worker processes, or with --cluster as one Dask task per student (cluster.py)."""
        where = (
            f"on the Dask cluster {self.options.cluster}"
            if self.options.cluster
            else f"with {self.options.jobs} worker(s)"
        )
        self.say(
            f"grading {len(todo)} student(s) {where}, each notebook in "
            f"{'NO sandbox' if self.options.unsafe_no_sandbox else 'its own sandbox'}…"
        )
        if self.options.cluster:
            from autograder.cluster import grade_on_cluster  # Dask only when asked for

            grade_on_cluster(self, prep, todo)
            return
        self.start_bar(len(todo) * len(prep.names))
        warm = self.options.warm_kernels and not self.options.unsafe_no_sandbox
        forks = cold = 0
        try:
            runner = _in_process if self.options.jobs <= 1 or len(todo) <= 1 else _on_workers
            for sub, results, (f, c) in runner(prep, todo, self.settings(prep.base), warm, self.options.jobs):
                _stop_if_interrupted()
                forks, cold = forks + f, cold + c
                self.add(prep, sub.digest, results)
                if self.bar is not None:
                    self.bar.update(len(results))
        except KeyboardInterrupt:
            self.stopping = True
            raise
        finally:
            self.close_bar()
            if warm and forks + cold:
                self.say(f"warm kernels: {forks} forked" + (f", {cold} started cold after a failure" if cold else ""))

    def start_bar(self, total: int) -> None:
        """One progress bar for the whole class (notebooks), on the client."""
        if self.options.progress and total:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="notebook", desc="grading", file=sys.stderr, dynamic_ncols=True)

    def close_bar(self) -> None:
        """Close the progress bar (messages go to stderr again)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None


# ------------------------------------------------------------------------------ runners
_INTERRUPTED = threading.Event()


def _on_sigint(signum, frame) -> None:
    """Ctrl-C: remember it, then interrupt as usual. A KeyboardInterrupt raised in the middle of a
    check can be swallowed on its way out (torch turns one raised in a backward pass into a
    RuntimeError, which the check reads as a failure), so the runners also look at the flag."""
    _INTERRUPTED.set()
    raise KeyboardInterrupt


def _stop_if_interrupted() -> None:
    if _INTERRUPTED.is_set():
        raise KeyboardInterrupt


def _grade_safely(
    prep: Prepared, sub: Submission, settings: RunSettings, slot: int, warm: WarmSlot | None, stopping=lambda: False
) -> list[Result]:
    """grade_submission, but a failure of the grader on one student gives that student `error` rows."""
    try:
        return grade_submission(prep, sub, settings, slot, stopping, warm)
    except Exception as exc:
        note = f"the grader failed on this submission ({type(exc).__name__}); please report it"
        return [blank(prep, sub.student, n, "error", [note]) for n in prep.names]


def _warm_slot(prep: Prepared, settings: RunSettings, slot: int) -> WarmSlot:
    folder = slot_folder(prep, slot)
    (folder / "parts").mkdir(parents=True, exist_ok=True)
    return WarmSlot(
        Mounts(harness=prep.harness, data=prep.data, cache=prep.cache, parts=folder / "parts"),
        settings.limits,
        folder / "zygote.log",
        slot,
    )


def _in_process(prep: Prepared, todo: list[Submission], settings: RunSettings, warm: bool, jobs: int):
    """Grade one student after the other here; yields (submission, results, (forks, cold starts))."""
    slot = _warm_slot(prep, settings, 0) if warm else None
    try:
        for sub in todo:
            _stop_if_interrupted()
            before = (slot.forks, slot.failures) if slot else (0, 0)
            results = _grade_safely(prep, sub, settings, 0, slot, _INTERRUPTED.is_set)
            _stop_if_interrupted()  # what was graded after a swallowed Ctrl-C is not a result
            after = (slot.forks, slot.failures) if slot else (0, 0)
            yield sub, results, (after[0] - before[0], after[1] - before[1])
    finally:
        if slot is not None:
            slot.stop()


_WORKER: dict = {}


def _worker_init(prep: Prepared, settings: RunSettings, warm: bool, slots) -> None:
    """In a worker process: its slot, its warm-kernel server; Ctrl-C is the client's to handle."""
    import atexit
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    slot = slots.get()
    _WORKER.update(prep=prep, settings=settings, slot=slot, warm=_warm_slot(prep, settings, slot) if warm else None)
    if _WORKER["warm"] is not None:
        atexit.register(_WORKER["warm"].stop)


def _worker_grade(sub: Submission) -> tuple[Submission, list[Result], tuple[int, int]]:
    warm = _WORKER["warm"]
    before = (warm.forks, warm.failures) if warm else (0, 0)
    results = _grade_safely(_WORKER["prep"], sub, _WORKER["settings"], _WORKER["slot"], warm)
    after = (warm.forks, warm.failures) if warm else (0, 0)
    return sub, results, (after[0] - before[0], after[1] - before[1])


def _on_workers(prep: Prepared, todo: list[Submission], settings: RunSettings, warm: bool, jobs: int):
    """Grade on `jobs` worker processes (each its own judge: torch's random state is per process).

    On Ctrl-C the workers are killed, and with them their sandboxes (--die-with-parent).
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    context = multiprocessing.get_context("spawn")  # a fork of this threaded process could hang in OpenMP
    slots = context.Queue()
    for slot in range(jobs):
        slots.put(slot)
    pool = ProcessPoolExecutor(
        max_workers=jobs, mp_context=context, initializer=_worker_init, initargs=(prep, settings, warm, slots)
    )
    try:
        futures = [pool.submit(_worker_grade, sub) for sub in todo]
        for future in as_completed(futures):
            yield future.result()
    except BaseException:
        for process in list(getattr(pool, "_processes", {}).values()):
            process.kill()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def grade(submissions: Path, out: Path, options: Options | None = None) -> int:
    """Grade SUBMISSIONS into OUT with `options`; the exit status. A missing sandbox is a GradingError."""
    try:
        return Grader(submissions, out, options or Options()).run()
    except SandboxUnavailable as exc:
        raise GradingError(str(exc)) from None
