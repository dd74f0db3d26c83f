"""What vaekit is: the API the README lists and a version; what it must not hold: the autograder, graded code."""

from __future__ import annotations

import ast
import importlib.metadata
import re
from pathlib import Path

import pytest

import vaekit

VAEKIT_DIR = Path(vaekit.__file__).resolve().parent
SOURCES = sorted(VAEKIT_DIR.glob("*.py"))
GRADED_NAMES = {"reparameterize", "kl_divergence", "vae_loss", "interpolate", "VAE", "Autoencoder"}


def autograder_imports(source: str) -> list[str]:
    """Every way a module can pull in `autograder`: import statements and dynamic imports."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == "autograder"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "autograder":
            found.append(node.module)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            arg = node.args[0].value
            func = ast.unparse(node.func)
            if func in ("__import__", "importlib.import_module", "import_module") and str(arg).startswith("autograder"):
                found.append(arg)
    return found


def graded_definitions(source: str) -> list[str]:
    """Functions, classes and assigned names anywhere in `source` that students must write."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names = [node.name]
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [(a.asname or a.name).split(".")[0] for a in node.names]
        else:
            continue
        found += [n for n in names if n in GRADED_NAMES]
    return found


def test_all_vaekit_modules_are_scanned():
    names = {p.stem for p in SOURCES}
    assert {
        "__init__",
        "data",
        "batches",
        "budget",
        "checks",
        "checkpoints",
        "coursework",
        "env",
        "plots",
        "progress",
    } <= names


@pytest.mark.parametrize(
    "snippet",
    [
        "import autograder",
        "import autograder.checks as c",
        "from autograder.checks.vae import reference",
        "def f():\n    from autograder import config\n",
        "import importlib\nimportlib.import_module('autograder.checks')",
        "__import__('autograder')",
    ],
)
def test_the_import_detector_sees_autograder(snippet):
    assert autograder_imports(snippet)


def test_the_import_detector_ignores_other_modules():
    assert autograder_imports("import autograding\nfrom vaekit import data\n# autograder\n") == []


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_vaekit_never_imports_the_autograder(path):
    source = path.read_text()
    assert autograder_imports(source) == [], f"{path.name} imports the autograder"
    for number, line in enumerate(source.splitlines(), 1):
        code = line.split("#")[0].strip()
        assert not code.startswith(("import autograder", "from autograder")), f"{path.name}:{number}: {line}"


@pytest.mark.parametrize(
    "snippet, name",
    [
        ("def reparameterize(mu, logvar):\n    pass", "reparameterize"),
        ("class VAE:\n    pass", "VAE"),
        ("class Box:\n    def kl_divergence(self):\n        pass", "kl_divergence"),
        ("vae_loss = lambda *a: 0", "vae_loss"),
        ("from torch.nn.functional import interpolate", "interpolate"),
        ("Autoencoder: type = object", "Autoencoder"),
    ],
)
def test_the_definition_detector_sees_graded_names(snippet, name):
    assert graded_definitions(snippet) == [name]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_vaekit_defines_nothing_that_is_graded(path):
    assert graded_definitions(path.read_text()) == [], f"{path.name} defines graded code"


def test_vaekit_namespace_has_nothing_that_is_graded():
    import importlib

    for path in SOURCES:
        module = importlib.import_module("vaekit" if path.stem == "__init__" else f"vaekit.{path.stem}")
        assert GRADED_NAMES.isdisjoint(vars(module)), f"{module.__name__} exposes {GRADED_NAMES & set(vars(module))}"


def readme_api() -> set[str]:
    """The function names in the first column of README.md's "vaekit" table."""
    readme = (VAEKIT_DIR.parent / "README.md").read_text()
    section = readme.split("\n## vaekit\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([a-z_]+)", row)}


def test_the_public_api_is_what_the_readme_lists():
    assert sorted(vaekit.__all__) == sorted(readme_api())
    assert len(set(vaekit.__all__)) == len(vaekit.__all__)
    public = {name for name in vars(vaekit) if not name.startswith("_")}
    # submodules are attributes of the package too; `batches` is both and must be the function
    modules = {p.stem for p in SOURCES}
    assert public - modules == set(vaekit.__all__) - modules
    assert callable(vaekit.batches) and vaekit.batches.__module__ == "vaekit.batches"


def test_version_comes_from_the_installed_metadata():
    assert vaekit.__version__ == importlib.metadata.version("vaekit")


def test_version_of_a_source_checkout_comes_from_pyproject(monkeypatch):
    def not_installed(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(vaekit, "_metadata_version", not_installed)
    pyproject = (VAEKIT_DIR.parent / "pyproject.toml").read_text()
    assert vaekit._version() == re.search(r'^version = "([^"]+)"', pyproject, re.M).group(1)
