"""`grade --cluster` on a real dask.distributed scheduler and worker processes, all on 127.0.0.1.

A class of three students who each submitted notebook 01 (full, stub, one bug) is graded
once with --jobs 1 (the reference), then on a scheduler with two `dask worker` processes
(started with the CLIs, as on a cluster): the CSVs must be byte-identical; a client killed
mid-run and started again goes on where it stopped; a worker killed mid-task loses and
duplicates nothing; a worker running a modified copy of the repository is refused.
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest

from autograder import samples
from autograder.config import REPO

pytestmark = pytest.mark.slow
distributed = pytest.importorskip("distributed")

AE = "01_autoencoder"
CSVS = ("grades.csv", "summary.csv", "report.csv", "checks.csv")
DASK = str(Path(sys.executable).parent / "dask")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env(pythonpath: Path = REPO, **extra: str) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(pythonpath), MPLBACKEND="Agg", **extra)


def grade_cmd(submissions: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "autograder",
        "grade",
        str(submissions),
        "--out",
        str(out),
        "--no-progress",
        "--timeout",
        "120",
        *extra,
    ]


def grade(submissions: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        grade_cmd(submissions, out, *extra), cwd=REPO, env=env(), capture_output=True, text=True, timeout=900
    )


def start_grading(submissions: Path, out: Path, address: str) -> subprocess.Popen:
    """`grade --cluster` in the background (a test kills it, or a worker, while it runs); stderr piped."""
    return subprocess.Popen(
        grade_cmd(submissions, out, "--cluster", address),
        cwd=REPO,
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def student_rows(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


class Cluster:
    """A `dask scheduler` and `dask worker` processes (no nanny: a killed worker stays dead)."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen] = []
        self.workers: dict[str, subprocess.Popen] = {}
        self.start([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(self.port), "--no-dashboard"], env())

    def start(self, cmd: list[str], environment: dict[str, str]) -> subprocess.Popen:
        log = (self.tmp / f"proc{len(self.procs)}.log").open("w")
        proc = subprocess.Popen(cmd, env=environment, stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp)
        self.procs.append(proc)
        return proc

    def add_worker(self, pythonpath: Path = REPO) -> str:
        port = free_port()
        address = f"tcp://127.0.0.1:{port}"
        self.workers[address] = self.start(
            [
                DASK,
                "worker",
                self.address,
                "--host",
                "127.0.0.1",
                "--worker-port",
                str(port),
                "--nthreads",
                "1",
                "--no-nanny",
                "--no-dashboard",
                "--local-directory",
                str(self.tmp / f"w{port}"),
            ],
            env(pythonpath, VAEKIT_CLUSTER_CACHE=str(self.tmp / "cache")),
        )
        return address

    def client(self, workers: int):
        client = distributed.Client(self.address, timeout=60)
        client.wait_for_workers(workers, timeout=120)
        return client

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="module")
def klass(tmp_path_factory):
    base = tmp_path_factory.mktemp("cluster")
    subs = base / "submissions"
    release = nbformat.read(REPO / "assignments" / f"{AE}.ipynb", as_version=4)
    full = samples.full(release, nbformat.read(REPO / "solutions" / f"{AE}.ipynb", as_version=4))
    samples.write(full, subs / "alice" / f"{AE}.ipynb")
    samples.write(release, subs / "bob" / f"{AE}.ipynb")
    samples.write(samples.buggy(full, AE, next(iter(samples.BUGS[AE]))), subs / "carol" / f"{AE}.ipynb")
    reference = grade(subs, base / "jobs1", "--jobs", "1")
    assert reference.returncode == 0, reference.stderr[-3000:]
    return SimpleNamespace(base=base, submissions=subs, reference=base / "jobs1")


@pytest.fixture(scope="module")
def cluster(klass):
    c = Cluster(klass.base)
    c.add_worker()
    c.add_worker()
    client = c.client(2)
    c.pids = client.run(os.getpid)  # worker address -> pid
    client.close()
    yield c
    c.stop()


def assert_same_csvs(out: Path, reference: Path) -> None:
    for name in CSVS:
        assert (out / name).read_text() == (reference / name).read_text(), name


def test_cluster_csvs_are_identical_to_jobs_1(klass, cluster):
    proc = grade(klass.submissions, klass.base / "cluster", "--cluster", cluster.address)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # every worker the scheduler knows is checked first (under load one may miss a heartbeat and be
    # counted later, so the number is not asserted; the stale-worker test checks the refusal itself)
    assert re.search(r"\d Dask worker\(s\) checked: same code and packages as here", proc.stderr), proc.stderr[-2000:]
    assert_same_csvs(klass.base / "cluster", klass.reference)
    rows = student_rows(klass.base / "cluster" / "summary.csv")
    assert [r["student"] for r in rows] == ["alice", "bob", "carol"]
    assert (klass.base / "cluster" / "feedback" / "alice" / f"{AE}.html").is_file()


def test_an_interrupted_client_goes_on_where_it_stopped(klass, cluster):
    """The client killed outright after its first student: that student's rows are in OUT; the same
    command again grades only the others, and the CSVs are those of --jobs 1."""
    out = klass.base / "interrupted"
    proc = start_grading(klass.submissions, out, cluster.address)
    summary = out / "summary.csv"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        if summary.is_file() and summary.read_text().count("\n") >= 2:  # the header and a first student
            break
        time.sleep(0.1)
    assert proc.poll() is None, proc.stderr.read()[-3000:]
    proc.kill()
    proc.wait()
    proc.stderr.close()
    first = [r["student"] for r in student_rows(out / "summary.csv")]
    assert len(first) >= 1 and len(first) < 3, first
    again = grade(klass.submissions, out, "--cluster", cluster.address)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"graded {3 - len(first)} new or changed submission(s), kept {len(first)} unchanged" in again.stderr
    assert_same_csvs(out, klass.reference)


def test_killing_a_worker_mid_task_loses_and_duplicates_nothing(klass, cluster):
    out = klass.base / "killed"
    proc = start_grading(klass.submissions, out, cluster.address)
    client = cluster.client(2)
    victim = None
    deadline = time.monotonic() + 600
    try:
        while victim is None and time.monotonic() < deadline and proc.poll() is None:
            busy = [w for w, keys in client.processing().items() if any(str(k).startswith("grade-") for k in keys)]
            if busy:
                victim = busy[0]
            time.sleep(0.2)
        assert victim is not None, "no grading task ever ran"
        time.sleep(3)  # its notebook's kernel is running now
        os.kill(cluster.pids[victim], signal.SIGKILL)
        _, err = proc.communicate(timeout=900)
    finally:
        client.close()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert f"worker {victim} left the cluster" in err, err[-3000:]
    assert_same_csvs(out, klass.reference)  # every row once: none lost, none twice
    keys = [(r["student"], r["notebook"], r["cell"]) for r in student_rows(out / "grades.csv")]
    assert len(keys) == len(set(keys))


def test_a_stale_worker_is_refused_before_anyone_is_graded(klass, tmp_path):
    stale = tmp_path / "stale"
    for top in ("autograder", "vaekit", "solutions", "assignments"):
        shutil.copytree(REPO / top, stale / top, ignore=shutil.ignore_patterns("__pycache__"))
    with (stale / "autograder" / "judge.py").open("a") as f:
        f.write("\n# an older (or newer) version of the judge\n")
    c = Cluster(tmp_path)
    try:
        c.add_worker()
        bad = c.add_worker(stale)
        c.client(2).close()
        proc = grade(klass.submissions, tmp_path / "out", "--cluster", c.address)
    finally:
        c.stop()
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert f"worker {bad} refused" in proc.stderr and "code differs: autograder/judge.py" in proc.stderr
    assert "nothing was graded" in proc.stderr
    assert proc.stderr.count("refused (stale") == 1  # the good worker is not named
    with contextlib.suppress(FileNotFoundError):
        assert student_rows(tmp_path / "out" / "grades.csv") == []


def test_without_dask_the_error_says_what_to_install(monkeypatch):
    from autograder import cluster
    from autograder.grade import GradingError

    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(GradingError, match=r"pip install 'vaekit\[cluster\]'"):
        cluster.require_dask()


def test_the_bundle_is_reproducible_and_a_difference_is_named():
    from autograder import cluster
    from autograder.grade import data_dir

    a, sum_a = cluster.make_bundle(data_dir())
    b, sum_b = cluster.make_bundle(data_dir())
    assert a == b and sum_a == sum_b
    mine = cluster.fingerprint()
    other = {
        **mine,
        "packages": {**mine["packages"], "torch": "1.0"},
        "code": {**mine["code"], "autograder/judge.py": "0" * 64},
    }
    said = "; ".join(cluster.differences(other, mine))
    assert "torch 1.0 (client: " in said and "code differs: autograder/judge.py" in said
    assert cluster.differences(mine, mine) == []
