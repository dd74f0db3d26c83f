"""The notebooks as files: nbgrader metadata, points, a fresh and leak-free student release.

Running them is nbval's job (`make test` runs every source and student notebook with
--nbval-lax in fast mode); grading them is tests/test_autograder_*.py's.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from autograder.config import ASSIGNMENTS, REPO, SOLUTIONS
from autograder.release import release

SOURCES = sorted(SOLUTIONS.glob("*.ipynb"))
NAMES = [p.name for p in SOURCES]
MARKER = re.compile(r"### (BEGIN|END) (SOLUTION|HIDDEN TESTS)")


def cells(path: Path):
    return nbformat.read(path, as_version=4).cells


def regions(source: str, begin: str, end: str) -> list[str]:
    """Lines between begin/end markers."""
    out, inside = [], False
    for line in source.splitlines():
        if begin in line:
            inside = True
        elif end in line:
            inside = False
        elif inside:
            out.append(line)
    return out


def secret_lines(path: Path) -> set[str]:
    """Lines of solutions and hidden tests that appear nowhere else in the source notebook."""
    secrets, public = set(), set()
    for cell in cells(path):
        lines = regions(cell.source, "### BEGIN SOLUTION", "### END SOLUTION")
        lines += regions(cell.source, "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")
        hidden = {line.strip() for line in lines}
        secrets |= hidden
        public |= {line.strip() for line in cell.source.splitlines()} - hidden
    return {line for line in secrets - public if len(line) >= 20}


def test_course_has_the_four_notebooks():
    assert NAMES[:4] == ["01_autoencoder.ipynb", "02_vae.ipynb", "03_beta.ipynb", "04_interpolation.ipynb"]
    assert sorted(p.name for p in ASSIGNMENTS.glob("*.ipynb")) == NAMES


@pytest.mark.parametrize("path", SOURCES, ids=NAMES)
def test_nbgrader_metadata(path):
    ids, total = set(), 0
    for cell in cells(path):
        meta = cell.metadata.get("nbgrader")
        if not meta:
            assert not MARKER.search(cell.source), f"cell with markers but no nbgrader metadata:\n{cell.source[:200]}"
            continue
        assert meta["schema_version"] == 3
        assert meta["grade_id"] not in ids, f"duplicate grade_id {meta['grade_id']}"
        ids.add(meta["grade_id"])
        if meta["grade"]:
            assert meta.get("points", 0) > 0, f"{meta['grade_id']} is graded but has no points"
            total += meta["points"]
        if meta["grade"] and not meta["solution"]:  # autograder tests
            assert meta["locked"], f"test cell {meta['grade_id']} must be locked"
            assert '"""' in cell.source.splitlines()[0], (
                f"test cell {meta['grade_id']} should start with a one-line docstring"
            )
        if meta["solution"] and cell.cell_type == "code":
            assert "### BEGIN SOLUTION" in cell.source, f"{meta['grade_id']}: solution cell without a solution region"
    # the points in the notebook's own table match its cells
    header = cells(path)[0].source
    stated = re.search(r"\*\*total\*\* \| \*\*(\d+)\*\*", header)
    assert stated and int(stated.group(1)) == total, (
        f"{path.name}: table says {stated and stated.group(1)}, cells give {total}"
    )


def test_points_cover_the_original_problem():
    points = {}
    for path in SOURCES:
        for cell in cells(path):
            meta = cell.metadata.get("nbgrader", {})
            if meta.get("grade"):
                points[meta["grade_id"]] = meta["points"]
    assert sum(points.values()) >= 45
    ae_arch = points["test_ae_encoder"] + points["test_ae_decoder"] + points["test_ae_architecture"]
    assert ae_arch >= 6 and points["test_ae_forward"] >= 1
    assert points["test_ae_loss"] + points["test_ae_training"] >= 6
    assert points["test_ae_sampling"] >= 2 and points["answer_ae_samples"] >= 2
    vae_model = sum(
        points[k]
        for k in (
            "test_reparameterize_gradients",
            "test_reparameterize_statistics",
            "test_kl_values",
            "test_kl_gradients",
            "test_vae_model",
        )
    )
    assert vae_model >= 7 and points["test_vae_loss"] + points["test_train_vae"] >= 4
    assert points["answer_beta0"] >= 3 and points["answer_beta10"] >= 3 and points["answer_good_result"] >= 3
    assert points["test_evaluate_vae"] + points["test_count_active_units"] + points["answer_best_beta"] >= 5
    assert points["test_interpolate"] >= 3


def test_release_is_up_to_date(tmp_path):
    """assignments/ is exactly what `python -m autograder release` makes from solutions/."""
    fresh = release(out=tmp_path)
    assert [p.name for p in fresh] == NAMES
    for path in fresh:
        committed = ASSIGNMENTS / path.name
        assert json.loads(committed.read_text()) == json.loads(path.read_text()), (
            f"{committed} is stale: run `make release` (python -m autograder release) and commit assignments/"
        )


@pytest.mark.parametrize("path", SOURCES, ids=NAMES)
def test_release_has_no_solutions_hidden_tests_or_rubrics(path):
    student = (ASSIGNMENTS / path.name).read_text()
    assert not MARKER.search(student)
    assert "Rubric" not in student and "Model answer" not in student
    assert "autograder" not in student, "the student version must not mention the hidden checks"
    leaked = [line for line in secret_lines(path) if line in student]
    assert not leaked, f"solution or hidden-test lines in the student version: {leaked[:3]}"
    stubs = student.count("raise NotImplementedError()")
    assert stubs >= sum(1 for c in cells(path) if "### BEGIN SOLUTION" in c.source and c.cell_type == "code")


def test_release_uses_the_course_settings():
    from autograder.config import load_course

    course = load_course()
    for path in ASSIGNMENTS.glob("*.ipynb"):
        text = path.read_text()
        assert "{{COURSE" not in text
        assert (
            f"colab.research.google.com/github/{course.github_repo}/blob/{course.ref}/assignments/{path.name}" in text
        )
        assert course.pip_spec in text


def test_student_cells_that_need_stubs_are_tagged_for_nbval():
    nb = nbformat.read(ASSIGNMENTS / "01_autoencoder.ipynb", as_version=4)
    by_id = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in nb.cells}
    assert "raises-exception" in by_id["test_ae_encoder"].metadata.get("tags", [])
    assert "raises-exception" not in by_id["data"].metadata.get("tags", [])
    uses_model = [c for c in nb.cells if c.cell_type == "code" and "train_autoencoder(ae" in c.source]
    assert uses_model and all("raises-exception" in c.metadata.get("tags", []) for c in uses_model)


def test_installed_vaekit_holds_no_solution_or_hidden_check(tmp_path):
    """The wheel students install from git: vaekit only, no autograder, no solution line."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("vaekit-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        code = "\n".join(zf.read(n).decode() for n in names if n.endswith(".py"))
    assert all(n.startswith(("vaekit/", "vaekit-")) for n in names), names
    secrets = set().union(*(secret_lines(p) for p in SOURCES))
    assert not [line for line in secrets if line in code]
    assert "autograder" not in code


# Mistakes printed in well-known VAE write-ups. The course may name them to warn against
# them (in a sentence with one of WARNINGS), never state them as what to do.
MISTAKES = {
    "σ² instead of σ in the sample": re.compile(
        r"(logvar\.exp\(\)|(torch\.)?exp\(logvar\))\s*\*\s*(eps|torch\.randn)"
        r"|\\sigma\^2\s*(\\odot|\\cdot)?\s*\\epsilon|σ²\s*[·*⊙]?\s*ε"
    ),
    "exp(σ²) in the KL": re.compile(r"\\exp\s*\(\s*\\sigma\^2|exp\(σ²\)|logvar\.exp\(\)\.exp\(\)"),
    "recon − β·KL as the loss": re.compile(r"recon\w*\s*[-−]\s*(\\beta|β|beta)"),
}
WARNINGS = ("write-up", "beware", "mistake", "wrong", "in place of", "instead of", "would *reward*")


def published_mistakes(text: str) -> list[str]:
    """Each mistake in `text`, with its sentence, unless that sentence warns against it."""
    found = []
    for what, pattern in MISTAKES.items():
        for match in pattern.finditer(text):
            start = max(text.rfind(". ", 0, match.start()), text.rfind("\n", 0, match.start())) + 1
            end = min(i for i in (text.find(". ", match.end()), text.find("\n", match.end()), len(text)) if i >= 0)
            sentence = text[start:end].strip()
            if not any(word in sentence.lower() for word in WARNINGS):
                found.append(f"{what}: {sentence}")
    return found


@pytest.mark.parametrize(
    "text",
    [
        "z = mu + logvar.exp() * eps",
        "z = mu + torch.exp(logvar) * torch.randn_like(mu)",
        r"$z = \mu + \sigma^2 \odot \epsilon$",
        "Sample z = μ + σ²·ε.",
        r"KL $= -\tfrac12 \sum (1 + \log\sigma^2 - \mu^2 - \exp(\sigma^2))$",
        "loss = recon_loss - beta * kl",
        "Minimise recon − β·KL.",
    ],
)
def test_the_mistake_detector_sees_each_mistake(text):
    assert published_mistakes(text)


@pytest.mark.parametrize(
    "text",
    [
        "z = mu + torch.exp(0.5 * logvar) * eps",
        r"$z = \mu + \sigma \odot \epsilon$ with $\sigma = \exp(\tfrac12 \log\sigma^2)$",
        "loss = recon + beta * kl",
        "KL = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())",
        "(Some write-ups print `recon − β·KL`; that would *reward* a large KL.)",
        r"(Beware write-ups with $\exp(\sigma^2)$ in place of $\sigma^2$.)",
    ],
)
def test_the_mistake_detector_lets_correct_formulas_and_warnings_pass(text):
    assert published_mistakes(text) == []


@pytest.mark.parametrize(
    "path", [*SOURCES, *sorted(ASSIGNMENTS.glob("*.ipynb")), REPO / "README.md"], ids=lambda p: p.name
)
def test_teaching_text_states_no_published_mistake(path):
    """Markdown and code, solutions and student versions, and the README: σ, not σ², in the
    sample; σ² = exp(logvar), not exp(σ²), in the KL; recon + β·KL as the loss."""
    texts = [path.read_text()] if path.suffix == ".md" else [cell.source for cell in cells(path)]
    found = [mistake for text in texts for mistake in published_mistakes(text)]
    assert not found, f"{path.name}: " + "; ".join(found)
