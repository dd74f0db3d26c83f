"""Feedback pages: the student's own submitted notebook, with the judge's verdict on each test cell.

What a page shows, and where it comes from:

* every cell that is not a test: the student's source and the outputs *they submitted*
  (the full-settings figures their written answers refer to) — nothing computed in the
  grading sandbox;
* every test cell: its released (visible) source, its score, and the judge's message;
* the written answers, with the graders' points and comments after manual grading.

Markdown and HTML the student wrote or printed are sanitized: HTML outputs by nbconvert
(`HTMLExporter.sanitize_html`; JavaScript outputs are dropped), and markdown (which
nbgrader's feedback template renders without nbconvert's sanitizer) by `SafeHTMLExporter`,
which cleans the HTML each markdown cell becomes with an allowlist (scripts, event
handlers and javascript: links are escaped or dropped). The page is rendered with nbgrader's own
feedback template (scores per cell and in total), with a short grader report on top.
Hidden tests never appear: test cells get the released source, and the judge's
messages are the checks' own words.
"""

from __future__ import annotations

import copy
import html
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import nbformat
from nbformat.notebooknode import NotebookNode

from autograder.run import RUN_KEY
from autograder.status import Verdict

if TYPE_CHECKING:  # pragma: no cover
    from autograder.grade import Result

MAX_OUTPUT_CHARS = 200_000  # per cell: a flood of output is cut, with a note
DROPPED_MIME = ("application/javascript", "text/javascript", "application/vnd.jupyter.widget-view+json")
_lock = threading.Lock()
_exporter = None

STATUS_WORDS = {
    "ok": "graded normally.",
    "renamed": "your file had a different name; it was graded as the notebook it matched.",
    "repaired": "the notebook's cells had to be matched back to the release; it was graded normally.",
    "tampered": "the grader saw an attempt to interfere with grading (details below); an instructor will review it.",
    "timeout": "some of your code ran too long and was stopped; checks that could not finish score 0.",
    "error": "your notebook stopped the grader's kernel (it crashed, exited or ran out of memory); "
    "checks that could not run score 0.",
}


def safe_name(name: str) -> str:
    """`name` with anything but word characters and . @ + - replaced by _, safe as a file name."""
    return re.sub(r"[^\w.@+-]", "_", name) or "_"


def verdict_output(verdict: Verdict | None) -> NotebookNode:
    """The output shown under a test cell in the feedback: not graded, all checks passed, or the failure."""
    if verdict is None:
        return nbformat.v4.new_output("stream", name="stdout", text="not graded\n")
    if verdict.passed:
        return nbformat.v4.new_output("stream", name="stdout", text="✓ all checks passed\n")
    return nbformat.v4.new_output(
        "error", ename="Check failed", evalue=verdict.message, traceback=[f"Check failed: {verdict.message}"]
    )


def _trim(outputs: list) -> list:
    kept, size = [], 0
    for output in outputs:
        data = output.get("data")
        if isinstance(data, dict):
            for mime in DROPPED_MIME:
                data.pop(mime, None)
            if not data:
                continue
        text = str(output.get("text", "")) + "".join(str(v) for v in (data or {}).values())
        size += len(text)
        if size > MAX_OUTPUT_CHARS:
            kept.append(nbformat.v4.new_output("stream", name="stdout", text="[further output not shown: too long]\n"))
            break
        kept.append(output)
    return kept


def graded_notebook(
    nb: NotebookNode,
    released_tests: dict[str, str],
    verdicts: dict[str, Verdict],
    scores: dict[str, tuple[float, float]],
) -> NotebookNode:
    """The notebook formgrader and the feedback show: submitted outputs, verdicts on the test cells."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        cell.metadata.pop(RUN_KEY, None)
        meta = cell.metadata.get("nbgrader", {})
        gid = meta.get("grade_id")
        if cell.cell_type != "code":
            continue
        if meta.get("grade") and not meta.get("solution"):
            cell.source = released_tests.get(gid, "")
            cell.outputs = [verdict_output(verdicts.get(gid))]
            score, points = scores.get(gid, (0.0, float(meta.get("points", 0))))
            meta["score"], meta["points"] = score, points
        else:
            cell.outputs = _trim(cell.get("outputs", []))
    return nb


SAFE_TAGS = [
    "a",
    "abbr",
    "b",
    "blockquote",
    "br",
    "code",
    "dd",
    "del",
    "div",
    "dl",
    "dt",
    "em",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "i",
    "img",
    "kbd",
    "li",
    "ol",
    "p",
    "pre",
    "s",
    "span",
    "strong",
    "sub",
    "sup",
    "table",
    "tbody",
    "td",
    "tfoot",
    "th",
    "thead",
    "tr",
    "u",
    "ul",
]
SAFE_ATTRIBUTES = {
    "*": ["class", "id", "title"],
    "a": ["href", "title"],
    "img": ["src", "alt", "title", "width", "height"],
    "td": ["align", "colspan", "rowspan"],
    "th": ["align", "colspan", "rowspan"],
}


def clean_markdown_html(text: str) -> str:
    """The HTML a markdown cell became, with nothing a browser would run (allowlisted tags, http(s) links)."""
    import bleach

    return bleach.clean(text, tags=SAFE_TAGS, attributes=SAFE_ATTRIBUTES, protocols=["http", "https", "mailto"])


def _get_exporter():
    global _exporter
    if _exporter is None:
        import nbgrader
        from jinja2 import pass_context
        from nbconvert.exporters import HTMLExporter
        from traitlets.config import Config

        class SafeHTMLExporter(HTMLExporter):
            """nbgrader's feedback template renders markdown without sanitizing it: clean it here."""

            @pass_context
            def markdown2html(self, context, source):
                return clean_markdown_html(super().markdown2html(context, source))

        base = Path(nbgrader.__file__).parent / "server_extensions" / "formgrader"
        c = Config()
        c.HTMLExporter.template_name = "feedback"
        c.HTMLExporter.extra_template_basedirs = [str(base / "templates")]
        c.HTMLExporter.extra_template_paths = [str(base / "static" / "node_modules" / "bootstrap" / "dist" / "css")]
        c.HTMLExporter.sanitize_html = True
        _exporter = SafeHTMLExporter(config=c)
    return _exporter


def report_cell(student: str, notebook: str, status: str, notes: list[str]) -> NotebookNode:
    """The Markdown cell that opens a feedback notebook: the run's status, what it means, and up to 20 notes."""
    text = (
        f"**Grader report for {html.escape(student)}, {html.escape(notebook)}: {html.escape(status)}** — "
        f"{STATUS_WORDS.get(status, '')}"
    )
    if notes:
        text += "\n\n" + "\n".join(f"* {html.escape(n)}" for n in notes[:20])
    return nbformat.v4.new_markdown_cell(text)


def render(
    nb: NotebookNode,
    student: str,
    notebook: str,
    status: str,
    notes: list[str],
    score: float,
    max_score: float,
    path: Path,
    comments: dict[str, str] | None = None,
    pending: set[str] | None = None,
    scores: dict[str, tuple[float, float]] | None = None,
) -> Path:
    """Write the feedback page for one graded notebook.

    comments: the graders' comments per answer cell; pending: answer cells still waiting
    for a grader (default: every written answer); scores: points per cell after manual grading.
    """
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        gid = meta.get("grade_id")
        if meta.get("grade"):  # the template shows a score on every graded cell; a written answer's is 0 until graded
            meta["score"], meta["points"] = (scores or {}).get(gid, (meta.get("score", 0.0), meta.get("points", 0.0)))
        if meta.get("solution") or meta.get("task"):
            waiting = gid in pending if pending is not None else bool(meta.get("grade"))
            comment = (comments or {}).get(gid)
            if comment or waiting:
                meta["comment"] = comment or "Graded by hand later."
    nb.cells.insert(0, report_cell(student, notebook, status, notes))
    resources = {"nbgrader": {"notebook": notebook, "score": score, "max_score": max_score, "late_penalty": 0}}
    with _lock:
        body, _ = _get_exporter().from_notebook_node(nb, resources=resources)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    return path


def write(result: Result, path: Path) -> Path:
    """The page of a freshly graded notebook (written answers still waiting for a grader)."""
    if result.graded is None:
        return write_plain(result, path)
    max_total = result.max_score + sum(
        float(c.metadata["nbgrader"].get("points", 0))
        for c in result.graded.cells
        if c.cell_type == "markdown" and c.metadata.get("nbgrader", {}).get("grade")
    )
    return render(
        result.graded, result.student, result.notebook, result.status, result.notes, result.score, max_total, path
    )


def write_plain(result: Result, path: Path) -> Path:
    """A page without the notebook: missing, unreadable, or a notebook that does not render."""
    items = "".join(f"<li>{html.escape(n)}</li>" for n in result.notes)
    what = {"missing": "was not found", "unreadable": "could not be read"}.get(result.status, "was graded")
    body = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(result.notebook)}</title></head>"
        f"<body><h2>{html.escape(result.notebook)} (Score: {result.score:g} / {result.max_score:g})</h2>"
        f"<p>Your submission of <code>{html.escape(result.notebook)}.ipynb</code> {what} "
        f"({html.escape(result.status)}).</p><ul>{items}</ul></body></html>\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    return path
