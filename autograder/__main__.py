"""python -m autograder {release,grade,feedback,report,merge,publish,demo} — see README.md, section Instructors."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError("expected i/n, e.g. 1/4") from None
    if not 1 <= i <= n:
        raise argparse.ArgumentTypeError("expected 1 <= i <= n")
    return i, n


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _flag(parser: argparse.ArgumentParser, name: str, help: str) -> None:
    """An on/off option (store_true)."""
    parser.add_argument(name, action="store_true", help=help)


def _reporting_errors(run, *errors: type[Exception]) -> int:
    """Run a subcommand: exit 0, or print `error: …` and exit 2 for the errors its users can act on."""
    from autograder.grade import GradingError

    try:
        code = run()
    except (GradingError, *errors) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return code if isinstance(code, int) else 0


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run its subcommand (release, grade, demo, ...); returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m autograder", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("release", help="regenerate assignments/ from solutions/ with nbgrader")
    g = sub.add_parser(
        "grade",
        help="grade SUBMISSIONS/<student>/<notebook>.ipynb with nbgrader",
        description="Grade a folder of submissions; writes OUT/grades.csv, OUT/summary.csv, "
        "OUT/report.csv and OUT/feedback/<student>/<notebook>.html.",
    )
    g.add_argument("submissions", type=Path, help="folder with one sub-folder per student (read only)")
    g.add_argument("--out", type=Path, required=True, help="folder for the CSVs and the feedback")
    g.add_argument("--jobs", type=_positive, default=1, help="students graded in parallel (default 1)")
    g.add_argument("--timeout", type=_positive, default=60, help="seconds a cell may run (default 60)")
    g.add_argument(
        "--notebook-timeout", type=_positive, default=900, help="seconds a whole notebook may run (default 900)"
    )
    g.add_argument(
        "--memory-limit",
        type=_positive,
        default=4096,
        metavar="MB",
        help="memory of a grading kernel beyond which allocations fail (default 4096)",
    )
    g.add_argument("--shard", type=_shard, help="grade only shard i of n (students in sorted order), e.g. 2/4")
    g.add_argument(
        "--db-url",
        help="write the results into this nbgrader database instead of "
        "OUT/nbgrader/gradebook.db: one PostgreSQL database shared by the machines of a "
        "sharded run, postgresql+psycopg://USER:PASSWORD@HOST:5432/DB (driver: the "
        "`postgres` extra); checked, and set up by nbgrader, before anything is graded",
    )
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument(
        "--students",
        type=lambda t: tuple(x for x in t.split(",") if x),
        default=(),
        metavar="A,B",
        help="grade these students again even if their submission did not change",
    )
    _flag(g, "--fresh", "forget the earlier results in OUT (they are backed up in OUT/backups/) and grade everyone")
    _flag(
        g,
        "--cold-kernels",
        "start every kernel's sandbox from scratch instead of forking it from a warm server per "
        "worker that has imported torch (slower; the grades are the same)",
    )
    g.add_argument(
        "--cluster",
        metavar="ADDRESS",
        help="grade on a Dask cluster: tcp://HOST:8786 (a running scheduler whose workers have this "
        "commit and these packages) or local:N (N worker processes here); needs "
        "pip install 'vaekit[cluster]' (README, section Grading a large class)",
    )
    _flag(
        g,
        "--unsafe-no-sandbox",
        "run submissions WITHOUT the bubblewrap sandbox, with your user's rights (only for code "
        "you trust, e.g. your own solutions on a machine without bubblewrap)",
    )
    fb = sub.add_parser("feedback", help="after manual grading in OUT/nbgrader: feedback and final grades again")
    fb.add_argument("out", type=Path, help="the --out folder of `grade`")
    rep = sub.add_parser(
        "report",
        help="OUT/class_report.html: scores, pass rates, misconceptions, statuses, "
        "similar code (for the instructor), from OUT's CSVs and graded notebooks",
    )
    rep.add_argument("out", type=Path, help="the --out folder of `grade` (or the union of several shards' OUT)")
    rep.add_argument("--top", type=_positive, default=20, help="rows of each long table on the page (default 20)")
    rep.add_argument("--no-similarity", action="store_true", help="skip the similar-code section")
    mg = sub.add_parser(
        "merge",
        help="combine the --out folders of a sharded run into one OUT",
        description="Combine the --out folders of `grade --shard i/n` into one: the CSVs, the "
        "feedback, the graded notebooks, the state and one gradebook (SQLite: a new one "
        "with every shard's grades and comments, manual ones included; a shared "
        "--db-url database: MERGED points at it). The shard folders are only read.",
    )
    mg.add_argument("shards", type=Path, nargs="+", help="the shards' --out folders")
    mg.add_argument(
        "--out",
        type=Path,
        required=True,
        help="a new or empty folder, or an earlier merge of the same shards (backed up first)",
    )
    pub = sub.add_parser(
        "publish",
        help="write the public student repository (release + vaekit only) into DIR",
        description="Write the released notebooks, vaekit and a student README into DIR, a clone "
        "of the public course repository. Only files that publish wrote before (listed "
        "in DIR/.vaekit-published.json) are replaced or removed; .git and every other "
        "file stay. Refused when assignments/ is stale (run `python -m autograder "
        "release` first).",
    )
    pub.add_argument("dir", type=Path, help="a folder outside this repository (created if needed)")
    pub.add_argument(
        "--notebooks",
        nargs="+",
        metavar="NB",
        help="publish only these notebooks (e.g. 01 02, or 01_autoencoder), plus those published before; default: all",
    )
    _flag(
        pub,
        "--overwrite",
        "replace files of DIR that publish did not write (or that were edited since), after "
        "copying them to DIR.publish-backup-<time> next to DIR",
    )
    d = sub.add_parser("demo", help="release, make sample submissions, grade them and show the result")
    d.add_argument("--out", type=Path, default=Path("demo_output"), help="folder for everything (default demo_output)")
    d.add_argument("--jobs", type=_positive, default=2)
    args = parser.parse_args(argv)

    from autograder.nbgrader_main import block_slow_imports

    block_slow_imports()
    if args.command == "release":
        from autograder.release import release

        for path in release():
            print(f"wrote {path}")
        return 0
    if args.command == "grade":
        from autograder.grade import GradingError, Options, grade

        options = Options(
            jobs=args.jobs,
            timeout=args.timeout,
            notebook_timeout=args.notebook_timeout,
            memory_mb=args.memory_limit,
            shard=args.shard,
            progress=not args.no_progress,
            db_url=args.db_url,
            unsafe_no_sandbox=args.unsafe_no_sandbox,
            students=args.students,
            fresh=args.fresh,
            warm_kernels=not args.cold_kernels,
            cluster=args.cluster,
        )
        try:
            return grade(args.submissions, args.out, options)
        except GradingError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted: the CSVs hold the students graded so far", file=sys.stderr)
            return 130
    if args.command == "feedback":
        from autograder.gradebook import refresh

        return _reporting_errors(lambda: refresh(args.out))
    if args.command == "report":
        from autograder.class_report import build

        return _reporting_errors(
            lambda: print(f"class report: {build(args.out, top=args.top, similar=not args.no_similarity)}"),
            FileNotFoundError,
        )
    if args.command == "merge":
        from autograder.merge import merge

        return _reporting_errors(lambda: print(merge(args.shards, args.out)))
    if args.command == "publish":
        from autograder.publish import PublishError, publish

        return _reporting_errors(
            lambda: print(publish(args.dir, args.notebooks, overwrite=args.overwrite).report()), PublishError
        )
    if args.command == "demo":
        from autograder.demo import demo

        return demo(args.out, jobs=args.jobs)
    return 2


if __name__ == "__main__":
    sys.exit(main())
