""" "Parts" modules: what `vaekit.export_parts` writes, built from a notebook's answer cells.

Notebooks 03 and 04 start with `vaekit.import_parts("02_vae")` (and "01_autoencoder"),
which reads `<VAEKIT_WORKDIR>/<name>.py`. When grading, each student's sandbox gets
a work folder with modules built from *their own* submitted 01 and 02 notebooks
(`student_parts`); where a notebook is missing, the module is built from the
release's stubs and says so in its first line. The grade of 03/04 never depends
on those modules: the judge swaps in its own stand-ins for the functions it
checks another one with. `build_parts` builds the same modules from the
solutions, for running the solution notebooks under nbval.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.notebooknode import NotebookNode

from autograder.config import SOLUTIONS
from vaekit.coursework import HEADER

MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION")


def without_markers(source: str) -> str:
    """An answer cell's source with nbgrader's solution markers dropped (the solution as a student writes it)."""
    return "\n".join(line for line in source.splitlines() if not any(m in line for m in MARKERS))


def parts_source(nb: NotebookNode, name: str, note: str = "") -> str:
    """The module text for one notebook: its answer cells' code, solution markers dropped."""
    chunks = [HEADER.format(source=f"{name}.ipynb")]
    if note:
        chunks.insert(0, f"# {note}\n")
    for cell in nb.cells:
        if cell.cell_type != "code" or not cell.metadata.get("nbgrader", {}).get("solution"):
            continue
        chunks.append("\n\n" + without_markers(cell.source).rstrip() + "\n")
    return "".join(chunks)


def build_parts(out: Path, solutions: Path = SOLUTIONS) -> list[Path]:
    """Write `<out>/<notebook stem>.py` for every solution notebook; returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for notebook in sorted(solutions.glob("*.ipynb")):
        path = out / f"{notebook.stem}.py"
        path.write_text(parts_source(nbformat.read(notebook, as_version=4), notebook.stem))
        written.append(path)
    return written


def student_parts(out: Path, submitted: dict[str, NotebookNode | None], releases: dict[str, NotebookNode]) -> list[str]:
    """Write the parts of every notebook from the student's own submission (`submitted[name]`).

    Missing or unreadable submissions (None) fall back to the release's stubs, which raise
    NotImplementedError; returns the names that fell back.
    """
    out.mkdir(parents=True, exist_ok=True)
    fallback = []
    for name, release in releases.items():
        nb = submitted.get(name)
        if nb is None:
            fallback.append(name)
            text = parts_source(
                release, name, f"fallback: no submission of {name}.ipynb, these are the release's stubs"
            )
        else:
            text = parts_source(nb, name)
        (out / f"{name}.py").write_text(text)
    return fallback
