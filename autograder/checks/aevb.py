"""Hidden checks for 05_aevb.ipynb: `log_likelihood_estimate` against a model whose log p(x) is known.

The model is linear-Gaussian (probabilistic PCA, Tipping & Bishop 1999) on (B, 1, 28, 28) images:
p(z) = N(0, I), p(x | z) = N(W z + b, s² I), hence p(x) = N(b, W Wᵀ + s² I) in closed form
(torch.distributions.LowRankMultivariateNormal is the oracle). The columns of W are orthogonal,
so the true posterior p(z | x) is a diagonal Gaussian: the encoder can be exact, which makes
every importance weight equal p(x), or deliberately off (mean shifted, variance widened), which
makes the weights vary by a known amount.

The model records the (x, z) pairs passed to `log_px_given_z`, so that a wrong estimate can be
matched against the usual mistakes computed on the student's own samples, and the message can
name the mistake instead of showing a number.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from autograder.checks import Mistake, require

IMAGE_SHAPE = (1, 28, 28)
NUM_PIXELS = 28 * 28
# with s² = 1/(2πe) each pixel's Gaussian log-density averages 0, so log p(x) stays within
# a few tens of nats: exp() of it neither overflows nor underflows, even in float32
NEUTRAL_STD = 1 / math.sqrt(2 * math.pi * math.e)
# an imperfect encoder: posterior mean moved by one posterior standard deviation, variance doubled
SHIFT, WIDEN = 1.0, 2.0

USE_THE_MODEL = (
    "compute log p(x | z) with model.log_px_given_z(x, z), not from decode(): the estimator must work "
    "for any decoder (this check uses a Gaussian one)"
)


class LinearGaussian(nn.Module):
    """p(z) = N(0, I), p(x | z) = N(W z + b, s² I); encode gives p(z | x), or a shifted/widened version."""

    def __init__(
        self,
        latent_dim: int = 2,
        noise_std: float = NEUTRAL_STD,
        shift: float = 0.0,
        widen: float = 1.0,
        dtype: torch.dtype = torch.float64,
        seed: int = 0,
    ):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(NUM_PIXELS, latent_dim, generator=g, dtype=torch.float64))
        scales = torch.linspace(0.8, 1.6, latent_dim, dtype=torch.float64)
        self.latent_dim = latent_dim
        self.W = nn.Parameter((q * scales).to(dtype), requires_grad=False)  # (784, D)
        self.b = nn.Parameter(
            (0.2 * torch.randn(NUM_PIXELS, generator=g, dtype=torch.float64)).to(dtype), requires_grad=False
        )  # (784,)
        self.noise_var = noise_std**2
        self.shift, self.widen = shift, widen
        # posterior p(z | x) = N(A (x − b), diag v): diagonal because Wᵀ W is
        v = 1 / (1 + scales**2 / self.noise_var)
        self.register_buffer("post_var", v.to(dtype))
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-3:]) == IMAGE_SHAPE:
            return x.flatten(-3)
        if x.shape[-1] == NUM_PIXELS:
            return x
        raise Mistake(
            f"the model got images of shape {tuple(x.shape)}: pass x as (B, 1, 28, 28) "
            f"(repeated or expanded over the samples if you like)",
            misconception="loglik.image_shape",
        )

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of the true posterior p(z | x), each (B, D)."""
        xc = self._flat(x).to(self.W.dtype) - self.b
        mean = (xc @ self.W) / self.noise_var * self.post_var
        return mean, self.post_var.expand_as(mean)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The deliberately imperfect encoder q(z | x): shifted, widened posterior; mu and logvar, each (B, D)."""
        mean, var = self.posterior(x)
        return mean + self.shift * var.sqrt(), torch.log(self.widen * var)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The mean image W z + b, (..., 1, 28, 28): not logits, this decoder is Gaussian."""
        return (z @ self.W.T + self.b).unflatten(-1, IMAGE_SHAPE)

    def forward(self, x):
        """A VAE-style forward pass: (decoded mean image (B, 1, 28, 28), mu (B, D), logvar (B, D))."""
        mu, logvar = self.encode(x)
        return self.decode(mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)), mu, logvar

    def log_px_given_z(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log N(x; W z + b, s² I) summed over pixels; x (..., 1, 28, 28), z (..., D) -> (...)."""
        xf = self._flat(x)
        mean = z.to(self.W.dtype) @ self.W.T + self.b
        lead = torch.broadcast_shapes(xf.shape[:-1], z.shape[:-1])
        self.calls.append(
            (
                xf.detach().expand(*lead, NUM_PIXELS).reshape(-1, NUM_PIXELS),
                z.detach().to(self.W.dtype).expand(*lead, self.latent_dim).reshape(-1, self.latent_dim),
            )
        )
        resid = xf.to(self.W.dtype) - mean
        return -0.5 * resid.pow(2).sum(-1) / self.noise_var - 0.5 * NUM_PIXELS * math.log(2 * math.pi * self.noise_var)

    # --- oracles -----------------------------------------------------------------------

    def marginal(self) -> torch.distributions.Distribution:
        """The exact marginal p(x) = N(b, W Wᵀ + s² I) over flattened images (784,)."""
        cov_diag = torch.full((NUM_PIXELS,), self.noise_var, dtype=self.W.dtype)
        return torch.distributions.LowRankMultivariateNormal(self.b, self.W, cov_diag)

    def log_px(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log p(x), (B,)."""
        return self.marginal().log_prob(self._flat(x).to(self.W.dtype))

    def elbo(self, x: torch.Tensor) -> torch.Tensor:
        """Exact ELBO of the encoder: log p(x) − KL(q(z | x) || p(z | x)), (B,)."""
        mean, var = self.posterior(x)
        mu, logvar = self.encode(x)
        q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
        p = torch.distributions.Normal(mean, var.sqrt())
        return self.log_px(x) - torch.distributions.kl_divergence(q, p).sum(-1)

    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        """n images from the model, (n, 1, 28, 28)."""
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.latent_dim, generator=g, dtype=self.W.dtype)
        noise = math.sqrt(self.noise_var) * torch.randn(n, NUM_PIXELS, generator=g, dtype=self.W.dtype)
        return (z @ self.W.T + self.b + noise).unflatten(-1, IMAGE_SHAPE)

    def images_with_log_px(self, targets: list[float]) -> torch.Tensor:
        """Images whose exact log p(x) is each target (as far as the model allows), (n, 1, 28, 28).

        x = b + r·u with u a unit vector orthogonal to the columns of W, so that
        log p(x) = log p(b) − r² / (2 s²): r is chosen to hit the target.
        """
        g = torch.Generator().manual_seed(1)
        u = torch.randn(NUM_PIXELS, generator=g, dtype=torch.float64)
        w = self.W.double()
        u = u - w @ torch.linalg.solve(w.T @ w, w.T @ u)
        u = u / u.norm()
        top = float(self.marginal().log_prob(self.b).double())
        rows = []
        for t in targets:
            require(
                t <= top, f"internal: no image has log p(x) = {t}", misconception="loglik.internal"
            )  # pragma: no cover - a check bug
            rows.append(self.b.double() + math.sqrt(2 * self.noise_var * (top - t)) * u)
        return torch.stack(rows).to(self.W.dtype).unflatten(-1, IMAGE_SHAPE)


def relative_weight_variance(latent_dim: int, shift: float = SHIFT, widen: float = WIDEN) -> float:
    """Var[w / p(x)] for z ~ q: one factor per dimension, c/√(2c−1)·exp(δ²/(2c−1)) for q = N(δ, c) vs N(0, 1)."""
    per_dim = widen / math.sqrt(2 * widen - 1) * math.exp(shift**2 / (2 * widen - 1))
    return per_dim**latent_dim - 1


# --- calling the student's function ---------------------------------------------------


def _estimate(
    log_likelihood_estimate, model: LinearGaussian, x: torch.Tensor, num_samples: int, what: str
) -> torch.Tensor:
    """Call the student's function; check it used the model and returned a tensor. Shape is the shape check's job."""
    model.calls.clear()
    out = log_likelihood_estimate(model, x, num_samples)
    require(
        model.calls,
        "log_likelihood_estimate never called model.log_px_given_z: " + USE_THE_MODEL,
        misconception="loglik.model_unused",
    )
    require(
        isinstance(out, torch.Tensor),
        f"log_likelihood_estimate should return a tensor of estimates, got {type(out).__name__}",
        misconception="loglik.not_tensor",
    )
    out = out.detach().double()
    require(
        bool(torch.isfinite(out).all()),
        f"the estimate is not finite (inf or nan) {what}: exp() of a log-weight overflows when it is large "
        f"and underflows to 0 when it is very negative (its log is then -inf); work with the log-weights "
        f"and torch.logsumexp over the samples, never with exp() of them",
        misconception="loglik.not_finite",
    )
    return out


def _per_image(out: torch.Tensor, truth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Compare like with like: a single number (the shape check's mistake) is compared with the batch mean."""
    if out.dim() == 0 or out.numel() == 1:
        return out.reshape(()), truth.mean()
    require(
        tuple(out.shape) == tuple(truth.shape),
        f"expected one estimate per image, shape {tuple(truth.shape)}; got {tuple(out.shape)}: "
        f"reduce over the samples only (logsumexp over that dimension)",
        misconception="loglik.shape",
    )
    return out, truth


def _samples_per_image(model: LinearGaussian, x: torch.Tensor) -> list[torch.Tensor] | None:
    """The z's the student passed to log_px_given_z, grouped by image; None if they cannot be told apart."""
    xs = torch.cat([c[0] for c in model.calls])
    zs = torch.cat([c[1] for c in model.calls])
    probe = torch.linspace(-1, 1, NUM_PIXELS, dtype=xs.dtype)
    keys = model._flat(x).to(xs.dtype) @ probe  # (B,)
    row_keys = xs @ probe  # (N,)
    dist = (row_keys[:, None] - keys[None, :]).abs()
    best = dist.argmin(dim=1)
    if float(dist.min(dim=1).values.max()) > 1e-6 * (1 + float(keys.abs().max())):
        return None
    return [zs[best == b] for b in range(len(x))]


def _log_mean_exp(log_w: torch.Tensor) -> torch.Tensor:
    """log of the mean of exp(log_w) over its K samples, without overflow: log_w (K,) -> scalar."""
    return torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])


def _candidates(model: LinearGaussian, x: torch.Tensor, groups: list[torch.Tensor], k: int) -> dict[str, torch.Tensor]:
    """The usual wrong estimates, computed on the student's own samples, per image."""
    mu, logvar = model.encode(x)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    prior = torch.distributions.Normal(0.0, 1.0)
    out: dict[str, list[torch.Tensor]] = {}
    for b, z in enumerate(groups):
        lpxz = model.log_px_given_z(x[b : b + 1], z)
        lpz = prior.log_prob(z).sum(-1)
        lqz = torch.distributions.Normal(q.loc[b], q.scale[b]).log_prob(z).sum(-1)
        for name, value in (
            ("recon_at_mean", model.log_px_given_z(x[b : b + 1], mu[b : b + 1])[0]),
            ("recon", lpxz.mean()),
            ("no_prior", _log_mean_exp(lpxz - lqz)),
            ("no_posterior", _log_mean_exp(lpxz + lpz)),
            ("plus_posterior", _log_mean_exp(lpxz + lpz + lqz)),
            ("mean_of_logs", (lpxz + lpz - lqz).mean()),
            ("no_log_k", torch.logsumexp(lpxz + lpz - lqz, 0)),
        ):
            out.setdefault(name, []).append(value)
    model.calls.clear()
    return {name: torch.stack(values) for name, values in out.items()}


MISTAKES = {
    "recon": "you return the reconstruction term, the average of log p(x | z) over z ~ q(z | x): that is "
    "the likelihood of x given codes chosen by looking at x, not the marginal likelihood log p(x). "
    "Each log-weight is log p(x | z) + log p(z) − log q(z | x)",
    "recon_at_mean": "you return log p(x | z) at the posterior mean (a reconstruction likelihood), not log p(x): "
    "sample num_samples codes z ~ q(z | x) and weight each by p(x | z) p(z) / q(z | x)",
    "no_prior": "log p(z) is missing from the log-weights: each is log p(x | z) + log p(z) − log q(z | x), "
    "with p(z) = N(0, I)",
    "no_posterior": "log q(z | x) is missing from the log-weights: each is log p(x | z) + log p(z) − log q(z | x), "
    "with q(z | x) = N(mu, diag exp(logvar)) from model.encode(x)",
    "plus_posterior": "log q(z | x) is added to the log-weights: it must be subtracted "
    "(the weight is p(x, z) / q(z | x))",
    "no_log_k": "the estimate is too large by log K: average the K weights (logsumexp − log K), do not sum them",
    "mean_of_logs": "you average the log-weights, which estimates the ELBO whatever K (the mean of the logs is not "
    "the log of the mean): average the weights themselves, in log space — logsumexp over the "
    "samples minus log K",
}


def _diagnose(model, x, est, k) -> tuple[str, str]:
    """The mistake whose value matches the student's estimate, if one does (from the last call's samples):
    (its words, its misconception id), or ("", "")."""
    groups = _samples_per_image(model, x)
    if groups is None:
        return "", ""
    counts = {len(g) for g in groups}
    if counts != {k}:
        return (
            f"you evaluated log p(x | z) for {sorted(counts)} code(s) per image with num_samples = {k}: "
            f"draw num_samples codes for every image"
        ), "loglik.wrong_sample_count"
    rtol = 1e-6 if model.W.dtype == torch.float64 else 1e-4
    for name, value in _candidates(model, x, groups, k).items():
        e, v = _per_image(est, value.double())
        if name in MISTAKES and torch.allclose(e, v, rtol=rtol, atol=1e-6):
            return MISTAKES[name], f"loglik.{name}"
    return "", ""


# what each bound check says when it fails: (message, hint used when no known mistake explains the estimate)
BOUND_MESSAGES = {
    "loglik.not_elbo_at_k1": (
        "with num_samples = 1 the estimate should equal the ELBO on average (a single weight p(x, z) / q(z | x))",
        "check log p(x | z), log p(z) and log q(z | x)",
    ),
    "loglik.not_rising": (
        "with 100 samples the estimate {words}",
        "the average of K weights should approach p(x) as K grows; check that you average the weights, "
        "not their logs (logsumexp over the samples minus log K)",
    ),
    "loglik.above_log_px": (
        "with 100 samples the estimate lies above log p(x) on average, which importance sampling cannot do",
        "check that you subtract log K and subtract (not add) log q(z | x)",
    ),
    "loglik.not_converging": (
        "with 500 samples the estimate has not converged to log p(x)",
        "with an encoder close to the posterior it should approach log p(x) as K grows (check the "
        "log-weights and logsumexp − log K)",
    ),
    "loglik.not_exact": (
        "when the encoder is the true posterior, every weight p(x, z) / q(z | x) equals p(x), so the "
        "estimate must equal log p(x) for any number of samples; yours does not",
        "check the three log-densities (Gaussian constants, logvar = log σ²) and that you average "
        "the weights (logsumexp − log K)",
    ),
    "loglik.unstable": (
        "the estimate is inaccurate when the log-weights are large in magnitude",
        "compute it in log space with torch.logsumexp (which subtracts the largest log-weight before exponentiating)",
    ),
}


def _require(ok: bool, at: tuple, *, misconception: str, **words: str) -> None:
    """Pass if ok; else fail with BOUND_MESSAGES[misconception], naming the mistake that explains the estimate.

    at: (model, x, est, k), the call the estimate `est` came from (for the diagnosis); words fill the
    message's {placeholders}. The misconception id is the diagnosed mistake's (e.g. loglik.no_prior),
    else `misconception`.
    """
    if not ok:
        message, hint = BOUND_MESSAGES[misconception]
        found, mistake = _diagnose(*at)
        raise Mistake(f"{message.format(**words)}: {found or hint}", misconception=mistake or misconception)


# --- the checks -----------------------------------------------------------------------


def check_shape(log_likelihood_estimate) -> None:
    """One finite estimate per image, shape (B,), for any batch size and number of samples."""
    model = LinearGaussian(latent_dim=2, shift=SHIFT, widen=WIDEN, seed=0)
    x = model.sample(5, seed=1)
    torch.manual_seed(0)
    for batch, k in ((5, 1), (5, 7), (1, 7)):
        out = _estimate(log_likelihood_estimate, model, x[:batch], k, "on a small model")
        if out.dim() == 0 and batch == 1:
            raise Mistake(
                "for a batch of one image the estimate should still have shape (1,): "
                "do not squeeze away the batch dimension",
                misconception="loglik.squeezed_batch",
            )
        if out.dim() == 0:
            raise Mistake(
                "log_likelihood_estimate returns one number for the whole batch: return one "
                "estimate per image, shape (B,) (reduce over the samples, not over the images)",
                misconception="loglik.batch_reduced",
            )
        require(
            tuple(out.shape) == (batch,),
            f"log_likelihood_estimate(model, x, num_samples={k}) for {batch} image(s) should have shape "
            f"({batch},); got {tuple(out.shape)}: reduce over the num_samples samples only",
            misconception="loglik.shape",
        )


def check_exact(log_likelihood_estimate) -> None:
    """With the true posterior as encoder every weight equals p(x): the estimate is exact for any K."""
    model = LinearGaussian(latent_dim=2, seed=2)
    x = model.sample(8, seed=3)
    truth = model.log_px(x)
    torch.manual_seed(0)
    for k in (1, 10, 50):
        est = _estimate(log_likelihood_estimate, model, x, k, "on a small model")
        e, t = _per_image(est, truth)
        _require(torch.allclose(e, t, rtol=1e-6, atol=1e-4), (model, x, est, k), misconception="loglik.not_exact")


def check_bounds(log_likelihood_estimate) -> None:
    """An imperfect encoder: the estimate is a lower bound on average, at the ELBO for K = 1, above it for larger K."""
    model = LinearGaussian(latent_dim=2, shift=SHIFT, widen=WIDEN, seed=4)
    relvar = relative_weight_variance(2)
    x = model.sample(256, seed=5)
    truth, elbo = model.log_px(x), model.elbo(x)
    gap = float((truth - elbo).mean())  # KL(q || p(z | x)), the same for every image
    torch.manual_seed(0)

    # K = 1: an unbiased estimate of the ELBO, never above log p(x) on average
    raw = _estimate(log_likelihood_estimate, model, x, 1, "with one sample")
    est1, e1 = _per_image(raw, elbo)
    diff = est1 - e1
    se = float(diff.std()) / math.sqrt(len(x)) if diff.dim() else 3.0 / math.sqrt(len(x))
    _require(abs(float(diff.mean())) < 5 * se + 1e-6, (model, x, raw, 1), misconception="loglik.not_elbo_at_k1")

    # K = 100: above the ELBO by most of the gap, and still not above log p(x)
    xs = x[:32]
    raw = _estimate(log_likelihood_estimate, model, xs, 100, "with 100 samples")
    est, t = _per_image(raw, truth[:32])
    _, e = _per_image(est, elbo[:32])
    mean_rise = float((est - e).mean())
    words = "stays at the ELBO" if abs(mean_rise) < 0.25 * gap else "does not rise enough above the ELBO"
    _require(mean_rise >= 0.5 * gap, (model, xs, raw, 100), misconception="loglik.not_rising", words=words)
    sd = math.sqrt(relvar / 100)
    _require(
        float((est - t).mean()) < 5 * sd / math.sqrt(est.numel()) + 1e-6,
        (model, xs, raw, 100),
        misconception="loglik.above_log_px",
    )

    # K = 500: close to log p(x)
    xs = x[:16]
    raw = _estimate(log_likelihood_estimate, model, xs, 500, "with 500 samples")
    est, t = _per_image(raw, truth[:16])
    sd = math.sqrt(relvar / 500)
    bias = relvar / (2 * 500)
    _require(
        abs(float((est - t).mean())) < 5 * sd / math.sqrt(est.numel()) + bias,
        (model, xs, raw, 500),
        misconception="loglik.not_converging",
    )


def check_stable(log_likelihood_estimate) -> None:
    """Finite and accurate when log-weights are huge (exp would overflow or underflow), also for large K."""
    cases = (
        # (dtype, noise std, targets for log p(x), K): float32 with each weight just below exp's limit
        # (their sum over the samples overflows), float64 far beyond the limit on both sides
        (torch.float32, 0.1, [87.0, 88.0], 200),
        (torch.float64, 0.01, [1500.0, 2500.0], 100),
        (torch.float64, NEUTRAL_STD, [-1500.0, -3000.0], 100),
    )
    torch.manual_seed(0)
    for dtype, std, targets, k in cases:
        model = LinearGaussian(latent_dim=2, noise_std=std, dtype=dtype, seed=6)
        x = model.images_with_log_px(targets)
        truth = model.log_px(x).double()
        raw = _estimate(
            log_likelihood_estimate,
            model,
            x,
            k,
            "when the log-weights are large in magnitude (exp of them overflows or underflows)",
        )
        est, t = _per_image(raw, truth)
        tol = 1e-4 * float(t.abs().max()) if dtype == torch.float32 else 1e-8 * float(t.abs().max())
        _require(
            torch.allclose(est, t, rtol=0, atol=max(tol, 1e-6)), (model, x, raw, k), misconception="loglik.unstable"
        )
