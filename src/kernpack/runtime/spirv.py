"""What a SPIR-V module says of itself, read from its words (no SPIR-V tools needed)."""

from __future__ import annotations

import struct

__all__ = ["buffer_bindings", "compute_entry_points", "local_size"]

_OP_ENTRY_POINT = 15
_OP_EXECUTION_MODE = 16
_OP_CONSTANT = 43
_OP_EXECUTION_MODE_ID = 331
_GL_COMPUTE = 5
_LOCAL_SIZE = 17
_LOCAL_SIZE_ID = 38


def _instructions(code: bytes) -> list[tuple[int, tuple[int, ...]]]:
    """(opcode, operand words) of every instruction after the header."""
    words = struct.unpack(f"<{len(code) // 4}I", code[: len(code) // 4 * 4])
    out, position = [], 5
    while position < len(words):
        count, opcode = words[position] >> 16, words[position] & 0xFFFF
        if count == 0:
            break
        out.append((opcode, words[position + 1 : position + count]))
        position += count
    return out


def _string(operands: tuple[int, ...]) -> str:
    """A literal string at the start of ``operands`` (NUL-terminated, packed in words)."""
    data = b"".join(struct.pack("<I", w) for w in operands)
    return data.split(b"\0", 1)[0].decode(errors="replace")


def compute_entry_points(code: bytes) -> list[str]:
    """The names of the module's GLCompute entry points."""
    return [
        _string(ops[2:]) for op, ops in _instructions(bytes(code)) if op == _OP_ENTRY_POINT and ops[0] == _GL_COMPUTE
    ]


def local_size(code: bytes, entry: str = "main") -> tuple[int, int, int] | None:
    """The workgroup size a compute shader declares for ``entry`` (LocalSize or LocalSizeId), or None."""
    instructions = _instructions(bytes(code))
    constants = {ops[1]: ops[2] for op, ops in instructions if op == _OP_CONSTANT and len(ops) == 3}
    target = next(
        (
            ops[1]
            for op, ops in instructions
            if op == _OP_ENTRY_POINT and ops[0] == _GL_COMPUTE and _string(ops[2:]) == entry
        ),
        None,
    )
    for op, ops in instructions:
        if op in (_OP_EXECUTION_MODE, _OP_EXECUTION_MODE_ID) and ops[0] == target and len(ops) >= 5:
            if ops[1] == _LOCAL_SIZE:
                return ops[2], ops[3], ops[4]
            if ops[1] == _LOCAL_SIZE_ID and all(i in constants for i in ops[2:5]):
                return constants[ops[2]], constants[ops[3]], constants[ops[4]]
    return None


_OP_DECORATE = 71
_OP_VARIABLE = 59
_OP_TYPE_INT = 21
_OP_TYPE_FLOAT = 22
_OP_TYPE_ARRAY = 28
_OP_TYPE_RUNTIME_ARRAY = 29
_OP_TYPE_STRUCT = 30
_OP_TYPE_POINTER = 32
_BINDING = 33
_DESCRIPTOR_SET = 34


def buffer_bindings(code: bytes) -> dict[tuple[int, int], set[str | None]]:
    """Each (set, binding) the shader declares, with the scalars its variables there hold.

    A scalar (``"f32"``, ``"u64"``) is that of the buffer's first member, or of the array it is;
    None where it is something else (a struct of several types, an image). A binding may have
    several variables: views of one buffer as different types.
    """
    instructions = _instructions(bytes(code))
    decorations: dict[int, dict[int, int]] = {}
    types: dict[int, tuple[int, tuple[int, ...]]] = {}
    variables: dict[int, int] = {}
    for op, ops in instructions:
        if op == _OP_DECORATE and len(ops) >= 3 and ops[1] in (_BINDING, _DESCRIPTOR_SET):
            decorations.setdefault(ops[0], {})[ops[1]] = ops[2]
        elif (
            op in (_OP_TYPE_INT, _OP_TYPE_FLOAT, _OP_TYPE_ARRAY, _OP_TYPE_RUNTIME_ARRAY, _OP_TYPE_STRUCT)
            or op == _OP_TYPE_POINTER
        ):
            types[ops[0]] = (op, ops[1:])
        elif op == _OP_VARIABLE:
            variables[ops[1]] = ops[0]

    def scalar(type_id: int, depth: int = 0) -> str | None:
        op, ops = types.get(type_id, (0, ()))
        if depth > 8:
            return None
        if op == _OP_TYPE_INT:
            return f"{'i' if ops[1] else 'u'}{ops[0]}"
        if op == _OP_TYPE_FLOAT:
            return f"f{ops[0]}"
        if op in (_OP_TYPE_ARRAY, _OP_TYPE_RUNTIME_ARRAY):
            return scalar(ops[0], depth + 1)
        if op == _OP_TYPE_STRUCT and ops:
            return scalar(ops[0], depth + 1)
        if op == _OP_TYPE_POINTER:
            return scalar(ops[1], depth + 1)
        return None

    found: dict[tuple[int, int], set[str | None]] = {}
    for variable, pointer in variables.items():
        where = decorations.get(variable, {})
        if _BINDING in where:
            found.setdefault((where.get(_DESCRIPTOR_SET, 0), where[_BINDING]), set()).add(scalar(pointer))
    return found
