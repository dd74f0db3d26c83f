"""Write the public, student-facing repository: released notebooks and vaekit, nothing else.

The course's own repository holds solutions/, the hidden checks (autograder/) and tests/;
students must never see them. Publish this folder to the repository named in
autograder/course.toml (Colab badges and `pip install` point there).
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

from autograder.config import ASSIGNMENTS, REPO, load_course

SHIPPED = ["assignments", "vaekit", "pyproject.toml", "environment.yml"]
FORBIDDEN = re.compile(r"### (BEGIN|END) (SOLUTION|HIDDEN TESTS)|autograder\.checks|Rubric")

STUDENT_README = """# {title}

Open a notebook in Colab with its badge, or run it locally:

    pip install -e .          # vaekit, the course helpers (keeps an installed torch)
    jupyter lab assignments/

| notebook | topic |
|---|---|
{rows}

Work through them in order: notebooks 3 and 4 load the code and weights that notebooks 1
and 2 save to your course work folder (your Google Drive in Colab, `./vaekit_work` locally).
Submit the notebooks as your instructor says; keep the file names.
"""


def publish(out: Path) -> list[Path]:
    """Copy the student-facing files to `out` (replacing what was there); returns them."""
    if out.resolve() == REPO or REPO in out.resolve().parents:
        raise ValueError(f"publish into a folder outside this repository, not {out}")
    course = load_course()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name in SHIPPED:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, out / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "vaekit_work"))
        else:
            shutil.copy2(src, out / name)
    rows = "\n".join(f"| [{p.stem}](assignments/{p.name}) | {p.stem.split('_', 1)[1].replace('_', ' ')} |"
                     for p in sorted(ASSIGNMENTS.glob("*.ipynb")))
    (out / "README.md").write_text(STUDENT_README.format(title=f"VAE course ({course.github_repo})", rows=rows))
    files = sorted(p for p in out.rglob("*") if p.is_file())
    leaks = [p for p in files if p.suffix in (".py", ".ipynb", ".md") and FORBIDDEN.search(p.read_text())]
    if leaks:
        shutil.rmtree(out)
        raise RuntimeError(f"refusing to publish: {leaks} hold solutions or hidden tests")
    return files
