"""A gradebook on a real PostgreSQL server shared by two shards of one class (`grade --db-url`).

The server is Debian's `postgresql` package, started for these tests in a temporary folder
on 127.0.0.1 with a free port (as the `postgres` user when the tests run as root); CI
installs the package (.ci/run). The tests skip only where the server binaries are absent.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import shards
from shards import AE, cli, grade, manual, rows, set_manual


def _bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    exe = shutil.which("postgres")
    return Path(exe).parent if exe and shutil.which("initdb") else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    """A PostgreSQL server on 127.0.0.1:<free port> with an empty database `gradebook`; stopped afterwards."""
    bin_dir = _bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found: apt-get install postgresql")
    base = Path(tempfile.mkdtemp(prefix="vaekit-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root
        shutil.chown(base, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = _free_port()

    def pg(tool: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*as_user, str(bin_dir / tool), *args], capture_output=True, text=True, timeout=120)

    data = base / "data"
    proc = pg("initdb", "-D", str(data), "-U", "grader", "--auth=trust", "-E", "UTF8")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = pg(
        "pg_ctl",
        "-D",
        str(data),
        "-l",
        str(base / "server.log"),
        "-w",
        "-t",
        "60",
        "start",
        "-o",
        f"-h 127.0.0.1 -p {port} -k {base} -c fsync=off",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr + (base / "server.log").read_text()
    try:
        proc = pg("createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "grader", "gradebook")
        assert proc.returncode == 0, proc.stderr
        yield SimpleNamespace(port=port, url=f"postgresql+psycopg://grader@127.0.0.1:{port}/gradebook")
    finally:
        pg("pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


def _gradebook_students(url: str) -> list[str]:
    from autograder.gradebook import open_gradebook

    with open_gradebook(url) as gb:
        return sorted(s.id for s in gb.students)


@pytest.fixture(scope="module")
def sharded(server, tmp_path_factory):
    """Two shards graded one after the other into two OUTs, one shared (empty at first) database."""
    base = tmp_path_factory.mktemp("pg")
    subs = shards.build(base)
    one = grade(subs, base / "out1", "--shard", "1/2", "--db-url", server.url)
    two = grade(subs, base / "out2", "--shard", "2/2", "--db-url", server.url)
    print(f"\nshards graded in {one.seconds:.0f} s and {two.seconds:.0f} s")
    assert one.rc == 0, one.err
    assert two.rc == 0, two.err
    return SimpleNamespace(
        base=base, subs=subs, out1=base / "out1", out2=base / "out2", url=server.url, one=one, two=two
    )


# ------------------------------------------------------------------------------ before any grading
def _refused(tmp_path: Path, url: str, env: dict | None = None) -> str:
    subs = tmp_path / "subs"
    (subs / "alice").mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    r = grade(subs, tmp_path / "out", "--db-url", url, env=env)
    assert r.rc == 2, r.err
    assert (
        "Traceback" not in r.err and "building the release" not in r.err and "grading" not in r.err.split("error:")[0]
    )
    assert time.monotonic() - t0 < 60
    assert not (tmp_path / "out" / "grades.csv").exists()
    return r.err


def test_a_wrong_url_is_refused_before_grading(tmp_path):
    err = _refused(tmp_path, "postgres//grader@127.0.0.1/gradebook")
    assert "is not a database URL" in err and "postgresql+psycopg://" in err


def test_an_unreachable_server_is_refused_before_grading(tmp_path):
    err = _refused(tmp_path, f"postgresql+psycopg://grader:secret@127.0.0.1:{_free_port()}/gradebook")
    assert "cannot open the gradebook database" in err and "Connection refused" in err
    assert "is the server running" in err and "secret" not in err


def test_a_missing_driver_is_refused_before_grading(tmp_path):
    """psycopg not importable (as in a venv without the `postgres` extra): the message says what to install."""
    fake = tmp_path / "nodriver" / "psycopg"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'psycopg'\", name='psycopg')\n")
    env = {"PYTHONPATH": os.pathsep.join([str(fake.parent), os.environ.get("PYTHONPATH", "")])}
    err = _refused(tmp_path, "postgresql://grader@127.0.0.1:5432/gradebook", env=env)
    assert "driver 'psycopg' is not installed" in err and "[dev,postgres]" in err


def test_a_missing_database_is_refused_before_grading(server, tmp_path):
    err = _refused(tmp_path, f"postgresql://grader@127.0.0.1:{server.port}/nosuchdb")
    assert 'database "nosuchdb" does not exist' in err and "createdb" in err


# ------------------------------------------------------------------------------ two shards, one gradebook


@pytest.mark.slow
def test_every_shard_writes_into_one_gradebook(sharded):
    assert "writing assignment 'vae' into the shared gradebook" in sharded.one.err
    assert _gradebook_students(sharded.url) == list(shards.STUDENTS)
    # formgrader's course folder (nbgrader's own commands) of either shard sees the whole class
    from autograder.release import run_nbgrader

    root = sharded.out2 / "nbgrader"
    assert repr(sharded.url) in (root / "nbgrader_config.py").read_text()
    proc = run_nbgrader(root, "export", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    exported = {r["student_id"]: r for r in rows(root / "grades.csv")}
    assert sorted(exported) == list(shards.STUDENTS)
    alice = sum(float(r["points"]) for r in rows(sharded.out1 / "grades.csv") if r["student"] == "alice")
    assert alice > 0 and float(exported["alice"]["score"]) == alice


@pytest.mark.slow
def test_a_manual_grade_survives_a_regrade_and_feedback_covers_the_shard(sharded):
    cell = set_manual(sharded.url, "alice", 1, "Good: say where the codes lie.")
    r = grade(sharded.subs, sharded.out1, "--shard", "1/2", "--db-url", sharded.url, "--students", "alice")
    assert r.rc == 0, r.err
    assert "kept 1 manual grade" in r.err
    assert manual(sharded.url, "alice", cell) == (1, "Good: say where the codes lie.")
    backups = sorted((sharded.out1 / "backups").glob("gradebook-*.json"))
    assert backups and '"manual_comment": "Good: say where the codes lie."' in backups[-1].read_text()

    fb = cli("feedback", str(sharded.out1))
    assert fb.rc == 0, fb.err
    assert "cover the 2 student(s) graded into it (the gradebook holds 3)" in fb.out
    final = {(x["student"], x["cell"]): x for x in rows(sharded.out1 / "final_grades.csv")}
    assert final[("alice", cell)]["graded"] == "manual" and final[("alice", cell)]["points"] == "1"
    summary = {x["student"]: x for x in rows(sharded.out1 / "final_summary.csv")}
    assert sorted(summary) == ["alice", "carol"]
    auto = sum(float(x["points"]) for x in rows(sharded.out1 / "grades.csv") if x["student"] == "alice")
    assert float(summary["alice"]["total"]) == auto + 1 and summary["alice"]["max_total"] == "70"
    assert "Good: say where the codes lie." in (sharded.out1 / "feedback" / "alice" / f"{AE}.html").read_text()


@pytest.mark.slow
def test_merging_shards_of_a_shared_gradebook_points_at_it(sharded):
    merged = sharded.base / "merged"
    r = cli("merge", str(sharded.out1), str(sharded.out2), "--out", str(merged))
    assert r.rc == 0, r.err
    assert repr(sharded.url) in (merged / "nbgrader" / "nbgrader_config.py").read_text()
    assert sorted(x["student"] for x in rows(merged / "summary.csv")) == list(shards.STUDENTS)
    fb = cli("feedback", str(merged))
    assert fb.rc == 0, fb.err
    assert sorted(x["student"] for x in rows(merged / "final_summary.csv")) == list(shards.STUDENTS)
