"""Class report build time for a synthetic class of N students (no grading): CSVs and small graded
notebooks written directly (tests/synthetic_class.py), then `autograder.class_report.build`.

Each student answers three code cells in structurally different correct ways (five per function,
from an orthogonal array, so a fifth of the class shares each way of writing a function), with
their own names and comments; 15 % make the σ² mistake; one pair copied. Times the whole build
(reading, tables, figures, similarity) and the similarity part alone.

Usage: python benchmarks/class_report.py [--students 100 1000]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import synthetic_class as sc  # noqa: E402

from autograder import class_report  # noqa: E402

EXTRA = [
    f"{v} = {expr}"
    for v, expr in [
        ("_dtype", "torch.float32"),
        ("_n_checked", "0"),
        ("_eps_floor", "1e-8"),
        ("_debug", "False"),
        ("_device", "'cpu'"),
        ("_shape_note", "None"),
        ("_count", "len([])"),
        ("_scale", "1.0 * 1"),
        ("_tag", "'answer'"),
        ("_ok", "True and not False"),
        ("_tmp", "list(range(3))"),
        ("_k", "abs(-2)"),
        ("_flag", "bool(1)"),
        ("_half", "0.5 ** 1"),
        ("_pair", "(1, 2)"),
        ("_msg", "str(3)"),
    ]
]


def make(out: Path, n: int) -> Path:
    """Write the grading output of a synthetic class of `n` students (bugs, copiers, failed runs) under `out`."""
    rng = random.Random(0)
    students, verdicts = {}, {}
    ok = [(t, True, "", "") for t in ("test_reparameterize", "test_kl", "test_vae_loss", "test_interpolate")]
    bad = [
        (
            "test_reparameterize",
            False,
            "reparameterize.sigma_squared",
            "z's spread grows like σ² (= exp(logvar)), not like σ = exp(0.5·logvar)",
        ),
        *ok[1:],
    ]
    for i in range(n):
        s = f"student{i:04d}"
        bug = rng.random() < 0.15
        choice = tuple(rng.randrange(5) for _ in range(4))  # each way of writing each function: 1/5 of the class
        fns = sc.functions(choice, seed=i, bug=bug)
        for name in fns:  # and lines of their own
            extra = rng.sample(EXTRA, 2)
            _, _, rest = fns[name].partition('"""\n')
            _, _, rest2 = rest.partition('"""\n') if rest.count('"""') else ("", "", rest)
            fns[name] = fns[name].replace(rest2, "".join(f"    {e}\n" for e in extra) + rest2, 1)
        students[s] = sc.cells(fns)
        verdicts[s] = bad if bug else ok
    students["copier"] = sc.cells(sc.functions(sc.orthogonal(7), seed=10**6), reorder=True)
    students["copied"] = sc.cells(sc.functions(sc.orthogonal(7), seed=10**6 + 1))
    verdicts["copier"] = verdicts["copied"] = ok
    statuses = {s: rng.choice(["missing", "renamed", "timeout"]) for s in rng.sample(sorted(students), n // 20)}
    return sc.write_out(out, students, verdicts, statuses, {s: rng.uniform(5, 60) for s in students})


def main() -> None:
    """Time building the class report for classes of each size given by --students."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--students", type=int, nargs="+", default=[100, 1000])
    args = parser.parse_args()
    for n in args.students:
        with tempfile.TemporaryDirectory() as tmp:
            out = make(Path(tmp), n)
            t0 = time.perf_counter()
            page = class_report.build(out)
            total = time.perf_counter() - t0
            inp = class_report.read(out)
            t1 = time.perf_counter()
            pairs = class_report.similarity(inp)
            sim = time.perf_counter() - t1
            print(
                f"{n:5d} students: report {total:5.1f} s (similarity {sim:4.1f} s), page "
                f"{page.stat().st_size / 1e6:.2f} MB, {len(pairs)} similar pair(s)",
                flush=True,
            )


if __name__ == "__main__":
    main()
