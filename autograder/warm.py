"""The judge's side of warm kernels: one zygote sandbox per grading slot (see zygote.py).

`WarmSlot.kernel(limits, log)` gives a kernel forked from the slot's server, with the
same interface as a cold `Sandbox` (`channel`, `interrupt()`, `kill()`, `close()`), in
about a tenth of a second instead of the seconds a cold start spends importing torch.
If the server stops answering, it is killed (with the kernel it was serving: only one
runs per slot at a time) and started again for the next notebook; if it cannot start,
the slot falls back to cold sandboxes and says so.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
from dataclasses import asdict
from pathlib import Path

from autograder import wire
from autograder.sandbox import Limits, Mounts, Sandbox


class ZygoteError(OSError):
    """The warm-kernel server did not start or stopped answering."""


class WarmKernel:
    """A kernel forked by a zygote: the judge's channel, and control through the zygote."""

    def __init__(self, slot: WarmSlot, pid: int, channel: wire.Channel):
        self.slot, self.pid, self.channel = slot, pid, channel
        self.closed = False

    def interrupt(self) -> None:
        """SIGINT to the kernel, through its server (KeyboardInterrupt in the student's code)."""
        self.slot.request({"op": "signal", "pid": self.pid, "sig": int(signal.SIGINT)}, fail_ok=True)

    def kill(self) -> None:
        """End the kernel and its namespace; stop the server too if it does not answer."""
        if self.closed:
            return
        self.closed = True
        self.channel.close()
        signalled = self.slot.request({"op": "signal", "pid": self.pid, "sig": int(signal.SIGKILL)}, fail_ok=True)
        reaped = self.slot.request({"op": "reap", "pid": self.pid, "timeout": 10}, fail_ok=True)
        if signalled is None or reaped is None or reaped.get("code") is None:
            self.slot.stop()  # the server is not answering: it goes, with whatever it was serving

    def close(self, timeout: float = 5) -> None:
        """Ask the kernel to exit, then make sure it is gone."""
        if self.closed:
            return
        with contextlib.suppress(wire.WireError):
            self.channel.send({"op": "bye", "id": 0}, deadline=time.monotonic() + 1)
        self.kill()


class WarmSlot:
    """The zygote sandbox of one grading slot, started on first use."""

    def __init__(self, mounts: Mounts, limits: Limits, log: Path, slot: int, unsafe: bool = False):
        self.mounts, self.limits, self.log, self.slot, self.unsafe = mounts, limits, log, slot, unsafe
        self.box: Sandbox | None = None
        self.control: socket.socket | None = None
        self._buffer = b""
        self.forks = 0  # kernels forked
        self.failures = 0  # kernels that had to start cold instead

    def start(self, timeout: float = 180) -> None:
        """Start the slot's server in its sandbox and wait until it has imported everything."""
        judge_end, zygote_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        os.set_inheritable(zygote_end.fileno(), True)
        try:
            self.box = Sandbox.launch(
                self.mounts,
                self.limits,
                self.log,
                ["-m", "_vaekit_zygote"],
                zygote_end,
                slot=self.slot,
                unsafe=self.unsafe,
                nested_namespaces=True,
            )
        finally:
            zygote_end.close()
        self.control = judge_end
        ready = self._read(time.monotonic() + timeout)
        if not ready or ready.get("op") != "ready":
            self.stop()
            tail = self.log.read_text(errors="replace")[-600:] if self.log.is_file() else ""
            raise ZygoteError(f"the warm-kernel server did not start: {tail.strip()}")

    def _read(self, deadline: float) -> dict | None:
        assert self.control is not None
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.control.settimeout(remaining)
            try:
                chunk = self.control.recv(65536)
            except (TimeoutError, OSError):
                return None
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            reply = json.loads(line)
        except ValueError:
            return None
        return reply if isinstance(reply, dict) else None

    def request(self, message: dict, fd: int | None = None, timeout: float = 15, fail_ok: bool = False) -> dict | None:
        """Send one control message (with a file descriptor attached, for `fork`); None on failure if fail_ok."""
        if self.control is None:
            if fail_ok:
                return None
            raise ZygoteError("the warm-kernel server is not running")
        try:
            data = json.dumps(message).encode() + b"\n"
            if fd is None:
                self.control.sendall(data)
            else:
                socket.send_fds(self.control, [data], [fd])
        except OSError as exc:
            if fail_ok:
                return None
            raise ZygoteError(f"the warm-kernel server stopped ({exc})") from None
        reply = self._read(time.monotonic() + timeout)
        if reply is None or "error" in reply:
            if fail_ok:
                return None
            raise ZygoteError(f"the warm-kernel server did not answer ({(reply or {}).get('error', 'no answer')})")
        return reply

    def kernel(self, limits: Limits, ready_timeout: float = 60) -> tuple[WarmKernel, dict]:
        """A fresh kernel forked from this slot's server; starts the server if needed."""
        if self.control is None:
            self.start()
        judge_end, kernel_end = wire.socketpair()
        try:
            reply = self.request({"op": "fork", "limits": asdict(limits)}, fd=kernel_end.fileno())
        finally:
            kernel_end.close()
        assert reply is not None
        kernel = WarmKernel(self, int(reply["pid"]), wire.Channel(judge_end))
        try:
            ready, _ = kernel.channel.recv(time.monotonic() + ready_timeout)
        except wire.WireError:
            kernel.kill()
            raise ZygoteError("a warm kernel did not start") from None
        self.forks += 1
        return kernel, ready

    def stop(self) -> None:
        """Close the control socket and kill the server's sandbox (and any kernel in it)."""
        if self.control is not None:
            with contextlib.suppress(OSError):
                self.control.close()
            self.control = None
        if self.box is not None:
            self.box.kill()
            self.box = None
