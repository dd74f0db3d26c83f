"""Static scan of a student's code cells for tampering with the grading.

Looks for what has no business in an answer to these notebooks: writes to
attributes of modules (`torch.testing.assert_close = ...`), setattr/delattr on
modules, sys.modules and __builtins__, rebinding the modules the test cells use
(`torch = ...`), IPython hooks that could swallow a test's exception, frame and
garbage-collector introspection, exec/eval, and any mention of the grader's
files (hidden checks, gradebook, solutions). Each finding is a short reason a
person can check in the student's code.

The runtime guard (guard.py) backs this up in the kernel; neither alone is a
sandbox.
"""
from __future__ import annotations

import ast
import re
from functools import lru_cache

DEFAULT_MODULES = frozenset({
    "torch", "nn", "F", "math", "np", "numpy", "vaekit", "builtins", "sys", "os", "hidden",
    "autograder", "random", "inspect", "importlib", "gc", "ctypes", "plt", "matplotlib", "io", "IPython",
})
ALLOWED_MODULE_WRITES = ("torch.backends.", "plt.rcParams", "matplotlib.rcParams", "np.random.seed")
FORBIDDEN_IMPORTS = ("autograder", "nbgrader", "sqlite3", "ctypes", "_vaekit_guard", "builtins", "gc")
SUSPICIOUS_TEXT = (
    "autograder", "gradebook", "vaekit_guard", "nbgrader", "hidden test", "/checks", "solutions",
    "source/", "sqlite", "VAEKIT_GUARD", "VAEKIT_GRADER", "/proc/", "autograded", "submitted/",
)
SUSPICIOUS_ATTRS = {
    "f_globals", "f_locals", "f_back", "f_builtins", "_getframe", "currentframe", "get_referrers",
    "get_referents", "get_objects", "__subclasses__", "__globals__", "__code__", "__closure__",
    "__builtins__", "set_custom_exc", "custom_exceptions", "CustomTB", "events", "ast_transformers",
    "input_transformers_post", "input_transformers_cleanup", "showtraceback", "_showtraceback",
    "showsyntaxerror", "excepthook", "displayhook", "display_pub", "run_cell", "run_cell_async",
    "run_ast_nodes", "user_ns_hidden", "__file__", "__path__",
}
DYNAMIC_CALLS = {"exec", "eval", "compile", "__import__", "setattr", "delattr", "globals", "vars"}
MODULE_DICT_WRITES = {"update", "pop", "popitem", "clear", "setdefault", "__setitem__", "__delitem__"}


@lru_cache(maxsize=1)
def _transformer():
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager()


def _transform(source: str) -> str:
    """IPython syntax (magics, shell escapes) to plain Python."""
    if "%" not in source and "!" not in source and "?" not in source:
        return source
    try:
        return _transformer().transform_cell(source)
    except Exception:
        return "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))


def parse(source: str) -> ast.AST | None:
    try:
        return ast.parse(_transform(source))
    except (SyntaxError, ValueError):
        return None


def dotted(node: ast.AST) -> str | None:
    """`a.b.c` for a chain of attributes on a name (calls and subscripts end it)."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id, *reversed(parts)])
    return None


def root_name(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def imported_names(tree: ast.AST) -> dict[str, str]:
    """name bound by an import -> the module (or module.attr) it names."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                names[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                names[a.asname or a.name] = f"{node.module}.{a.name}"
    return names


class Scanner:
    """Scan the code cells of one notebook; `protected` are names the test cells read."""

    def __init__(self, module_names=frozenset(), protected=frozenset()):
        self.modules = set(DEFAULT_MODULES) | set(module_names)
        self.protected = set(protected)

    def scan(self, source: str) -> list[str]:
        reasons: list[str] = []
        for line in source.splitlines():
            stripped = line.strip()
            if stripped.startswith(("!", "%")) and _suspicious_text(stripped):
                reasons.append(f"shell/magic line mentions grader files: {stripped[:60]!r}")
        tree = parse(source)
        if tree is None:
            return reasons
        local_modules = self.modules | set(imported_names(tree))
        for node in ast.walk(tree):
            reasons += self._node(node, local_modules)
        return list(dict.fromkeys(reasons))

    def _node(self, node: ast.AST, modules: set[str]) -> list[str]:
        out = []
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            for target in targets:
                for t in (target.elts if isinstance(target, (ast.Tuple, ast.List)) else [target]):
                    out += self._target(t, modules, top_level=False)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for name in names:
                if name.split(".")[0] in FORBIDDEN_IMPORTS:
                    out.append(f"imports {name}")
            for a in node.names:
                bound = a.asname or a.name.split(".")[0]
                if isinstance(node, ast.Import):   # `import torch.testing` binds torch itself
                    real = a.name if a.asname else a.name.split(".")[0]
                else:
                    real = f"{node.module}.{a.name}"
                if bound in self.protected and not _same_module(bound, real):
                    out.append(f"rebinds {bound!r}, which the tests use, to {real}")
        elif isinstance(node, ast.Call):
            out += self._call(node, modules)
        elif isinstance(node, ast.Attribute) and node.attr in SUSPICIOUS_ATTRS:
            out.append(f"uses .{node.attr}")
        elif isinstance(node, ast.Name) and node.id in ("__builtins__", "__import__"):
            out.append(f"uses {node.id}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _suspicious_text(node.value):
            out.append(f"mentions {_suspicious_text(node.value)!r}")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name in self.protected:
            out.append(f"redefines {node.name!r}, which the tests use")
        if isinstance(node, ast.Assign) or isinstance(node, ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for t in (target.elts if isinstance(target, (ast.Tuple, ast.List)) else [target]):
                    if isinstance(t, ast.Name) and t.id in self.protected:
                        out.append(f"assigns to {t.id!r}, which the tests use")
        return out

    def _target(self, target: ast.AST, modules: set[str], top_level: bool) -> list[str]:
        if isinstance(target, ast.Attribute):
            name = dotted(target) or ""
            root = root_name(target)
            if target.attr in ("__code__", "__globals__", "__defaults__", "__kwdefaults__", "__class__", "__dict__"):
                return [f"assigns to {name or target.attr}"]
            if root in modules and not name.startswith(ALLOWED_MODULE_WRITES):
                return [f"assigns to {name or ('an attribute of ' + root)}"]
        elif isinstance(target, ast.Subscript):
            base = dotted(target.value) or ""
            root = root_name(target)
            if base in ("sys.modules", "__builtins__") or base.endswith(".__dict__") or (
                    isinstance(target.value, ast.Call) and isinstance(target.value.func, ast.Name)
                    and target.value.func.id in ("vars", "globals")):
                return [f"writes into {base or ast.unparse(target.value)}"]
            if root in modules and base and not base.startswith(ALLOWED_MODULE_WRITES):
                return [f"writes into {base}"]
        elif isinstance(target, ast.Starred):
            return self._target(target.value, modules, top_level)
        return []

    def _call(self, node: ast.Call, modules: set[str]) -> list[str]:
        func = node.func
        if isinstance(func, ast.Name) and func.id in DYNAMIC_CALLS:
            if func.id in ("setattr", "delattr") and node.args:
                root = root_name(node.args[0])
                if root in modules or (isinstance(node.args[0], ast.Call)):
                    return [f"{func.id} on {ast.unparse(node.args[0])}"]
                return []
            if func.id in ("globals", "vars"):
                return []  # reading is fine; writes are caught as subscript targets
            return [f"calls {func.id}()"]
        if isinstance(func, ast.Attribute):
            name = dotted(func) or ""
            if func.attr in ("setattr", "__setattr__", "__delattr__") and name.startswith(("object.", "type.")):
                return [f"calls {name}"]
            if func.attr in MODULE_DICT_WRITES:
                base = dotted(func.value) or ""
                if base in ("sys.modules", "__builtins__") or base.endswith(".__dict__"):
                    return [f"calls {base}.{func.attr}"]
                if (isinstance(func.value, ast.Call) and isinstance(func.value.func, ast.Name)
                        and func.value.func.id == "vars" and func.value.args
                        and root_name(func.value.args[0]) in modules):
                    return [f"calls vars({ast.unparse(func.value.args[0])}).{func.attr}"]
            if name in ("importlib.reload", "importlib.import_module") and node.args and not isinstance(
                    node.args[0], ast.Constant):
                return [f"calls {name} with a computed name"]
        return []


def _same_module(bound: str, real: str) -> bool:
    expected = {"torch": "torch", "nn": "torch.nn", "F": "torch.nn.functional", "math": "math",
                "vaekit": "vaekit", "np": "numpy"}
    return expected.get(bound, bound) == real or real == bound


@lru_cache(maxsize=4096)
def _suspicious_text(text: str) -> str | None:
    low = text.lower()
    for word in SUSPICIOUS_TEXT:
        if word.lower() in low:
            return word
    if re.search(r"(^|/)\.\.(/|$)", text):
        return ".."
    return None
