"""vaekit: the helpers a student should not spend time on.

Data loading, fast batches, plots, seeding/device, run budgets, self-checks,
checkpoints and carrying your own code between notebooks. Nothing graded lives
here: models, the reparameterization, the KL term, losses, training loops and
interpolation are written by you in the notebooks.
"""
from vaekit.batches import Batches, batches, binarize
from vaekit.budget import Budget, is_fast, run_budget
from vaekit.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from vaekit.checks import (
    SelfCheckError,
    check_dtype,
    check_finite,
    check_gradient_flow,
    check_shape,
)
from vaekit.coursework import WorkdirError, export_parts, import_parts, workdir
from vaekit.data import DataNotFoundError, DataSplits, load_mnist
from vaekit.env import in_colab, pick_device, seed_everything, setup
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

__version__ = "0.1.0"

__all__ = [
    "Batches", "batches", "binarize",
    "Budget", "is_fast", "run_budget",
    "CheckpointError", "load_checkpoint", "save_checkpoint",
    "SelfCheckError", "check_dtype", "check_finite", "check_gradient_flow", "check_shape",
    "WorkdirError", "export_parts", "import_parts", "workdir",
    "DataNotFoundError", "DataSplits", "load_mnist",
    "in_colab", "pick_device", "seed_everything", "setup",
    "plot_beta_sweep", "plot_interpolations", "plot_latent_scatter", "plot_manifold",
    "plot_training_curves", "show_images", "show_reconstructions",
    "progress",
]
