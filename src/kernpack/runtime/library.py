"""Kind ``library`` (RUNNABLE only): a loaded shared library, and the tree packed inside it.

``load_module("x.so")`` opens the library, looks for the blob (see :mod:`.blob`), and rebuilds
the exported module tree: the host library becomes a :class:`LibraryModule`; every other module
becomes a :class:`LazyModule` that keeps a zero-copy view of its payload and asks its kind's
loader for the real module the first time it is used.

Lifetime: the mapped library stays open while anything from it is alive (a module of the tree,
a function, a payload view), because each of them holds the :class:`_DSO` handle. ``close()``
drops the module's own hold; the library is unmapped when the last holder goes.

cffi: symbols are looked up with the backend's ``load_library``/``load_function``, the calls
``ffi.dlopen`` makes under the hood. The public ``ffi.dlopen`` only reaches symbols declared
with ``cdef``, and parsing a ``cdef`` at run time imports pycparser (~45 ms per process).
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import FormatError, FunctionNotFoundError, LoadError, UnsupportedOperationError
from . import cpufeatures
from .abi import check_symbols, fast_symbols, print_symbols
from .blob import BLOB_END_SYMBOL, BLOB_SYMBOL, HOST_KIND, BlobIndex
from .calling import NativeFunction, ffi
from .elfcheck import check_shared_object
from .module import Module, ModulePropertyMask
from .registry import load_from_bytes, register_describer, register_file_loader
from .signature import Signature

__all__ = ["LazyModule", "LibraryModule", "load_library"]

try:
    from _cffi_backend import load_library as _dlopen
except ImportError:  # pragma: no cover - cffi always ships its backend
    _dlopen = None

_RTLD_NOW, _RTLD_LOCAL = 2, 0
# Every mask value a blob may hold (BlobIndex refuses others); the enum's constructor is slow.
_MASKS = tuple(ModulePropertyMask(m) for m in range(8))
_CHAR_P = ffi.typeof("char *")


def _address(cdata: Any) -> int:
    return int(ffi.cast("uintptr_t", cdata))


# The file each path held when this process first dlopened it by that name: (device, inode,
# size, mtime). dlopen hands back the handle it already has for a name (or for an inode), so a
# library exported again to the same path (the notebook loop) would run its old code.
_FIRST_OPENED: dict[str, tuple[int, int, int, int]] = {}
_FIRST_OPENED_LOCK = threading.Lock()


def _identity(path: str) -> tuple[int, int, int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _dlopen_fresh(path: str, first: tuple[int, int, int, int]) -> Any:
    """Open the file at ``path`` now, not the library this process opened there before.

    Through a name of its own: a hard link beside it (the same file, so the same page cache),
    or a copy when the file was rewritten in place (dlopen would match the old inode) or the
    directory is not writable. The name is removed once the library is mapped.
    """
    directory, base = os.path.split(path)
    same_inode = _identity(path)[:2] == first[:2]
    scratch = None
    try:
        if not same_inode:
            try:
                alias = os.path.join(directory, f".{base}.kernpack-{uuid.uuid4().hex}")
                os.link(path, alias)
            except OSError:
                alias = None
        if same_inode or alias is None:
            scratch = tempfile.mkdtemp(prefix="kernpack-reload-")
            alias = os.path.join(scratch, base)
            shutil.copyfile(path, alias)
        try:
            return _dlopen(alias, _RTLD_NOW | _RTLD_LOCAL)
        finally:
            os.unlink(alias)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


class _DSO:
    """Owns one dlopen handle; the library is closed when this object is collected."""

    __slots__ = ("__weakref__", "lib", "path")

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            identity = _identity(path)
            with _FIRST_OPENED_LOCK:
                first = _FIRST_OPENED.setdefault(path, identity)
            if first == identity:
                self.lib = _dlopen(path, _RTLD_NOW | _RTLD_LOCAL)
            else:  # the file changed since this process first opened it: load what is there now
                self.lib = _dlopen_fresh(path, first)
        except OSError as exc:
            raise LoadError(f"cannot load {path!r}: {exc}") from None

    def symbol(self, name: str, ctype: Any = _CHAR_P) -> Any:
        """The address of ``name`` as a cdata of ``ctype``, or None if it is not exported."""
        try:
            return self.lib.load_function(ctype, name)
        except AttributeError:
            return None

    def view(self, address: Any, size: int) -> memoryview:
        """A read-only memoryview of mapped memory that keeps this library open."""
        # ffi.gc ties the destructor (a closure over self) to the cdata; the buffer holds the
        # cdata and the memoryview holds the buffer, so any slice keeps the library mapped.
        owner = self
        anchored = ffi.gc(ffi.cast(_CHAR_P, address), lambda _p: owner)
        return memoryview(ffi.buffer(anchored, size)).toreadonly()


class _InTree:
    """What a module of a loaded tree adds: its imports are made the first time they are read.

    Such a module skips ``Module.__init__``, so ``_imports`` is missing until the tree gives it
    its list (see :class:`_Tree`); after that, this hook is no longer reached.
    """

    _tree: _Tree
    _position: int

    def __getattr__(self, name: str) -> Any:
        if name == "_imports":
            return self._tree.imports_of(self, self._position)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


class LibraryModule(_InTree, Module):
    """A loaded shared library (kind ``library``, mask RUNNABLE).

    Its functions come from the function table the exporter packed into the blob; for a library
    kernpack did not build, bind them with :meth:`bind`. It is not serializable: re-export the
    modules it was built from instead.
    """

    kind = "library"
    property_mask = ModulePropertyMask.RUNNABLE
    export_refusal = (
        "a loaded library is runnable only; export again from the modules it was built from "
        "(llvm_module, c_source_module, ...)"
    )

    def __init__(
        self,
        dso: _DSO,
        table: Callable[[], Iterable[Signature]] = tuple,
        tree: _Tree | None = None,
        position: int = 0,
    ) -> None:
        if tree is None:
            super().__init__()
        else:  # the host module of a loaded tree: its imports are made on first use
            self._tree = tree
            self._position = position
        self._dso: _DSO | None = dso
        self.path = dso.path
        # The function table is read on first use: a library with hundreds of kernels loads
        # in the time of its index, not of parsing every prototype.
        self._table = table
        self._parsed: dict[str, Signature] | None = None
        self._functions: dict[str, NativeFunction] = {}
        self._lock = threading.Lock()

    @property
    def _signatures(self) -> dict[str, Signature]:
        if self._parsed is None:
            self._parsed = {s.name: s for s in self._table()}
        return self._parsed

    @property
    def signatures(self) -> dict[str, Signature]:
        """The signature of every function the library's function table lists."""
        return dict(self._signatures)

    def _own_function_names(self) -> tuple[str, ...]:
        return tuple(self._signatures)

    def _get_own_function(self, name: str) -> NativeFunction | None:
        self._handle()  # a closed library says so, rather than "no such function"
        fn = self._functions.get(name)
        if fn is None and name in self._signatures:
            fn = self.bind(self._signatures[name])
        return fn

    def _missing_hint(self, name: str) -> str:
        if self._dso is None or self._dso.symbol(name) is None:
            return ""
        return (
            f"{os.path.basename(self.path)} exports a symbol {name!r} that its function table does not list: "
            f"bind it with .bind('<C prototype of {name}>'), or export it with a signature "
            "(c_source_module(..., signatures=...))"
        )

    def bind(self, signature: str | Signature) -> NativeFunction:
        """Return the library's function with the given C prototype.

        Parameters
        ----------
        signature : str or Signature
            E.g. ``"void twice(float *x, int64_t n)"``. kernpack cannot check it against the
            machine code: a wrong prototype is undefined behaviour, as in C.

        Raises
        ------
        FunctionNotFoundError
            If the library does not export the symbol.
        """
        sig = signature if isinstance(signature, Signature) else Signature.parse(signature)
        dso = self._handle()
        with self._lock:
            fn = self._functions.get(sig.name)
            if fn is not None and fn.signature == sig:
                return fn
            address = dso.symbol(sig.name, ffi.typeof(sig.cffi_type))
            if address is None:
                raise FunctionNotFoundError(
                    f"{self.path!r} does not export a function {sig.name!r}", name=sig.name, available=()
                )
            fn = NativeFunction(sig, _address(address), owner=dso)
            # A kernel kp.build made carries its own METH_FASTCALL entry point: use it.
            definition, table = (dso.symbol(symbol) for symbol in fast_symbols(sig.name)[1:])
            if definition is not None and table is not None:
                fn.attach_native_entry(_address(definition), _address(table))
            printer, prints = (dso.symbol(symbol) for symbol in print_symbols(sig.name))
            if printer is not None and prints is not None:  # it calls print()
                fn.attach_printer(_address(printer), _address(prints))
            record, sites = (dso.symbol(symbol) for symbol in check_symbols(sig.name))
            if record is not None and sites is not None:  # built with boundscheck
                fn.attach_bounds_check(_address(record), _address(sites))
            self._functions[sig.name] = fn
        return fn

    def _handle(self) -> _DSO:
        if self._dso is None:
            raise UnsupportedOperationError(f"{self!r} is closed; load the library again")
        return self._dso

    def _close(self) -> None:
        # Drop every hold this module has on the mapping: the handle, the bound functions and
        # the function table (a view into the blob); the library unmaps once nothing else
        # (a function or payload view the caller kept) holds it.
        with self._lock:
            self._dso = None
            self._functions.clear()
            self._table = tuple

    def __repr__(self) -> str:
        state = "closed" if self._dso is None else f"functions={list(self._signatures)}"
        return f"Module[library]({os.path.basename(self.path)!r}, {state})"


class LazyModule(_InTree, Module):
    """A module of a loaded tree, decoded by its kind's loader on first use.

    Until then it knows its kind, its mask and its payload (a view into the mapped library);
    ``save_to_bytes()`` returns the payload as it was exported, without decoding it. Each
    (kind, mask) of a loaded tree gets its own subclass (:meth:`of`), whose class attributes
    are the exported module's: the class-definition check of every mask holds for it as for
    any kind (this class implements every hook, by forwarding).
    """

    kind = "lazy"
    property_mask = (
        ModulePropertyMask.BINARY_SERIALIZABLE | ModulePropertyMask.RUNNABLE | ModulePropertyMask.DSO_EXPORTABLE
    )

    @staticmethod
    @functools.cache
    def of(kind: str, mask: int) -> type[LazyModule]:
        """The proxy class for modules of ``kind`` exported with ``mask`` (one per pair)."""
        return type(f"LazyModule[{kind}]", (LazyModule,), {"kind": kind, "property_mask": _MASKS[mask]})

    def __init__(self, tree: _Tree, position: int) -> None:
        # No Module.__init__: the imports are made on first use (see _InTree).
        self._tree = tree
        self._position = position
        self._source = f"{tree.dso.path} module {position} ({self.kind})"
        self._closed = False
        self._module: Module | None = None

    @property
    def is_decoded(self) -> bool:
        """True once the kind's loader has built the real module."""
        return self._module is not None

    def decode(self) -> Module:
        """Build (once) and return the real module from the payload."""
        if self._module is None:
            with self._tree.decode_lock:
                if self._module is None:
                    data = self._payload()
                    try:
                        module = load_from_bytes(self.kind, data)
                    except LoadError as exc:
                        raise LoadError(f"{self._source}: {exc}") from None
                    if module.kind != self.kind:
                        raise FormatError(
                            f"{self._source}: the loader for kind {self.kind!r} returned a {module.kind!r} module"
                        )
                    # The tree's imports hang off this proxy; the real module shares them so
                    # that a pipeline (say) finds the functions it calls.
                    module._imports = self._imports
                    self._module = module
        return self._module

    def __getattr__(self, name: str) -> Any:
        # Everything else the real module offers (a device module's is_available(), say) is
        # reached through the proxy, decoding on first use. Private names are not forwarded.
        if name.startswith("_"):
            return _InTree.__getattr__(self, name)
        return getattr(self.decode(), name)

    def _close(self) -> None:
        with self._tree.decode_lock:
            module, self._module = self._module, None
            self._closed = True
        if module is not None:
            module._close()

    def _payload(self) -> memoryview:
        if self._closed:
            raise UnsupportedOperationError(f"{self._source} is closed; load the library again")
        return self._tree.index.payload(self._position)

    def _get_own_function(self, name: str) -> Callable[..., Any] | None:
        return self.decode()._get_own_function(name)

    def _own_function_names(self) -> tuple[str, ...]:
        return self.decode().function_names()

    def _inspect_source(self, fmt: str | None) -> str:
        return self.decode().inspect_source(fmt)

    def _save_to_bytes(self) -> bytes:
        return bytes(self._payload())

    def _write_to_file(self, path: str, fmt: str | None) -> None:
        self.decode().write_to_file(path, fmt)

    def __repr__(self) -> str:
        return repr(self._module) if self._module is not None else f"Module[{self.kind}](not decoded)"


def load_library(path: str | os.PathLike[str]) -> Module:
    """Open a shared library and rebuild the module tree packed in it.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.so`` file.

    Returns
    -------
    Module
        The root of the exported tree: usually the host :class:`LibraryModule`, or a
        serializable root (a pipeline) that imports it. A library without a kernpack blob
        loads as a plain :class:`LibraryModule`; reach its functions with ``bind``.

    Raises
    ------
    LoadError
        If the file cannot be opened as a shared library.
    FormatError
        If its blob is corrupt or of an unknown version.
    """
    return _open(os.path.abspath(os.fspath(path)))


def _open(path: str) -> Module:
    # dlopen maps a truncated file without complaint and the process dies of SIGBUS later:
    # check the headers first (~25 us; ~70 us on a process's first load).
    check_shared_object(path)
    dso = _DSO(path)
    needs = dso.symbol(cpufeatures.SYMBOL)
    if needs is not None:
        text = ffi.string(needs).decode(errors="replace")
        lacking = cpufeatures.missing_features(text)
        if lacking:
            cpu = cpufeatures.required_features(text)[0]
            raise LoadError(
                f"cannot load {path!r}: its machine code was built for CPU {cpu} and needs {', '.join(lacking)}, "
                "which this CPU lacks; build it for a CPU this machine has (kernpack build --cpu generic, "
                "kp.build(..., cpu='x86-64-v2'))"
            )
    start = dso.symbol(BLOB_SYMBOL)
    if start is None:
        return LibraryModule(dso)
    end = dso.symbol(BLOB_END_SYMBOL)
    if end is None:
        raise FormatError(f"{path}: exports {BLOB_SYMBOL} but not {BLOB_END_SYMBOL}, so its size is unknown")
    size = end - start  # both are char *: their difference in bytes
    if size < 0:
        raise FormatError(f"{path}: {BLOB_END_SYMBOL} lies before {BLOB_SYMBOL}")
    index = BlobIndex(dso.view(start, size), source=path)
    return _build_tree(index, dso)


class _Tree:
    """The modules of a loaded blob, each made the first time something reaches it.

    Loading makes only the root: a library of hundreds of device modules loads in the time of
    its index, and a module nobody uses costs nothing. The blob guarantees that children come
    after their parents, so the tree has no cycles to guard against.
    """

    __slots__ = ("_made", "_nodes", "decode_lock", "dso", "index")

    def __init__(self, index: BlobIndex, dso: _DSO) -> None:
        self.index = index
        self.dso = dso
        self._nodes: list[Module | None] = [None] * len(index)
        self._made = threading.Lock()
        # One lock for decoding every module of the tree (decoding is rare and short), apart
        # from _made: a decode reaches the module's imports, which may make nodes.
        self.decode_lock = threading.Lock()

    def node(self, position: int) -> Module:
        """Module ``position`` of the blob (the same object every time)."""
        with self._made:
            return self._node(position)

    def _node(self, position: int) -> Module:
        module = self._nodes[position]
        if module is None:
            entry = self.index.entry(position)
            if entry.kind == HOST_KIND:
                table = functools.partial(_function_table, self.index, position)
                module = LibraryModule(self.dso, table, self, position)
            else:
                module = LazyModule.of(entry.kind, entry.mask)(self, position)
            self._nodes[position] = module
        return module

    def imports_of(self, module: Module, position: int) -> list[Module]:
        """Give ``module`` (at ``position``) its list of imports, made now, and return it."""
        with self._made:
            if "_imports" not in module.__dict__:  # another thread may have been first
                module._imports = [self._node(j) for j in self.index.imports_of(position)]
            return module._imports


def _build_tree(index: BlobIndex, dso: _DSO) -> Module:
    return _Tree(index, dso).node(0)


def _function_table(index: BlobIndex, i: int) -> list[Signature]:
    return _parse_function_table(index.payload(i), index.source)


def _parse_function_table(payload: bytes | memoryview, source: str) -> list[Signature]:
    try:
        text = bytes(payload).decode()
    except UnicodeDecodeError:
        raise FormatError(f"{source}: the host function table is not UTF-8") from None
    signatures = []
    for line in text.splitlines():
        if line.strip():
            try:
                signatures.append(Signature.parse(line))
            except Exception as exc:  # ArgumentError: a prototype this kernpack cannot read
                raise FormatError(f"{source}: bad entry in the host function table: {exc}") from None
    return signatures


@register_describer(HOST_KIND)
def _describe_host(payload: memoryview) -> list[dict[str, Any]]:
    return [{"name": s.name, "signature": str(s)} for s in _parse_function_table(payload, "library")]


register_file_loader(".so")(load_library)
