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
    github_repo: str
    ref: str
    assignment: str

    @property
    def pip_spec(self) -> str:
        return f"vaekit @ git+https://github.com/{self.github_repo}@{self.ref}"

    def substitute(self, text: str) -> str:
        """Fill the release placeholders of a source notebook."""
        return text.replace("{{COURSE_REPO}}", self.github_repo).replace("{{COURSE_REF}}", self.ref)


def load_course(path: Path | None = None) -> Course:
    data = tomllib.loads((path or REPO / "autograder" / "course.toml").read_text())["release"]
    return Course(github_repo=data["github_repo"], ref=data["ref"], assignment=data["assignment"])


def notebook_names() -> list[str]:
    """The released notebooks, by file stem, in course order."""
    return sorted(p.stem for p in SOLUTIONS.glob("*.ipynb"))
