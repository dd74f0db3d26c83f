"""The judge's protocol with the kernel-side harness, in one process (no sandbox: fast).

The harness serves on one end of a socket pair in a thread, with a real IPython shell
holding the "student's" definitions; the judge's Kernel is on the other end. What is
tested here is what the checks rely on: data crosses as plain tensors (never objects
of the student's), gradients cross both ways, a model the judge lends is trained by the
student's loop and read back, randomness follows the judge's seeds, and a kernel that
breaks the protocol is evidence of tampering.
"""

from __future__ import annotations

import contextlib
import socket
import threading

import pytest
import torch
from IPython.core.interactiveshell import InteractiveShell

from autograder import wire
from autograder.checks import Recorder, layer_kinds, swapped
from autograder.checks import reference as ref
from autograder.harness import Harness
from autograder.judge import CheckCall, Kernel, KernelLost, RemoteNamespace, hidden_calls, judge_cell


class _NoProcess:
    """Stands in for the sandbox: nothing to interrupt or kill in-process."""

    def __init__(self, sock):
        self.sock = sock
        self.killed = False

    def interrupt(self):
        pass

    def kill(self):
        self.killed = True
        self.sock.close()


@pytest.fixture
def kernel():
    judge_end, kernel_end = socket.socketpair()
    shell = InteractiveShell.instance()
    shell.user_ns.clear()
    shell.run_cell("import torch, torch.nn as nn, math", store_history=False)
    harness = Harness(wire.Channel(kernel_end), shell)
    shell.user_ns["this_harness"] = harness  # what a student could dig out of gc.get_objects()
    thread = threading.Thread(target=lambda: _serve(harness), daemon=True)
    thread.start()
    channel = wire.Channel(judge_end)
    ready, _ = channel.recv(deadline=None)
    assert ready["op"] == "ready"
    k = Kernel(channel, _NoProcess(judge_end), timeout=20, instructor_paths=("/secret",))
    yield k
    if not k.lost:
        k.request("bye")
    thread.join(5)


def _serve(harness):
    with contextlib.suppress(wire.WireError):  # the judge's end closed mid-message: the test ends it
        harness.serve()


def define(kernel, code):
    header, _ = kernel.request("run", code=code)
    assert header.get("ok"), header


def test_values_cross_as_plain_data():
    blobs: list[bytes] = []

    class Sneaky(torch.Tensor):
        def __eq__(self, other):  # pragma: no cover - must never run on the receiving side
            return True

    t = torch.arange(6, dtype=torch.float32).reshape(2, 3).as_subclass(Sneaky)
    enc = wire.encode({"a": (t, 1.5, float("nan"), [True, None, "s"]), "b": torch.tensor(3)}, blobs=blobs)
    out = wire.decode(enc.header, enc.blobs)
    assert type(out["a"][0]) is torch.Tensor and torch.equal(out["a"][0], torch.arange(6.0).reshape(2, 3))
    assert out["a"][1] == 1.5 and out["a"][2] != out["a"][2] and out["a"][3] == [True, None, "s"]
    assert out["b"].dim() == 0 and int(out["b"]) == 3
    with pytest.raises(wire.WireError):
        wire.encode(object())
    with pytest.raises(wire.WireError):  # an object reference where only data is allowed
        wire.decode({"$ref": 1}, [])
    with pytest.raises(wire.WireError):  # bytes that do not match the shape
        wire.decode({"$t": 0, "dtype": "float32", "shape": [4], "grad": False}, [b"\0" * 4])


def test_student_function_and_gradients(kernel):
    define(kernel, "def reparameterize(mu, logvar):\n    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)")
    f = kernel.lookup("reparameterize")
    mu = torch.zeros(3, 2, requires_grad=True)
    logvar = torch.zeros(3, 2, requires_grad=True)
    torch.manual_seed(0)
    z1 = f(mu, logvar)
    torch.manual_seed(0)
    z2 = f(mu, logvar)
    z3 = f(mu, logvar)
    assert type(z1) is torch.Tensor and torch.equal(z1, z2) and not torch.equal(z2, z3)
    gm, gl = torch.autograd.grad(z1.sum(), [mu, logvar])
    assert torch.equal(gm, torch.ones(3, 2))
    # d z / d logvar = 0.5 * σ * ε = 0.5 * (z - mu) at logvar = 0
    torch.testing.assert_close(gl, 0.5 * z1.detach())

    def seeded(m, lv):
        torch.manual_seed(1)
        return f(m, lv)

    m64 = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    lv64 = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(seeded, (m64, lv64), eps=1e-6, atol=1e-5)


def test_student_model_parameters_layers_and_backward(kernel):
    define(
        kernel,
        "class Net(nn.Module):\n    def __init__(self, k=3):\n        super().__init__()\n"
        "        self.conv = nn.Conv2d(1, 2, 3, stride=2)\n        self.unused = nn.Linear(2, 2)\n"
        "        self.k = k\n    def forward(self, x):\n        return self.conv(x)",
    )
    model = kernel.lookup("Net")(k=5)
    assert model.k == 5
    assert ("Conv2d", (2, 2)) in layer_kinds(model)
    model(torch.rand(2, 1, 8, 8)).sum().backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert grads["conv.weight"] is not None and grads["unused.weight"] is None
    assert model.eval() is model  # the same stand-in for the same object


def test_lent_model_is_trained_by_the_student_loop_and_read_back(kernel):
    define(
        kernel,
        "def train(model, x, steps):\n    opt = torch.optim.SGD(model.parameters(), lr=0.1)\n"
        "    model.train()\n    for _ in range(steps):\n        loss = model(x).pow(2).mean()\n"
        "        opt.zero_grad(); loss.backward(); opt.step()\n    return loss.item()",
    )
    torch.manual_seed(0)
    model = Recorder(torch.nn.Linear(4, 1))
    model.eval()
    before = [p.detach().clone() for p in model.parameters()]
    x = torch.randn(16, 4)
    first = float(model(x).detach().pow(2).mean())
    model.calls.clear()
    last = kernel.lookup("train")(model, x, 20)
    assert last < first
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))
    assert model.calls and all(training and grad for _, training, grad in model.calls)
    torch.testing.assert_close(float(model(x).detach().pow(2).mean()), last, rtol=0.2, atol=1e-3)


def test_swapped_reference_runs_in_the_judge(kernel):
    define(
        kernel,
        "def vae_loss(x, logits, mu, logvar, beta=1.0):\n    raise NotImplementedError\n"
        "def evaluate(x, logits, mu, logvar):\n    return vae_loss(x, logits, mu, logvar)[0]",
    )
    x, logits = torch.rand(2, 1, 28, 28), torch.randn(2, 1, 28, 28, requires_grad=True)
    mu, logvar = torch.randn(2, 3), torch.randn(2, 3)
    ns = RemoteNamespace(kernel)
    with swapped(ns, vae_loss=ref.vae_loss):
        loss = kernel.lookup("evaluate")(x, logits, mu, logvar)
    torch.testing.assert_close(loss, ref.vae_loss(x, logits, mu, logvar)[0])
    (g,) = torch.autograd.grad(loss, [logits])  # through the kernel and back through the judge
    (expected,) = torch.autograd.grad(ref.vae_loss(x, logits, mu, logvar)[0], [logits])
    torch.testing.assert_close(g, expected)
    with pytest.raises(NotImplementedError):  # restored after the check
        kernel.lookup("evaluate")(x, logits, mu, logvar)


def test_a_failing_student_function_fails_its_check_only(kernel):
    define(
        kernel,
        "def kl_divergence(mu, logvar):\n    raise NotImplementedError\n"
        "def reparameterize(mu, logvar):\n    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)",
    )
    source = (
        "### BEGIN HIDDEN TESTS\nfrom autograder.checks import vae as hidden\n"
        "hidden.check_kl_values(kl_divergence)\n### END HIDDEN TESTS"
    )
    verdict = judge_cell(kernel, hidden_calls(source))
    assert not verdict.passed and "NotImplementedError" in verdict.message
    good = judge_cell(
        kernel, [CheckCall("autograder.checks.vae", "check_reparameterize_statistics", ["reparameterize"])]
    )
    assert good.passed, good.message


def test_hidden_blocks_hold_check_calls_only():
    assert hidden_calls("x = 1") == []
    calls = hidden_calls(
        "### BEGIN HIDDEN TESTS\nfrom autograder.checks import vae as hidden\n"
        "hidden.check_vae_model(VAE, globals())\n### END HIDDEN TESTS"
    )
    assert calls == [CheckCall("autograder.checks.vae", "check_vae_model", ["VAE", None])]
    with pytest.raises(ValueError, match="hidden test line 'assert 1 == 1': only"):
        hidden_calls("### BEGIN HIDDEN TESTS\nassert 1 == 1\n### END HIDDEN TESTS")


def test_a_forged_message_is_tampering(kernel):
    # the student's code writes a frame of its own on the judge's socket while a check waits
    define(
        kernel,
        "import socket, json, struct\n"
        "def forge():\n"
        "    h = this_harness\n"
        "    head = json.dumps({'re': 999, 'value': 1, 'blobs': []}).encode()\n"
        "    h.channel.sock.sendall(struct.pack('>I', len(head)) + head)\n"
        "    return 0",
    )
    with pytest.raises(KernelLost):
        kernel.lookup("forge")()
    assert any("protocol" in e for e in kernel.evidence)


def test_instructor_paths_in_audit_events_are_evidence(kernel):
    kernel._note_events([["open", "/secret/solutions/02_vae.ipynb"], ["open", "/usr/lib/x.py"], "junk"])
    assert kernel.evidence == ["tried to open /secret/solutions/02_vae.ipynb, which the sandbox does not show"]


def test_frames_are_capped_both_ways():
    """A kernel cannot make the judge read (or the judge send) more than wire.MAX_FRAME in one frame."""
    a, b = socket.socketpair()
    sender, receiver = wire.Channel(a), wire.Channel(b)
    with pytest.raises(wire.WireError, match="too large"):
        sender.send({"op": "x"}, [b"\0" * (wire.MAX_FRAME + 1)])
    head = b'{"re": 1, "blobs": [%d]}' % (wire.MAX_FRAME + 1)
    a.sendall(len(head).to_bytes(4, "big") + head)
    with pytest.raises(wire.WireError, match="blob sizes"):
        receiver.recv(deadline=None)
