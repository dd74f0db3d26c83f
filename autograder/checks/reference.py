"""Reference pieces the checks swap in, and tiny models to train on. Hidden."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

IMAGE_SHAPE = (1, 28, 28)
NUM_PIXELS = 28 * 28


def reparameterize(mu, logvar):
    """z = mu + σ·ε with σ = exp(0.5·logvar), ε ~ N(0, I); mu, logvar and z (B, D)."""
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


def kl_divergence(mu, logvar):
    """KL(N(mu, σ²) || N(0, I)) in closed form, summed over latent dims: (B, D) -> (B,)."""
    # Kingma & Welling 2013, Appendix B
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)


def kl_oracle(mu, logvar):
    """KL(q || N(0, I)) per sample from torch.distributions (an independent oracle)."""
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    return torch.distributions.kl_divergence(q, p).sum(dim=1)


def recon_oracle(x, logits):
    """Bernoulli negative log-likelihood summed over pixels, per sample (x may be grey levels)."""
    return -torch.distributions.Bernoulli(logits=logits, validate_args=False).log_prob(x).flatten(1).sum(dim=1)


def ae_loss(x, logits):
    """Bernoulli NLL of x (B, 1, 28, 28) under logits of the same shape, summed over pixels, mean over the batch."""
    return F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / x.shape[0]


def vae_loss(x, logits, mu, logvar, beta=1.0):
    """(loss, recon, kl), scalars: recon as in ae_loss, kl averaged over the batch, loss = recon + beta·kl."""
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / x.shape[0]
    kl = kl_divergence(mu, logvar).mean()
    return recon + beta * kl, recon, kl


class TinyAE(nn.Module):
    """A small MLP autoencoder: (B, 1, 28, 28) images -> (B, latent_dim) codes -> (B, 1, 28, 28) logits."""

    def __init__(self, latent_dim: int = 8):
        super().__init__()
        self.enc = nn.Sequential(nn.Flatten(), nn.Linear(NUM_PIXELS, 64), nn.ReLU(), nn.Linear(64, latent_dim))
        self.dec = nn.Sequential(
            nn.Linear(latent_dim, 64), nn.ReLU(), nn.Linear(64, NUM_PIXELS), nn.Unflatten(1, IMAGE_SHAPE)
        )

    def encode(self, x):
        """Codes (B, latent_dim) of images (B, 1, 28, 28)."""
        return self.enc(x)

    def decode(self, z):
        """Logits (B, 1, 28, 28) of codes (B, latent_dim)."""
        return self.dec(z)

    def forward(self, x):
        """decode(encode(x)): logits of the same shape as x."""
        return self.decode(self.encode(x))


class TinyVAE(nn.Module):
    """An MLP VAE; `fixed_logvar` pins the posterior variance (for exact oracles)."""

    def __init__(self, latent_dim: int = 4, fixed_logvar: float | None = None):
        super().__init__()
        self.fixed_logvar = fixed_logvar
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(NUM_PIXELS, 64), nn.ReLU())
        self.to_mu = nn.Linear(64, latent_dim)
        self.to_logvar = nn.Linear(64, latent_dim)
        self.dec = nn.Sequential(
            nn.Linear(latent_dim, 64), nn.ReLU(), nn.Linear(64, NUM_PIXELS), nn.Unflatten(1, IMAGE_SHAPE)
        )

    def encode(self, x):
        """mu and logvar, each (B, latent_dim), of images (B, 1, 28, 28); logvar pinned if fixed_logvar is set."""
        h = self.body(x)
        logvar = self.to_logvar(h)
        if self.fixed_logvar is not None:
            logvar = torch.full_like(logvar, self.fixed_logvar)
        return self.to_mu(h), logvar

    def decode(self, z):
        """Logits (B, 1, 28, 28) of codes (B, latent_dim)."""
        return self.dec(z)

    def forward(self, x):
        """(logits (B, 1, 28, 28) of a reparameterized sample, mu (B, latent_dim), logvar (B, latent_dim))."""
        mu, logvar = self.encode(x)
        return self.decode(reparameterize(mu, logvar)), mu, logvar
