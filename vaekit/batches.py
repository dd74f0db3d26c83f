"""Minibatches straight from preloaded tensors.

An epoch costs about what indexing a tensor costs: no per-image Python, no PIL,
no worker processes. It replaces `DataLoader(dataset, transform=ToTensor())`, whose
per-image work costs about 100x more than this indexing and made a small MLP VAE's CPU
epoch about 2.5x slower here (benchmarks/data_pipeline.py, benchmarks/RESULTS.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch


def binarize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Sample binary pixels: each pixel is 1 with probability equal to its intensity.

    x: any shape, values in [0, 1]. Returns a tensor of the same shape and dtype.
    """
    if generator is not None and generator.device != x.device:
        u = torch.rand(x.shape, generator=generator, device=generator.device).to(x.device)
    else:
        u = torch.rand(x.shape, generator=generator, device=x.device)
    return (u < x).to(x.dtype)


class Batches:
    """Re-iterable minibatches over tensors that share their first dimension.

    Each `for` loop over it is one epoch; with `shuffle=True` every epoch draws a
    new permutation from a generator seeded once. Yields one tensor if one was
    given, else a tuple.

    seed: None (the default) takes the seed from torch's global generator, so that
    every call gives a new order (re-creating the batches inside the epoch loop
    shuffles each epoch differently) and a run seeded with `vaekit.setup(seed=...)`
    or `torch.manual_seed` is still reproducible. An int fixes the sequence of
    orders whatever the global seed.
    """

    def __init__(
        self,
        *tensors: torch.Tensor,
        batch_size: int = 128,
        shuffle: bool = True,
        seed: int | None = None,
        device: torch.device | str | None = None,
        drop_last: bool = False,
        dynamic_binarize: bool = False,
    ) -> None:
        if not tensors:
            raise ValueError("batches() needs at least one tensor, e.g. batches(train_x, batch_size=128)")
        n = len(tensors[0])
        for t in tensors[1:]:
            if len(t) != n:
                raise ValueError(
                    f"all tensors must have the same length (first dimension); got {[len(t) for t in tensors]}"
                )
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if device is not None:
            # moved once, here, so that no batch is copied again during training
            tensors = tuple(t.to(device) for t in tensors)
        self.tensors = tensors
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.dynamic_binarize = dynamic_binarize
        self.generator = torch.Generator()
        if seed is None and (shuffle or dynamic_binarize):
            # drawn only when needed: unshuffled batches leave the global random stream alone
            seed = int(torch.randint(0, 2**62, (), dtype=torch.int64))
        self.generator.manual_seed(0 if seed is None else seed)

    def __len__(self) -> int:
        n = len(self.tensors[0])
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[torch.Tensor | tuple[torch.Tensor, ...]]:
        n = len(self.tensors[0])
        device = self.tensors[0].device
        order = torch.randperm(n, generator=self.generator).to(device) if self.shuffle else None
        stop = (n // self.batch_size) * self.batch_size if self.drop_last else n
        for start in range(0, stop, self.batch_size):
            if order is None:
                batch = [t[start : start + self.batch_size] for t in self.tensors]
            else:
                idx = order[start : start + self.batch_size]
                batch = [t[idx] for t in self.tensors]
            if self.dynamic_binarize:
                batch[0] = binarize(batch[0], self.generator)
            yield batch[0] if len(batch) == 1 else tuple(batch)


def batches(*tensors: torch.Tensor, **kwargs: Any) -> Batches:
    """Minibatches over preloaded tensors; see `Batches` for the options.

    Example: `for x in batches(train_x, batch_size=128, device=device): ...`
    """
    return Batches(*tensors, **kwargs)
