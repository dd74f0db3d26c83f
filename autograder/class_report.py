"""`python -m autograder report OUT`: what the class got wrong, on one page (OUT/class_report.html).

Built only from what a grading run leaves in OUT, so it is the same for a local run, the
union of several shards' OUT folders and a cluster run:

* OUT/summary.csv, grades.csv, report.csv, checks.csv, timing.csv   (autograder/report.py)
* OUT/nbgrader/autograded/<student>/<assignment>/<notebook>.ipynb   the graded notebooks
* OUT/nbgrader/release/<assignment>/<notebook>.ipynb                the released notebooks

The page (self-contained: figures are embedded PNGs, no external resources, every text that
comes from a student escaped) has, in this order: scores per notebook and in total; the pass
rate of every test cell; the misconceptions (failing checks grouped by the stable id of the
mistake they name, with the students concerned); the statuses other than `ok`; the grading
time per notebook; and, for the instructor only, pairs and clusters of students whose code
answers are unusually alike. The page shows the first `top` rows of the long tables; the
same numbers, complete, are in OUT/class_report/*.csv.

Similarity uses copydetect (the winnowing fingerprints of MOSS, Schleimer et al. 2003) on each
code answer cell (nbgrader `solution: true`), after tokenizing (names, strings and comments do not
count) and discounting as boilerplate the release's version of the cell and every fingerprint
that more than COMMON_FRACTION of the class shares (the code every correct solution has). It is
a reason for a person to look at two submissions side by side, never a verdict: it changes no
grade and appears in no student's feedback.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import statistics
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np

TOP = 20  # rows of each long table on the page (all of them are in the CSVs)
NAMES_SHOWN = 12  # students named in one row of the page before "and k more"
STATUSES = ("unreadable", "missing", "tampered", "timeout", "error", "renamed", "repaired")
# the judge's own failure kinds (judge.py): no mistake of the student's is named by them
GENERIC = {
    "not_defined": "a graded name was not defined",
    "raised": "the student's code raised an error",
    "unusable": "the check could not use what the code returned",
    "timeout": "a check ran out of time",
    "kernel_lost": "the kernel died",
    "tampered": "tampering",
    "not_run": "not graded",
}

# similarity (copydetect's defaults: a match must be 25 characters of tokenized code long, and
# any match of 30 or more is guaranteed to be found)
NOISE_T, GUARANTEE_T = 25, 30
COMMON_FRACTION = 0.3  # a fingerprint shared by more than this fraction of the class is boilerplate
COMMON_MIN = 5  # ... and by at least this many students (small classes)
THRESHOLD = 0.6  # mean fraction of both students' answer code that matches
MIN_TOKENS = 80  # and at least this many characters of tokenized code in common
MIN_SHARED = 3  # fingerprints two students must share before they are compared


# ------------------------------------------------------------------------------ reading OUT
def _rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _num(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def _answer_cells(nb: dict) -> dict[str, str]:
    """grade_id -> source of every code answer cell (nbgrader solution: true) of a notebook's JSON."""
    out = {}
    for cell in nb.get("cells", []):
        meta = (cell.get("metadata") or {}).get("nbgrader") or {}
        if cell.get("cell_type") == "code" and meta.get("solution") and meta.get("grade_id"):
            src = cell.get("source", "")
            out[str(meta["grade_id"])] = "".join(src) if isinstance(src, list) else str(src)
    return out


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None


@dataclass
class Inputs:
    """What the report is built from: the CSV files of a grading run and, for similarity, the code."""

    summary: list[dict[str, str]]
    grades: list[dict[str, str]]
    report: list[dict[str, str]]
    checks: list[dict[str, str]]
    notebooks: list[str]
    release: dict[str, dict[str, str]] = field(default_factory=dict)  # notebook -> cell -> stub
    answers: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)  # notebook -> student -> cell -> code


def read(out: Path, similarity: bool = True) -> Inputs:
    """Read a grading run's output folder `out`; `similarity` also reads the released stubs and the answers."""
    summary, grades = _rows(out / "summary.csv"), _rows(out / "grades.csv")
    report, checks = _rows(out / "report.csv"), _rows(out / "checks.csv")
    # run times live apart from report.csv, whose rows must not depend on how busy the machine was
    seconds = {(r["student"], r["notebook"]): r.get("seconds", "") for r in _rows(out / "timing.csv")}
    for r in report:
        r.setdefault("seconds", seconds.get((r["student"], r["notebook"]), ""))
    notebooks = sorted({r["notebook"] for r in grades} | {r["notebook"] for r in report})
    inputs = Inputs(summary, grades, report, checks, notebooks)
    if not similarity:
        return inputs
    nbg = out / "nbgrader"
    for path in sorted((nbg / "release").glob("*/*.ipynb")):
        nb = _read_json(path)
        if nb is not None:
            inputs.release.setdefault(path.stem, {}).update(_answer_cells(nb))
    students = sorted({r["student"] for r in report} | {r["student"] for r in grades})
    for student in students:
        folder = nbg / "autograded" / student
        if not folder.is_dir() or folder.resolve().parent != (nbg / "autograded").resolve():
            continue  # a student name is never a path outside autograded/
        for path in sorted(folder.glob("*/*.ipynb")):
            nb = _read_json(path)
            if nb is not None:
                inputs.answers.setdefault(path.stem, {}).setdefault(student, {}).update(_answer_cells(nb))
    return inputs


# ------------------------------------------------------------------------------ the numbers
@dataclass
class Tables:
    """Every table of the report: name -> (header, rows); the page shows parts of them."""

    tables: dict[str, tuple[list[str], list[list]]] = field(default_factory=dict)

    def add(self, name: str, header: list[str], rows: list[list]) -> list[list]:
        """Keep `rows` under `name` with their `header`, and return them for the caller's own use."""
        self.tables[name] = (header, rows)
        return rows


def _fmt(x) -> str:
    if isinstance(x, float):
        return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"
    return str(x)


def scores(inp: Inputs, t: Tables) -> dict[str, list[float]]:
    """Points per student of each notebook and of the total (students with a complete row in summary.csv)."""
    values: dict[str, list[float]] = {n: [] for n in inp.notebooks}
    values["total"] = []
    cell_max = {(r["notebook"], r["cell"]): _num(r["max_points"]) or 0.0 for r in inp.grades}
    per_nb = {n: sum(v for (nb, _), v in cell_max.items() if nb == n) for n in inp.notebooks}
    for r in inp.summary:
        for n in inp.notebooks:
            v = _num(r.get(n))
            if v is not None:
                values[n].append(v)
        v = _num(r.get("total"))
        if v is not None:
            values["total"].append(v)
    per_nb["total"] = sum(per_nb.values()) or max((_num(r.get("max_total")) or 0.0 for r in inp.summary), default=0.0)
    rows = []
    for name, vs in values.items():
        if vs:
            rows.append(
                [
                    name,
                    len(vs),
                    per_nb.get(name, 0.0),
                    statistics.mean(vs),
                    statistics.median(vs),
                    min(vs),
                    max(vs),
                    sum(1 for v in vs if v >= per_nb.get(name, 0.0) > 0),
                ]
            )
    t.add("scores", ["notebook", "students", "max_points", "mean", "median", "min", "max", "full_marks"], rows)
    hist = []
    for name, vs in values.items():
        for lo, hi, count in _bins(vs, per_nb.get(name, 0.0)):
            hist.append([name, lo, hi, count])
    t.add("score_histogram", ["notebook", "from", "to", "students"], hist)
    t.maxima = per_nb  # type: ignore[attr-defined]
    return values


def _bins(vs: list[float], top: float, n: int = 10) -> list[tuple[float, float, int]]:
    if not vs:
        return []
    top = max(top, max(vs), 1e-9)
    edges = np.linspace(0, top, n + 1)
    counts, _ = np.histogram(np.clip(vs, 0, top), bins=edges)
    return [(float(edges[i]), float(edges[i + 1]), int(c)) for i, c in enumerate(counts)]


def pass_rates(inp: Inputs, t: Tables) -> list[list]:
    """Every test cell: how many of the students whose notebook was judged passed it (worst first)."""
    seen: dict[tuple[str, str], list[int]] = {}
    for r in inp.checks:
        seen.setdefault((r["notebook"], r["cell"]), []).append(1 if r["passed"] == "1" else 0)
    rows = [[n, c, len(v), sum(v), sum(v) / len(v)] for (n, c), v in seen.items()]
    rows.sort(key=lambda r: (r[4], r[0], r[1]))
    return t.add("check_pass_rates", ["notebook", "cell", "judged", "passed", "pass_rate"], rows)


def misconceptions(inp: Inputs, t: Tables) -> tuple[list[list], list[list]]:
    """Failing checks grouped by misconception id: the named mistakes, and the judge's generic failures."""
    judged = len({r["student"] for r in inp.checks}) or 1
    groups: dict[str, dict] = {}
    long = []
    for r in inp.checks:
        if r["passed"] == "1":
            continue
        mid = r["misconception"] or "unnamed"
        g = groups.setdefault(mid, {"students": set(), "where": Counter(), "messages": Counter()})
        g["students"].add(r["student"])
        g["where"][(r["notebook"], r["cell"])] += 1
        g["messages"][r["message"]] += 1
        long.append([mid, r["student"], r["notebook"], r["cell"], r["message"]])
    named, generic = [], []
    for mid, g in groups.items():
        (nb, cell), _ = g["where"].most_common(1)[0]
        message = g["messages"].most_common(1)[0][0]
        students = sorted(g["students"])
        row = [mid, nb, cell, len(students), len(students) / judged, message, students]
        (generic if mid in GENERIC or mid == "unnamed" else named).append(row)
    for rows in (named, generic):
        rows.sort(key=lambda r: (-r[3], r[0]))
    header = ["misconception", "notebook", "cell", "students", "fraction", "message", "who"]
    t.add("misconceptions", header, [[*r[:6], ";".join(r[6])] for r in named])
    t.add("other_failures", header, [[*r[:6], ";".join(r[6])] for r in generic])
    long.sort(key=lambda r: (r[0], r[1], r[2]))
    t.add("misconception_students", ["misconception", "student", "notebook", "cell", "message"], long)
    return named, generic


def statuses(inp: Inputs, t: Tables) -> list[list]:
    """Table the runs that did not end 'ok', by status: [status, runs, students, [student (notebook)]] rows."""
    by: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for r in inp.report:
        if r["status"] != "ok":
            by[r["status"]].append((r["student"], r["notebook"]))
    order = {s: i for i, s in enumerate(STATUSES)}
    rows = []
    for status in sorted(by, key=lambda s: order.get(s, 99)):
        pairs = sorted(by[status])
        rows.append([status, len(pairs), len({s for s, _ in pairs}), [f"{s} ({n})" for s, n in pairs]])
    t.add("statuses", ["status", "notebooks", "students", "who"], [[*r[:3], ";".join(r[3])] for r in rows])
    t.add(
        "status_students",
        ["status", "student", "notebook", "detail"],
        sorted(
            [[r["status"], r["student"], r["notebook"], r.get("detail", "")] for r in inp.report if r["status"] != "ok"]
        ),
    )
    return rows


def timing(inp: Inputs, t: Tables) -> dict[str, list[float]]:
    """Table the run times per notebook (mean, median, p90, max, slowest student); notebook -> seconds."""
    secs: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for r in inp.report:
        v = _num(r.get("seconds"))
        if v:
            secs[r["notebook"]].append((v, r["student"]))
    rows = []
    for n in sorted(secs):
        vs = sorted(v for v, _ in secs[n])
        slow = max(secs[n])
        rows.append(
            [
                n,
                len(vs),
                statistics.mean(vs),
                statistics.median(vs),
                vs[int(0.9 * (len(vs) - 1))],
                vs[-1],
                slow[1],
                sum(vs),
            ]
        )
    t.add("timing", ["notebook", "runs", "mean_s", "median_s", "p90_s", "max_s", "slowest", "total_s"], rows)
    return {n: [v for v, _ in secs[n]] for n in sorted(secs)}


# ------------------------------------------------------------------------------ similarity
@dataclass
class Pair:
    """Two students whose code in one notebook is alike, with the matching cells to show side by side."""

    a: str
    b: str
    notebook: str
    similarity: float
    tokens: int
    cells: list[tuple[str, str, str]]  # (cell, highlighted code of a, of b), already escaped
    cluster: int = 0


def _fingerprint(filtered: str, offsets, boilerplate: np.ndarray):
    from copydetect.utils import get_document_fingerprints, get_token_coverage

    hashes, idx = get_document_fingerprints(filtered, NOISE_T, GUARANTEE_T - NOISE_T + 1, boilerplate)
    # what copydetect.compare_files reads of a copydetect.CodeFingerprint (built from the text filtered once)
    return SimpleNamespace(
        filtered_code=filtered,
        offsets=offsets,
        hashes=hashes,
        hash_idx=idx,
        k=NOISE_T,
        token_coverage=get_token_coverage(idx, NOISE_T, len(filtered)),
    )


def similarity(
    inp: Inputs, threshold: float = THRESHOLD, common_fraction: float = COMMON_FRACTION, min_tokens: int = MIN_TOKENS
) -> list[Pair]:
    """Pairs of students whose code answers of one notebook are unusually alike (see the module's docstring)."""
    import warnings

    from copydetect import compare_files
    from copydetect.utils import filter_code, hashed_kgrams, highlight_overlap

    pairs: list[Pair] = []
    for nb in sorted(inp.answers):
        students = inp.answers[nb]
        stubs = inp.release.get(nb, {})
        cells = sorted({c for s in students.values() for c in s})
        prints: dict[str, dict[str, SimpleNamespace]] = defaultdict(dict)  # cell -> student -> fingerprint
        for cell in cells:
            stub = stubs.get(cell, "")
            filtered_of: dict[str, tuple[str, object, np.ndarray]] = {}  # source -> (filtered, offsets, kgrams)
            own: dict[str, str] = {}
            for student, answers in students.items():
                src = answers.get(cell, "")
                if not src.strip() or src.strip() == stub.strip():
                    continue  # unchanged stub: nothing of the student's
                if src not in filtered_of:
                    filtered, offsets = filter_code(src, "cell.py", "python")
                    filtered_of[src] = (filtered, offsets, np.unique(hashed_kgrams(filtered, NOISE_T)))
                own[student] = src
            if len(own) < 2:
                continue
            df = Counter()
            for src in own.values():
                df.update(filtered_of[src][2].tolist())
            limit = max(COMMON_MIN, common_fraction * len(own))
            common = [h for h, n in df.items() if n > limit]
            stub_hashes = hashed_kgrams(filter_code(stub, "cell.py", "python")[0], NOISE_T).tolist() if stub else []
            boilerplate = np.unique(np.array(common + stub_hashes, dtype=np.int64))
            fp_of: dict[str, SimpleNamespace] = {}
            for student, src in own.items():
                if src not in fp_of:
                    filtered, offsets, _ = filtered_of[src]
                    fp_of[src] = _fingerprint(filtered, offsets, boilerplate)
                prints[cell][student] = fp_of[src]
        # candidates: students who share fingerprints (an inverted index, as MOSS does), then compared
        shared: Counter = Counter()
        for fps in prints.values():
            index: dict[int, list[str]] = defaultdict(list)
            for student, fp in fps.items():
                for h in fp.hashes:
                    index[h].append(student)
            for who in index.values():
                if len(who) > 1:
                    who.sort()
                    for i, a in enumerate(who):
                        for b in who[i + 1 :]:
                            shared[a, b] += 1
        size = Counter()
        for fps in prints.values():
            for student, fp in fps.items():
                size[student] += len(fp.hashes)
        for (a, b), n in shared.items():
            # too few fingerprints in common to reach the threshold: not worth comparing
            if n < MIN_SHARED or n < 0.5 * threshold * (size[a] + size[b]) / 2:
                continue
            tok_a = tok_b = cov_a = cov_b = 0.0
            shown = []
            for cell, fps in prints.items():
                fa, fb = fps.get(a), fps.get(b)
                cov_a += fa.token_coverage if fa else 0
                cov_b += fb.token_coverage if fb else 0
                if fa is None or fb is None:
                    continue
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    overlap, (_, sim_b), (sa, sb) = compare_files(fa, fb)
                if overlap == 0:
                    continue
                tok_a += float(overlap)
                tok_b += float(sim_b) * fb.token_coverage
                shown.append((cell, sa, sb))
            if not shown or not cov_a or not cov_b:
                continue
            sim = (min(1.0, tok_a / cov_a) + min(1.0, tok_b / cov_b)) / 2
            if sim < threshold or tok_a < min_tokens:
                continue
            cells_html = []
            for cell, sa, sb in shown:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    left = highlight_overlap(inp.answers[nb][a][cell], sa, "<mark>", "</mark>", escape_html=True)[0]
                    right = highlight_overlap(inp.answers[nb][b][cell], sb, "<mark>", "</mark>", escape_html=True)[0]
                cells_html.append((cell, left, right))
            pairs.append(Pair(a, b, nb, sim, int(tok_a), cells_html))
    pairs.sort(key=lambda p: (-p.similarity, -p.tokens, p.notebook, p.a, p.b))
    _clusters(pairs)
    return pairs


def _clusters(pairs: list[Pair]) -> list[list[str]]:
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for p in pairs:
        ra, rb = find(p.a), find(p.b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[str, list[str]] = defaultdict(list)
    for s in parent:
        groups[find(s)].append(s)
    ordered = sorted((sorted(g) for g in groups.values()), key=lambda g: (-len(g), g[0]))
    number = {s: i + 1 for i, g in enumerate(ordered) for s in g}
    for p in pairs:
        p.cluster = number[p.a]
    return ordered


# ------------------------------------------------------------------------------ the page
def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return f'<img alt="" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _figure(w: float, h: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h))
    FigureCanvasAgg(fig)
    return fig


def fig_scores(values: dict[str, list[float]], maxima: dict[str, float]) -> str:
    """A histogram of points per notebook (and the total), as an inline <img> tag; '' if nothing was scored."""
    names = [n for n, v in values.items() if v]
    if not names:
        return ""
    cols = min(3, len(names))
    rows = (len(names) + cols - 1) // cols
    fig = _figure(4.2 * cols, 2.6 * rows)
    for i, n in enumerate(names):
        ax = fig.add_subplot(rows, cols, i + 1)
        bins = _bins(values[n], maxima.get(n, 0.0))
        ax.bar(
            [lo for lo, _, _ in bins],
            [c for _, _, c in bins],
            width=[hi - lo for lo, hi, _ in bins],
            align="edge",
            color="#4c72b0" if n != "total" else "#dd8452",
            edgecolor="white",
        )
        ax.set_title(f"{n} (out of {maxima.get(n, 0):g})", fontsize=10)
        ax.set_xlabel("points", fontsize=8)
        ax.set_ylabel("students", fontsize=8)
        ax.tick_params(labelsize=8)
    fig.tight_layout()
    return _png(fig)


def fig_bars(labels: list[str], values: list[float], xlabel: str, color: str = "#4c72b0") -> str:
    """A horizontal bar chart of `values` by `labels`, as an inline <img> tag; '' if there are no labels."""
    if not labels:
        return ""
    fig = _figure(8, 0.25 * len(labels) + 0.8)
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(len(labels))
    ax.barh(y, values, color=color)
    ax.set_yticks(y, [lab[:60] for lab in labels], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel, fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    return _png(fig)


def fig_timing(secs: dict[str, list[float]]) -> str:
    """Box plots of the seconds per run of each notebook, as an inline <img> tag; '' if there are none."""
    if not secs:
        return ""
    fig = _figure(8, 0.45 * len(secs) + 1)
    ax = fig.add_subplot(1, 1, 1)
    ax.boxplot(list(secs.values()), vert=False)
    ax.set_yticks(range(1, len(secs) + 1), list(secs.keys()))
    ax.set_xlabel("seconds per notebook run", fontsize=8)
    ax.tick_params(labelsize=8)
    fig.tight_layout()
    return _png(fig)


e = html.escape


def _who(names: list[str]) -> str:
    shown = ", ".join(e(n) for n in names[:NAMES_SHOWN])
    return shown + (f" <i>and {len(names) - NAMES_SHOWN} more</i>" if len(names) > NAMES_SHOWN else "")


def _table(header: list[str], rows: list[list], top: int, total: int | None = None, csv_name: str = "") -> str:
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows[:top])
    total = len(rows) if total is None else total
    more = f'<p class="more">{total - top} more in <code>class_report/{e(csv_name)}</code></p>' if total > top else ""
    return f"<table><tr>{head}</tr>{body}</table>{more}"


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1200px;color:#222;
padding:0 1em}h1{font-size:1.6em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}td,th{border:1px solid #ddd;padding:.3em .6em;
vertical-align:top;text-align:left}th{background:#f4f4f4}.more,.note{color:#666;font-size:.9em}
.num{text-align:right}pre{margin:0;white-space:pre-wrap;font-size:.8em;max-width:560px;overflow-x:auto}
mark{background:#ffe08a}.pair{border:1px solid #ccc;margin:1em 0;padding:.5em}.warn{background:#fff4e5;
border-left:4px solid #f0a020;padding:.5em 1em}img{max-width:100%}
"""


def page(
    out: Path,
    inp: Inputs,
    t: Tables,
    values,
    rates,
    named,
    generic,
    status_rows,
    secs,
    pairs: list[Pair] | None,
    top: int,
    seconds: float,
) -> str:
    """The whole class report as one self-contained HTML page, from the tables and figures computed before."""
    maxima = getattr(t, "maxima", {})
    students = sorted({r["student"] for r in inp.report} | {r["student"] for r in inp.summary})
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Class report</title><style>{CSS}</style>"
        f"</head><body><h1>Class report: {len(students)} student(s), {len(inp.notebooks)} notebook(s)</h1>",
        f"<p class='note'>Built from <code>{e(str(out))}</code> on {e(time.strftime('%Y-%m-%d %H:%M'))}. "
        f"Long tables show their first {top} rows; every number is in <code>class_report/*.csv</code>.</p>",
    ]
    # scores
    parts.append("<h2 id='scores'>Scores</h2>")
    parts.append(fig_scores(values, maxima))
    sh, sr = t.tables["scores"]
    parts.append(_table(sh, [[e(r[0]), *(f"<span class='num'>{_fmt(c)}</span>" for c in r[1:])] for r in sr], 99))
    # pass rates
    parts.append(
        "<h2 id='checks'>Pass rate of every test cell</h2><p class='note'>Among the students whose "
        "notebook was run (a missing notebook is counted under Statuses), worst first.</p>"
    )
    parts.append(fig_bars([f"{r[0]} · {r[1]}" for r in rates], [r[4] for r in rates], "fraction passed"))
    parts.append(
        _table(
            ["notebook", "test cell", "judged", "passed", "pass rate"],
            [[e(r[0]), e(r[1]), r[2], r[3], f"{r[4]:.0%}"] for r in rates],
            max(top, 60),
            csv_name="check_pass_rates.csv",
        )
    )
    # misconceptions
    parts.append(
        "<h2 id='misconceptions'>Misconceptions</h2><p class='note'>Failing checks grouped by the "
        "mistake they name (a stable id from the hidden checks), most frequent first. "
        "The message is what those students read in their feedback.</p>"
    )
    if named:
        parts.append(fig_bars([r[0] for r in named[:top]], [r[3] for r in named[:top]], "students", "#c44e52"))
    parts.append(
        _table(
            ["mistake", "where", "students", "message", "who"],
            [
                [f"<code>{e(r[0])}</code>", f"{e(r[1])}<br>{e(r[2])}", f"{r[3]} ({r[4]:.0%})", e(r[5]), _who(r[6])]
                for r in named
            ],
            top,
            csv_name="misconceptions.csv",
        )
        if named
        else "<p>No check failed with a named mistake.</p>"
    )
    if generic:
        parts.append("<h3>Failures that name no mistake</h3>")
        parts.append(
            _table(
                ["kind", "where (most often)", "students", "example message", "who"],
                [
                    [
                        f"<code>{e(r[0])}</code> {e(GENERIC.get(r[0], ''))}",
                        f"{e(r[1])}<br>{e(r[2])}",
                        r[3],
                        e(r[5]),
                        _who(r[6]),
                    ]
                    for r in generic
                ],
                top,
                csv_name="other_failures.csv",
            )
        )
    # statuses
    parts.append("<h2 id='statuses'>Statuses</h2>")
    parts.append(
        _table(["status", "notebooks", "students", "who"], [[e(r[0]), r[1], r[2], _who(r[3])] for r in status_rows], 99)
        if status_rows
        else "<p>Every notebook was graded normally (ok).</p>"
    )
    if status_rows:
        parts.append(
            "<p class='note'>What happened to each: <code>report.csv</code> (detail) and "
            "<code>class_report/status_students.csv</code>.</p>"
        )
    # timing
    parts.append("<h2 id='timing'>Grading time per notebook</h2>")
    if secs:
        parts.append(fig_timing(secs))
        th, tr = t.tables["timing"]
        parts.append(_table(th, [[e(r[0]), r[1], *(_fmt(c) for c in r[2:6]), e(r[6]), _fmt(r[7])] for r in tr], 99))
    else:
        parts.append("<p>No times recorded (no <code>timing.csv</code>, or nothing was run).</p>")
    # similarity
    parts.append(
        "<h2 id='similarity'>Similar code (for the instructor only)</h2><div class='warn'>Pairs of "
        "students whose code answers of a notebook are unusually alike, after discounting the released "
        "stubs and the code more than "
        f"{COMMON_FRACTION:.0%} of the class shares (copydetect's winnowing fingerprints; names, strings "
        "and comments do not count). A reason to look at both submissions, not evidence: it changes no "
        "grade and is never shown to students.</div>"
    )
    if pairs is None:
        parts.append("<p>Not computed (--no-similarity).</p>")
    elif not pairs:
        parts.append(f"<p>No pair above {THRESHOLD:.0%} similarity.</p>")
    else:
        clusters = defaultdict(set)
        for p in pairs:
            clusters[p.cluster].update((p.a, p.b))
        big = [(c, sorted(s)) for c, s in sorted(clusters.items()) if len(s) > 2]
        if big:
            parts.append("<h3>Clusters of more than two students</h3>")
            parts.append(
                _table(
                    ["cluster", "students", "who"],
                    [[c, len(s), _who(s)] for c, s in big],
                    top,
                    csv_name="similar_clusters.csv",
                )
            )
        parts.append(
            _table(
                ["similarity", "notebook", "students", "matched", "cluster"],
                [[f"{p.similarity:.0%}", e(p.notebook), f"{e(p.a)} · {e(p.b)}", p.tokens, p.cluster] for p in pairs],
                top,
                csv_name="similar_pairs.csv",
            )
        )
        for p in pairs[:top]:
            parts.append(
                f"<div class='pair'><b>{e(p.a)}</b> and <b>{e(p.b)}</b>, {e(p.notebook)}: "
                f"{p.similarity:.0%} alike<table><tr><th>cell</th><th>{e(p.a)}</th><th>{e(p.b)}</th></tr>"
            )
            for cell, left, right in p.cells:
                parts.append(f"<tr><td>{e(cell)}</td><td><pre>{left}</pre></td><td><pre>{right}</pre></td></tr>")
            parts.append("</table></div>")
    parts.append(f"<p class='note'>Built in {seconds:.1f} s.</p></body></html>")
    return "".join(parts)


# ------------------------------------------------------------------------------ main
def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows([[_fmt(c) if isinstance(c, float) else c for c in r] for r in rows])
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(buf.getvalue())
    tmp.replace(path)


def build(out: Path, top: int = TOP, similar: bool = True) -> Path:
    """Write OUT/class_report.html and OUT/class_report/*.csv from OUT's CSVs and notebooks; returns the page."""
    t0 = time.monotonic()
    out = Path(out)
    if not (out / "report.csv").is_file() and not (out / "checks.csv").is_file():
        raise FileNotFoundError(f"{out} has no report.csv or checks.csv: is it the --out folder of a grading run?")
    inp = read(out, similarity=similar)
    t = Tables()
    values = scores(inp, t)
    rates = pass_rates(inp, t)
    named, generic = misconceptions(inp, t)
    status_rows = statuses(inp, t)
    secs = timing(inp, t)
    pairs = similarity(inp) if similar else None
    if pairs is not None:
        t.add(
            "similar_pairs",
            ["student_a", "student_b", "notebook", "similarity", "matched_tokens", "cells", "cluster"],
            [
                [p.a, p.b, p.notebook, round(p.similarity, 3), p.tokens, ";".join(c for c, _, _ in p.cells), p.cluster]
                for p in pairs
            ],
        )
        members = defaultdict(set)
        notebooks = defaultdict(set)
        for p in pairs:
            members[p.cluster].update((p.a, p.b))
            notebooks[p.cluster].add(p.notebook)
        t.add(
            "similar_clusters",
            ["cluster", "students", "notebooks", "who"],
            [
                [c, len(members[c]), ";".join(sorted(notebooks[c])), ";".join(sorted(members[c]))]
                for c in sorted(members)
            ],
        )
    folder = out / "class_report"
    folder.mkdir(parents=True, exist_ok=True)
    for name, (header, rows) in t.tables.items():
        _write_csv(folder / f"{name}.csv", header, rows)
    text = page(out, inp, t, values, rates, named, generic, status_rows, secs, pairs, top, time.monotonic() - t0)
    path = out / "class_report.html"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
