"""Feedback HTML that shows a student their graded notebook, without the hidden tests.

Stock `nbgrader generate_feedback` renders the autograded notebook, whose test
cells hold the hidden tests again (nbgrader issue #917). Here the notebook is
cleaned first:

* every test cell gets its released source back (visible part only);
* a test's traceback is cut to its last line, the check's message
  ("AssertionError: ae_loss averages over pixels: ..."), and frames from the
  hidden checks are dropped from any other traceback;
* any output that quotes a line of a hidden test or of the hidden checks'
  source is removed, and a tampered notebook loses all outputs but the test
  results;

and then rendered with nbgrader's own feedback template (scores per cell and
in total), with a short report of what the grader did on top.
"""
from __future__ import annotations

import copy
import html
import re
import threading
from pathlib import Path

import nbformat
from nbformat.notebooknode import NotebookNode

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
HIDDEN = re.compile(r"### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS\n?", re.S)
_lock = threading.Lock()
_exporter = None


def secret_lines(source_nbs: list[NotebookNode], checks_dir: Path, public_texts: list[str]) -> set[str]:
    """Distinctive lines of the hidden tests and checks that must never reach a student."""
    public = set()
    for text in public_texts:
        public |= {line.strip() for line in text.splitlines()}
    for nb in source_nbs:  # a student who gets it right writes these lines too
        for cell in nb.cells:
            if cell.metadata.get("nbgrader", {}).get("solution"):
                public |= {line.strip() for line in cell.source.splitlines()}
    lines = set()
    for nb in source_nbs:
        for cell in nb.cells:
            for block in re.findall(r"### BEGIN HIDDEN TESTS(.*?)### END HIDDEN TESTS", cell.source, re.S):
                lines |= {line.strip() for line in block.splitlines()}
    for path in sorted(checks_dir.glob("*.py")):
        lines |= {line.strip() for line in path.read_text().splitlines()}
    return {line for line in lines if len(line) >= 24 and line not in public and not line.startswith(("#", '"""'))
            and not line.startswith(("raise AssertionError(", "require(", "f\"", "\""))}


def _clean_traceback(output: NotebookNode, graded: bool) -> None:
    lines = [ANSI.sub("", line) for line in output.get("traceback", [])]
    if graded or any("autograder" in line or "_vaekit_guard" in line for line in lines):
        ename, evalue = output.get("ename", "Error"), output.get("evalue", "")
        output["traceback"] = [f"{ename}: {evalue}" if evalue else ename]
    else:
        output["traceback"] = lines


def _leaks(output: NotebookNode, secrets: set[str]) -> bool:
    texts = [output.get("text", ""), output.get("evalue", "")]
    texts += [v for v in (output.get("data") or {}).values() if isinstance(v, str)]
    texts += output.get("traceback", [])
    blob = "\n".join(t if isinstance(t, str) else "".join(t) for t in texts)
    return any(secret in blob for secret in secrets)


def clean(nb: NotebookNode, released: dict[str, str], scores: dict[str, tuple[float, float]],
          secrets: set[str], tampered: bool, comments: dict[str, str] | None = None,
          pending: set[str] | None = None) -> NotebookNode:
    """A copy of an autograded notebook that is safe to show the student.

    comments: the graders' comments per answer cell (after manual grading);
    pending: the cells still waiting for a grader (default: every written answer).
    """
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        gid = meta.get("grade_id")
        graded_test = cell.cell_type == "code" and meta.get("grade") and not meta.get("solution")
        if graded_test:
            cell.source = released.get(gid, HIDDEN.sub("", cell.source))
        elif cell.cell_type == "code" and HIDDEN.search(cell.source):
            cell.source = HIDDEN.sub("", cell.source)
        if meta.get("grade"):
            score, points = scores.get(gid, (0.0, float(meta.get("points", 0))))
            meta["score"], meta["points"] = score, points
        if meta.get("solution") or meta.get("task"):
            waiting = gid in pending if pending is not None else bool(meta.get("grade"))
            comment = (comments or {}).get(gid)
            if comment or waiting:
                meta["comment"] = comment or "Graded by hand later."
        if cell.cell_type != "code":
            continue
        kept = []
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                _clean_traceback(output, bool(graded_test))
            elif tampered and not graded_test:
                continue
            if _leaks(output, secrets):
                if output.get("output_type") == "error":
                    output["evalue"], output["traceback"] = "(message removed)", [f"{output.get('ename')}"]
                else:
                    continue
            kept.append(output)
        cell.outputs = kept
        cell.metadata.pop("vaekit_grader", None)
    nb.metadata.pop("vaekit_grader", None)
    return nb


def _get_exporter():
    global _exporter
    if _exporter is None:
        import nbgrader
        from nbconvert.exporters import HTMLExporter
        from traitlets.config import Config

        base = Path(nbgrader.__file__).parent / "server_extensions" / "formgrader"
        c = Config()
        c.HTMLExporter.template_name = "feedback"
        c.HTMLExporter.extra_template_basedirs = [str(base / "templates")]
        c.HTMLExporter.extra_template_paths = [str(base / "static" / "node_modules" / "bootstrap" / "dist" / "css")]
        _exporter = HTMLExporter(config=c)
    return _exporter


def report_cell(student: str, notebook: str, status: str, notes: list[str]) -> NotebookNode:
    words = {
        "ok": "graded normally.",
        "repaired": "the notebook was damaged; the grader repaired it and graded it normally.",
        "tampered": "the grader found code that interferes with grading; an instructor will review it. "
                    "Outputs of your own cells are not shown.",
        "timeout": "some code ran too long and was stopped; cells that could not run score 0.",
        "error": "the notebook stopped the grader's kernel or exited; cells that could not run score 0.",
    }
    text = f"**Grader report for {html.escape(student)}, {notebook}: {status}** — {words.get(status, '')}"
    if notes:
        text += "\n\n" + "\n".join(f"* {html.escape(n)}" for n in notes[:20])
    return nbformat.v4.new_markdown_cell(text)


def render(nb: NotebookNode, student: str, notebook: str, status: str, notes: list[str],
           score: float, max_score: float, path: Path) -> Path:
    nb = copy.deepcopy(nb)
    nb.cells.insert(0, report_cell(student, notebook, status, notes))
    resources = {"nbgrader": {"notebook": notebook, "score": score, "max_score": max_score, "late_penalty": 0}}
    with _lock:
        body, _ = _get_exporter().from_notebook_node(nb, resources=resources)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    return path


def render_missing(student: str, notebook: str, status: str, notes: list[str], max_score: float, path: Path,
                   score: float = 0.0) -> Path:
    items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    what = {"missing": "was not found", "unreadable": "could not be read"}.get(status, "was graded")
    body = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{notebook}</title></head><body>"
            f"<h2>{html.escape(notebook)} (Score: {score:g} / {max_score:g})</h2>"
            f"<p>Your submission of <code>{html.escape(notebook)}.ipynb</code> {what} ({status}).</p>"
            f"<ul>{items}</ul></body></html>\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    return path
