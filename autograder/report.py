"""OUT's CSVs: each student's rows appended as soon as they are graded, all rewritten sorted at the end.

Appending keeps the cost of one student constant however large the class (rewriting every
CSV after every student made a class of n students cost n² rows); the sorted rewrite at
the start and the end of a run (Ctrl-C included) makes the files independent of --jobs or
the order a cluster finishes in. A run that is killed outright leaves every finished
student's rows, unsorted until the next run.

* grades.csv   one row per student × notebook × test cell: student,notebook,cell,points,max_points,status
* summary.csv  one row per student: total, maximum, each notebook's points, worst status
* report.csv   one row per student × notebook: status, points, and what happened (the evidence of a
               `tampered` status included)
* checks.csv   one row per student × notebook × test cell: the judge's verdict, its message and the
               misconception id of the mistake it names (for the class report)
* timing.csv   one row per notebook run: the seconds it took (apart, so that the other CSVs do not
               depend on the machine's load)
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

from autograder.status import worst

if TYPE_CHECKING:  # pragma: no cover
    from autograder.grade import Result


def fmt(x: float) -> str:
    """A number as the CSV reports write it: shortest form, no trailing zeros."""
    return f"{x:g}"


def _write(path: Path, rows: list[list[str]]) -> None:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(buf.getvalue())
    os.replace(tmp, path)  # a reader never sees half a file


HEADERS = {
    "grades.csv": ["student", "notebook", "cell", "points", "max_points", "status"],
    "summary.csv": ["student", "total", "max_total", "{names}", "status"],
    "report.csv": ["student", "notebook", "status", "points", "max_points", "detail"],
    "checks.csv": ["student", "notebook", "cell", "passed", "misconception", "message"],
    "timing.csv": ["student", "notebook", "seconds"],
}


def _header(name: str, names: list[str]) -> list[str]:
    return [x for h in HEADERS[name] for x in (names if h == "{names}" else [h])]


def _rows(results: list[Result], names: list[str], cell_order: dict[str, list[str]]) -> dict[str, list[list[str]]]:
    """The rows (no header) of each CSV for `results`, in sorted order."""
    results = sorted(results, key=lambda r: (r.student, r.notebook))
    order = {n: {c: i for i, c in enumerate(cells)} for n, cells in cell_order.items()}
    grades: list[list[str]] = []
    checks: list[list[str]] = []
    for r in results:
        for cell, points, max_points in sorted(r.cells, key=lambda c: order[r.notebook].get(c[0], 999)):
            grades.append([r.student, r.notebook, cell, fmt(points), fmt(max_points), r.status])
            verdict = r.verdicts.get(cell)
            if verdict is not None:
                checks.append(
                    [
                        r.student,
                        r.notebook,
                        cell,
                        "1" if verdict.passed else "0",
                        verdict.misconception or "",
                        verdict.message,
                    ]
                )
    summary: list[list[str]] = []
    by_student: dict[str, dict[str, Result]] = {}
    for r in results:
        by_student.setdefault(r.student, {})[r.notebook] = r
    for student, mine in by_student.items():
        if len(mine) < len(names):
            continue  # still being graded
        summary.append(
            [
                student,
                fmt(sum(r.score for r in mine.values())),
                fmt(sum(r.max_score for r in mine.values())),
                *(fmt(mine[n].score) for n in names),
                worst(*(mine[n].status for n in names)),
            ]
        )
    detail: list[list[str]] = []
    timing: list[list[str]] = []
    for r in results:
        detail.append([r.student, r.notebook, r.status, fmt(r.score), fmt(r.max_score), "; ".join(r.notes)])
        if r.seconds:
            timing.append([r.student, r.notebook, f"{r.seconds:.1f}"])
    return {
        "grades.csv": grades,
        "summary.csv": summary,
        "report.csv": detail,
        "checks.csv": checks,
        "timing.csv": timing,
    }


def write_csvs(out: Path, results: list[Result], names: list[str], cell_order: dict[str, list[str]]) -> None:
    """Write the CSVs for `results`; `cell_order[notebook]` lists its test cells in notebook order."""
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in _rows(results, names, cell_order).items():
        _write(out / name, [_header(name, names), *rows])


def append_csvs(out: Path, results: list[Result], names: list[str], cell_order: dict[str, list[str]]) -> None:
    """Append the rows of `results` (students not yet in the CSVs) to the CSVs `write_csvs` wrote."""
    for name, rows in _rows(results, names, cell_order).items():
        if not rows:
            continue
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(rows)
        with (out / name).open("a") as f:
            f.write(buf.getvalue())
