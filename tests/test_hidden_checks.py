"""The hidden checks, outside notebooks: the solutions pass, each known bug fails its check.

The solution functions come from the source notebooks (autograder.parts), so these tests
follow the notebooks. Known-bad variants are the common mistakes the checks exist for;
each must fail its own check with a message that names the mistake, and pass the others.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch
import torch.nn.functional as F
from corpus import evaluate_mean_of_batch_means

from autograder.checks import ae, beta, interp, reference, vae
from autograder.parts import build_parts


@pytest.fixture(scope="module")
def sol(tmp_path_factory):
    """The solution notebooks' code, as modules: sol['02_vae'].reparameterize etc."""
    out = tmp_path_factory.mktemp("parts")
    modules = {}
    for path in build_parts(out):
        spec = importlib.util.spec_from_file_location(f"solution_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        modules[path.stem] = module
    return modules


def namespace(module) -> dict:
    """The globals a notebook's test cell would pass (the module's own dict)."""
    return vars(module)


# --- the solutions pass every check ---------------------------------------------------


def test_solution_autoencoder_passes(sol):
    m = sol["01_autoencoder"]
    ae.check_encoder(m.Autoencoder)
    ae.check_decoder(m.Autoencoder)
    ae.check_architecture(m.Autoencoder)
    ae.check_forward(m.Autoencoder)
    ae.check_ae_loss(m.ae_loss)
    ae.check_train_autoencoder(m.train_autoencoder, namespace(m))
    ae.check_sample_autoencoder(m.sample_autoencoder)


def test_solution_vae_passes(sol):
    m = sol["02_vae"]
    vae.check_reparameterize_gradients(m.reparameterize)
    vae.check_reparameterize_statistics(m.reparameterize)
    vae.check_kl_values(m.kl_divergence)
    vae.check_kl_gradients(m.kl_divergence)
    vae.check_vae_model(m.VAE, namespace(m))
    vae.check_vae_loss(m.vae_loss, namespace(m))
    vae.check_train_vae(m.train_vae, namespace(m))


def test_solution_beta_and_interpolation_pass(sol):
    m3, m4 = sol["03_beta"], sol["04_interpolation"]
    ns = namespace(m3)
    ns.setdefault("vae_loss", sol["02_vae"].vae_loss)  # the notebook imports it from notebook 2's parts
    beta.check_evaluate_vae(m3.evaluate_vae, ns)
    beta.check_count_active_units(m3.count_active_units)
    interp.check_interpolate(m4.interpolate)
    interp.check_latent_code(m4.latent_code)


# --- correct alternatives get full marks ---------------------------------------------


def rsample_reparameterize(mu, logvar):
    return torch.distributions.Normal(mu, torch.exp(0.5 * logvar)).rsample()


def distributions_kl(mu, logvar):
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    return torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum(dim=1)


def lerp_interpolate(z_start, z_end, num_steps):
    t = torch.linspace(0, 1, num_steps, dtype=z_start.dtype).unsqueeze(1)
    return torch.lerp(z_start.expand(num_steps, -1), z_end.expand(num_steps, -1), t)


def sqrt_reparameterize(mu, logvar):
    return mu + logvar.exp().sqrt() * torch.randn_like(mu)


@pytest.mark.parametrize("fn", [rsample_reparameterize, sqrt_reparameterize])
def test_alternative_reparameterize_passes(fn):
    vae.check_reparameterize_gradients(fn)
    vae.check_reparameterize_statistics(fn)


def test_alternative_kl_and_lerp_pass():
    vae.check_kl_values(distributions_kl)
    vae.check_kl_gradients(distributions_kl)
    interp.check_interpolate(lerp_interpolate)


# --- known bugs fail their own check, with a message that names the mistake ----------


def sigma_squared(mu, logvar):
    return mu + logvar.exp() * torch.randn_like(mu)


def logvar_as_sigma(mu, logvar):
    return mu + logvar * torch.randn_like(mu)


def shared_eps(mu, logvar):
    return mu + torch.exp(0.5 * logvar) * torch.randn(1, mu.shape[1])


def eps_per_row(mu, logvar):
    return mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape[0], 1)


def torch_normal(mu, logvar):
    return torch.normal(mu, torch.exp(0.5 * logvar))


def dist_sample(mu, logvar):
    return torch.distributions.Normal(mu, torch.exp(0.5 * logvar)).sample()


def detached(mu, logvar):
    return (mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)).detach()


def uniform_noise(mu, logvar):
    return mu + torch.exp(0.5 * logvar) * torch.rand_like(mu)


@pytest.mark.parametrize(
    "fn, check, words",
    [
        (sigma_squared, vae.check_reparameterize_statistics, "σ²"),
        (logvar_as_sigma, vae.check_reparameterize_statistics, "logvar itself"),
        (shared_eps, vae.check_reparameterize_statistics, "same ε"),
        (eps_per_row, vae.check_reparameterize_statistics, "correlated"),
        (uniform_noise, vae.check_reparameterize_statistics, "spread"),
        (torch_normal, vae.check_reparameterize_gradients, "no gradient reaches logvar"),
        (dist_sample, vae.check_reparameterize_gradients, "cut off"),
        (detached, vae.check_reparameterize_gradients, "cut off"),
    ],
)
def test_reparameterize_bug_is_caught(fn, check, words):
    with pytest.raises(AssertionError, match=words):
        check(fn)


def test_gradient_bugs_do_not_lose_statistics_points():
    """A sample without gradient has the right statistics: it loses only the gradient check."""
    for fn in (torch_normal, dist_sample, detached):
        vae.check_reparameterize_statistics(fn)


def kl_wrong_sign(mu, logvar):
    return 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)


def kl_no_half(mu, logvar):
    return -torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)


def kl_no_minus_one(mu, logvar):
    return -0.5 * torch.sum(logvar - mu.pow(2) - logvar.exp(), dim=1)


def kl_mean_over_dims(mu, logvar):
    return -0.5 * torch.mean(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)


def kl_exp_sigma_squared(mu, logvar):  # the published typo: exp(σ²) in place of σ²
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - torch.exp(logvar.exp()), dim=1)


def kl_log_sigma(mu, logvar):  # treats logvar as log σ
    return -0.5 * torch.sum(1 + 2 * logvar - mu.pow(2) - torch.exp(2 * logvar), dim=1)


def kl_batch_sum(mu, logvar):
    return reference.kl_divergence(mu, logvar).sum()


@pytest.mark.parametrize(
    "fn, words",
    [
        (kl_wrong_sign, "negative"),
        (kl_no_half, "½"),
        (kl_no_minus_one, "constant term"),
        (kl_mean_over_dims, "summed over the latent"),
        (kl_exp_sigma_squared, "constant term"),
        (kl_log_sigma, "variance terms"),
        (kl_batch_sum, "one value per sample"),
    ],
)
def test_kl_bug_is_caught(fn, words):
    with pytest.raises(AssertionError, match=words):
        vae.check_kl_values(fn)


def loss_minus(x, logits, mu, logvar, beta=1.0):
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / x.shape[0]
    kl = reference.kl_divergence(mu, logvar).mean()
    return recon - beta * kl, recon, kl


def loss_beta_on_recon(x, logits, mu, logvar, beta=1.0):
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / x.shape[0]
    kl = reference.kl_divergence(mu, logvar).mean()
    return beta * recon + kl, recon, kl


def loss_pixel_mean(x, logits, mu, logvar, beta=1.0):
    recon = F.binary_cross_entropy_with_logits(logits, x)
    kl = reference.kl_divergence(mu, logvar).mean()
    return recon + beta * kl, recon, kl


def loss_batch_sum(x, logits, mu, logvar, beta=1.0):
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
    kl = reference.kl_divergence(mu, logvar).sum()
    return recon + beta * kl, recon, kl


def loss_sigmoid_twice(x, logits, mu, logvar, beta=1.0):
    recon = F.binary_cross_entropy(torch.sigmoid(torch.sigmoid(logits)), x, reduction="sum") / x.shape[0]
    kl = reference.kl_divergence(mu, logvar).mean()
    return recon + beta * kl, recon, kl


@pytest.mark.parametrize(
    "fn, words",
    [
        (loss_minus, "recon − β·kl"),
        (loss_beta_on_recon, "β multiplies the reconstruction"),
        (loss_pixel_mean, "averages over pixels"),
        (loss_batch_sum, "summed over the batch"),
        (loss_sigmoid_twice, "not the Bernoulli"),
    ],
)
def test_vae_loss_bug_is_caught(fn, words):
    with pytest.raises(AssertionError, match=words):
        vae.check_vae_loss(fn, {})


def test_vae_loss_check_does_not_depend_on_students_kl(sol):
    """A wrong kl_divergence in the notebook must not cost the vae_loss points too."""
    m = sol["02_vae"]
    ns = dict(vars(m))
    ns["kl_divergence"] = kl_wrong_sign
    ns_loss = type(m.vae_loss)(m.vae_loss.__code__, ns, "vae_loss", m.vae_loss.__defaults__)  # sees the buggy KL
    vae.check_vae_loss(ns_loss, ns)
    assert ns["kl_divergence"] is kl_wrong_sign  # restored afterwards


def ae_loss_pixel_mean(x, logits):
    return F.binary_cross_entropy_with_logits(logits, x)


def test_ae_loss_bug_is_caught():
    with pytest.raises(AssertionError, match="averages over pixels"):
        ae.check_ae_loss(ae_loss_pixel_mean)


def sample_no_sigmoid(model, num_samples, latent_dim=64):
    with torch.no_grad():
        return model.decode(torch.randn(num_samples, latent_dim))


def sample_uniform_codes(model, num_samples, latent_dim=64):
    model.eval()
    with torch.no_grad():
        return torch.sigmoid(model.decode(torch.rand(num_samples, latent_dim)))


@pytest.mark.parametrize("fn, words", [(sample_no_sigmoid, r"\[0, 1\]"), (sample_uniform_codes, "N\\(0, I\\)")])
def test_sampling_bug_is_caught(fn, words):
    with pytest.raises(AssertionError, match=words):
        ae.check_sample_autoencoder(fn)


def train_without_step(model, train_x, num_epochs, batch_size=128, lr=1e-3):
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    history = []
    for _ in range(num_epochs):
        for start in range(0, len(train_x), batch_size):
            x = train_x[start : start + batch_size]
            loss = reference.ae_loss(x, model(x))
            optimizer.zero_grad()
            loss.backward()
        history.append(loss.item())
    return history


def test_training_without_step_is_caught():
    with pytest.raises(AssertionError, match=r"optimizer\.step"):
        ae.check_train_autoencoder(train_without_step, {})


def active_units_wrong_axis(mu, threshold=0.01):
    return int((mu.var(dim=1) > threshold).sum())


def active_units_by_mean(mu, threshold=0.01):
    return int((mu.mean(dim=0).abs() > threshold).sum())


@pytest.mark.parametrize("fn", [active_units_wrong_axis, active_units_by_mean])
def test_active_units_bug_is_caught(fn):
    with pytest.raises(AssertionError, match="varies across"):
        beta.check_count_active_units(fn)


def interpolate_without_end(z_start, z_end, num_steps):
    t = torch.arange(num_steps, dtype=z_start.dtype).unsqueeze(1) / num_steps
    return (1 - t) * z_start + t * z_end


def interpolate_without_start(z_start, z_end, num_steps):
    t = torch.arange(1, num_steps + 1, dtype=z_start.dtype).unsqueeze(1) / num_steps
    return (1 - t) * z_start + t * z_end


@pytest.mark.parametrize("fn", [interpolate_without_end, interpolate_without_start])
def test_interpolation_without_end_points_is_caught(fn):
    with pytest.raises(AssertionError, match="end points"):
        interp.check_interpolate(fn)


def latent_code_sampled(model, x):
    model.eval()
    with torch.no_grad():
        code = model.encode(x)
    if isinstance(code, tuple):
        return reference.reparameterize(*code)
    return code


def test_latent_code_sample_is_caught():
    with pytest.raises(AssertionError, match="posterior mean"):
        interp.check_latent_code(latent_code_sampled)


def evaluate_in_train_mode(model, x, beta=1.0, batch_size=500):
    logits, mu, logvar = model(x)
    loss, recon, kl = reference.vae_loss(x, logits, mu, logvar, beta)
    return {"loss": loss.item(), "recon": recon.item(), "kl": kl.item()}


@pytest.mark.parametrize(
    "fn, words", [(evaluate_mean_of_batch_means, "weight each batch"), (evaluate_in_train_mode, "evaluation mode")]
)
def test_evaluate_bug_is_caught(fn, words):
    with pytest.raises(AssertionError, match=words):
        beta.check_evaluate_vae(fn, {})


def test_messages_never_contain_reference_numbers():
    """Failure messages name properties, not values: no digits beyond shapes and counts."""
    import re

    for fn, check in [
        (sigma_squared, vae.check_reparameterize_statistics),
        (kl_no_half, vae.check_kl_values),
        (loss_minus, lambda f: vae.check_vae_loss(f, {})),
    ]:
        with pytest.raises(AssertionError) as info:
            check(fn)
        assert not re.search(r"\d+\.\d{2,}", str(info.value)), str(info.value)


# --- round 2: correct alternatives and bugs seen in public VAE code -------------------


def inplace_reparameterize(mu, logvar):
    # the early pytorch/examples vae/main.py idiom, still common in public repositories
    # (found with `logvar.mul(0.5).exp_()`): in-place ops on fresh tensors, noise from Tensor.normal_
    std = logvar.mul(0.5).exp_()
    eps = std.new(std.size()).normal_()
    return eps.mul(std).add_(mu)


def numpy_noise_reparameterize(mu, logvar):
    # correct, with ε from NumPy: a check that calls it twice must seed NumPy too
    import numpy as np

    eps = torch.from_numpy(np.random.standard_normal(tuple(mu.shape))).to(mu.dtype)
    return mu + torch.exp(0.5 * logvar) * eps


@pytest.mark.parametrize("fn", [inplace_reparameterize, numpy_noise_reparameterize])
def test_public_and_numpy_reparameterize_pass(fn):
    vae.check_reparameterize_gradients(fn)
    vae.check_reparameterize_statistics(fn)


def kl_with_sigma(mu, logvar):
    # the textbook form with σ (e.g. many tutorials): ½ Σ (μ² + σ² − log σ² − 1)
    sigma = torch.exp(0.5 * logvar)
    return 0.5 * torch.sum(mu**2 + sigma**2 - torch.log(sigma**2) - 1, dim=1)


def test_kl_written_with_sigma_passes():
    vae.check_kl_values(kl_with_sigma)
    vae.check_kl_gradients(kl_with_sigma)


def keras_style_loss(x, logits, mu, logvar, beta=1.0):
    # keras-team/keras examples/variational_autoencoder.py (and its many copies):
    # `original_dim * binary_crossentropy(x, x_decoded_mean)` (a mean over pixels times 784), then a batch mean
    recon = 28 * 28 * F.binary_cross_entropy_with_logits(logits, x)
    kl = torch.mean(-0.5 * torch.sum(1 + logvar - mu**2 - logvar.exp(), dim=1))
    return recon + beta * kl, recon, kl


def test_keras_style_vae_loss_passes():
    vae.check_vae_loss(keras_style_loss, {})


def keras_kl_mean_over_latent(mu, logvar):
    # a public Keras copy with `K.mean(..., axis=-1)  # average by latent_dim axis` in its KL
    return -0.5 * torch.mean(1 + logvar - mu.pow(2) - logvar.exp(), dim=-1)


def test_public_kl_mean_over_latent_is_caught():
    with pytest.raises(AssertionError, match="summed over the latent"):
        vae.check_kl_values(keras_kl_mean_over_latent)


def _vae_variant(sol, kind):
    base = sol["02_vae"].VAE

    class Variant(base):
        def encode(self, x):
            mu, logvar = super().encode(x)
            return (mu, F.softplus(logvar)) if kind == "softplus_logvar" else (mu, logvar)

        def decode(self, z):
            # a final nn.Sigmoid() in the decoder, as in most public PyTorch VAEs (they use F.binary_cross_entropy)
            out = super().decode(z)
            return torch.sigmoid(out) if kind == "sigmoid_decoder" else out

    return Variant


@pytest.mark.parametrize(
    "kind, words", [("sigmoid_decoder", "no sigmoid at the end"), ("softplus_logvar", "logvar is never negative")]
)
def test_vae_model_bugs_are_caught(sol, kind, words):
    with pytest.raises(AssertionError, match=words):
        vae.check_vae_model(_vae_variant(sol, kind), namespace(sol["02_vae"]))


def test_vae_model_variant_without_a_bug_passes(sol):
    vae.check_vae_model(_vae_variant(sol, "none"), namespace(sol["02_vae"]))


def active_units_by_std(mu, threshold=0.01):
    # the standard deviation compared with a threshold meant for the variance
    return int((mu.std(dim=0) > threshold).sum())


def active_units_biased_variance(mu, threshold=0.01):
    # correct: the biased variance is a mathematically equivalent reduction at this size
    return int((mu.var(dim=0, unbiased=False) > threshold).sum().item())


def test_active_units_std_is_caught_and_biased_variance_passes():
    with pytest.raises(AssertionError, match="varies across"):
        beta.check_count_active_units(active_units_by_std)
    beta.check_count_active_units(active_units_biased_variance)


def interpolate_plus(z_start, z_end, num_steps):
    # the mistake a student made: right when z_start = 0, which the old visible check used
    t = torch.linspace(0, 1, num_steps, dtype=z_start.dtype).unsqueeze(1)
    return z_start + t * z_end


def test_interpolate_z_start_plus_t_z_end_is_caught():
    with pytest.raises(AssertionError, match="end exactly at z_end"):
        interp.check_interpolate(interpolate_plus)


def latent_code_numpy_free(model, x):
    # correct: eval mode and mu, written with a tuple check on the class of the model's output
    model.eval()
    with torch.no_grad():
        out = model.encode(x)
    return out[0] if type(out) is tuple else out


def test_latent_code_alternative_passes():
    interp.check_latent_code(latent_code_numpy_free)
