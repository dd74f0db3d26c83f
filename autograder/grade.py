"""`python -m autograder grade SUBMISSIONS --out OUT [--jobs N]`: a folder of submissions to grades.

SUBMISSIONS/<student>/<notebook>.ipynb in (read only); out come

* OUT/grades.csv   one row per student x notebook x test cell:
                   student,notebook,cell,points,max_points,status
* OUT/summary.csv  one row per student: total, maximum, each notebook's score, status
* OUT/report.csv   one row per student x notebook: status and what the grader did
* OUT/feedback/<student>/<notebook>.html  the graded notebook for the student, no hidden tests
* OUT/nbgrader/    an nbgrader course folder holding every result in its gradebook, for
                   grading the written answers by hand in formgrader; afterwards
                   `python -m autograder feedback OUT` renders the feedback again with the
                   manual points and comments, and writes OUT/final_grades.csv

How: everything happens in a temporary folder. The release is generated once
with nbgrader (its gradebook is the template of every worker's); each
submission is read and rebuilt on the released structure (intake.py); then N
worker threads each drive their own nbgrader course folder with its own SQLite
gradebook, taking a few students at a time from a shared queue and running
`nbgrader autograde` on them (the kernel settings are in execute.py and
kernel_launcher.py; kernels are forked from the warm-kernel server of
zygote.py, started while the release is built, unless --cold-kernels). As each
batch finishes, its grades are read from the worker's gradebook, its feedback
is written, and the CSVs are rewritten in sorted order, so an interruption loses
only the students in progress and the result does not depend on --jobs or on
which worker graded whom.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from autograder.config import REPO, Course, load_course

ASSIGNMENT_LOG = re.compile(r"(Autograding|Writing \d+ bytes to) (?P<path>\S+\.ipynb)")
KERNEL_NAME = "vaekit-grader"


@dataclass
class Options:
    jobs: int = 1
    timeout: int = 60             # seconds per cell
    notebook_timeout: int = 900   # seconds per notebook
    memory_mb: int = 4096         # RLIMIT_DATA of a kernel
    output_kb: int = 1024         # stdout/stderr kept per cell, in the kernel
    threads: int = 1              # torch threads per kernel
    shard: tuple[int, int] | None = None
    progress: bool = True
    db_url: str | None = None     # a shared gradebook (e.g. PostgreSQL) instead of OUT/nbgrader's SQLite
    warm_kernels: bool = True     # fork kernels from a process that has imported torch (zygote.py)


class GradingError(RuntimeError):
    """Grading itself could not run (not a problem of a submission)."""


class Stopped(Exception):
    """The run is being interrupted: no new nbgrader process may start."""


class Running:
    """The nbgrader processes in flight. Once closed (Ctrl-C), none can start any more."""

    def __init__(self):
        self.lock = threading.Lock()
        self.procs: list[subprocess.Popen] = []
        self.closed = False

    def start(self, cmd: list[str], **kwargs) -> subprocess.Popen:
        with self.lock:
            if self.closed:
                raise Stopped()
            proc = subprocess.Popen(cmd, **kwargs)
            self.procs.append(proc)
            return proc

    def done(self, proc: subprocess.Popen) -> None:
        with self.lock:
            if proc in self.procs:
                self.procs.remove(proc)

    def close(self) -> list[subprocess.Popen]:
        with self.lock:
            self.closed = True
            return list(self.procs)


@dataclass
class Result:
    """One student's notebook: its rows, status and notes."""

    student: str
    notebook: str
    status: str
    notes: list[str] = field(default_factory=list)
    cells: list[tuple[str, float, float]] = field(default_factory=list)   # (cell, points, max)
    autograded: object = field(default=None, repr=False, compare=False)
    all_scores: dict = field(default_factory=dict, repr=False, compare=False)
    # for the formgrader course: grade_id -> (auto_score, needs_manual_grade); comment id -> text
    raw_grades: dict = field(default_factory=dict, repr=False, compare=False)
    raw_comments: dict = field(default_factory=dict, repr=False, compare=False)
    seconds: float = field(default=0.0, repr=False, compare=False)   # kernel time

    @property
    def score(self) -> float:
        return sum(p for _, p, _ in self.cells)

    @property
    def max_score(self) -> float:
        return sum(m for _, _, m in self.cells)


def fmt(x: float) -> str:
    return f"{x:g}"


def data_dir() -> str | None:
    """Where the offline MNIST copy is: $VAEKIT_DATA, else ../shared/data beside the repository."""
    env = os.environ.get("VAEKIT_DATA")
    if env:
        return env
    shared = REPO.parent / "shared" / "data"
    return str(shared) if shared.is_dir() else None


# ------------------------------------------------------------------------------ setup
class Workspace:
    """The temporary folder of one grading run: release, sandbox, kernelspec, workers."""

    def __init__(self, base: Path, course: Course, options: Options):
        self.base = base
        self.course = course
        self.options = options
        self.release_root = base / "release-course"
        self.sandbox = base / "sandbox"
        self.parts = base / "parts"
        self.jupyter = base / "jupyter"
        self.ipython = base / "ipython"
        self.zygote: subprocess.Popen | None = None
        self.zygote_socket: Path | None = None
        self.zygote_ready = False
        self.warm_forks = 0   # kernels the server forked, counted when it stops

    # nbgrader runs as `python -m autograder.nbgrader_main` (nbgrader, started faster)
    def env(self) -> dict[str, str]:
        from autograder.release import tool_env

        env = tool_env()
        env.update({
            "PYTHONPATH": str(REPO),
            "JUPYTER_PATH": str(self.jupyter),
            "JUPYTER_CONFIG_DIR": str(self.base / "jupyter-config"),
            "JUPYTER_RUNTIME_DIR": str(self.base / "runtime"),
            "JUPYTER_PLATFORM_DIRS": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "VAEKIT_GRADER_SANDBOX": str(self.sandbox),
            "VAEKIT_GRADER_PARTS": str(self.parts),
            "VAEKIT_GRADER_IPYTHONDIR": str(self.ipython),
            "VAEKIT_GRADER_MEMORY_MB": str(self.options.memory_mb),
            "VAEKIT_GRADER_FILE_MB": "512",
            "VAEKIT_GRADER_OUTPUT_KB": str(self.options.output_kb),
            "VAEKIT_GRADER_THREADS": str(self.options.threads),
            # kernel folders and connection files inside the run's folder: gone with it, even after Ctrl-C
            "VAEKIT_GRADER_TMP": str(self.base / "tmp"),
            "TMPDIR": str(self.base / "tmp"),
        })
        env.pop("VAEKIT_WORKDIR", None)
        env.pop("VAEKIT_FAST", None)
        data = data_dir()
        if data:
            env["VAEKIT_DATA"] = data
        if self.zygote_ready:
            env["VAEKIT_GRADER_ZYGOTE"] = str(self.zygote_socket)
        return env

    # -- warm kernels (zygote.py)
    def start_warm_kernels(self) -> None:
        """Start the warm-kernel server; it imports while the release is being built."""
        from autograder.execute import kernel_env

        folder = self.base / "zygote"
        home = folder / "home"
        home.mkdir(parents=True)
        for script in ("zygote.py", "kernel_launcher.py"):  # the server uses the launcher's helpers
            shutil.copy(Path(__file__).resolve().parent / script, folder / script)
        self.zygote_socket = folder / "socket"
        if len(str(self.zygote_socket)) > 100:  # AF_UNIX paths are short
            self.zygote_socket = Path(tempfile.mkdtemp(prefix="vaekit-zygote-")) / "socket"
        env = kernel_env(self.env())
        env["HOME"] = str(home)
        with open(folder / "log", "w") as log:
            self.zygote = subprocess.Popen(
                [sys.executable, "-Xfrozen_modules=off", str(folder / "zygote.py"), str(self.zygote_socket)],
                cwd=home, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
                start_new_session=True)

    def wait_warm_kernels(self, timeout: float = 180) -> str | None:
        """None once the server listens; else why kernels will start cold."""
        import selectors

        if self.zygote is None:
            return "not started"
        with selectors.DefaultSelector() as sel:
            sel.register(self.zygote.stdout, selectors.EVENT_READ)
            line = self.zygote.stdout.readline() if sel.select(timeout) else ""
        if line.startswith("ready"):
            self.zygote_ready = True
            return None
        self.stop_warm_kernels()
        log = (self.base / "zygote" / "log").read_text(errors="replace")[-500:]
        return f"the warm-kernel server did not start ({line.strip() or 'no answer'}): {log.strip()}"

    def stop_warm_kernels(self) -> None:
        self.zygote_ready = False
        if self.zygote is None:
            return
        try:
            self.zygote.stdin.close()
            self.zygote.wait(10)
        except Exception:
            self.zygote.kill()
            self.zygote.wait()
        self.zygote = None
        log = self.base / "zygote" / "log"
        if log.is_file():
            self.warm_forks = log.read_text(errors="replace").count("forked kernel ")
        if self.zygote_socket and self.zygote_socket.parent.name.startswith("vaekit-zygote-"):
            shutil.rmtree(self.zygote_socket.parent, ignore_errors=True)

    def nbgrader(self, root: Path, *args: str, stderr_line=None, procs: Running | None = None) -> tuple[int, str]:
        cmd = [sys.executable, "-m", "autograder.nbgrader_main", *args, f"--CourseDirectory.root={root}"]
        kwargs = dict(cwd=root, env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                      text=True, errors="replace", start_new_session=True)
        proc = procs.start(cmd, **kwargs) if procs is not None else subprocess.Popen(cmd, **kwargs)
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if len(lines) > 400:
                del lines[:200]
            if stderr_line:
                stderr_line(line)
        proc.wait()
        if procs is not None:
            procs.done(proc)
        return proc.returncode, "".join(lines)

    def build(self) -> None:
        from autograder.parts import build_parts

        for d in (self.jupyter / "kernels" / KERNEL_NAME, self.base / "jupyter-config", self.base / "runtime",
                  self.base / "tmp", self.ipython / "profile_default" / "startup", self.sandbox / "autograder"):
            d.mkdir(parents=True, exist_ok=True)
        here = Path(__file__).resolve().parent
        shutil.copytree(here / "checks", self.sandbox / "autograder" / "checks",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        (self.sandbox / "autograder" / "__init__.py").write_text('"""Hidden checks only (grading sandbox)."""\n')
        shutil.copy(here / "guard.py", self.sandbox / "_vaekit_guard.py")
        launcher = self.base / "kernel_launcher.py"
        shutil.copy(here / "kernel_launcher.py", launcher)
        (self.jupyter / "kernels" / KERNEL_NAME / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, str(launcher), "-f", "{connection_file}",
                     "--HistoryManager.enabled=False"],
            "display_name": "vaekit grader", "language": "python",
        }, indent=1))
        (self.ipython / "profile_default" / "startup" / "00-vaekit-guard.py").write_text(
            "import _vaekit_guard\n_vaekit_guard.install(get_ipython())\ndel _vaekit_guard\n")
        if self.options.warm_kernels:
            self.start_warm_kernels()
        build_parts(self.parts)
        generate_release(self.release_root, self.course, self)

    def worker_root(self, k: int) -> Path:
        root = self.base / "workers" / f"w{k}"
        if root.exists():
            return root
        (root / "source" / self.course.assignment).mkdir(parents=True)
        shutil.copy(self.release_root / "gradebook.db", root / "gradebook.db")
        o = self.options
        (root / "nbgrader_config.py").write_text(f"""\
from nbconvert.preprocessors import ClearMetadataPreprocessor
from nbgrader.preprocessors import AssignLatePenalties, CheckCellMetadata, IgnorePattern, LimitOutput, SaveAutoGrades

from autograder.execute import GuardedExecute

c = get_config()
c.CourseDirectory.root = {str(root)!r}
c.CourseDirectory.db_url = {"sqlite:///" + str(root / "gradebook.db")!r}
c.Autograde.create_student = True
c.Autograde.autograde_preprocessors = [GuardedExecute, IgnorePattern, ClearMetadataPreprocessor, LimitOutput,
                                       SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
c.GuardedExecute.kernel_name = {KERNEL_NAME!r}
c.GuardedExecute.timeout = {int(o.timeout)}
c.GuardedExecute.notebook_timeout = {int(o.notebook_timeout)}
c.GuardedExecute.startup_timeout = 120
c.LimitOutput.max_lines = 1000
""")
        return root


def generate_release(root: Path, course: Course, ws: Workspace | None = None) -> Path:
    """nbgrader generate_assignment in a new course folder `root`; returns its release/<assignment>.

    Also leaves root/source/<assignment> (the filled-in sources) and root/gradebook.db.
    """
    from autograder.release import prepare_course

    ws = ws or Workspace(root.parent, course, Options())
    prepare_course(root, course)
    code, log = ws.nbgrader(root, "generate_assignment", course.assignment, "--create", "--force")
    release = root / "release" / course.assignment
    if code != 0 or not release.is_dir():
        raise GradingError(f"nbgrader generate_assignment failed:\n{log[-3000:]}")
    return release


# ------------------------------------------------------------------------------ grading
class Grader:
    def __init__(self, submissions: Path, out: Path, options: Options, course: Course | None = None):
        self.submissions = submissions
        self.out = out
        self.options = options
        self.course = course or load_course()
        self.results: dict[tuple[str, str], Result] = {}
        self.warnings: list[str] = []
        self.lock = threading.Lock()
        self.procs = Running()
        self.bar = None
        self.intakes: dict = {}

    # -- input
    def students(self) -> dict[str, Path]:
        if not self.submissions.is_dir():
            raise GradingError(f"{self.submissions} is not a folder of submissions")
        found = {}
        for entry in sorted(self.submissions.iterdir(), key=lambda p: p.name):
            if entry.name.startswith(".") or entry.name.startswith("__"):
                continue
            if entry.is_dir() and not entry.is_symlink():
                found[entry.name] = entry
            else:
                self.warnings.append(f"{entry.name}: not a student folder (ignored)")
        if self.options.shard:
            i, n = self.options.shard
            found = {s: p for k, (s, p) in enumerate(found.items()) if k % n == i - 1}
        return found

    def files_of(self, student: str, folder: Path, names: list[str], inbox: Path) -> dict[str, Path]:
        """Copy the student's expected notebooks into the inbox; warn about everything else."""
        nested = folder / self.course.assignment
        if nested.is_dir() and not any(folder.glob("*.ipynb")):
            folder = nested  # nbgrader's submitted/<student>/<assignment>/ layout
        files, extras = {}, []
        for path in sorted(folder.rglob("*"), key=lambda p: str(p)):
            rel = path.relative_to(folder)
            if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
                continue
            if path.is_dir():
                continue
            if len(rel.parts) == 1 and path.suffix == ".ipynb" and path.stem in names and not path.is_symlink():
                target = inbox / student / path.name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
                files[path.stem] = target
            else:
                extras.append(str(rel))
        for extra in extras:
            hint = ""
            if extra.endswith(".ipynb"):
                missing = [n for n in names if n not in files]
                guess = _closest(Path(extra).stem, missing)
                if guess:
                    hint = f" (expected {guess}.ipynb?)"
            self.warnings.append(f"{student}: extra file {extra}{hint} (ignored)")
        return files

    # -- output
    def write_csvs(self) -> None:
        names = self.names
        results = sorted(self.results.values(), key=lambda r: (r.student, r.notebook))
        order = {n: {c: i for i, c in enumerate(self.refs[n].max_points)} for n in names}
        grades = io.StringIO()
        w = csv.writer(grades, lineterminator="\n")
        w.writerow(["student", "notebook", "cell", "points", "max_points", "status"])
        for r in results:
            for cell, points, max_points in sorted(r.cells, key=lambda c: order[r.notebook].get(c[0], 999)):
                w.writerow([r.student, r.notebook, cell, fmt(points), fmt(max_points), r.status])
        summary = io.StringIO()
        w = csv.writer(summary, lineterminator="\n")
        w.writerow(["student", "total", "max_total", *names, "status"])
        students = sorted({r.student for r in results})
        from autograder.intake import worst

        for s in students:
            mine = {r.notebook: r for r in results if r.student == s}
            if len(mine) < len(names):
                continue  # still being graded
            total = sum(r.score for r in mine.values())
            max_total = sum(r.max_score for r in mine.values())
            w.writerow([s, fmt(total), fmt(max_total), *(fmt(mine[n].score) for n in names),
                        worst(*(mine[n].status for n in names))])
        report = io.StringIO()
        w = csv.writer(report, lineterminator="\n")
        w.writerow(["student", "notebook", "status", "points", "max_points", "detail"])
        for r in results:
            w.writerow([r.student, r.notebook, r.status, fmt(r.score), fmt(r.max_score), "; ".join(r.notes)])
        for name, buf in (("grades.csv", grades), ("summary.csv", summary), ("report.csv", report)):
            tmp = self.out / f".{name}.tmp"
            tmp.write_text(buf.getvalue())
            os.replace(tmp, self.out / name)

    def add(self, results: list[Result]) -> None:
        with self.lock:
            for r in results:
                self.results[(r.student, r.notebook)] = r
            self.write_csvs()

    # -- main
    def run(self) -> int:
        t0 = time.monotonic()
        sub = self.submissions.resolve()
        out = self.out.resolve()
        if out == sub or sub in out.parents:
            raise GradingError(f"--out {self.out} is inside the submissions folder, which the grader never writes to")
        students = self.students()
        self.out.mkdir(parents=True, exist_ok=True)
        for stale in ("feedback", "nbgrader"):   # our own folders, from an earlier run into OUT
            shutil.rmtree(self.out / stale, ignore_errors=True)
        (self.out / "final_grades.csv").unlink(missing_ok=True)
        with tempfile.TemporaryDirectory(prefix="vaekit-grade-", ignore_cleanup_errors=True) as tmp:
            ws = Workspace(Path(tmp), self.course, self.options)
            try:
                self.grade_in(ws, students)
            finally:
                ws.stop_warm_kernels()
        n_students = len({r.student for r in self.results.values()})
        run = [r.seconds for r in self.results.values() if r.seconds]
        per = f"; {len(run)} notebook(s) run, {sum(run) / len(run):.0f} s each on average" if run else ""
        if run and self.options.warm_kernels:
            per += f", {ws.warm_forks} kernel(s) warm"
        self.say(f"graded {n_students} student(s) in {time.monotonic() - t0:.0f} s{per}")
        self.say(f"grades:   {self.out / 'grades.csv'}\nsummary:  {self.out / 'summary.csv'}\n"
                 f"report:   {self.out / 'report.csv'}\nfeedback: {self.out / 'feedback'}/<student>/<notebook>.html\n"
                 f"nbgrader course for manual grading (formgrader): {self.out / 'nbgrader'}")
        return 0

    def grade_in(self, ws: Workspace, students: dict[str, Path]) -> None:
        from autograder.intake import Intake, build_reference, take_in

        import nbformat

        self.say("building the release with nbgrader…")
        ws.build()
        release_dir = ws.release_root / "release" / self.course.assignment
        source_dir = ws.release_root / "source" / self.course.assignment
        self.names = sorted(p.stem for p in release_dir.glob("*.ipynb"))
        releases = {n: nbformat.read(release_dir / f"{n}.ipynb", as_version=4) for n in self.names}
        sources = {n: nbformat.read(source_dir / f"{n}.ipynb", as_version=4) for n in self.names}
        self.refs = {n: build_reference(n, releases[n], sources[n]) for n in self.names}
        from autograder.feedback import secret_lines

        public = [c.source for nb in releases.values() for c in nb.cells]
        public += [p.read_text() for p in (REPO / "vaekit").glob("*.py")]
        self.secrets = secret_lines(list(sources.values()), Path(__file__).parent / "checks", public)
        self.released_tests = {n: {c.metadata["nbgrader"]["grade_id"]: c.source for c in releases[n].cells
                                   if c.metadata.get("nbgrader", {}).get("grade")} for n in self.names}

        # intake: copy in, read, rebuild
        inbox, staged = ws.base / "inbox", ws.base / "staged"
        ids = {s: f"s{k:05d}" for k, s in enumerate(students)}
        todo: list[str] = []
        for student, folder in students.items():
            files = self.files_of(student, folder, self.names, inbox)
            immediate, gradable = [], False
            for n in self.names:
                ref = self.refs[n]
                if n not in files:
                    immediate.append(self.blank(student, n, "missing", [f"{n}.ipynb not found in the submission"]))
                    continue
                try:
                    intake = take_in(ref, files[n])
                except Exception as exc:  # a bug of the grader on an odd notebook: report, go on
                    intake = Intake("error", [f"the grader could not read this notebook ({type(exc).__name__}: {exc})"])
                if intake.nb is None:
                    immediate.append(self.blank(student, n, intake.status, intake.notes))
                    continue
                target = staged / ids[student] / f"{n}.ipynb"
                target.parent.mkdir(parents=True, exist_ok=True)
                nbformat.write(intake.nb, target)
                self.intakes[(student, n)] = intake
                gradable = True
            self.add(immediate)
            for r in immediate:
                self.feedback_blank(r)
            if gradable:
                todo.append(student)
        for w in self.warnings:
            self.say(f"warning: {w}")
        total = sum(1 for s in todo for n in self.names if (s, n) in self.intakes)
        if self.options.warm_kernels and total:
            problem = ws.wait_warm_kernels()
            if not problem:
                self.say("warm kernels ready: torch & co imported once, each notebook gets a fresh fork")
            else:
                self.warnings.append(problem)
                self.say(f"warning: {problem}; kernels start cold (slower, same grades)")
        elif self.options.warm_kernels:
            ws.stop_warm_kernels()
        self.say(f"grading {total} notebook(s) of {len(todo)} student(s) with {self.options.jobs} worker(s)…")
        self.start_bar(total)
        work: queue.Queue = queue.Queue()
        # the students with the most notebooks first: the batch ends together
        todo.sort(key=lambda s: -sum((s, n) in self.intakes for n in self.names))
        for s in todo:
            work.put(s)
        errors: list[BaseException] = []
        threads = [threading.Thread(target=self.worker, args=(ws, k, work, ids, staged, errors), daemon=True)
                   for k in range(max(1, self.options.jobs))]
        try:
            for t in threads:
                t.start()
            for t in threads:
                while t.is_alive():
                    t.join(0.5)
        except KeyboardInterrupt:
            self.stop_all()
            raise
        finally:
            self.close_bar()
        if errors:
            raise GradingError(str(errors[0]))
        self.write_csvs()
        self.export_course(ws)

    def blank(self, student: str, notebook: str, status: str, notes: list[str]) -> Result:
        cells = [(c, 0.0, m) for c, m in self.refs[notebook].max_points.items()]
        return Result(student, notebook, status, notes, cells)

    # -- workers
    def worker(self, ws: Workspace, k: int, work: queue.Queue, ids: dict, staged: Path, errors: list) -> None:
        root = ws.worker_root(k)
        while not errors:
            batch = []
            size = max(1, min(4, math.ceil(work.qsize() / (4 * max(1, self.options.jobs)))))
            while len(batch) < size:
                try:
                    batch.append(work.get_nowait())
                except queue.Empty:
                    break
            if not batch:
                return
            try:
                self.grade_batch(ws, root, batch, ids, staged)
            except Stopped:  # Ctrl-C: the main thread is stopping everything
                return
            except BaseException as exc:  # a failure of the grader itself
                errors.append(exc)
                return

    def grade_batch(self, ws: Workspace, root: Path, batch: list[str], ids: dict, staged: Path,
                    notebook: str | None = None) -> None:
        a = self.course.assignment
        shutil.rmtree(root / "submitted", ignore_errors=True)
        shutil.rmtree(root / "autograded", ignore_errors=True)
        for s in batch:
            target = root / "submitted" / ids[s] / a
            target.mkdir(parents=True)
            for n in self.names:
                src = staged / ids[s] / f"{n}.ipynb"
                if src.exists() and (notebook is None or n == notebook):
                    shutil.copyfile(src, target / f"{n}.ipynb")
        args = ["autograde", a, "--force"]
        if notebook:
            args.append(f"--notebook={notebook}")
        code, log = ws.nbgrader(root, *args, stderr_line=self.progress_line, procs=self.procs)
        if self.procs.closed:  # killed by Ctrl-C: what it left is not a result
            raise Stopped()
        if "grading kernel not found" in log or "No such kernel" in log:
            raise GradingError(f"the grading kernel could not be found:\n{log[-2000:]}")
        results, failed = [], []
        for s in batch:
            try:
                done = self.collect(root, s, ids[s], notebook)
            except Exception:  # an unreadable result: grade the student again, alone
                done = None
            if done is None:
                failed.append(s)
            else:
                results += done
        self.add(results)
        for r in results:
            self.feedback(root, r, ids[r.student])
        for s in failed:
            if len(batch) > 1:
                self.grade_batch(ws, root, [s], ids, staged)
            elif notebook is None:
                for n in self.names:
                    if (s, n) in self.intakes:
                        self.grade_batch(ws, root, [s], ids, staged, notebook=n)
            else:
                r = self.blank(s, notebook, "error", self.intakes[(s, notebook)].notes +
                               ["nbgrader could not grade this notebook: " + _last_error(log)])
                self.add([r])
                self.feedback_blank(r)
                self.tick()

    def collect(self, root: Path, student: str, sid: str, notebook: str | None) -> list[Result] | None:
        """Read one student's grades from the worker's gradebook; None if nbgrader failed on them."""
        from nbgrader.api import Gradebook, MissingEntry

        import nbformat

        from autograder.execute import GRADER_KEY
        from autograder.intake import worst

        a = self.course.assignment
        names = [n for n in self.names if (student, n) in self.intakes and notebook in (None, n)]
        folder = root / "autograded" / sid / a
        if not all((folder / f"{n}.ipynb").exists() for n in names):
            return None
        results = []
        with warnings.catch_warnings(), Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
            warnings.simplefilter("ignore")
            for n in names:
                try:
                    sub = gb.find_submission_notebook(n, a, sid)
                except MissingEntry:
                    return None
                nb = nbformat.read(folder / f"{n}.ipynb", as_version=4)
                intake = self.intakes[(student, n)]
                status, notes = intake.status, list(intake.notes)
                for event in nb.metadata.get(GRADER_KEY, {}).get("events", []):
                    kind = {"timeout": "timeout", "error": "error", "tampered": "tampered"}.get(event["kind"])
                    where = _cell_label(nb, event.get("cell"))
                    notes.append(f"{where}{event['detail']}")
                    if kind:
                        status = worst(status, kind)
                scores = {g.name: (float(g.auto_score or 0), float(g.max_score)) for g in sub.grades
                          if g.cell.cell_type == "code"}
                cells = [(c, scores.get(c, (0.0, m))[0], m) for c, m in self.refs[n].max_points.items()]
                r = Result(student, n, status, list(dict.fromkeys(notes)), cells)
                r.autograded = nb
                r.all_scores = {g.name: (float(g.score or 0), float(g.max_score)) for g in sub.grades}
                r.raw_grades = {g.name: (g.auto_score, bool(g.needs_manual_grade)) for g in sub.grades}
                r.raw_comments = {c.name: c.auto_comment for c in sub.comments}
                r.seconds = float(nb.metadata.get(GRADER_KEY, {}).get("seconds", 0.0))
                kept = self.out / "nbgrader" / "autograded" / r.student / a / f"{n}.ipynb"
                kept.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(folder / f"{n}.ipynb", kept)
                results.append(r)
        return results

    # -- the course folder for nbgrader's formgrader
    def export_course(self, ws: Workspace) -> Path:
        """OUT/nbgrader: an nbgrader course folder with every result in its gradebook.

        The written answers are graded there by hand with nbgrader's formgrader
        (`nbgrader formgrader` or JupyterLab's Formgrader, course root OUT/nbgrader).
        """
        from nbgrader.api import Gradebook

        a = self.course.assignment
        root = self.out / "nbgrader"
        root.mkdir(parents=True, exist_ok=True)
        for sub in ("source", "release"):
            shutil.rmtree(root / sub, ignore_errors=True)
            shutil.copytree(ws.release_root / sub, root / sub)
        graded = {r.student for r in self.results.values()}
        autograded = root / "autograded"
        if autograded.exists():
            for folder in autograded.iterdir():
                if folder.name not in graded:
                    shutil.rmtree(folder)
        db = root / "gradebook.db"
        if self.options.db_url:   # a shared database, where `nbgrader generate_assignment` ran once
            url = self.options.db_url
            db_line = f"c.CourseDirectory.db_url = {url!r}\n"
        else:
            shutil.copyfile(ws.release_root / "gradebook.db", db)
            url = f"sqlite:///{db}"
            db_line = "c.CourseDirectory.db_url = 'sqlite:///' + os.path.join(c.CourseDirectory.root, 'gradebook.db')\n"
        (root / "nbgrader_config.py").write_text(
            "# the course folder of the last `python -m autograder grade` (for formgrader)\n"
            "import os\n\nc = get_config()\n"
            "c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))\n" + db_line)
        with warnings.catch_warnings(), Gradebook(url) as gb:
            warnings.simplefilter("ignore")   # SQLAlchemy's autoflush chatter inside nbgrader's API
            for student in sorted(graded):
                gb.update_or_create_student(student)
                gb.update_or_create_submission(a, student)
            for r in sorted(self.results.values(), key=lambda r: (r.student, r.notebook)):
                nb = gb.find_submission_notebook(r.notebook, a, r.student)
                for g in nb.grades:
                    auto, manual = r.raw_grades.get(g.name, (0.0 if g.cell.cell_type == "code" else None,
                                                             g.cell.cell_type != "code"))
                    if not r.raw_grades:          # missing, unreadable: nothing to grade by hand
                        auto, manual = 0.0, False
                    g.auto_score, g.needs_manual_grade = auto, manual
                for c in nb.comments:
                    c.auto_comment = r.raw_comments.get(c.name)
            gb.db.commit()
        return root

    # -- feedback
    def feedback(self, root: Path, r: Result, sid: str) -> None:
        from autograder.feedback import clean, render, render_missing

        try:
            nb = clean(r.autograded, self.released_tests[r.notebook], r.all_scores, self.secrets,
                       r.status == "tampered")
            max_total = sum(m for _, m in r.all_scores.values())
            render(nb, r.student, r.notebook, r.status, r.notes, r.score, max_total, self.feedback_path(r))
        except Exception as exc:  # never lose the grades over a page that does not render
            self.say(f"warning: {r.student}/{r.notebook}: feedback could not be rendered ({exc})")
            render_missing(r.student, r.notebook, r.status, r.notes + [f"graded: {r.score:g} points; the "
                           "graded notebook could not be rendered"], r.max_score, self.feedback_path(r), r.score)
        r.autograded = None

    def feedback_blank(self, r: Result) -> None:
        from autograder.feedback import render_missing

        render_missing(r.student, r.notebook, r.status, r.notes, r.max_score, self.feedback_path(r))

    def feedback_path(self, r: Result) -> Path:
        return self.out / "feedback" / _safe(r.student) / f"{r.notebook}.html"

    # -- progress
    def say(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def start_bar(self, total: int) -> None:
        if self.options.progress:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="notebook", desc="grading", file=sys.stderr, dynamic_ncols=True)
        self._started: dict[str, bool] = {}

    def progress_line(self, line: str) -> None:
        m = ASSIGNMENT_LOG.search(line)
        if not m or "/autograded/" not in m.group("path"):
            return
        path = m.group("path")
        with self.lock:
            if m.group(1) == "Autograding":
                self._started[path] = True
            elif self._started.pop(path, False):
                self.tick_locked()

    def tick(self) -> None:
        with self.lock:
            self.tick_locked()

    def tick_locked(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def stop_all(self) -> None:
        """Stop the nbgrader processes (and their kernels) and wait until they are gone."""
        procs = self.procs.close()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for proc in procs:
                try:
                    os.killpg(proc.pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass
            deadline = time.monotonic() + 10
            for proc in procs:
                try:
                    proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
            procs = [p for p in procs if p.poll() is None]
            if not procs:
                return


def _safe(name: str) -> str:
    return re.sub(r"[^\w.@+-]", "_", name) or "_"


def _closest(name: str, candidates: list[str]) -> str | None:
    import difflib

    low = {c.lower(): c for c in candidates}
    hits = difflib.get_close_matches(name.lower(), list(low), n=1, cutoff=0.5)
    if hits:
        return low[hits[0]]
    for c in candidates:
        if c.split("_", 1)[-1].lower() in name.lower():
            return c
    return None


def _cell_label(nb, index) -> str:
    if index is None or not isinstance(index, int) or index >= len(nb.cells):
        return ""
    gid = nb.cells[index].metadata.get("nbgrader", {}).get("grade_id")
    if gid:
        return f"cell {gid}: "
    before = next((c.metadata["nbgrader"]["grade_id"] for c in reversed(nb.cells[:index])
                   if c.metadata.get("nbgrader", {}).get("grade_id")), None)
    return f"a cell after {before}: " if before else f"cell {index + 1}: "


def _last_error(log: str) -> str:
    lines = [l for l in log.splitlines() if "ERROR" in l or "Error" in l]
    return (lines[-1] if lines else log.strip().splitlines()[-1] if log.strip() else "no output")[:300]


def refresh_feedback(out: Path, course: Course | None = None) -> int:
    """After manual grading in OUT/nbgrader (formgrader): feedback and OUT/final_grades.csv again.

    The feedback then shows the graders' points and comments on the written
    answers, still without hidden tests; final_grades.csv has every graded cell,
    autograded and manual, with `graded` = auto, manual or pending.
    """
    import nbformat
    from nbgrader.api import Gradebook

    from autograder.feedback import clean, render, secret_lines

    course = course or load_course()
    a = course.assignment
    root = out / "nbgrader"
    if not (root / "gradebook.db").is_file():
        raise GradingError(f"{root / 'gradebook.db'} not found: run `python -m autograder grade ... --out {out}` first")
    release_dir, source_dir = root / "release" / a, root / "source" / a
    names = sorted(p.stem for p in release_dir.glob("*.ipynb"))
    releases = {n: nbformat.read(release_dir / f"{n}.ipynb", as_version=4) for n in names}
    sources = [nbformat.read(source_dir / f"{n}.ipynb", as_version=4) for n in names]
    public = [c.source for nb in releases.values() for c in nb.cells]
    public += [p.read_text() for p in (REPO / "vaekit").glob("*.py")]
    secrets = secret_lines(sources, Path(__file__).parent / "checks", public)
    released = {n: {c.metadata["nbgrader"]["grade_id"]: c.source for c in releases[n].cells
                    if c.metadata.get("nbgrader", {}).get("grade")} for n in names}
    report = {}
    if (out / "report.csv").is_file():
        with (out / "report.csv").open() as f:
            report = {(r["student"], r["notebook"]): r for r in csv.DictReader(f)}
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["student", "notebook", "cell", "points", "max_points", "graded"])
    with warnings.catch_warnings(), Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        warnings.simplefilter("ignore")
        for student in sorted(s.id for s in gb.students):
            for n in names:
                sub = gb.find_submission_notebook(n, a, student)
                info = report.get((student, n), {})
                status = info.get("status", "ok")
                notes = [x for x in info.get("detail", "").split("; ") if x]
                for g in sorted(sub.grades, key=lambda g: g.name):
                    graded = ("manual" if g.manual_score is not None else
                              "pending" if g.needs_manual_grade else "auto")
                    w.writerow([student, n, g.name, fmt(float(g.score or 0)), fmt(float(g.max_score)), graded])
                path = root / "autograded" / student / a / f"{n}.ipynb"
                target = out / "feedback" / _safe(student) / f"{n}.html"
                if not path.is_file():
                    continue
                scores = {g.name: (float(g.score or 0), float(g.max_score)) for g in sub.grades}
                comments = {c.name: c.comment for c in sub.comments if c.comment}
                pending = {g.name for g in sub.grades if g.needs_manual_grade}
                nb = clean(nbformat.read(path, as_version=4), released[n], scores, secrets,
                           status == "tampered", comments, pending)
                render(nb, student, n, status, notes, float(sub.score), float(sub.max_score), target)
    (out / "final_grades.csv").write_text(buf.getvalue())
    print(f"feedback: {out / 'feedback'}\nall grades (auto and manual): {out / 'final_grades.csv'}")
    return 0


def grade(submissions: Path, out: Path, options: Options | None = None) -> int:
    return Grader(submissions, out, options or Options()).run()
