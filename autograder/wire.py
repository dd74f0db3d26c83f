"""The judge ↔ kernel wire format: framed messages of JSON and raw tensor bytes, never pickle.

Both ends use this module: the judge (trusted, outside the sandbox) and the
harness (inside the sandbox, next to the student's code). It imports only the
standard library and torch, and it is public: nothing in it is secret.

A frame is

    4 bytes  big-endian length H of the header
    H bytes  UTF-8 JSON header; header["blobs"] lists the byte length of each blob
    ...      the blobs, back to back

Values travel as JSON with these tagged forms (everything else is a plain JSON
number, string, bool, null, list or str-keyed dict):

    {"$t": i, "dtype": "float32", "shape": [..], "grad": bool}  a tensor, bytes in blob i
    {"$tuple": [...]}                                             a tuple
    {"$float": "nan" | "inf" | "-inf"}                            a non-finite float
    {"$ref": n}                                                   an object that stays in the kernel
    {"$lent": n}                                                  an object that stays in the judge

Decoding builds plain `torch.Tensor`s from bytes (`torch.frombuffer`), so a
tensor subclass, a `__eq__` that always says yes or a `__reduce__` never
crosses: the receiver gets numbers, shapes and dtypes only.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import select
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

MAX_HEADER = 8 * 1024 * 1024
MAX_FRAME = 64 * 1024 * 1024  # the largest honest frame is a few MB (a batch of images); the judge reads it into memory
MAX_DEPTH = 32
MAX_ITEMS = 100_000

DTYPES = {
    "float64": torch.float64,
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "int64": torch.int64,
    "int32": torch.int32,
    "int16": torch.int16,
    "int8": torch.int8,
    "uint8": torch.uint8,
    "bool": torch.bool,
}
NAMES = {v: k for k, v in DTYPES.items()}


class WireError(Exception):
    """A frame or value that breaks the protocol (too big, malformed, unknown tag)."""


class PeerClosed(WireError):
    """The other end closed the channel (the kernel died or exited)."""


class PeerTimeout(WireError):
    """No complete frame arrived before the deadline."""


# ------------------------------------------------------------------------------ values
@dataclass
class Encoded:
    """A value ready to send: its JSON form and the tensor bytes it refers to."""

    header: Any
    blobs: list[bytes] = field(default_factory=list)


def encode(
    value: Any,
    objects: Callable[[Any], dict] | None = None,
    blobs: list[bytes] | None = None,
    tensors: list[torch.Tensor] | None = None,
) -> Encoded:
    """Encode `value`. Objects that are not data go through `objects(obj) -> {"$ref"|"$lent": n}`.

    `tensors`, if given, collects every tensor encoded, in blob order (the caller
    needs them to connect gradients).
    """
    blobs = [] if blobs is None else blobs
    count = [0]

    def enc(v: Any, depth: int) -> Any:
        count[0] += 1
        if depth > MAX_DEPTH or count[0] > MAX_ITEMS:
            raise WireError("value too deeply nested or too large to send")
        if v is None or isinstance(v, (bool, str)):
            return v
        if isinstance(v, int) and type(v) in (int, bool):
            return v
        if type(v) is float:
            return v if math.isfinite(v) else {"$float": repr(v)}
        if isinstance(v, torch.Tensor):
            t = v.detach()
            if type(t) is not torch.Tensor:  # a subclass (Parameter, or one of the student's) travels as data
                t = torch.Tensor.as_subclass(t, torch.Tensor)
            t = t.cpu().contiguous()
            if t.dtype not in NAMES:
                raise WireError(f"tensors of dtype {t.dtype} cannot be sent")
            blobs.append(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
            if tensors is not None:
                tensors.append(v)
            return {
                "$t": len(blobs) - 1,
                "dtype": NAMES[t.dtype],
                "shape": list(t.shape),
                "grad": bool(v.requires_grad),
            }
        if type(v) is tuple:
            return {"$tuple": [enc(x, depth + 1) for x in v]}
        if type(v) is list:
            return [enc(x, depth + 1) for x in v]
        if type(v) is dict and all(type(k) is str for k in v):
            if any(k.startswith("$") for k in v):
                raise WireError("dict keys starting with '$' cannot be sent")
            return {k: enc(x, depth + 1) for k, x in v.items()}
        if objects is None:
            raise WireError(f"a {type(v).__name__} cannot be sent")
        return objects(v)

    return Encoded(enc(value, 0), blobs)


def tensor_from(spec: dict, blobs: list[bytes]) -> torch.Tensor:
    """A plain tensor from its header form and the frame's blobs (a copy, never a view)."""
    try:
        dtype = DTYPES[spec["dtype"]]
        shape = [int(s) for s in spec["shape"]]
        data = blobs[int(spec["$t"])]
    except (KeyError, IndexError, TypeError, ValueError):
        raise WireError("malformed tensor") from None
    if any(s < 0 for s in shape):
        raise WireError("malformed tensor shape")
    numel = math.prod(shape)
    itemsize = torch.empty((), dtype=dtype).element_size()
    if len(data) != numel * itemsize:
        raise WireError("tensor bytes do not match its shape")
    if numel == 0:
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).view(dtype).reshape(shape).clone()


def decode(
    header: Any,
    blobs: list[bytes],
    resolve: Callable[[dict], Any] | None = None,
    tensors: list[torch.Tensor] | None = None,
    grad: bool = False,
) -> Any:
    """Decode a value. `resolve` maps {"$ref"/"$lent": n} to an object; `grad` honours "grad" flags.

    Tensors whose "grad" flag is set become leaves with requires_grad (when `grad`);
    `tensors` collects the decoded tensors in order.
    """
    count = [0]

    def dec(v: Any, depth: int) -> Any:
        count[0] += 1
        if depth > MAX_DEPTH or count[0] > MAX_ITEMS:
            raise WireError("value too deeply nested or too large")
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if isinstance(v, list):
            return [dec(x, depth + 1) for x in v]
        if not isinstance(v, dict):
            raise WireError("malformed value")
        if "$t" in v:
            t = tensor_from(v, blobs)
            if grad and v.get("grad") and t.is_floating_point():
                t.requires_grad_(True)
            if tensors is not None:
                tensors.append(t)
            return t
        if "$tuple" in v:
            return tuple(dec(x, depth + 1) for x in v["$tuple"])
        if "$float" in v:
            if v["$float"] not in ("nan", "inf", "-inf"):
                raise WireError("malformed float")
            return float(v["$float"])
        if "$ref" in v or "$lent" in v:
            if resolve is None:
                raise WireError("an object reference where only data is allowed")
            return resolve(v)
        if any(k.startswith("$") for k in v):
            raise WireError("unknown tag")
        return {k: dec(x, depth + 1) for k, x in v.items()}

    return dec(header, 0)


def replace_tensors(value: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """`value` with every tensor t in it replaced by fn(t), in the order encode/decode visit them."""
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, tuple):
        return tuple(replace_tensors(v, fn) for v in value)
    if isinstance(value, list):
        return [replace_tensors(v, fn) for v in value]
    if isinstance(value, dict):
        return {k: replace_tensors(v, fn) for k, v in value.items()}
    return value


# ------------------------------------------------------------------------------ frames
class Channel:
    """One end of a stream socket carrying frames; every read has a deadline."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.sock.setblocking(False)
        self._buffer = bytearray()

    @classmethod
    def from_fd(cls, fd: int) -> Channel:
        """A channel on an inherited socket file descriptor."""
        return cls(socket.socket(fileno=fd))

    def close(self) -> None:
        """Close the socket; closing it twice is harmless."""
        with contextlib.suppress(OSError):  # already closed: nothing left to do
            self.sock.close()

    def send(self, header: dict, blobs: list[bytes] = (), deadline: float | None = None) -> None:
        """Send one message: a JSON header and raw blobs; WireError if it is too large or the peer is gone."""
        header = dict(header, blobs=[len(b) for b in blobs])
        head = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
        if len(head) > MAX_HEADER or len(head) + sum(len(b) for b in blobs) > MAX_FRAME:
            raise WireError("message too large")
        for chunk in (struct.pack(">I", len(head)), head, *blobs):
            self._write(memoryview(chunk), deadline)

    def _write(self, data: memoryview, deadline: float | None) -> None:
        while data:
            try:
                sent = self.sock.send(data)
                data = data[sent:]
            except BlockingIOError:
                self._wait(select.POLLOUT, deadline)
            except OSError:  # a broken pipe, a reset, or this end already closed (a killed kernel)
                raise PeerClosed("the channel is closed") from None

    def _wait(self, events: int, deadline: float | None) -> None:
        if self.sock.fileno() < 0:
            raise PeerClosed("the channel is closed")
        poller = select.poll()
        poller.register(self.sock, events)
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not poller.poll(None if timeout is None else int(timeout * 1000) + 1):
            raise PeerTimeout("no answer in time")

    def _read(self, n: int, deadline: float | None) -> bytes:
        while len(self._buffer) < n:
            try:
                chunk = self.sock.recv(max(65536, n - len(self._buffer)))
            except BlockingIOError:
                self._wait(select.POLLIN, deadline)
                continue
            except OSError:  # a reset, or this end already closed
                chunk = b""
            if not chunk:
                raise PeerClosed("the other end closed the channel")
            self._buffer += chunk
        out = bytes(self._buffer[:n])
        del self._buffer[:n]
        return out

    def recv(self, deadline: float | None = None) -> tuple[dict, list[bytes]]:
        """Receive one message as (header, blobs); WireError on a broken frame, a closed peer or the deadline."""
        (size,) = struct.unpack(">I", self._read(4, deadline))
        if size > MAX_HEADER:
            raise WireError("header too large")
        try:
            header = json.loads(self._read(size, deadline))
        except (ValueError, RecursionError):  # RecursionError: JSON nested deeper than the parser goes,
            # which must read as a broken protocol, not escape as an error of the grader's own
            raise WireError("header is not JSON") from None
        if not isinstance(header, dict):
            raise WireError("header is not an object")
        sizes = header.get("blobs", [])
        if (
            not isinstance(sizes, list)
            or not all(isinstance(s, int) and s >= 0 for s in sizes)
            or sum(sizes) > MAX_FRAME
        ):
            raise WireError("bad blob sizes")
        return header, [self._read(s, deadline) for s in sizes]


def socketpair() -> tuple[socket.socket, socket.socket]:
    """A connected pair; the second end is inheritable (it is passed to the sandbox)."""
    judge_end, kernel_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    os.set_inheritable(kernel_end.fileno(), True)
    return judge_end, kernel_end
