"""Exceptions raised by kernpack.

Every error kernpack raises on bad input is a :class:`KernpackError`. The classes are few on
purpose: a caller catches the root, or the one subclass that matches what it was doing
(compiling, linking, loading, calling). All of them pickle, so they cross process pools intact.

Pickling works because every class keeps its message as the only positional argument and its
details as instance attributes: ``BaseException.__reduce__`` then rebuilds ``cls(message)`` and
restores ``__dict__``.
"""

from __future__ import annotations

__all__ = [
    "ArgumentError",
    "CacheWarning",
    "CompileError",
    "CompilerNotInstalledError",
    "DeviceUnavailableError",
    "ExportError",
    "FormatError",
    "FunctionNotFoundError",
    "ImportCycleError",
    "KernelIndexError",
    "KernelSyntaxError",
    "KernelTypeError",
    "KernpackError",
    "LinkError",
    "LoadError",
    "ShadowingWarning",
    "ToolError",
    "ToolWarning",
    "UnsupportedOperationError",
]


class KernpackError(Exception):
    """Root of every error kernpack raises on bad input or a failed tool."""

    def __str__(self) -> str:
        # KeyError (a base of FunctionNotFoundError) would print repr(message); every
        # kernpack error prints its message as written.
        return str(self.args[0]) if self.args else ""


class UnsupportedOperationError(KernpackError):
    """The module's kind cannot do this operation (its property mask says so)."""


class ImportCycleError(KernpackError, ValueError):
    """``import_module`` would make the import tree cyclic."""


class FunctionNotFoundError(KernpackError, KeyError):
    """No module in the searched tree defines the function.

    Attributes
    ----------
    name : str
        The name that was looked up.
    available : tuple of str
        Every function name the searched tree defines.
    """

    def __init__(self, message: str, *, name: str = "", available: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.name = name
        self.available = tuple(available)


class ModuleKindNotFoundError(KernpackError, KeyError):
    """No module of the kind asked for is in the tree (``Module.device_module``)."""


class ArgumentError(KernpackError, TypeError):
    """A call received the wrong number, type, dtype or layout of arguments."""


class CompileError(KernpackError):
    """Source or IR could not be compiled; the message carries the compiler's own words."""


class KernelSyntaxError(CompileError):
    """A kernel uses something outside the kernel language.

    Attributes
    ----------
    filename : str
        The file that defines the kernel.
    lineno : int
        The line, counted from 1 in that file.
    col : int
        The column, counted from 0.
    """

    def __init__(self, message: str, *, filename: str = "", lineno: int = 0, col: int = 0) -> None:
        super().__init__(message)
        self.filename = filename
        self.lineno = lineno
        self.col = col


class KernelTypeError(KernelSyntaxError):
    """A kernel's expression or assignment does not type-check (same attributes)."""


class KernelIndexError(KernpackError, IndexError):
    """An index left its array (under ``k.interpret``, or in a kernel built with boundscheck)."""


class LinkError(KernpackError):
    """An external tool (the C compiler or linker) failed.

    Attributes
    ----------
    command : tuple of str
        The command line that failed, ready to paste into a shell.
    returncode : int or None
        Its exit status (None when it could not be started).
    stderr : str
        What it printed on standard error.
    """

    def __init__(
        self,
        message: str,
        *,
        command: tuple[str, ...] = (),
        returncode: int | None = None,
        stderr: str = "",
    ) -> None:
        super().__init__(message)
        self.command = tuple(command)
        self.returncode = returncode
        self.stderr = stderr


class ToolError(LinkError):
    """A tool kernpack must run (the C compiler) is missing, does not run, or is older than it supports.

    The message names the path, its version, the version needed and the variable that points
    kernpack at another (``kernpack doctor`` lists every tool it found).
    """


class LoadError(KernpackError):
    """A file or blob could not be loaded as a module."""


class FormatError(LoadError):
    """A blob or payload is malformed: bad magic, unknown version, bad length or checksum."""


class ExportError(KernpackError):
    """``export_library`` refused a module tree that it could not load back."""


class DeviceUnavailableError(KernpackError):
    """The device a module needs (driver, ICD, package) is missing on this machine."""


class CompilerNotInstalledError(KernpackError, ImportError):
    """The compile side of kernpack is not installed (a runtime-only install, ``kernpack-runtime``).

    An ``ImportError`` too, so code that builds when it can and loads otherwise can say
    ``except ImportError``.
    """


class CacheWarning(UserWarning):
    """A compile-cache tier cannot be used (unwritable, unreachable, refusing entries); builds go on without it.

    Said once per tier and process.
    """


class ToolWarning(UserWarning):
    """An optional tool (spirv-val, ptxas) is too old or broken: the check or artifact it makes is skipped."""


class ShadowingWarning(UserWarning):
    """An exported library takes the name of a Python module beside it (``import`` finds the library)."""
