"""What a SPIR-V module says of itself, read from its words (no SPIR-V tools needed)."""

from __future__ import annotations

import struct

__all__ = ["local_size"]

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
