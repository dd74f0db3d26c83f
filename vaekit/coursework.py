"""Carry your own code and weights from one notebook to the next.

The β and interpolation notebooks build on the VAE and auto-encoder you wrote
earlier. `export_parts` writes the definitions you name (classes and functions
from your notebook) into a small module in the course work folder;
`import_parts` imports it in a later notebook. Nothing is copied by hand, and
no reference solution is involved.

The work folder is `$VAEKIT_WORKDIR` if set, else your Google Drive in Colab
(each Colab notebook runs on its own machine, so only Drive is shared between
them), else `./vaekit_work` next to the notebook.
"""

from __future__ import annotations

import ast
import builtins
import importlib.util
import inspect
import linecache
import os
import symtable
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from vaekit.env import _in_colab

HEADER = '''"""Code exported by vaekit.export_parts from {source}. Edit the notebook, not this file."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

import vaekit
'''


class WorkdirError(RuntimeError):
    """The course work folder is unavailable (in Colab: Google Drive could not be mounted)."""


def _drive_failed(reason: str) -> WorkdirError:
    return WorkdirError(
        f"Google Drive could not be mounted ({reason}). The course keeps your code and weights in "
        f"your Drive (MyDrive/vaekit_work), because each Colab notebook runs on its own machine and "
        f"only Drive is shared between them. Run this cell again and allow access to your Google Drive "
        f"(sign in with the account you use for the course), or set VAEKIT_WORKDIR to use another "
        f"folder: `import os; os.environ['VAEKIT_WORKDIR'] = '/content/vaekit_work'` (that folder is "
        f"deleted when the Colab runtime ends: notebooks 3 and 4 then cannot load what 1 and 2 saved)."
    )


def workdir() -> Path:
    """The course work folder (created if needed); see the module docstring.

    In Colab this mounts Google Drive; a refused or failing mount raises WorkdirError
    saying how to retry, or how to choose another folder with VAEKIT_WORKDIR.
    """
    env = os.environ.get("VAEKIT_WORKDIR")
    if env:
        path = Path(env)
    elif _in_colab():
        drive = Path("/content/drive")
        if not (drive / "MyDrive").exists():
            from google.colab import drive as colab_drive  # type: ignore[import-not-found]

            print("Mounting Google Drive so that later notebooks can find your code and weights…")
            try:
                colab_drive.mount(str(drive))
            except Exception as exc:  # Colab raises a bare ValueError("mount failed"), or a timeout
                raise _drive_failed(f"{type(exc).__name__}: {exc}") from exc
            if not (drive / "MyDrive").exists():
                raise _drive_failed(f"{drive} has no MyDrive folder after mounting")
        path = drive / "MyDrive" / "vaekit_work"
    else:
        path = Path.cwd() / "vaekit_work"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _definition_source(obj: Any) -> str:
    """The source of a top-level class or function, also when defined in a notebook cell.

    `inspect.getsource` cannot find classes defined in a notebook on Python < 3.13,
    so the cell is read from linecache (where IPython keeps it) and parsed.
    """
    # unwrap decorators such as @torch.no_grad(): the wrapper's code lives in torch
    code = getattr(inspect.unwrap(obj), "__code__", None)
    if code is None and inspect.isclass(obj):
        for member in vars(obj).values():
            member = inspect.unwrap(getattr(member, "__func__", member))
            if hasattr(member, "__code__"):
                code = member.__code__
                break
    if code is None:
        raise TypeError(f"export_parts takes classes and functions; {obj!r} is neither")
    lines = linecache.getlines(code.co_filename)
    if not lines:
        raise ValueError(f"cannot find the source of {obj.__name__}: was it defined in this session?")
    tree = ast.parse("".join(lines))
    text = "".join(lines)
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == obj.__name__:
            start = min([d.lineno for d in node.decorator_list] + [node.lineno])
            segment_lines = text.splitlines(keepends=True)[start - 1 : node.end_lineno]
            return "".join(segment_lines)
    raise ValueError(f"{obj.__name__} is not defined at the top level of a cell; define it there to export it")


def _module_names(text: str) -> set[str]:
    """Names bound at the top level of a module's source (imports, assignments, defs)."""
    names = set()
    for node in ast.parse(text).body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return names


def _unbound_globals(text: str) -> dict[str, list[str]]:
    """For each top-level definition in `text`, the global names it reads that the module never binds.

    These fail only when the code runs (a method using a notebook constant raises NameError
    when the class is instantiated), so importing the module cannot find them.
    """
    known = _module_names(text) | set(dir(builtins))
    out: dict[str, list[str]] = {}
    for top in symtable.symtable(text, "<parts>", "exec").get_children():
        missing, stack = set(), [top]
        while stack:
            table = stack.pop()
            stack.extend(table.get_children())
            for sym in table.get_symbols():
                if sym.is_referenced() and sym.is_global() and sym.get_name() not in known:
                    missing.add(sym.get_name())
        if missing:
            out.setdefault(top.get_name(), []).extend(sorted(missing))
    return out


def export_parts(name: str, objects: list[Any], constants: dict[str, object] | None = None) -> Path:
    """Write the given classes/functions (and constants) to `<workdir>/<name>.py`.

    Example, at the end of 02_vae.ipynb:
    `export_parts("02_vae", [VAE, reparameterize, kl_divergence, vae_loss, train_vae],
    constants={"LATENT_DIM": LATENT_DIM})`.
    A definition that cannot stand on its own is reported here, naming the notebook
    and the definition to fix, and nothing is saved: one that reads a name the saved
    module does not define (a notebook constant used inside a method, a function not
    in the list), found without running it, or one whose module does not import.
    """
    chunks = [HEADER.format(source=name + ".ipynb")]
    for key, value in (constants or {}).items():
        chunks.append(f"{key} = {value!r}\n")
    unfinished = []
    for obj in objects:
        source = _definition_source(obj)
        if "raise NotImplementedError" in source:
            unfinished.append(obj.__name__)
        chunks.append("\n\n" + source.rstrip() + "\n")
    if unfinished:
        raise ValueError(
            f"{', '.join(unfinished)} still raise NotImplementedError: finish them (and rerun their cells) "
            f"before saving them for later notebooks. Nothing was saved."
        )
    unbound = _unbound_globals("".join(chunks))
    if unbound:
        uses = "; ".join(f"{obj} uses {', '.join(names)}" for obj, names in unbound.items())
        first = next(iter(unbound.values()))[0]
        raise NameError(
            f"{uses}: defined elsewhere in {name}.ipynb, so the saved code could not run on its own in a later "
            f"notebook. Fix it in {name}.ipynb, in the cell that defines {next(iter(unbound))}: use a value "
            f"or an argument instead, or save the name too (add the function or class to this list, or pass "
            f"constants={{{first!r}: {first}}}), then run this cell again. Nothing was saved."
        )
    path = workdir() / f"{name}.py"
    partial = path.with_suffix(".py.partial")
    partial.write_text("".join(chunks))
    os.replace(partial, path)  # atomic: a notebook importing it meanwhile never sees half a file
    module = _load(path, name)
    missing = [o.__name__ for o in objects if not hasattr(module, o.__name__)]
    if missing:  # pragma: no cover - defensive: _definition_source always writes them
        raise RuntimeError(f"export of {missing} failed")
    print(f"saved {', '.join(o.__name__ for o in objects)} to {path}")
    return path


def _load(path: Path, name: str) -> ModuleType:
    module_name = "vaekit_parts_" + "".join(c if c.isalnum() else "_" for c in name)
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None  # a .py file always has both
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise ImportError(
            f"{path} does not import ({type(exc).__name__}: {exc}). A definition uses a name defined "
            f"elsewhere in the notebook: export that too (or pass it in constants=...), then export again."
        ) from exc
    return module


def import_parts(name: str) -> ModuleType:
    """Import what `export_parts(name, ...)` saved, e.g. `import_parts("02_vae").VAE`."""
    path = workdir() / f"{name}.py"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist. Open {name}.ipynb, run it to the end (its last cell calls "
            f"vaekit.export_parts), then come back and run this cell again."
        )
    return _load(path, name)
