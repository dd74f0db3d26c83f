"""Each known bug of the later notebooks, graded by the real `python -m autograder grade`:
it must lose exactly the points of the check meant to catch it (notebook 01's bugs are
in the main corpus run of test_autograder_pipeline.py)."""
from __future__ import annotations

import pytest

from autograder import samples

import corpus
from test_autograder_pipeline import CELL_TIMEOUT, grade, rows

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("autograder")]

LATER = sorted(n for n in samples.BUGS if n != corpus.AE)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    release_dir, source_dir = corpus.release_dirs()
    names = sorted(p.stem for p in release_dir.glob("*.ipynb"))
    todo = [n for n in LATER if n in names]
    if not todo:
        pytest.skip("no later notebook with known bugs released yet")
    base = tmp_path_factory.mktemp("bugs")
    expected = corpus.build(release_dir, source_dir, base / "submissions", basics=False, hostile=False, bugs=todo)
    result = grade(base / "submissions", base / "out", jobs=2)
    assert result.proc.returncode == 0, result.proc.stderr[-3000:]
    print(f"\n{len(expected)} buggy notebooks graded in {result.seconds:.0f} s")
    return expected, rows(result.out / "grades.csv")


def test_each_bug_loses_exactly_its_checks_points(run):
    expected, graded = run
    problems = []
    for student, notebooks in sorted(expected.items()):
        for notebook, (status, zero) in notebooks.items():
            if status == "missing":
                continue
            for r in graded:
                if r["student"] == student and r["notebook"] == notebook:
                    want = 0.0 if r["cell"] in zero else float(r["max_points"])
                    if float(r["points"]) != want or r["status"] != status:
                        problems.append(f"{student}/{r['cell']}: {r['points']} points ({r['status']}), "
                                        f"expected {want:g} ({status})")
    assert not problems, "\n".join(problems)
