"""Start a grading kernel: resource limits first, then ipykernel.

The grading kernelspec runs `python kernel_launcher.py -f {connection_file}`.

With $VAEKIT_GRADER_ZYGOTE set (the grader's warm-kernel server, zygote.py), it
asks that server for a kernel forked from a process that has already imported
torch & co, hands it its stdin/stdout/stderr, and stays as the kernel's stand-in
for jupyter_client: it passes signals on (an interrupt reaches the kernel), ends
with the kernel's exit code, and if jupyter_client kills it, the server kills the
kernel. If the server cannot be reached or refuses, it starts ipykernel itself.

Either way the kernel runs under these limits, which hold for everything the
student's code does:

* RLIMIT_DATA (heap and anonymous memory, not the shared libraries that make
  torch's virtual size several GiB): an allocation beyond it raises MemoryError
  or torch's "can't allocate memory" in the cell, and the kernel survives.
* RLIMIT_FSIZE: no file larger than the limit (runaway writes).
* RLIMIT_CORE 0: a crashing kernel leaves no core dump.

It runs as a plain script (no imports from the repository), configured by the
environment that the grader's execute preprocessor gives each kernel. zygote.py,
copied beside it, imports its helpers (limits, process groups, parent death).
"""
import json
import os
import resource
import signal
import socket
import struct
import sys

MIB = 1024 * 1024
PR_SET_PDEATHSIG = 1
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


def _limit(which: int, value: int) -> None:
    soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(which, (value, hard if hard != resource.RLIM_INFINITY else value))


def limits() -> dict:
    return {"memory_mb": int(os.environ.get("VAEKIT_GRADER_MEMORY_MB", "0") or 0),
            "file_mb": int(os.environ.get("VAEKIT_GRADER_FILE_MB", "0") or 0)}


def apply_limits() -> None:
    """The kernel's limits, from its environment (this process and everything it starts)."""
    lim = limits()
    if lim["memory_mb"] > 0:
        _limit(resource.RLIMIT_DATA, lim["memory_mb"] * MIB)
    if lim["file_mb"] > 0:
        _limit(resource.RLIMIT_FSIZE, lim["file_mb"] * MIB)
    _limit(resource.RLIMIT_CORE, 0)


def signal_group(pid: int, sig: int) -> None:
    """Signal the kernel's process group (it and what it started); the kernel alone if it has none yet."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def die_with_parent(parent: int | None = None) -> None:
    """Be killed when the parent process dies (Linux); exit now if `parent` already has."""
    parent = parent or os.getppid()
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except Exception:
        return
    if os.getppid() != parent:
        os._exit(1)


def via_zygote(path: str) -> int | None:
    """Run the kernel as a fork of the warm server; None if the server could not start it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)
    try:
        sock.connect(path)
        env = {k: v for k, v in os.environ.items() if k != "VAEKIT_GRADER_ZYGOTE"}
        body = json.dumps({"argv": sys.argv[1:], "env": env, "cwd": os.getcwd()}).encode()
        socket.send_fds(sock, [struct.pack("!I", len(body))], [0, 1, 2])
        sock.sendall(body)
    except OSError as exc:
        print(f"vaekit grader: no warm kernel ({type(exc).__name__}: {exc}); starting one", file=sys.stderr)
        return None
    # Once asked, the server forks or says why not: no timeout (a second, cold kernel could race
    # the warm one for the connection file's ports); jupyter_client's start-up timeout bounds it.
    sock.settimeout(None)
    reader = sock.makefile("rb")
    try:
        reply = json.loads(reader.readline() or b"{}")
    except (OSError, ValueError):
        reply = {}
    if "pid" not in reply:
        print(f"vaekit grader: no warm kernel ({reply.get('error', 'no answer')}); starting one", file=sys.stderr)
        return None
    pid = int(reply["pid"])

    def forward(signum, frame):  # to the kernel's group, as jupyter_client signals a cold kernel's
        signal_group(pid, signum)

    for sig in FORWARDED:
        signal.signal(sig, forward)
    line = reader.readline()  # {"exit": code}, or nothing if the server died
    try:
        code = int(json.loads(line)["exit"]) if line else 1
    except (ValueError, KeyError, TypeError):
        code = 1
    return 128 - code if code < 0 else code


def main() -> None:
    server = os.environ.get("VAEKIT_GRADER_ZYGOTE")
    if server:
        die_with_parent()  # nbgrader dying takes the launcher along, and so, through the server, the kernel
        code = via_zygote(server)
        if code is not None:
            sys.exit(code)
        os.environ.pop("VAEKIT_GRADER_ZYGOTE", None)
    apply_limits()
    args = [sys.executable, "-Xfrozen_modules=off", "-m", "ipykernel_launcher", *sys.argv[1:]]
    os.execv(sys.executable, args)


if __name__ == "__main__":
    main()
