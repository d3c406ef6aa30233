"""The runtime module: a node of a module tree that declares what it can do.

A :class:`Module` has a ``kind`` and a :class:`ModulePropertyMask`. The mask is a promise, and
this base class keeps it in both directions:

* an operation the mask does not grant raises :class:`UnsupportedOperationError` at once,
  before any subclass code runs (``Module[llvm] does not support save_to_bytes``);
* a subclass that grants a bit must implement the hook behind it, or defining the class fails
  (TVM's default mask of 0 silently broke export for every backend someone forgot to update).

Subclasses implement the underscore hooks: ``_get_own_function`` and ``_own_function_names`` for
RUNNABLE, ``_save_to_bytes`` for BINARY_SERIALIZABLE, ``_write_to_file`` for DSO_EXPORTABLE.
"""

from __future__ import annotations

import enum
import itertools
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar, TypeVar

from ..errors import FunctionNotFoundError, ImportCycleError, ModuleKindNotFoundError, UnsupportedOperationError
from .registry import lookup_exporter
from .signature import Signature

__all__ = ["Module", "ModulePropertyMask"]


_M = TypeVar("_M", bound="Module")


class ModulePropertyMask(enum.IntFlag):
    """What a module kind can do.

    BINARY_SERIALIZABLE
        ``save_to_bytes()`` works and a loader is registered for the kind, so export can pack
        the module into the library's blob and ``load_module`` can rebuild it.
    RUNNABLE
        ``get_function(name)`` returns something callable right now.
    DSO_EXPORTABLE
        ``write_to_file()`` produces an object or source file that a C toolchain links into a
        shared library.
    """

    BINARY_SERIALIZABLE = 0b001
    RUNNABLE = 0b010
    DSO_EXPORTABLE = 0b100


def mask_name(mask: ModulePropertyMask) -> str:
    """Spell a mask by its bit names, e.g. ``RUNNABLE|DSO_EXPORTABLE`` (``0`` when empty)."""
    names = [bit.name for bit in ModulePropertyMask if bit in mask and bit.name]
    return "|".join(names) or "0"


# The hook a subclass must override for each bit it claims.
_HOOKS = {
    ModulePropertyMask.BINARY_SERIALIZABLE: ("_save_to_bytes",),
    ModulePropertyMask.RUNNABLE: ("_get_own_function",),
    ModulePropertyMask.DSO_EXPORTABLE: ("_write_to_file",),
}


class Module:
    """A runtime module: code or data of one kind, with the modules it imports.

    Subclasses set the class attributes ``kind`` and ``property_mask`` and implement the
    operations their mask promises. Function lookup searches this module first, then its
    imports depth-first in import order.

    Attributes
    ----------
    kind : str
        The module's kind, e.g. ``"llvm"``; serialized modules are reloaded by the loader
        registered for it.
    property_mask : ModulePropertyMask
        What the kind can do.
    """

    kind: ClassVar[str] = ""
    property_mask: ClassVar[ModulePropertyMask] = ModulePropertyMask(0)
    #: The format ``export_library`` asks a DSO-exportable kind to write: an object file
    #: (``"o"``) or a source the C compiler builds (``"c"``).
    dso_format: ClassVar[str] = "o"
    #: For a kind that cannot be exported: why, and what to export instead (``export_library``
    #: says it when it refuses such a module; None gives a general advice).
    export_refusal: ClassVar[str | None] = None

    @property
    def cpu_requirement(self) -> str | None:
        """What CPU the machine code a DSO-exportable module writes needs (``runtime.cpufeatures``); None: any."""
        return None

    @property
    def target_arch(self) -> str | None:
        """The architecture of the machine code a DSO-exportable module writes; None: the C compiler's."""
        return None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        mask = ModulePropertyMask(cls.property_mask)
        for bit, hooks in _HOOKS.items():
            for hook in hooks:
                if bit in mask and getattr(cls, hook) is getattr(Module, hook):
                    raise TypeError(
                        f"{cls.__qualname__} claims {bit.name} but does not implement {hook}(); "
                        "implement it or drop the bit from property_mask"
                    )

    def __init__(self) -> None:
        self._imports: list[Module] = []

    # ----------------------------------------------------------------- properties
    @property
    def is_binary_serializable(self) -> bool:
        """True if ``save_to_bytes()`` works and the kind has a loader."""
        return ModulePropertyMask.BINARY_SERIALIZABLE in self.property_mask

    @property
    def is_runnable(self) -> bool:
        """True if ``get_function()`` returns callables."""
        return ModulePropertyMask.RUNNABLE in self.property_mask

    @property
    def is_dso_exportable(self) -> bool:
        """True if ``write_to_file()`` produces something a C toolchain links."""
        return ModulePropertyMask.DSO_EXPORTABLE in self.property_mask

    # ----------------------------------------------------------------- import tree
    @property
    def imports(self) -> tuple[Module, ...]:
        """The modules this one imports, in import order."""
        return tuple(self._imports)

    def import_module(self, module: Module) -> None:
        """Import ``module``: its functions become reachable from this module's lookups.

        Parameters
        ----------
        module : Module
            The module to import. Importing the same module twice is a no-op.

        Raises
        ------
        ImportCycleError
            If ``module`` is this module or already imports it, directly or indirectly.
        """
        if not isinstance(module, Module):
            raise TypeError(f"import_module() expects a kernpack Module, not {type(module).__name__}")
        if any(m is module for m in self._imports):
            return
        path = _find_path(module, self)
        if path is not None:
            chain = " -> ".join(f"{m.kind}" for m in (self, *path))
            raise ImportCycleError(
                f"{self!r} cannot import {module!r}: it would make the import tree cyclic "
                f"({chain}); a module tree must be a DAG"
            )
        self._imports.append(module)

    def walk(self) -> Iterator[tuple[str, Module]]:
        """Yield ``(path, module)`` for this module and every module it imports, depth-first.

        The path spells the route from this module, e.g.
        ``root(llvm) -> imports[1](pipeline) -> imports[0](python)``. A module reached twice
        is yielded once, at its first path.
        """
        seen: set[int] = set()
        stack: list[tuple[str, Module]] = [(f"root({self.kind})", self)]
        while stack:
            path, mod = stack.pop()
            if id(mod) in seen:
                continue
            seen.add(id(mod))
            yield path, mod
            for i in reversed(range(len(mod._imports))):
                child = mod._imports[i]
                stack.append((f"{path} -> imports[{i}]({child.kind})", child))

    # ----------------------------------------------------------------- functions
    def get_function(self, name: str, query_imports: bool = True) -> Callable[..., Any]:
        """Return the function ``name``, searching this module, then its imports depth-first.

        Parameters
        ----------
        name : str
            The function's name.
        query_imports : bool, default True
            Also search the imported modules.

        Returns
        -------
        callable
            The function, ready to call.

        Raises
        ------
        FunctionNotFoundError
            If no searched module defines ``name``; the message lists the names that exist.
        UnsupportedOperationError
            If the module that defines ``name`` is not runnable (for example C source, which
            must be exported and loaded first).
        """
        for mod in self._search_order(query_imports):
            if mod.is_runnable:
                fn = mod._get_own_function(name)
                if fn is not None:
                    return fn
            elif mod.implements_function(name):
                raise UnsupportedOperationError(
                    f"function {name!r} is defined by {mod!r}, which is not runnable "
                    f"(mask {mask_name(mod.property_mask)}); {mod._not_runnable_hint()}"
                )
        available = self.tree_function_names() if query_imports else sorted(self.function_names())
        where = "this module or its imports" if query_imports else "this module"
        hints = [hint for mod in self._search_order(query_imports) if (hint := mod._missing_hint(name))]
        raise FunctionNotFoundError(
            f"no function {name!r} in {where} ({self!r}); defined: "
            + (", ".join(available) if available else "none")
            + "".join(f"; {hint}" for hint in hints[:1]),
            name=name,
            available=tuple(available),
        )

    def __getitem__(self, name: str) -> Callable[..., Any]:
        return self.get_function(name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.implements_function(name, query_imports=True)

    def implements_function(self, name: str, query_imports: bool = False) -> bool:
        """Return True if this module (or, with ``query_imports``, its tree) defines ``name``.

        Unlike ``get_function``, this also answers for modules that are not runnable.
        """
        return any(name in m.function_names() for m in self._search_order(query_imports))

    @property
    def signatures(self) -> dict[str, Signature]:
        """The known signature of each of this module's functions, by name (may be partial).

        ``export_library`` writes them into the library's function table and header, so the
        loaded library is callable without one.
        """
        return {}

    def device_module(self, kind: str) -> Module:
        """The module of kind ``kind`` (``"opencl"``, ``"vulkan"``, ``"cuda"``) in this tree.

        A host built with ``devices=`` imports one module per device: this finds it by kind,
        whatever the order of the imports (this module itself, then its imports depth-first).

        Raises
        ------
        ModuleKindNotFoundError
            If no module in the tree has that kind; the message lists the kinds there are.
        """
        kinds = []
        for _, module in self.walk():
            if module.kind == kind:
                return module
            kinds.append(module.kind)
        raise ModuleKindNotFoundError(
            f"{self!r} has no {kind!r} module in its tree (kinds: {', '.join(dict.fromkeys(kinds))}); "
            f"build it with devices=[{kind!r}]"
        )

    def tree_function_names(self) -> list[str]:
        """Every function name this module and its imports define, sorted."""
        return sorted({n for _, m in self.walk() for n in m.function_names()})

    def _search_order(self, query_imports: bool) -> Iterator[Module]:
        yield self
        if query_imports:
            for _, mod in itertools.islice(self.walk(), 1, None):
                yield mod

    def function_names(self) -> tuple[str, ...]:
        """The names of the functions this module itself defines (not its imports)."""
        return self._own_function_names()

    # ----------------------------------------------------------------- serialization
    def inspect_source(self, fmt: str | None = None) -> str:
        """Return the module's source in a readable form (LLVM IR, C, PTX, ...).

        Parameters
        ----------
        fmt : str, optional
            The form wanted, e.g. ``"ll"`` or ``"s"`` for an LLVM module; the kind's default
            when omitted.
        """
        return self._inspect_source(fmt)

    def save_to_bytes(self) -> bytes:
        """Serialize the module; the kind's registered loader rebuilds it from the bytes.

        Raises
        ------
        UnsupportedOperationError
            If the module is not BINARY_SERIALIZABLE.
        """
        self._require(ModulePropertyMask.BINARY_SERIALIZABLE, "save_to_bytes")
        return self._save_to_bytes()

    def write_to_file(self, path: str | os.PathLike[str], fmt: str | None = None) -> None:
        """Write the module as a file a C toolchain can link (object file, C source, ...).

        Parameters
        ----------
        path : str or os.PathLike
            The output file; written atomically (a failed write leaves no file behind).
        fmt : str, optional
            The format; taken from the suffix of ``path`` when omitted.

        Raises
        ------
        UnsupportedOperationError
            If the module is not DSO_EXPORTABLE, or ``fmt`` is not one the kind writes.
        """
        self._require(ModulePropertyMask.DSO_EXPORTABLE, "write_to_file")
        self._write_to_file(os.fspath(path), fmt)

    def export_library(
        self,
        path: str | os.PathLike[str],
        *,
        cc: str | None = None,
        options: Sequence[str] = (),
        workspace: str | os.PathLike[str] | None = None,
    ) -> str:
        """Export this module and everything it imports as one shared library.

        DSO-exportable modules are linked as code into the library; every other module is
        packed, serialized, into a read-only section of it. ``kernpack.load_module(path)``
        rebuilds the tree.

        Parameters
        ----------
        path : str or os.PathLike
            The library to write (``.so``). A C header declaring the host functions is written
            beside it (``.h``).
        cc : str, optional
            The C compiler and linker; ``$CC``, else ``cc``.
        options : sequence of str
            Extra arguments for the compiler/linker command.
        workspace : str or os.PathLike, optional
            Directory for the intermediate files, kept afterwards; a temporary one, removed
            afterwards, by default.

        Returns
        -------
        str
            The library's absolute path.

        Raises
        ------
        ExportError
            Before any work, if a module could not be exported and loaded back: the message
            names its kind, mask and path from the root.
        LinkError
            If the C compiler fails: it carries the command, exit code and stderr. Nothing is
            left at ``path`` (an existing file is untouched).
        """
        exporter = lookup_exporter()
        if exporter is None:
            raise self.unsupported("export_library", "exporting needs the compile side: import kernpack (llvmlite)")
        return exporter(self, path, cc=cc, options=options, workspace=workspace)

    # ----------------------------------------------------------------- lifetime
    def close(self) -> None:
        """Release the native resources of this module and of every module it imports.

        A loaded library is unmapped, a JIT engine freed, device programs and pipelines
        destroyed, once nothing else holds them: a function or payload view obtained earlier
        keeps what it needs alive until it is dropped. Using a closed module raises
        :class:`UnsupportedOperationError`; closing twice does nothing. Modules are also
        released when they are garbage-collected; ``close()``, or leaving a ``with`` block
        (``with kernpack.load_module("lib.so") as lib: ...``), makes it prompt.
        """
        for _, module in self.walk():
            module._close()

    def __enter__(self: _M) -> _M:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- hooks
    def _close(self) -> None:
        """Release this module's own native resources (kinds that hold some override this)."""

    def _get_own_function(self, name: str) -> Callable[..., Any] | None:
        """Return this module's own function ``name``, or None (RUNNABLE kinds)."""
        raise NotImplementedError

    def _own_function_names(self) -> tuple[str, ...]:
        return ()

    def _inspect_source(self, fmt: str | None) -> str:
        raise self.unsupported("inspect_source")

    def _save_to_bytes(self) -> bytes:
        raise NotImplementedError

    def _write_to_file(self, path: str, fmt: str | None) -> None:
        raise NotImplementedError

    def _missing_hint(self, name: str) -> str:
        """Advice when ``name`` was not found although this module may know of it, or ""."""
        return ""

    def _not_runnable_hint(self) -> str:
        return "build a runnable module from it first"

    # ----------------------------------------------------------------- helpers
    def unsupported(self, operation: str, hint: str = "") -> UnsupportedOperationError:
        """Build the error for an operation this module's kind cannot do."""
        message = f"Module[{self.kind}] does not support {operation} (mask {mask_name(self.property_mask)})"
        return UnsupportedOperationError(f"{message}; {hint}" if hint else message)

    def _require(self, bit: ModulePropertyMask, operation: str) -> None:
        if bit not in self.property_mask:
            raise self.unsupported(operation)

    def __repr__(self) -> str:
        names = list(self.function_names())
        shown = repr(names[:4])[:-1] + (", ...]" if len(names) > 4 else "]")
        return f"Module[{self.kind}](functions={shown})"


def _find_path(start: Module, target: Module) -> list[Module] | None:
    """Return the modules on an import path from ``start`` to ``target`` (inclusive), or None."""
    stack: list[tuple[Module, list[Module]]] = [(start, [start])]
    seen: set[int] = set()
    while stack:
        mod, path = stack.pop()
        if mod is target:
            return path
        if id(mod) in seen:
            continue
        seen.add(id(mod))
        stack.extend((child, [*path, child]) for child in mod._imports)
    return None
