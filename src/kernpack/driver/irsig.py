"""Reading C signatures off LLVM IR.

LLVM's scalar types say exactly what a scalar parameter is. A pointer is opaque (``ptr``), so
its element type is read from how the function uses it, before optimization rewrites the
accesses as byte offsets: the element type of each ``getelementptr`` based on it, and the type
of each load, store or atomic through it (or through a pointer derived from it). One type
seen means an array of that dtype; none, or several, means ``void *`` (any dtype).

Whether the function writes through a pointer comes from LLVM's own analysis (the
``readonly`` parameter attribute that FunctionAttrs infers), not from this scan.

Host code takes pointers in address space 0; device kernels read here take them in the
address spaces their target passes buffers in (``pointer_spaces``).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

from ..runtime.signature import Param, Signature

__all__ = ["UnsupportedSignature", "exported_functions", "infer_signature", "pointer_space", "readonly_params"]

# LLVM scalar type -> kernpack C type. LLVM integers carry no sign; they read as signed.
_LLVM_SCALARS = {
    "i1": "bool",
    "i8": "int8_t",
    "i16": "int16_t",
    "i32": "int32_t",
    "i64": "int64_t",
    "float": "float",
    "double": "double",
}
_VECTOR = re.compile(r"^<\s*(?:vscale\s+x\s+)?\d+\s+x\s+(\w+)\s*>$")
_PASS_THROUGH = {"bitcast", "addrspacecast", "select", "phi", "freeze"}
_POINTER = re.compile(r"^ptr(?:\s+addrspace\((\d+)\))?$")


class UnsupportedSignature(Exception):
    """A function whose parameters or result kernpack cannot pass from Python."""


def exported_functions(module: Any) -> list[Any]:
    """The functions a module defines and exports (not declarations, intrinsics or internals)."""
    out = []
    for fn in module.functions:
        if fn.is_declaration or fn.name.startswith("llvm."):
            continue
        if fn.linkage.name in ("internal", "private", "available_externally"):
            continue
        out.append(fn)
    return out


def pointer_space(llty: str) -> int | None:
    """The address space of an LLVM pointer type (``ptr``, ``ptr addrspace(1)``), or None."""
    m = _POINTER.match(llty.strip())
    return None if m is None else int(m.group(1) or 0)


def infer_signature(fn: Any, pointer_spaces: Collection[int] = (0,)) -> Signature:
    """Build the :class:`Signature` of an llvmlite ``ValueRef`` function (unoptimized IR).

    Pointer parameters in ``pointer_spaces`` are arrays; a pointer in another address space
    is unsupported (on the host, anything but 0 is not memory Python can hand over).

    Raises
    ------
    UnsupportedSignature
        If a parameter or the result is a type kernpack cannot pass (struct, vector, half...).
    """
    args = list(fn.arguments)
    fn_type = fn.global_value_type
    restype = str(fn_type.get_function_return())
    if restype != "void" and restype not in _LLVM_SCALARS:
        raise UnsupportedSignature(f"it returns {restype}")
    if fn_type.is_function_vararg:
        raise UnsupportedSignature("it is variadic")
    elements = _pointer_element_types(fn, args)
    params = []
    for index, arg in enumerate(args):
        name = arg.name or f"arg{index}"
        llty = str(arg.type)
        space = pointer_space(llty)
        if space is not None and space in pointer_spaces:
            params.append(Param(name, elements.get(index, "void"), pointer=True, const=_is_readonly(arg)))
        elif space is not None:
            raise UnsupportedSignature(f"parameter {index} ({name!r}) is a pointer in address space {space}")
        elif llty in _LLVM_SCALARS:
            params.append(Param(name, _LLVM_SCALARS[llty]))
        else:
            raise UnsupportedSignature(f"parameter {index} ({name!r}) has type {llty}")
    return Signature(fn.name, tuple(params), _LLVM_SCALARS.get(restype, "void"))


def readonly_params(fn: Any) -> list[bool]:
    """For each parameter: True if LLVM marked it ``readonly`` (or ``readnone``)."""
    return [_is_readonly(arg) for arg in fn.arguments]


def _is_readonly(arg: Any) -> bool:
    attrs = {a.decode() if isinstance(a, bytes) else str(a) for a in arg.attributes}
    return bool(attrs & {"readonly", "readnone"})


def _scalar_of(llty: str) -> str | None:
    llty = llty.strip()
    vector = _VECTOR.match(llty)
    return _LLVM_SCALARS.get(vector.group(1) if vector else llty)


def _pointer_element_types(fn: Any, args: list[Any]) -> dict[int, str]:
    """Map each pointer argument's index to its element C type where the uses agree.

    Works on the function's printed IR: one call into LLVM instead of several per
    instruction, which made this scan cost more than the optimizer on small kernels.
    """
    origin = {_reference(arg): i for i, arg in enumerate(args) if pointer_space(str(arg.type)) is not None}
    if not origin:
        return {}
    seen: dict[int, set[str]] = {i: set() for i in origin.values()}

    def note(pointer: str, llty: str) -> None:
        index = origin.get(pointer)
        if index is not None:
            ctype = _scalar_of(llty)
            seen[index].add(ctype if ctype else llty)

    for line in str(fn).splitlines():
        if (m := _GEP.match(line)) and m["base"] in origin:
            origin[m["res"]] = origin[m["base"]]
            # An i8 GEP is byte arithmetic, not a statement about the element type.
            if m["type"].strip() != "i8":
                note(m["base"], m["type"])
        elif (
            (m := _LOAD.match(line)) is not None
            or (m := _STORE.match(line)) is not None
            or (m := _ATOMIC.match(line)) is not None
        ):
            note(m["ptr"], m["type"])
        elif (m := _ASSIGN.match(line)) and m["op"] in _PASS_THROUGH:
            for ref in _REF.findall(line[m.end() :]):
                if ref in origin:
                    origin[m["res"]] = origin[ref]
                    break
    return {
        i: next(iter(types))
        for i, types in seen.items()
        if len(types) == 1 and next(iter(types)) in _LLVM_SCALARS.values()
    }


def _reference(arg: Any) -> str:
    # An argument prints as "<type> <attrs> %name"; its last word is how the body names it.
    return str(arg).split()[-1]


_VALUE = r"%[-\w.$]+"
_PTR = r"ptr(?:\s+addrspace\(\d+\))?"
_REF = re.compile(_VALUE)
_ASSIGN = re.compile(rf"^\s*(?P<res>{_VALUE})\s*=\s*(?P<op>\w+)")
_GEP = re.compile(
    rf"^\s*(?P<res>{_VALUE})\s*=\s*getelementptr(?:\s+(?:inbounds|nuw|nusw|inrange\([^)]*\)))*"
    rf"\s+(?P<type>[^,]+),\s*{_PTR}\s+(?P<base>{_VALUE})"
)
_LOAD = re.compile(
    rf"^\s*{_VALUE}\s*=\s*load(?:\s+atomic)?(?:\s+volatile)?\s+(?P<type>[^,]+),\s*{_PTR}\s+(?P<ptr>{_VALUE})"
)
_STORE = re.compile(rf"^\s*store(?:\s+atomic)?(?:\s+volatile)?\s+(?P<type>.+?)\s+\S+,\s*{_PTR}\s+(?P<ptr>{_VALUE})")
_ATOMIC = re.compile(
    rf"^\s*{_VALUE}\s*=\s*(?:atomicrmw(?:\s+volatile)?\s+\w+|cmpxchg(?:\s+weak)?(?:\s+volatile)?)"
    rf"\s+{_PTR}\s+(?P<ptr>{_VALUE}),\s*(?P<type>[^\s,]+)"
)
