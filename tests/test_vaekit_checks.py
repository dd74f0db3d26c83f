"""Self-checks raise SelfCheckError with a message a student can act on."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch import nn

from vaekit import check_finite, check_gradient_flow, check_shape
from vaekit.checks import SelfCheckError


def test_self_check_error_is_an_assertion_error():
    # nbgrader and pytest count a failed AssertionError as a failed test, not a crash
    assert issubclass(SelfCheckError, AssertionError)


# ---- shapes -----------------------------------------------------------------------------


def test_check_shape_passes_on_the_right_shape_and_wildcards():
    check_shape(torch.zeros(8, 4), (8, 4))
    check_shape(torch.zeros(8, 4), [None, 4])
    check_shape(torch.zeros(3, 1, 28, 28), (None, 1, 28, 28))


def test_check_shape_wrong_size_names_both_shapes_and_the_hint():
    with pytest.raises(SelfCheckError) as info:
        check_shape(torch.zeros(8, 2), (8, 4), name="z", hint="did you sample one ε per element?")
    assert str(info.value) == "z has shape (8, 2), expected (8, 4): did you sample one ε per element?"


def test_check_shape_wrong_number_of_dimensions():
    with pytest.raises(SelfCheckError, match=re.escape("x_hat has shape (8, 784), expected (*, 1, 28, 28)")):
        check_shape(torch.zeros(8, 784), (None, 1, 28, 28), name="x_hat")


def test_check_shape_extra_trailing_dimension():
    with pytest.raises(SelfCheckError, match=re.escape("(8, 4, 1)")):
        check_shape(torch.zeros(8, 4, 1), (8, 4))


def test_check_shape_not_a_tensor():
    with pytest.raises(SelfCheckError, match=re.escape("mu should be a torch.Tensor, got ndarray")):
        check_shape(np.zeros((8, 4)), (8, 4), name="mu")


# ---- finiteness -------------------------------------------------------------------------


def test_check_finite_passes_on_finite_values():
    check_finite(torch.tensor([0.0, -1e30, 1e30]))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_check_finite_counts_non_finite_values(bad):
    x = torch.tensor([[1.0, bad, 2.0], [bad, 0.0, 3.0]])
    with pytest.raises(SelfCheckError, match=r"loss has 2 NaN/inf value\(s\) out of 6"):
        check_finite(x, name="loss")


# ---- gradient flow ----------------------------------------------------------------------


def leaves(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(8, 4, generator=g).requires_grad_()
    logvar = torch.randn(8, 4, generator=g).requires_grad_()
    eps = torch.randn(8, 4, generator=g)
    return mu, logvar, eps


def test_gradient_flow_passes_through_the_reparameterization():
    mu, logvar, eps = leaves()
    z = mu + torch.exp(0.5 * logvar) * eps
    check_gradient_flow(z, [("mu", mu), ("logvar", logvar)], name="z")
    # the check must not consume the graph: a later backward still works
    z.sum().backward()
    assert mu.grad is not None


def test_gradient_flow_detached_output():
    mu, logvar, eps = leaves()
    z = (mu + torch.exp(0.5 * logvar) * eps).detach()
    with pytest.raises(SelfCheckError, match="z is not connected to the computation graph"):
        check_gradient_flow(z, [("mu", mu), ("logvar", logvar)], name="z")


def test_gradient_flow_sampling_without_rsample():
    mu, logvar, _ = leaves()
    z = torch.distributions.Normal(mu, torch.exp(0.5 * logvar)).sample()
    with pytest.raises(SelfCheckError, match="rsample"):
        check_gradient_flow(z, [("mu", mu), ("logvar", logvar)], name="z")


def test_gradient_flow_unused_input_is_named():
    mu, logvar, eps = leaves()
    z = mu + eps  # forgot the standard deviation
    with pytest.raises(SelfCheckError) as info:
        check_gradient_flow(z, [("mu", mu), ("logvar", logvar)], name="z")
    msg = str(info.value)
    assert msg.startswith("no gradient reaches logvar from z")
    assert "mu" not in msg.split(" from ")[0]


def test_gradient_flow_input_detached_on_the_way():
    mu, logvar, eps = leaves()
    z = mu.detach() + torch.exp(0.5 * logvar) * eps
    with pytest.raises(SelfCheckError, match="no gradient reaches mu from z"):
        check_gradient_flow(z, [("mu", mu), ("logvar", logvar)], name="z")


def test_gradient_flow_input_that_does_not_require_grad():
    # e.g. mu taken from an encoder that returned mu.detach(): a SelfCheckError, not a torch RuntimeError
    mu, logvar, eps = leaves()
    mu = mu.detach()
    z = mu + torch.exp(0.5 * logvar) * eps
    with pytest.raises(SelfCheckError, match="no gradient reaches mu from z"):
        check_gradient_flow(z, [("mu", mu), ("logvar", logvar)], name="z")


def test_gradient_flow_zero_gradient_counts_as_none():
    mu, logvar, _ = leaves()
    z = mu + 0.0 * logvar
    with pytest.raises(SelfCheckError, match="no gradient reaches logvar"):
        check_gradient_flow(z, [("mu", mu), ("logvar", logvar)], name="z")


class TwoHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.to_mu = nn.Linear(3, 2)
        self.to_logvar = nn.Linear(3, 2)

    def forward(self, x, use_logvar: bool = True):
        mu = self.to_mu(x)
        return mu + self.to_logvar(x) if use_logvar else mu


def test_gradient_flow_over_a_module():
    torch.manual_seed(0)
    model, x = TwoHeads(), torch.randn(5, 3)
    check_gradient_flow(model(x), model, name="model(x)")
    with pytest.raises(SelfCheckError) as info:
        check_gradient_flow(model(x, use_logvar=False), model, name="model(x)")
    msg = str(info.value)
    assert "to_logvar.weight, to_logvar.bias" in msg and "to_mu" not in msg


def test_gradient_flow_ignores_frozen_parameters():
    torch.manual_seed(0)
    model, x = TwoHeads(), torch.randn(5, 3)
    model.to_logvar.requires_grad_(False)
    check_gradient_flow(model(x, use_logvar=False), model)
