"""The parts modules that later notebooks import (`vaekit.import_parts`): built from the solutions
(`build_parts`), and, when grading, from each student's own submission (`student_parts`)."""

from __future__ import annotations

import importlib.util
import inspect

import corpus
import nbformat
import pytest
import torch

from autograder import samples
from autograder.config import SOLUTIONS
from autograder.parts import build_parts, parts_source, student_parts

AE, VAE = corpus.AE, "02_vae"


def _load(path):
    spec = importlib.util.spec_from_file_location(f"parts_{path.parent.name}_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("parts")
    return {p.stem: p for p in build_parts(folder)}


@pytest.fixture(scope="module")
def release():
    release_dir, source_dir = corpus.release_dirs()
    names = corpus.notebook_names(release_dir)
    releases = {n: nbformat.read(release_dir / f"{n}.ipynb", as_version=4) for n in names}
    sources = {n: nbformat.read(source_dir / f"{n}.ipynb", as_version=4) for n in names}
    return releases, sources


def test_one_module_per_solution_notebook(parts):
    assert sorted(parts) == sorted(p.stem for p in SOLUTIONS.glob("*.ipynb"))


def test_modules_import_and_hold_no_markers_or_tests(parts):
    for path in parts.values():
        text = path.read_text()
        for marker in ("### BEGIN SOLUTION", "### END SOLUTION", "BEGIN HIDDEN TESTS", "hidden."):
            assert marker not in text, (path.name, marker)
        _load(path)


def test_autoencoder_parts_define_the_graded_functions(parts):
    m = _load(parts[AE])
    assert inspect.isclass(m.Autoencoder) and issubclass(m.Autoencoder, torch.nn.Module)
    for name in ("ae_loss", "train_autoencoder", "sample_autoencoder"):
        assert callable(getattr(m, name))
    torch.manual_seed(0)
    model = m.Autoencoder(latent_dim=8)
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 1, 28, 28)


def test_vae_parts_define_the_graded_functions(parts):
    m = _load(parts[VAE])
    assert inspect.isclass(m.VAE) and issubclass(m.VAE, torch.nn.Module)
    for name in ("reparameterize", "kl_divergence", "vae_loss", "train_vae"):
        assert callable(getattr(m, name))
    torch.manual_seed(0)
    logits, mu, logvar = m.VAE(latent_dim=4)(torch.rand(3, 1, 28, 28))
    assert logits.shape == (3, 1, 28, 28) and mu.shape == logvar.shape == (3, 4)


def test_only_answer_cells_are_taken(release):
    releases, sources = release
    nb = samples.full(releases[AE], sources[AE])
    m_text = parts_source(nb, AE)
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and not meta.get("solution") and cell.source.strip():
            assert cell.source.strip() not in m_text, cell.source[:60]


def test_student_parts_are_the_students_own_functions(release, tmp_path):
    releases, sources = release
    full = samples.full(releases[VAE], sources[VAE])
    variant = "kl_wrong_sign"
    mine = samples.buggy(full, VAE, variant)
    fallback = student_parts(tmp_path, {VAE: mine, AE: samples.full(releases[AE], sources[AE])}, releases)
    assert VAE not in fallback and AE not in fallback
    assert sorted(fallback) == sorted(n for n in releases if n not in (AE, VAE))
    m = _load(tmp_path / f"{VAE}.py")
    mu, logvar = torch.zeros(2, 3), torch.zeros(2, 3)
    mu[0, 0] = 1.0
    kl = m.kl_divergence(mu, logvar)
    assert kl[0] < 0, "the student's own (wrong-signed) KL, not the solution's"
    torch.manual_seed(0)
    assert m.VAE(latent_dim=4)(torch.rand(1, 1, 28, 28))[0].shape == (1, 1, 28, 28)
    assert _load(tmp_path / f"{AE}.py").ae_loss(torch.zeros(1, 4), torch.zeros(1, 4)).ndim == 0


def test_a_missing_notebook_falls_back_to_the_release_stubs(release, tmp_path):
    releases, _ = release
    fallback = student_parts(tmp_path, {AE: None}, releases)
    assert sorted(fallback) == sorted(releases)
    text = (tmp_path / f"{AE}.py").read_text()
    assert text.splitlines()[0] == f"# fallback: no submission of {AE}.ipynb, these are the release's stubs"
    m = _load(tmp_path / f"{AE}.py")
    with pytest.raises(NotImplementedError):
        m.ae_loss(torch.zeros(1, 4), torch.zeros(1, 4))
    submitted = tmp_path / "other"
    student_parts(submitted, {AE: releases[AE]}, releases)
    assert not (submitted / f"{AE}.py").read_text().startswith("# fallback"), "a submitted stub is not a fallback"
