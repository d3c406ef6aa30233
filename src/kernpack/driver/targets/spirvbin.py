"""Small edits to SPIR-V binaries that LLVM's SPIR-V backend gets wrong (no parsing beyond words).

Shared by the ``opencl`` and ``vulkan`` targets; each says what to change.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

__all__ = [
    "ACQUIRE_RELEASE",
    "OP_ATOMIC_IADD",
    "OP_CONTROL_BARRIER",
    "SEQUENTIALLY_CONSISTENT",
    "with_storage_semantics",
]

OP_CONSTANT = 43
OP_CONTROL_BARRIER = 224
OP_ATOMIC_IADD = 234
# The word (after the opcode's) of each instruction's Memory Semantics operand.
_SEMANTICS_OPERAND = {OP_CONTROL_BARRIER: 3, OP_ATOMIC_IADD: 5}
ACQUIRE_RELEASE = 0x8
SEQUENTIALLY_CONSISTENT = 0x10


def with_storage_semantics(shader: bytes, fixes: Mapping[int, tuple[int, int]]) -> bytes:
    """The module with the memory semantics of some instructions completed.

    LLVM emits a workgroup barrier (SequentiallyConsistent) and an acquire-release atomic
    (AcquireRelease) without naming a storage class, and in SPIR-V's memory model such
    semantics order no memory at all: lavapipe moved workgroup-memory loads across the
    barrier, so a reduction's tree read stale values. ``fixes`` maps an opcode to (the
    semantics LLVM gives it, the semantics it needs); each such operand is pointed at a new
    constant, defined next to the old one (which other instructions may use as a number).
    Other semantics (a relaxed atomic) are left as they are.
    """
    words = list(struct.unpack(f"<{len(shader) // 4}I", shader))
    constants: dict[int, tuple[int, int, int]] = {}  # id -> (position, type, value)
    operands: list[tuple[int, int, int]] = []  # (position of the semantics word, given, needed)
    position = 5
    while position < len(words):
        count, opcode = words[position] >> 16, words[position] & 0xFFFF
        if count == 0:
            break
        if opcode == OP_CONSTANT and count == 4:
            constants[words[position + 2]] = (position, words[position + 1], words[position + 3])
        elif opcode in fixes:
            operands.append((position + _SEMANTICS_OPERAND[opcode], *fixes[opcode]))
        position += count
    made: dict[tuple[int, int], int] = {}  # (type, value) -> the new constant's id
    inserts: list[tuple[int, list[int]]] = []
    for at, given, needed in operands:
        where, type_id, value = constants.get(words[at], (0, 0, -1))
        if value != given:
            continue
        if (type_id, needed) not in made:
            made[type_id, needed] = words[3]
            words[3] += 1  # the id bound
            inserts.append((where + 4, [(4 << 16) | OP_CONSTANT, type_id, made[type_id, needed], needed]))
        words[at] = made[type_id, needed]
    for where, instruction in sorted(inserts, reverse=True):
        words[where:where] = instruction
    return struct.pack(f"<{len(words)}I", *words)
