"""The visible check cells catch the pitfalls the notebooks' text warns about.

Each test runs the visible part of a check cell (everything before `### BEGIN HIDDEN
TESTS`, taken from solutions/, so it follows the notebooks) once with the solution's
function, which must pass, and once with the mistake the text names, which must fail
with a message that explains it and shows no reference value.
"""

from __future__ import annotations

import importlib.util
import math
import re

import nbformat
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from corpus import evaluate_mean_of_batch_means

import vaekit
from autograder.checks import reference
from autograder.config import SOLUTIONS
from autograder.parts import build_parts


@pytest.fixture(scope="module")
def sol(tmp_path_factory):
    out = tmp_path_factory.mktemp("parts")
    modules = {}
    for path in build_parts(out):
        spec = importlib.util.spec_from_file_location(f"visible_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        modules[path.stem] = module
    return modules


def visible(notebook: str, grade_id: str) -> str:
    nb = nbformat.read(SOLUTIONS / f"{notebook}.ipynb", as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)
    return cell.source.split("### BEGIN HIDDEN TESTS")[0]


def run_check(notebook: str, grade_id: str, **names) -> None:
    """Run the visible check as the notebook would, with `names` bound in its namespace."""
    ns = {
        "torch": torch,
        "nn": nn,
        "F": F,
        "math": math,
        "vaekit": vaekit,
        "device": torch.device("cpu"),
        "val_x": torch.rand(300, 1, 28, 28),
        **names,
    }
    exec(compile(visible(notebook, grade_id), f"<{grade_id}>", "exec"), ns)


def fails(notebook: str, grade_id: str, words: str, **names) -> str:
    with pytest.raises(AssertionError) as info:
        run_check(notebook, grade_id, **names)
    msg = str(info.value)
    assert re.search(words, msg), msg
    return msg


# --- notebook 1 -----------------------------------------------------------------------


def sample_uniform_codes(model, num_samples, latent_dim=64):
    model.eval()
    with torch.no_grad():
        return torch.sigmoid(model.decode(torch.rand(num_samples, latent_dim)))


def test_sampling_check_catches_uniform_codes(sol):
    run_check("01_autoencoder", "test_ae_sampling", sample_autoencoder=sol["01_autoencoder"].sample_autoencoder)
    fails("01_autoencoder", "test_ae_sampling", "torch.randn", sample_autoencoder=sample_uniform_codes)


def test_architecture_check_catches_an_unused_layer(sol):
    Autoencoder = sol["01_autoencoder"].Autoencoder
    run_check("01_autoencoder", "test_ae_architecture", Autoencoder=Autoencoder)

    class Unused(Autoencoder):
        def __init__(self, latent_dim: int = 64):
            super().__init__(latent_dim)
            self.spare = nn.Linear(4, 4)

    fails("01_autoencoder", "test_ae_architecture", "no gradient reaches spare", Autoencoder=Unused)


# --- notebook 2 -----------------------------------------------------------------------


def reparam_sigma_squared(mu, logvar):
    return mu + torch.exp(logvar) * torch.randn_like(mu)


def reparam_shared_eps(mu, logvar):
    return mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape[0], 1)


def test_statistics_check_catches_sigma_squared(sol):
    run_check("02_vae", "test_reparameterize_statistics", reparameterize=sol["02_vae"].reparameterize)
    msg = fails(
        "02_vae", "test_reparameterize_statistics", "not σ² = exp\\(logvar\\)", reparameterize=reparam_sigma_squared
    )
    assert "2.00" not in msg  # the spread the student got is shown, never the expected one


def test_statistics_check_catches_one_eps_per_row():
    fails(
        "02_vae",
        "test_reparameterize_statistics",
        "fresh ε for every row and every latent dimension",
        reparameterize=reparam_shared_eps,
    )


def kl_mean_over_dims(mu, logvar):
    return -0.5 * torch.mean(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)


def test_kl_check_catches_a_mean_over_latent_dimensions(sol):
    run_check("02_vae", "test_kl_values", kl_divergence=sol["02_vae"].kl_divergence)
    fails("02_vae", "test_kl_values", "sum over the latent dimensions", kl_divergence=kl_mean_over_dims)


# --- notebook 3 -----------------------------------------------------------------------


def evaluate_with_encode_and_decode(model, x, beta=1.0, batch_size=500):
    """Correct, written differently: encode, sample, decode, and sum per-image values."""
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64)
    with torch.no_grad():
        for b in x.split(batch_size):
            mu, logvar = model.encode(b)
            logits = model.decode(mu + torch.exp(0.5 * logvar) * torch.randn_like(mu))
            loss, recon, kl = reference.vae_loss(b, logits, mu, logvar, beta)
            sums += torch.tensor([loss.item(), recon.item(), kl.item()], dtype=torch.float64) * len(b)
    return dict(zip(("loss", "recon", "kl"), (sums / len(x)).tolist(), strict=True))


def test_evaluate_check_catches_a_plain_average_of_batch_means(sol):
    m3 = sol["03_beta"]
    vars(m3).setdefault("vae_loss", sol["02_vae"].vae_loss)  # the notebook imports it from notebook 2's parts
    names = {"VAE": sol["02_vae"].VAE}
    run_check("03_beta", "test_evaluate_vae", evaluate_vae=m3.evaluate_vae, **names)
    run_check("03_beta", "test_evaluate_vae", evaluate_vae=evaluate_with_encode_and_decode, **names)
    fails(
        "03_beta",
        "test_evaluate_vae",
        "weight each batch's average by its number of images",
        evaluate_vae=evaluate_mean_of_batch_means,
        **names,
    )


# --- notebook 4 -----------------------------------------------------------------------


def interpolate_plus(z_start, z_end, num_steps):
    t = torch.linspace(0, 1, num_steps).unsqueeze(1)
    return z_start + t * z_end


def interpolate_lerp(z_start, z_end, num_steps):
    return torch.lerp(
        z_start.expand(num_steps, -1), z_end.expand(num_steps, -1), torch.linspace(0, 1, num_steps).unsqueeze(1)
    )


def test_interpolate_check_catches_z_start_plus_t_z_end(sol):
    run_check("04_interpolation", "test_interpolate", interpolate=sol["04_interpolation"].interpolate)
    run_check("04_interpolation", "test_interpolate", interpolate=interpolate_lerp)
    fails("04_interpolation", "test_interpolate", "not z_start \\+ t·z_end", interpolate=interpolate_plus)
