"""Every plot helper renders headless to a real PNG and returns a Figure."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.image
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

import vaekit

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def rendered(fig, path: Path) -> np.ndarray:
    """Save `fig` as PNG, check the file, and return its pixels."""
    assert isinstance(fig, Figure), f"expected a matplotlib Figure, got {type(fig).__name__}"
    fig.savefig(path, format="png", dpi=50)
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 500, f"{path.name} is only {len(data)} bytes"
    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and min(pixels.shape[:2]) > 20
    assert pixels[..., :3].std() > 0.02, "the figure is blank"
    return pixels


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def test_show_images(images, tmp_path):
    fig = vaekit.show_images(images, nrow=4, title="samples")
    rendered(fig, tmp_path / "grid.png")
    ax = fig.axes[0]
    assert ax.get_title() == "samples"
    grid = ax.images[0].get_array()
    assert grid.shape == (4 * 29 + 1, 4 * 29 + 1)  # 4 x 4 tiles of 28 pixels, 1 pixel apart


def test_show_images_takes_numpy_without_channel_and_clips(tmp_path):
    x = np.linspace(-1, 2, 5 * 28 * 28).reshape(5, 28, 28)
    fig = vaekit.show_images(x, nrow=5)
    rendered(fig, tmp_path / "np.png")
    grid = fig.axes[0].images[0].get_array()
    assert grid.min() >= 0.0 and grid.max() <= 1.0


def test_show_images_rejects_other_shapes():
    with pytest.raises(ValueError, match=r"expected images of shape"):
        vaekit.show_images(torch.rand(28, 28))


def test_show_reconstructions(images, tmp_path):
    fig = vaekit.show_reconstructions(images, images.flip(0), n=6)
    rendered(fig, tmp_path / "recon.png")
    grid = fig.axes[0].images[0].get_array()
    assert grid.shape == (2 * 29 + 1, 6 * 29 + 1)  # two rows of six


def test_show_reconstructions_needs_as_many_of_each(images):
    with pytest.raises(ValueError, match="got 3 originals but 2 reconstructions"):
        vaekit.show_reconstructions(images[:3], images[:2])


def test_plot_training_curves(tmp_path):
    history = {"loss": [3.0, 2.0, 1.5], "val_loss": [3.2, 2.4, 2.0], "kl": [0.1, 0.5, 0.7]}
    fig = vaekit.plot_training_curves(history, title="VAE")
    rendered(fig, tmp_path / "curves.png")
    assert [ax.get_title() for ax in fig.axes] == ["loss", "kl"]
    assert len(fig.axes[0].lines) == 2 and len(fig.axes[1].lines) == 1
    assert list(fig.axes[0].lines[0].get_ydata()) == history["loss"]


def test_plot_training_curves_ticks_whole_epochs(tmp_path):
    fig = vaekit.plot_training_curves({"loss": [3.0, 2.0, 1.5]})
    rendered(fig, tmp_path / "ticks.png")
    ticks = fig.axes[0].get_xticks()
    assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks), f"epoch ticks {list(ticks)}"


def test_plot_training_curves_refuses_an_empty_history():
    with pytest.raises(ValueError, match="history is empty"):
        vaekit.plot_training_curves({"val_loss": [1.0]})


@pytest.mark.parametrize("dim", [2, 5])
def test_plot_latent_scatter(dim, tmp_path):
    g = torch.Generator().manual_seed(0)
    z, labels = torch.randn(300, dim, generator=g), torch.randint(0, 10, (300,), generator=g)
    fig = vaekit.plot_latent_scatter(z, labels, max_points=200)
    rendered(fig, tmp_path / f"scatter{dim}.png")
    ax = fig.axes[0]
    assert len(ax.collections[0].get_offsets()) == 200
    if dim == 2:
        assert ax.get_xlabel() == "z[0]"
        np.testing.assert_allclose(ax.collections[0].get_offsets(), z[:200].numpy())
    else:
        assert ax.get_xlabel() == "principal component 1"
        assert "PCA of 5 dimensions" in ax.get_title()


@pytest.mark.parametrize("logits", [True, False])
def test_plot_manifold(logits, tmp_path):
    seen = []

    def decode(z: torch.Tensor) -> torch.Tensor:
        seen.append(z)
        # small, lopsided logits: a sigmoid and a clip give different pictures, and so do flipped axes
        out = (0.3 * z[:, :1, None, None] + 0.1 * z[:, 1:, None, None]).expand(-1, 1, 28, 28)
        return out if logits else torch.sigmoid(out)

    fig = vaekit.plot_manifold(decode, grid_size=7, logits=logits)
    rendered(fig, tmp_path / "manifold.png")
    (z,) = seen
    assert z.shape == (49, 2)
    q = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(0.05, 0.95, 7))
    torch.testing.assert_close(torch.unique(z[:, 0]), q)  # Gaussian quantiles on each axis
    grid = torch.as_tensor(np.asarray(fig.axes[0].images[0].get_array()), dtype=torch.float32)
    assert grid.shape == (7 * 29 + 1, 7 * 29 + 1)
    top, bottom, left, right = slice(1, 29), slice(-29, -1), slice(1, 29), slice(-29, -1)
    corners = [  # rows, columns, z[0], z[1]: z[1] grows upwards, z[0] to the right
        (top, left, q[0], q[-1]),
        (top, right, q[-1], q[-1]),
        (bottom, left, q[0], q[0]),
        (bottom, right, q[-1], q[0]),
    ]
    for rows, cols, z0, z1 in corners:
        expected = torch.sigmoid(0.3 * z0 + 0.1 * z1)
        torch.testing.assert_close(grid[rows, cols], expected.expand(28, 28), atol=1e-5, rtol=0)


def test_plot_interpolations(tmp_path):
    g = torch.Generator().manual_seed(1)
    strips = {name: torch.rand(3, 6, 1, 28, 28, generator=g) for name in ("AE", "VAE")}
    fig = vaekit.plot_interpolations(strips)
    rendered(fig, tmp_path / "interp.png")
    assert [ax.get_ylabel() for ax in fig.axes] == ["AE", "VAE"] * 3


def test_plot_interpolations_refuses_nothing():
    with pytest.raises(ValueError, match="strips is empty"):
        vaekit.plot_interpolations({})


def test_plot_beta_sweep(tmp_path):
    g = torch.Generator().manual_seed(2)
    results = [
        {"beta": b, "recon": r, "kl": k, "samples": torch.rand(8, 1, 28, 28, generator=g)}
        for b, r, k in [(4.0, 120.0, 5.0), (0.5, 80.0, 30.0), (1.0, 95.0, 20.0)]
    ]
    fig = vaekit.plot_beta_sweep(results)
    rendered(fig, tmp_path / "beta.png")
    assert [ax.get_title() for ax in fig.axes[:3]] == ["β=0.5", "β=1", "β=4"]
    trade_off = fig.axes[3]
    assert list(trade_off.lines[0].get_xdata()) == [30.0, 20.0, 5.0]


def test_plot_beta_sweep_refuses_nothing():
    with pytest.raises(ValueError, match="results is empty"):
        vaekit.plot_beta_sweep([])


def test_plots_do_not_pile_up_in_pyplot(images):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    vaekit.show_images(images)
    vaekit.show_reconstructions(images, images)
    vaekit.plot_training_curves({"loss": [1.0, 0.5]})
    assert plt.get_fignums() == before


def test_plots_accept_tensors_that_require_grad(images, tmp_path):
    x = images.clone().requires_grad_(True) * 1.0
    rendered(vaekit.show_reconstructions(images, x), tmp_path / "grad.png")


def test_figures_render_themselves_in_a_notebook(images):
    # figures made without pyplot carry their own PNG for Jupyter's rich display
    png = vaekit.show_images(images)._repr_png_()
    assert png[:8] == PNG_MAGIC and len(png) > 1000
