"""The kernel side of grading: runs inside the sandbox, next to the student's code. Public.

`python -m _vaekit_harness FD` (the sandbox's copy of this file) starts an
IPython shell, tells the judge "ready" on the socket FD, then does what the judge
asks, one request at a time (see autograder/wire.py for the format):

    run       execute one cell's source in the shell
    call      call a student's function, class or method with the judge's inputs
    getattr   read an attribute of a student's object
    params    the parameters (and their .grad) of a student's module
    modules   the layers of a student's module: kind (the torch.nn class) and stride
    backward  push gradients back through the outputs of an earlier call
    bind      bind / unbind a name in the notebook's namespace (the judge's stand-ins)
    reset     forget the objects and graphs of the last check
    bye       exit

While a call runs, the student's code may call objects the judge lent it (a
model, a reference function the check swaps in): those calls go back to the
judge (lent_call / lent_backward), which computes them itself.

Nothing here is trusted: the student's code runs in this interpreter and can
change anything in it. The judge treats every answer as data to check, so the
most a student can do by tampering with this file is to answer for their own
code, which is what the checks examine anyway.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sys
import traceback

import torch

try:  # inside the sandbox the wire module sits next to this file
    import _vaekit_wire as wire  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - in the repository
    from autograder import wire

MAX_HANDLES = 20_000
# paths the student's code opened or listed (audit hook): the judge keeps only the instructor's as evidence
AUDIT: list[list[str]] = []
AUDITED = {
    "open": "open",
    "os.listdir": "list",
    "os.scandir": "list",
    "os.remove": "delete",
    "os.rename": "rename",
    "shutil.rmtree": "delete",
    "os.mkdir": "create",
}


_IMPORT_PATHS: set[str] = set()


def _audit(event: str, args: tuple) -> None:
    if event == "import" and len(args) > 2 and isinstance(args[2], list):
        # a folder put on sys.path is where imports look: the judge counts it as reaching for that
        # folder when it is the instructor's (a missing folder is never opened, so "open" is not seen)
        for entry in args[2]:
            if isinstance(entry, str) and entry and entry not in _IMPORT_PATHS and len(AUDIT) < 200:
                _IMPORT_PATHS.add(entry)
                AUDIT.append(["import from", os.path.abspath(entry)])
        return
    what = AUDITED.get(event)
    if what and args and isinstance(args[0], (str, bytes)) and len(AUDIT) < 200:
        path = args[0].decode(errors="replace") if isinstance(args[0], bytes) else args[0]
        AUDIT.append([what, os.path.abspath(path)])


class Harness:
    """Serves the judge's requests on one channel; `shell` runs the notebook's cells."""

    def __init__(self, channel: wire.Channel, shell):
        self.channel = channel
        self.shell = shell
        self.handles: dict[int, object] = {}
        self.handle_of: dict[int, int] = {}
        self.graphs: dict[int, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
        self.lent: dict[int, object] = {}
        self.next_id = 1
        self.next_request = 1

    # ------------------------------------------------------------------ objects
    def ref(self, obj) -> dict:
        """A {'$ref': n} handle for a kernel-side object, the same handle each time it is sent."""
        key = id(obj)
        if key in self.handle_of and self.handles.get(self.handle_of[key]) is obj:
            return {"$ref": self.handle_of[key]}
        if len(self.handles) > MAX_HANDLES:
            raise wire.WireError("too many objects")
        n = self.next_id
        self.next_id += 1
        self.handles[n] = obj
        self.handle_of[key] = n
        return {"$ref": n}

    def resolve(self, spec: dict):
        """The object a handle or a lent-object spec from the judge stands for; WireError if unknown."""
        if "$ref" in spec:
            try:
                return self.handles[int(spec["$ref"])]
            except (KeyError, TypeError, ValueError):
                raise wire.WireError("unknown object") from None
        return self.lent_object(spec)

    def lent_object(self, spec: dict):
        """The stand-in for an object the judge lends (a module or a function), made on first sight."""
        n = int(spec["$lent"])
        if n in self.lent:
            obj = self.lent[n]
            if isinstance(obj, _LentModule) and "params" in spec:
                obj._load(spec["params"], self.blobs)
            return obj
        kind = spec.get("kind")
        if kind == "module":
            obj = _LentModule(self, n, spec)
            obj._load(spec["params"], self.blobs)
        elif kind == "function":
            obj = _LentFunction(self, n, spec.get("name", "function"))
        else:
            raise wire.WireError("unknown lent object")
        self.lent[n] = obj
        return obj

    def target(self, spec):
        """What a call targets: a name in the student's namespace or an object handle."""
        if isinstance(spec, dict) and "name" in spec:
            ns = self.shell.user_ns
            if spec["name"] not in ns:
                raise NameError(f"name {spec['name']!r} is not defined")
            return ns[spec["name"]]
        return self.resolve(spec)

    # ------------------------------------------------------------------ requests from the judge
    def serve(self) -> None:
        """Announce readiness, then answer the judge's requests until it says bye."""
        self.channel.send({"op": "ready", "pid": os.getpid()})
        while True:
            header, blobs = self.channel.recv()
            if header.get("op") == "bye":
                self.channel.send({"re": header.get("id")})
                return
            self.answer(header, blobs)

    def answer(self, header: dict, blobs: list[bytes]) -> None:
        """Run one request and send the reply; the student's exceptions are reported by builtin type only."""
        self.blobs = blobs
        rid = header.get("id")
        try:
            reply = getattr(self, "op_" + str(header.get("op")))(header)
            out = reply.pop("_encoded", None)
            self.channel.send({"re": rid, **reply, **self.events()}, out.blobs if out else [])
        except KeyboardInterrupt:
            self.channel.send({"re": rid, "error": {"kind": "interrupted"}, **self.events()})
        except wire.WireError:
            raise
        except BaseException as exc:  # the student's code failed: say which builtin type, nothing more
            traceback.print_exc(limit=8)  # to the sandbox's log (the instructor's eyes only)
            if isinstance(exc, SystemExit):
                kind = "SystemExit"
            else:
                kind = next((c.__name__ for c in type(exc).__mro__ if c.__module__ == "builtins"), "Exception")
            self.channel.send({"re": rid, "error": {"kind": "raised", "type": kind}, **self.events()})

    def events(self) -> dict:
        """The audit events seen since the last reply (at most 20), for the judge."""
        if not AUDIT:
            return {}
        out = {"events": AUDIT[:20]}
        AUDIT.clear()
        return out

    def op_run(self, header: dict) -> dict:
        """Run a cell of code in the student's shell; the error type if it failed."""
        result = self.shell.run_cell(str(header.get("code", "")), store_history=False, silent=True)
        err = result.error_before_exec or result.error_in_exec
        if isinstance(err, KeyboardInterrupt):
            raise KeyboardInterrupt
        if err is None:
            return {"ok": True}
        return {
            "ok": False,
            "type": next((c.__name__ for c in type(err).__mro__ if c.__module__ == "builtins"), "Exception"),
        }

    def op_call(self, header: dict) -> dict:
        """Call a student's function or method on the judge's arguments, seeded; the encoded result."""
        fn = self.target(header["target"])
        if header.get("method"):
            fn = getattr(fn, str(header["method"]))
        leaves: list[torch.Tensor] = []
        args = wire.decode(header.get("args", []), self.blobs, self.resolve, leaves, grad=True)
        kwargs = wire.decode(header.get("kwargs", {}), self.blobs, self.resolve, leaves, grad=True)
        seed = int(header.get("seed", 0))
        torch.manual_seed(seed)
        random.seed(seed)
        try:
            import numpy

            numpy.random.seed(seed % 2**32)
        except ImportError:  # pragma: no cover
            pass
        with torch.set_grad_enabled(bool(header.get("grad", True))):
            value = fn(*args, **kwargs)
        tensors: list[torch.Tensor] = []
        out = wire.encode(value, objects=self._objects, tensors=tensors)
        reply = {"value": out.header, "_encoded": out}
        grads = [i for i, t in enumerate(tensors) if t.requires_grad]
        if grads:
            n = self.next_id
            self.next_id += 1
            self.graphs[n] = ([tensors[i] for i in grads], leaves)
            reply.update(call=n, outs=grads)
        reply["lent_state"] = self._lent_state(out)
        return reply

    def _objects(self, obj) -> dict:
        if isinstance(obj, (_LentModule, _LentFunction)):
            return {"$lent": obj._lent_id}
        return self.ref(obj)

    def _lent_state(self, out: wire.Encoded) -> dict:
        """Current parameter values of the lent modules (the student's optimizer changed them)."""
        state = {}
        for n, obj in self.lent.items():
            if isinstance(obj, _LentModule):
                enc = wire.encode(list(obj._params), blobs=out.blobs)
                state[str(n)] = enc.header
        return state

    def op_backward(self, header: dict) -> dict:
        """Backpropagate the judge's gradients through the outputs of an earlier call; the inputs' gradients."""
        outs, leaves = self.graphs[int(header["call"])]
        grads = wire.decode(header.get("grads", []), self.blobs)
        pairs = [(o, g) for o, g in zip(outs, grads, strict=True) if g is not None]
        for leaf in leaves:
            leaf.grad = None
        if pairs:
            torch.autograd.backward([o for o, _ in pairs], [g.to(o.dtype) for o, g in pairs], retain_graph=True)
        got = [leaf.grad if leaf.requires_grad else None for leaf in leaves]
        for leaf in leaves:
            leaf.grad = None
        out = wire.encode(got)
        return {"value": out.header, "_encoded": out}

    def op_getattr_ns(self, header: dict) -> dict:
        """The value bound to a name in the student's namespace, encoded."""
        ns = self.shell.user_ns
        name = str(header["name"])
        if name not in ns:
            raise NameError(name)
        out = wire.encode(ns[name], objects=self._objects)
        return {"value": out.header, "_encoded": out}

    def op_getattr(self, header: dict) -> dict:
        """An attribute of a kernel-side object, encoded."""
        value = getattr(self.target(header["target"]), str(header["name"]))
        out = wire.encode(value, objects=self._objects)
        return {"value": out.header, "_encoded": out}

    def op_params(self, header: dict) -> dict:
        """A module's parameters with their gradients, as [name, tensor, grad] triples."""
        module = self.target(header["target"])
        named = list(module.named_parameters())
        out = wire.encode([[n, p, p.grad] for n, p in named])
        return {"value": out.header, "_encoded": out}

    def op_modules(self, header: dict) -> dict:
        """A module's submodules: name, torch.nn layer kind and stride, for the architecture checks."""
        found = []
        for name, m in self.target(header["target"]).named_modules():
            kind = next((c.__name__ for c in type(m).__mro__ if c.__module__.startswith("torch.nn.modules")), "Module")
            stride = getattr(m, "stride", None)
            found.append(
                {"name": str(name), "kind": kind, "stride": list(stride) if isinstance(stride, tuple) else stride}
            )
        out = wire.encode(found)
        return {"value": out.header, "_encoded": out}

    def op_has(self, header: dict) -> dict:
        """Whether a name is defined in the student's namespace."""
        return {"value": str(header["name"]) in self.shell.user_ns}

    def op_bind(self, header: dict) -> dict:
        """Bind (or delete) a name in the student's namespace to a value sent by the judge."""
        ns = self.shell.user_ns
        name = str(header["name"])
        if header.get("value") is None and header.get("delete"):
            ns.pop(name, None)
        else:
            ns[name] = wire.decode(header["value"], self.blobs, self.resolve)
        return {}

    def op_reset(self, header: dict) -> dict:
        """Forget the graphs, handles and lent objects of the last check."""
        self.graphs.clear()
        self.handles.clear()
        self.handle_of.clear()
        self.lent.clear()
        return {}

    # ------------------------------------------------------------------ requests to the judge
    def ask(self, header: dict, blobs: list[bytes]) -> tuple[dict, list[bytes]]:
        """Send a request to the judge and wait for its answer (serving nothing meanwhile)."""
        rid = -self.next_request
        self.next_request += 1
        self.channel.send({**header, "id": rid}, blobs)
        reply, reply_blobs = self.channel.recv()
        if reply.get("re") != rid:
            raise wire.WireError("unexpected message from the judge")
        if "error" in reply:
            err = reply["error"]
            kind = {
                "AssertionError": AssertionError,
                "TypeError": TypeError,
                "ValueError": ValueError,
                "IndexError": IndexError,
                "KeyError": KeyError,
            }.get(err.get("type"), RuntimeError)
            raise kind(err.get("message", "the grader's model could not run this call"))
        return reply, reply_blobs


class _Attach(torch.autograd.Function):
    """Connects outputs computed by the judge to this kernel's autograd graph."""

    @staticmethod
    def forward(ctx, link, anchor, *inputs):
        ctx.link = link
        return tuple(t.clone() for t in link["outs"])

    @staticmethod
    def backward(ctx, *grads):
        link = ctx.link
        enc = wire.encode(list(grads))
        reply, blobs = link["harness"].ask(
            {"op": "lent_backward", "call": link["call"], "grads": enc.header}, enc.blobs
        )
        got = wire.decode(reply.get("value", []), blobs)
        return (None, None, *[g if isinstance(g, torch.Tensor) else None for g in got])


def _call_judge(harness: Harness, lent_id: int, method: str, args, kwargs, params=(), training=None):
    inputs: list[torch.Tensor] = []
    enc = wire.encode([list(args), dict(kwargs)], objects=harness._objects, tensors=inputs)
    penc = wire.encode(list(params), blobs=enc.blobs, tensors=inputs)
    grad = torch.is_grad_enabled()
    reply, blobs = harness.ask(
        {
            "op": "lent_call",
            "lent": lent_id,
            "method": method,
            "args": enc.header,
            "params": penc.header,
            "training": training,
            "grad": grad,
        },
        enc.blobs,
    )
    outs: list[torch.Tensor] = []
    value = wire.decode(reply.get("value"), blobs, harness.resolve, outs)
    marked = reply.get("outs") or []
    if not marked or not grad:
        return value
    grad_inputs = [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]
    link = {"harness": harness, "call": reply.get("call"), "outs": [outs[i] for i in marked]}
    anchor = torch.zeros((), requires_grad=True)
    attached = _Attach.apply(link, anchor, *grad_inputs)
    # the judge answers lent_backward with one gradient per input that requires grad, in order
    swap = dict(zip(marked, attached, strict=True))
    counter = iter(range(len(outs)))
    return wire.replace_tensors(value, lambda t: swap.get(next(counter), t))


class _LentFunction:
    """A function of the judge's (a reference the check swaps in); calls run in the judge."""

    def __init__(self, harness: Harness, lent_id: int, name: str):
        self._harness, self._lent_id, self.__name__ = harness, lent_id, name

    def __call__(self, *args, **kwargs):
        return _call_judge(self._harness, self._lent_id, "__call__", args, kwargs)


class _LentModule(torch.nn.Module):
    """A model of the judge's: real parameters here (the student's optimizer steps them), maths in the judge."""

    def __init__(self, harness: Harness, lent_id: int, spec: dict):
        super().__init__()
        self._harness, self._lent_id = harness, lent_id
        self._names = [str(n) for n in spec.get("names", [])]
        self._methods = {str(m) for m in spec.get("methods", [])}
        self._params = torch.nn.ParameterList()
        for key, value in (spec.get("attrs") or {}).items():
            if not key.startswith("_") and isinstance(value, (int, float, str, bool)):
                object.__setattr__(self, key, value)

    def _load(self, header, blobs) -> None:
        values = wire.decode(header, blobs)
        with torch.no_grad():
            if len(self._params) != len(values):
                self._params = torch.nn.ParameterList(
                    [torch.nn.Parameter(v, requires_grad=v.is_floating_point()) for v in values]
                )
            else:
                for p, v in zip(self._params, values, strict=True):
                    p.copy_(v)

    def _remote(self, method: str, args, kwargs):
        return _call_judge(self._harness, self._lent_id, method, args, kwargs, list(self._params), self.training)

    def forward(self, *args, **kwargs):
        return self._remote("forward", args, kwargs)

    def __getattr__(self, name: str):
        if not name.startswith("_") and name in self.__dict__.get("_methods", ()):
            return lambda *args, **kwargs: self._remote(name, args, kwargs)
        return super().__getattr__(name)


def drop_privileges() -> None:
    """When the sandbox starts as root (a root grader), become the unprivileged grading user."""
    uid_text = os.environ.pop("VAEKIT_SANDBOX_UID", "")
    if os.getuid() != 0 or not uid_text:  # not root, or no sandbox (--unsafe-no-sandbox): nothing to drop
        return
    uid = int(uid_text)
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)


def no_new_privileges() -> None:
    """Set PR_SET_NO_NEW_PRIVS: nothing the kernel runs can gain privileges (setuid programs)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):  # no prctl (not Linux): nothing to set
        ctypes.CDLL(None, use_errno=True).prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS


def _warm_up_torch() -> None:
    """Trigger torch's lazy imports (the optimizers pull in sympy and the compiler stack, seconds of
    CPU) on a throw-away model of our own, so that a forked kernel starts with them done."""
    model = torch.nn.Linear(2, 1)
    for optimizer in (torch.optim.Adam(model.parameters()), torch.optim.SGD(model.parameters(), lr=0.1)):
        model(torch.ones(1, 2)).sum().backward()
        optimizer.step()
        optimizer.zero_grad()
    torch.distributions.Normal(torch.zeros(1), torch.ones(1)).log_prob(torch.zeros(1))
    torch.autograd.gradcheck(lambda x: x * 2, (torch.ones(1, dtype=torch.float64, requires_grad=True),))


def preload():
    """Import what every notebook imports and make the shell: once per kernel, or once per zygote."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    import matplotlib.font_manager  # builds the font list once, not in every forked kernel
    import matplotlib.pyplot  # noqa: F401
    from IPython.core.interactiveshell import InteractiveShell

    with contextlib.suppress(ImportError):  # the sandbox always has it
        import vaekit  # noqa: F401
    _warm_up_torch()
    shell = InteractiveShell.instance(colors="nocolor")
    shell.showtraceback = lambda *a, **k: None  # tracebacks are the student's own business
    shell.run_cell("%matplotlib inline", store_history=False, silent=True)
    return shell


def serve_fd(shell, fd: int) -> int:
    """Serve the judge on socket `fd` with `shell`; returns the process's exit code."""
    home = os.environ.get("HOME", "/tmp/home")
    os.makedirs(home, exist_ok=True)
    os.chdir(home)
    # the student's prints go nowhere: nothing computed here reaches the feedback
    null = os.open(os.devnull, os.O_RDWR)
    for target in (0, 1):
        os.dup2(null, target)
    harness = Harness(wire.Channel.from_fd(fd), shell)
    sys.addaudithook(_audit)  # after the imports: only the notebook's own file accesses are seen
    try:
        harness.serve()
    except wire.PeerClosed:
        return 0
    except wire.WireError:
        traceback.print_exc()
        return 3
    return 0


def main(argv: list[str]) -> int:
    """Kernel entry point: drop privileges, preload, then serve the judge on file descriptor argv[1]."""
    fd = int(argv[1])
    drop_privileges()
    no_new_privileges()
    return serve_fd(preload(), fd)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
