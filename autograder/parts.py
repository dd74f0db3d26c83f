"""Reference "parts" modules: what `vaekit.export_parts` would write for the solutions.

Notebooks 03 and 04 start with `vaekit.import_parts("02_vae")` (and "01_autoencoder"),
which reads `<VAEKIT_WORKDIR>/<name>.py`. While grading, each kernel gets a fresh
work folder holding these modules, built from the solution notebooks, so that a
later notebook's grade never depends on the student's earlier mistakes.
"""
from __future__ import annotations

from pathlib import Path

import nbformat

from autograder.config import SOLUTIONS

HEADER = "import math\nimport torch\nimport torch.nn as nn\nimport torch.nn.functional as F\nimport vaekit\n"
MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION")


def parts_source(notebook: Path) -> str:
    """The module text for one solution notebook: its solution code cells, markers dropped."""
    nb = nbformat.read(notebook, as_version=4)
    chunks = [HEADER]
    for cell in nb.cells:
        if cell.cell_type != "code" or not cell.metadata.get("nbgrader", {}).get("solution"):
            continue
        lines = [line for line in cell.source.splitlines() if not any(m in line for m in MARKERS)]
        chunks.append("\n\n" + "\n".join(lines).rstrip() + "\n")
    return "".join(chunks)


def build_parts(out: Path, solutions: Path = SOLUTIONS) -> list[Path]:
    """Write `<out>/<notebook stem>.py` for every solution notebook; returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for notebook in sorted(solutions.glob("*.ipynb")):
        path = out / f"{notebook.stem}.py"
        path.write_text(parts_source(notebook))
        written.append(path)
    return written
