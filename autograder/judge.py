"""The judge: runs the hidden checks in the grader's own process, on the student's code in a sandbox.

The hidden checks (autograder/checks/) are ordinary functions that receive the
student's function or class and raise AssertionError with a message. Here they
receive stand-ins instead (`Remote`): calling one sends the inputs to the
sandboxed kernel as data (autograder/wire.py), the kernel calls the student's
code, and the outputs come back as plain tensors, which the check compares with
what it computes itself. The reference code and the checks' source never enter
the sandbox; what the kernel says is only ever data to be checked.

* Gradients cross too: an output that depends on something requiring grad is
  attached to the judge's autograd graph, and `backward()` / `autograd.grad` /
  `gradcheck` send the gradient back to the kernel and get the inputs' gradients.
* Objects the check passes to the student's code (a small model of the judge's,
  a reference function swapped into the notebook's namespace) stay in the judge:
  the kernel gets a stand-in whose calls come back here (`lent_call`). A model
  lent this way has real parameters in the kernel, so the student's optimizer
  trains it; the judge reads them back after each call.
* Randomness: each call carries a seed derived from the judge's torch RNG state,
  which the kernel gives to torch, NumPy and `random` before the call, so
  `torch.manual_seed(0)` before a call in a check means what it says.

A test cell's points are the verdict on its hidden checks: every check passes,
or the first failure's message is the student's feedback for that cell.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import importlib
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from autograder import wire
from autograder.status import Verdict

# exceptions of the student's code re-raised in the check under the same builtin type
BUILTIN_ERRORS = {
    c.__name__: c
    for c in (
        ArithmeticError,
        AssertionError,
        AttributeError,
        IndexError,
        KeyError,
        LookupError,
        MemoryError,
        NameError,
        NotImplementedError,
        OverflowError,
        RecursionError,
        RuntimeError,
        TypeError,
        UnboundLocalError,
        ValueError,
        ZeroDivisionError,
    )
}


class StudentError(Exception):
    """Marker base: the student's code raised (re-raised as a builtin type mixed with this)."""


class CheckTimeout(Exception):
    """The student's code did not answer in time; it was interrupted."""


class KernelLost(Exception):
    """The kernel died or had to be killed; nothing more can be asked of it."""


class Tampering(Exception):
    """The kernel broke the protocol: evidence of an attempt, not a mistake."""


_ERROR_TYPES: dict[type, type] = {}


def student_error(kind: str, what: str) -> Exception:
    """An exception of the builtin type the student's code raised, with the judge's own message."""
    base = BUILTIN_ERRORS.get(kind, RuntimeError)
    cls = _ERROR_TYPES.get(base)
    if cls is None:
        cls = _ERROR_TYPES[base] = type(base.__name__, (base, StudentError), {})
    return cls(f"{what} raised {kind}")


# ------------------------------------------------------------------------------ the kernel
class Kernel:
    """The judge's end of one sandboxed harness: requests with deadlines, lent objects, evidence.

    `process` is the sandbox (autograder/sandbox.py): it has `interrupt()` and `kill()`.
    """

    def __init__(
        self,
        channel: wire.Channel,
        process,
        timeout: float,
        probe: float = 5.0,
        instructor_paths: tuple[str, ...] = (),
        shown_paths: tuple[str, ...] = (),
    ):
        self.channel = channel
        self.process = process
        self.timeout = timeout
        self.probe = probe
        self.instructor_paths = instructor_paths  # the repository, OUT, the submissions, the run's folder
        self.shown_paths = shown_paths  # what the sandbox does show (a virtualenv in the repository)
        self.next_id = 1
        self.lent: dict[int, Any] = {}
        self.lent_of: dict[int, int] = {}
        self.graphs: dict[int, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
        self.remotes: dict[int, Remote] = {}
        self.evidence: list[str] = []
        self.failure: AssertionError | None = None  # raised by a lent object of the judge's
        self.lost: str | None = None

    # -- transport
    def request(
        self, op: str, blobs: list[bytes] | None = None, timeout: float | None = None, **fields
    ) -> tuple[dict, list[bytes]]:
        """Send one request and wait for its reply, answering the kernel's calls back meanwhile.

        A timeout raises CheckTimeout, a dead kernel KernelLost, a broken protocol Tampering.
        """
        if self.lost:
            raise KernelLost(self.lost)
        rid = self.next_id
        self.next_id += 1
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        try:
            self.channel.send({"op": op, "id": rid, **fields}, blobs or [], deadline=deadline)
            return self._await(rid, deadline)
        except wire.PeerTimeout:
            self._interrupt(rid)
            raise CheckTimeout() from None
        except wire.PeerClosed:
            self._lose("the kernel stopped (it exited, crashed or ran out of memory)")
        except wire.WireError as exc:
            self._tampered(f"the kernel broke the grading protocol ({exc})")

    def _await(self, rid: int, deadline: float) -> tuple[dict, list[bytes]]:
        while True:
            header, blobs = self.channel.recv(deadline)
            self._note_events(header.get("events"))
            if header.get("re") == rid:
                return header, blobs
            op = header.get("op")
            if op == "lent_call":
                self._answer(header, self._lent_call, header, blobs)
            elif op == "lent_backward":
                self._answer(header, self._lent_backward, header, blobs)
            else:
                raise wire.WireError(f"unexpected message {str(op or header.get('re'))[:40]!r}")

    def _interrupt(self, rid: int) -> None:
        """After a timeout: interrupt the kernel and take its answer; kill it if none comes."""
        try:
            self.process.interrupt()
            self._await(rid, time.monotonic() + self.probe)
        except (wire.WireError, OSError):
            self._lose("the kernel did not respond after a timeout and was stopped", raise_=False)

    def _lose(self, why: str, raise_: bool = True):
        self.lost = self.lost or why
        self.process.kill()
        if raise_:
            raise KernelLost(self.lost)

    def _tampered(self, why: str):
        self.evidence.append(why)
        self._lose(why)

    def _note_events(self, events) -> None:
        """Audit events from the harness: only paths of the instructor's count as evidence."""
        if not isinstance(events, list):
            return
        for event in events[:20]:
            if not isinstance(event, list) or len(event) != 2:
                continue
            what, path = str(event[0])[:40], str(event[1])[:300]
            if _under(path, self.instructor_paths) and not _under(path, self.shown_paths):
                note = f"tried to {what} {path}, which the sandbox does not show"
                if note not in self.evidence:
                    self.evidence.append(note)

    def _answer(self, header: dict, fn, *args) -> None:
        rid = header.get("id")
        try:
            reply, blobs = fn(*args)
        except AssertionError as exc:  # a lent object of the check refused the call: the check fails
            self.failure = self.failure or exc
            reply, blobs = {"error": {"type": "AssertionError", "message": "the grader's model refused this call"}}, []
        except Exception as exc:  # the student called the judge's object wrongly (shapes, types)
            reply, blobs = {"error": {"type": type(exc).__name__, "message": str(exc)[:300]}}, []
        self.channel.send({"re": rid, **reply}, blobs)

    # -- values
    def encode(self, value: Any, blobs: list[bytes], tensors: list[torch.Tensor] | None = None) -> Any:
        """`value` as a wire header, tensors into `blobs`; objects of the judge's are lent to the kernel."""
        return wire.encode(value, objects=lambda o: self._object(o, blobs), blobs=blobs, tensors=tensors).header

    def _object(self, obj: Any, blobs: list[bytes]) -> dict:
        if isinstance(obj, Remote):
            if obj._kernel is not self:
                raise TypeError("an object of another kernel")
            return {"$ref": obj._ref}
        return self.lend(obj, blobs)

    def decode(
        self, header: Any, blobs: list[bytes], tensors: list[torch.Tensor] | None = None, grad: bool = False
    ) -> Any:
        """A value from a kernel's wire header and blobs; its objects become Remote handles."""
        return wire.decode(header, blobs, self._resolve, tensors, grad=grad)

    def _resolve(self, spec: dict) -> Any:
        if "$lent" in spec:
            n = int(spec["$lent"])
            if n not in self.lent:
                raise wire.WireError("unknown lent object")
            return self.lent[n]
        n = int(spec["$ref"])
        if n not in self.remotes:
            self.remotes[n] = Remote(self, n)
        return self.remotes[n]

    # -- lending the judge's objects
    def lend(self, obj: Any, blobs: list[bytes]) -> dict:
        """The spec that lends a judge's object (a module with its parameters, or a function) to the kernel."""
        if not callable(obj):
            raise TypeError(f"cannot pass a {type(obj).__name__} to the student's code")
        n = self.lent_of.get(id(obj))
        if n is None or self.lent.get(n) is not obj:
            n = len(self.lent) + 1
            self.lent[n], self.lent_of[id(obj)] = obj, n
        if isinstance(obj, torch.nn.Module):
            named = list(obj.named_parameters())
            methods = sorted(
                {
                    name
                    for cls in type(obj).__mro__
                    if not cls.__module__.startswith("torch")
                    for name, v in vars(cls).items()
                    if callable(v) and not name.startswith("_")
                }
                | {"forward"}
            )
            attrs = {k: v for k, v in vars(obj).items() if not k.startswith("_") and type(v) in (int, float, bool, str)}
            return {
                "$lent": n,
                "kind": "module",
                "names": [k for k, _ in named],
                "methods": methods,
                "attrs": attrs,
                "training": obj.training,
                "params": wire.encode([p for _, p in named], blobs=blobs).header,
            }
        return {"$lent": n, "kind": "function", "name": getattr(obj, "__name__", "function")}

    def _lent_call(self, header: dict, blobs: list[bytes]) -> tuple[dict, list[bytes]]:
        obj = self.lent.get(int(header.get("lent", -1)))
        if obj is None:
            raise RuntimeError("this object of the grader's belongs to an earlier check")
        leaves: list[torch.Tensor] = []
        args, kwargs = self.decode(header.get("args"), blobs, leaves, grad=True)
        params = self.decode(header.get("params", []), blobs, leaves, grad=True)
        method = str(header.get("method"))
        with torch.set_grad_enabled(bool(header.get("grad"))):
            if isinstance(obj, torch.nn.Module):
                if method not in ("forward", "__call__") and (
                    method.startswith("_") or not callable(getattr(type(obj), method, None))
                ):
                    raise AttributeError(f"the grader's model has no method {method!r}")
                obj.train(bool(header.get("training", obj.training)))
                with _parameters(obj, params):
                    out = obj(*args, **kwargs) if method == "forward" else getattr(obj, method)(*args, **kwargs)
            else:
                out = obj(*args, **kwargs)
        reply_blobs: list[bytes] = []
        tensors: list[torch.Tensor] = []
        value = wire.encode(out, blobs=reply_blobs, tensors=tensors).header
        reply: dict = {"value": value}
        marked = [i for i, t in enumerate(tensors) if t.requires_grad]
        if marked:
            call = self.next_id
            self.next_id += 1
            self.graphs[call] = ([tensors[i] for i in marked], [t for t in leaves if t.requires_grad])
            reply.update(call=call, outs=marked)
        return reply, reply_blobs

    def _lent_backward(self, header: dict, blobs: list[bytes]) -> tuple[dict, list[bytes]]:
        outs, leaves = self.graphs[int(header["call"])]
        grads = self.decode(header.get("grads", []), blobs)
        # strict=False: the kernel is not trusted to send one gradient per output; missing ones count as none
        pairs = [(o, g) for o, g in zip(outs, grads, strict=False) if isinstance(g, torch.Tensor)]
        for leaf in leaves:
            leaf.grad = None
        if pairs:
            torch.autograd.backward([o for o, _ in pairs], [g.to(o.dtype) for o, g in pairs], retain_graph=True)
        got = [leaf.grad for leaf in leaves]
        reply_blobs: list[bytes] = []
        return {"value": wire.encode(got, blobs=reply_blobs).header}, reply_blobs

    def sync_lent(self, state: dict, blobs: list[bytes]) -> None:
        """Copy the kernel's parameter values of lent models back into the judge's models."""
        for key, header in (state or {}).items():
            obj = self.lent.get(int(key))
            if not isinstance(obj, torch.nn.Module):
                continue
            values = self.decode(header, blobs)
            params = list(obj.parameters())
            if len(values) != len(params):
                raise wire.WireError("lent model state does not match")
            with torch.no_grad():
                for p, v in zip(params, values, strict=True):
                    if tuple(v.shape) != tuple(p.shape):
                        raise wire.WireError("lent model state does not match")
                    p.copy_(v.to(p.dtype))

    # -- operations the stand-ins use
    def seed(self) -> int:
        """A seed for the next call, drawn from torch's RNG here: as if the call had drawn its own
        random numbers from it (`torch.manual_seed(0)` before a call means what it says, and two
        calls in a row get different randomness)."""
        return int(torch.randint(0, 2**31 - 1, ()).item())

    def call(self, target: dict, method: str | None, args: tuple, kwargs: dict, what: str) -> Any:
        """Call a function or method in the kernel with `args`; the result, wired into autograd if it needs grad."""
        blobs: list[bytes] = []
        inputs: list[torch.Tensor] = []
        enc_args = self.encode(list(args), blobs, inputs)
        enc_kwargs = self.encode(dict(kwargs), blobs, inputs)
        grad = torch.is_grad_enabled()
        self.failure = None
        header, rblobs = self.request(
            "call", blobs, target=target, method=method, args=enc_args, kwargs=enc_kwargs, seed=self.seed(), grad=grad
        )
        if self.failure is not None:
            raise self.failure
        if "error" in header:
            raise self._error(header["error"], what)
        self.sync_lent(header.get("lent_state"), rblobs)
        outs: list[torch.Tensor] = []
        value = self.decode(header.get("value"), rblobs, outs)
        marked = header.get("outs") or []
        if not marked or not grad:
            return value
        if not all(isinstance(i, int) and 0 <= i < len(outs) for i in marked):
            self._tampered("the kernel broke the grading protocol (bad output list)")
        link = _Link(self, int(header.get("call", 0)), [outs[i] for i in marked], inputs)
        attached = _Attach.apply(link, _ANCHOR, *[t for t in inputs if t.requires_grad])
        swap = dict(zip(marked, attached, strict=True))
        counter = iter(range(len(outs)))
        return wire.replace_tensors(value, lambda t: swap.get(next(counter), t))

    def _error(self, error: Any, what: str) -> Exception:
        kind = str(error.get("kind")) if isinstance(error, dict) else ""
        if kind == "interrupted":
            return CheckTimeout()
        name = str(error.get("type", "")) if isinstance(error, dict) else ""
        if name == "SystemExit":
            return student_error("SystemExit", what)
        return student_error(name if name in BUILTIN_ERRORS else "an exception", what)

    def backward(self, call: int, grads: tuple, n_inputs: list[torch.Tensor]) -> list:
        """Send `grads` back through the kernel's call `call`; the gradients of `n_inputs` that require grad."""
        blobs: list[bytes] = []
        enc = wire.encode(list(grads), blobs=blobs).header
        header, rblobs = self.request("backward", blobs, call=call, grads=enc)
        if "error" in header:
            raise self._error(header["error"], "backpropagating through your code")
        got = self.decode(header.get("value"), rblobs)
        if not isinstance(got, list) or len(got) != len(n_inputs):
            self._tampered("the kernel broke the grading protocol (gradients)")
        out = []
        for inp, g in zip(n_inputs, got, strict=True):
            if not inp.requires_grad:
                continue
            if g is not None and (not isinstance(g, torch.Tensor) or tuple(g.shape) != tuple(inp.shape)):
                self._tampered("the kernel broke the grading protocol (gradient shape)")
            out.append(None if g is None else g.to(inp.dtype))
        return out

    def lookup(self, name: str) -> Remote | None:
        """What `name` is bound to in the student's namespace, or None if it is not defined."""
        header, blobs = self.request("getattr_ns", name=name)
        if "error" in header:
            return None
        value = self.decode(header.get("value"), blobs)
        return value if isinstance(value, Remote) else _Data(value)  # type: ignore[return-value]

    def reset(self) -> None:
        """Forget the objects of the last check (here and in the kernel)."""
        self.lent.clear()
        self.lent_of.clear()
        self.graphs.clear()
        self.remotes.clear()
        if not self.lost:
            self.request("reset")


_ANCHOR = torch.zeros((), requires_grad=True)


def _under(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


@dataclass
class _Link:
    kernel: Kernel
    call: int
    outs: list[torch.Tensor]
    inputs: list[torch.Tensor]


class _Attach(torch.autograd.Function):
    """Outputs computed in the kernel, connected to the judge's autograd graph."""

    @staticmethod
    def forward(ctx, link, anchor, *inputs):
        ctx.link = link
        return tuple(t.clone() for t in link.outs)

    @staticmethod
    def backward(ctx, *grads):
        link = ctx.link
        return (None, None, *link.kernel.backward(link.call, grads, link.inputs))


@contextlib.contextmanager
def _parameters(module: torch.nn.Module, values: list):
    """Run `module` with the kernel's parameter tensors in place of its own (as functional_call does)."""
    named = list(module.named_parameters())
    if len(values) != len(named):
        raise ValueError("the model's parameters do not match the grader's")
    saved = []
    for (name, old), new in zip(named, values, strict=True):
        owner_name, _, leaf = name.rpartition(".")
        owner = module.get_submodule(owner_name) if owner_name else module
        if tuple(new.shape) != tuple(old.shape):
            raise ValueError("the model's parameters do not match the grader's")
        saved.append((owner, leaf, owner._parameters[leaf]))
        owner._parameters[leaf] = new.to(old.dtype) if new.dtype != old.dtype else new
    try:
        yield
    finally:
        for owner, leaf, old in saved:
            owner._parameters[leaf] = old


# ------------------------------------------------------------------------------ stand-ins
@dataclass
class ModuleInfo:
    """One layer of a student's model, as the kernel describes it: the torch.nn class and stride."""

    name: str
    kind: str
    stride: Any = None


class _Data:
    """A plain value found in the namespace (wrapped so that `lookup` can tell it from 'missing')."""

    def __init__(self, value: Any):
        self.value = value


class Remote:
    """A student's object that stays in the kernel: call it, read attributes, take its parameters."""

    def __init__(self, kernel: Kernel, ref: int, what: str = "your code"):
        object.__setattr__(self, "_kernel", kernel)
        object.__setattr__(self, "_ref", ref)
        object.__setattr__(self, "_what", what)

    def __call__(self, *args, **kwargs):
        """Call the kernel-side object with `args` and `kwargs`."""
        return self._kernel.call({"$ref": self._ref}, None, args, kwargs, self._what)

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        kernel = self._kernel
        if name in ("parameters", "named_parameters"):
            return lambda *a, **k: self._parameters(named=name == "named_parameters")
        if name in ("modules", "named_modules"):
            return lambda *a, **k: self._modules(named=name == "named_modules")
        header, blobs = kernel.request("getattr", target={"$ref": self._ref}, name=name)
        if "error" in header:
            raise AttributeError(f"{self._what} has no attribute {name!r}")
        value = kernel.decode(header.get("value"), blobs)
        if isinstance(value, Remote):
            object.__setattr__(value, "_what", f"{self._what}.{name}")
        return value

    def _parameters(self, named: bool):
        header, blobs = self._kernel.request("params", target={"$ref": self._ref})
        if "error" in header:
            raise self._kernel._error(header["error"], f"{self._what}.parameters()")
        rows = self._kernel.decode(header.get("value"), blobs)
        out = []
        for name, value, grad in rows:
            value = value.detach()
            value.grad = grad
            out.append((str(name), value))
        return iter(out) if named else iter(v for _, v in out)

    def _modules(self, named: bool):
        header, blobs = self._kernel.request("modules", target={"$ref": self._ref})
        if "error" in header:
            raise self._kernel._error(header["error"], f"{self._what}.modules()")
        infos = [
            ModuleInfo(str(m["name"]), str(m["kind"]), m.get("stride"))
            for m in self._kernel.decode(header.get("value"), blobs)
        ]
        return iter((i.name, i) for i in infos) if named else iter(infos)

    def __repr__(self) -> str:
        return f"<{self._what} in the sandbox>"


class RemoteNamespace:
    """The notebook's namespace, as far as `checks.swapped` needs it (get, update, pop, item)."""

    def __init__(self, kernel: Kernel):
        self._kernel = kernel

    def get(self, name: str, default: Any = None) -> Any:
        """The value of `name` in the student's namespace, or `default`."""
        found = self._kernel.lookup(name)
        if found is None:
            return default
        return found.value if isinstance(found, _Data) else found

    def _bind(self, name: str, value: Any) -> None:
        blobs: list[bytes] = []
        enc = self._kernel.encode(value, blobs)
        self._kernel.request("bind", blobs, name=name, value=enc)

    def __setitem__(self, name: str, value: Any) -> None:
        self._bind(name, value)

    def update(self, values: dict) -> None:
        """Bind each name of `values` in the student's namespace."""
        for name, value in values.items():
            self._bind(name, value)

    def pop(self, name: str, default: Any = None) -> Any:
        """Delete `name` from the student's namespace; returns `default`."""
        self._kernel.request("bind", name=name, value=None, delete=True)
        return default


# ------------------------------------------------------------------------------ test cells
@dataclass
class CheckCall:
    """One line of a hidden-test block: `hidden.check_x(name, ..., globals())`."""

    module: str
    function: str
    args: list[str | None]  # notebook names; None stands for globals()


@dataclass
class CellVerdicts:
    """The judge's verdict on every test cell of one notebook, and what it saw."""

    verdicts: dict[str, Verdict] = field(default_factory=dict)
    evidence: list[str] = field(default_factory=list)
    lost: str | None = None


def hidden_calls(source: str) -> list[CheckCall]:
    """The check calls of a test cell's hidden block (the solution notebook is their one source).

    Raises ValueError for anything else in the block: a hidden test must be check calls only,
    so that nothing of it ever needs to run in the student's kernel.
    """
    start, end = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
    if start not in source:
        return []
    block = source.split(start, 1)[1].split(end, 1)[0]
    tree = ast.parse(block)
    aliases: dict[str, str] = {}
    calls = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module == "autograder.checks":
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"autograder.checks.{alias.name}"
        elif (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Attribute)
            and isinstance(node.value.func.value, ast.Name)
            and node.value.func.value.id in aliases
            and not node.value.keywords
        ):
            args: list[str | None] = []
            for arg in node.value.args:
                if isinstance(arg, ast.Name):
                    args.append(arg.id)
                elif isinstance(arg, ast.Call) and isinstance(arg.func, ast.Name) and arg.func.id == "globals":
                    args.append(None)
                else:
                    raise ValueError(f"hidden test argument {ast.unparse(arg)!r}: use notebook names or globals()")
            calls.append(CheckCall(aliases[node.value.func.value.id], node.value.func.attr, args))
        else:
            raise ValueError(
                f"hidden test line {ast.unparse(node)!r}: only `from autograder.checks import "
                f"X as hidden` and `hidden.check_...(names)` calls are allowed"
            )
    return calls


def judge_cell(kernel: Kernel, calls: list[CheckCall]) -> Verdict:
    """Run one test cell's checks; the first failure decides (its message is the feedback)."""
    for call in calls:
        fn = getattr(importlib.import_module(call.module), call.function)
        try:
            args = []
            for name in call.args:
                if name is None:
                    args.append(RemoteNamespace(kernel))
                    continue
                found = kernel.lookup(name)
                if found is None:
                    return Verdict(
                        False,
                        f"{name} is not defined: run the cell that defines it (and fix any "
                        f"error it shows) before submitting",
                        "not_defined",
                    )
                if isinstance(found, Remote):
                    object.__setattr__(found, "_what", name)
                args.append(found.value if isinstance(found, _Data) else found)
            with _fresh_rng():
                fn(*args)
        except AssertionError as exc:
            if isinstance(exc, StudentError):
                return Verdict(False, f"{exc}: see the error when you run the test cell above", "raised")
            message = str(exc) or "a hidden check failed"
            return Verdict(False, message, getattr(exc, "misconception", None) or _misconception(call, message))
        except CheckTimeout:
            return Verdict(
                False,
                f"your code did not finish within {kernel.timeout:g} s and was interrupted",
                "timeout",
                timeout=True,
            )
        except KernelLost as exc:
            return Verdict(False, str(exc), "kernel_lost")
        except Tampering as exc:
            return Verdict(False, str(exc), "tampered")
        except StudentError as exc:
            return Verdict(False, f"{exc}: see the error when you run the test cell above", "raised")
        except Exception as exc:  # the check could not use what the student's code returned
            return Verdict(
                False,
                f"the check could not use what your code returned ({type(exc).__name__}): "
                f"compare the types and shapes with the docstring",
                "unusable",
            )
        finally:
            if not kernel.lost:
                with contextlib.suppress(CheckTimeout, KernelLost):
                    kernel.reset()
    return Verdict(True, "")


def _misconception(call: CheckCall, message: str) -> str:
    """A stable id for a failing check's message: the check and a hash of the message's text."""
    digest = hashlib.sha1(message.encode()).hexdigest()[:8]
    return f"{call.module.rsplit('.', 1)[-1]}.{call.function}.{digest}"


@contextlib.contextmanager
def _fresh_rng():
    """Each check starts from the same RNG state, whatever ran before it in this process."""
    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    try:
        yield
    finally:
        torch.random.set_rng_state(state)
