"""Autograde throughput: `python -m autograder grade` (sandboxed with warm kernels at --jobs 1 and 2,
with cold sandboxes, and without the sandbox) against stock `nbgrader autograde` run serially,
over the same synthetic class, in one run.

The class: copies of the demo's students (full solutions, untouched stubs, a buggy student),
`--students` in all, `--notebooks` of the course. Stock nbgrader gets the same submissions in
a plain course folder (its own gradebook made by `nbgrader generate_assignment`), with the
environment the hidden tests need (PYTHONPATH, VAEKIT_DATA, reference parts for 03/04).

Each autograder run has a fixed cost (building the release with nbgrader, decoding the data
once) that a class of hundreds amortizes; it is measured on its own by grading
a class whose only student submitted nothing, and "marginal s/notebook" leaves it out.

Usage: python benchmarks/autograde_throughput.py [--students 6] [--notebooks 01_autoencoder 02_vae]
Prints seconds per notebook for each way and the ratios last.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import nbformat  # noqa: E402

from autograder import samples  # noqa: E402
from autograder.config import load_course  # noqa: E402
from autograder.parts import build_parts  # noqa: E402
from autograder.release import generate, prepare_course, tool_env  # noqa: E402


def make_class(release_dir: Path, source_dir: Path, names: list[str], students: int, out: Path) -> int:
    """Students cycle through full / stub / one bug; returns the number of notebooks written."""
    count = 0
    for i in range(students):
        kind = ("full", "stub", "buggy")[i % 3]
        for n in names:
            release = nbformat.read(release_dir / f"{n}.ipynb", as_version=4)
            full = samples.full(release, nbformat.read(source_dir / f"{n}.ipynb", as_version=4))
            nb = {"full": full, "stub": release}.get(kind)
            if nb is None:
                variants = samples.BUGS.get(n)
                nb = samples.buggy(full, n, next(iter(variants))) if variants else full
            samples.write(nb, out / f"s{i:03d}" / f"{n}.ipynb")
            count += 1
    return count


def run(cmd: list[str], env: dict[str, str], cwd: Path | None = None) -> float:
    """Run `cmd` (failing loudly) and return its wall time in seconds."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return time.perf_counter() - t0


def main() -> None:
    """Time the kit's grader (--jobs 1 and 2, cold and warm kernels) and stock nbgrader on one generated class."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=6)
    parser.add_argument("--notebooks", nargs="+", default=["01_autoencoder", "02_vae"])
    args = parser.parse_args()
    course = load_course()
    data = os.environ.get("VAEKIT_DATA") or str(REPO.parent / "shared" / "data")
    with tempfile.TemporaryDirectory(prefix="vaekit-bench-") as tmp:
        tmp = Path(tmp)
        root = prepare_course(tmp / "course", course)
        source_dir = root / "source" / course.assignment
        for p in source_dir.glob("*.ipynb"):
            if p.stem not in args.notebooks:
                p.unlink()
        release_dir = generate(root, course)
        subs = tmp / "submissions"
        n_notebooks = make_class(release_dir, source_dir, args.notebooks, args.students, subs)

        env = tool_env(VAEKIT_DATA=data, PYTHONPATH=str(REPO), MPLBACKEND="Agg")
        (tmp / "empty" / "nobody").mkdir(parents=True)
        grade = [sys.executable, "-m", "autograder", "grade", "--no-progress"]
        setup = run([*grade, str(tmp / "empty"), "--out", str(tmp / "out-empty")], env, cwd=REPO)
        times = {}
        for name, extra in (
            ("autograder --jobs 1 (sandbox, warm)", ["--jobs", "1"]),
            ("autograder --jobs 2 (sandbox, warm)", ["--jobs", "2"]),
            ("autograder --jobs 2 (sandbox, cold)", ["--jobs", "2", "--cold-kernels"]),
            ("autograder --jobs 2 --unsafe-no-sandbox", ["--jobs", "2", "--unsafe-no-sandbox"]),
        ):
            out = tmp / f"out-{len(times)}"
            times[name] = run([*grade, str(subs), "--out", str(out), *extra], env, cwd=REPO)

        # stock nbgrader: the same submissions in submitted/<student>/<assignment>/
        for student in sorted(subs.iterdir()):
            shutil.copytree(student, root / "submitted" / student.name / course.assignment)
        build_parts(tmp / "parts")
        stock_env = dict(env, VAEKIT_WORKDIR=str(tmp / "parts"))
        times["stock nbgrader autograde (serial)"] = run(
            [
                sys.executable,
                "-m",
                "nbgrader",
                "autograde",
                course.assignment,
                "--force",
                f"--CourseDirectory.root={root}",
            ],
            stock_env,
            cwd=root,
        )

    base = times["stock nbgrader autograde (serial)"]
    print(
        f"class: {args.students} students x {len(args.notebooks)} notebooks = {n_notebooks} notebooks "
        f"({', '.join(args.notebooks)}); {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}"
    )
    print(f"fixed cost of an autograder run (release, data), graded alone: {setup:.1f} s")
    print(f"{'way':<42} {'total s':>8} {'s/notebook':>11} {'marginal s/nb':>14} {'vs stock':>9}")
    for name, seconds in times.items():
        marginal = (seconds - (0 if name.startswith("stock") else setup)) / n_notebooks
        print(f"{name:<42} {seconds:>8.1f} {seconds / n_notebooks:>11.2f} {marginal:>14.2f} {seconds / base:>9.2f}")
    j2, j2cold = times["autograder --jobs 2 (sandbox, warm)"], times["autograder --jobs 2 (sandbox, cold)"]
    j2unsafe = times["autograder --jobs 2 --unsafe-no-sandbox"]
    print(
        f"ratio cold/warm (jobs 2): {(j2cold - setup) / (j2 - setup):.2f} (marginal)   ratio sandbox warm/no sandbox: "
        f"{j2 / j2unsafe:.2f}   ratio stock/sandbox warm jobs 2: {base / j2:.2f} (target >= 2)   "
        f"marginal s/notebook, sandbox warm, jobs 2: {(j2 - setup) / n_notebooks:.2f} (target <= 2)"
    )


if __name__ == "__main__":
    main()
