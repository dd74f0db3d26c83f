"""nbgrader's Execute preprocessor, hardened for notebooks that misbehave.

Runs inside the `nbgrader autograde` process (configured by the grader's
nbgrader_config.py). Differences from stock nbgrader:

* Each kernel starts from the grading kernelspec (resource limits, see
  kernel_launcher.py) in a fresh temporary folder that is its working directory
  and its VAEKIT_WORKDIR (holding the reference parts), with the hidden checks
  and the runtime guard (guard.py) on its import path and nothing else of the
  repository.
* Nothing a notebook does makes autograde fail: a dead kernel (os._exit, a
  crash), a kernel that ignores the interrupt after a timeout, a kernel that
  does not start, all end with error outputs on the cells that could not run,
  so that nbgrader scores them 0 and goes on. Stock nbgrader drops the
  student's whole submission instead.
* A notebook has a total time budget as well as the per-cell timeout.
* Outputs are capped per cell as they arrive (a cell that prints 100 MB).
* What the guard reports is attached to the cells: a graded cell during which
  checked objects were monkeypatched fails.

The grader reads what happened from `metadata.vaekit_grader` of each cell and
of the notebook.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time

from jupyter_client.kernelspec import NoSuchKernel
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbclient.util import run_sync
from nbformat.notebooknode import NotebookNode
from traitlets import Integer

from nbgrader.preprocessors import Execute

GRADER_KEY = "vaekit_grader"
NOT_RUN = "NotRun"
KERNEL_DIED = "KernelDied"
TAMPERING = "TamperingDetected"
TIMEOUT = "CellTimeoutError"


def error_output(ename: str, evalue: str) -> NotebookNode:
    return NotebookNode(output_type="error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


def _payload_size(content: dict) -> int:
    size = len(content.get("text", "") or "")
    for value in (content.get("data") or {}).values():
        size += len(value) if isinstance(value, str) else len(json.dumps(value))
    for line in content.get("traceback") or []:
        size += len(line)
    return size


KERNEL_KEEPS = ("VAEKIT_GRADER_MEMORY_MB", "VAEKIT_GRADER_FILE_MB", "VAEKIT_GRADER_OUTPUT_KB",
                "VAEKIT_GRADER_ZYGOTE")


def kernel_env(base) -> dict[str, str]:
    """The environment every grading kernel shares, made from the grader's (`base`).

    Each kernel then gets its own HOME, VAEKIT_WORKDIR and VAEKIT_GUARD_LOG; the
    warm-kernel server (zygote.py) imports under this environment too.
    """
    env = {k: v for k, v in base.items() if not k.startswith("VAEKIT_GRADER_") or k in KERNEL_KEEPS}
    env.update({
        "PYTHONPATH": base.get("VAEKIT_GRADER_SANDBOX", ""),
        "MPLBACKEND": "Agg",
        "PYTHONDONTWRITEBYTECODE": "1",
    })
    env.pop("IPYTHONDIR", None)  # never the instructor's own IPython profile
    if base.get("VAEKIT_GRADER_IPYTHONDIR"):
        env["IPYTHONDIR"] = base["VAEKIT_GRADER_IPYTHONDIR"]
    threads = base.get("VAEKIT_GRADER_THREADS", "1")
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[key] = threads
    return env


class GuardedExecute(Execute):
    notebook_timeout = Integer(
        900, help="Seconds a whole notebook may run; later cells are not run (0: no limit)."
    ).tag(config=True)
    probe_timeout = Integer(10, help="Seconds a kernel has to answer after a timed-out cell.").tag(config=True)
    max_output_bytes = Integer(
        4 * 1024 * 1024, help="Bytes of output kept per cell (text and images); the rest is dropped."
    ).tag(config=True)

    # ------------------------------------------------------------------ kernel
    async def async_start_new_kernel(self, **kwargs):
        tmp_root = os.environ.get("VAEKIT_GRADER_TMP") or None
        self._kernel_dir = tempfile.mkdtemp(prefix="kernel-", dir=tmp_root)
        workdir = os.path.join(self._kernel_dir, "vaekit_work")
        parts = os.environ.get("VAEKIT_GRADER_PARTS")
        if parts and os.path.isdir(parts):
            shutil.copytree(parts, workdir)
        else:
            os.makedirs(workdir)
        self._guard_log = os.path.join(self._kernel_dir, "guard.jsonl")
        self._guard_offset = 0
        env = kernel_env(os.environ)
        env.update({
            "VAEKIT_WORKDIR": workdir,
            "VAEKIT_GUARD_LOG": self._guard_log,
            "HOME": self._kernel_dir,
        })
        if "IPYTHONDIR" not in env:
            env["IPYTHONDIR"] = os.path.join(self._kernel_dir, "ipython")
        kwargs["env"] = env
        kwargs["cwd"] = self._kernel_dir
        await super().async_start_new_kernel(**kwargs)

    # nbclient binds the synchronous wrapper to its own coroutine: rebind it to ours
    start_new_kernel = run_sync(async_start_new_kernel)

    def _remove_kernel_dir(self) -> None:
        path = getattr(self, "_kernel_dir", None)
        if path:
            shutil.rmtree(path, ignore_errors=True)
            self._kernel_dir = None

    def _kill_kernel(self) -> None:
        try:
            if self.km is not None:
                run_sync(self.km.shutdown_kernel)(now=True)
        except Exception:  # already gone
            pass

    # ---------------------------------------------------------------- notebook
    def preprocess(self, nb, resources=None, km=None):
        self._started = time.monotonic()
        self._stopped: str | None = None
        self._events: list[dict] = []
        self._cell_bytes: dict[int, int] = {}
        self.shutdown_kernel = "immediate"
        try:
            nb, resources = super().preprocess(nb, resources, km)
        except NoSuchKernel as exc:  # configuration error: let the grader fail loudly
            raise RuntimeError(f"grading kernel not found: {exc}") from exc
        except Exception as exc:  # the kernel did not start, or died during setup/cleanup
            reason = f"the kernel stopped unexpectedly ({type(exc).__name__}: {exc})"
            self.nb = nb
            if not self._stopped:
                self._event(None, "error", reason)
                self._stopped = reason
            for index, cell in enumerate(nb.cells):
                if cell.cell_type == "code" and not self._ran(cell):
                    self._mark_not_run(cell, index)
        finally:
            self._remove_kernel_dir()
        nb.metadata[GRADER_KEY] = {"events": self._events,
                                   "seconds": round(time.monotonic() - self._started, 1)}
        return nb, resources

    @staticmethod
    def _ran(cell) -> bool:
        return GRADER_KEY in cell.metadata or bool(cell.get("outputs"))

    def _event(self, index, kind: str, detail: str) -> None:
        self._events.append({"cell": index, "kind": kind, "detail": detail})

    def _mark_not_run(self, cell, index) -> None:
        cell.outputs = [error_output(NOT_RUN, f"not run: {self._stopped}")]
        cell.metadata[GRADER_KEY] = {"status": "not_run"}

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code" or not cell.source.strip():
            return cell, resources
        if not self._stopped and self.notebook_timeout and time.monotonic() - self._started > self.notebook_timeout:
            self._stopped = f"the notebook ran longer than its {self.notebook_timeout} s limit"
            self._event(index, "timeout", self._stopped)
        if self._stopped:
            self._mark_not_run(cell, index)
            return cell, resources
        self._cell_bytes[index] = 0
        self._last_timeout = self.timeout
        status = "ok"
        try:
            cell, resources = super().preprocess_cell(cell, resources, index)
        except DeadKernelError:
            cell.outputs.append(error_output(
                KERNEL_DIED, "the kernel died while running this cell (os._exit, exit(), a crash, or the memory limit)"))
            status = "died"
            self._stopped = "the kernel died in an earlier cell"
            self._event(index, "error", "the kernel died")
        except CellTimeoutError:
            cell.outputs.append(error_output(TIMEOUT, f"the cell ran longer than {self._last_timeout} s"))
            status = "timeout"
        except Exception as exc:  # lost connection to the kernel and the like
            cell.outputs.append(error_output(KERNEL_DIED, f"lost the kernel ({type(exc).__name__}: {exc})"))
            status = "died"
            self._stopped = "the kernel was lost in an earlier cell"
            self._event(index, "error", f"lost the kernel ({type(exc).__name__})")
            self._kill_kernel()
        if status == "ok" and any(o.get("output_type") == "error" and o.get("ename") == TIMEOUT for o in cell.outputs):
            status = "timeout"
        if status == "timeout":
            self._event(index, "timeout", f"cell timed out after {self._last_timeout} s")
            if not self._responsive(cell, resources, index):
                self._stopped = "the kernel did not stop after a timeout in an earlier cell"
                self._event(index, "timeout", "the code ignored the interrupt: the kernel was stopped, "
                                              "later cells were not run")
                self._kill_kernel()
        if any("[output truncated by the grader" in str(o.get("text", "")) for o in cell.outputs
               if o.get("output_type") == "stream"):
            self._event(index, "output", "output truncated")
        for o in cell.outputs:
            if o.get("output_type") != "error":
                continue
            if o.get("ename") == "SystemExit":
                self._event(index, "error", "the cell called sys.exit()")
            elif o.get("ename") in ("MemoryError", "OutOfMemoryError") or "can't allocate memory" in str(o.get("evalue")):
                self._event(index, "error", "the cell ran out of memory (the kernel's limit)")
        self._read_guard(cell, index)
        if cell.metadata.get("nbgrader", {}).get("grade"):
            # nbgrader scores a test cell 0 for any stderr output: a warning printed by
            # correct code must not cost points, only an error may
            for o in cell.outputs:
                if o.get("output_type") == "stream" and o.get("name") == "stderr":
                    o["name"] = "stdout"
        cell.metadata[GRADER_KEY] = {"status": status}
        self.nb.cells[index] = cell
        return cell, resources

    def _get_timeout(self, cell):
        """The per-cell timeout; a cell's metadata `timeout` may lower it, never raise it."""
        timeout = super()._get_timeout(cell)
        own = cell.metadata.get("timeout") if cell is not None else None
        if isinstance(own, (int, float)) and not isinstance(own, bool) and own > 0 and (timeout is None or own < timeout):
            timeout = int(own)
        self._last_timeout = timeout
        return timeout

    def _responsive(self, cell, resources, index) -> bool:
        """After a timeout: does the kernel answer a trivial request?"""
        probe = NotebookNode(cell_type="code", source="pass", metadata={}, outputs=[], execution_count=None)
        timeout = self.timeout
        try:
            self.timeout = self.probe_timeout
            probe = self.execute_cell(probe, index, store_history=False)
            ok = not any(o.get("output_type") == "error" for o in probe.outputs)
        except Exception:
            ok = False
        finally:
            self.timeout = timeout
            self.nb.cells[index] = cell
        return ok

    def _read_guard(self, cell, index) -> None:
        path = getattr(self, "_guard_log", None)
        if not path or not os.path.exists(path):
            return
        with open(path) as log:
            log.seek(self._guard_offset)
            text = log.read()
            self._guard_offset = log.tell()
        changed = []
        for line in text.splitlines():
            try:
                changed += json.loads(line).get("changed", [])
            except (ValueError, AttributeError):
                changed.append("(unreadable guard report)")
        if not changed:
            return
        detail = "changed " + ", ".join(sorted(set(changed))[:8]) + " (put back)"
        self._event(index, "tampered", detail)
        if cell.metadata.get("nbgrader", {}).get("grade"):
            cell.outputs.append(error_output(
                TAMPERING, "objects the tests use were modified while this cell ran; the cell scores 0"))

    # ----------------------------------------------------------------- outputs
    def output(self, outs, msg, display_id, cell_index):
        if msg.get("msg_type") == "error":  # never dropped: an error is what fails a test
            content = msg.get("content", {})
            if len(content.get("traceback") or []) > 200:
                content["traceback"] = content["traceback"][:100] + ["..."] + content["traceback"][-99:]
            return super().output(outs, msg, display_id, cell_index)
        size = _payload_size(msg.get("content", {}))
        used = self._cell_bytes.get(cell_index, 0)
        self._cell_bytes[cell_index] = used + size
        if used + size > self.max_output_bytes:
            if used <= self.max_output_bytes:
                self._cell_bytes[cell_index] = self.max_output_bytes + 1
                note = NotebookNode(output_type="stream", name="stdout",
                                    text=f"\n[output truncated by the grader: more than {self.max_output_bytes // 1024} kB]\n")
                outs.append(note)
            return None
        return super().output(outs, msg, display_id, cell_index)
