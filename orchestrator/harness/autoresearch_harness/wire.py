"""The wire between the trusted side and the candidate's worker: length-prefixed JSON frames.

A frame is a 4-byte big-endian length and a JSON object, at most `MAX_FRAME`
bytes; JSON's NaN and Infinity are refused. What the values inside mean is
`values.py`'s; who may send what is `peer.py`'s and the two sides'.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import time
from collections.abc import Callable, Mapping
from typing import Any

MAX_FRAME = 64 * 1024 * 1024
"""Largest frame either side accepts (bytes)."""
_HEADER = struct.Struct(">I")


class WireError(Exception):
    """A frame that breaks the format (too big, too deep, an unknown tag, bad JSON)."""


def _encoder() -> Callable[[Any], str]:
    """json.dumps(separators=(",", ":"), allow_nan=False), made once (dumps makes it per call)."""
    c_make = getattr(json.encoder, "c_make_encoder", None)
    if c_make is None:
        return json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
    fail = json.JSONEncoder().default
    make = c_make(
        None, fail, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, False
    )
    return lambda value: "".join(make(value, 0))


def _decoder() -> Callable[[str], Any]:
    def constant(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    scan = json.decoder.JSONDecoder(parse_constant=constant).scan_once  # type: ignore[attr-defined]

    def decode(text: str) -> Any:
        value, end = scan(text, 0)
        if end != len(text):
            raise ValueError("trailing data")
        return value

    return decode


_ENCODE = _encoder()
_DECODE = _decoder()


def dumps(message: dict[str, Any]) -> bytes:
    data = _ENCODE(message).encode()
    if len(data) > MAX_FRAME:
        raise WireError(f"a message of {len(data)} bytes is over the {MAX_FRAME}-byte limit")
    return _HEADER.pack(len(data)) + data


def send(sock: socket.socket, message: dict[str, Any]) -> None:
    sock.sendall(dumps(message))


def spin_s(environ: Mapping[str, str]) -> float:
    """How long a read polls before it blocks (`Reader`): the orchestrator's figure
    (AUTORESEARCH_SPIN_US), and none where this process may run on one core only (a harness run
    of one CPU is given one core, orchestrator/sandbox/cores.py): the other side, which has to
    answer, needs the core a poll would spin on."""
    try:
        if len(os.sched_getaffinity(0)) == 1:
            return 0.0
    except (AttributeError, OSError):
        pass
    return float(environ.get("AUTORESEARCH_SPIN_US", "0") or 0) / 1e6


class Reader:
    """Frames from a socket: one system call per frame at most (fewer when frames queue up).

    `spin_s`: how long a read polls before it blocks, while the other side answers quickly. A
    blocked read is woken through the host's scheduler (~40 µs a round trip here under runc);
    polling catches a quick answer without it. After a slow answer (three spins' worth, the
    other side was at work) reads block until one is quick again: no CPU is burnt on waits
    that polling cannot shorten."""

    def __init__(self, sock: socket.socket, spin_s: float = 0.0) -> None:
        self.sock = sock
        self._buffer = bytearray()
        self._at = 0
        self.spin_s = spin_s
        self._spin = spin_s > 0

    def _recv(self, n: int, more: bool) -> bytes:
        """Up to `n` bytes, polling first while the other side answers quickly (`spin_s`); `more`:
        the rest of a frame that has begun (it is on its way: read, and judge nothing by it)."""
        if not self.spin_s or more:
            return self.sock.recv(n)
        t = time.perf_counter()
        if self._spin:
            end = t + self.spin_s
            while True:
                try:
                    return self.sock.recv(n, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    if time.perf_counter() > end:
                        break
        chunk = self.sock.recv(n)
        self._spin = time.perf_counter() - t < 3 * self.spin_s
        return chunk

    def frame(self) -> dict[str, Any] | None:
        """The next message, or None when the other side closed the connection."""
        while True:
            have = len(self._buffer) - self._at
            if have >= _HEADER.size:
                (size,) = _HEADER.unpack_from(self._buffer, self._at)
                if size > MAX_FRAME:
                    raise WireError(f"a frame of {size} bytes is over the {MAX_FRAME}-byte limit")
                if have >= _HEADER.size + size:
                    start = self._at + _HEADER.size
                    body = bytes(self._buffer[start : start + size])
                    self._at = start + size
                    if self._at == len(self._buffer):
                        self._buffer.clear()
                        self._at = 0
                    return _message(body)
                want = _HEADER.size + size - have
            else:
                want = _HEADER.size - have
            if self._at and self._at > len(self._buffer) // 2:
                del self._buffer[: self._at]
                self._at = 0
            chunk = self._recv(max(want, 1 << 16), more=have > 0)
            if not chunk:
                return None
            self._buffer += chunk


def receive(sock: socket.socket) -> dict[str, Any] | None:
    """The next message from a socket read without buffering (one frame only, nothing ahead)."""
    header = _read(sock, _HEADER.size)
    if header is None:
        return None
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME:
        raise WireError(f"a frame of {size} bytes is over the {MAX_FRAME}-byte limit")
    body = _read(sock, size)
    return None if body is None else _message(body)


def _message(body: bytes) -> dict[str, Any]:
    try:
        message = _DECODE(body.decode())
    except (ValueError, RecursionError, StopIteration) as e:
        raise WireError(f"not a valid frame: {type(e).__name__}") from None
    if not isinstance(message, dict):
        raise WireError("a frame must hold an object")
    return message


def _read(sock: socket.socket, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(min(n - got, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)
