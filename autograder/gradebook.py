"""OUT/nbgrader: nbgrader's course folder and gradebook, written only from the judge's results.

Formgrader (JupyterLab's Formgrader menu, run in OUT/nbgrader) shows each graded
notebook (`autograded/<student>/<assignment>/<notebook>.ipynb`: the student's submitted
outputs, the judge's verdict on each test cell) with the points from the gradebook.

Grading again into the same OUT never loses an instructor's work: the gradebook is
updated in place (after a timestamped backup in OUT/backups/), autograded points are
replaced, manual points and comments are never touched, and a written answer whose
submission changed since it was graded by hand is flagged for review again.
`refresh` (`python -m autograder feedback OUT`) renders the feedback again after manual
grading and writes OUT/final_grades.csv (every cell) and OUT/final_summary.csv (one
total per student, autograded + manual, out of the real maximum).

A shared gradebook (`grade --db-url`, e.g. one PostgreSQL database for every machine of a
sharded run): `check_database` connects before anything is graded and says what is wrong;
`init_database` lets nbgrader itself (generate_assignment, its Gradebook) create the schema,
the course, the assignment, its notebooks and cells; before each write every grade and
comment of the assignment is saved to OUT/backups/gradebook-<time>.json (`dump_grades`,
which `load_grades` reads back: also how `merge` copies grades between gradebooks).
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import io
import json
import os
import shutil
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import nbformat

from autograder.config import Course, load_course

if TYPE_CHECKING:  # pragma: no cover
    from autograder.grade import Result

HASHES = ".vaekit-submissions.json"  # content hash of each graded notebook, to tell a changed one
COURSE_ID = "default_course"  # nbgrader's Gradebook default; a shared database holds this course
DRIVER_HINT = (
    "pip install -c constraints.txt -e '.[dev,postgres]' (the `postgres` extra: psycopg 3, "
    "the driver SQLAlchemy 2 uses for postgresql+psycopg:// URLs)"
)
URL_HINT = "expected e.g. postgresql+psycopg://USER:PASSWORD@HOST:5432/DATABASE"


def _grading_error(text: str) -> Exception:
    from autograder.grade import GradingError

    return GradingError(text)


@contextmanager
def open_gradebook(url: str, course_id: str = COURSE_ID):
    """Open nbgrader's gradebook at `url` for `course_id` (a context manager yielding the Gradebook)."""
    from nbgrader.api import Gradebook

    # nbgrader runs `alembic` by name when it creates a gradebook: the venv's bin folder must be on PATH
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = os.pathsep.join([bin_dir, os.environ.get("PATH", "")])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SQLAlchemy's autoflush chatter inside nbgrader's API
        with Gradebook(url, course_id) as gb:
            yield gb


def shown(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def check_database(url: str) -> str:
    """Connect to a --db-url gradebook before anything is graded; returns the URL to use.

    A plain postgresql:// URL gets the documented driver (postgresql+psycopg://) unless
    psycopg2 is installed. Raises GradingError saying what is wrong and what to do.
    """
    import importlib.util

    from sqlalchemy import create_engine, inspect
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

    try:
        u = make_url(url)
    except ArgumentError:
        raise _grading_error(f"--db-url {url!r} is not a database URL: {URL_HINT}") from None
    if u.drivername == "postgresql" and importlib.util.find_spec("psycopg2") is None:
        u = u.set(drivername="postgresql+psycopg")
    backend = u.get_backend_name()
    where = u.render_as_string(hide_password=True)
    if backend == "postgresql" and not u.database:
        raise _grading_error(f"--db-url {where} names no database: {URL_HINT}")
    try:
        engine = create_engine(u, connect_args={"connect_timeout": 10} if backend == "postgresql" else {})
    except NoSuchModuleError:
        raise _grading_error(f"--db-url {where}: SQLAlchemy knows no database {u.drivername!r}; {URL_HINT}") from None
    except ImportError as exc:
        raise _grading_error(
            f"--db-url {where}: the database driver {exc.name or u.get_driver_name()!r} is not "
            f"installed: {DRIVER_HINT if backend == 'postgresql' else 'install it'}"
        ) from None
    try:
        tables = set(inspect(engine).get_table_names())
    except DBAPIError as exc:
        first = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
        todo = (
            f"create it on the server (`createdb -h {u.host} -p {u.port or 5432} -U {u.username} {u.database}`)"
            if "does not exist" in first and "database" in first
            else "is the server running and reachable from this machine, are the user, password, host and port right?"
        )
        raise _grading_error(f"cannot open the gradebook database {where}: {first}; {todo}") from None
    finally:
        engine.dispose()
    if tables and not {"assignment", "notebook", "grade", "alembic_version"} <= tables:
        raise _grading_error(
            f"the database {where} holds tables that are not an nbgrader gradebook "
            f"({', '.join(sorted(tables)[:5])}…): give an empty database or an nbgrader one"
        )
    return u.render_as_string(hide_password=False)


@contextmanager
def _init_lock(url: str):
    """Machines starting at once create the assignment one after the other (a PostgreSQL advisory lock)."""
    if not url.startswith("postgresql"):
        yield
        return
    from sqlalchemy import create_engine, func, select

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(select(func.pg_advisory_lock(0x7661656B)))  # "vaek"; released with the connection
            yield
    finally:
        engine.dispose()


def init_database(url: str, release_root: Path, course: Course, work: Path) -> None:
    """Let nbgrader write the assignment, its notebooks and cells into the gradebook at `url`.

    Runs nbgrader's generate_assignment on the release sources with `url` as its database
    (nbgrader's Gradebook creates the schema and the course row on an empty one), then
    checks through the API that the assignment holds every released notebook.
    """
    from autograder.release import run_nbgrader

    a = course.assignment
    root = work / "shared-course"
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(release_root / "source", root / "source")
    (root / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        f"c.CourseDirectory.root = {str(root)!r}\n"
        f"c.CourseDirectory.db_url = {url!r}\n"
        f"c.CourseDirectory.course_id = {COURSE_ID!r}\n"
    )
    with _init_lock(url):
        proc = run_nbgrader(root, "generate_assignment", a, "--create", "--force", timeout=600)
    where = shown(url)
    if proc.returncode != 0:
        log = (proc.stdout + proc.stderr).replace(url, where)
        errors = [line for line in log.splitlines() if "ERROR" in line or "Error" in line] or log.splitlines()[-5:]
        hint = (
            " (the gradebook holds submissions of a release with other cells: grade with the release those were "
            "graded with, or use a new database)"
            if "Cannot" in log
            else ""
        )
        raise _grading_error(
            f"nbgrader could not write assignment {a!r} into the gradebook {where}{hint}:\n" + "\n".join(errors[-5:])
        )
    released = sorted(p.stem for p in (release_root / "source" / a).glob("*.ipynb"))
    with open_gradebook(url) as gb:
        there = sorted(nb.name for nb in gb.find_assignment(a).notebooks)
    if there != released:
        raise _grading_error(
            f"the gradebook {where} has notebooks {there} in assignment {a!r}, the release has "
            f"{released}: use a new database for this release"
        )


GRADE_FIELDS = ("auto_score", "manual_score", "extra_credit", "needs_manual_grade")
COMMENT_FIELDS = ("auto_comment", "manual_comment")
STUDENT_FIELDS = ("first_name", "last_name", "email", "lms_user_id")


def dump_grades(url: str, assignment: str, students: set[str] | None = None) -> dict:
    """Every grade and comment of `assignment` (of `students`, default all) through nbgrader's API."""
    data: dict = {}
    with open_gradebook(url) as gb:
        try:
            submissions = gb.find_assignment(assignment).submissions
        except Exception:  # no such assignment yet: nothing to keep
            return data
        for sub in submissions:
            student = sub.student.id
            if students is not None and student not in students:
                continue
            entry = data[student] = {
                "student": {f: getattr(sub.student, f, None) for f in STUDENT_FIELDS},
                "timestamp": sub.timestamp.isoformat() if sub.timestamp else None,
                "notebooks": {},
            }
            for nb in sub.notebooks:
                entry["notebooks"][nb.name] = {
                    "flagged": bool(nb.flagged),
                    "grades": {g.name: {f: getattr(g, f) for f in GRADE_FIELDS} for g in nb.grades},
                    "comments": {c.name: {f: getattr(c, f) for f in COMMENT_FIELDS} for c in nb.comments},
                }
    return data


def load_grades(url: str, assignment: str, data: dict, manual_only: bool = False) -> tuple[int, int]:
    """Write `dump_grades` data into the gradebook at `url` (which holds the same release); returns the
    numbers of manual grades and manual comments written. manual_only: only the instructor's scores and
    comments."""
    manual = comments_written = 0
    with open_gradebook(url) as gb:
        for student, entry in sorted(data.items()):
            if not manual_only:
                gb.update_or_create_student(
                    student, **{k: v for k, v in entry["student"].items() if v is not None and k in STUDENT_FIELDS}
                )
                ts = entry.get("timestamp")
                gb.update_or_create_submission(
                    assignment, student, **({"timestamp": datetime.datetime.fromisoformat(ts)} if ts else {})
                )
            for name, d in entry["notebooks"].items():
                try:
                    nb = gb.find_submission_notebook(name, assignment, student)
                except Exception:
                    if manual_only:
                        continue
                    raise
                grades = {g.name: g for g in nb.grades}
                comments = {c.name: c for c in nb.comments}
                missing = (set(d["grades"]) - set(grades)) | (set(d["comments"]) - set(comments))
                if missing:
                    raise _grading_error(
                        f"{student}/{name}: cells {sorted(missing)} are not in the gradebook's "
                        "release (the gradebooks hold different releases)"
                    )
                for cell, values in d["grades"].items():
                    if manual_only and values["manual_score"] is None and values["extra_credit"] is None:
                        continue
                    fields = ("manual_score", "extra_credit", "needs_manual_grade") if manual_only else GRADE_FIELDS
                    for f in fields:
                        setattr(grades[cell], f, values[f])
                    manual += values["manual_score"] is not None
                for cell, values in d["comments"].items():
                    if manual_only and not values["manual_comment"]:
                        continue
                    for f in ("manual_comment",) if manual_only else COMMENT_FIELDS:
                        setattr(comments[cell], f, values[f])
                    comments_written += bool(values["manual_comment"])
                if not manual_only:
                    nb.flagged = d["flagged"]
        gb.db.commit()
    return manual, comments_written


def backup_grades(out: Path, url: str, assignment: str) -> Path | None:
    """OUT/backups/gradebook-<time>.json: every grade and comment of the assignment, before a write."""
    data = dump_grades(url, assignment)
    if not data:
        return None
    path = out / "backups" / f"gradebook-{datetime.datetime.now():%Y%m%d-%H%M%S-%f}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {"db_url": shown(url), "assignment": assignment, "students": data}, indent=1, sort_keys=True, default=str
        )
    )
    return path


def write_config(root: Path, db_url: str | None) -> None:
    """OUT/nbgrader/nbgrader_config.py: the course folder and its gradebook, for formgrader and `nbgrader`."""
    if db_url:
        db_line = f"c.CourseDirectory.db_url = {db_url!r}\nc.CourseDirectory.course_id = {COURSE_ID!r}\n"
    else:
        db_line = "c.CourseDirectory.db_url = 'sqlite:///' + os.path.join(c.CourseDirectory.root, 'gradebook.db')\n"
    (root / "nbgrader_config.py").write_text(
        "# the course folder of `python -m autograder grade` (for formgrader)\n"
        "import os\n\nc = get_config()\n"
        "c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))\n" + db_line
    )


def graded_path(out: Path, assignment: str, student: str, notebook: str) -> Path:
    """Where nbgrader keeps the autograded copy of a student's notebook under `out`."""
    return out / "nbgrader" / "autograded" / student / assignment / f"{notebook}.ipynb"


def keep_graded(out: Path, assignment: str, result: Result) -> Path | None:
    """Write the graded notebook where formgrader and `feedback` read it."""
    if result.graded is None:
        return None
    path = graded_path(out, assignment, result.student, result.notebook)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(result.graded, path)
    # formgrader counts an assignment's submissions by the folders under submitted/
    submitted = out / "nbgrader" / "submitted" / result.student / assignment / f"{result.notebook}.ipynb"
    submitted.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(result.graded, submitted)
    return path


def _digest(path: Path | None) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path and path.is_file() else None


def export(out: Path, release_root: Path, course: Course, results: list[Result], db_url: str | None = None) -> str:
    """Write every result into the gradebook; returns what was kept, for the summary line."""
    a = course.assignment
    root = out / "nbgrader"
    root.mkdir(parents=True, exist_ok=True)
    for sub in ("source", "release"):  # generated by the grader, not the instructor's
        shutil.rmtree(root / sub, ignore_errors=True)
        shutil.copytree(release_root / sub, root / sub)
    said = []
    db = root / "gradebook.db"
    if db_url:
        url = db_url
        backup = backup_grades(out, url, a)
        if backup:
            said.append(f"backup of the shared gradebook's grades and comments: {backup}")
    else:
        if db.is_file():
            backup = out / "backups" / f"gradebook-{datetime.datetime.now():%Y%m%d-%H%M%S}.db"
            backup.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(db, backup)
            said.append(f"backup of the earlier gradebook: {backup}")
        else:
            shutil.copyfile(release_root / "gradebook.db", db)
        url = f"sqlite:///{db}"
    write_config(root, db_url)
    hashes_path = root / HASHES
    hashes = json.loads(hashes_path.read_text()) if hashes_path.is_file() else {}
    kept = flagged = 0
    with open_gradebook(url) as gb:
        for r in sorted(results, key=lambda r: (r.student, r.notebook)):
            gb.update_or_create_student(r.student)
            gb.update_or_create_submission(a, r.student)
            nb = gb.find_submission_notebook(r.notebook, a, r.student)
            points = {cell: p for cell, p, _ in r.cells}
            key = f"{r.student}/{r.notebook}"
            digest = _digest(graded_path(out, a, r.student, r.notebook))
            changed = key in hashes and hashes[key] != digest
            for g in nb.grades:
                if g.cell.cell_type == "code":
                    g.auto_score, g.needs_manual_grade = points.get(g.name, 0.0), False
                elif r.graded_path is None:  # missing or unreadable: nothing to grade by hand
                    g.auto_score = 0.0
                    g.needs_manual_grade = False
                else:
                    g.auto_score = None
                    if g.manual_score is not None:
                        kept += 1
                        if changed:
                            g.needs_manual_grade = True
                            flagged += 1
                    else:
                        g.needs_manual_grade = True
            if digest:
                hashes[key] = digest
        gb.db.commit()
    hashes_path.write_text(json.dumps(hashes, indent=0, sort_keys=True))
    if kept:
        said.insert(
            0,
            f"kept {kept} manual grade(s)"
            + (f"; {flagged} whose submission changed are flagged for review in formgrader" if flagged else ""),
        )
    return "; ".join(said)


def shared_url_of(out: Path) -> str | None:
    """The --db-url gradebook an OUT folder was graded into (its nbgrader_config.py says), else None."""
    config = out / "nbgrader" / "nbgrader_config.py"
    if config.is_file():
        for line in config.read_text().splitlines():
            if line.startswith("c.CourseDirectory.db_url = '") and "os.path" not in line:
                return line.split("=", 1)[1].strip().strip("'\"")
    return None


def db_url_of(out: Path) -> str:
    """The gradebook an OUT folder uses (its nbgrader_config.py says; SQLite by default)."""
    return shared_url_of(out) or f"sqlite:///{out / 'nbgrader' / 'gradebook.db'}"


def students_of(out: Path) -> list[str]:
    """The students graded into OUT (its state, else its report.csv)."""
    state = out / ".vaekit" / "state.json"
    if state.is_file():
        return sorted(json.loads(state.read_text()).get("students", {}))
    if (out / "report.csv").is_file():
        with (out / "report.csv").open() as f:
            return sorted({r["student"] for r in csv.DictReader(f)})
    return []


def refresh(out: Path, course: Course | None = None) -> int:
    """After manual grading in formgrader: feedback again, OUT/final_grades.csv and OUT/final_summary.csv."""
    from autograder import feedback
    from autograder.grade import GradingError

    course = course or load_course()
    a = course.assignment
    root = out / "nbgrader"
    shared = shared_url_of(out)
    url = shared or db_url_of(out)
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///") :]).is_file():
        raise GradingError(
            f"{url[len('sqlite:///') :]} not found: run `python -m autograder grade ... --out {out}` first"
        )
    mine = None
    if shared:
        mine = set(students_of(out))
        if not mine:
            raise GradingError(
                f"{out} holds no graded students: run `python -m autograder grade ... --out {out}` first"
            )
        check_database(shared)
    names = sorted(p.stem for p in (root / "release" / a).glob("*.ipynb"))
    report = {}
    if (out / "report.csv").is_file():
        with (out / "report.csv").open() as f:
            report = {(r["student"], r["notebook"]): r for r in csv.DictReader(f)}
    cells = [["student", "notebook", "cell", "points", "max_points", "graded"]]
    totals = [["student", "total", "max_total", "pending"]]
    with open_gradebook(url) as gb:
        everyone = sorted(s.id for s in gb.students)
        for student in everyone if mine is None else [s for s in everyone if s in mine]:
            total = maximum = 0.0
            waiting = 0
            for n in names:
                sub = gb.find_submission_notebook(n, a, student)
                for g in sorted(sub.grades, key=lambda g: g.name):
                    graded = "manual" if g.manual_score is not None else "pending" if g.needs_manual_grade else "auto"
                    waiting += graded == "pending"
                    cells.append([student, n, g.name, f"{float(g.score or 0):g}", f"{float(g.max_score):g}", graded])
                total, maximum = total + float(sub.score), maximum + float(sub.max_score)
                path = graded_path(out, a, student, n)
                if not path.is_file():
                    continue
                info = report.get((student, n), {})
                scores = {g.name: (float(g.score or 0), float(g.max_score)) for g in sub.grades}
                comments = {c.name: c.comment for c in sub.comments if c.comment}
                pending = {g.name for g in sub.grades if g.needs_manual_grade}
                feedback.render(
                    nbformat.read(path, as_version=4),
                    student,
                    n,
                    info.get("status", "ok"),
                    [x for x in info.get("detail", "").split("; ") if x],
                    float(sub.score),
                    float(sub.max_score),
                    out / "feedback" / feedback.safe_name(student) / f"{n}.html",
                    comments,
                    pending,
                    scores,
                )
            totals.append([student, f"{total:g}", f"{maximum:g}", str(waiting)])
    for name, rows in (("final_grades.csv", cells), ("final_summary.csv", totals)):
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(rows)
        (out / name).write_text(buf.getvalue())
    if mine is not None:
        print(
            f"shared gradebook {shown(url)}: the feedback, final_grades.csv and final_summary.csv of {out} cover "
            f"the {len(totals) - 1} student(s) graded into it (the gradebook holds {len(everyone)}); "
            "`python -m autograder merge` the shard folders for one table of everyone"
        )
    print(
        f"feedback: {out / 'feedback'}\nall grades (auto and manual): {out / 'final_grades.csv'}\n"
        f"one total per student: {out / 'final_summary.csv'}"
    )
    return 0
