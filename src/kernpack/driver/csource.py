r"""Kind ``c`` (BINARY_SERIALIZABLE | DSO_EXPORTABLE): C or C++ source and the names it defines.

Source is not runnable: it becomes code only when the compiler builds it into the exported
library (C++ as C++: written as a ``.cc`` file, which the compiler driver compiles as C++, and
linked with the C++ runtime). It is serializable so that a module tree holding it
round-trips through bytes.

Byte layout of ``save_to_bytes()`` (all integers little-endian)::

    b"KPCSRC\\0\\1"          magic and version (8 bytes)
    u32  header_length
    header                  UTF-8 JSON: {"functions": [...], "signatures": [...], "language": "c" | "c++"}
    code                    UTF-8 C source, to the end
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import struct
from collections.abc import Iterable, Mapping

from ..errors import ArgumentError, FormatError
from ..runtime.module import Module, ModulePropertyMask
from ..runtime.registry import register_file_loader, register_loader
from ..runtime.signature import Signature
from .util import atomic_write

__all__ = ["CSourceModule", "c_source_module"]

_MAGIC = b"KPCSRC\x00\x01"
#: The file suffix each language is written with (what the compiler driver goes by).
SUFFIXES = {"c": "c", "c++": "cc"}
_CXX_SUFFIXES = (".cc", ".cpp", ".cxx")


class CSourceModule(Module):
    """C source code plus the names of the functions it defines. Create with :func:`c_source_module`."""

    kind = "c"
    property_mask = ModulePropertyMask.BINARY_SERIALIZABLE | ModulePropertyMask.DSO_EXPORTABLE

    def __init__(
        self, code: str, function_names: Iterable[str], signatures: Mapping[str, Signature], language: str = "c"
    ) -> None:
        super().__init__()
        self.code = code
        self.language = language
        self._names = tuple(function_names)
        self._signatures = dict(signatures)

    @property
    def dso_format(self) -> str:  # type: ignore[override]
        """``"c"`` or ``"cc"``: the suffix export writes the source with."""
        return SUFFIXES[self.language]

    def _own_function_names(self) -> tuple[str, ...]:
        return self._names

    @property
    def signatures(self) -> dict[str, Signature]:
        """The C prototypes given for the functions (those the exported library can call)."""
        return dict(self._signatures)

    def _not_runnable_hint(self) -> str:
        return "C source runs once compiled: export it with export_library() and load the .so with load_module()"

    def _inspect_source(self, fmt: str | None) -> str:
        if fmt not in (None, self.dso_format):
            raise self.unsupported(f"inspect_source(fmt={fmt!r})", f"the source is shown as {self.dso_format!r}")
        return self.code

    def _save_to_bytes(self) -> bytes:
        header = json.dumps(
            {
                "functions": list(self._names),
                "signatures": [str(s) for s in self._signatures.values()],
                "language": self.language,
            },
            sort_keys=True,
        ).encode()
        return _MAGIC + struct.pack("<I", len(header)) + header + self.code.encode()

    def _write_to_file(self, path: str, fmt: str | None) -> None:
        fmt = (fmt or os.path.splitext(path)[1] or f".{self.dso_format}").lstrip(".")
        if fmt != self.dso_format:
            raise self.unsupported(f"write_to_file(fmt={fmt!r})", f"this source is written as {self.dso_format!r}")
        atomic_write(path, self.code)

    def __repr__(self) -> str:
        language = "" if self.language == "c" else ", language='c++'"
        return f"Module[c](functions={list(self._names)}{language})"


def c_source_module(
    code: str,
    function_names: Iterable[str],
    *,
    signatures: Iterable[str | Signature] = (),
    language: str = "c",
) -> CSourceModule:
    """Wrap C (or C++) source as a module to export.

    Parameters
    ----------
    code : str
        Source defining the functions (in C++, declared ``extern "C"``: the library exports
        them by their plain names).
    function_names : iterable of str
        The names of the functions it defines and exports.
    signatures : iterable of str or Signature, optional
        C prototypes of those functions, so that the exported library can call them from
        Python without a header, e.g. ``["void scale(float *x, float a, int64_t n)"]``.
    language : {"c", "c++"}
        The source's language: C++ is compiled as C++ and linked with its runtime library.

    Returns
    -------
    CSourceModule
        A module of kind ``c``, mask BINARY_SERIALIZABLE | DSO_EXPORTABLE: not runnable until
        exported and loaded.
    """
    if not isinstance(code, str):
        raise TypeError(f"c_source_module() takes C source as str, not {type(code).__name__}")
    if language not in SUFFIXES:
        raise ValueError(f"language {language!r} is not one of {', '.join(map(repr, SUFFIXES))}")
    names = [function_names] if isinstance(function_names, str) else list(function_names)
    sigs = {}
    for item in signatures:
        sig = item if isinstance(item, Signature) else Signature.parse(item)
        if sig.name not in names:
            raise ValueError(f"signature {sig} names a function not in function_names {names}")
        sigs[sig.name] = sig
    return CSourceModule(code, names, sigs, language)


@register_loader("c")
def _load_bytes(data: bytes | memoryview) -> CSourceModule:
    data = bytes(data)
    if not data.startswith(_MAGIC) or len(data) < len(_MAGIC) + 4:
        raise FormatError("not a serialized kernpack C source module (bad magic or version)")
    (length,) = struct.unpack_from("<I", data, len(_MAGIC))
    start = len(_MAGIC) + 4
    if start + length > len(data):
        raise FormatError(f"C source module header claims {length} bytes, only {len(data) - start} remain")
    try:
        header = json.loads(data[start : start + length])
        code = data[start + length :].decode()
        return c_source_module(
            code, header["functions"], signatures=header.get("signatures", ()), language=header.get("language", "c")
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise FormatError(f"corrupt C source module: {exc}") from None


@register_file_loader(".c")
def _load_file(path: str) -> CSourceModule:
    """Load a ``.c`` (or C++) file: its exported functions are the non-static file-scope definitions.

    Definitions whose prototype kernpack can read also get a signature, so the exported
    library can call them from Python.
    """
    with open(path, encoding="utf-8") as f:
        code = f.read()
    names: list[str] = []
    signatures: list[Signature] = []
    for match in _DEFINITION.finditer(code):
        names.append(match["name"])
        # A prototype kernpack cannot read is callable from C only (or with an explicit signature).
        with contextlib.suppress(ArgumentError):
            signatures.append(Signature.parse(match["proto"]))
    language = "c++" if path.endswith(_CXX_SUFFIXES) else "c"
    return c_source_module(code, dict.fromkeys(names), signatures=signatures, language=language)


for _suffix in _CXX_SUFFIXES:
    register_file_loader(_suffix)(_load_file)


# A file-scope function definition that is not static: "<type> name(<params>) {". A heuristic
# for well-formatted source, not a C parser.
_DEFINITION = re.compile(
    r'^(?:extern\s+"C"\s+)?(?P<proto>(?!\s*(?:static|typedef|return)\b)[A-Za-z_][\w\s\*]*?\b(?P<name>[A-Za-z_]\w*)'
    r"\s*\([^;{)]*\))\s*\{",
    re.M,
)
