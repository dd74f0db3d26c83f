"""The class report (autograder/class_report.py) on a synthetic class with known content (tests/synthetic_class.py).

The class: 20 students with independent correct solutions (structurally different variants, two
students sharing at most one of their four functions), a copier of student s00 (renamed
variables, functions reordered, comments changed), 5 students with the σ² mistake in
reparameterize whose verdicts come from the real hidden checks, and one student whose name and
code carry HTML.
"""

from __future__ import annotations

import csv
import functools
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import synthetic_class as sc

from autograder import class_report

REPO = Path(__file__).resolve().parent.parent
INDEPENDENT = [f"s{i:02d}" for i in range(20)]
BUGGY = [f"bug{i}" for i in range(5)]  # OA rows 20-24: none repeats another student's variants
EVIL = "<script>alert('x')"  # a student folder's name (no "/"); their code and a message carry </script> too


@functools.cache
def _verdicts(choice: tuple[int, int, int, int], bug: bool):
    return tuple(sc.judge(sc.cells(sc.functions(choice, seed=0, bug=bug))))


def _class() -> tuple[dict[str, dict[str, str]], dict]:
    students, verdicts = {}, {}
    for i, s in enumerate(INDEPENDENT):
        students[s] = sc.cells(sc.functions(sc.orthogonal(i), seed=100 + i))
        verdicts[s] = _verdicts(sc.orthogonal(i), False)
    # the copier: s00's code, its own names and comments, kl_divergence and vae_loss swapped
    students["copier"] = sc.cells(sc.functions(sc.orthogonal(0), seed=999), reorder=True)
    verdicts["copier"] = verdicts["s00"]
    for i, s in enumerate(BUGGY):
        choice = sc.orthogonal(20 + i)
        students[s] = sc.cells(sc.functions(choice, seed=200 + i, bug=True))
        verdicts[s] = _verdicts(choice, True)
    evil_cells = dict(students["s01"])
    evil_cells["interpolate"] += f'\n# {EVIL}</script>\nNOTE = "</pre>{EVIL}</script>"'
    students[EVIL] = evil_cells
    verdicts[EVIL] = tuple(
        (t, False, "interpolate.end_points", f"{EVIL}</script> message") if t == "test_interpolate" else (t, p, m, msg)
        for t, p, m, msg in verdicts["s01"]
    )
    return students, verdicts


@pytest.fixture(scope="module")
def synthetic():
    return _class()


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def built(tmp_path_factory, synthetic):
    students, verdicts = synthetic
    statuses = {"s03": "renamed", "s04": "timeout"}
    out = sc.write_out(
        tmp_path_factory.mktemp("out"),
        students,
        verdicts,
        statuses,
        {s: 5.0 + i for i, s in enumerate(sorted(students))},
    )
    # a student whose name is not a folder of autograded/ (e.g. a missing notebook) must not break the report
    with (out / "report.csv").open("a") as f:
        f.write(f"ghost,{sc.NOTEBOOK},missing,0,7,{sc.NOTEBOOK}.ipynb not found in the submission,\n")
    page = class_report.build(out)
    return out, page


def test_known_mistake_is_counted_exactly(built):
    out, page = built
    rows = {r["misconception"]: r for r in _csv(out / "class_report" / "misconceptions.csv")}
    assert int(rows["reparameterize.sigma_squared"]["students"]) == len(BUGGY)
    assert rows["reparameterize.sigma_squared"]["who"].split(";") == sorted(BUGGY)
    assert rows["reparameterize.sigma_squared"]["message"].startswith("z's spread grows like σ²")
    assert int(rows["interpolate.end_points"]["students"]) == 1
    assert set(rows) == {"reparameterize.sigma_squared", "interpolate.end_points"}
    long = [
        r
        for r in _csv(out / "class_report" / "misconception_students.csv")
        if r["misconception"] == "reparameterize.sigma_squared"
    ]
    assert sorted(r["student"] for r in long) == sorted(BUGGY)
    text = page.read_text()
    assert "reparameterize.sigma_squared" in text and f"{len(BUGGY)} (" in text


def test_pass_rates_scores_statuses_and_timing(built):
    out, _ = built
    n = len(INDEPENDENT) + 1 + len(BUGGY) + 1
    rates = {r["cell"]: r for r in _csv(out / "class_report" / "check_pass_rates.csv")}
    assert int(rates["test_reparameterize"]["judged"]) == n
    assert int(rates["test_reparameterize"]["passed"]) == n - len(BUGGY)
    assert next(iter(rates)) == "test_reparameterize"  # worst first
    scores = {r["notebook"]: r for r in _csv(out / "class_report" / "scores.csv")}
    assert int(scores["total"]["students"]) == n and float(scores[sc.NOTEBOOK]["max_points"]) == 7
    statuses = {r["status"]: r for r in _csv(out / "class_report" / "statuses.csv")}
    assert statuses["renamed"]["who"] == f"s03 ({sc.NOTEBOOK})" and statuses["missing"]["students"] == "1"
    timing = _csv(out / "class_report" / "timing.csv")
    assert timing[0]["notebook"] == sc.NOTEBOOK and int(timing[0]["runs"]) == n


def test_copied_pair_is_found_and_independent_solutions_are_not(built):
    out, page = built
    pairs = _csv(out / "class_report" / "similar_pairs.csv")
    found = {frozenset((p["student_a"], p["student_b"])) for p in pairs}
    assert frozenset(("copier", "s00")) in found
    # EVIL's code is s01's with a comment and a string added: a copy too
    assert frozenset((EVIL, "s01")) in found
    assert found <= {frozenset(("copier", "s00")), frozenset((EVIL, "s01"))}, pairs
    copy = next(p for p in pairs if {p["student_a"], p["student_b"]} == {"copier", "s00"})
    assert float(copy["similarity"]) > 0.8
    assert set(copy["cells"].split(";")) == set(sc.CELLS)
    text = page.read_text()
    assert "<b>copier</b> and <b>s00</b>" in text and "<mark>" in text


def test_independent_solutions_alone_have_no_pair(tmp_path, synthetic):
    students, verdicts = synthetic
    keep = {s: students[s] for s in INDEPENDENT}
    out = sc.write_out(tmp_path, keep, {s: verdicts[s] for s in keep})
    class_report.build(out)
    assert _csv(out / "class_report" / "similar_pairs.csv") == []


def test_page_is_self_contained_and_escapes_student_text(built):
    _, page = built
    text = page.read_text()
    assert "<script" not in text.lower()
    assert "&lt;script&gt;" in text
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", text)  # no external resources
    assert text.count("data:image/png;base64,") >= 3
    assert "never shown to students" in text


def test_report_of_merged_shards(tmp_path, synthetic, built):
    """The union of two shards' OUT (CSV rows concatenated, notebooks copied) gives the same report."""
    students, verdicts = synthetic
    names = sorted(students)
    shard_outs = []
    for k in range(2):
        part = {s: students[s] for s in names[k::2]}
        shard_outs.append(sc.write_out(tmp_path / f"shard{k}", part, {s: verdicts[s] for s in part}))
    merged = tmp_path / "merged"
    merged.mkdir()
    for name in ("grades.csv", "summary.csv", "report.csv", "checks.csv"):
        lines = [shard_outs[0].joinpath(name).read_text().splitlines()[0]]
        for o in shard_outs:
            lines += o.joinpath(name).read_text().splitlines()[1:]
        (merged / name).write_text("\n".join(lines) + "\n")
    for o in shard_outs:
        shutil.copytree(o / "nbgrader", merged / "nbgrader", dirs_exist_ok=True)
    class_report.build(merged)
    full = sc.write_out(tmp_path / "full", students, verdicts)
    class_report.build(full)
    for name in ("misconceptions.csv", "check_pass_rates.csv", "scores.csv", "similar_pairs.csv"):
        assert (merged / "class_report" / name).read_text() == (full / "class_report" / name).read_text(), name
    pairs = {frozenset((p["student_a"], p["student_b"])) for p in _csv(merged / "class_report" / "similar_pairs.csv")}
    assert frozenset(("copier", "s00")) in pairs  # the two were in different shards


def test_similarity_is_in_no_feedback_and_changes_no_grade(built):
    out, _ = built
    assert not (out / "feedback").exists()  # the report writes only class_report*
    written = {p.relative_to(out).parts[0] for p in out.rglob("*") if p.is_file()}
    assert written == {
        "grades.csv",
        "summary.csv",
        "report.csv",
        "checks.csv",
        "nbgrader",
        "class_report",
        "class_report.html",
    }
    nb = json.loads((out / "nbgrader" / "autograded" / "copier" / sc.ASSIGNMENT / f"{sc.NOTEBOOK}.ipynb").read_text())
    assert "similar" not in json.dumps(nb)


def test_cli_and_a_failing_report_never_fails_grading(tmp_path, built, capsys):
    out, _ = built
    done = subprocess.run(
        [sys.executable, "-m", "autograder", "report", str(out), "--top", "3", "--no-similarity"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "class_report.html" in done.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "autograder", "report", str(tmp_path / "nothing")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and "report.csv" in bad.stderr

    from autograder.grade import Grader, Options

    g = Grader.__new__(Grader)
    g.out, g.bar, g.options = tmp_path / "empty", None, Options()
    g.class_report()  # no CSVs there: a warning, no exception
    assert "warning: the class report could not be built" in capsys.readouterr().err
