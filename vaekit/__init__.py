"""vaekit: the helpers a student should not spend time on.

Data loading, fast batches, plots, seeding/device, run budgets, self-checks,
checkpoints and carrying your own code between notebooks. Nothing graded lives
here: models, the reparameterization, the KL term, losses, training loops and
interpolation are written by you in the notebooks.

The names below are the whole public API (README.md, "vaekit"); everything else
is internal and may change between terms.
"""

# private aliases: `import vaekit` exposes only the names in __all__
import re as _re
from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _metadata_version
from pathlib import Path as _Path

from vaekit.batches import batches, binarize
from vaekit.budget import run_budget
from vaekit.checkpoints import load_checkpoint, save_checkpoint
from vaekit.checks import check_finite, check_gradient_flow, check_shape
from vaekit.coursework import export_parts, import_parts, workdir
from vaekit.data import load_mnist
from vaekit.env import setup
from vaekit.plots import (
    plot_beta_sweep,
    plot_interpolations,
    plot_latent_scatter,
    plot_manifold,
    plot_training_curves,
    show_images,
    show_reconstructions,
)
from vaekit.progress import progress


def _version() -> str:
    """The installed version; in a source checkout that was never installed, pyproject.toml's."""
    try:
        return _metadata_version("vaekit")
    except _PackageNotFoundError:
        pyproject = _Path(__file__).resolve().parent.parent / "pyproject.toml"
        # a regex, not tomllib: vaekit supports Python 3.10, which has no tomllib
        found = _re.search(r'^version = "([^"]+)"', pyproject.read_text(), _re.M) if pyproject.is_file() else None
        return found.group(1) if found else "0+unknown"


__version__ = _version()

__all__ = [
    "batches",
    "binarize",
    "check_finite",
    "check_gradient_flow",
    "check_shape",
    "export_parts",
    "import_parts",
    "load_checkpoint",
    "load_mnist",
    "plot_beta_sweep",
    "plot_interpolations",
    "plot_latent_scatter",
    "plot_manifold",
    "plot_training_curves",
    "progress",
    "run_budget",
    "save_checkpoint",
    "setup",
    "show_images",
    "show_reconstructions",
    "workdir",
]
