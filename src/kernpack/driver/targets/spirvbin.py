"""Small edits to SPIR-V binaries that LLVM's SPIR-V backend gets wrong (no parsing beyond words).

Shared by the ``opencl`` and ``vulkan`` targets; each says what to change.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

__all__ = [
    "ACQUIRE_RELEASE",
    "ATOMIC_IADD_SEMANTICS",
    "CONTROL_BARRIER_MEMORY_SCOPE",
    "CONTROL_BARRIER_SEMANTICS",
    "DEVICE",
    "SEQUENTIALLY_CONSISTENT",
    "WORKGROUP",
    "with_storage_semantics",
    "with_subgroup_size",
]

OP_CONSTANT = 43
OP_CONTROL_BARRIER = 224
OP_ATOMIC_IADD = 234
#: Where an operand is: (opcode, the word after the opcode's).
CONTROL_BARRIER_MEMORY_SCOPE = (OP_CONTROL_BARRIER, 2)
CONTROL_BARRIER_SEMANTICS = (OP_CONTROL_BARRIER, 3)
ATOMIC_IADD_SEMANTICS = (OP_ATOMIC_IADD, 5)
DEVICE = 1
WORKGROUP = 2
ACQUIRE_RELEASE = 0x8
SEQUENTIALLY_CONSISTENT = 0x10


def with_storage_semantics(shader: bytes, fixes: Mapping[tuple[int, int], tuple[int, int]]) -> bytes:
    """The module with the memory scopes and semantics of some instructions completed.

    LLVM emits a workgroup barrier (SequentiallyConsistent, workgroup scope) and an
    acquire-release atomic (AcquireRelease) without naming a storage class, and in SPIR-V's
    memory model such semantics order no memory at all: lavapipe moved workgroup-memory loads
    across the barrier, so a reduction's tree read stale values, and another workgroup did not
    see an array's elements stored before it. ``fixes`` maps an operand (``*_SEMANTICS``,
    ``*_SCOPE``) to (the value LLVM gives it, the value it needs); each such operand is pointed
    at a constant of that value: an existing one, or a new one defined next to the old (which
    other instructions may use as a number). Other values (a relaxed atomic) are left alone.
    """
    words = list(struct.unpack(f"<{len(shader) // 4}I", shader))
    constants: dict[int, tuple[int, int, int]] = {}  # id -> (position, type, value)
    operands: list[tuple[int, int, int]] = []  # (position of the operand, given, needed)
    position = 5
    while position < len(words):
        count, opcode = words[position] >> 16, words[position] & 0xFFFF
        if count == 0:
            break
        if opcode == OP_CONSTANT and count == 4:
            constants[words[position + 2]] = (position, words[position + 1], words[position + 3])
        for (op, offset), (given, needed) in fixes.items():
            if op == opcode:
                operands.append((position + offset, given, needed))
        position += count
    made = {(type_id, value): id_ for id_, (_, type_id, value) in constants.items()}  # (type, value) -> id
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


_OP_NAME, _OP_CAPABILITY, _OP_ENTRY_POINT = 5, 17, 15
_DEBUG_OR_LATER = (7, 3, 4, 5, 6, 71, 72, 330, 331)  # OpString .. OpDecorate: after the execution modes
_OP_EXECUTION_MODE, _SUBGROUP_SIZE, _SUBGROUP_DISPATCH = 16, 35, 58


def with_subgroup_size(module: bytes, kernels: set[str], size: int) -> bytes:
    """The module with ``OpExecutionMode SubgroupSize size`` on the entry points named ``kernels``.

    With size 1 a driver runs each work-item on its own: Intel's CPU runtime then leaves the
    kernel to its scalar code, not to its vectorizer (VPlan), which crashed on some
    bounds-checked kernels and left the process hung (campaign seed 93176).
    """
    words = list(struct.unpack(f"<{len(module) // 4}I", module))
    entries, first_capability, first_later = [], 0, 0
    position = 5
    while position < len(words):
        count, opcode = words[position] >> 16, words[position] & 0xFFFF
        if count == 0:
            break
        if opcode == _OP_CAPABILITY and not first_capability:
            first_capability = position
        elif opcode == _OP_ENTRY_POINT:
            name = struct.pack(f"<{count - 3}I", *words[position + 3 : position + count]).split(b"\0", 1)[0]
            if name.decode() in kernels:
                entries.append(words[position + 2])
        elif opcode in _DEBUG_OR_LATER and not first_later:
            first_later = position
        position += count
    if not entries or not first_later:  # kernpack's modules always have names and decorations
        return module
    modes = [w for e in entries for w in ((4 << 16) | _OP_EXECUTION_MODE, e, _SUBGROUP_SIZE, size)]
    words[first_later:first_later] = modes  # after every entry point and execution mode
    words[first_capability:first_capability] = [(2 << 16) | _OP_CAPABILITY, _SUBGROUP_DISPATCH]
    return struct.pack(f"<{len(words)}I", *words)
