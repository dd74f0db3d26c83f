"""Hidden checks for 03_beta.ipynb."""

from __future__ import annotations

import torch

from autograder.checks import Recorder, close, require, swapped, toy_images
from autograder.checks import reference as ref


def check_evaluate_vae(evaluate_vae, namespace=None) -> None:
    """evaluate_vae returns loss, recon and kl in nats per image, averaged over images (not batches), in eval mode."""
    torch.manual_seed(0)
    # logvar pinned very low: z = mu up to 1e-7, so the oracle is exact
    model = Recorder(ref.TinyVAE(latent_dim=3, fixed_logvar=-32.0))
    with torch.no_grad():  # a decoder that expects black pixels: blank images cost far less than strokes
        model.inner.dec[2].bias.fill_(-4.0)
    model.train()
    x = toy_images(1000, seed=3)
    x[:100] = 0.0  # easy images in the last, smaller batch make a mean of batch means wrong
    x = x.flip(0)
    with swapped(namespace, vae_loss=ref.vae_loss, kl_divergence=ref.kl_divergence, reparameterize=ref.reparameterize):
        result = evaluate_vae(model, x, beta=2.0, batch_size=300)
    require(
        isinstance(result, dict) and all(k in result for k in ("loss", "recon", "kl")),
        "evaluate_vae should return a dict with 'loss', 'recon' and 'kl' (floats, nats per image)",
        misconception="evaluate_vae.result_format",
    )
    require(
        model.calls and all(not train and not grad for _, train, grad in model.calls),
        "evaluate in evaluation mode (model.eval()) and without gradients (torch.no_grad())",
        misconception="evaluate_vae.not_eval_mode",
    )
    with torch.no_grad():
        mu, logvar = model.inner.encode(x)
        recon = ref.recon_oracle(x, model.inner.decode(mu)).mean()
        kl = ref.kl_oracle(mu.double(), logvar.double()).mean()
    got = {k: torch.tensor(float(result[k]), dtype=torch.float64) for k in ("loss", "recon", "kl")}
    require(
        close(got["recon"], recon, rtol=1e-3),
        "recon is not the average over all images: with a smaller last batch, weight each batch by its "
        "size (or sum per-image values and divide by the number of images)",
        misconception="evaluate_vae.mean_of_batch_means",
    )
    require(
        close(got["kl"], kl, rtol=1e-3),
        "kl is not the average KL over all images",
        misconception="evaluate_vae.kl_wrong",
    )
    require(
        close(got["loss"], recon + 2.0 * kl, rtol=1e-3),
        "loss should be recon + beta·kl averaged over all images",
        misconception="evaluate_vae.loss_wrong",
    )


def check_count_active_units(count_active_units) -> None:
    """count_active_units counts latent dimensions whose mu (N, D) varies over the data (dim=0) above the threshold."""
    torch.manual_seed(0)
    n = 4000
    variances = torch.tensor([0.0, 1e-4, 0.004, 0.03, 1.0, 4.0])
    means = torch.tensor([5.0, -3.0, 0.0, 0.0, 2.0, 0.0])  # large means with no spread are still inactive
    mu = means + torch.randn(n, 6) * variances.sqrt()
    got = count_active_units(mu)
    require(
        int(got) == 3,
        "count_active_units should count the latent dimensions whose posterior mean varies across "
        "the data set (variance of mu[:, d] over images, dim=0) by more than the threshold",
        misconception="active_units.wrong_statistic",
    )
    require(
        int(count_active_units(mu, threshold=0.5)) == 2,
        "count_active_units should use its threshold argument",
        misconception="active_units.ignores_threshold",
    )
    require(
        isinstance(got, int) or (isinstance(got, torch.Tensor) and got.dim() == 0),
        "count_active_units should return a single integer",
        misconception="active_units.not_integer",
    )
