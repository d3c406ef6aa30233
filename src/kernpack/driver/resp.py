"""A small Redis client: the RESP2 protocol over one socket, for the shared compile-cache tier.

Not redis-py: importing it takes about 70 ms (it loads asyncio), a hundred times a kernel's
first call from the local cache, and the cache needs four commands. This speaks the protocol
that every Redis (and Valkey, KeyDB, Dragonfly) server speaks: commands as arrays of bulk
strings, replies of five types.

URLs: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` for TLS, and
``unix:///path/to/socket[?db=N]``.
"""

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["Connection", "RedisError", "ReplyError"]


class RedisError(Exception):
    """The server could not be reached, did not answer in time, or broke the protocol."""


class ReplyError(RedisError):
    """The server answered with an error (``-OOM ...``, ``-READONLY ...``); ``code`` is its first word."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.code = message.split(" ", 1)[0]


class Connection:
    """One connection to the server at ``url``, made on the first command, every wait bounded by ``timeout``.

    Not thread-safe: a caller shares one under a lock.
    """

    def __init__(self, url: str, timeout: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"not a redis:// or rediss:// or unix:// URL: {url!r}")
        self.url = url
        self.timeout = timeout
        self._parts = parts
        self._socket: socket.socket | None = None
        self._buffer = b""

    # ------------------------------------------------------------------ commands
    def command(self, *args: bytes | str | int) -> Any:
        """Send one command; return its reply (bytes, int, str, list, or None). Raises RedisError."""
        try:
            if self._socket is None:
                self._connect()
            self._socket.sendall(_encode(args))
            return self._reply()
        except ReplyError:
            raise
        except (OSError, ValueError) as exc:
            self.close()
            kind = "timed out" if isinstance(exc, TimeoutError | socket.timeout) else "failed"
            raise RedisError(f"{kind}: {exc}" if str(exc) else kind) from None

    def close(self) -> None:
        if self._socket is not None:
            try:
                self._socket.close()
            finally:
                self._socket, self._buffer = None, b""

    # ------------------------------------------------------------------ wire
    def _connect(self) -> None:
        parts = self._parts
        if parts.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            sock.connect(parts.path)
            db = parse_qs(parts.query).get("db", ["0"])[0]
        else:
            sock = socket.create_connection((parts.hostname or "localhost", parts.port or 6379), self.timeout)
            sock.settimeout(self.timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if parts.scheme == "rediss":
                import ssl  # here: only TLS connections pay for importing it

                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=parts.hostname)
            db = parts.path.lstrip("/") or "0"
        self._socket = sock
        if parts.password is not None:
            credentials = [unquote(parts.username)] if parts.username else []
            self.command("AUTH", *credentials, unquote(parts.password))
        if db != "0":
            self.command("SELECT", db)

    def _line(self) -> bytes:
        while b"\r\n" not in self._buffer:
            self._fill()
        line, self._buffer = self._buffer.split(b"\r\n", 1)
        return line

    def _exactly(self, n: int) -> bytes:
        while len(self._buffer) < n + 2:
            self._fill()
        data, self._buffer = self._buffer[:n], self._buffer[n + 2 :]
        return data

    def _fill(self) -> None:
        chunk = self._socket.recv(1 << 20)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self._buffer += chunk

    def _reply(self) -> Any:
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise ReplyError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else self._exactly(size)
        if kind == b"*":
            count = int(rest)
            return None if count < 0 else [self._reply() for _ in range(count)]
        raise ValueError(f"not a RESP reply: {line[:40]!r}")


def _encode(args: tuple[bytes | str | int, ...]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out += [b"$%d\r\n" % len(data), data, b"\r\n"]
    return b"".join(out)
