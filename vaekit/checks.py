"""Self-checks a student can run on their own code.

Each check raises `SelfCheckError` with a message that says what is wrong and
what to look at. They check shapes, finiteness and whether gradients
flow; they never know, or reveal, what the right values are.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch


class SelfCheckError(AssertionError):
    """A self-check failed; the message says what to fix."""


def check_shape(tensor: torch.Tensor, expected: Sequence[int | None], name: str = "tensor", hint: str = "") -> None:
    """Raise unless `tensor.shape` matches `expected` (None matches any size)."""
    if not isinstance(tensor, torch.Tensor):
        raise SelfCheckError(f"{name} should be a torch.Tensor, got {type(tensor).__name__}")
    shape = tuple(tensor.shape)
    want = tuple(expected)
    ok = len(shape) == len(want) and all(w is None or w == s for s, w in zip(shape, want, strict=True))
    if not ok:
        pretty = "(" + ", ".join("*" if w is None else str(w) for w in want) + ")"
        msg = f"{name} has shape {shape}, expected {pretty}"
        raise SelfCheckError(msg + (f": {hint}" if hint else ""))


def check_finite(tensor: torch.Tensor, name: str = "tensor") -> None:
    """Raise if `tensor` holds NaN or infinity."""
    bad = ~torch.isfinite(tensor)
    if bad.any():
        raise SelfCheckError(
            f"{name} has {int(bad.sum())} NaN/inf value(s) out of {tensor.numel()}: look for exp() of large "
            f"numbers (overflow), log() of a number that underflowed to 0 (exp() of a very negative one: stay in "
            f"log space, e.g. torch.logsumexp), or a division by zero; after training, also a learning rate "
            f"that is too high"
        )


def check_gradient_flow(
    output: torch.Tensor,
    inputs: Iterable[tuple[str, torch.Tensor]] | torch.nn.Module,
    name: str = "output",
) -> None:
    """Raise unless a gradient reaches every named input (or module parameter).

    output: the tensor whose `.sum()` is differentiated.
    inputs: `[("mu", mu), ("logvar", logvar)]` with `requires_grad=True`, or a module.
    """
    if isinstance(inputs, torch.nn.Module):
        named: list[tuple[str, torch.Tensor]] = [(n, p) for n, p in inputs.named_parameters() if p.requires_grad]
    else:
        named = list(inputs)
    if not output.requires_grad:
        raise SelfCheckError(
            f"{name} is not connected to the computation graph: something in between stops gradients "
            f"(.detach(), .item(), .numpy(), torch.no_grad(), torch.normal(...) or a distribution's .sample() "
            f"instead of rsample/the reparameterization trick)"
        )
    # an input that does not require grad (e.g. detached) gets no gradient; autograd.grad would raise on it
    tensors = [t for _, t in named if t.requires_grad]
    grads = iter(torch.autograd.grad(output.sum(), tensors, allow_unused=True, retain_graph=True) if tensors else ())
    dead = []
    for n, t in named:
        g = next(grads) if t.requires_grad else None
        if g is None or not torch.any(g != 0):
            dead.append(n)
    if dead:
        raise SelfCheckError(
            f"no gradient reaches {', '.join(dead)} from {name}: is it used in the computation, "
            f"and does nothing in between detach it or replace it by a sample?"
        )
