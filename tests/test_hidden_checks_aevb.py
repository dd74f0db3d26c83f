"""The hidden checks of 05_aevb.ipynb, outside notebooks.

The solution's `log_likelihood_estimate` (taken from the source notebook by autograder.parts)
and correct alternatives pass every check; each known mistake fails the check meant for it,
with a message that names the mistake, and passes the checks that are about something else.
"""

from __future__ import annotations

import importlib.util
import math
import re

import pytest
import torch
import torch.nn.functional as F

from autograder.checks import aevb
from autograder.parts import build_parts

CHECKS = {
    "shape": aevb.check_shape,
    "exact": aevb.check_exact,
    "bounds": aevb.check_bounds,
    "stable": aevb.check_stable,
}


@pytest.fixture(scope="module")
def solution(tmp_path_factory):
    """log_likelihood_estimate as written in solutions/05_aevb.ipynb."""
    out = tmp_path_factory.mktemp("parts")
    path = next(p for p in build_parts(out) if p.stem == "05_aevb")
    spec = importlib.util.spec_from_file_location("solution_05_aevb", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.log_likelihood_estimate


def _densities(model, x, z, mu, logvar):
    """log p(x | z), log p(z), log q(z | x) for z of shape (K, B, D)."""
    std = torch.exp(0.5 * logvar)
    log_px_z = model.log_px_given_z(x, z)
    log_pz = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    log_qz = torch.distributions.Normal(mu, std).log_prob(z).sum(-1)
    return log_px_z, log_pz, log_qz


def _draw(model, x, num_samples):
    mu, logvar = model.encode(x)
    z = mu + torch.exp(0.5 * logvar) * torch.randn(num_samples, *mu.shape, dtype=mu.dtype)
    return z, mu, logvar


# --- correct alternatives --------------------------------------------------------------


def loop_logaddexp(model, x, num_samples):
    """One sample at a time, a running log-sum with torch.logaddexp; hand-written log-densities."""
    mu, logvar = model.encode(x)
    total = None
    for _ in range(num_samples):
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        log_pz = -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(1)
        log_qz = -0.5 * ((z - mu).pow(2) / logvar.exp() + logvar + math.log(2 * math.pi)).sum(1)
        log_w = model.log_px_given_z(x, z) + log_pz - log_qz
        total = log_w if total is None else torch.logaddexp(total, log_w)
    return total - math.log(num_samples)


def max_shift(model, x, num_samples):
    """Flattened (K·B) rows with x repeated, and the max subtracted by hand."""
    mu, logvar = model.encode(x)
    k, b = num_samples, x.shape[0]
    z = (mu + torch.exp(0.5 * logvar) * torch.randn(k, *mu.shape, dtype=mu.dtype)).reshape(k * b, -1)
    x_rep = x.repeat(k, 1, 1, 1)
    mu_rep, logvar_rep = mu.repeat(k, 1), logvar.repeat(k, 1)
    normal = torch.distributions.Normal
    log_w = (
        model.log_px_given_z(x_rep, z)
        + normal(0.0, 1.0).log_prob(z).sum(1)
        - normal(mu_rep, torch.exp(0.5 * logvar_rep)).log_prob(z).sum(1)
    ).reshape(k, b)
    top = log_w.max(dim=0).values
    return top + torch.log(torch.exp(log_w - top).mean(dim=0))


def independent_rsample(model, x, num_samples):
    """torch.distributions.Independent, rsample with a sample shape, one image at a time."""
    out = []
    for i in range(x.shape[0]):
        mu, logvar = model.encode(x[i : i + 1])
        q = torch.distributions.Independent(torch.distributions.Normal(mu[0], torch.exp(0.5 * logvar[0])), 1)
        prior = torch.distributions.Independent(torch.distributions.Normal(torch.zeros_like(mu[0]), 1.0), 1)
        z = q.rsample((num_samples,))  # (K, D)
        x_rep = x[i : i + 1].expand(num_samples, -1, -1, -1)
        log_w = model.log_px_given_z(x_rep, z) + prior.log_prob(z) - q.log_prob(z)
        out.append(torch.logsumexp(log_w, 0) - math.log(num_samples))
    return torch.stack(out).detach()


ALTERNATIVES = [loop_logaddexp, max_shift, independent_rsample]


@pytest.mark.parametrize("check", CHECKS.values(), ids=CHECKS.keys())
def test_solution_passes(solution, check):
    check(solution)


@pytest.mark.parametrize("fn", ALTERNATIVES)
@pytest.mark.parametrize("check", CHECKS.values(), ids=CHECKS.keys())
def test_correct_alternative_passes(fn, check):
    check(fn)


def test_the_test_model_takes_the_shapes_the_notebook_model_takes():
    """As AEVB.log_px_given_z: x broadcast over K samples, or repeated to match flattened samples."""
    model = aevb.LinearGaussian(latent_dim=3, seed=0)
    x = model.sample(4)
    z = torch.randn(5, 4, 3, dtype=torch.float64)
    assert model.log_px_given_z(x, z).shape == (5, 4)
    assert model.log_px_given_z(x.repeat(5, 1, 1, 1), z.reshape(20, 3)).shape == (20,)
    torch.testing.assert_close(
        model.log_px_given_z(x, z).reshape(20), model.log_px_given_z(x.repeat(5, 1, 1, 1), z.reshape(20, 3))
    )


def test_oracles_agree():
    """The test model's closed forms: log p(x) and the ELBO against independent computations."""
    model = aevb.LinearGaussian(latent_dim=2, shift=aevb.SHIFT, widen=aevb.WIDEN, seed=3)
    x = model.sample(4)
    cov = model.W @ model.W.T + model.noise_var * torch.eye(aevb.NUM_PIXELS, dtype=torch.float64)
    dense = torch.distributions.MultivariateNormal(model.b, covariance_matrix=cov).log_prob(x.flatten(1))
    torch.testing.assert_close(model.log_px(x), dense)
    # the exact posterior gives equal weights: p(x, z) / p(z | x) = p(x) at any z
    mean, var = model.posterior(x)
    z = mean + var.sqrt() * torch.randn_like(mean)
    log_joint = model.log_px_given_z(x, z) + torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    log_post = torch.distributions.Normal(mean, var.sqrt()).log_prob(z).sum(-1)
    torch.testing.assert_close(log_joint - log_post, model.log_px(x))
    # ELBO by Monte Carlo within 5 standard errors of the closed form
    torch.manual_seed(0)
    zs, mu, logvar = _draw(model, x, 5000)
    log_px_z, log_pz, log_qz = _densities(model, x, zs, mu, logvar)
    log_w = log_px_z + log_pz - log_qz
    se = log_w.std(0) / math.sqrt(len(zs))
    assert ((log_w.mean(0) - model.elbo(x)).abs() < 5 * se).all()
    # the variance of the normalised weights matches its closed form (the checks' tolerances rest on it)
    w = torch.exp(log_w - model.log_px(x))
    relvar = aevb.relative_weight_variance(2)
    assert abs(float(w.var(0).mean()) - relvar) < 0.15 * relvar


def test_stable_cases_have_the_targeted_log_px():
    for dtype, std, targets in (
        (torch.float32, 0.1, [87.0, 88.0]),
        (torch.float64, 0.01, [1500.0, 2500.0]),
        (torch.float64, aevb.NEUTRAL_STD, [-1500.0, -3000.0]),
    ):
        model = aevb.LinearGaussian(latent_dim=2, noise_std=std, dtype=dtype, seed=6)
        got = model.log_px(model.images_with_log_px(targets)).double()
        torch.testing.assert_close(got, torch.tensor(targets, dtype=torch.float64), rtol=1e-5, atol=1e-2)


# --- known mistakes ---------------------------------------------------------------------


def recon_as_likelihood(model, x, num_samples):
    """The published reproduction's number: the reconstruction term (minus the cross-entropy)."""
    z, _, _ = _draw(model, x, num_samples)
    return model.log_px_given_z(x, z).mean(0)


def recon_at_mean(model, x, num_samples):
    mu, _ = model.encode(x)
    return model.log_px_given_z(x, mu)


def mean_of_logs(model, x, num_samples):
    """log of a mean computed as a mean of logs: the ELBO, whatever K."""
    z, mu, logvar = _draw(model, x, num_samples)
    log_px_z, log_pz, log_qz = _densities(model, x, z, mu, logvar)
    return (log_px_z + log_pz - log_qz).mean(0)


def no_prior(model, x, num_samples):
    z, mu, logvar = _draw(model, x, num_samples)
    log_px_z, _, log_qz = _densities(model, x, z, mu, logvar)
    return torch.logsumexp(log_px_z - log_qz, 0) - math.log(num_samples)


def no_posterior(model, x, num_samples):
    z, mu, logvar = _draw(model, x, num_samples)
    log_px_z, log_pz, _ = _densities(model, x, z, mu, logvar)
    return torch.logsumexp(log_px_z + log_pz, 0) - math.log(num_samples)


def plus_posterior(model, x, num_samples):
    z, mu, logvar = _draw(model, x, num_samples)
    log_px_z, log_pz, log_qz = _densities(model, x, z, mu, logvar)
    return torch.logsumexp(log_px_z + log_pz + log_qz, 0) - math.log(num_samples)


def no_log_k(model, x, num_samples):
    z, mu, logvar = _draw(model, x, num_samples)
    log_px_z, log_pz, log_qz = _densities(model, x, z, mu, logvar)
    return torch.logsumexp(log_px_z + log_pz - log_qz, 0)


def exp_then_log(model, x, num_samples):
    """Right formula, computed naively: exp() of the log-weights overflows or underflows."""
    z, mu, logvar = _draw(model, x, num_samples)
    log_px_z, log_pz, log_qz = _densities(model, x, z, mu, logvar)
    return torch.log(torch.exp(log_px_z + log_pz - log_qz).mean(0))


def batch_mean(model, x, num_samples):
    """Right per-image estimates, averaged over the batch into one number."""
    return max_shift(model, x, num_samples).mean()


def squeezed(model, x, num_samples):
    return max_shift(model, x, num_samples).squeeze()


def bernoulli_from_decode(model, x, num_samples):
    """Recomputes log p(x | z) as a Bernoulli likelihood of decode(z) instead of asking the model."""
    z, mu, logvar = _draw(model, x, num_samples)
    logits = model.decode(z)
    target = x.expand_as(logits).clamp(0, 1)
    log_px_z = -F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum((-3, -2, -1))
    log_pz = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    log_qz = torch.distributions.Normal(mu, torch.exp(0.5 * logvar)).log_prob(z).sum(-1)
    return torch.logsumexp(log_px_z + log_pz - log_qz, 0) - math.log(num_samples)


def one_sample_only(model, x, num_samples):
    return max_shift(model, x, 1)


# (mistake, the check meant to catch it, words its message must contain)
MISTAKES = [
    (recon_as_likelihood, "exact", "reconstruction term"),
    (recon_at_mean, "exact", "reconstruction likelihood"),
    (mean_of_logs, "bounds", "stays at the ELBO: you average the log-weights"),
    (no_prior, "exact", "log p(z) is missing"),
    (no_posterior, "exact", "log q(z | x) is missing"),
    (plus_posterior, "exact", "must be subtracted"),
    (no_log_k, "exact", "too large by log K"),
    (exp_then_log, "stable", "not finite"),
    (batch_mean, "shape", "one number for the whole batch"),
    (squeezed, "shape", "do not squeeze"),
    (bernoulli_from_decode, "shape", "log_px_given_z"),
    (one_sample_only, "bounds", "num_samples codes"),
]


@pytest.mark.parametrize("fn, check, words", MISTAKES, ids=[m[0].__name__ for m in MISTAKES])
def test_mistake_is_caught_with_its_message(fn, check, words):
    torch.manual_seed(0)
    with pytest.raises(AssertionError, match=re.escape(words)):
        CHECKS[check](fn)


@pytest.mark.parametrize(
    "fn, lost",
    [
        (mean_of_logs, {"bounds"}),
        (exp_then_log, {"stable"}),
        (batch_mean, {"shape"}),
        (squeezed, {"shape"}),
    ],
)
def test_a_mistake_loses_only_its_own_points(fn, lost):
    """Mistakes about one property fail that check and pass the others."""
    failed = set()
    for name, check in CHECKS.items():
        torch.manual_seed(0)
        try:
            check(fn)
        except AssertionError:
            failed.add(name)
    assert failed == lost


@pytest.mark.parametrize("check", ["bounds", "stable"])
def test_the_reconstruction_mistake_is_named_in_every_check_it_fails(check):
    """It is wrong in every property; each failing check says why, not only the exact one."""
    torch.manual_seed(0)
    with pytest.raises(AssertionError, match="reconstruction term"):
        CHECKS[check](recon_as_likelihood)


def test_exp_then_log_overflows_for_large_k_in_float32():
    """The float32 case: each weight fits in float32, their sum over many samples does not."""
    model = aevb.LinearGaussian(latent_dim=2, noise_std=0.1, dtype=torch.float32, seed=6)
    x = model.images_with_log_px([87.0])
    torch.manual_seed(0)
    assert torch.isfinite(exp_then_log(model, x, 1)).all()
    assert not torch.isfinite(exp_then_log(model, x, 200)).all()


def test_stub_fails_every_check():
    def stub(model, x, num_samples):
        raise NotImplementedError()

    for check in CHECKS.values():
        with pytest.raises(NotImplementedError):
            check(stub)


def test_messages_name_properties_not_values():
    """No reference numbers in the failure messages (counts and shapes are fine)."""
    for fn, check, _ in MISTAKES:
        torch.manual_seed(0)
        with pytest.raises(AssertionError) as info:
            CHECKS[check](fn)
        assert not re.search(r"-?\d+\.\d+", str(info.value)), str(info.value)
