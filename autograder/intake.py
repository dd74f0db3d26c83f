"""Read a submitted notebook and rebuild it on the released structure before nbgrader sees it.

Stock nbgrader trusts the cells' nbgrader metadata. When an editor drops it
(Colab, VS Code), autograde silently scores 0; a deleted, duplicated, reordered
or retyped cell confuses it too. Here every graded or locked cell of the
release (an "anchor") is found in the submission, by its grade_id where the
metadata is intact and by content otherwise, and the notebook is rebuilt in
the released order:

* locked cells (setup, data, tests, questions) come from the release;
  nbgrader then restores the hidden tests into the test cells;
* solution cells keep the student's code, with the release's metadata;
* the student's own extra cells stay after the anchor they followed;
* free code cells of the release that the student deleted come back.

What had to be repaired is reported (status `repaired`). Nothing here decides
`tampered`: only the judge, on evidence of an attempt, does (status.py). An
edited locked cell is simply replaced by the release's version; a locked cell
that differs only where the release fills in course settings (the Colab badge,
the pip line of course.toml) is a submission made from an earlier release and
counts as unchanged.

Every rebuilt code cell keeps the student's submitted outputs (the feedback
shows them) and is marked `metadata.vaekit.run` when the grading run needs it:
setup and data cells, answer cells, and the student's own or changed cells;
never test cells, and not the release's training cells left as they were.
"""

from __future__ import annotations

import ast
import copy
import difflib
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import nbformat
from nbformat.notebooknode import NotebookNode, from_dict

from autograder.run import RUN_KEY

MAX_BYTES = 50 * 1024 * 1024
PLACEHOLDER = re.compile(r"\\\{\\\{COURSE_(?:REPO|REF)\\\}\\\}")


def normalize(text: str) -> str:
    """Source text as compared with the release: trailing spaces and surrounding blank lines dropped."""
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def _source(value) -> str:
    if isinstance(value, list):
        return "".join(str(v) for v in value)
    return value if isinstance(value, str) else ""


def parse(source: str) -> ast.AST | None:
    """The cell's syntax tree, IPython magics and shell lines blanked out; None if it does not parse."""
    lines = ["" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()]
    try:
        return ast.parse("\n".join(lines))
    except (SyntaxError, ValueError):
        return None


@lru_cache(maxsize=4096)
def _defines(source: str) -> frozenset[str]:
    tree = parse(source)
    if tree is None:
        return frozenset(re.findall(r"^\s*(?:def|class)\s+(\w+)", source, flags=re.M))
    return frozenset(
        n.name
        for n in getattr(tree, "body", [])
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    )


# ---------------------------------------------------------------------------- reading
class Unreadable(Exception):
    """The file is not a notebook we can grade; the message says why."""


def read_cells(path: Path) -> tuple[list[dict], list[str]]:
    """The cells of a submitted file as plain dicts, and notes on what was odd.

    Raises Unreadable for empty files, PDFs and other binaries, bad JSON, JSON
    that is not a notebook, and notebook formats other than 3 and 4.
    """
    size = path.stat().st_size
    if size == 0:
        raise Unreadable("empty file")
    if size > MAX_BYTES:
        raise Unreadable(f"file too large ({size / 1e6:.0f} MB)")
    raw = path.read_bytes()
    if raw.startswith(b"%PDF"):
        raise Unreadable("a PDF file, not a notebook: submit the .ipynb file itself")
    if raw.startswith(b"PK\x03\x04"):
        raise Unreadable("a zip archive, not a notebook")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Unreadable("not a text file") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise Unreadable(f"not valid JSON (truncated or damaged file?): {exc}") from None
    if not isinstance(data, dict):
        raise Unreadable("JSON, but not a notebook")
    major = data.get("nbformat")
    notes = []
    if major == 3 or ("worksheets" in data and "cells" not in data):
        try:
            data = nbformat.convert(from_dict(data), 4)
            notes.append("converted from notebook format 3")
        except Exception as exc:
            raise Unreadable(f"an old notebook format that could not be converted ({exc})") from None
    elif major != 4:
        raise Unreadable(f"notebook format {major!r} is not supported (expected 4)")
    cells = data.get("cells")
    if not isinstance(cells, list):
        raise Unreadable("JSON, but not a notebook (no list of cells)")
    out = []
    for cell in cells:
        if not isinstance(cell, dict) or cell.get("cell_type") not in ("code", "markdown", "raw"):
            notes.append("skipped a damaged cell")
            continue
        meta = cell.get("metadata") if isinstance(cell.get("metadata"), dict) else {}
        outputs = cell.get("outputs") if cell["cell_type"] == "code" and isinstance(cell.get("outputs"), list) else []
        out.append(
            {
                "cell_type": cell["cell_type"],
                "source": _source(cell.get("source")),
                "metadata": meta,
                "outputs": [o for o in outputs if isinstance(o, dict) and isinstance(o.get("output_type"), str)],
            }
        )
    return out, notes


# ---------------------------------------------------------------------------- reference
@dataclass
class Anchor:
    """One cell of the released notebook that a submitted cell is matched to."""

    index: int  # position in the release
    kind: str  # "solution", "locked" or "free" (a free code cell of the release)
    grade_id: str | None
    cell: NotebookNode  # the released cell
    text: str  # normalized released source
    defines: frozenset[str]
    pattern: re.Pattern | None = None  # the source with course settings as wildcards (any release)

    def same_as_released(self, source: str) -> bool:
        """Whether `source` is this cell as released (with any course settings, if the cell has a pattern)."""
        text = normalize(source)
        return text == self.text or bool(self.pattern and self.pattern.fullmatch(text))


@dataclass
class Reference:
    """What a submission of one notebook is matched against: its released version."""

    name: str
    release: NotebookNode
    anchors: list[Anchor]
    free_texts: set[str]  # normalized sources of released markdown cells without metadata
    max_points: dict[str, float] = field(default_factory=dict)

    @property
    def by_id(self) -> dict[str, Anchor]:
        """The anchors that carry an nbgrader grade_id, by that id."""
        return {a.grade_id: a for a in self.anchors if a.grade_id}


def build_reference(name: str, release: NotebookNode, source: NotebookNode) -> Reference:
    """The anchors of a released notebook; `source` is its unfilled source (solutions/, placeholders kept)."""
    patterns = {}
    for cell in source.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid and "{{COURSE_" in cell.source:
            patterns[gid] = re.compile(PLACEHOLDER.sub(r"\\S+", re.escape(normalize(cell.source))), re.S)
    anchors, free_texts = [], set()
    for index, cell in enumerate(release.cells):
        meta = cell.metadata.get("nbgrader", {})
        grade_id = meta.get("grade_id")
        if grade_id and (meta.get("solution") or meta.get("locked") or meta.get("grade") or meta.get("task")):
            kind = "solution" if meta.get("solution") else "locked"
        elif cell.cell_type == "code" and cell.source.strip():
            kind, grade_id = "free", None
        else:
            free_texts.add(normalize(cell.source))
            continue
        anchors.append(
            Anchor(index, kind, grade_id, cell, normalize(cell.source), _defines(cell.source), patterns.get(grade_id))
        )
    max_points = {
        c.metadata["nbgrader"]["grade_id"]: float(c.metadata["nbgrader"].get("points", 0))
        for c in source.cells
        if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")
    }
    return Reference(name, release, anchors, free_texts, max_points)


# ---------------------------------------------------------------------------- matching
@dataclass
class Intake:
    """A submission, read and rebuilt; `nb` is None when there is nothing to grade."""

    status: str
    notes: list[str] = field(default_factory=list)
    nb: NotebookNode | None = None


@lru_cache(maxsize=65536)
def _ratio(a: str, b: str) -> float:
    """Similarity in [0, 1]: by lines for longer cells (fast), by characters for short ones."""
    la, lb = a.splitlines(), b.splitlines()
    if min(len(la), len(lb)) >= 4:
        m = difflib.SequenceMatcher(None, la, lb, autojunk=False)
    else:
        m = difflib.SequenceMatcher(None, a, b, autojunk=False)
    if m.real_quick_ratio() < 0.5 or m.quick_ratio() < 0.5:
        return 0.0
    return m.ratio()


def score(anchor: Anchor, cell: dict, free_texts: set[str]) -> float:
    """How well a student cell fits an anchor (0: not at all)."""
    text = normalize(cell["source"])
    same_type = cell["cell_type"] == anchor.cell.cell_type
    if text == anchor.text:
        return 1.0 if same_type else 0.95
    penalty = 0.0 if same_type else 0.05
    if anchor.kind == "locked":
        r = _ratio(anchor.text, text)
        return r - penalty if r >= 0.75 else 0.0
    if anchor.kind == "solution" and anchor.cell.cell_type == "markdown":
        # a written answer: any markdown the student wrote, placed by the alignment
        if cell["cell_type"] == "markdown" and text not in free_texts and text:
            return 0.3
        return 0.0
    if (
        anchor.kind == "solution"
        and not anchor.defines
        and cell["cell_type"] == "code"
        and text
        and _ratio(anchor.text, text) < 0.5
    ):
        # an answer that only sets values (`BEST_BETA = 1.0`) under a bare stub: placed by the alignment
        return 0.3
    defines = _defines(cell["source"]) if cell["cell_type"] == "code" or not same_type else frozenset()
    if anchor.defines and anchor.defines <= defines:
        return 0.9 - penalty
    if anchor.defines & defines:
        return 0.6 - penalty
    r = _ratio(anchor.text, text)
    if anchor.kind == "free":
        return r * 0.9 - penalty if r >= 0.6 else 0.0
    return r * 0.8 - penalty if r >= 0.5 else 0.0


def align(anchors: list[Anchor], cells: list[tuple[int, dict]], free_texts: set[str]) -> dict[int, int]:
    """Order-preserving best matching (weighted LCS): anchor position -> student cell index."""
    n, m = len(anchors), len(cells)
    scores = [[score(a, c, free_texts) for _, c in cells] for a in anchors]
    dp = [[0.0] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            best = max(dp[i - 1][j], dp[i][j - 1])
            s = scores[i - 1][j - 1]
            if s > 0:
                best = max(best, dp[i - 1][j - 1] + s)
            dp[i][j] = best
    match, i, j = {}, n, m
    while i > 0 and j > 0:
        s = scores[i - 1][j - 1]
        if s > 0 and dp[i][j] == dp[i - 1][j - 1] + s:
            match[i - 1] = cells[j - 1][0]
            i, j = i - 1, j - 1
        elif dp[i][j] == dp[i - 1][j]:
            i -= 1
        else:
            j -= 1
    # cells moved out of order: best remaining pairs, strongest first
    taken = set(match.values())
    pairs = sorted(
        (
            (scores[a][k], a, idx)
            for a in range(n)
            if a not in match
            for k, (idx, _) in enumerate(cells)
            if idx not in taken and scores[a][k] >= 0.6
        ),
        key=lambda t: (-t[0], t[1], t[2]),
    )
    for _, a, idx in pairs:
        if a not in match and idx not in taken:
            match[a] = idx
            taken.add(idx)
    return match


def _cell(cell_type: str, source: str, metadata: dict, outputs: list | None = None, run: bool = False) -> NotebookNode:
    if cell_type == "code":
        cell = nbformat.v4.new_code_cell(source=source, metadata=copy.deepcopy(metadata))
        cell.outputs = [from_dict(copy.deepcopy(o)) for o in outputs or []]
        cell.metadata[RUN_KEY] = {"run": bool(run)}
        return cell
    if cell_type == "raw":
        return nbformat.v4.new_raw_cell(source=source, metadata=copy.deepcopy(metadata))
    return nbformat.v4.new_markdown_cell(source=source, metadata=copy.deepcopy(metadata))


def rebuild(ref: Reference, cells: list[dict]) -> Intake:
    """Match the student's cells to the release and rebuild the notebook in the released order."""
    repairs: list[str] = []
    by_id = ref.by_id
    assigned: dict[int, int] = {}  # anchor index (in ref.anchors) -> student cell index
    position = {a.grade_id: k for k, a in enumerate(ref.anchors) if a.grade_id}

    # 1. intact metadata: match by grade_id (the last copy of a duplicated solution cell wins,
    #    as in Python when the notebook runs top to bottom, and as in nbgrader)
    claims: dict[str, list[int]] = {}
    for idx, cell in enumerate(cells):
        gid = (
            cell["metadata"].get("nbgrader", {}).get("grade_id")
            if isinstance(cell["metadata"].get("nbgrader"), dict)
            else None
        )
        if isinstance(gid, str) and gid in by_id:
            claims.setdefault(gid, []).append(idx)
    dropped: set[int] = set()
    for gid, idxs in claims.items():
        anchor = by_id[gid]
        if len(idxs) > 1:
            repairs.append(
                f"cell {gid} appears {len(idxs)} times: graded "
                f"{'the last copy' if anchor.kind == 'solution' else 'the released version'}"
            )
        if anchor.kind == "solution":
            chosen = idxs[-1]
        else:
            exact = [i for i in idxs if normalize(cells[i]["source"]) == anchor.text]
            chosen = exact[0] if exact else idxs[0]
            dropped |= set(idxs) - {chosen}  # extra copies of a locked cell are not run
        assigned[position[gid]] = chosen
    with_id = {i for idxs in claims.values() for i in idxs}

    # 2. the rest by content, in order
    open_anchors = [k for k in range(len(ref.anchors)) if k not in assigned]
    candidates = [(i, c) for i, c in enumerate(cells) if i not in with_id]
    stripped = sum(1 for c in cells if not isinstance(c["metadata"].get("nbgrader"), dict))
    matched = align([ref.anchors[k] for k in open_anchors], candidates, ref.free_texts)
    content_matched = []
    for pos, idx in matched.items():
        k = open_anchors[pos]
        assigned[k] = idx
        if ref.anchors[k].grade_id:
            content_matched.append(ref.anchors[k].grade_id)
    if content_matched:
        what = "nbgrader metadata missing" if stripped >= len(cells) // 2 else "nbgrader metadata missing or changed"
        repairs.append(f"{what}: matched {len(content_matched)} cell(s) to the release by content")

    # copies of locked cells left unassigned (a duplicated test cell without metadata) are dropped too
    for idx, cell in enumerate(cells):
        if idx in assigned.values() or idx in dropped:
            continue
        text = normalize(cell["source"])
        if any(a.kind == "locked" and a.text == text and text for a in ref.anchors):
            dropped.add(idx)

    # 3. order, types, deletions, edits
    order = [assigned[k] for k in range(len(ref.anchors)) if k in assigned]
    if order != sorted(order):
        repairs.append("cells were moved: graded in the released order")
    for k, anchor in enumerate(ref.anchors):
        label = anchor.grade_id or f"cell {anchor.index + 1} of the release"
        if k not in assigned:
            if anchor.kind == "solution":
                repairs.append(f"could not find the answer cell {anchor.grade_id}: graded the empty stub")
            elif anchor.kind == "locked":
                if anchor.cell.metadata.get("nbgrader", {}).get("grade"):
                    repairs.append(f"test cell {anchor.grade_id} was deleted: restored")
                elif anchor.cell.cell_type == "code":
                    repairs.append(f"locked cell {anchor.grade_id} was deleted: restored")
            else:
                repairs.append(f"{label} (code) was deleted: restored from the release")
            continue
        cell = cells[assigned[k]]
        if cell["cell_type"] != anchor.cell.cell_type:
            repairs.append(f"{label} was changed to {cell['cell_type']}: changed back to {anchor.cell.cell_type}")
        if anchor.kind == "locked" and not anchor.same_as_released(cell["source"]):
            if anchor.cell.cell_type == "code":
                repairs.append(f"locked cell {anchor.grade_id} was edited: the released version was graded")
            else:
                repairs.append(f"locked cell {anchor.grade_id} was edited: restored, the student's text kept below it")

    # 4. rebuild: anchors in released order, each followed by the student's cells that followed it
    owner_of: dict[int, int] = {v: k for k, v in assigned.items()}
    attached: dict[int, list[int]] = {}
    owner = -1
    for idx in range(len(cells)):
        if idx in owner_of:
            owner = owner_of[idx]
        elif idx not in dropped:
            attached.setdefault(owner, []).append(idx)
    out: list[NotebookNode] = []

    def emit_free(idx: int) -> None:
        cell = cells[idx]
        meta = {k: v for k, v in cell["metadata"].items() if k not in ("nbgrader", "deletable", "editable", RUN_KEY)}
        out.append(_cell(cell["cell_type"], cell["source"], meta, cell["outputs"], run=True))

    for idx in attached.get(-1, []):
        emit_free(idx)
    for k, anchor in enumerate(ref.anchors):
        cell = cells[assigned[k]] if k in assigned else None
        released = anchor.cell
        outputs = cell["outputs"] if cell is not None else []
        if anchor.kind == "locked" or cell is None:
            test = bool(released.metadata.get("nbgrader", {}).get("grade"))
            run = (
                released.cell_type == "code"
                and not test
                and (anchor.kind == "locked" or (cell is None and anchor.kind == "solution"))
            )
            out.append(_cell(released.cell_type, released.source, released.metadata, [] if test else outputs, run))
            if (
                cell is not None
                and anchor.kind == "locked"
                and released.cell_type == "markdown"
                and not anchor.same_as_released(cell["source"])
                and cell["source"].strip()
            ):
                out.append(_cell("markdown", cell["source"], {}))
        else:
            changed = normalize(cell["source"]) != anchor.text
            out.append(
                _cell(
                    released.cell_type,
                    cell["source"],
                    released.metadata,
                    outputs,
                    run=anchor.kind == "solution" or changed,
                )
            )
        for idx in attached.get(k, []):
            emit_free(idx)

    nb = nbformat.v4.new_notebook(cells=out, metadata=copy.deepcopy(ref.release.metadata))
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:03d}"
    return Intake("repaired" if repairs else "ok", repairs, nb)


def take_in(ref: Reference, path: Path) -> Intake:
    """Read and rebuild one submitted file; never raises for a bad file."""
    try:
        cells, notes = read_cells(path)
    except Unreadable as exc:
        return Intake("unreadable", [str(exc)])
    except OSError as exc:
        return Intake("unreadable", [f"cannot read the file ({exc.strerror or exc})"])
    if not any(c["source"].strip() for c in cells):
        return Intake("unreadable", ["the notebook has no content"])
    intake = rebuild(ref, cells)
    if notes:
        intake.notes += notes
        if intake.status == "ok":
            intake.status = "repaired"
    return intake
