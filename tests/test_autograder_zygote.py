"""Warm grading kernels (autograder/zygote.py + kernel_launcher.py) with real jupyter_client kernels.

A real server imports torch once; kernels are started through the grading
kernelspec's launcher exactly as nbgrader starts them, then probed by running code.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from jupyter_client import KernelManager

from autograder.config import REPO

pytestmark = pytest.mark.slow

ZYGOTE = REPO / "autograder" / "zygote.py"
LAUNCHER = REPO / "autograder" / "kernel_launcher.py"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    return not (status.exists() and status.read_text().split()[2] == "Z")


def wait_until(predicate, timeout: float = 15) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


@pytest.fixture(scope="module")
def kernelspec(tmp_path_factory) -> Path:
    jupyter = tmp_path_factory.mktemp("jupyter")
    spec = jupyter / "kernels" / "graded"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, str(LAUNCHER), "-f", "{connection_file}", "--HistoryManager.enabled=False"],
        "display_name": "graded", "language": "python"}))
    return jupyter


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAEKIT_GRADER_", "JPY_"))}
    env.update(MPLBACKEND="Agg", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return env


@pytest.fixture(scope="module")
def zygote(tmp_path_factory):
    folder = tmp_path_factory.mktemp("zygote")
    socket_path = folder / "socket"
    proc = subprocess.Popen([sys.executable, str(ZYGOTE), str(socket_path)], cwd=folder, env=base_env(),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    line = proc.stdout.readline()
    assert line.startswith("ready"), f"{line!r} {proc.stderr.read() if proc.poll() is not None else ''}"
    yield proc, socket_path
    if proc.poll() is None:
        proc.stdin.close()
        proc.wait(20)


class Kernel:
    """A kernel from the grading kernelspec, and a way to run code in it."""

    def __init__(self, jupyter: Path, cwd: Path, env: dict[str, str]):
        os.environ["JUPYTER_PATH"] = str(jupyter)
        self.km = KernelManager(kernel_name="graded")
        self.km.start_kernel(env=env, cwd=str(cwd))
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=120)

    def run(self, code: str, timeout: float = 60) -> str:
        msg_id = self.kc.execute(code)
        return self.outputs(msg_id, timeout)

    def outputs(self, msg_id: str, timeout: float = 60) -> str:
        out = []
        while True:
            msg = self.kc.get_iopub_msg(timeout=timeout)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                out.append(f"{msg['content']['ename']}: {msg['content']['evalue']}")
            elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return "".join(out).strip()

    def pid(self) -> int:
        return int(self.run("import os; print(os.getpid())"))

    def close(self, now: bool = False) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=now)


@pytest.fixture
def kernels(kernelspec, zygote, tmp_path, monkeypatch):
    """kernels(warm=True, **env): start kernels; all are shut down afterwards."""
    monkeypatch.setenv("JUPYTER_PATH", str(kernelspec))
    started = []

    def start(warm: bool = True, cwd: Path | None = None, **extra) -> Kernel:
        env = base_env()
        env.update(VAEKIT_GRADER_MEMORY_MB="3000", VAEKIT_GRADER_FILE_MB="1", **extra)
        if warm:
            env["VAEKIT_GRADER_ZYGOTE"] = str(zygote[1])
        k = Kernel(kernelspec, cwd or tmp_path, env)
        started.append(k)
        return k

    yield start
    for k in started:
        try:
            k.close(now=True)
        except Exception:
            pass


PROBE = """\
import os, sys, resource
print(json.dumps({
    "ppid": os.getppid(), "cwd": os.getcwd(), "path": sys.path,
    "torch_preloaded": "torch" in sys.modules,
    "marker": os.environ.get("PROBE_MARKER"), "zygote_env": "VAEKIT_GRADER_ZYGOTE" in os.environ,
    "data_limit_mb": resource.getrlimit(resource.RLIMIT_DATA)[0] // 2**20,
    "fsize_limit_mb": resource.getrlimit(resource.RLIMIT_FSIZE)[0] // 2**20,
}))
"""


def probe(kernel: Kernel) -> dict:
    return json.loads(kernel.run("import json\n" + PROBE))


def test_a_warm_kernel_is_a_fork_of_the_server_with_the_launchers_settings(kernels, zygote, tmp_path):
    cwd = tmp_path / "work dir"
    cwd.mkdir()
    facts = probe(kernels(cwd=cwd, PROBE_MARKER="for this kernel only"))
    assert facts["ppid"] == zygote[0].pid, "the kernel was not forked by the server"
    assert facts["torch_preloaded"], "torch was not imported before the notebook ran"
    assert facts["cwd"] == str(cwd)
    assert facts["marker"] == "for this kernel only" and not facts["zygote_env"]
    assert facts["data_limit_mb"] == 3000 and facts["fsize_limit_mb"] == 1


def test_a_cold_kernel_has_the_same_settings(kernels, zygote, tmp_path):
    facts = probe(kernels(warm=False, PROBE_MARKER="cold"))
    assert facts["ppid"] == os.getpid(), "the launcher should have become the kernel itself"
    assert facts["cwd"] == str(tmp_path) and facts["marker"] == "cold"
    assert facts["data_limit_mb"] == 3000 and facts["fsize_limit_mb"] == 1


def test_warm_and_cold_kernels_import_from_the_same_places(kernels):
    warm, cold = probe(kernels()), probe(kernels(warm=False))
    assert warm["path"] == cold["path"]
    assert warm["path"][0] != warm["cwd"], "files a notebook writes must not shadow the standard library"


def test_an_unreachable_server_falls_back_to_a_cold_kernel(kernels, tmp_path):
    facts = probe(kernels(warm=False, VAEKIT_GRADER_ZYGOTE=str(tmp_path / "no-such-socket")))
    assert facts["ppid"] == os.getpid() and facts["data_limit_mb"] == 3000


def test_a_kernel_with_another_python_path_starts_cold(kernels):
    """The server's modules came from its own sys.path: a kernel asking for another path is not forked."""
    facts = probe(kernels(PYTHONPATH=f"/somewhere/else{os.pathsep}{REPO}"))
    assert facts["ppid"] == os.getpid()


def test_no_state_passes_between_warm_kernels(kernels):
    first = kernels()
    first.run("import torch, vaekit\ntorch.secret = 'answer'\nvaekit.load_mnist = None\nimport numpy\n"
              "numpy.random.seed(0)")
    second = kernels()
    left = second.run("import torch, vaekit, numpy\n"
                      "print(hasattr(torch, 'secret'), vaekit.load_mnist is None, numpy.random.get_state()[1][0])")
    seeded = first.run("print(numpy.random.get_state()[1][0])")
    has_secret, patched, state = left.split()
    assert (has_secret, patched) == ("False", "False")
    assert state != seeded, "numpy's global generator starts in the same state in every kernel"


def test_interrupt_reaches_a_warm_kernel(kernels):
    k = kernels()
    msg_id = k.kc.execute("import time\ntry:\n    time.sleep(60)\nexcept KeyboardInterrupt:\n    print('interrupted')")
    time.sleep(1.5)
    t0 = time.monotonic()
    k.km.interrupt_kernel()
    assert k.outputs(msg_id, timeout=30) == "interrupted"
    assert time.monotonic() - t0 < 10
    assert k.run("print('still alive')") == "still alive"


def test_killing_the_launcher_kills_the_warm_kernel(kernels):
    k = kernels()
    pid = k.pid()
    assert alive(pid)
    k.close(now=True)  # what nbgrader does to a kernel that ignores the interrupt
    assert wait_until(lambda: not alive(pid)), f"kernel {pid} survived its launcher"


START_CHILD = "import subprocess\nchild = subprocess.Popen(['sleep', '300'])\nprint(child.pid)"


def test_killing_the_launcher_also_ends_what_the_kernel_started(kernels):
    k = kernels()
    child = int(k.run(START_CHILD))
    assert alive(child)
    k.close(now=True)
    assert wait_until(lambda: not alive(child)), "a process the notebook started outlived its kernel"


def test_a_kernel_that_exits_leaves_nothing_running(kernels):
    k = kernels()
    child = int(k.run(START_CHILD))
    k.kc.execute("import os; os._exit(0)")
    assert wait_until(lambda: not k.km.is_alive())
    assert wait_until(lambda: not alive(child)), "a process the notebook started outlived its kernel"


def test_interrupt_reaches_what_the_kernel_started(kernels):
    """As for a cold kernel, an interrupt goes to the kernel's whole process group."""
    k = kernels()
    msg_id = k.kc.execute("import subprocess\nprint(subprocess.run(['sleep', '60']).returncode)")
    time.sleep(1.5)
    k.km.interrupt_kernel()
    assert k.outputs(msg_id, timeout=30) in ("-2", "KeyboardInterrupt:")
    assert k.run("print('still alive')") == "still alive"


def test_a_kernel_that_exits_ends_its_launcher(kernels):
    k = kernels()
    pid = k.pid()
    k.kc.execute("import os; os._exit(3)")
    assert wait_until(lambda: not k.km.is_alive()), "the launcher outlived its kernel"
    assert not alive(pid)
    assert k.km.provisioner.process.returncode == 3


def test_a_memory_bomb_fails_in_the_cell_and_the_warm_kernel_survives(kernels):
    k = kernels()
    out = k.run("import torch\nx = torch.ones(2 * 1024**3)  # 8 GB of float32\nprint('allocated')")
    assert "allocated" not in out and ("MemoryError" in out or "RuntimeError" in out), out
    assert k.run("print(1 + 1)") == "2"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """The grader's runtime guard installed as its IPython profile does, and a server for that path."""
    import shutil

    base = tmp_path_factory.mktemp("guarded")
    shutil.copy(REPO / "autograder" / "guard.py", base / "_vaekit_guard.py")
    startup = base / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-vaekit-guard.py").write_text("import _vaekit_guard\n_vaekit_guard.install(get_ipython())\n")
    env = {"PYTHONPATH": f"{base}{os.pathsep}{REPO}", "IPYTHONDIR": str(base / "ipython"),
           "VAEKIT_GUARD_LOG": str(base / "guard.jsonl")}
    socket_path = base / "socket"
    proc = subprocess.Popen([sys.executable, str(ZYGOTE), str(socket_path)], cwd=base, env=dict(base_env(), **env),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    assert proc.stdout.readline().startswith("ready")
    yield env, socket_path
    proc.stdin.close()
    proc.wait(20)


RSS_MB = "print(int([l for l in open('/proc/self/status') if l.startswith('VmRSS')][0].split()[1]) // 1024)"


@pytest.mark.parametrize("warm", [True, False], ids=["warm", "cold"])
def test_a_cell_that_hit_the_memory_limit_gives_the_memory_back(kernels, guarded, warm):
    """Its traceback must not keep the memory: later cells get the whole limit again."""
    env, socket_path = guarded
    k = kernels(warm=False, **env, **({"VAEKIT_GRADER_ZYGOTE": str(socket_path)} if warm else {}))
    if warm:
        assert int(k.run("import os; print(os.getppid())")) != os.getpid(), "not a warm kernel"
    before = int(k.run("import torch\nkept = 'defined before the failure'\n" + RSS_MB))
    out = k.run("def hog():\n    blocks = []\n    while True:\n        blocks.append(torch.ones(2**26))\nhog()")
    assert "allocate" in out, out
    after = int(k.run(RSS_MB))
    assert after < before + 300, f"RSS {before} MB before the memory bomb, {after} MB after it"
    assert k.run("x = torch.ones(2**28)  # 1 GB\nprint(kept)") == "defined before the failure"


def test_stopping_the_server_ends_its_kernels(kernelspec, tmp_path, monkeypatch):
    """The grader stops the server when it is done: no kernel may outlive it."""
    monkeypatch.setenv("JUPYTER_PATH", str(kernelspec))
    socket_path = tmp_path / "socket"
    proc = subprocess.Popen([sys.executable, str(ZYGOTE), str(socket_path)], cwd=tmp_path, env=base_env(),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    assert proc.stdout.readline().startswith("ready")
    env = dict(base_env(), VAEKIT_GRADER_ZYGOTE=str(socket_path))
    k = Kernel(kernelspec, tmp_path, env)
    try:
        pid = k.pid()
        proc.stdin.close()
        proc.wait(20)
        assert wait_until(lambda: not alive(pid)), "a kernel outlived the server"
        assert wait_until(lambda: not k.km.is_alive()), "the launcher outlived the server"
        assert not socket_path.exists()
    finally:
        k.kc.stop_channels()
        k.km.shutdown_kernel(now=True)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)


def test_a_server_that_fails_to_start_leaves_cold_kernels(tmp_path):
    """The grader goes on with cold kernels (and says why) when the server dies before it is ready."""
    from autograder.config import load_course
    from autograder.grade import Options, Workspace

    ws = Workspace(tmp_path, load_course(), Options())
    (tmp_path / "zygote").mkdir()
    (tmp_path / "zygote" / "log").write_text("ImportError: torch is broken\n")
    ws.zygote = subprocess.Popen([sys.executable, "-c", "print('not ready')"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)
    ws.zygote_socket = tmp_path / "zygote" / "socket"
    problem = ws.wait_warm_kernels(timeout=30)
    assert problem and "did not start" in problem and "torch is broken" in problem
    assert not ws.zygote_ready and ws.zygote is None
    assert "VAEKIT_GRADER_ZYGOTE" not in ws.env()


def test_the_grader_starts_and_stops_a_real_server(tmp_path):
    from autograder.config import load_course
    from autograder.grade import Options, Workspace

    ws = Workspace(tmp_path, load_course(), Options())
    ws.sandbox.mkdir(parents=True)
    ws.start_warm_kernels()
    assert ws.wait_warm_kernels() is None
    assert ws.env()["VAEKIT_GRADER_ZYGOTE"] == str(ws.zygote_socket) and ws.zygote_socket.exists()
    server = ws.zygote
    ws.stop_warm_kernels()
    assert server.poll() is not None and not ws.zygote_socket.exists()
    assert "VAEKIT_GRADER_ZYGOTE" not in ws.env()
