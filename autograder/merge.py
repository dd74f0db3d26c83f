"""`python -m autograder merge OUT1 OUT2 … --out MERGED`: the --out folders of a sharded run as one OUT.

MERGED gets what one `grade` over every student would have written: the CSVs (one header,
the students' rows in sorted order), the feedback pages, the graded notebooks
(nbgrader/autograded), the state (.vaekit/state.json, so that `grade … --out MERGED` goes
on incrementally) and one gradebook. With SQLite gradebooks, nbgrader makes a new one from
the shards' release (generate_assignment) and every submission's grades and comments,
manual ones included, are copied into it through nbgrader's API; shards graded into one
shared database (--db-url) already share their gradebook, and MERGED points at it.

The shard folders are only read. MERGED must be empty or new, or an earlier merge of the
same shards: that one is backed up to MERGED/backups/<time> first, and the manual grades and
comments given in its own gradebook since (formgrader in MERGED/nbgrader) are kept.
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import io
import json
import shutil
import tempfile
from pathlib import Path

from autograder import gradebook
from autograder.config import Course, load_course
from autograder.grade import GradingError, State, backup_out

CSVS = ("grades.csv", "summary.csv", "report.csv", "checks.csv", "timing.csv", "final_grades.csv", "final_summary.csv")
MARK = ".vaekit/merge.json"
OWN = (*CSVS, ".vaekit", "nbgrader", "feedback")  # what a merge writes into MERGED (backups/ stays)


def _tree_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return [], []
    return rows[0], rows[1:]


def _write_csv(path: Path, rows: list[list[str]]) -> None:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    path.write_text(buf.getvalue())


def _students(out: Path) -> set[str]:
    found = set(gradebook.students_of(out))
    for name in ("summary.csv", "report.csv"):
        if (out / name).is_file():
            found |= {row[0] for row in _read_csv(out / name)[1] if row}
    return found


def _check_target(shards: list[Path], target: Path) -> dict | None:
    """Refuse a MERGED that holds anything but an earlier merge of these shards; returns that merge's record."""
    t = target.resolve()
    for s in shards:
        if t == s or s in t.parents or t in s.parents:
            raise GradingError(f"--out {target} overlaps the shard folder {s}: merge into a folder of its own")
    if not target.exists():
        return None
    if not target.is_dir():
        raise GradingError(f"--out {target} is not a folder")
    if not any(target.iterdir()):
        return None
    mark = target / MARK
    earlier = json.loads(mark.read_text()) if mark.is_file() else None
    if earlier is None or sorted(earlier.get("shards", [])) != sorted(str(s) for s in shards):
        raise GradingError(
            f"--out {target} is not empty and not an earlier merge of these shards "
            f"({', '.join(str(s) for s in shards)}): give a new or empty folder"
        )
    return earlier


def merge(shards: list[Path], target: Path, course: Course | None = None) -> str:
    """Combine the shard OUT folders into `target`; returns what was done, for the summary line."""
    course = course or load_course()
    a = course.assignment
    shards = [s.resolve() for s in shards]
    if len(shards) < 2:
        raise GradingError("merge needs at least two shard folders")
    twice = sorted({str(s) for s in shards if shards.count(s) > 1})
    if twice:
        raise GradingError(f"the same shard folder is given twice: {', '.join(twice)}")
    for s in shards:
        if not (s / "nbgrader" / "source" / a).is_dir() or not (s / "grades.csv").is_file():
            raise GradingError(
                f"{s} is not the --out folder of a finished `python -m autograder grade` "
                f"(no grades.csv or nbgrader/source/{a})"
            )
    # one student, one shard
    owner: dict[str, list[Path]] = {}
    for s in shards:
        for student in _students(s):
            owner.setdefault(student, []).append(s)
    both = {st: ss for st, ss in owner.items() if len(ss) > 1}
    if both:
        raise GradingError(
            "student(s) graded in more than one shard: "
            + "; ".join(f"{st} ({', '.join(str(x) for x in ss)})" for st, ss in sorted(both.items()))
        )
    # one release, one set of hidden checks, one kind of gradebook
    releases = {s: _tree_digest(s / "nbgrader" / "source") for s in shards}
    if len(set(releases.values())) > 1:
        raise GradingError(
            "the shards were graded from different releases (their nbgrader/source differ): "
            "grade them again with the same one"
        )
    states = {s: State(s) for s in shards}
    checks = {st.checks for st in states.values() if st.checks}
    if len(checks) > 1:
        raise GradingError(
            "the shards were graded with different hidden checks (.vaekit/state.json): grade them "
            "again with the same repository"
        )
    urls = {s: gradebook.shared_url_of(s) for s in shards}
    shared = set(urls.values())
    if len(shared) > 1:
        raise GradingError(
            "the shards use different gradebooks: "
            + "; ".join(f"{s}: {gradebook.shown(u) if u else 'its own SQLite gradebook'}" for s, u in urls.items())
        )
    shared_url = shared.pop()
    for s in shards:
        if shared_url is None and not (s / "nbgrader" / "gradebook.db").is_file():
            raise GradingError(f"{s}/nbgrader/gradebook.db not found")

    earlier = _check_target(shards, target)
    said = []
    previous_manual: dict = {}
    if earlier is not None:
        kept = backup_out(target)
        said.append(f"the earlier merge is backed up in {kept}")
        old_db = target / "nbgrader" / "gradebook.db"
        if shared_url is None and old_db.is_file():
            previous_manual = gradebook.dump_grades(f"sqlite:///{old_db}", a)
        for name in OWN:
            p = target / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    target.mkdir(parents=True, exist_ok=True)
    root = target / "nbgrader"
    first = shards[0]

    # the CSVs: one header, each student's rows as its shard wrote them, students in sorted order
    for name in CSVS:
        present = [s for s in shards if (s / name).is_file()]
        if not present:
            continue
        if len(present) < len(shards):
            said.append(f"{name} is not in every shard (skipped: run `python -m autograder feedback {target}`)")
            continue
        header, rows = None, []
        for s in present:
            h, r = _read_csv(s / name)
            if header is not None and h != header:
                raise GradingError(f"{s / name} has other columns than {present[0] / name}")
            header = h
            rows.extend(r)
        rows.sort(key=lambda row: row[0] if row else "")  # stable: keeps each student's own order
        _write_csv(target / name, [header or [], *rows])

    # feedback pages and graded notebooks, per student
    for s in shards:
        for sub in ("feedback", "nbgrader/autograded", "nbgrader/submitted"):
            if (s / sub).is_dir():
                for folder in sorted((s / sub).iterdir()):
                    shutil.copytree(folder, target / sub / folder.name, dirs_exist_ok=False)
    for sub in ("source", "release"):
        if (first / "nbgrader" / sub).is_dir():
            shutil.copytree(first / "nbgrader" / sub, root / sub)

    # state and submission hashes
    state = State(target)
    state.checks = checks.pop() if checks else None
    for st in states.values():
        for student, entry in st.students.items():
            for r in entry.get("results", []):
                if r.get("graded_path"):
                    r["graded_path"] = str(gradebook.graded_path(target, a, r["student"], r["notebook"]))
            state.students[student] = entry
    state.save()
    hashes: dict = {}
    for s in shards:
        p = s / "nbgrader" / gradebook.HASHES
        if p.is_file():
            hashes.update(json.loads(p.read_text()))
    (root / gradebook.HASHES).write_text(json.dumps(hashes, indent=0, sort_keys=True))

    # the gradebook
    gradebook.write_config(root, shared_url)
    if shared_url:
        said.append(f"gradebook: the shared {gradebook.shown(shared_url)} of every shard")
    else:
        from autograder.release import generate

        with tempfile.TemporaryDirectory(prefix="vaekit-merge-") as tmp:
            course_root = Path(tmp)
            shutil.copytree(first / "nbgrader" / "source", course_root / "source")
            (course_root / "nbgrader_config.py").write_text(
                "c = get_config()\n"
                f"c.CourseDirectory.root = {str(course_root)!r}\n"
                f"c.CourseDirectory.db_url = 'sqlite:///{course_root / 'gradebook.db'}'\n"
            )
            try:
                generate(course_root, course)
            except RuntimeError as exc:
                raise GradingError(str(exc)) from None
            shutil.copyfile(course_root / "gradebook.db", root / "gradebook.db")
        url = f"sqlite:///{root / 'gradebook.db'}"
        grades = comments = 0
        for s in shards:
            g, c = gradebook.load_grades(
                url, a, gradebook.dump_grades(f"sqlite:///{s / 'nbgrader' / 'gradebook.db'}", a)
            )
            grades, comments = grades + g, comments + c
        said.append(
            f"gradebook {root / 'gradebook.db'}: every shard's grades and comments, {grades} manual "
            f"grade(s) and {comments} manual comment(s) among them"
        )
        if previous_manual:
            g, c = gradebook.load_grades(url, a, previous_manual, manual_only=True)
            if g or c:
                said.append(f"{g} manual grade(s) and {c} comment(s) given in the earlier merge kept")
    (target / MARK).parent.mkdir(parents=True, exist_ok=True)
    (target / MARK).write_text(
        json.dumps(
            {
                "shards": [str(s) for s in shards],
                "students": len(owner),
                "time": f"{datetime.datetime.now():%Y-%m-%d %H:%M:%S}",
            },
            indent=1,
        )
    )
    said.insert(0, f"merged {len(shards)} shards, {len(owner)} student(s), into {target}")
    try:  # the class report of the whole class; a failure of it never fails the merge
        from autograder.class_report import build

        said.append(f"class report: {build(target)}")
    except Exception as exc:
        said.append(
            f"the class report could not be built ({type(exc).__name__}); try `python -m autograder report {target}`"
        )
    return "; ".join(said)
