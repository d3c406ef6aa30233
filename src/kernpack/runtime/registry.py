"""Loaders: how a kind is rebuilt from bytes, and how a file becomes a module.

Two tables, filled by decorators:

* ``register_loader(kind)``: a function ``(data: bytes | memoryview) -> Module`` that rebuilds a
  module of ``kind`` from what its ``save_to_bytes()`` produced. A kind is BINARY_SERIALIZABLE
  only if such a loader exists.
* ``register_file_loader(suffix)``: a function ``(path: str) -> Module`` that opens a file.
  ``load_module(path)`` dispatches on the suffix.

The built-in kinds register themselves the same way a user's kind does. Kinds whose code lives
on the compile side (``llvm``, ``c``) are named here as *providers*: the module to import when
such a kind or suffix is first asked for. That keeps ``import kernpack.runtime`` free of
llvmlite while ``load_module("k.ll")`` still works.
"""

from __future__ import annotations

import importlib
import os
import stat
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import LoadError

if TYPE_CHECKING:
    from .module import Module

__all__ = [
    "file_loader_suffixes",
    "load_from_bytes",
    "load_module",
    "loader_kinds",
    "lookup_exporter",
    "lookup_loader",
    "register_file_loader",
    "register_exporter",
    "register_loader",
    "register_provider",
]

BytesLoader = Callable[[bytes | memoryview], "Module"]
FileLoader = Callable[[str], "Module"]
_F = TypeVar("_F", bound=Callable[..., Any])

_loaders: dict[str, BytesLoader] = {}
_file_loaders: dict[str, FileLoader] = {}
# kind or ".suffix" -> the module whose import registers its loader.
_providers: dict[str, str] = {}
_lock = threading.Lock()
_exporter: list[Callable[..., str]] = []
_EXPORTER_KEY = "@export"


def register_loader(kind: str) -> Callable[[_F], _F]:
    """Register the function that rebuilds modules of ``kind`` from bytes.

    Parameters
    ----------
    kind : str
        The module kind, as its ``Module.kind`` spells it.

    Examples
    --------
    A loader for a kind whose payload is its UTF-8 function name:

    >>> from kernpack.runtime import python_module
    >>> @register_loader("doc_echo")
    ... def _load(data):
    ...     name = bytes(data).decode()
    ...     return python_module({name: lambda: name})
    >>> load_from_bytes("doc_echo", b"hello")["hello"]()
    'hello'
    """
    if not kind or not isinstance(kind, str):
        raise ValueError("register_loader() needs a non-empty kind name")

    def decorate(fn: _F) -> _F:
        with _lock:
            _loaders[kind] = fn
        return fn

    return decorate


def register_file_loader(suffix: str) -> Callable[[_F], _F]:
    """Register the function that opens files ending in ``suffix`` (e.g. ``".ll"``).

    ``load_module(path)`` picks the loader by the file's suffix, compared case-insensitively.
    """
    suffix = _normalize_suffix(suffix)

    def decorate(fn: _F) -> _F:
        with _lock:
            _file_loaders[suffix] = fn
        return fn

    return decorate


def register_exporter(fn: Callable[..., str]) -> Callable[..., str]:
    """Install the function behind ``Module.export_library`` (the compile side provides it)."""
    with _lock:
        _exporter[:] = [fn]
    return fn


def lookup_exporter() -> Callable[..., str] | None:
    """Return the installed exporter, importing its provider if needed, or None."""
    if not _exporter and _EXPORTER_KEY in _providers:
        importlib.import_module(_providers[_EXPORTER_KEY])
    return _exporter[0] if _exporter else None


def register_provider(key: str, module_name: str) -> None:
    """Name the Python module that registers the loader for a kind, a ``.suffix`` or ``@export``.

    The module is imported the first time the kind or suffix is asked for and not yet
    registered. Plugins use this to stay cheap to import.
    """
    with _lock:
        _providers[key] = module_name


def lookup_loader(kind: str) -> BytesLoader | None:
    """Return the loader registered for ``kind`` (importing its provider), or None."""
    return _lookup(_loaders, kind)


def loader_kinds() -> tuple[str, ...]:
    """The kinds that have a loader, registered or provided."""
    return tuple(sorted({*_loaders, *(k for k in _providers if k[0] not in ".@")}))


def file_loader_suffixes() -> tuple[str, ...]:
    """The file suffixes ``load_module`` understands."""
    return tuple(sorted({*_file_loaders, *(k for k in _providers if k.startswith("."))}))


def load_from_bytes(kind: str, data: bytes | memoryview) -> Module:
    """Rebuild a module of ``kind`` from the bytes its ``save_to_bytes()`` produced.

    Raises
    ------
    LoadError
        If no loader is registered for ``kind``; the message lists the kinds that have one.
    """
    loader = lookup_loader(kind)
    if loader is None:
        raise LoadError(
            f"no loader is registered for module kind {kind!r}; kinds with a loader: "
            f"{', '.join(loader_kinds()) or 'none'}. Register one with "
            f"@kernpack.register_loader({kind!r})"
        )
    return loader(data)


def load_module(path: str | os.PathLike[str]) -> Module:
    """Load a module from a file, choosing the loader by the file's suffix.

    Parameters
    ----------
    path : str or os.PathLike
        The file: ``.ll`` or ``.bc`` (LLVM), ``.c`` (C source), or any suffix a plugin
        registered with :func:`register_file_loader`.

    Returns
    -------
    Module
        The loaded module.

    Raises
    ------
    LoadError
        If the file does not exist or no loader handles its suffix (the message lists the
        suffixes that are handled).
    """
    path = os.fspath(path)
    suffix = _normalize_suffix(os.path.splitext(path)[1] or ".")
    loader = _lookup(_file_loaders, suffix)
    if loader is None:
        raise LoadError(
            f"cannot load {path!r}: no loader handles {suffix!r} files; handled suffixes: "
            f"{', '.join(file_loader_suffixes()) or 'none'}. Register one with "
            f"@kernpack.register_file_loader({suffix!r})"
        )
    try:
        return loader(path)
    except (OSError, LoadError):
        # The happy path costs no extra system call; a failure gets the clearest reason.
        require_file(path)
        raise


def require_file(path: str) -> None:
    """Raise LoadError unless ``path`` names an existing file (one ``stat``)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise LoadError(f"cannot load {path!r}: no such file") from None
    except OSError as exc:
        raise LoadError(f"cannot load {path!r}: {exc.strerror}") from None
    if stat.S_ISDIR(mode):
        raise LoadError(f"cannot load {path!r}: it is a directory, not a file")


def _lookup(table: dict[str, _F], key: str) -> _F | None:
    fn = table.get(key)
    if fn is None and key in _providers:
        importlib.import_module(_providers[key])
        fn = table.get(key)
    return fn


def _normalize_suffix(suffix: str) -> str:
    suffix = suffix.lower()
    return suffix if suffix.startswith(".") else "." + suffix
