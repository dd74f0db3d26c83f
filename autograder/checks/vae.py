"""Hidden checks for 02_vae.ipynb."""

from __future__ import annotations

import math

import torch

from autograder.checks import (
    Mistake,
    Recorder,
    close,
    refuse,
    require,
    require_logits,
    seed_all,
    sigma_tolerance,
    swapped,
    toy_images,
)
from autograder.checks import reference as ref

# one column per σ, chosen so that σ, σ², logvar and exp(logvar) all differ
SIGMAS = torch.tensor([0.5, 1.0, 2.0])


def check_reparameterize_gradients(reparameterize) -> None:
    """reparameterize keeps z = mu + σ·ε differentiable: gradients reach both mu and logvar."""
    mu = torch.zeros(4, 3, requires_grad=True)
    logvar = torch.zeros(4, 3, requires_grad=True)
    torch.manual_seed(0)
    z = reparameterize(mu, logvar)
    require(
        isinstance(z, torch.Tensor) and z.requires_grad,
        "z is cut off from mu and logvar: sample ε separately (torch.randn_like) and compute "
        "z = mu + σ·ε, instead of torch.normal, a distribution's .sample() or .detach()",
        misconception="reparameterize.no_path_to_params",
    )
    gm, gl = torch.autograd.grad(z.sum(), [mu, logvar], allow_unused=True)
    require(
        gm is not None and gl is not None and torch.any(gl != 0),
        "no gradient reaches logvar (or mu) through z: the noise must enter as z = mu + σ·ε",
        misconception="reparameterize.no_gradient",
    )

    def seeded(m, lv):  # the same ε on every call, wherever the student draws it from
        seed_all(1)
        return reparameterize(m, lv)

    m64 = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    lv64 = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    try:
        ok = torch.autograd.gradcheck(seeded, (m64, lv64), eps=1e-6, atol=1e-5, raise_exception=False)
    except Exception:
        ok = False
    require(
        ok,
        "the gradient of z with respect to mu or logvar is not that of a smooth function of them "
        "(float64 gradcheck failed): do not round, clamp or detach anything on the way",
        misconception="reparameterize.not_smooth",
    )


def check_reparameterize_statistics(reparameterize) -> None:
    """reparameterize's samples have mean mu and spread σ = exp(0.5·logvar), independently per element."""
    n = 20000
    mu = torch.tensor([1.0, -2.0, 0.5]).repeat(n, 1)
    logvar = torch.log(SIGMAS**2).repeat(n, 1)
    torch.manual_seed(0)
    with torch.no_grad():
        z = reparameterize(mu, logvar)
    require(
        tuple(z.shape) == (n, 3),
        f"z should have the shape of mu, ({n}, 3); got {tuple(z.shape)}",
        misconception="reparameterize.shape",
    )
    eps = (z - mu) / SIGMAS
    std = (z - mu).std(dim=0)
    if float((z - mu).abs().max()) < 1e-6:
        raise Mistake(
            "z equals mu: you never add noise (or multiply it by zero)", misconception="reparameterize.no_noise"
        )
    if float(std.max()) < 1e-6:
        raise Mistake(
            "every row of the batch gets the same ε: draw one ε per element, e.g. torch.randn_like(mu)",
            misconception="reparameterize.shared_eps",
        )
    for wrong, words, mistake in (
        (SIGMAS**2, "σ² (= exp(logvar)), not like σ = exp(0.5·logvar)", "sigma_squared"),
        (torch.log(SIGMAS**2).abs(), "logvar itself, not like σ = exp(0.5·logvar)", "logvar_as_sigma"),
        (SIGMAS.sqrt(), "√σ, not like σ = exp(0.5·logvar)", "sqrt_sigma"),
    ):
        if all(
            abs(float(s) - float(w)) < max(sigma_tolerance(float(w), n), 1e-6) for s, w in zip(std, wrong, strict=True)
        ):
            raise Mistake(f"z's spread grows like {words}", misconception=f"reparameterize.{mistake}")
    for s, sigma in zip(std, SIGMAS, strict=True):
        require(
            abs(float(s) - float(sigma)) < sigma_tolerance(float(sigma), n),
            "the spread of z around mu is not σ = exp(0.5·logvar): check how you turn logvar into σ",
            misconception="reparameterize.wrong_spread",
        )
    mean = z.mean(dim=0)
    for m, m0, sigma in zip(mean, mu[0], SIGMAS, strict=True):
        require(
            abs(float(m - m0)) < 5 * float(sigma) / math.sqrt(n),
            "z is not centred on mu: ε must have mean 0 (torch.randn, not torch.rand)",
            misconception="reparameterize.not_centred",
        )
    corr = torch.corrcoef(eps.T)
    off = corr[~torch.eye(3, dtype=torch.bool)].abs().max()
    require(
        float(off) < 5 / math.sqrt(n),
        "the latent dimensions of z are correlated: draw a separate ε for every element, not one per row",
        misconception="reparameterize.eps_per_row",
    )


def _kl(kl_divergence, mu, logvar):
    out = kl_divergence(mu, logvar)
    require(
        isinstance(out, torch.Tensor) and tuple(out.shape) == (mu.shape[0],),
        f"kl_divergence should return one value per sample, shape ({mu.shape[0]},); got "
        f"{getattr(out, 'shape', type(out))}: sum over the latent dimension only (dim=1)",
        misconception="kl.shape",
    )
    return out


def check_kl_values(kl_divergence) -> None:
    """kl_divergence matches the closed form: 0 at the prior, non-negative, summed over dims, (B, D) -> (B,)."""
    torch.manual_seed(0)
    zero = _kl(kl_divergence, torch.zeros(2, 5), torch.zeros(2, 5))
    require(
        close(zero, torch.zeros(2), atol=1e-6),
        "KL should be 0 when q equals the prior (mu = 0, logvar = 0): check the constant term (the −1 / +1)",
        misconception="kl.constant_term",
    )
    mu, logvar = torch.randn(64, 5, dtype=torch.float64), torch.randn(64, 5, dtype=torch.float64)
    kl = _kl(kl_divergence, mu, logvar)
    require(bool((kl >= -1e-9).all()), "KL came out negative: check the overall sign", misconception="kl.wrong_sign")
    twice = _kl(kl_divergence, torch.cat([mu, mu], 1), torch.cat([logvar, logvar], 1))
    require(
        close(twice, 2 * kl, rtol=1e-5),
        "KL must be summed over the latent dimensions (doubling them should double the KL), not averaged",
        misconception="kl.mean_over_latent",
    )
    only_mu = _kl(kl_divergence, mu, torch.zeros_like(logvar))
    require(
        close(only_mu, ref.kl_oracle(mu, torch.zeros_like(logvar)), rtol=1e-5),
        "with logvar = 0 the KL is ½·Σ mu²: check the factor ½ and the mu² term",
        misconception="kl.no_half",
    )
    require(
        close(kl, ref.kl_oracle(mu, logvar), rtol=1e-5),
        "the variance terms of the KL are off: logvar is log σ², so σ² = exp(logvar) and the term is "
        "logvar − exp(logvar) (Kingma & Welling, Appendix B)",
        misconception="kl.variance_terms",
    )


def check_kl_gradients(kl_divergence) -> None:
    """kl_divergence passes gradcheck in float64 for mu and logvar (B, D)."""
    mu = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    logvar = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    kl_divergence(mu.detach(), logvar.detach())  # a stub that raises is reported as such, not as gradcheck failing
    try:
        ok = torch.autograd.gradcheck(lambda m, lv: kl_divergence(m, lv), (mu, logvar), raise_exception=False)
    except Exception:
        ok = False
    require(
        ok,
        "kl_divergence is not differentiable in mu and logvar in float64 (gradcheck failed): "
        "use torch operations only, no .item(), numpy or .detach()",
        misconception="kl.not_differentiable",
    )


def _vae(VAE, latent_dim):
    try:
        return VAE(latent_dim=latent_dim)
    except TypeError as exc:
        raise Mistake(
            f"VAE(latent_dim={latent_dim}) failed ({exc}): the constructor must take latent_dim",
            misconception="vae_model.constructor",
        ) from exc


def check_vae_model(VAE, namespace=None) -> None:
    """The VAE's encode gives (mu, logvar) of (B, latent_dim), decode gives logits, forward decodes a sample."""
    with swapped(namespace, reparameterize=ref.reparameterize):
        torch.manual_seed(0)
        model = _vae(VAE, 8)
        x = torch.rand(5, 1, 28, 28)
        enc = model.encode(x)
        require(
            isinstance(enc, tuple) and len(enc) == 2,
            "encode should return a tuple (mu, logvar)",
            misconception="vae_encode.not_tuple",
        )
        mu, logvar = enc
        require(
            tuple(mu.shape) == (5, 8) and tuple(logvar.shape) == (5, 8),
            f"mu and logvar should have shape (5, 8) for latent_dim=8; got {tuple(mu.shape)}, {tuple(logvar.shape)}",
            misconception="vae_encode.shape",
        )
        require(
            not close(mu, logvar),
            "mu and logvar are identical: give them separate output layers",
            misconception="vae_encode.shared_head",
        )
        require(
            bool((logvar < 0).any()),
            "logvar is never negative: the logvar head must have no activation (no ReLU, softplus or exp), "
            "since log σ² < 0 whenever σ < 1",
            misconception="vae_encode.logvar_activation",
        )
        model.eval()
        mu2, logvar2 = model.encode(x)
        require(
            close(mu, mu2) and close(logvar, logvar2),
            "encode gives different (mu, logvar) for the same images in evaluation mode: encode should "
            "compute the distribution's parameters only; sample z in forward",
            misconception="vae_encode.samples",
        )
        model.train()
        logits = model.decode(3 * torch.randn(5, 8))
        require(
            tuple(logits.shape) == (5, 1, 28, 28),
            f"decode should give (5, 1, 28, 28) logits; got {tuple(logits.shape)}",
            misconception="vae_decode.shape",
        )
        require_logits(logits, "vae_decode.sigmoid_output")
        out = model(x)
        require(
            isinstance(out, tuple) and len(out) == 3,
            "forward should return (logits, mu, logvar)",
            misconception="vae_forward.not_triple",
        )
        model.train()
        a, b = model(x)[0], model(x)[0]
        require(
            not close(a, b),
            "forward gives the same logits twice in training mode: it should decode a "
            "sample z = reparameterize(mu, logvar), not mu",
            misconception="vae_forward.decodes_mu",
        )
        out[0].sum().backward()
        dead = [n for n, p in model.named_parameters() if p.grad is None]
        require(
            not dead,
            f"these parameters get no gradient from forward: {', '.join(dead[:4])}",
            misconception="vae_model.unused_layers",
        )


def check_vae_loss(vae_loss, namespace=None) -> None:
    """vae_loss returns scalar (loss, recon, kl): summed-over-pixels recon and KL, batch means, loss = recon + β·kl."""
    torch.manual_seed(0)
    x = torch.rand(6, 1, 28, 28)
    logits = 2 * torch.randn(6, 1, 28, 28)
    mu, logvar = torch.randn(6, 4), torch.randn(6, 4)
    with swapped(namespace, kl_divergence=ref.kl_divergence):
        out = vae_loss(x, logits, mu, logvar, beta=2.5)
        require(
            isinstance(out, tuple) and len(out) == 3 and all(isinstance(t, torch.Tensor) and t.dim() == 0 for t in out),
            "vae_loss should return three scalar tensors (loss, recon, kl)",
            misconception="vae_loss.result_format",
        )
        loss, recon, kl = out
        recon0 = ref.recon_oracle(x, logits).mean()
        kl0 = ref.kl_oracle(mu, logvar).mean()
        refuse(recon, [
            (recon0 / 784, "recon averages over pixels: sum the Bernoulli NLL over the 784 pixels, then average "
                           "over the batch", "vae_loss.pixel_mean"),
            (recon0 * 6, "recon is summed over the batch: average it over the images of the batch",
             "vae_loss.recon_batch_sum"),
        ])  # fmt: skip
        require(
            close(recon, recon0, rtol=1e-4),
            "recon is not the Bernoulli negative log-likelihood of the logits (binary cross-entropy with "
            "logits, summed over pixels, averaged over the batch)",
            misconception="vae_loss.recon_wrong",
        )
        refuse(kl, [(kl0 * 6, "kl is summed over the batch: average it over the images of the batch",
                     "vae_loss.kl_batch_sum")])  # fmt: skip
        require(
            close(kl, kl0, rtol=1e-4),
            "kl is not the batch average of the per-sample KL",
            misconception="vae_loss.kl_wrong",
        )
        refuse(loss, [
            (recon - 2.5 * kl, "loss is recon − β·kl: the negative ELBO is recon + β·kl (the KL is a penalty)",
             "vae_loss.minus_kl"),
            (2.5 * recon + kl, "β multiplies the reconstruction term: it should multiply the KL term",
             "vae_loss.beta_on_recon"),
        ], rtol=1e-4)  # fmt: skip
        require(
            close(loss, recon0 + 2.5 * kl0, rtol=1e-4),
            "loss should be recon + beta · kl",
            misconception="vae_loss.wrong",
        )
        loss1 = vae_loss(x, logits, mu, logvar)[0]
        require(
            close(loss1, recon0 + kl0, rtol=1e-4),
            "the default beta should be 1.0",
            misconception="vae_loss.default_beta",
        )
        twice = vae_loss(
            torch.cat([x, x]), torch.cat([logits, logits]), torch.cat([mu, mu]), torch.cat([logvar, logvar]), beta=2.5
        )[0]
        require(
            close(twice, loss, rtol=1e-4),
            "the loss changes when the batch is repeated: average over the batch",
            misconception="vae_loss.batch_dependent",
        )


def check_train_vae(train_vae, namespace=None) -> None:
    """train_vae trains a reference VAE and returns per-epoch lists of finite 'loss', 'recon' and 'kl'."""
    x = toy_images(256)
    with swapped(namespace, reparameterize=ref.reparameterize, kl_divergence=ref.kl_divergence, vae_loss=ref.vae_loss):
        torch.manual_seed(0)
        model = Recorder(ref.TinyVAE(latent_dim=4))
        model.eval()
        before = [p.detach().clone() for p in model.parameters()]
        history = train_vae(model, x, num_epochs=4, beta=3.0, batch_size=64, lr=3e-3)
    require(
        isinstance(history, dict) and all(k in history for k in ("loss", "recon", "kl")),
        "train_vae should return a dict with lists 'loss', 'recon' and 'kl' (one mean value per epoch)",
        misconception="train_vae.history_format",
    )
    require(
        all(len(history[k]) == 4 for k in ("loss", "recon", "kl")),
        "history['loss'], ['recon'] and ['kl'] should each hold one value per epoch (4 here)",
        misconception="train_vae.history_length",
    )
    loss, recon, kl = (torch.tensor([float(v) for v in history[k]]) for k in ("loss", "recon", "kl"))
    require(
        bool(torch.isfinite(loss).all()), "the losses returned are not all finite", misconception="train_vae.not_finite"
    )
    require(
        # strict=False: a loop that adds parameters to the model is judged on the ones it was given
        any(not torch.equal(b, p.detach()) for b, p in zip(before, model.parameters(), strict=False)),
        "no parameter changed: call optimizer.step() after loss.backward()",
        misconception="train_vae.no_step",
    )
    require(
        model.calls and all(train and grad for _, train, grad in model.calls),
        "the model must be in training mode (model.train()) with gradients enabled while it trains",
        misconception="train_vae.not_training_mode",
    )
    require(
        close(loss, recon + 3.0 * kl, rtol=1e-3),
        "history['loss'] is not recon + beta·kl per epoch: pass beta on to vae_loss and record the "
        "three terms it returns (as floats, with .item())",
        misconception="train_vae.history_not_loss",
    )
    require(
        float(loss[-1]) < 0.9 * float(loss[0]),
        "the loss does not fall over 4 epochs on a tiny data set: check zero_grad/backward/step order "
        "and that the optimizer holds model.parameters()",
        misconception="train_vae.loss_not_falling",
    )
