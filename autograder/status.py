"""The one status vocabulary of the grader, and the judge's verdict on a test cell.

A notebook's status is the worst that happened to it, in this order:

    unreadable  the file is not a notebook that can be read
    missing     no file for this notebook in the submission
    tampered    an actual attempt was seen: the kernel broke the grading protocol or reached for
                the instructor's files (the evidence is in report.csv)
    timeout     a definition or a check did not finish in time
    error       the notebook's kernel died, or the grader could not run it
    renamed     graded under a different file name (Colab's "Copy of …", "(1)")
    repaired    the cells had to be matched back to the release (stripped metadata, reordered cells)
    ok          graded normally

`unsafe` is never a notebook's status; report.csv says in its detail when a run had no sandbox.
"""

from __future__ import annotations

from dataclasses import dataclass

ORDER = ("unreadable", "missing", "tampered", "timeout", "error", "renamed", "repaired", "ok")


def worst(*statuses: str) -> str:
    """The most serious of the given statuses (see ORDER)."""
    return min(statuses, key=ORDER.index)


@dataclass(frozen=True)
class Verdict:
    """The judge's verdict on one test cell: passed, the message for the student, and its kind.

    `misconception` is a stable id of the mistake a failing check names (for the class report);
    `timeout` marks a check that ran out of time.
    """

    passed: bool
    message: str
    misconception: str | None = None
    timeout: bool = False
