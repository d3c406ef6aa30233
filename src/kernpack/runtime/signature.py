"""Function signatures: what a native function takes and returns, written as a C prototype.

A :class:`Signature` is the contract between Python callers and native code. It is written and
read as a C prototype, because that is what people already know and what the exported header
declares::

    void vadd(const float *a, const float *b, float *out, int64_t n)

Pointer parameters take C-contiguous arrays of the pointee's dtype (``void *`` takes any dtype);
``const`` marks an input, so a read-only array is accepted there and refused elsewhere. Scalar
parameters take Python or numpy scalars.

kernpack adds one spelling to C: an array parameter with its rank, ``const float x[:, :]``. In
machine code it is a pointer followed by one ``int64_t`` extent per dimension
(``const float *x, int64_t x_shape0, int64_t x_shape1``); callers pass just the array and the
extents go along with it. Kernels are compiled with this convention, so a kernel loaded from a
library is called exactly like the kernel object it was built from.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ArgumentError
from .abi import SCALARS
from .aggregates import struct_dtype, vector_dtype

__all__ = ["SCALAR_TYPES", "Param", "Signature"]

#: Scalar C types a signature may use, with the numpy dtype an array of them has.
SCALAR_TYPES: dict[str, np.dtype] = {name: scalar.dtype for name, scalar in SCALARS.items()}

# Spellings people write in prototypes, folded to the fixed-width names above. The sizes are
# those of every LP64 platform kernpack targets (Linux x86-64 and aarch64).
_ALIASES = {
    "_Bool": "bool",
    "char": "int8_t",
    "signed char": "int8_t",
    "unsigned char": "uint8_t",
    "short": "int16_t",
    "unsigned short": "uint16_t",
    "int": "int32_t",
    "signed": "int32_t",
    "unsigned": "uint32_t",
    "unsigned int": "uint32_t",
    "long": "int64_t",
    "long long": "int64_t",
    "unsigned long": "uint64_t",
    "unsigned long long": "uint64_t",
    "size_t": "uint64_t",
    "ssize_t": "int64_t",
    "ptrdiff_t": "int64_t",
    "intptr_t": "int64_t",
    "uintptr_t": "uint64_t",
}

_DTYPE_TO_CTYPE = {dt: name for name, dt in SCALAR_TYPES.items()}

_PROTOTYPE = re.compile(r"^\s*(?P<ret>[A-Za-z_][\w\s]*?)\s*(?P<name>[A-Za-z_]\w*)\s*\((?P<params>.*)\)\s*;?\s*$", re.S)
_IDENT = re.compile(r"[A-Za-z_]\w*$")
_PARAM_SEPARATOR = re.compile(r",(?![^\[]*\])")  # commas inside "[:, :]" belong to an array parameter


@dataclass(frozen=True)
class Param:
    """One parameter of a :class:`Signature`.

    Attributes
    ----------
    name : str
        The parameter's name, used in error messages and keyword-free calls.
    ctype : str
        The scalar C type (a key of :data:`SCALAR_TYPES`), or ``"void"`` for an untyped pointer.
    pointer : bool
        True for an array parameter.
    const : bool
        For a pointer: the function only reads through it (an input).
    ndim : int
        For an array parameter written ``T name[:, ...]``: its rank, whose extents are passed
        after the pointer. 0 for a plain pointer or a scalar.
    layout : numpy.dtype or None
        For a vector or struct passed by value (``float4 v``, ``struct params p``; device
        kernels only): its memory layout, ``ctype`` then being the type's name.
    """

    name: str
    ctype: str
    pointer: bool = False
    const: bool = False
    ndim: int = 0
    layout: np.dtype | None = None

    @property
    def dtype(self) -> np.dtype | None:
        """The numpy dtype of the scalar or of the array's elements (None for ``void *``)."""
        return SCALAR_TYPES.get(self.ctype)

    @property
    def is_output(self) -> bool:
        """True for a pointer the function may write through."""
        return self.pointer and not self.const

    @property
    def cffi_types(self) -> tuple[str, ...]:
        """The C types cffi passes: every pointer as ``void *``, then one ``int64_t`` per extent."""
        if self.pointer:
            return ("void *", *("int64_t",) * self.ndim)
        if self.layout is not None:
            raise ArgumentError(
                f"parameter {self}: vectors and structs by value are for OpenCL and Vulkan kernels; "
                "a CPU function takes a pointer to one"
            )
        return ("_Bool" if self.ctype == "bool" else self.ctype,)

    def c_declaration(self) -> str:
        """The parameter in plain C, extents spelled out (for headers)."""
        if self.ndim:
            extents = "".join(f", int64_t {self.name}_shape{d}" for d in range(self.ndim))
            return f"{'const ' if self.const else ''}{self.ctype} *{self.name}{extents}"
        return str(self)

    def __str__(self) -> str:
        if self.ndim:
            return f"{'const ' if self.const else ''}{self.ctype} {self.name}[{', '.join(':' * self.ndim)}]"
        if self.pointer:
            return f"{'const ' if self.const else ''}{self.ctype} *{self.name}"
        return f"{self.ctype} {self.name}"


@dataclass(frozen=True)
class Signature:
    """The signature of a native function.

    Parameters
    ----------
    name : str
        The function's symbol name.
    params : tuple of Param
        Its parameters, in order.
    restype : str
        ``"void"`` or a scalar C type.

    Examples
    --------
    >>> sig = Signature.parse("void vadd(const float *a, const float *b, float *c, int64_t n)")
    >>> [p.name for p in sig.params if p.is_output]
    ['c']
    >>> str(sig)
    'void vadd(const float *a, const float *b, float *c, int64_t n)'
    """

    name: str
    params: tuple[Param, ...]
    restype: str = "void"

    @staticmethod
    def parse(prototype: str, types: Mapping[str, Sequence[Sequence[str]]] | None = None) -> Signature:
        """Read a C prototype such as ``"double dot(const double *x, int64_t n)"``.

        Parameters
        ----------
        prototype : str
            The prototype.
        types : mapping, optional
            Structs that parameters may take by value, by name, each a list of ``[member,
            type]`` (``{"params": [["scale", "float"], ["n", "int"]]}``): a parameter
            ``struct params p`` (or ``params p``). OpenCL vector types (``float4``,
            ``uint2``) need no declaration.

        Raises
        ------
        ArgumentError
            If the text is not a prototype of the supported types (fixed-width integers, the
            usual C integer spellings, ``bool``, ``float``, ``double``, one level of pointer,
            vectors and declared structs by value).
        """
        frozen = None if not types else tuple((k, tuple(tuple(f) for f in v)) for k, v in types.items())
        return _parse_prototype(prototype, frozen)

    @classmethod
    def _parse(cls, prototype: str, types: tuple[tuple[str, tuple[tuple[str, ...], ...]], ...] | None) -> Signature:
        match = _PROTOTYPE.match(prototype)
        if match is None:
            raise ArgumentError(
                f"cannot read {prototype!r} as a C prototype; write it like "
                "'void vadd(const float *a, const float *b, float *c, int64_t n)'"
            )
        restype = _scalar_ctype(match["ret"], prototype, allow_void=True)
        body = match["params"].strip()
        params: list[Param] = []
        if body and body != "void":
            structs = _structs(types, prototype)
            for index, text in enumerate(_PARAM_SEPARATOR.split(body)):
                params.append(_parse_param(text, index, prototype, structs))
        names = [p.name for p in params]
        if len(set(names)) != len(names):
            raise ArgumentError(f"prototype {prototype!r} repeats a parameter name")
        return cls(match["name"], tuple(params), restype)

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        """The arguments of a call with keywords, in parameter order, as Python binds them.

        Raises
        ------
        ArgumentError
            For a keyword that names no parameter or one given by position too, and for a
            parameter left without a value; the message names it and gives the signature.
        """
        names = [p.name for p in self.params]
        if len(args) > len(names):
            raise ArgumentError(
                f"{self.name}() takes {len(names)} argument{'s' * (len(names) != 1)} but {len(args)} "
                f"were given; signature: {self}"
            )
        bound = dict(zip(names, args, strict=False))
        for key, value in kwargs.items():
            if key not in names:
                raise ArgumentError(
                    f"{self.name}() has no parameter {key!r}; its parameters: {', '.join(names)} (signature: {self})"
                )
            if key in bound:
                raise ArgumentError(f"{self.name}() got {key!r} by position and by keyword; signature: {self}")
            bound[key] = value
        missing = [n for n in names if n not in bound]
        if missing:
            raise ArgumentError(f"{self.name}() is missing {', '.join(repr(n) for n in missing)}; signature: {self}")
        return tuple(bound[n] for n in names)

    @property
    def cffi_type(self) -> str:
        """The C function-pointer type cffi casts the function's address to."""
        ret = "_Bool" if self.restype == "bool" else self.restype
        args = ", ".join(t for p in self.params for t in p.cffi_types) or "void"
        return f"{ret}(*)({args})"

    def c_prototype(self) -> str:
        """The prototype in plain C, array extents spelled out (what a header declares)."""
        args = ", ".join(p.c_declaration() for p in self.params) or "void"
        return f"{self.restype} {self.name}({args})"

    def __str__(self) -> str:
        args = ", ".join(str(p) for p in self.params) or "void"
        return f"{self.restype} {self.name}({args})"


# Signatures are immutable, and a library repeats its prototypes (the same kernel for each device
# kind, every reload of a library in a notebook): each text is read once. Errors are not cached.
_parse_prototype = functools.lru_cache(maxsize=4096)(Signature._parse)


def ctype_of(dtype: np.dtype) -> str:
    """Return the C type name of a numpy scalar dtype.

    Raises
    ------
    ArgumentError
        If kernpack has no C type for the dtype.
    """
    try:
        return _DTYPE_TO_CTYPE[np.dtype(dtype)]
    except (KeyError, TypeError):
        raise ArgumentError(
            f"dtype {dtype!r} has no C type in kernpack; use one of " + ", ".join(str(d) for d in _DTYPE_TO_CTYPE)
        ) from None


_QUALIFIERS = ("const", "restrict", "__restrict", "volatile")


def _type_name(words: list[str]) -> str | None:
    """Fold type words (qualifiers already removed) to a SCALAR_TYPES key, "void", or None."""
    text = " ".join(words)
    text = _ALIASES.get(text, text)
    return text if text in SCALAR_TYPES or text == "void" else None


def _scalar_ctype(text: str, prototype: str, *, allow_void: bool = False) -> str:
    ctype = _type_name([w for w in text.split() if w not in _QUALIFIERS])
    if ctype is not None and (ctype != "void" or allow_void):
        return ctype
    allowed = ", ".join([*SCALAR_TYPES, *(["void"] if allow_void else [])])
    raise ArgumentError(f"type {text.strip()!r} in prototype {prototype!r} is not supported; use one of {allowed}")


_ARRAY_SUFFIX = re.compile(r"\[\s*:(?:\s*,\s*:)*\s*\]\s*$")


# A parameter as str(Param) writes it, which is how kernpack stores every signature it exports:
# read without the general path's splitting and folding (a third of the time).
_CANONICAL_PARAM = re.compile(r"\s*(const )?(\w+) (\*)?([A-Za-z_]\w*)(\[:(?:, :)*\])?\s*$")


def _structs(types: tuple[tuple[str, tuple[tuple[str, ...], ...]], ...] | None, prototype: str) -> dict[str, np.dtype]:
    """The layouts of the structs a prototype may take by value, by name."""
    out = {}
    for name, members in types or ():
        fields = []
        for member in members:
            if len(member) != 2:
                raise ArgumentError(
                    f"struct {name!r} of {prototype!r}: write each member as [name, type], not {member}"
                )
            field, text = member
            ctype = _type_name(text.split())
            dtype = SCALAR_TYPES[ctype] if ctype in SCALAR_TYPES else vector_dtype(text.strip())
            if dtype is None:
                raise ArgumentError(
                    f"struct {name!r} of {prototype!r}: member {field!r} has type {text!r}; members are scalars "
                    f"({', '.join(SCALAR_TYPES)}) or vectors (float4, int2, ...)"
                )
            fields.append((field, dtype))
        out[name] = struct_dtype(fields)
    return out


def _aggregate(words: list[str], structs: Mapping[str, np.dtype]) -> tuple[str, np.dtype] | None:
    """(type name, layout) of a by-value vector or struct parameter's type words, or None."""
    text = " ".join(words)
    bare = text.removeprefix("struct ").strip()
    if bare in structs:
        return f"struct {bare}", structs[bare]
    layout = vector_dtype(text)
    return None if layout is None else (text, layout)


def _parse_param(text: str, index: int, prototype: str, structs: Mapping[str, np.dtype]) -> Param:
    canonical = _CANONICAL_PARAM.match(text)
    if canonical is not None:
        const, ctype, star, name, extents = canonical.groups()
        if ctype in SCALAR_TYPES and not (star and extents):
            pointer = bool(star or extents)
            return Param(name, ctype, pointer, pointer and bool(const), extents.count(":") if extents else 0)
    array = _ARRAY_SUFFIX.search(text)
    if array is not None:
        param = _parse_param(text[: array.start()], index, prototype, {})
        if param.pointer or param.ctype == "void" or param.name == f"arg{index}":
            raise ArgumentError(f"parameter {index} ({text.strip()!r}) of {prototype!r}: write arrays as 'T name[:]'")
        return Param(param.name, param.ctype, True, "const" in text[: array.start()].split(), array.group().count(":"))
    stars = text.count("*")
    if stars > 1:
        raise ArgumentError(
            f"parameter {index} ({text.strip()!r}) of {prototype!r} is a pointer to a pointer; "
            "kernpack passes only flat arrays"
        )
    # A const before the '*' qualifies the pointee: that is what makes the array an input.
    before, _, after = text.partition("*")
    const = stars == 1 and "const" in before.split()
    words = [w for w in (before + " " + after).split() if w not in _QUALIFIERS]
    name = f"arg{index}"
    ctype = _type_name(words)
    if ctype is None and len(words) > 1 and _IDENT.match(words[-1]):
        name, ctype = words[-1], _type_name(words[:-1])
        aggregate = _aggregate(words[:-1], structs) if ctype is None and not stars else None
        if aggregate is not None:
            return Param(name, aggregate[0], layout=aggregate[1])
    if ctype is None or (ctype == "void" and not stars):
        raise ArgumentError(
            f"parameter {index} ({text.strip()!r}) of {prototype!r} has an unsupported type; "
            f"use one of {', '.join(SCALAR_TYPES)} or a pointer to one (void * for any dtype)"
        )
    return Param(name, ctype, pointer=bool(stars), const=const)
