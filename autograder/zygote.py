"""Warm grading kernels: import torch once, fork a fresh kernel for each notebook.

A grading kernel spends most of its start-up importing (Python, ipykernel, torch,
torchvision, matplotlib, vaekit, the hidden checks): seconds per notebook, the same
work every time. This server does that work once, then forks one child per
kernel the grader asks for. Each child is a copy of the server as it was before
any notebook ran, so no student's code ever sees another's state; the server
itself never runs notebook code.

Protocol (a Unix socket; the client is kernel_launcher.py, which jupyter_client
started as "the kernel process"):

* the launcher sends a 4-byte length, then JSON {argv, env, cwd}, with its own
  stdin/stdout/stderr attached (SCM_RIGHTS);
* the server forks; the child becomes the kernel: new session, the launcher's
  fds as 0/1/2, its cwd, its environment and the resource limits that
  environment sets (kernel_launcher.apply_limits), then ipykernel;
* the server replies {"pid": N} and later {"exit": code} when the child ends;
* if the launcher goes away (jupyter_client killed it), the server kills the
  child; if the server goes away, its children die with it (PR_SET_PDEATHSIG).

It runs as a plain script beside a copy of kernel_launcher.py, whose helpers it
uses (no import from the repository's autograder package, whose name the grading
sandbox reuses for the hidden checks):

    python zygote.py SOCKET_PATH

prints "ready" once it listens, and exits when its stdin closes.
"""
from __future__ import annotations

import contextlib
import importlib
import json
import os
import pkgutil
import selectors
import signal
import socket
import struct
import sys
import traceback

from kernel_launcher import apply_limits, die_with_parent, signal_group

PRELOAD = [
    "ipykernel.kernelapp", "ipykernel.ipkernel", "IPython", "IPython.core.interactiveshell", "zmq", "tornado",
    "numpy", "torch", "torch.nn", "torch.nn.functional", "torch.optim", "torch.distributions",
    "torch.testing", "torchvision.datasets.mnist", "matplotlib", "matplotlib.pyplot",
    "matplotlib_inline.backend_inline", "tqdm.auto", "vaekit", "autograder.checks",
]


def open_fds() -> set[int]:
    return {int(name) for name in os.listdir("/proc/self/fd")}


def preload() -> list[str]:
    """Import what every kernel imports; returns the modules that failed (they load in the child)."""
    failed = []
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception as exc:  # an optional module: the kernel imports it itself, if it can
            failed.append(f"{name} ({type(exc).__name__})")
    checks = sys.modules.get("autograder.checks")
    if checks is not None:
        for info in pkgutil.iter_modules(checks.__path__, "autograder.checks."):
            try:
                importlib.import_module(info.name)
            except Exception as exc:
                failed.append(f"{info.name} ({type(exc).__name__})")
    return failed


def read_request(conn: socket.socket) -> tuple[dict, list[int]]:
    header, fds, _, _ = socket.recv_fds(conn, 4, 3)
    try:
        if len(header) < 4:
            header += _exactly(conn, 4 - len(header))
        (size,) = struct.unpack("!I", header)
        request = json.loads(_exactly(conn, size))
        if len(fds) != 3:
            raise ValueError(f"expected the launcher's stdin/stdout/stderr, got {len(fds)} fds")
        return request, fds
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


def _exactly(conn: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = conn.recv(min(size, 1 << 20))
        if not chunk:
            raise ConnectionError("the launcher closed the connection mid-request")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def become_kernel(request: dict, fds: list[int], server_pid: int, keep: set[int]) -> None:
    """In the forked child: turn into the kernel the launcher asked for. Never returns.

    keep: the fds the server had before it started serving; every other fd (the
    listening socket, other launchers' connections, the selector) is closed.
    """
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        die_with_parent(server_pid)  # as a cold kernel dies with its launcher
        os.setsid()  # its own process group: killing the group ends what the notebook started too
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        for fd in open_fds() - keep - {0, 1, 2}:
            try:
                os.close(fd)
            except OSError:
                pass
        cwd = request["cwd"]
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(request["env"])
        del sys.path[0]  # the server's folder; ipykernel_launcher removes its cwd the same way
        apply_limits()
        if "numpy" in sys.modules:  # a new process would draw a fresh seed
            sys.modules["numpy"].random.seed()
        threads = os.environ.get("OMP_NUM_THREADS", "")
        if threads.isdigit() and int(threads) > 0 and "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(int(threads))
        argv = list(request["argv"])
        if os.environ.get("JPY_PARENT_PID", "").isdigit():
            # ipykernel read this variable when the server imported it: give it the kernel's own value
            argv.append(f"--IPKernelApp.parent_handle={os.environ['JPY_PARENT_PID']}")
        sys.argv = ["ipykernel_launcher", *argv]
        from ipykernel import kernelapp

        kernelapp.launch_new_instance(argv=argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def send(conn: socket.socket, message: dict) -> None:
    try:
        conn.sendall((json.dumps(message) + "\n").encode())
    except OSError:  # the launcher is gone
        pass


def log(message: str) -> None:
    try:
        print(message, file=sys.stderr, flush=True)
    except (OSError, ValueError):  # a full disk must not stop the server
        pass


def serve(path: str) -> None:
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the "ready" line
        failed = preload()
    keep = open_fds()
    server_pid = os.getpid()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    os.chmod(path, 0o600)
    listener.listen(64)
    wake_r, wake_w = socket.socketpair()
    wake_r.setblocking(False)
    wake_w.setblocking(False)
    signal.set_wakeup_fd(wake_w.fileno())
    signal.signal(signal.SIGCHLD, lambda *_: None)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, "accept")
    sel.register(wake_r, selectors.EVENT_READ, "wake")
    sel.register(sys.stdin, selectors.EVENT_READ, "stdin")
    children: dict[int, socket.socket | None] = {}
    print("ready" + (f" (not preloaded: {', '.join(failed)})" if failed else ""), flush=True)

    def drop(conn: socket.socket) -> None:
        try:
            sel.unregister(conn)
        except (KeyError, ValueError):
            pass
        conn.close()

    def start_kernel() -> None:
        conn, _ = listener.accept()
        conn.settimeout(10)
        pid = -1
        try:
            request, fds = read_request(conn)
        except Exception as exc:  # a bad or broken request: that launcher starts its kernel itself
            send(conn, {"error": f"{type(exc).__name__}: {exc}"})
            conn.close()
            return
        if request["env"].get("PYTHONPATH", "") != os.environ.get("PYTHONPATH", ""):
            # the modules were imported from the server's path: a kernel that wants another one starts cold
            for fd in fds:
                os.close(fd)
            send(conn, {"error": "the kernel's PYTHONPATH is not the server's"})
            conn.close()
            return
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                become_kernel(request, fds, server_pid, keep)
        except Exception as exc:
            send(conn, {"error": f"{type(exc).__name__}: {exc}"})
            conn.close()
            return
        finally:
            if pid != 0:
                for fd in fds:
                    os.close(fd)
        children[pid] = conn
        sel.register(conn, selectors.EVENT_READ, pid)
        conn.settimeout(None)
        log(f"forked kernel {pid}")
        send(conn, {"pid": pid})

    def reap() -> None:
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            signal_group(pid, signal.SIGKILL)  # what the kernel started and left behind
            conn = children.pop(pid, None)
            if conn is not None:
                send(conn, {"exit": os.waitstatus_to_exitcode(status)})
                drop(conn)

    try:
        while not stopping:
            for key, _ in sel.select(timeout=1.0):
                try:
                    if key.data == "accept":
                        start_kernel()
                    elif key.data == "wake":
                        try:
                            while wake_r.recv(4096):
                                pass
                        except BlockingIOError:
                            pass
                    elif key.data == "stdin":
                        if not os.read(sys.stdin.fileno(), 4096):
                            stopping.append(True)
                    else:  # a launcher's connection: it only ever closes, when the launcher dies
                        pid = key.data
                        signal_group(pid, signal.SIGKILL)
                        drop(key.fileobj)
                        if pid in children:
                            children[pid] = None
                except Exception as exc:  # never let one request take every running kernel down
                    log(f"server error ({type(exc).__name__}: {exc}); going on")
            try:
                reap()
            except Exception as exc:
                log(f"server error while reaping ({type(exc).__name__}: {exc}); going on")
    finally:
        for pid in list(children):
            signal_group(pid, signal.SIGKILL)
        listener.close()
        try:
            os.unlink(path)
        except OSError:
            pass


if __name__ == "__main__":
    serve(sys.argv[1])
