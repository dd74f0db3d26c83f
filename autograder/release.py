"""Regenerate the student notebooks (assignments/) from the sources (solutions/) with nbgrader."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat

from autograder.config import ASSIGNMENTS, REPO, SOLUTIONS, Course, load_course

RAISES = "raises-exception"


def prepare_course(root: Path, course: Course, solutions: Path = SOLUTIONS) -> Path:
    """An nbgrader course folder at `root` whose source/ holds the filled-in sources (of `solutions`)."""
    source = root / "source" / course.assignment
    source.mkdir(parents=True, exist_ok=True)
    for path in sorted(solutions.glob("*.ipynb")):
        (source / path.name).write_text(course.substitute(path.read_text()))
    (root / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        f"c.CourseDirectory.root = {str(root)!r}\n"
        f"c.CourseDirectory.db_url = 'sqlite:///{root / 'gradebook.db'}'\n"
    )
    return root


def run_nbgrader(root: Path, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run an nbgrader command in the course folder `root` (its own process)."""
    cmd = [sys.executable, "-m", "autograder.nbgrader_main", *args, f"--CourseDirectory.root={root}"]
    return subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=timeout, env=tool_env())


def tool_env(**extra: str) -> dict[str, str]:
    """This environment with the interpreter's bin folder first on PATH.

    nbgrader runs `alembic` by name, which a virtualenv that is not activated
    (`make`, CI) does not have on PATH.
    """
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def generate(root: Path, course: Course) -> Path:
    """nbgrader generate_assignment; returns the release folder."""
    proc = run_nbgrader(root, "generate_assignment", course.assignment, "--create", "--force")
    release = root / "release" / course.assignment
    if proc.returncode != 0 or not release.exists():
        raise RuntimeError(f"nbgrader generate_assignment failed:\n{proc.stdout}\n{proc.stderr}")
    return release


def _names(tree: ast.AST) -> tuple[set[str], set[str]]:
    """(names a piece of code binds at top level, names it reads)."""
    bound, used = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (bound if isinstance(node.ctx, ast.Store) else used).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
            bound.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
    return bound, used


def tag_stub_dependents(nb: nbformat.NotebookNode) -> None:
    """Tag the cells that fail while the stubs are unfilled, so that nbval expects it.

    A cell fails if it is a stub that raises where it stands (not inside a function), or
    reads a name defined by a stub (a solution cell) or bound by another failing cell.
    JupyterLab's "Run All" also continues past such cells.
    """
    stubbed: set[str] = set()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        meta = cell.metadata.get("nbgrader", {})
        try:
            tree = ast.parse(
                "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))
            )
        except SyntaxError:
            continue
        bound, used = _names(tree)
        if meta.get("solution"):
            stubbed |= bound
            if any(isinstance(node, ast.Raise) for node in tree.body):  # a bare stub (`BEST_BETA = …`) raises itself
                tags = cell.metadata.setdefault("tags", [])
                if RAISES not in tags:
                    tags.append(RAISES)
            continue
        if meta.get("grade") or used & stubbed:
            tags = cell.metadata.setdefault("tags", [])
            if RAISES not in tags:
                tags.append(RAISES)
            stubbed |= bound


def release(out: Path = ASSIGNMENTS, course: Course | None = None) -> list[Path]:
    """Write the student notebooks to `out`; returns their paths."""
    course = course or load_course()
    written = []
    with tempfile.TemporaryDirectory(prefix="vaekit-release-") as tmp:
        released = generate(prepare_course(Path(tmp), course), course)
        out.mkdir(parents=True, exist_ok=True)
        for stale in out.glob("*.ipynb"):
            stale.unlink()
        for path in sorted(released.glob("*.ipynb")):
            nb = nbformat.read(path, as_version=4)
            tag_stub_dependents(nb)
            target = out / path.name
            nbformat.write(nb, target)
            written.append(target)
        for extra in released.iterdir():  # data or images shipped next to the notebooks
            if extra.suffix != ".ipynb" and extra.is_file():
                shutil.copy2(extra, out / extra.name)
    return written
