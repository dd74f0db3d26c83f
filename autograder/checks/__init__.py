"""Hidden checks run by the notebooks' hidden test cells while grading.

Students never see this package: the release strips the hidden test cells that
import it, it is not part of the installed vaekit, and feedback never shows its
source. Each check raises AssertionError with a message that names the property
that failed in words a student can act on, never a reference value, and a stable
misconception id for the class report (`require(..., misconception="kl.no_half")`,
or `raise Mistake(message, misconception=...)`).

Checks that exercise one graded function swap the student's other graded
functions for the reference ones while they run (`swapped`), so one mistake
loses only the points of the check meant to catch it.
"""

from __future__ import annotations

import contextlib
import math

import torch


@contextlib.contextmanager
def swapped(namespace: dict | None, **replacements):
    """Temporarily bind names in the notebook's namespace to reference versions."""
    if namespace is None:
        yield
        return
    missing = object()
    old = {k: namespace.get(k, missing) for k in replacements}
    namespace.update(replacements)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is missing:
                namespace.pop(k, None)
            else:
                namespace[k] = v


def layer_kinds(model) -> list[tuple[str, object]]:
    """(kind, stride) of every layer of a model: kind is the torch.nn class it is (or derives from).

    Works on a real module and on the judge's stand-in for a student's model, whose layers
    arrive as descriptions (judge.ModuleInfo), never as objects of the student's.
    """
    out = []
    for m in model.modules():
        kind = getattr(m, "kind", None)
        if kind is None:
            kind = next((c.__name__ for c in type(m).__mro__ if c.__module__.startswith("torch.nn.modules")), "Module")
        stride = getattr(m, "stride", None)
        out.append((kind, tuple(stride) if isinstance(stride, (list, tuple)) else stride))
    return out


def close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-4, atol: float = 1e-5) -> bool:
    """True when a and b agree (shapes and values); never raises."""
    try:
        torch.testing.assert_close(a.detach().double().cpu(), b.detach().double().cpu(), rtol=rtol, atol=atol)
        return True
    except (AssertionError, RuntimeError, TypeError, ValueError):
        return False


def sigma_tolerance(sigma: float, n: int, k: float = 5.0) -> float:
    """k standard errors of a sample standard deviation from n normal draws."""
    return k * sigma / math.sqrt(2 * n)


class Mistake(AssertionError):
    """A failing check that names a known mistake; `misconception` is its stable id.

    The id (e.g. "reparameterize.sigma_squared") groups the students who made the mistake in
    the class report whatever the message's wording; the judge reads it from the exception.
    """

    def __init__(self, message: str, misconception: str | None = None):
        super().__init__(message)
        self.misconception = misconception

    def __reduce__(self):
        return type(self), (str(self), self.misconception)


def require(condition, message: str, misconception: str | None = None) -> None:
    """Fail the check with `message` (for the student) and `misconception` (its stable id) unless condition."""
    if not condition:
        raise Mistake(message, misconception)


def require_logits(out: torch.Tensor, misconception: str) -> None:
    """A decoder's output must be logits (some values outside [0, 1]), not images passed through a sigmoid."""
    require(
        bool((out < 0).any() or (out > 1).any()),
        "decode should return logits (no sigmoid at the end): the loss takes logits and applies the sigmoid "
        "itself, and you apply torch.sigmoid only when you want images",
        misconception=misconception,
    )


def refuse(value: torch.Tensor, known: list[tuple[torch.Tensor, str, str]], rtol: float = 1e-3) -> None:
    """Fail with the first known mistake whose wrong result `value` equals: (wrong, message, misconception)."""
    for wrong, message, misconception in known:
        if close(value, wrong, rtol=rtol):
            raise Mistake(message, misconception)


class Recorder(torch.nn.Module):
    """Wraps a module and records the mode and grad state of every call."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner
        self.calls: list[tuple[str, bool, bool]] = []

    def _log(self, name: str):
        self.calls.append((name, self.training, torch.is_grad_enabled()))

    def forward(self, *args, **kwargs):
        """Call the wrapped module, recording the call as 'forward'."""
        self._log("forward")
        return self.inner(*args, **kwargs)

    def encode(self, *args, **kwargs):
        """The wrapped module's encode, recorded as 'encode'."""
        self._log("encode")
        return self.inner.encode(*args, **kwargs)

    def decode(self, *args, **kwargs):
        """The wrapped module's decode, recorded as 'decode'."""
        self._log("decode")
        return self.inner.decode(*args, **kwargs)


def toy_images(n: int = 256, seed: int = 0) -> torch.Tensor:
    """A small fixed data set of (n, 1, 28, 28) images in [0, 1]: noisy strokes."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.zeros(4, 28, 28)
    protos[0, 4:24, 12:16] = 1
    protos[1, 12:16, 4:24] = 1
    protos[2].fill_diagonal_(1)
    protos[3, 6:22, 6:22] = 1
    protos[3, 10:18, 10:18] = 0
    idx = torch.randint(0, 4, (n,), generator=g)
    noise = torch.rand(n, 28, 28, generator=g) * 0.2
    return (protos[idx] * 0.8 + noise).clamp(0, 1).unsqueeze(1)


def seed_all(seed: int) -> None:
    """Seed torch, NumPy and Python's random: correct code may draw its noise from any of them."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
