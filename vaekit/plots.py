"""Figures for the notebooks. Each function is pure and returns a `Figure`.

Figures are built without pyplot, so they work headless, never pile up in
memory, and show exactly once when a notebook cell returns them.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure as _MplFigure
from matplotlib.ticker import MaxNLocator

# what the plot helpers take: a tensor (detached and moved to the CPU for plotting) or a numpy array
Images = torch.Tensor | np.ndarray


class Figure(_MplFigure):
    """A matplotlib Figure that shows itself in any notebook.

    Jupyter renders figures made through pyplot; these are made without it (no
    global state, no double display), so they bring their own PNG rendering.
    """

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", bbox_inches="tight", dpi=80)
        return buffer.getvalue()


def _as_images(images: Images) -> np.ndarray:
    """(N, 1, H, W) / (N, H, W) tensor or array in [0, 1] -> (N, H, W) numpy."""
    x = images.detach().float().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images, float)
    if x.ndim == 4:
        x = x[:, 0]
    if x.ndim != 3:
        raise ValueError(f"expected images of shape (N, 1, H, W) or (N, H, W), got {x.shape}")
    return np.clip(x, 0.0, 1.0)


def _tile(images: np.ndarray, nrow: int, pad: int = 1) -> np.ndarray:
    n, h, w = images.shape
    ncol = -(-n // nrow)
    canvas = np.ones((ncol * (h + pad) + pad, nrow * (w + pad) + pad))
    for i, img in enumerate(images):
        r, c = divmod(i, nrow)
        canvas[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = img
    return canvas


def show_images(images: Images, nrow: int = 8, title: str | None = None, scale: float = 0.9) -> Figure:
    """A grid of images. images: (N, 1, 28, 28) in [0, 1]."""
    x = _as_images(images)
    grid = _tile(x, nrow)
    fig = Figure(figsize=(scale * nrow, scale * grid.shape[0] / grid.shape[1] * nrow + (0.4 if title else 0)))
    ax = fig.add_subplot()
    ax.imshow(grid, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.axis("off")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def show_reconstructions(
    originals: Images, reconstructions: Images, n: int = 10, title: str = "Originals (top) vs reconstructions (bottom)"
) -> Figure:
    """Two rows: originals, then their reconstructions. Both (N, 1, 28, 28) in [0, 1]."""
    a, b = _as_images(originals)[:n], _as_images(reconstructions)[:n]
    if len(a) != len(b):
        raise ValueError(f"got {len(a)} originals but {len(b)} reconstructions")
    return show_images(np.concatenate([a, b]), nrow=len(a), title=title)


def plot_training_curves(
    history: Mapping[str, Sequence[float]], title: str = "Training", xlabel: str = "epoch"
) -> Figure:
    """One panel per curve, e.g. `{"loss": [...], "recon": [...], "kl": [...]}`.

    Keys named `val_<name>` are drawn dashed in the panel of `<name>`.
    """
    names = [k for k in history if not k.startswith("val_")]
    if not names:
        raise ValueError("history is empty: pass a dict such as {'loss': [values per epoch]}")
    fig = Figure(figsize=(4 * len(names), 3))
    for i, name in enumerate(names):
        ax = fig.add_subplot(1, len(names), i + 1)
        values = list(history[name])
        ax.plot(range(1, len(values) + 1), values, marker="o", ms=3, label="train")
        if f"val_{name}" in history:
            val = list(history[f"val_{name}"])
            ax.plot(range(1, len(val) + 1), val, "--", marker="o", ms=3, label="validation")
            ax.legend()
        ax.set_title(name)
        ax.set_xlabel(xlabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_latent_scatter(z: Images, labels: Images, title: str = "Latent codes", max_points: int = 5000) -> Figure:
    """2-D scatter of codes coloured by label. z: (N, D); D > 2 is projected by PCA."""
    z = torch.as_tensor(z).detach().float().cpu()[:max_points]
    labels = torch.as_tensor(labels).cpu()[: len(z)]
    axes = ("z[0]", "z[1]")
    if z.shape[1] > 2:
        centred = z - z.mean(0)
        _, _, v = torch.pca_lowrank(centred, q=2, center=False)
        z = centred @ v[:, :2]
        axes = ("principal component 1", "principal component 2")
        title += f" (PCA of {centred.shape[1]} dimensions)"
    fig = Figure(figsize=(5.5, 4.5))
    ax = fig.add_subplot()
    points = ax.scatter(z[:, 0], z[:, 1], c=labels, cmap="tab10", s=4, alpha=0.7, vmin=-0.5, vmax=9.5)
    fig.colorbar(points, ax=ax, ticks=range(10), label="label")
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    ax.set_title(title)
    fig.tight_layout()
    return fig


@torch.no_grad()
def plot_manifold(
    decode: Callable[[torch.Tensor], torch.Tensor],
    grid_size: int = 15,
    device: torch.device | str = "cpu",
    logits: bool = True,
    title: str = "Decoded latent grid (2-D latent space)",
) -> Figure:
    """Decode a grid of 2-D codes spaced by the Gaussian inverse CDF (Kingma & Welling, Fig. 4).

    decode: maps (N, 2) codes to (N, 1, 28, 28) logits (or probabilities with logits=False).
    """
    probs = torch.linspace(0.05, 0.95, grid_size)
    values = torch.special.ndtri(probs)  # standard normal quantiles
    zy, zx = torch.meshgrid(values.flip(0), values, indexing="ij")
    z = torch.stack([zx.reshape(-1), zy.reshape(-1)], dim=1).to(device)
    out = decode(z)
    images = torch.sigmoid(out) if logits else out
    fig = show_images(images.reshape(-1, 1, *images.shape[-2:]), nrow=grid_size, title=title, scale=0.45)
    return fig


def plot_interpolations(strips: Mapping[str, torch.Tensor], title: str = "Latent interpolation") -> Figure:
    """Rows of interpolations, one per (pair, model).

    strips: {model name: (num_pairs, num_steps, 1, 28, 28) images in [0, 1]}; the
    models' rows for the same pair are drawn next to each other.
    """
    names = list(strips)
    if not names:
        raise ValueError("strips is empty: pass {'AE': images, 'VAE': images}")
    num_pairs, num_steps = strips[names[0]].shape[:2]
    fig = Figure(figsize=(0.75 * num_steps + 1.2, 0.8 * num_pairs * len(names) + 0.5))
    axes = fig.subplots(num_pairs * len(names), 1, squeeze=False)[:, 0]
    for p in range(num_pairs):
        for m, name in enumerate(names):
            ax = axes[p * len(names) + m]
            ax.imshow(_tile(_as_images(strips[name][p]), num_steps), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_ylabel(name, rotation=0, ha="right", va="center")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_beta_sweep(results: Sequence[Mapping[str, Any]], num_samples: int = 8) -> Figure:
    """Samples per β (one column each) and the reconstruction-vs-KL trade-off.

    results: one dict per β with keys `beta`, `recon`, `kl` (nats per image) and
    `samples` ((N, 1, 28, 28) in [0, 1]).
    """
    if not results:
        raise ValueError("results is empty: pass one dict per beta")
    results = sorted(results, key=lambda r: r["beta"])
    fig = Figure(figsize=(max(8, 1.3 * len(results) + 4), 5.5))
    grid = fig.add_gridspec(2, len(results) + 1, height_ratios=[1.3, 1])
    for i, r in enumerate(results):
        ax = fig.add_subplot(grid[0, i])
        imgs = _as_images(r["samples"])[:num_samples]
        ax.imshow(_tile(imgs, 2), cmap="gray", vmin=0, vmax=1)
        ax.axis("off")
        ax.set_title(f"β={r['beta']:g}", fontsize=9)
    ax = fig.add_subplot(grid[1, :])
    kl = [r["kl"] for r in results]
    recon = [r["recon"] for r in results]
    ax.plot(kl, recon, "-o")
    for r in results:
        ax.annotate(f"β={r['beta']:g}", (r["kl"], r["recon"]), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set_xlabel("KL (rate), nats per image")
    ax.set_ylabel("reconstruction (distortion), nats per image")
    ax.set_title("Rate–distortion trade-off")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
