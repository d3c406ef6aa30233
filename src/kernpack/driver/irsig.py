"""Reading C signatures off LLVM IR.

LLVM's scalar types say exactly what a scalar parameter is. A pointer is opaque (``ptr``), so
its element type is read from how the function uses it, before optimization rewrites the
accesses as byte offsets: the element type of each ``getelementptr`` based on it, and the type
of each load, store or atomic through it (or through a pointer derived from it). One type
seen means an array of that dtype; none, or several, means ``void *`` (any dtype).

Whether the function writes through a pointer comes from LLVM's own analysis (the
``readonly`` parameter attribute that FunctionAttrs infers), not from this scan.
"""

from __future__ import annotations

import re
from typing import Any

from ..runtime.signature import Param, Signature

__all__ = ["UnsupportedSignature", "exported_functions", "infer_signature", "readonly_params"]

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
_GEP_TYPE = re.compile(r"getelementptr(?:\s+(?:inbounds|nuw|nusw|inrange\([^)]*\)))*\s+([^,]+),")
_VECTOR = re.compile(r"^<\s*(?:vscale\s+x\s+)?\d+\s+x\s+(\w+)\s*>$")
_PASS_THROUGH = {"bitcast", "addrspacecast", "select", "phi", "freeze"}


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


def infer_signature(fn: Any) -> Signature:
    """Build the :class:`Signature` of an llvmlite ``ValueRef`` function (unoptimized IR).

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
        if llty == "ptr":
            params.append(Param(name, elements.get(index, "void"), pointer=True, const=_is_readonly(arg)))
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
    """Map each pointer argument's index to its element C type where the uses agree."""
    origin: dict[Any, int] = {arg: i for i, arg in enumerate(args) if str(arg.type) == "ptr"}
    if not origin:
        return {}
    seen: dict[int, set[str]] = {i: set() for i in origin.values()}

    def note(index: int | None, llty: str | None) -> None:
        if index is not None and llty is not None:
            ctype = _scalar_of(llty)
            seen[index].add(ctype if ctype else llty)

    for block in fn.blocks:
        for ins in block.instructions:
            op = ins.opcode
            ops = list(ins.operands)
            if op == "getelementptr" and ops and ops[0] in origin:
                index = origin[ops[0]]
                origin[ins] = index
                match = _GEP_TYPE.search(str(ins))
                # An i8 GEP is byte arithmetic, not a statement about the element type.
                if match and match.group(1).strip() != "i8":
                    note(index, match.group(1))
            elif op in _PASS_THROUGH and any(o in origin for o in ops):
                origin[ins] = next(origin[o] for o in ops if o in origin)
            elif op == "load" and ops and ops[0] in origin:
                note(origin[ops[0]], str(ins.type))
            elif op == "store" and len(ops) == 2 and ops[1] in origin:
                note(origin[ops[1]], str(ops[0].type))
            elif op in ("atomicrmw", "cmpxchg") and len(ops) >= 2 and ops[0] in origin:
                note(origin[ops[0]], str(ops[1].type))
    return {
        i: next(iter(types))
        for i, types in seen.items()
        if len(types) == 1 and next(iter(types)) in _LLVM_SCALARS.values()
    }
