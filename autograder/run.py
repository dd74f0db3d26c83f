"""The sandboxed run of one notebook: define the student's code in a fresh sandbox, then judge it.

Only the cells that define things run (the setup and data cells, the student's
answer cells, cells the student added or changed); the release's own training
and plotting cells do not, since the judge checks each function on inputs of
its own and the feedback shows the student's submitted outputs. Test cells
never run in the kernel: their points are the judge's verdicts (judge.py).

A cell that runs past `timeout` is interrupted and the run goes on; a kernel
that dies or has to be killed is started again (at most `restarts` times) and
the definitions are run again, so that one hanging check costs only its own
points.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from nbformat.notebooknode import NotebookNode

from autograder.judge import CheckCall, CheckTimeout, Kernel, KernelLost, judge_cell
from autograder.sandbox import Limits, Mounts, Sandbox
from autograder.status import Verdict
from autograder.warm import WarmSlot

RUN_KEY = "vaekit"  # cell metadata set by the intake: {"run": bool}


@dataclass(frozen=True)
class RunSettings:
    """How one notebook is run: limits, time budgets, and what counts as the instructor's."""

    limits: Limits = field(default_factory=Limits)
    timeout: float = 60.0  # seconds a cell or a check may take
    notebook_timeout: float = 900.0  # seconds for the whole notebook
    restarts: int = 2
    unsafe: bool = False  # no sandbox (--unsafe-no-sandbox)
    instructor_paths: tuple[str, ...] = ()
    shown_paths: tuple[str, ...] = ()


@dataclass
class NotebookRun:
    """What the run produced: a verdict per test cell, and what happened on the way."""

    verdicts: dict[str, Verdict] = field(default_factory=dict)
    evidence: list[str] = field(default_factory=list)  # attempts seen (tampered)
    notes: list[str] = field(default_factory=list)  # the judge's own words on what happened
    timed_out: bool = False
    crashed: bool = False
    seconds: float = 0.0


def cells_to_run(nb: NotebookNode) -> list[tuple[str, str]]:
    """(label, source) of the cells the intake marked to run, in order."""
    out = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and cell.metadata.get(RUN_KEY, {}).get("run"):
            label = cell.metadata.get("nbgrader", {}).get("grade_id") or f"cell {index + 1}"
            out.append((label, cell.source))
    return out


def run_notebook(
    nb: NotebookNode,
    checks: dict[str, list[CheckCall]],
    settings: RunSettings,
    mounts: Mounts,
    log: Path,
    slot: int = 0,
    warm: WarmSlot | None = None,
) -> NotebookRun:
    """Run `nb`'s definitions in a sandbox and judge every test cell in `checks` (grade_id -> calls).

    warm: the grading slot's warm-kernel server (zygote.py), which forks kernels that are
    isolated as a fresh sandbox is; without it (or when it fails) each kernel starts cold.
    """
    result = NotebookRun()
    started = time.monotonic()
    deadline = started + settings.notebook_timeout
    pending = list(checks)
    restarts = 0
    definitions = cells_to_run(nb)
    while pending:
        kernel = _start(settings, mounts, log, slot, result, warm)
        if kernel is None:
            break
        try:
            _define(kernel, definitions, deadline, result)
            while pending and not kernel.lost:
                grade_id = pending[0]
                if time.monotonic() > deadline:
                    break
                kernel.timeout = max(1.0, min(settings.timeout, deadline - time.monotonic()))
                verdict = judge_cell(kernel, checks[grade_id])
                if verdict.misconception == "kernel_lost" and restarts < settings.restarts:
                    break  # start again and give this check another chance in a fresh kernel
                result.verdicts[grade_id] = verdict
                result.timed_out |= verdict.timeout
                pending.pop(0)
        finally:
            result.evidence += [e for e in kernel.evidence if e not in result.evidence]
            if kernel.lost and kernel.lost not in kernel.evidence:  # evidence is reported as such already
                result.crashed = result.crashed or "did not respond" not in kernel.lost
                result.notes.append(kernel.lost)
            kernel.process.close()
        if time.monotonic() > deadline:
            result.timed_out = True
            result.notes.append(f"the notebook ran out of its {settings.notebook_timeout:g} s")
            break
        if pending:
            restarts += 1
            if restarts > settings.restarts:
                break
            result.notes.append("the kernel was started again")
    for grade_id in pending:
        result.verdicts[grade_id] = Verdict(
            False, "not graded: " + (result.notes[-1] if result.notes else "the kernel could not run"), "not_run"
        )
    result.notes = list(dict.fromkeys(result.notes))
    result.seconds = time.monotonic() - started
    return result


def _start(
    settings: RunSettings, mounts: Mounts, log: Path, slot: int, result: NotebookRun, warm: WarmSlot | None = None
) -> Kernel | None:
    box = None
    if warm is not None:
        try:
            box, _ = warm.kernel(settings.limits)
        except OSError:  # the server failed: this kernel starts cold, and the grade is the same
            warm.failures += 1
    if box is None:
        try:
            box, _ = Sandbox.start(mounts, settings.limits, log, slot=slot, unsafe=settings.unsafe)
        except OSError as exc:
            result.crashed = True
            result.notes.append(f"the grading kernel did not start ({str(exc)[-300:]})")
            return None
    return Kernel(
        box.channel, box, settings.timeout, instructor_paths=settings.instructor_paths, shown_paths=settings.shown_paths
    )


def _define(kernel: Kernel, definitions: list[tuple[str, str]], deadline: float, result: NotebookRun) -> None:
    """Run the defining cells; a failing cell is noted (by its label only) and the run goes on."""
    for label, source in definitions:
        if kernel.lost or time.monotonic() > deadline:
            return
        try:
            header, _ = kernel.request(
                "run", code=source, timeout=max(1.0, min(kernel.timeout, deadline - time.monotonic()))
            )
        except CheckTimeout:
            result.timed_out = True
            result.notes.append(f"{label}: ran longer than {kernel.timeout:g} s and was interrupted")
            continue
        except KernelLost:
            return
        if header.get("ok") is False or "error" in header:
            note = f"{label}: raised an error when the grader ran it"
            if note not in result.notes:
                result.notes.append(note)
