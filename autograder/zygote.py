"""Warm kernels inside the sandbox: one server per grading slot forks every notebook's kernel.

`python -m _vaekit_zygote CONTROL_FD` (the sandbox's copy of this file) runs inside a
bubblewrap sandbox (sandbox.py) started once per grading slot. It imports torch,
IPython, matplotlib and vaekit once and creates the IPython shell, then, for each
notebook, receives the judge's end of a fresh socket (SCM_RIGHTS) and forks a kernel
that is isolated from the server and from every other kernel as a sandbox of its own
would be:

* new user, mount, PID, network, IPC and UTS namespaces (the kernel is PID 1 of its
  own PID namespace: it can signal nothing outside it, and when it ends everything it
  started ends, `setsid` or not; a killed kernel takes its whole namespace with it);
* a private size-capped tmpfs on /tmp (HOME, IPython's folder) and on /dev/shm; the
  rest of the filesystem is the server's sandbox view, read-only;
* every capability dropped, no new privileges, its own rlimits (memory, file size, CPU);
* no file descriptor of the server's but its own socket.

The server never runs student code, and it is not dumpable (PR_SET_DUMPABLE 0), so a
kernel cannot read or write its memory through /proc: what the next student's kernel
inherits is the server as it was after the imports. No student code ever runs before a
fork, so nothing passes from one student to the next.

Control messages (JSON lines on CONTROL_FD, the fd of a kernel's socket attached to "fork"):

    {"op": "fork", "limits": {...}}      -> {"pid": P}   (P: the kernel's keeper, in this namespace)
    {"op": "signal", "pid": P, "sig": N} -> {}          (SIGINT is passed on to the kernel; SIGKILL ends it)
    {"op": "reap", "pid": P}             -> {"code": C}
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import resource
import signal
import socket
import sys
import time

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 0x1, 0x2, 0x4, 0x20, 0x1000, 0x4000, 0x40000
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS, PR_CAPBSET_DROP = 1, 4, 38, 24
_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount_tmpfs(target: str, size_mb: int) -> None:
    _check(
        _libc.mount(b"tmpfs", target.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, f"size={size_mb}m,mode=1777".encode()),
        f"mount {target}",
    )


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_capabilities() -> None:
    """No capability left, in the bounding set either (the new user namespace gave us all of them)."""
    for cap in range(64):
        _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)  # fails harmlessly past the last capability
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (_CapData * 2)()
    _check(_libc.capset(ctypes.byref(header), data), "capset")
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")


def _isolate(uid: int, gid: int, limits: dict) -> None:
    """In the forked child: new namespaces, then (in the grandchild, PID 1 there) mounts and limits."""
    _libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)  # own /proc/self files again (the server stays undumpable)
    _check(
        _libc.unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS),
        "unshare",
    )
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"1000 {uid} 1")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"1000 {gid} 1")


def _mounts_below(folder: str) -> list[str]:
    """The mount points strictly below `folder` (from /proc/self/mountinfo), outermost first."""
    points = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4]
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), point)  # \040 is a space
            if point.startswith(folder.rstrip("/") + "/"):
                points.add(point)
    outermost = []
    for point in sorted(points, key=len):
        if not any(point.startswith(p + "/") for p in outermost):
            outermost.append(point)
    return outermost


def _private_tmp(size_mb: int) -> None:
    """A fresh tmpfs on /tmp that still shows what the server's sandbox mounted below /tmp.

    A read-only folder of the sandbox may live under the host's /tmp (a virtualenv or the data
    of a checkout in /tmp): it is opened before the tmpfs hides it, then bound back on top,
    read-only, through its open descriptor.
    """
    below = [(p, os.open(p, os.O_PATH)) for p in _mounts_below("/tmp")]
    _mount_tmpfs("/tmp", size_mb)
    for point, fd in below:
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            os.makedirs(point, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(point), exist_ok=True)
            open(point, "a").close()
        _check(
            _libc.mount(f"/proc/self/fd/{fd}".encode(), point.encode(), None, MS_BIND | MS_REC, None), f"bind {point}"
        )
        _check(
            _libc.mount(None, point.encode(), None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, None),
            f"read-only {point}",
        )
        os.close(fd)


def _become_kernel(limits: dict, channel_fd: int) -> None:
    """In the grandchild (PID 1 of the new namespace): private tmpfs, limits, no capabilities."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # the keeper dies -> so does this namespace
    _check(_libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "make mounts private")
    _private_tmp(int(limits.get("tmp_mb", 256)))
    if os.path.isdir("/dev/shm"):
        _mount_tmpfs("/dev/shm", 16)
    mb = 1024 * 1024
    for which, value in (
        (resource.RLIMIT_DATA, int(limits.get("memory_mb", 4096)) * mb),
        (resource.RLIMIT_FSIZE, int(limits.get("file_mb", 256)) * mb),
        (resource.RLIMIT_AS, (int(limits.get("memory_mb", 4096)) + int(limits.get("address_slack_mb", 4096))) * mb),
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_CPU, int(limits.get("cpu_seconds", 1800))),
    ):
        resource.setrlimit(which, (value, value))
    drop_capabilities()
    os.closerange(3, channel_fd)
    os.closerange(channel_fd + 1, 65536)
    home = os.environ.get("HOME", "/tmp/home")
    os.makedirs(home, exist_ok=True)
    os.chdir(home)


def _keeper(child: int) -> int:
    """The forked child's job once the kernel runs: pass SIGINT on, wait, exit with its code."""
    signal.signal(signal.SIGINT, lambda *_: os.kill(child, signal.SIGINT))
    while True:
        try:
            _, status = os.waitpid(child, 0)
            return os.waitstatus_to_exitcode(status)
        except ChildProcessError:
            return 0
        except InterruptedError:  # pragma: no cover - PEP 475 retries for us
            continue


def fork_kernel(limits: dict, channel_fd: int, shell, serve) -> int:
    """Fork an isolated kernel serving `channel_fd` with `shell`; returns the keeper's PID."""
    uid, gid = os.getuid(), os.getgid()
    pid = os.fork()
    if pid:
        return pid
    code = 70
    try:
        _isolate(uid, gid, limits)
        inner = os.fork()
        if inner:
            os.close(channel_fd)
            code = _keeper(inner)
        else:
            _become_kernel(limits, channel_fd)
            code = serve(shell, channel_fd)
    except BaseException:  # never return into the server's loop from a child
        import traceback

        traceback.print_exc()
    finally:
        os._exit(code)


def serve_zygote(control: socket.socket, shell, serve) -> None:
    """The server's loop: fork, signal and reap kernels on request until the control socket closes."""
    keepers: set[int] = set()
    buffer = b""
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(control, 65536, 4)
        except (ConnectionResetError, OSError):
            break
        if not data:
            break
        buffer += data
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            try:
                request = json.loads(line)
                op = request.get("op")
                if op == "fork" and fds:
                    fd = fds.pop(0)
                    pid = fork_kernel(request.get("limits", {}), fd, shell, serve)
                    os.close(fd)
                    keepers.add(pid)
                    reply = {"pid": pid}
                elif op == "signal" and int(request.get("pid", -1)) in keepers:
                    os.kill(int(request["pid"]), int(request.get("sig", signal.SIGKILL)))
                    reply = {}
                elif op == "reap" and int(request.get("pid", -1)) in keepers:
                    pid = int(request["pid"])
                    deadline = time.monotonic() + float(request.get("timeout", 10))
                    reply = {"code": None}
                    while time.monotonic() < deadline:
                        done, status = os.waitpid(pid, os.WNOHANG)
                        if done:
                            keepers.discard(pid)
                            reply = {"code": os.waitstatus_to_exitcode(status)}
                            break
                        time.sleep(0.01)
                else:
                    reply = {"error": "bad request"}
            except Exception as exc:  # the server must survive any request
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            for fd in fds:
                os.close(fd)
            fds = []
            control.sendall(json.dumps(reply).encode() + b"\n")
    for pid in keepers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def main(argv: list[str]) -> int:
    """Entry point in the sandbox: drop privileges, import once, then serve fork requests."""
    import _vaekit_harness as harness  # type: ignore[import-not-found]

    control = socket.socket(fileno=int(argv[1]))
    harness.drop_privileges()
    harness.no_new_privileges()
    _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    shell = harness.preload()
    control.sendall(json.dumps({"op": "ready"}).encode() + b"\n")
    serve_zygote(control, shell, harness.serve_fd)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
