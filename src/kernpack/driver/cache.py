"""A content-addressed compile cache: on this machine's disk, and optionally shared through Redis.

An entry holds what a target's stages produced for one unit, by stage name (for the cpu
target the optimized bitcode and the machine code; for a device its LLVM IR, PTX or SPIR-V),
plus the notes stages left. Its key hashes everything the output depends on: the kernels'
typed IR (which already folds in their globals and types) or the IR given, the target and its
options, the CPU and its features, the versions of llvmlite and LLVM, and a digest of
kernpack's own source files (their contents, remembered per set of file sizes and modification
times, so that a process pays for reading them once per installation), so that a changed code
generator or contract never reuses old output, even at the same version number, and two
machines with the same kernpack and LLVM compute the same keys.

Tiers, asked in order:

* **local**: ``$KERNPACK_CACHE_DIR``, else ``$XDG_CACHE_HOME/kernpack``, else
  ``~/.cache/kernpack``; owner-only, and not used where another user owns it or others can
  write to it (:func:`local_usable`); bounded by ``KERNPACK_CACHE_MAX_BYTES`` (``2G`` by
  default), the least recently used entries evicted first.
* **remote**: ``KERNPACK_CACHE_URL=redis://host:port/db`` (or ``kp.configure_cache``), a
  Redis that a team's machines share. A local miss asks it; a build stores to both; an entry
  found there is kept locally too. Its entries are signed with ``KERNPACK_CACHE_KEY`` (or the
  first key of ``KERNPACK_CACHE_KEY_FILE``; HMAC-SHA256 over key and content) and loaded only
  if a key verifies them; without a key the tier is used only when
  ``KERNPACK_CACHE_TRUST_UNSIGNED=1`` says so. A Redis that is down, slow
  (``KERNPACK_CACHE_TIMEOUT`` seconds, 1 by default) or full never fails a build: the first
  error warns once (:class:`CacheWarning`) and the process goes on without it.

Off: ``KERNPACK_CACHE=0`` (or ``kp.build(..., cache=False)``).

Every entry carries a SHA-256 over its key and content: one damaged, truncated, or stored
under another key (a foreign entry) is a miss, never loaded. Local entries are written to a
temporary file and renamed into place, so a reader never sees half of one; a Redis ``SET`` is
atomic.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import struct
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CacheWarning

try:  # constant-time comparison, as hmac.compare_digest (which imports hashlib, OpenSSL)
    from _operator import _compare_digest
except ImportError:  # pragma: no cover - another Python
    from hmac import compare_digest as _compare_digest

__all__ = [
    "cache_dir",
    "cache_enabled",
    "cache_info",
    "clear_cache",
    "configure_cache",
    "fetch_native",
    "local_usable",
    "worker_context",
    "load",
    "make_key",
    "native_path",
    "publish_native",
    "sha256_hex",
    "store",
]

# CPython's own SHA-256 where it has it, not hashlib's: importing hashlib loads OpenSSL (about
# 3 ms), more than the rest of a cache hit's key. The digests are the same.
try:  # the module by its name in this version, not a failed import of the other's (0.1 ms)
    if sys.version_info >= (3, 12):
        from _sha2 import sha256 as _sha256
    else:
        from _sha256 import sha256 as _sha256
except ImportError:  # pragma: no cover - a build without the built-in module
    from hashlib import sha256 as _sha256

_MAGIC = b"KPCACHE3"
_HEADER = struct.Struct("<8s32sI")  # magic, SHA-256 of key + parts, number of parts
_PART = struct.Struct("<HQ")  # name length, data length; then the name (UTF-8), then the data
_SIGNED = b"KPSIGN01"  # a shared-tier value signed with a key: this, the HMAC-SHA256 tag, the entry
_NATIVE_PART = "shared object"  # the one part of a shared object's entry in the remote tier
_REMOTE_PREFIX = "kernpack:3:"  # Redis keys: the prefix, then the entry's key (".so": its shared object)
_DEFAULT_MAX_BYTES = 2 << 30


@dataclass
class _Stats:
    """What this process's cache lookups found, by tier."""

    local_hits: int = 0
    remote_hits: int = 0
    misses: int = 0
    stores: int = 0
    rejected: int = 0  # entries that failed their checksum (damaged or foreign)
    unverified: int = 0  # shared entries no key of this process signed (forged, or another key's)
    evicted: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class _Config:
    url: str | None = None
    timeout: float = 1.0
    max_bytes: int = _DEFAULT_MAX_BYTES
    keys: tuple[bytes, ...] = ()  # the shared tier's keys: the first signs, every one verifies
    trust_unsigned: bool = False  # use a shared tier without keys (whoever writes to it runs code here)
    from_env: bool = True  # configure() was not called: read the environment each time


_config = _Config()
_stats = _Stats()
_lock = threading.Lock()
_warned: set[str] = set()
_remote: Any = None  # the Redis tier in use, or False once it failed in this process
_remote_url: str | None = None


def cache_enabled() -> bool:
    """False when ``KERNPACK_CACHE`` is ``0``, ``false`` or ``off``."""
    return os.environ.get("KERNPACK_CACHE", "1").lower() not in ("0", "false", "off", "no")


def cache_dir() -> Path:
    """The local cache directory (not created until an entry is stored)."""
    explicit = os.environ.get("KERNPACK_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "kernpack"


def configure_cache(
    url: str | None = None,
    *,
    timeout: float | None = None,
    max_bytes: int | str | None = None,
    keys: Sequence[str | bytes] = (),
    trust_unsigned: bool = False,
) -> None:
    """Set the cache's tiers in code, in place of ``KERNPACK_CACHE_URL`` and friends.

    Parameters
    ----------
    url : str, optional
        The shared tier, ``redis://host:port/db`` (``rediss://`` for TLS); None: none.
    timeout : float, optional
        Seconds a Redis request may take before the tier is given up for this process (1).
    max_bytes : int or str, optional
        The local cache's bound, in bytes or as ``"500M"``, ``"2G"`` (2 GiB).
    keys : sequence of str or bytes
        Secret keys of the shared tier: the first signs what this process stores (HMAC-SHA256
        over the entry's key and content), and an entry is loaded only if one of them verifies
        it. More than one while keys are rotated.
    trust_unsigned : bool, default False
        Use the shared tier without keys. Whoever can write to it can then run code in every
        process that reads from it; without keys or this, the tier is not used.
    """
    global _remote, _remote_url
    with _lock:
        _config.url = url
        _config.timeout = 1.0 if timeout is None else float(timeout)
        _config.max_bytes = _DEFAULT_MAX_BYTES if max_bytes is None else _parse_size(max_bytes, "max_bytes")
        _config.keys = tuple(k.encode() if isinstance(k, str) else bytes(k) for k in keys)
        _config.trust_unsigned = trust_unsigned
        _config.from_env = False
        _remote, _remote_url = None, None
        _warned.clear()


def worker_context() -> Callable[[], None] | None:
    """What a build worker calls to use the tiers :func:`configure_cache` set here (None: the environment's)."""
    if _config.from_env:
        return None
    c = _config
    return functools.partial(configure_cache, c.url, timeout=c.timeout, max_bytes=c.max_bytes, keys=c.keys,
                             trust_unsigned=c.trust_unsigned)  # fmt: skip


def _url() -> str | None:
    """The shared tier's URL (cheap: asked on every local miss)."""
    return _config.url if not _config.from_env else os.environ.get("KERNPACK_CACHE_URL") or None


def _max_bytes() -> int:
    """The local tier's bound."""
    if not _config.from_env:
        return _config.max_bytes
    size = os.environ.get("KERNPACK_CACHE_MAX_BYTES")
    return _parse_size(size, "KERNPACK_CACHE_MAX_BYTES") if size else _DEFAULT_MAX_BYTES


def _settings() -> _Config:
    """Every setting (the key file read too): for making the shared tier, and for cache_info."""
    if not _config.from_env:
        return _config
    timeout = os.environ.get("KERNPACK_CACHE_TIMEOUT")
    return _Config(
        url=_url(),
        timeout=_parse_float(timeout, "KERNPACK_CACHE_TIMEOUT") if timeout else 1.0,
        max_bytes=_max_bytes(),
        keys=_keys_from_env(),
        trust_unsigned=os.environ.get("KERNPACK_CACHE_TRUST_UNSIGNED", "").lower() in ("1", "yes", "true", "on"),
    )


def _keys_from_env() -> tuple[bytes, ...]:
    """``KERNPACK_CACHE_KEY`` (one key), else the lines of ``KERNPACK_CACHE_KEY_FILE`` (the first signs).

    Raises
    ------
    ValueError
        If the key file cannot be read or holds no key.
    """
    key = os.environ.get("KERNPACK_CACHE_KEY")
    if key:
        return (key.encode(),)
    path = os.environ.get("KERNPACK_CACHE_KEY_FILE")
    if not path:
        return ()
    try:
        with open(path, "rb") as f:
            keys = tuple(line.strip() for line in f if line.strip() and not line.startswith(b"#"))
    except OSError as exc:
        raise ValueError(f"KERNPACK_CACHE_KEY_FILE={path!r} cannot be read ({exc.strerror})") from None
    if not keys:
        raise ValueError(f"KERNPACK_CACHE_KEY_FILE={path!r} holds no key (one per line; the first signs)")
    return keys


def _parse_float(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise ValueError(f"{name}={text!r}: give a number of seconds above 0, e.g. 0.5")
    return value


def _parse_size(value: int | str, name: str) -> int:
    if isinstance(value, int):
        size = value
    else:
        text = value.strip().upper().removesuffix("B").removesuffix("I")
        scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}.get(text[-1:], 1)
        try:
            size = int(float(text[:-1] if scale > 1 else text) * scale)
        except ValueError:
            size = -1
    if size < 0:
        raise ValueError(f"{name}={value!r}: give a size in bytes, or with K, M, G (e.g. 2G)")
    return size


def _warn_once(tier: str, message: str) -> None:
    with _lock:
        if tier in _warned:
            return
        _warned.add(tier)
    warnings.warn(message, CacheWarning, stacklevel=3)


# ---------------------------------------------------------------------- the key
@functools.cache
def _compiler_fingerprint() -> str:
    """A hash of kernpack's sources and of LLVM (read once a process): what every key starts with.

    LLVM is identified by llvmlite's version file and the size of its LLVM library, read from
    disk: a cache hit must not import llvmlite (nor ``importlib.metadata``, 15-30 ms).
    kernpack's sources count by content, so that two machines agree on keys; the digest of
    the contents is remembered in the cache directory under the digest of the files' sizes
    and modification times (as Python validates its .pyc files), so reading and hashing them
    all (4-5 ms) happens once per installation, not once per process.
    """
    from .. import __version__

    digest = _sha256(__version__.encode())
    spec = _find_spec("llvmlite")
    if spec is not None and spec.origin is not None:
        llvmlite_dir = Path(spec.origin).parent
        for part in (llvmlite_dir / "_version.py", llvmlite_dir / "binding" / "libllvmlite.so"):
            with contextlib.suppress(OSError):
                digest.update(part.read_bytes() if part.suffix == ".py" else str(part.stat().st_size).encode())
    digest.update(_sources_digest().encode())
    return digest.hexdigest()


def _sources_digest() -> str:
    """The SHA-256 of kernpack's Python sources, paths and contents (see :func:`_compiler_fingerprint`)."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    # All of kernpack, not a list of the files that matter today: the driver, and the runtime
    # contracts it compiles against (runtime/abi.py, signatures), which a new import could widen.
    files: list[tuple[str, str]] = []
    _source_files(package, "", files)
    files.sort()
    stats = _sha256("".join(f"{rel}:{stat}\n" for rel, stat in files).encode()).hexdigest()
    memo = cache_dir() / "fingerprints" / stats
    trusted = local_usable()
    with contextlib.suppress(OSError, UnicodeDecodeError):
        remembered = memo.read_text("ascii") if trusted else ""
        if len(remembered) == 64:
            return remembered
    contents = _sha256()
    for rel, _ in files:
        with contextlib.suppress(OSError):
            data = Path(package, rel).read_bytes()
            contents.update(f"{rel}:{len(data)}\n".encode())
            contents.update(data)
    result = contents.hexdigest()
    if trusted:
        _write_atomic(memo, result.encode())
    return result


def _find_spec(name: str) -> Any:
    """``importlib.util.find_spec`` of a top-level package, without importing importlib.util."""
    for finder in sys.meta_path:
        find = getattr(finder, "find_spec", None)
        spec = find(name, None) if find is not None else None
        if spec is not None:
            return spec
    return None


def _source_files(directory: str, prefix: str, out: list[tuple[str, str]]) -> None:
    """``(relative/path.py, "size:mtime_ns")`` of every Python file under ``directory`` (scandir: 0.3 ms)."""
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.is_dir():
                if entry.name != "__pycache__":
                    _source_files(entry.path, f"{prefix}{entry.name}/", out)
            elif entry.name.endswith(".py"):
                stat = entry.stat()
                out.append((f"{prefix}{entry.name}", f"{stat.st_size}:{stat.st_mtime_ns}"))


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


# ---------------------------------------------------------------------- entries
def _encode(key: str, parts: dict[str, bytes]) -> bytes:
    body = []
    for name, data in parts.items():
        encoded = name.encode()
        body += [_PART.pack(len(encoded), len(data)), encoded, data]
    parts_bytes = b"".join(body)
    return _HEADER.pack(_MAGIC, _digest(key, len(parts), parts_bytes), len(parts)) + parts_bytes


def _digest(key: str, count: int, parts: bytes | memoryview) -> bytes:
    """SHA-256 over the cache key, the number of parts and the parts (what an entry's header holds)."""
    digest = _sha256(key.encode())
    digest.update(count.to_bytes(4, "little"))
    digest.update(parts)
    return digest.digest()


def _hmac(secret: bytes, key: str, value: bytes) -> bytes:
    """HMAC-SHA256 (RFC 2104) of the cache key and the value, with CPython's own SHA-256 (no OpenSSL import)."""
    inner_pad, outer_pad = _pads(secret)
    inner = _sha256(inner_pad)
    encoded = key.encode()
    inner.update(len(encoded).to_bytes(8, "little") + encoded)
    inner.update(value)
    outer = _sha256(outer_pad)
    outer.update(inner.digest())
    return outer.digest()


@functools.lru_cache(maxsize=8)
def _pads(secret: bytes) -> tuple[bytes, bytes]:
    """HMAC's inner and outer padded keys for ``secret``."""
    if len(secret) > 64:
        secret = _sha256(secret).digest()
    secret = secret.ljust(64, b"\0")
    return bytes(b ^ 0x36 for b in secret), bytes(b ^ 0x5C for b in secret)


def _decode(key: str, data: bytes) -> dict[str, bytes] | None:
    """The parts of an entry, or None if it is not a whole entry of ``key`` (damaged or foreign)."""
    try:
        magic, checksum, count = _HEADER.unpack_from(data)
        if magic != _MAGIC:
            return None
        if _digest(key, count, memoryview(data)[_HEADER.size :]) != checksum:
            with _lock:
                _stats.rejected += 1
            return None
        parts, at = {}, _HEADER.size
        for _ in range(count):
            n_name, n_data = _PART.unpack_from(data, at)
            at += _PART.size
            name = data[at : at + n_name].decode()
            parts[name] = data[at + n_name : at + n_name + n_data]
            at += n_name + n_data
    except (struct.error, UnicodeDecodeError):
        return None
    return parts if at == len(data) else None


def local_usable() -> bool:
    """False (with one warning) where the local cache directory could hold someone else's code.

    As ``ssh`` refuses a ``~/.ssh`` that others can write to: a cache directory owned by
    another user, or writable by its group or by everyone, may hold entries that another user
    placed, and entries are machine code this process runs. It is then neither read nor
    written. A directory kernpack creates is its owner's alone (mode 700).
    """
    directory = cache_dir()
    try:
        st = directory.stat()
    except OSError:
        return True  # not there yet: it is made owner-only
    problem = None
    if st.st_uid != os.geteuid():
        problem = f"it belongs to another user (uid {st.st_uid})"
    elif st.st_mode & 0o022:
        problem = f"others can write to it (mode {st.st_mode & 0o777:o})"
    if problem is None:
        return True
    _warn_once("local-trust", f"kernpack: the compile cache {directory} is not used: {problem}, so it may hold "
               f"code someone else put there; chmod 700 {directory}, or set KERNPACK_CACHE_DIR to a directory "
               "of your own")  # fmt: skip
    return False


def native_path(key: str) -> Path:
    """Where the shared object built from entry ``key`` lives (when one was linked)."""
    return cache_dir() / key[:2] / f"{key}.so"


def _entry_path(key: str) -> Path:
    return cache_dir() / key[:2] / key


def load(key: str) -> dict[str, bytes] | None:
    """Return the parts stored under ``key`` by name, or None (also for a damaged entry).

    A local miss asks the remote tier; what it has is kept locally too (with the entry's
    shared object, where one was published).
    """
    path = _entry_path(key)
    local = local_usable()
    try:
        data = path.read_bytes() if local else None
    except OSError:
        data = None
    parts = None if data is None else _decode(key, data)
    if parts is not None:
        with contextlib.suppress(OSError):
            os.utime(path)  # its last use, for least-recently-used eviction
        with _lock:
            _stats.local_hits += 1
        return parts
    remote = _remote_tier()
    found = remote.get(key) if remote is not None else None
    if found is not None:
        sealed, sealed_native = found
        entry = remote.unseal(key, sealed)  # None: no key of this process signed it (warned)
        parts = None if entry is None else _decode(key, entry)
        if parts is not None:
            with _lock:
                _stats.remote_hits += 1
            if local:
                if sealed_native is not None:  # one that fails is left out: LLVM runs the code instead
                    _keep_native(remote, key, sealed_native)
                _write_atomic(path, entry)
            return parts
        if entry is not None:
            remote.rejected(key)
    with _lock:
        _stats.misses += 1
    return None


def store(key: str, parts: dict[str, bytes]) -> None:
    """Store an entry in every tier; one that cannot be written is skipped (the build goes on)."""
    entry = _encode(key, parts)
    if local_usable() and _write_atomic(_entry_path(key), entry):
        with _lock:
            _stats.stores += 1
        _evict_if_over(_max_bytes())
    remote = _remote_tier()
    if remote is not None:
        remote.put(key, entry)


def fetch_native(key: str) -> bool:
    """Make entry ``key``'s shared object present locally, from the remote tier if need be; True if it is.

    The first call of a kernel in a fresh process needs only this, not the entry: one round
    trip and one checksum, about half of what loading the entry too costs.
    """
    if not local_usable():
        return False
    path = native_path(key)
    if path.exists():
        return True
    remote = _remote_tier()
    sealed = remote.get_one(key + ".so") if remote is not None else None
    if sealed is None or not _keep_native(remote, key, sealed):
        return False
    with _lock:
        _stats.remote_hits += 1
    return True


def _keep_native(remote: _Redis, key: str, sealed: bytes) -> bool:
    """Write entry ``key``'s shared object, as the shared tier holds it, into the local tier.

    It is an entry of its own there, signed and checksummed like any; False (and counted,
    warned once) if it does not verify or is damaged.
    """
    native = remote.unseal(key + ".so", sealed)
    linked = None if native is None else _decode(key + ".so", native)
    if linked is None or _NATIVE_PART not in linked:
        if native is not None:
            remote.rejected(key + ".so")
        return False
    return _write_atomic(native_path(key), linked[_NATIVE_PART], mode=0o700)


def publish_native(key: str) -> None:
    """Share entry ``key``'s shared object (just linked locally) with the remote tier."""
    remote = _remote_tier()
    if remote is None:
        return
    with contextlib.suppress(OSError):
        remote.put(key + ".so", _encode(key + ".so", {_NATIVE_PART: native_path(key).read_bytes()}))


def _write_atomic(path: Path, data: bytes, mode: int = 0o600) -> bool:
    """Write ``data`` to ``path`` through a temporary file and a rename; False if it cannot be.

    The temporary name is made here, not by :mod:`tempfile`: importing it costs about 1 ms,
    half of a kernel's first call from the shared tier.
    """
    tmp = path.parent / f".tmp-{os.getpid()}-{os.urandom(6).hex()}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        try:
            fd = os.open(tmp, flags, mode)
        except FileNotFoundError:  # the entry's shard directory is new: it and the cache are owner-only
            root = cache_dir()
            if path.parent != root and not root.exists():
                root.parent.mkdir(parents=True, exist_ok=True)
                root.mkdir(mode=0o700, exist_ok=True)
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(tmp, flags, mode)
    except OSError as exc:
        _warn_once("local", f"kernpack: the compile cache {cache_dir()} cannot be written ({exc.strerror}); "
                   "builds are not cached on disk (set KERNPACK_CACHE_DIR to a writable directory)")  # fmt: skip
        return False
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        _warn_once("local", f"kernpack: the compile cache {cache_dir()} cannot be written ({exc.strerror}); "
                   "builds are not cached on disk (a full disk?)")  # fmt: skip
        return False
    return True


# ---------------------------------------------------------------------- housekeeping
def _files() -> list[os.DirEntry[str]]:
    """Every entry and shared object of the local cache (not the fingerprints' memo)."""
    found = []
    with contextlib.suppress(OSError), os.scandir(cache_dir()) as shards:
        for shard in shards:
            if len(shard.name) != 2 or not shard.is_dir():
                continue
            with contextlib.suppress(OSError), os.scandir(shard.path) as entries:
                found += [e for e in entries if e.is_file() and not e.name.startswith(".tmp-")]
    return found


def _evict_if_over(max_bytes: int) -> None:
    """Delete the least recently used files until the cache holds at most ``max_bytes``.

    Run after each store, which follows a compile that cost far more than this scan. An entry
    and its shared object go together, and it goes down to 90% of the bound, so that the next
    stores do not evict again at once.
    """
    files = []
    for entry in _files():
        with contextlib.suppress(OSError):
            st = entry.stat()
            files.append((st.st_mtime_ns, st.st_size, entry.path))
    total = sum(size for _, size, _ in files)
    if total <= max_bytes:
        return
    target = max_bytes * 9 // 10
    for _, size, path in sorted(files):
        if total <= target:
            break
        with contextlib.suppress(OSError):
            os.unlink(path)
            total -= size
            with _lock:
                _stats.evicted += 1


def cache_info() -> dict[str, Any]:
    """The cache's tiers, what the local one holds, and this process's hits and misses.

    Returns
    -------
    dict
        ``{"enabled", "local": {"path", "entries", "bytes", "max_bytes"}, "remote": {"url",
        "timeout", "state", "trust"} or None, "process": {"local_hits", "remote_hits", "misses",
        "stores", "rejected", "unverified", "evicted"}}``.
    """
    settings = _settings()
    files = _files()
    sizes = []
    for entry in files:
        with contextlib.suppress(OSError):
            sizes.append(entry.stat().st_size)
    remote = None
    if settings.url is not None:
        state = "unused so far" if _remote is None else ("failed in this process" if _remote is False else "in use")
        if settings.keys:
            trust = f"entries signed and verified ({len(settings.keys)} key{'s' * (len(settings.keys) > 1)})"
        elif settings.trust_unsigned:
            trust = "entries unsigned (KERNPACK_CACHE_TRUST_UNSIGNED)"
        else:
            trust = "not used: no key (KERNPACK_CACHE_KEY) and not trusted unsigned"
        remote = {"url": _redacted(settings.url), "timeout": settings.timeout, "state": state, "trust": trust}
    return {
        "enabled": cache_enabled(),
        "local": {
            "path": str(cache_dir()),
            "entries": sum(1 for e in files if not e.name.endswith(".so")),
            "bytes": sum(sizes),
            "max_bytes": settings.max_bytes,
        },
        "remote": remote,
        "process": _stats.as_dict(),
    }


def clear_cache() -> int:
    """Delete every entry of the local cache (not the remote tier's); return how many files went."""
    removed = 0
    for entry in _files():
        with contextlib.suppress(OSError):
            os.unlink(entry.path)
            removed += 1
    return removed


def _redacted(url: str) -> str:
    """``url`` without its password (``redis://:secret@host`` -> ``redis://:***@host``)."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    return f"{scheme}{sep}{credentials.split(':')[0]}:***@{host}"


# ---------------------------------------------------------------------- the remote tier
def _remote_tier() -> _Redis | None:
    """The Redis tier of this process (made on first use), or None where there is none or it failed."""
    global _remote, _remote_url
    url = _url()
    if url is None:
        return None
    with _lock:
        if _remote is not None and _remote_url == url:
            return _remote or None
    settings = _settings()
    try:
        tier: Any = _Redis(url, settings.timeout, settings.keys, settings.trust_unsigned)
    except _TierUnavailable as exc:
        _warn_once("remote", str(exc))
        tier = False
    with _lock:
        _remote, _remote_url = tier, url
    if tier:
        atexit.register(tier.close)
    return tier or None


class _TierUnavailable(Exception):
    pass


class _Redis:
    """A Redis server as a cache tier: GET and SET of whole entries, any failure the end of it."""

    def __init__(self, url: str, timeout: float, keys: tuple[bytes, ...], trust_unsigned: bool) -> None:
        from . import resp  # here: a process without a shared tier never imports it (socket: 2 ms)

        self._resp = resp
        self.url = url
        if not keys and not trust_unsigned:
            raise _TierUnavailable(
                f"kernpack: the shared cache {_redacted(url)} is not used: its entries are machine code this "
                "process would run, and with no key nothing proves who wrote them. Set KERNPACK_CACHE_KEY (or "
                "KERNPACK_CACHE_KEY_FILE) to a secret your build machines share, or KERNPACK_CACHE_TRUST_UNSIGNED=1 "
                "if only trusted machines can write to it (docs/cache.md, Trust)"
            )
        try:
            self._connection = resp.Connection(url, timeout)
        except ValueError as exc:
            raise _TierUnavailable(f"kernpack: the shared cache URL {_redacted(url)} is not usable ({exc})") from None
        self._keys = keys
        self._lock = threading.Lock()  # one connection, one command at a time
        self._writable = True

    def seal(self, key: str, value: bytes) -> bytes:
        """``value`` as stored in the tier: signed with the first key, where there are keys."""
        if not self._keys:
            return value
        return _SIGNED + _hmac(self._keys[0], key, value) + value

    def unseal(self, key: str, stored: bytes) -> bytes | None:
        """The value under a verified signature; None (counted, warned once) if no key verifies it."""
        signed = stored[: len(_SIGNED)] == _SIGNED
        value = stored[len(_SIGNED) + 32 :] if signed else stored
        if not self._keys:
            return value  # an unsigned tier the user trusts; a signature here cannot be checked
        tag = stored[len(_SIGNED) : len(_SIGNED) + 32]
        if signed and any(_compare_digest(tag, _hmac(k, key, value)) for k in self._keys):
            return value
        with _lock:
            _stats.unverified += 1
        _warn_once("remote-unverified", f"kernpack: an entry of the shared cache {_redacted(self.url)} is not "
                   f"signed by any of this process's keys ({key[:16]}...); it was not loaded, and was rebuilt here "
                   "(stored by a machine with another key, or by someone without one)")  # fmt: skip
        return None

    def _command(self, *args: bytes | str) -> Any:
        with self._lock:
            return self._connection.command(*args)

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    def get(self, key: str) -> tuple[bytes, bytes | None] | None:
        """The entry stored under ``key`` and its shared object (None where none), or None."""
        try:
            entry, shared_object = self._command("MGET", _REMOTE_PREFIX + key, _REMOTE_PREFIX + key + ".so")
        except self._resp.RedisError as exc:
            self._fail(exc)
            return None
        return None if entry is None else (entry, shared_object)

    def get_one(self, key: str) -> bytes | None:
        """The value stored under ``key``, or None."""
        try:
            return self._command("GET", _REMOTE_PREFIX + key)
        except self._resp.RedisError as exc:
            self._fail(exc)
            return None

    def put(self, key: str, value: bytes) -> None:
        if not self._writable:
            return
        try:
            self._command("SET", _REMOTE_PREFIX + key, self.seal(key, value))
        except self._resp.RedisError as exc:
            # Full (maxmemory with noeviction), or a replica: still worth reading from.
            if isinstance(exc, self._resp.ReplyError) and exc.code in ("OOM", "READONLY"):
                self._writable = False
                _warn_once("remote-write", f"kernpack: the shared cache {_redacted(self.url)} refuses writes "
                           f"({exc}); builds read from it but store only locally")  # fmt: skip
                return
            self._fail(exc)

    def rejected(self, key: str) -> None:
        _warn_once("remote-rejected", f"kernpack: an entry of the shared cache {_redacted(self.url)} failed its "
                   f"checksum (damaged, or stored under another key: {key[:16]}...); it was rebuilt here")  # fmt: skip

    def _fail(self, exc: BaseException) -> None:
        global _remote
        with _lock:
            _remote = False
        _warn_once("remote", f"kernpack: the shared cache {_redacted(self.url)} failed ({exc}); building "
                   "without it for the rest of this process")  # fmt: skip
