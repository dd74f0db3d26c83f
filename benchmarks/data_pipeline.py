"""Seconds per training epoch of a small VAE, fed three ways.

(a) DataLoader: a Dataset that stores uint8 images and, per item, does what
    torchvision's `datasets.MNIST.__getitem__` does (a PIL image, then
    `transforms.ToTensor()`), behind `DataLoader(batch_size=128, shuffle=True)`.
    torchvision's own MNIST class refuses to load without the training files, which
    this machine does not have, so the benchmark re-creates its item access.
(b) bare loop: one preloaded float tensor indexed with `torch.randperm`, the floor.
(c) vaekit: `vaekit.batches(x, batch_size=128, shuffle=True, seed=0)`.

Each method trains its own copy of the same model (same initial weights) for one
warm-up epoch and then `--repeats` timed epochs. The order of the methods rotates
from repeat to repeat so that no method always runs first or last; the median is
reported. Targets: vaekit/bare <= 1.15, DataLoader/vaekit >= 8.

    python benchmarks/data_pipeline.py                      # MNIST test split, 10k
    python benchmarks/data_pipeline.py --dataset fashion-mnist   # 60k train split
    python benchmarks/data_pipeline.py --device cuda        # data resident on the GPU
    python benchmarks/data_pipeline.py --profile            # where an epoch's time goes
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import platform
import pstats
import statistics
import time
from collections.abc import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

try:  # what torchvision's MNIST calls: Image.fromarray(img.numpy(), mode="L") across Pillow versions
    from torchvision.utils import _Image_fromarray as image_fromarray
except ImportError:  # older torchvision
    from PIL import Image

    def image_fromarray(obj, mode):
        """PIL's own call, as older torchvision makes it."""
        return Image.fromarray(obj, mode=mode)


from bench_data import DATASETS, add_data_arguments, data_root, load_splits

import vaekit

IMAGE_SIZE = 28
IMAGE_DIM = IMAGE_SIZE * IMAGE_SIZE
HIDDEN_DIM = 400
LATENT_DIM = 20
BATCH_SIZE = 128


# ---------------------------------------------------------------------------------
# The model of pytorch/examples vae/main.py (784-400-20 MLP, Bernoulli decoder),
# with named dimensions and layers; the decoder returns logits.
# model_quality.py imports it from here so that both benchmarks use the same one.
# ---------------------------------------------------------------------------------
class ExamplesVAE(nn.Module):
    """pytorch/examples' VAE: x (B, 1, 28, 28) in [0, 1] -> logits (B, 1, 28, 28), mu, logvar (B, latent_dim)."""

    def __init__(self, image_dim: int = IMAGE_DIM, hidden_dim: int = HIDDEN_DIM, latent_dim: int = LATENT_DIM):
        super().__init__()
        self.encoder_hidden = nn.Linear(image_dim, hidden_dim)
        self.encoder_mu = nn.Linear(hidden_dim, latent_dim)
        self.encoder_logvar = nn.Linear(hidden_dim, latent_dim)
        self.decoder_hidden = nn.Linear(latent_dim, hidden_dim)
        self.decoder_out = nn.Linear(hidden_dim, image_dim)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, 1, 28, 28) -> mu, logvar: (B, latent_dim) each."""
        h = F.relu(self.encoder_hidden(x.flatten(1)))
        return self.encoder_mu(h), self.encoder_logvar(h)

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """z = mu + σ·ε with σ = exp(logvar / 2), ε ~ N(0, I); (B, latent_dim)."""
        std = torch.exp(0.5 * logvar)
        return mu + torch.randn_like(std) * std

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z: (B, latent_dim) -> Bernoulli logits (B, 1, 28, 28)."""
        logits = self.decoder_out(F.relu(self.decoder_hidden(z)))
        return logits.view(-1, 1, IMAGE_SIZE, IMAGE_SIZE)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x: (B, 1, 28, 28) -> logits (B, 1, 28, 28), mu, logvar (B, latent_dim)."""
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


def negative_elbo(logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Summed over the batch, in nats: Bernoulli reconstruction (BCE summed over pixels) + KL."""
    reconstruction = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
    # KL(N(mu, sigma^2) || N(0, I)) in closed form: Kingma & Welling 2013, Appendix B
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return reconstruction + kl


# ---------------------------------------------------------------------------------
# The three ways to feed it
# ---------------------------------------------------------------------------------
class MNISTLikeDataset(Dataset):
    """torchvision.datasets.MNIST's storage and item access, without its file checks.

    data: (N, 28, 28) uint8; targets: (N,) int64. An item is (transform(PIL image), int).
    """

    def __init__(self, data: torch.Tensor, targets: torch.Tensor, transform: Callable | None = None):
        self.data, self.targets, self.transform = data, targets, transform

    def __getitem__(self, index: int):
        # as in torchvision/datasets/mnist.py, MNIST.__getitem__
        img, target = self.data[index], int(self.targets[index])
        img = image_fromarray(img.numpy(), mode="L")
        if self.transform is not None:
            img = self.transform(img)
        return img, target

    def __len__(self) -> int:
        return len(self.data)


class BareLoop:
    """The floor: a fresh permutation, then one indexing operation per minibatch."""

    def __init__(self, x: torch.Tensor, batch_size: int, seed: int = 0):
        self.x, self.batch_size = x, batch_size
        self.generator = torch.Generator(device=x.device).manual_seed(seed)

    def __iter__(self) -> Iterator[torch.Tensor]:
        order = torch.randperm(len(self.x), generator=self.generator, device=self.x.device)
        for start in range(0, len(self.x), self.batch_size):
            yield self.x[order[start : start + self.batch_size]]


def images_only(loader: Iterable) -> Iterator[torch.Tensor]:
    """The images of each batch, whether a loader yields tensors or (images, labels)."""
    for batch in loader:
        yield batch[0] if isinstance(batch, (tuple, list)) else batch


def make_loaders(x_cpu: torch.Tensor, y_cpu: torch.Tensor, device: torch.device) -> dict[str, Iterable]:
    """Three re-iterable loaders over the same images; each `for` over one is an epoch."""
    # exact: the float images are uint8 / 255
    uint8_images = (x_cpu.squeeze(1) * 255).round().to(torch.uint8)
    dataset = MNISTLikeDataset(uint8_images, y_cpu, transform=transforms.ToTensor())
    pin = device.type == "cuda"  # as pytorch/examples does on a GPU
    x_resident = x_cpu.to(device)
    return {
        "DataLoader + ToTensor": DataLoader(
            dataset, batch_size=BATCH_SIZE, shuffle=True, generator=torch.Generator().manual_seed(0), pin_memory=pin
        ),
        "bare randperm loop": BareLoop(x_resident, BATCH_SIZE, seed=0),
        "vaekit.batches": vaekit.batches(x_resident, batch_size=BATCH_SIZE, shuffle=True, seed=0),
    }


def synchronize(device: torch.device) -> None:
    """Wait for the GPU's queued work, so that a timer stops when the work is done."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, loader: Iterable, device: torch.device) -> float:
    """One epoch; returns the mean loss in nats/image."""
    model.train()
    total, count = torch.zeros((), device=device), 0
    for x in images_only(loader):
        x = x.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        logits, mu, logvar = model(x)
        loss = negative_elbo(logits, x, mu, logvar)
        loss.backward()
        optimizer.step()
        total += loss.detach()
        count += len(x)
    return total.item() / count


def iterate_epoch(loader: Iterable, device: torch.device) -> None:
    """The data pipeline alone: every minibatch produced and moved, no model."""
    for x in images_only(loader):
        x.to(device, non_blocking=True)


def timed(fn: Callable[[], object], device: torch.device) -> tuple[float, float, object]:
    """(wall seconds, this process's CPU seconds, fn's result)."""
    synchronize(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    result = fn()
    synchronize(device)
    return time.perf_counter() - start, time.process_time() - cpu_start, result


def profile_epoch(label: str, fn: Callable[[], object], lines: int) -> None:
    """Print the `lines` functions that take the most own time while `fn()` runs."""
    profiler = cProfile.Profile()
    profiler.enable()
    fn()
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(lines)
    body = out.getvalue()
    print(f"\n--- cProfile, one training epoch, {label}: top {lines} by own time ---")
    print(body[body.index("   ncalls") :].rstrip())


def main() -> None:
    """Parse the command line, time every method, print the table and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=DATASETS, default="mnist")
    parser.add_argument("--device", default="cpu", help="cpu or cuda; on cuda (b) and (c) keep the data on the GPU")
    parser.add_argument("--repeats", type=int, default=5, help="timed epochs per method (median reported)")
    add_data_arguments(parser)
    parser.add_argument("--profile", action="store_true", help="also cProfile one epoch of (a) and (c)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    root = args.root or data_root()
    splits = load_splits(args.dataset, root, download=args.download)
    if args.dataset == "mnist" and len(splits.train_x) + len(splits.val_x) == 10_000:
        # all of the 10,000 test images: the benchmark measures speed, nothing is held out
        x, y = torch.cat([splits.train_x, splits.val_x]), torch.cat([splits.train_y, splits.val_y])
        what = f"MNIST test split, all {len(x):,} images (only the test split is on disk)"
    else:
        x, y = splits.train_x, splits.train_y
        what = f"{args.dataset} training split, {len(x):,} images"

    loaders = make_loaders(x, y, device)
    models, optimizers = {}, {}
    for name in loaders:
        torch.manual_seed(0)
        models[name] = ExamplesVAE().to(device)
        optimizers[name] = torch.optim.Adam(models[name].parameters(), lr=1e-3)

    def train(name: str) -> Callable[[], float]:
        return lambda: train_epoch(models[name], optimizers[name], loaders[name], device)

    def data_only(name: str) -> Callable[[], None]:
        return lambda: iterate_epoch(loaders[name], device)

    print(f"data: {what}; from {root}")
    print(
        f"model: pytorch/examples VAE {IMAGE_DIM}-{HIDDEN_DIM}-{LATENT_DIM} MLP, Bernoulli decoder (logits), "
        f"BCE summed over pixels + KL; Adam lr 1e-3, batch {BATCH_SIZE}, shuffle"
    )
    print(
        "(a) is not torchvision.datasets.MNIST itself (it refuses to load without the training files): it is a "
        "Dataset holding uint8 images whose __getitem__ does what MNIST's does, "
        "Image.fromarray(img.numpy(), mode='L') then transforms.ToTensor(); DataLoader num_workers=0"
    )
    print(
        f"device: {device} | torch {torch.__version__} | threads: torch.get_num_threads()={torch.get_num_threads()}, "
        f"interop={torch.get_num_interop_threads()}, os.cpu_count()={os.cpu_count()} | "
        f"{platform.processor() or platform.machine()}"
    )

    load_before = os.getloadavg()[0]
    names = list(loaders)
    for name in names:  # warm-up, not timed
        train(name)()
    epoch_times = {name: [] for name in names}
    cpu_times = {name: [] for name in names}
    data_times = {name: [] for name in names}
    losses = {}
    orders = []
    for repeat in range(args.repeats):
        order = names[repeat % len(names) :] + names[: repeat % len(names)]
        orders.append("".join("abc"[names.index(name)] for name in order))
        for name in order:
            seconds, cpu_seconds, losses[name] = timed(train(name), device)
            epoch_times[name].append(seconds)
            cpu_times[name].append(cpu_seconds)
        for name in order:
            data_times[name].append(timed(data_only(name), device)[0])
    print(f"{args.repeats} timed epochs per method after 1 warm-up epoch; order of the repeats: {', '.join(orders)}")

    load_after = os.getloadavg()[0]
    print(
        f"1-minute load average before/after the timed epochs: {load_before:.2f}/{load_after:.2f} "
        f"(other processes on the {os.cpu_count()} cores slow every method; the rotation spreads that evenly)"
    )
    median = {name: statistics.median(epoch_times[name]) for name in names}
    cpu_median = {name: statistics.median(cpu_times[name]) for name in names}
    data_median = {name: statistics.median(data_times[name]) for name in names}
    bare = median["bare randperm loop"]
    print()
    header = (
        f"{'method':<26}{'s/epoch (median)':>17}{'min-max':>15}{'vs bare':>9}"
        f"{'CPU s/epoch':>13}{'data only s':>13}{'loss/img':>10}"
    )
    print(header)
    print("-" * len(header))
    for label, name in zip("abc", names, strict=True):
        spread = f"{min(epoch_times[name]):.3f}-{max(epoch_times[name]):.3f}"
        print(
            f"({label}) {name:<22}{median[name]:>17.3f}{spread:>15}{median[name] / bare:>8.2f}x"
            f"{cpu_median[name]:>13.3f}{data_median[name]:>13.4f}{losses[name]:>10.1f}"
        )
    print("CPU s/epoch: this process's CPU time (all threads), median. data only s: the same epoch with no model,")
    print(
        "just producing (and moving) every minibatch, median. "
        "loss/img: that method's own model, last timed epoch, nats."
    )

    def paired(numerator: str, denominator: str) -> float:
        """Median over repeats of the per-repeat ratio: methods of one repeat ran seconds apart."""
        return statistics.median(n / d for n, d in zip(epoch_times[numerator], epoch_times[denominator], strict=True))

    if args.profile:
        profile_epoch("(c) vaekit.batches", train("vaekit.batches"), 12)
        profile_epoch("(a) DataLoader + ToTensor", train("DataLoader + ToTensor"), 12)

    vaekit_vs_bare = median["vaekit.batches"] / bare
    loader_vs_vaekit = median["DataLoader + ToTensor"] / median["vaekit.batches"]
    print()
    print(
        f"data pipeline alone: DataLoader/vaekit = "
        f"{data_median['DataLoader + ToTensor'] / data_median['vaekit.batches']:.0f}x, "
        f"vaekit/bare = {data_median['vaekit.batches'] / data_median['bare randperm loop']:.2f}x"
    )
    print(
        "training epoch, median of per-repeat ratios: "
        f"vaekit/bare = {paired('vaekit.batches', 'bare randperm loop'):.2f}, "
        f"DataLoader/vaekit = {paired('DataLoader + ToTensor', 'vaekit.batches'):.2f}"
    )
    print(
        f"vaekit/bare       = {vaekit_vs_bare:.2f}  (target <= 1.15: {'met' if vaekit_vs_bare <= 1.15 else 'NOT met'})"
    )
    print(f"DataLoader/vaekit = {loader_vs_vaekit:.2f}  (target >= 8: {'met' if loader_vs_vaekit >= 8 else 'NOT met'})")


if __name__ == "__main__":
    main()
