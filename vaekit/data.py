"""MNIST as ready tensors.

`load_mnist()` returns images `(N, 1, 28, 28)` float32 in [0, 1] and integer
labels. Files are found or downloaded through torchvision (with its checksums and
mirrors). Offline it uses files already on disk, also when only the 10,000-image
test split is there; then it says so and splits that into train and validation.

The loader itself works for any data set in MNIST's file format (`_Dataset`);
benchmarks/bench_data.py uses it for Fashion-MNIST, which students never need.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from vaekit.batches import binarize as _binarize
from vaekit.env import _in_colab


@dataclass(frozen=True)
class _Dataset:
    """A data set in MNIST's IDX format: its name, torchvision class and extra folders to look in."""

    name: str
    torchvision_class: str
    folders: tuple[str, ...] = ()


MNIST = _Dataset("mnist", "MNIST", ("mnist",))
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# used when only the test split exists: 10,000 images -> 8,000 train + 2,000 validation
TEST_ONLY_VAL = 2000


class DataNotFoundError(FileNotFoundError):
    """The data set is not on disk and could not be downloaded."""


@dataclass
class DataSplits:
    """Images `(N, 1, 28, 28)` float32 in [0, 1] and labels `(N,)` int64.

    `val_*` are held-out images: the official test split when the full data set
    is present. `source` says where the data came from.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    source: str

    def __repr__(self) -> str:
        return f"DataSplits(train={tuple(self.train_x.shape)}, val={tuple(self.val_x.shape)}, source={self.source!r})"


def default_root() -> Path:
    """`$VAEKIT_DATA`, else /content/data in Colab, else ~/.cache/vaekit/data."""
    if os.environ.get("VAEKIT_DATA"):
        return Path(os.environ["VAEKIT_DATA"]).expanduser()
    if _in_colab():
        return Path("/content/data")
    return Path.home() / ".cache" / "vaekit" / "data"


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def cache_dir() -> Path:
    """Where decoded data files are cached: `$VAEKIT_CACHE`, else ~/.cache/vaekit/tensors."""
    if os.environ.get("VAEKIT_CACHE"):
        return Path(os.environ["VAEKIT_CACHE"]).expanduser()
    return Path.home() / ".cache" / "vaekit" / "tensors"


def _cache_file(path: Path) -> Path:
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return cache_dir() / f"{path.name}-{hashlib.sha1(key.encode()).hexdigest()[:16]}.pt"


def _read_idx(path: Path) -> torch.Tensor:
    """Read an IDX file (plain or .gz) with torchvision's own reader, cached.

    Importing torchvision costs seconds (it imports torch's compiler stack), so
    the decoded tensor is saved once under `cache_dir()`, keyed by the file's
    path, size and modification time; later notebooks load it in milliseconds.
    A cache that cannot be written or read is skipped, never an error.
    """
    cached = _cache_file(path)
    try:
        tensor = torch.load(cached, weights_only=True)
        if isinstance(tensor, torch.Tensor):
            return tensor
    except Exception:  # not cached yet, or unreadable: decode the original
        pass
    tensor = _decode_idx(path)
    tmp = None
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cached.parent, prefix=cached.name, suffix=".tmp")
        with os.fdopen(fd, "wb") as out:
            torch.save(tensor, out)
        os.replace(tmp, cached)
        tmp = None
    except OSError:  # read-only home, full disk: run without the cache
        pass
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return tensor


def _decode_idx(path: Path) -> torch.Tensor:
    from torchvision.datasets.mnist import read_sn3_pascalvincent_tensor

    if path.suffix != ".gz":
        return read_sn3_pascalvincent_tensor(str(path), strict=False)
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / path.stem
        with gzip.open(path, "rb") as src, open(plain, "wb") as dst:
            shutil.copyfileobj(src, dst)
        return read_sn3_pascalvincent_tensor(str(plain), strict=False)


def _candidate_folders(root: Path, dataset: _Dataset) -> list[Path]:
    folders = [root / dataset.torchvision_class / "raw", root]
    folders += [Path(e) if e.startswith("/") else root / e for e in dataset.folders]
    return folders


def _load_split(folders: list[Path], split: str) -> tuple[torch.Tensor, torch.Tensor, Path] | None:
    images_stem, labels_stem = FILES[split]
    for folder in folders:
        images, labels = _find(folder, images_stem), _find(folder, labels_stem)
        if images and labels:
            return _read_idx(images), _read_idx(labels), folder
    return None


def _download(root: Path, dataset: _Dataset) -> None:
    """Download both splits through torchvision (mirrors and md5 checks are its own)."""
    import torchvision

    cls = getattr(torchvision.datasets, dataset.torchvision_class)
    for train in (True, False):
        cls(str(root), train=train, download=True)


def load_mnist(
    root: str | Path | None = None,
    download: bool | None = None,
    binarize: str | None = None,
    device: torch.device | str = "cpu",
    verbose: bool = True,
) -> DataSplits:
    """Load MNIST as tensors.

    root: data folder; default `$VAEKIT_DATA`, /content/data in Colab, else
        ~/.cache/vaekit/data. Files may sit in `root/MNIST/raw/` (torchvision's
        layout), `root/mnist/` or `root/` itself, plain or gzipped.
    download: None (default) downloads through torchvision only when no split is on
        disk; True also fetches a missing training split next to a test split;
        False never touches the network.
    binarize: None for grey levels, or "static" for one fixed binary sample of
        every image (seed 0). For dynamic binarization (a new sample every epoch)
        use `batches(..., dynamic_binarize=True)`.
    device: where to put the tensors (the GPU keeps the whole data set resident).
    """
    return _load(MNIST, root, download, binarize, device, verbose)


def _load(
    dataset: _Dataset,
    root: str | Path | None,
    download: bool | None,
    binarize: str | None,
    device: torch.device | str,
    verbose: bool,
) -> DataSplits:
    """`load_mnist` for any data set in MNIST's format; see `load_mnist` for the arguments."""
    if binarize not in (None, "static"):
        raise ValueError(
            f"binarize={binarize!r}: use None or 'static' here; for dynamic binarization pass "
            f"dynamic_binarize=True to vaekit.batches"
        )
    root = Path(root).expanduser() if root is not None else default_root()
    folders = _candidate_folders(root, dataset)
    train, test = _load_split(folders, "train"), _load_split(folders, "test")
    wanted = download if download is not None else (train is None and test is None)
    if (train is None or test is None) and wanted:
        try:
            _download(root, dataset)
        except Exception as exc:  # no network, a blocked mirror, a failed checksum
            if test is None:
                raise _not_found(root, dataset, exc) from exc
            if verbose:
                why = type(exc).__name__
                print(f"could not download the {dataset.name} training split ({why}); using what is on disk")
        else:
            train, test = _load_split(folders, "train"), _load_split(folders, "test")
    if test is None:
        raise _not_found(root, dataset, None)

    test_x, test_y, folder = test
    if train is not None:
        train_x, train_y, _ = train
        val_x, val_y = test_x, test_y
        source = f"{dataset.name} from {folder}: {len(train_x):,} train + {len(val_x):,} test images"
    else:
        cut = len(test_x) - TEST_ONLY_VAL
        train_x, train_y, val_x, val_y = test_x[:cut], test_y[:cut], test_x[cut:], test_y[cut:]
        source = (
            f"{dataset.name} TEST SPLIT ONLY from {folder}: the training files are missing, so its "
            f"{len(test_x):,} images are split into {cut:,} train + {TEST_ONLY_VAL:,} validation "
            f"(load_mnist(download=True) fetches the training split)"
        )
    if verbose:
        print(source)

    def images(x: torch.Tensor, seed: int) -> torch.Tensor:
        x = x.to(torch.float32).div_(255.0).unsqueeze(1)
        if binarize == "static":
            x = _binarize(x, torch.Generator().manual_seed(seed))
        return x.to(device)

    return DataSplits(images(train_x, 0), train_y.long().to(device), images(val_x, 1), val_y.long().to(device), source)


def _not_found(root: Path, dataset: _Dataset, exc: Exception | None) -> DataNotFoundError:
    cls_name = dataset.torchvision_class
    names = ", ".join(f"{stem}.gz" for split in ("train", "test") for stem in FILES[split])
    why = f" The download failed: {type(exc).__name__}: {exc}." if exc else ""
    return DataNotFoundError(
        f"{dataset.name} is not in {root} and could not be downloaded.{why} Put the files {names} "
        f"into {root / cls_name / 'raw'} (at least the two t10k files), or set VAEKIT_DATA to the folder "
        f"that has them, or connect to the internet and run again."
    )
