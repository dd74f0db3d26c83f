"""`grade --cluster tcp://HOST:8786` or `--cluster local:N`: one Dask task per student.

Imported only when --cluster is used, so Dask stays optional (`pip install 'vaekit[cluster]'`).

The client (the machine where SUBMISSIONS and OUT are) does everything but the grading:
it reads each submission as bytes (`grade.read_submission`), sends one task per student,
and, as each task completes, writes that student's rows, feedback and state with
`Grader.add` — the only writer of OUT. Workers return `Result`s; they never write OUT and
need no shared filesystem.

What a worker needs:

* its own copy of the code (the autograder and vaekit, as a checkout of the same commit
  on its PYTHONPATH, like every Dask task's code) and the same Python packages: checked
  against the client's *fingerprint* before anyone is graded (and again by each task, for
  workers that join later);
* bubblewrap (unless --unsafe-no-sandbox);
* the course — solutions/ (the hidden tests), autograder/course.toml and the MNIST copy —
  arrives as a *bundle*: one zip made by the client, scattered to the workers once, named by
  its SHA-256. Each worker process builds its `Prepared` from it once per checksum, in a
  temporary folder of its own, and keeps it for every later task.

A worker that does not fit stops the run before any student is graded (the message names
each such worker and what differs): a cluster whose machines disagree is a set-up to fix,
not one to grade on with fewer machines. One that joins later and does not fit makes its
task fail with the same message; the run then stops (what was graded is kept in OUT; run
the same command again once the worker is fixed).

Faults: a worker that dies mid-task is Dask's business — the scheduler gives the task to
another worker (up to `distributed.scheduler.allowed-failures` times); results are keyed by
(student, notebook) on the client, so a task run twice can neither duplicate nor lose a row.
Notebook limits (--timeout, --notebook-timeout, --memory-limit) act inside the task, as with
--jobs: a student's endless loop is a `timeout` row, not a lost worker.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import io
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from autograder.config import REPO, SOLUTIONS, load_course
from autograder.sandbox import bwrap_path

if TYPE_CHECKING:  # pragma: no cover
    from autograder.grade import Grader, Options, Prepared, Result, Submission

INSTALL = "pip install 'vaekit[cluster]'"
# what must be the same on every worker as on the client (a different torch or nbgrader can change a verdict)
PACKAGES = (
    "torch",
    "torchvision",
    "numpy",
    "nbgrader",
    "nbformat",
    "nbconvert",
    "ipykernel",
    "jupyter_client",
    "dask",
    "distributed",
    "cloudpickle",
    "msgpack",
)
CODE = ("autograder", "vaekit")


class StaleWorker(RuntimeError):
    """A worker whose code, packages or sandbox differ from the client's."""


def require_dask():
    """The `distributed` module, or a GradingError saying how to install it."""
    try:
        import distributed
    except ImportError:
        from autograder.grade import GradingError

        raise GradingError(
            f"--cluster needs Dask's distributed scheduler, which is not installed here: {INSTALL} "
            f"(the same on every worker)"
        ) from None
    return distributed


# ------------------------------------------------------------------------------ what must match
def fingerprint(repo: Path = REPO) -> dict:
    """This process's importable code (a hash per file), Python and package versions."""
    code = {}
    for top in CODE:
        for path in sorted((repo / top).rglob("*.py")):
            if "__pycache__" not in path.parts:
                code[path.relative_to(repo).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    return {"python": platform.python_version(), "code": code, "packages": packages}


def differences(mine: dict, theirs: dict) -> list[str]:
    """What differs between a worker's fingerprint (`mine`) and the client's (`theirs`), in words."""
    said = []
    if mine["python"] != theirs["python"]:
        said.append(f"Python {mine['python']} (client: {theirs['python']})")
    for name, version in theirs["packages"].items():
        if mine["packages"].get(name) != version:
            here = mine["packages"].get(name) or "not installed"
            said.append(f"{name} {here} (client: {version or 'not installed'})")
    a, b = mine["code"], theirs["code"]
    changed = sorted(p for p in set(a) & set(b) if a[p] != b[p])
    missing = sorted(set(b) - set(a))
    extra = sorted(set(a) - set(b))
    for label, paths in (("code differs", changed), ("code missing", missing), ("code the client lacks", extra)):
        if paths:
            shown = ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
            said.append(f"{label}: {shown}")
    return said


_checked: dict[str, list[str]] = {}
_own: list[dict] = []


def own_fingerprint() -> dict:
    """This process's fingerprint, taken once: the files as they were when it first looked (soon after
    the worker started), so that a checkout updated under a running worker does not pass for its code."""
    if not _own:
        _own.append(fingerprint())
    return _own[0]


def worker_problems(client_fingerprint: dict, unsafe: bool) -> list[str]:
    """Run on a worker: why it cannot grade for this client (empty: it can). Cached per process."""
    key = hashlib.sha256(json.dumps(client_fingerprint, sort_keys=True).encode()).hexdigest() + str(unsafe)
    if key not in _checked:
        problems = differences(own_fingerprint(), client_fingerprint)
        if not unsafe and bwrap_path() is None:
            problems.append("bubblewrap (bwrap) is not installed")
        _checked[key] = problems
    return _checked[key]


def refusal(worker: str, problems: list[str]) -> str:
    """The message that refuses `worker`, naming what differs."""
    return (
        f"worker {worker} refused (stale or unfit: it runs different code or packages from this client): "
        + "; ".join(problems)
        + ". Install the same commit of the course repository and the same "
        "packages there (pip install -c constraints.txt -e '.[dev,cluster]'), then restart it."
    )


# ------------------------------------------------------------------------------ the course bundle
def make_bundle(data: Path | None, solutions: Path = SOLUTIONS, repo: Path = REPO) -> tuple[bytes, str]:
    """A reproducible zip of what grading needs besides code: solutions/, course.toml, the data;
    and its SHA-256."""
    files: list[tuple[str, Path]] = [(f"solutions/{p.name}", p) for p in sorted(solutions.glob("*.ipynb"))]
    files.append(("course.toml", repo / "autograder" / "course.toml"))
    if data is not None and data.is_dir():
        files += [(f"data/{p.relative_to(data).as_posix()}", p) for p in sorted(data.rglob("*")) if p.is_file()]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, path in files:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            z.writestr(info, path.read_bytes(), zipfile.ZIP_DEFLATED)
    blob = buf.getvalue()
    return blob, hashlib.sha256(blob).hexdigest()


_prepared: dict[str, Prepared] = {}
_prepare_lock = threading.Lock()
_slots: list[int] = []
_slot_lock = threading.Lock()
_next_slot = [0]


def prepared(bundle: bytes, checksum: str) -> Prepared:
    """This worker process's `Prepared` for the bundle `checksum` (built once, in its own temp folder)."""
    from autograder.grade import prepare

    with _prepare_lock:
        if checksum in _prepared:
            return _prepared[checksum]
        got = hashlib.sha256(bundle).hexdigest()
        if got != checksum:
            raise StaleWorker(f"the course bundle arrived damaged (SHA-256 {got[:12]}, expected {checksum[:12]})")
        base = Path(tempfile.mkdtemp(prefix=f"vaekit-worker-{checksum[:12]}-"))
        atexit.register(shutil.rmtree, base, True)
        with zipfile.ZipFile(io.BytesIO(bundle)) as z:
            z.extractall(base / "bundle", [n for n in z.namelist() if not n.startswith("data/")])
            data = _data_folder(z, checksum)
        course = load_course(base / "bundle" / "course.toml")
        _prepared[checksum] = prepare(base / "run", course, solutions=base / "bundle" / "solutions", data=data)
        return _prepared[checksum]


def _data_folder(z: zipfile.ZipFile, checksum: str) -> Path | None:
    """The bundle's data, unpacked once per machine into $VAEKIT_CLUSTER_CACHE (default ~/.cache/vaekit-cluster).

    Not under /tmp: the sandbox mounts the data at its own path and its private tmpfs on /tmp
    would hide it; not in the run's folder, which the judge counts as the instructor's.
    """
    names = [n for n in z.namelist() if n.startswith("data/") and not n.endswith("/")]
    if not names:
        return None
    root = Path(os.environ.get("VAEKIT_CLUSTER_CACHE") or Path.home() / ".cache" / "vaekit-cluster")
    target = root / checksum[:16] / "data"
    if not target.is_dir():
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".unpacking-", dir=root))
        z.extractall(tmp, names)
        target.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):  # another worker of this machine may have been first
            os.replace(tmp / "data", target)
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _slot() -> int:
    with _slot_lock:
        if _slots:
            return _slots.pop()
        _next_slot[0] += 1
        return _next_slot[0] - 1


def grade_task(
    bundle: bytes,
    checksum: str,
    client_fingerprint: dict,
    options: Options,
    client_paths: tuple[str, ...],
    sub: Submission,
) -> tuple[str, list[Result]]:
    """One student, on a worker: (the worker's address, the student's Results). Writes only its temp folder."""
    from distributed import get_worker

    from autograder.grade import _grade_safely, run_settings

    me = get_worker().address
    problems = worker_problems(client_fingerprint, options.unsafe_no_sandbox)
    if problems:
        raise StaleWorker(refusal(me, problems))
    prep = prepared(bundle, checksum)
    settings = run_settings(options, (*client_paths, str(REPO.resolve()), str(prep.base)))
    slot = _slot()
    try:
        return me, _grade_safely(prep, sub, settings, slot, None)
    finally:
        with _slot_lock:
            _slots.append(slot)


def _worker_pid() -> int:
    return os.getpid()


# ------------------------------------------------------------------------------ the client
def connect(address: str):
    """(client, cluster or None) for `--cluster tcp://HOST:PORT` or `--cluster local:N`."""
    import logging

    distributed = require_dask()
    from autograder.grade import GradingError

    if address.startswith("local:"):
        try:
            n = int(address.split(":", 1)[1])
        except ValueError:
            n = 0
        if n < 1:
            raise GradingError(f"--cluster {address}: expected local:N with N >= 1 worker processes")
        cluster = distributed.LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
        return distributed.Client(cluster), cluster
    try:
        client = distributed.Client(address, timeout=30)
    except OSError as exc:
        raise GradingError(f"--cluster {address}: no Dask scheduler answered ({exc})") from None
    return client, None


def check_workers(client, client_fingerprint: dict, unsafe: bool, wait: float = 60.0) -> list[str]:
    """Every worker's problems, as refusal messages (empty: all fit). Waits for one worker at least."""
    from autograder.grade import GradingError

    try:
        client.wait_for_workers(1, timeout=wait)
    except Exception:
        raise GradingError(f"the Dask scheduler {client.scheduler.address} has no worker (waited {wait:g} s)") from None
    reports = client.run(worker_problems, client_fingerprint, unsafe, on_error="return")
    refused = []
    for worker, problems in sorted(reports.items()):
        if isinstance(problems, BaseException):
            problems = [f"cannot run the autograder there ({type(problems).__name__}: {problems})"]
        if problems:
            refused.append(refusal(worker, problems))
    return refused


def grade_on_cluster(grader: Grader, prep: Prepared, todo: list[Submission]) -> None:
    """Grade `todo` on the cluster of `grader.options.cluster`; `grader.add` each student as it completes."""
    from autograder.grade import GradingError, data_dir

    distributed = require_dask()
    options = grader.options
    client, cluster = connect(options.cluster or "")
    futures: dict = {}
    try:
        mine = fingerprint()
        refused = check_workers(client, mine, options.unsafe_no_sandbox)
        if refused:
            raise GradingError(
                "the cluster has workers that cannot grade for this client; nothing was graded:\n  "
                + "\n  ".join(refused)
            )
        workers = set(client.scheduler_info()["workers"])
        grader.say(
            f"{len(workers)} Dask worker(s) checked: same code and packages as here"
            f"{'' if options.unsafe_no_sandbox else ', bubblewrap present'}"
        )
        if not todo:
            return
        bundle, checksum = make_bundle(prep.data or data_dir())
        remote = client.scatter(bundle, broadcast=True, hash=False)
        paths = tuple(str(p.resolve()) for p in (REPO, grader.out, grader.submissions))
        task_options = replace(options, progress=False)
        grader.start_bar(len(todo) * len(prep.names))
        for sub in todo:
            key = f"grade-{hashlib.sha256(sub.student.encode()).hexdigest()[:16]}-{sub.digest[:16]}"
            futures[
                client.submit(
                    grade_task, remote, checksum, mine, task_options, paths, sub, key=key, pure=False, retries=1
                )
            ] = sub
        finishing = distributed.as_completed(list(futures))
        last_look = time.monotonic()
        while not finishing.is_empty():
            done = finishing.next_batch(block=False) if finishing.has_ready() else []
            if not done:
                time.sleep(0.2)
            if time.monotonic() - last_look > 1.0:  # say at once when a worker leaves or joins
                workers, last_look = _report_workers(client, workers, grader), time.monotonic()
            for fut in done:
                sub = futures[fut]
                if fut.status == "finished":
                    _, results = fut.result()
                    grader.add(prep, sub.digest, results)
                    if grader.bar is not None:
                        grader.bar.update(len(results))
                    continue
                exc = fut.exception()
                if isinstance(exc, StaleWorker):
                    raise GradingError(
                        f"{exc}\nthe run stopped; OUT holds the students graded so far, and the "
                        f"same command goes on from there"
                    ) from None
                grader.say(
                    f"warning: {sub.student} could not be graded on the cluster "
                    f"({type(exc).__name__}: {str(exc)[:300]}); not recorded: a rerun grades them again"
                )
    except KeyboardInterrupt:
        grader.stopping = True
        raise
    finally:
        grader.close_bar()
        if futures:
            client.cancel(list(futures), force=True)
        client.close()
        if cluster is not None:
            cluster.close()


def _report_workers(client, known: set[str], grader: Grader) -> set[str]:
    """Say which workers left (died) or joined since the last look; returns the workers now."""
    try:
        now = set(client.scheduler_info()["workers"])
    except Exception:
        return known
    for worker in sorted(known - now):
        grader.say(
            f"worker {worker} left the cluster (died or was stopped): the students it was grading "
            f"are given to another worker"
        )
    for worker in sorted(now - known):
        grader.say(f"worker {worker} joined the cluster")
    return now


def overhead(client, tasks: int = 200, payload_bytes: int = 20_000) -> float:
    """Seconds the scheduler adds per task (a round trip of an empty task carrying `payload_bytes`)."""
    payload = os.urandom(payload_bytes)
    client.submit(len, payload, pure=False).result()  # warm up
    t0 = time.perf_counter()
    futures = [client.submit(len, payload, pure=False) for _ in range(tasks)]
    client.gather(futures)
    return (time.perf_counter() - t0) / tasks


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(fingerprint(), indent=1), file=sys.stdout)
