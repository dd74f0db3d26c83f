"""Paths and the course settings of autograder/course.toml."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOLUTIONS = REPO / "solutions"
ASSIGNMENTS = REPO / "assignments"


@dataclass(frozen=True)
class Course:
    """The release settings of autograder/course.toml: where students install vaekit from, the assignment's name."""

    github_repo: str
    ref: str
    assignment: str

    @property
    def pip_spec(self) -> str:
        """The pip requirement that installs vaekit from the course repository at the released ref."""
        return f"vaekit @ git+https://github.com/{self.github_repo}@{self.ref}"

    def substitute(self, text: str) -> str:
        """Fill the release placeholders of a source notebook."""
        return text.replace("{{COURSE_REPO}}", self.github_repo).replace("{{COURSE_REF}}", self.ref)


def load_course(path: Path | None = None) -> Course:
    """Read the [release] table of course.toml (or of `path`)."""
    data = tomllib.loads((path or REPO / "autograder" / "course.toml").read_text())["release"]
    return Course(github_repo=data["github_repo"], ref=data["ref"], assignment=data["assignment"])


def notebook_names() -> list[str]:
    """The released notebooks, by file stem, in course order."""
    return sorted(p.stem for p in SOLUTIONS.glob("*.ipynb"))
