"""python -m autograder {release,grade,demo} — see README.md, section Instructors."""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("release", help="regenerate assignments/ from solutions/ with nbgrader")
    args, rest = parser.parse_known_args(argv)
    if args.command == "release":
        from autograder.release import release

        for path in release():
            print(f"wrote {path}")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
