"""A content-addressed compile cache on disk, so that a second process skips LLVM entirely.

An entry holds what a target's stages produced for one unit, by stage name (for the cpu
target the optimized bitcode and the machine code for this process's JIT; for a device its
LLVM IR, PTX or SPIR-V), plus the notes stages left. Its key hashes everything the output
depends on: the kernels' typed IR (which already folds in their globals and types) or the IR
given, the target and its options, the CPU and its features, the versions of llvmlite and
LLVM, and a digest of kernpack's own source files (their sizes and modification times, as
Python checks its .pyc files), so that a changed code generator or contract never reuses old
output, even at the same version number.

Where: ``$KERNPACK_CACHE_DIR``, else ``$XDG_CACHE_HOME/kernpack``, else ``~/.cache/kernpack``.
Off: ``KERNPACK_CACHE=0`` (or ``kp.build(..., cache=False)``).

Entries are written to a temporary file in the cache directory and renamed into place, so
two processes filling the same entry at once both leave a complete entry, and a reader never
sees half of one. A corrupt or unreadable entry is treated as a miss.
"""

from __future__ import annotations

import contextlib
import functools
import os
import struct
import sys
from pathlib import Path
from typing import Any

__all__ = ["cache_dir", "cache_enabled", "load", "make_key", "native_path", "sha256_hex", "store"]

# CPython's own SHA-256 where it has it, not hashlib's: importing hashlib loads OpenSSL (about
# 3 ms), more than the rest of a cache hit's key. The digests are the same.
try:  # the module by its name in this version, not a failed import of the other's (0.1 ms)
    if sys.version_info >= (3, 12):
        from _sha2 import sha256 as _sha256
    else:
        from _sha256 import sha256 as _sha256
except ImportError:  # pragma: no cover - a build without the built-in module
    from hashlib import sha256 as _sha256

_MAGIC = b"KPCACHE2"
_HEADER = struct.Struct("<8sI")  # magic, number of parts
_PART = struct.Struct("<HQ")  # name length, data length; then the name (UTF-8), then the data


def cache_enabled() -> bool:
    """False when ``KERNPACK_CACHE`` is ``0``, ``false`` or ``off``."""
    return os.environ.get("KERNPACK_CACHE", "1").lower() not in ("0", "false", "off", "no")


def cache_dir() -> Path:
    """The cache directory (not created until an entry is stored)."""
    explicit = os.environ.get("KERNPACK_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "kernpack"


@functools.cache
def _compiler_fingerprint() -> str:
    """A hash of the kernpack sources that decide what a build produces (read once a process).

    LLVM is identified by llvmlite's version file and the size of its LLVM library, read from
    disk: a cache hit must not import llvmlite (nor ``importlib.metadata``, 15-30 ms).
    """
    from .. import __version__

    digest = _sha256(__version__.encode())
    spec = _find_spec("llvmlite")
    if spec is not None and spec.origin is not None:
        llvmlite_dir = Path(spec.origin).parent
        for part in (llvmlite_dir / "_version.py", llvmlite_dir / "binding" / "libllvmlite.so"):
            with contextlib.suppress(OSError):
                digest.update(part.read_bytes() if part.suffix == ".py" else str(part.stat().st_size).encode())
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    # All of kernpack, not a list of the files that matter today: the driver, and the runtime
    # contracts it compiles against (runtime/abi.py, signatures), which a new import could widen.
    # Each file by its size and modification time, as Python validates its own .pyc files:
    # reading and hashing every source took 4-5 ms of a cache hit.
    files: list[str] = []
    _source_stats(package, "", files)
    digest.update("".join(sorted(files)).encode())
    return digest.hexdigest()


def _find_spec(name: str) -> Any:
    """``importlib.util.find_spec`` of a top-level package, without importing importlib.util."""
    for finder in sys.meta_path:
        find = getattr(finder, "find_spec", None)
        spec = find(name, None) if find is not None else None
        if spec is not None:
            return spec
    return None


def _source_stats(directory: str, prefix: str, out: list[str]) -> None:
    """``relative/path.py:size:mtime_ns`` of every Python file under ``directory`` (scandir: 0.3 ms, os.walk 1 ms)."""
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.is_dir():
                if entry.name != "__pycache__":
                    _source_stats(entry.path, f"{prefix}{entry.name}/", out)
            elif entry.name.endswith(".py"):
                stat = entry.stat()
                out.append(f"{prefix}{entry.name}:{stat.st_size}:{stat.st_mtime_ns}\n")


def make_key(*parts: str | bytes) -> str:
    """A hex digest of ``parts`` plus the fingerprint of everything that compiles them."""
    digest = _sha256()
    for part in (_compiler_fingerprint(), *parts):
        encoded = part if isinstance(part, bytes) else part.encode()
        digest.update(len(encoded).to_bytes(8, "little"))  # lengths, so that parts cannot run together
        digest.update(encoded)
    return digest.hexdigest()


def sha256_hex(data: bytes) -> str:
    """The hex SHA-256 of ``data`` (as ``hashlib``'s, without importing it)."""
    return _sha256(data).hexdigest()


def native_path(key: str) -> Path:
    """Where the shared object built from entry ``key`` lives (when one was linked)."""
    return cache_dir() / key[:2] / f"{key}.so"


def load(key: str) -> dict[str, bytes] | None:
    """Return the parts stored under ``key`` by name, or None (also for a damaged entry)."""
    path = cache_dir() / key[:2] / key
    try:
        data = path.read_bytes()
        magic, count = _HEADER.unpack_from(data)
        if magic != _MAGIC:
            return None
        parts, at = {}, _HEADER.size
        for _ in range(count):
            n_name, n_data = _PART.unpack_from(data, at)
            at += _PART.size
            name = data[at : at + n_name].decode()
            parts[name] = data[at + n_name : at + n_name + n_data]
            at += n_name + n_data
    except (OSError, struct.error, UnicodeDecodeError):
        return None
    return parts if at == len(data) else None


def store(key: str, parts: dict[str, bytes]) -> None:
    """Store an entry atomically; a cache that cannot be written is silently skipped."""
    import tempfile  # here: a process that only reads the cache does not import it (4 ms)

    directory = cache_dir() / key[:2]
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    except OSError:
        return
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_HEADER.pack(_MAGIC, len(parts)))
            for name, data in parts.items():
                encoded = name.encode()
                f.write(_PART.pack(len(encoded), len(data)))
                f.write(encoded)
                f.write(data)
        os.replace(tmp, directory / key)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
