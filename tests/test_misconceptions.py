"""Stable misconception ids: every named mistake of the hidden checks carries one, and the known bugs
(autograder.samples.BUGS and the bugs of tests/test_hidden_checks*.py) fail with their own id.

The class report groups students by these ids, so they must not depend on a message's wording.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import nbformat
import pytest
import torch

from autograder import samples
from autograder.checks import Mistake, aevb, require, vae
from autograder.config import SOLUTIONS
from autograder.judge import hidden_calls
from autograder.parts import build_parts

CHECKS = Path(__file__).resolve().parent.parent / "autograder" / "checks"
ID = re.compile(r"^[a-z0-9_]+\.[a-z0-9_]+$")


def _sites():
    """Every require(...), _require(...) and raise of an AssertionError/Mistake in autograder/checks."""
    for path in sorted(CHECKS.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name in ("require", "_require"):
                continue
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("require", "_require", "Mistake", "AssertionError")
            ):
                if path.name == "__init__.py" and node.func.id == "Mistake":
                    continue  # require's own raise
                if (
                    path.name == "aevb.py"
                    and node.func.id == "Mistake"
                    and any(isinstance(k.value, ast.BoolOp) for k in node.keywords)
                ):
                    continue  # _require's own raise (the diagnosed id, or its caller's)
                yield path.name, node


def test_every_mistake_message_has_an_id():
    found = 0
    for name, node in _sites():
        assert node.func.id != "AssertionError", f"{name}:{node.lineno}: raise Mistake(..., misconception=...)"
        kw = {k.arg: k.value for k in node.keywords}
        assert "misconception" in kw, f"{name}:{node.lineno}: no misconception id"
        value = kw["misconception"]
        if isinstance(value, ast.Constant):
            assert ID.match(value.value), f"{name}:{node.lineno}: {value.value!r} is not module.mistake"
        found += 1
    for name, node in _tables():
        found += 1
        assert isinstance(node, ast.Constant) and ID.match(node.value), f"{name}:{node.lineno}: not module.mistake"
    assert found > 100


def _tables():
    """The ids of the mistakes written as data: refuse(value, [(wrong, message, id), …]), require_logits(out, id)."""
    for path in sorted(CHECKS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            if node.func.id == "refuse":
                for entry in node.args[1].elts:
                    assert len(entry.elts) == 3, f"{path.name}:{entry.lineno}: (wrong, message, misconception)"
                    yield path.name, entry.elts[2]
            elif node.func.id == "require_logits":
                yield path.name, node.args[1]


def test_require_raises_an_assertion_error_with_the_id():
    with pytest.raises(AssertionError, match="the message") as info:
        require(False, "the message", misconception="kl.no_half")
    assert isinstance(info.value, Mistake) and info.value.misconception == "kl.no_half"
    require(True, "never", misconception="x.y")
    import pickle

    again = pickle.loads(pickle.dumps(info.value))
    assert str(again) == "the message" and again.misconception == "kl.no_half"


def _id(check, *args):
    with pytest.raises(AssertionError) as info:
        check(*args)
    return getattr(info.value, "misconception", None), str(info.value)


# --- the bugs of samples.BUGS, run in-process as the judge would: the test cell's hidden calls ------------

EXPECTED = {
    ("01_autoencoder", "ae_loss_mean"): "ae_loss.pixel_mean",
    ("01_autoencoder", "sample_no_sigmoid"): "sample_ae.no_sigmoid",
    ("01_autoencoder", "train_no_step"): "train_ae.no_step",
    ("02_vae", "reparam_sigma2"): "reparameterize.sigma_squared",
    ("02_vae", "reparam_shared_eps"): "reparameterize.shared_eps",
    ("02_vae", "reparam_no_grad"): "reparameterize.no_path_to_params",
    ("02_vae", "kl_wrong_sign"): "kl.wrong_sign",
    ("02_vae", "kl_no_half"): "kl.no_half",
    ("02_vae", "kl_mean_latent"): "kl.mean_over_latent",
    ("02_vae", "loss_minus_kl"): "vae_loss.minus_kl",
    ("02_vae", "loss_pixel_mean"): "vae_loss.pixel_mean",
}


def test_every_sample_bug_has_an_expected_id():
    assert set(EXPECTED) == {(n, v) for n, variants in samples.BUGS.items() for v in variants}


@pytest.fixture(scope="module")
def solution_modules(tmp_path_factory):
    out = tmp_path_factory.mktemp("parts")
    modules = {}
    for path in build_parts(out):
        spec = importlib.util.spec_from_file_location(f"misc_solution_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        modules[path.stem] = module
    return modules


@pytest.mark.parametrize("notebook, variant", sorted(EXPECTED), ids=[v for _, v in sorted(EXPECTED)])
def test_sample_bug_fails_with_its_id(solution_modules, notebook, variant):
    _, _, code, failing = samples.BUGS[notebook][variant]
    ns = dict(vars(solution_modules[notebook]))
    exec(compile(code, f"<{variant}>", "exec"), ns)  # the buggy function replaces the solution's
    source = nbformat.read(SOLUTIONS / f"{notebook}.ipynb", as_version=4)
    cells = {
        c.metadata["nbgrader"]["grade_id"]: c.source
        for c in source.cells
        if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")
    }
    for cell in failing:
        ids = []
        for call in hidden_calls(cells[cell]):
            fn = getattr(importlib.import_module(call.module), call.function)
            torch.manual_seed(0)
            try:
                fn(*(ns if a is None else ns[a] for a in call.args))
            except AssertionError as exc:
                ids.append(getattr(exc, "misconception", None))
                break
        assert ids == [EXPECTED[notebook, variant]], (cell, ids)


# --- a handful of the bugs of tests/test_hidden_checks*.py, called directly -----------------------------


def test_reparameterize_bugs_have_their_ids():
    cases = [
        (lambda mu, lv: mu + lv.exp() * torch.randn_like(mu), "reparameterize.sigma_squared"),
        (lambda mu, lv: mu + lv * torch.randn_like(mu), "reparameterize.logvar_as_sigma"),
        (lambda mu, lv: mu + torch.exp(0.5 * lv) * torch.randn(mu.shape[0], 1), "reparameterize.eps_per_row"),
        (lambda mu, lv: mu + torch.exp(0.5 * lv) * torch.rand_like(mu), "reparameterize.wrong_spread"),
        (lambda mu, lv: mu + 0 * lv, "reparameterize.no_noise"),
    ]
    for fn, expected in cases:
        got, message = _id(vae.check_reparameterize_statistics, fn)
        assert got == expected, message
    got, _ = _id(vae.check_reparameterize_gradients, lambda mu, lv: torch.normal(mu, torch.exp(0.5 * lv)))
    assert got == "reparameterize.no_gradient"


def test_kl_and_loss_bugs_have_their_ids():
    import torch.nn.functional as F

    from autograder.checks import reference

    def kl_batch_sum(mu, logvar):
        return reference.kl_divergence(mu, logvar).sum()

    def kl_no_minus_one(mu, logvar):
        return -0.5 * torch.sum(logvar - mu.pow(2) - logvar.exp(), dim=1)

    def loss_beta_on_recon(x, logits, mu, logvar, beta=1.0):
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / x.shape[0]
        kl = reference.kl_divergence(mu, logvar).mean()
        return beta * recon + kl, recon, kl

    assert _id(vae.check_kl_values, kl_batch_sum)[0] == "kl.shape"
    assert _id(vae.check_kl_values, kl_no_minus_one)[0] == "kl.constant_term"
    assert _id(vae.check_vae_loss, loss_beta_on_recon, {})[0] == "vae_loss.beta_on_recon"


def test_aevb_diagnosed_mistakes_have_their_ids():
    import math

    def no_prior(model, x, num_samples):
        mu, logvar = model.encode(x)
        q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
        z = q.rsample((num_samples,))  # (K, B, D)
        log_px_z = model.log_px_given_z(x, z)
        return torch.logsumexp(log_px_z - q.log_prob(z).sum(-1), 0) - math.log(num_samples)

    torch.manual_seed(0)
    got, message = _id(aevb.check_exact, no_prior)
    assert got == "loglik.no_prior", message
