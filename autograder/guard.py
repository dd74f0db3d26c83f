"""Runtime guard of a grading kernel: undo and report monkeypatching, cap output.

The grader copies this file into the kernel's import path as `_vaekit_guard` and
installs it from an IPython startup file, before any cell of the notebook runs.
It stands alone (no import from the repository's autograder package).

* Before the first cell it snapshots the namespaces the checks rely on: torch,
  torch.testing, torch.nn.functional, math, builtins, numpy, vaekit, the hidden
  checks, the attributes of torch.Tensor and nn.Module, and their sys.modules
  entries.
* Before and after every cell it compares them with the snapshot, puts back
  what changed, and appends what it found to the file named by
  $VAEKIT_GUARD_LOG (one JSON object per line). The grader fails a graded cell
  during which something changed and marks the notebook `tampered`.
* Names the test cells read from the notebook (torch, nn, F, math, vaekit) are
  rebound to the real modules if a cell rebinds them.
* Each cell may write at most $VAEKIT_GRADER_OUTPUT_KB kB to stdout/stderr;
  the rest is dropped in the kernel, before it reaches the grader.

This is a tripwire, not a sandbox: Python code can always find a way around it.
The grader's static scan of the student's code is the other half.
"""
from __future__ import annotations

import gc
import importlib
import json
import os
import pkgutil
import sys

MODULES = [
    "builtins", "math", "random", "torch", "torch.testing", "torch.nn", "torch.nn.functional",
    "torch.nn.init", "torch.autograd", "torch.distributions", "torch.optim", "torch.linalg",
    "numpy", "numpy.testing", "vaekit", "vaekit.checks", "autograder", "autograder.checks",
]
CLASSES = [("torch", "Tensor"), ("torch.nn", "Module"), ("torch.optim", "Optimizer"), ("torch.optim", "Adam")]
NAMES = {"torch": "torch", "nn": "torch.nn", "F": "torch.nn.functional", "math": "math", "vaekit": "vaekit"}
# IPython itself swaps these builtins in and out around each cell
VOLATILE_BUILTINS = {"exit", "quit", "get_ipython", "display", "_", "__", "___", "help",
                     "copyright", "credits", "license", "__IPYTHON__", "input", "raw_input"}
# attributes Python itself caches on classes (copyreg, when an object is pickled)
CACHED_ATTRS = {"__slotnames__"}
MISSING = object()


class Guard:
    def __init__(self, shell, log_path: str | None, output_limit: int):
        self.shell = shell
        self.log_path = log_path
        self.output_limit = output_limit
        self.modules: dict[str, tuple[object, dict]] = {}
        self.classes: dict[str, tuple[type, dict]] = {}
        self.sys_modules: dict[str, object] = {}
        self.written = 0
        self.truncated = False
        self._snapshot()

    def _snapshot(self) -> None:
        names = list(MODULES)
        try:
            import autograder.checks as checks

            names += [f"autograder.checks.{m.name}" for m in pkgutil.iter_modules(checks.__path__)]
        except Exception:  # grading without hidden checks: nothing to protect there
            pass
        for name in names:
            try:
                module = importlib.import_module(name)
            except Exception:
                continue
            self.modules[name] = (module, dict(vars(module)))
            self.sys_modules[name] = module
        for modname, clsname in CLASSES:
            module = self.sys_modules.get(modname)
            cls = getattr(module, clsname, None) if module else None
            if isinstance(cls, type):
                self.classes[f"{modname}.{clsname}"] = (cls, dict(vars(cls)))

    def check(self) -> list[str]:
        """Put back everything that changed since the snapshot; return what changed."""
        changed = []
        for name, (module, snap) in self.modules.items():
            current = vars(module)
            own = name.startswith(("autograder", "vaekit"))
            for key, value in snap.items():
                new = current.get(key, MISSING)
                if new is value:
                    continue
                if own and not (callable(value) or isinstance(value, type(sys))):
                    continue  # the course's own modules may cache data in their globals
                if name == "builtins" and key in VOLATILE_BUILTINS:
                    continue
                if _own_wrapper(value, new):
                    snap[key] = new
                    continue
                changed.append(f"{name}.{key}")
                current[key] = value
        for name, (cls, snap) in self.classes.items():
            current = dict(vars(cls))
            for key in set(snap) | set(current):
                old, new = snap.get(key, MISSING), current.get(key, MISSING)
                if old is new or (old is MISSING and key in CACHED_ATTRS):
                    continue
                if _own_wrapper(old, new):
                    snap[key] = new
                    continue
                changed.append(f"{name}.{key}")
                try:
                    if key in snap:
                        setattr(cls, key, snap[key])
                    else:
                        delattr(cls, key)
                except (AttributeError, TypeError):
                    pass
        for name, module in self.sys_modules.items():
            if sys.modules.get(name) is not module:
                changed.append(f"sys.modules[{name!r}]")
                sys.modules[name] = module
        ns = self.shell.user_ns
        for var, modname in NAMES.items():
            if var in ns and ns[var] is not self.sys_modules.get(modname, ns[var]):
                changed.append(f"the name {var!r} (rebound)")
                ns[var] = self.sys_modules[modname]
        return changed

    def _report(self, phase: str, changed: list[str]) -> None:
        if not changed or not self.log_path:
            return
        record = {"phase": phase, "count": self.shell.execution_count, "changed": sorted(set(changed))[:50]}
        with open(self.log_path, "a") as log:
            log.write(json.dumps(record) + "\n")

    def pre_run_cell(self, info=None) -> None:
        self.written = 0
        self.truncated = False
        self._report("before", self.check())

    def post_run_cell(self, result=None) -> None:
        self._report("after", self.check())
        error = getattr(result, "error_in_exec", None)
        if error is not None:
            # A failed cell keeps its frames alive (sys.last_traceback for %debug, and IPython's
            # own references to the traceback): a cell that filled the memory limit would hold
            # on to it. Drop the frames' local variables (the notebook's namespace is not a
            # frame local and stays), so that later cells can still run.
            seen = 0
            while error is not None and seen < 20:
                tb = error.__traceback__
                error.__traceback__ = None
                while tb is not None:
                    _clear_frame(tb.tb_frame)
                    tb = tb.tb_next
                error = error.__cause__ or error.__context__
                seen += 1
            for name in ("last_traceback", "last_value", "last_type", "last_exc"):
                if hasattr(sys, name):
                    setattr(sys, name, None)
            gc.collect()

    def limit_stream(self, stream) -> None:
        write = stream.write
        guard = self

        def limited_write(text):
            if guard.output_limit <= 0:
                return write(text)
            n = len(text)
            if guard.written + n <= guard.output_limit:
                guard.written += n
                return write(text)
            if not guard.truncated:
                guard.truncated = True
                room = max(0, guard.output_limit - guard.written)
                write(text[:room] + f"\n[output truncated by the grader after {guard.output_limit // 1024} kB]\n")
            guard.written += n
            return n

        try:
            stream.write = limited_write
        except (AttributeError, TypeError):
            pass


def _clear_frame(frame) -> None:
    """Drop a finished frame's local variables, and the snapshot of them that formatting the
    traceback made (Python 3.11's frame.clear() leaves that dict). A frame whose locals are
    its globals (the notebook's namespace, a cell's top level) keeps them."""
    try:
        frame.clear()
    except RuntimeError:  # still executing (IPython's own frames)
        return
    try:
        snapshot = frame.f_locals
    except Exception:
        return
    if snapshot is not frame.f_globals and isinstance(snapshot, dict):
        snapshot.clear()


def _own_wrapper(old, new) -> bool:
    """True when torch itself wrapped one of its functions (functools.wraps, code inside torch).

    torch replaces a few of its functions on first use: torch._dynamo wraps
    torch.manual_seed, an optimizer wraps its class's step() for the profiler.
    """
    if old is MISSING or new is MISSING or getattr(new, "__wrapped__", None) is not old:
        return False
    code = getattr(new, "__code__", None)
    filename = getattr(code, "co_filename", "") or ""
    torch = sys.modules.get("torch")
    root = os.path.dirname(getattr(torch, "__file__", "") or "") if torch else ""
    return bool(root) and os.path.abspath(filename).startswith(root + os.sep)


def install(shell=None) -> Guard:
    shell = shell or get_ipython()  # noqa: F821 - IPython's builtin
    limit = int(os.environ.get("VAEKIT_GRADER_OUTPUT_KB", "1024") or 0) * 1024
    guard = Guard(shell, os.environ.get("VAEKIT_GUARD_LOG"), limit)
    shell.events.register("pre_run_cell", guard.pre_run_cell)
    shell.events.register("post_run_cell", guard.post_run_cell)
    for stream in (sys.stdout, sys.stderr):
        guard.limit_stream(stream)
    return guard
