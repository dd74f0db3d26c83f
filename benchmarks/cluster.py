"""Grading on Dask (`grade --cluster`): the same small class with `--jobs 2` and `--cluster local:2`,
the scheduler's overhead per task, and the client's own cost per student as the class grows.

1. A real class (`--students`, cycling full / stub / one bug, who each submitted `--notebooks`):
   wall time of `python -m autograder grade --jobs 2` and of `--cluster local:2`, in one run.
2. The scheduler's overhead per task: round trips of empty tasks carrying a submission-sized
   payload through a LocalCluster of 2 processes, against a notebook's grading time (target ≤ 5 %).
3. The client's cost per student, without kernels: fabricated Results (one tiny graded notebook
   per student, the other notebooks missing) through `Grader.add` (feedback page, graded notebook,
   state journal, CSV rows) and then `gradebook.export` (nbgrader's SQLite gradebook), for
   classes of `--synthetic` sizes (default 100 and 1000). Prints s/student and the ratio of the
   largest to the smallest (target ≤ 1.2: flat).

Usage: python benchmarks/cluster.py [--students 3] [--notebooks 01_autoencoder] [--synthetic 100 1000]
       [--skip-real]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import nbformat  # noqa: E402

from autograder import gradebook, samples  # noqa: E402
from autograder.config import load_course  # noqa: E402
from autograder.grade import Grader, Options, Result, State, prepare  # noqa: E402
from autograder.status import Verdict  # noqa: E402


def make_class(names: list[str], students: int, out: Path) -> None:
    """Students cycle through full / stub / one bug, each submitting `names`."""
    for n in names:
        release = nbformat.read(REPO / "assignments" / f"{n}.ipynb", as_version=4)
        full = samples.full(release, nbformat.read(REPO / "solutions" / f"{n}.ipynb", as_version=4))
        variants = samples.BUGS.get(n)
        kinds = [full, release, samples.buggy(full, n, next(iter(variants))) if variants else full]
        for i in range(students):
            samples.write(kinds[i % 3], out / f"s{i:04d}" / f"{n}.ipynb")


def grade(submissions: Path, out: Path, *extra: str) -> tuple[float, float]:
    """(wall seconds, the grader's own average seconds per notebook run)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), MPLBACKEND="Agg")
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "autograder", "grade", str(submissions), "--out", str(out), "--no-progress", *extra],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"grading failed ({' '.join(extra)}):\n{proc.stderr[-3000:]}")
    said = re.search(r"notebook\(s\) run, ([\d.]+) s each", proc.stderr)
    return wall, float(said.group(1)) if said else float("nan")


def scheduler_overhead(payload_bytes: int, tasks: int = 200) -> float:
    """Seconds per task of a LocalCluster(2 processes) round trip of an empty task with a payload."""
    import logging

    from distributed import Client, LocalCluster

    from autograder.cluster import overhead

    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as client,
    ):
        client.wait_for_workers(2)
        return overhead(client, tasks, payload_bytes)


def tiny_notebook(release: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A graded notebook of a few cells: the release's first markdown cell and one test cell."""
    nb = nbformat.v4.new_notebook()
    nb.metadata = release.metadata
    test = next(c for c in release.cells if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "code")
    nb.cells = [nbformat.v4.new_markdown_cell("# My answers"), nbformat.from_dict(test)]
    return nb


def fabricated(prep, student: str, tiny: nbformat.NotebookNode) -> list[Result]:
    """One student's Results as a worker would return them: the first notebook graded, the rest missing."""
    first, *rest = prep.names
    cells = [(g, m if i % 2 == 0 else 0.0, m) for i, (g, m) in enumerate(prep.refs[first].max_points.items())]
    verdicts = {g: Verdict(p > 0, "ok" if p > 0 else "wrong", None if p > 0 else "some_mistake") for g, p, _ in cells}
    results = [Result(student, first, "ok", [], cells, verdicts, graded=nbformat.from_dict(tiny))]
    results += [
        Result(
            student, n, "missing", [f"{n}.ipynb not found"], [(g, 0.0, m) for g, m in prep.refs[n].max_points.items()]
        )
        for n in rest
    ]
    return results


def client_cost(prep, students: int, base: Path) -> tuple[float, float]:
    """(Grader.add s/student, gradebook export s/student) for a fabricated class of `students`."""
    out = base / f"out{students}"
    grader = Grader(base / "none", out, Options(progress=False), prep.course)
    grader.state = State(out)
    grader.state.save()
    grader.write_csvs(prep)
    release = nbformat.read(REPO / "assignments" / f"{prep.names[0]}.ipynb", as_version=4)
    tiny = tiny_notebook(release)
    t0 = time.perf_counter()
    for i in range(students):
        student = f"s{i:05d}"
        grader.add(prep, hashlib.sha256(student.encode()).hexdigest(), fabricated(prep, student, tiny))
    grader.write_csvs(prep)
    grader.state.save()
    adding = time.perf_counter() - t0
    t0 = time.perf_counter()
    gradebook.export(out, prep.base / "release-course", prep.course, list(grader.results.values()))
    exporting = time.perf_counter() - t0
    return adding / students, exporting / students


def main() -> None:
    """Run the three measurements and print them."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--students", type=int, default=3)
    p.add_argument("--notebooks", nargs="+", default=["01_autoencoder"])
    p.add_argument("--synthetic", nargs="+", type=int, default=[100, 1000])
    p.add_argument("--skip-real", action="store_true", help="only the scheduler overhead and the synthetic class")
    args = p.parse_args()
    os.environ.setdefault("MPLBACKEND", "Agg")
    lines = []
    with tempfile.TemporaryDirectory(prefix="vaekit-bench-cluster-") as tmp:
        base = Path(tmp)
        subs = base / "submissions"
        make_class(args.notebooks, args.students, subs)
        per_notebook = float("nan")
        if not args.skip_real:
            jobs, per_notebook = grade(subs, base / "jobs2", "--jobs", "2")
            dask, per_dask = grade(subs, base / "local2", "--cluster", "local:2")
            n = args.students * len(args.notebooks)
            lines += [
                f"real class: {args.students} students x {len(args.notebooks)} notebook(s) = {n} notebook runs",
                f"  --jobs 2          {jobs:7.1f} s wall  ({per_notebook:.1f} s per notebook run)",
                f"  --cluster local:2 {dask:7.1f} s wall  ({per_dask:.1f} s per notebook run; "
                f"{dask / jobs:.2f}x --jobs 2, the difference being mostly each worker's own "
                f"release build)",
            ]
        size = max(len(f.read_bytes()) for f in subs.rglob("*.ipynb"))
        per_task = scheduler_overhead(size)
        ref = per_notebook if per_notebook == per_notebook else 10.0
        lines.append(
            f"scheduler overhead: {per_task * 1000:.1f} ms per task (payload {size // 1024} KiB) = "
            f"{100 * per_task / ref:.3f} % of a notebook's {ref:.1f} s"
            f"{' (assumed)' if args.skip_real else ''} (target <= 5 %)"
        )
        prep_base = base / "prep"
        prep = prepare(prep_base, load_course())
        client_cost(prep, 5, base)  # warm up: nbconvert's templates, nbgrader's database code
        shutil.rmtree(base / "out5", ignore_errors=True)
        costs = {}
        for n in args.synthetic:
            add, export = client_cost(prep, n, base)
            costs[n] = add + export
            lines.append(
                f"client cost, {n:5d} students: {add * 1000:6.1f} ms/student in Grader.add + "
                f"{export * 1000:6.1f} ms/student gradebook export = {costs[n]:.4f} s/student"
            )
            shutil.rmtree(base / f"out{n}", ignore_errors=True)
        if len(costs) > 1:
            lo, hi = min(costs), max(costs)
            lines.append(f"client cost ratio {hi} / {lo} students: {costs[hi] / costs[lo]:.2f} (target <= 1.2)")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
