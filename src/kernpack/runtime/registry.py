"""Loaders: how a kind is rebuilt from bytes, how a file becomes a module, what a payload holds.

Three tables, filled by decorators:

* ``register_loader(kind)``: a function ``(data: bytes | memoryview) -> Module`` that rebuilds a
  module of ``kind`` from what its ``save_to_bytes()`` produced. A kind is BINARY_SERIALIZABLE
  only if such a loader exists.
* ``register_file_loader(suffix)``: a function ``(path: str) -> Module`` that opens a file.
  ``load_module(path)`` dispatches on the suffix.
* ``register_describer(kind)``: a function ``(payload: memoryview) -> list[dict]`` that says
  which functions a payload of ``kind`` holds, without building or running anything: what
  ``kernpack inspect`` shows. A kind without one is shown without its functions.

The built-in kinds register themselves the same way a user's kind does. Kinds whose code lives
on the compile side (``llvm``, ``c``) are named here as *providers*: the module to import when
such a kind, suffix or the exporter is first asked for. That keeps ``import kernpack.runtime``
free of llvmlite while ``load_module("k.ll")`` still works.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import stat
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import CompilerNotInstalledError, LoadError

if TYPE_CHECKING:
    from .module import Module

__all__ = [
    "file_loader_suffixes",
    "import_compile_side",
    "load_from_bytes",
    "load_module",
    "loader_kinds",
    "lookup_describer",
    "lookup_exporter",
    "lookup_loader",
    "register_describer",
    "register_file_loader",
    "register_exporter",
    "register_loader",
    "register_provider",
]

BytesLoader = Callable[[bytes | memoryview], "Module"]
FileLoader = Callable[[str], "Module"]
Describer = Callable[[memoryview], list[dict[str, Any]]]
_F = TypeVar("_F", bound=Callable[..., Any])

_loaders: dict[str, BytesLoader] = {}
_file_loaders: dict[str, FileLoader] = {}
_describers: dict[str, Describer] = {}
# The Python module whose import registers a kind's loader, a suffix's, or the exporter.
_kind_providers: dict[str, str] = {}
_suffix_providers: dict[str, str] = {}
_exporter_provider: list[str] = []
_lock = threading.Lock()
_exporter: list[Callable[..., str]] = []


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


def register_describer(kind: str) -> Callable[[_F], _F]:
    """Register the function that lists the functions in a payload of ``kind``, for ``inspect``.

    It gets the payload as exported and returns one dict per function (``name``, and where it
    knows them ``signature``, ``grid``, ...). It must not build the module or run its code: it
    reads a file someone may have sent. A payload it cannot read is a ``FormatError``.
    """

    def decorate(fn: _F) -> _F:
        with _lock:
            _describers[kind] = fn
        return fn

    return decorate


def lookup_describer(kind: str) -> Describer | None:
    """Return the describer registered for ``kind`` (importing its provider), or None."""
    return _lookup(_describers, _kind_providers, kind)


def register_exporter(fn: Callable[..., str]) -> Callable[..., str]:
    """Install the function behind ``Module.export_library`` (the compile side provides it)."""
    with _lock:
        _exporter[:] = [fn]
    return fn


def lookup_exporter() -> Callable[..., str] | None:
    """Return the installed exporter, importing its provider if needed, or None."""
    if not _exporter and _exporter_provider:
        import_compile_side(_exporter_provider[0], "export_library")
    return _exporter[0] if _exporter else None


def register_provider(
    module_name: str, *, kinds: tuple[str, ...] = (), suffixes: tuple[str, ...] = (), exporter: bool = False
) -> None:
    """Name the Python module whose import registers loaders for ``kinds`` and ``suffixes``.

    The module is imported the first time one of them is asked for and not yet registered
    (``exporter=True``: the first ``export_library``). Plugins use this to stay cheap to import.
    """
    with _lock:
        _kind_providers.update(dict.fromkeys(kinds, module_name))
        _suffix_providers.update(dict.fromkeys((_normalize_suffix(s) for s in suffixes), module_name))
        if exporter:
            _exporter_provider[:] = [module_name]


def lookup_loader(kind: str) -> BytesLoader | None:
    """Return the loader registered for ``kind`` (importing its provider), or None."""
    return _lookup(_loaders, _kind_providers, kind)


def loader_kinds() -> tuple[str, ...]:
    """The kinds that have a loader, registered or provided."""
    return tuple(sorted({*_loaders, *_kind_providers}))


def file_loader_suffixes() -> tuple[str, ...]:
    """The file suffixes ``load_module`` understands."""
    return tuple(sorted({*_file_loaders, *_suffix_providers}))


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
    loader = _lookup(_file_loaders, _suffix_providers, suffix)
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


def import_compile_side(module_name: str, what: str) -> Any:
    """Import a module of ``kernpack.driver``, or say what to install when the compiler is missing.

    Parameters
    ----------
    module_name : str
        The driver module, ``kernpack.driver.build`` for example.
    what : str
        What the caller asked for (``kernpack.build``, ``a .ll file``), for the message.

    Raises
    ------
    CompilerNotInstalledError
        If the driver (a runtime-only install) or llvmlite is not installed.
    """
    # Asked before importing: the driver imports llvmlite lazily, so a missing one would only
    # show deep inside the first compile. find_spec looks without importing.
    if importlib.util.find_spec("kernpack.driver") is None:
        fix = (
            "this is a runtime-only install (kernpack-runtime), which loads and runs exported "
            "libraries; for the compiler, 'pip uninstall kernpack-runtime && pip install kernpack'"
        )
    elif importlib.util.find_spec("llvmlite") is None:
        fix = "llvmlite is not installed (was kernpack installed with --no-deps?): 'pip install llvmlite'"
    else:
        return importlib.import_module(module_name)
    raise CompilerNotInstalledError(f"{what} needs kernpack's compiler: {fix}")


def _lookup(table: dict[str, _F], providers: dict[str, str], key: str) -> _F | None:
    fn = table.get(key)
    if fn is None and key in providers:
        import_compile_side(providers[key], f"a {key} file" if key.startswith(".") else f"a module of kind {key!r}")
        fn = table.get(key)
    return fn


def _normalize_suffix(suffix: str) -> str:
    suffix = suffix.lower()
    return suffix if suffix.startswith(".") else "." + suffix
