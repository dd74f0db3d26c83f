"""`python -m autograder merge`: shard --out folders (SQLite gradebooks) into one OUT, as one run would be."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import shards
from shards import AE, cli, grade, manual, rows, set_manual, snapshot

pytestmark = pytest.mark.slow

CSVS = ("grades.csv", "summary.csv", "report.csv", "checks.csv")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One run over the class, and the two shards of the same class, each into its own OUT."""
    base = tmp_path_factory.mktemp("merge")
    subs = shards.build(base)
    done = {
        name: grade(subs, base / name, *extra)
        for name, extra in (("whole", ()), ("s1", ("--shard", "1/2")), ("s2", ("--shard", "2/2")))
    }
    for name, r in done.items():
        assert r.rc == 0, f"{name}: {r.err}"
    print("\n" + ", ".join(f"{k} graded in {r.seconds:.0f} s" for k, r in done.items()))
    cell = set_manual(f"sqlite:///{base / 's1' / 'nbgrader' / 'gradebook.db'}", "alice", 1, "Right idea.")
    return SimpleNamespace(base=base, subs=subs, whole=base / "whole", s1=base / "s1", s2=base / "s2", cell=cell)


def test_merge_gives_the_rows_of_one_run_and_keeps_manual_grades(runs):
    before = {s: snapshot(s) for s in (runs.s1, runs.s2)}
    merged = runs.base / "merged"
    r = cli("merge", str(runs.s1), str(runs.s2), "--out", str(merged))
    assert r.rc == 0, r.err
    assert "merged 2 shards, 3 student(s)" in r.out and "1 manual grade(s) and 1 manual comment(s)" in r.out
    for name in CSVS:
        text = (merged / name).read_text()
        assert text.count("student,") == 1, name  # one header
        assert text == (runs.whole / name).read_text(), name
    assert {s: snapshot(s) for s in (runs.s1, runs.s2)} == before  # shards only read
    for student in shards.STUDENTS:
        assert (merged / "feedback" / student / f"{AE}.html").is_file()
    assert (merged / "nbgrader" / "autograded" / "alice" / "vae" / f"{AE}.ipynb").is_file()
    url = f"sqlite:///{merged / 'nbgrader' / 'gradebook.db'}"
    assert manual(url, "alice", runs.cell) == (1, "Right idea.")

    # the merged OUT is a whole OUT: formgrader's export sees everyone, feedback adds the manual point
    from autograder.release import run_nbgrader

    proc = run_nbgrader(merged / "nbgrader", "export", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(x["student_id"] for x in rows(merged / "nbgrader" / "grades.csv")) == list(shards.STUDENTS)
    fb = cli("feedback", str(merged))
    assert fb.rc == 0, fb.err
    summary = {x["student"]: x for x in rows(merged / "final_summary.csv")}
    auto = {x["student"]: float(x["total"]) for x in rows(runs.whole / "summary.csv")}
    assert sorted(summary) == list(shards.STUDENTS)
    assert float(summary["alice"]["total"]) == auto["alice"] + 1
    assert "Right idea." in (merged / "feedback" / "alice" / f"{AE}.html").read_text()

    # a rerun into the merged OUT grades nothing again (its state is every shard's)
    again = grade(runs.subs, merged)
    assert again.rc == 0, again.err
    assert "graded 0 new or changed submission(s), kept 3 unchanged" in again.err
    assert manual(url, "alice", runs.cell) == (1, "Right idea.")

    # merging again: backed up, and a grade given in the merged gradebook since is kept
    set_manual(url, "alice", 2, "Better after a second look.")
    r = cli("merge", str(runs.s1), str(runs.s2), "--out", str(merged))
    assert r.rc == 0, r.err
    assert "earlier merge is backed up" in r.out and sorted((merged / "backups").iterdir())
    assert manual(url, "alice", runs.cell) == (2, "Better after a second look.")


def test_merge_refuses_a_student_in_two_shards(runs, tmp_path):
    r = cli("merge", str(runs.s1), str(runs.whole), "--out", str(tmp_path / "m"))
    assert r.rc == 2 and "more than one shard" in r.err
    assert "alice (" in r.err and "carol (" in r.err and "bob" not in r.err
    assert not (tmp_path / "m").exists()


def test_merge_refuses_a_folder_that_is_not_its_own(runs, tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "notes.txt").write_text("mine")
    r = cli("merge", str(runs.s1), str(runs.s2), "--out", str(tmp_path / "m"))
    assert r.rc == 2 and "not empty and not an earlier merge" in r.err
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["notes.txt"]
    r = cli("merge", str(runs.s1), str(runs.s2), "--out", str(runs.s2 / "merged"))
    assert r.rc == 2 and "overlaps the shard folder" in r.err
