"""Hidden checks for 04_interpolation.ipynb."""

from __future__ import annotations

import torch

from autograder.checks import Recorder, close, require, seed_all
from autograder.checks import reference as ref


def check_interpolate(interpolate) -> None:
    """interpolate(z_start (D,), z_end (D,), steps) is a (steps, D) straight path including both end points."""
    torch.manual_seed(0)
    a, b = torch.randn(5), torch.randn(5)
    for steps in (2, 7):
        path = interpolate(a, b, steps)
        require(
            isinstance(path, torch.Tensor) and tuple(path.shape) == (steps, 5),
            f"interpolate(z_start, z_end, {steps}) should have shape ({steps}, 5); "
            f"got {getattr(path, 'shape', type(path))}",
            misconception="interpolate.shape",
        )
        require(
            close(path[0], a) and close(path[-1], b),
            "the path should start exactly at z_start and end exactly at z_end (both end points included)",
            misconception="interpolate.end_points",
        )
        diffs = path[1:] - path[:-1]
        require(
            close(diffs, diffs[:1].expand_as(diffs), atol=1e-5),
            "the steps are not evenly spaced along the straight line: use weights t = 0, 1/(n−1), …, 1",
            misconception="interpolate.uneven_steps",
        )
    path64 = interpolate(a.double(), b.double(), 4)
    require(
        path64.dtype == torch.float64,
        "interpolate should keep the dtype of its inputs",
        misconception="interpolate.dtype",
    )


def check_latent_code(latent_code) -> None:
    """latent_code(vae, x) returns the posterior mean mu (B, D), computed in eval mode, never a sample."""
    torch.manual_seed(0)
    x = torch.rand(6, 1, 28, 28)
    vae = Recorder(ref.TinyVAE(latent_dim=3))
    vae.train()
    seed_all(1)
    z1 = latent_code(vae, x)
    seed_all(2)  # a sample would differ between the two calls, whatever generator it came from
    z2 = latent_code(vae, x)
    require(
        isinstance(z1, torch.Tensor) and tuple(z1.shape) == (6, 3),
        f"latent_code of a VAE with latent_dim=3 should return shape (6, 3); got {getattr(z1, 'shape', type(z1))}",
        misconception="latent_code.shape",
    )
    require(
        close(z1, z2),
        "latent_code is random: for a VAE use the posterior mean mu, not a sample",
        misconception="latent_code.sampled",
    )
    with torch.no_grad():
        mu, _ = vae.inner.encode(x)
    require(
        close(z1, mu),
        "for a VAE, latent_code should return the posterior mean mu from encode",
        misconception="latent_code.not_mu",
    )
    require(
        all(not train and not grad for _, train, grad in vae.calls),
        "encode in evaluation mode (model.eval()) and without gradients (torch.no_grad())",
        misconception="latent_code.not_eval_mode",
    )
    ae = Recorder(ref.TinyAE(latent_dim=5))
    code = latent_code(ae, x)
    with torch.no_grad():
        require(
            close(code, ae.inner.encode(x)),
            "for an auto-encoder, latent_code should return encode(x)",
            misconception="latent_code.ae_not_encode",
        )
