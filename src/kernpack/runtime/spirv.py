"""What a SPIR-V compute shader says of itself, read from its words (no SPIR-V tools needed).

:class:`Shader` reads a module once: its compute entry points and workgroup size, the buffers
it declares (set, binding, storage or uniform, element type), its push-constant block and its
specialization constants. Vulkan modules check what a user declares against it, so that a
shader and its description cannot disagree without an error naming both.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

__all__ = ["PushMember", "Resource", "Shader", "SpecConstant"]

# Opcodes, decorations and enumerants of the SPIR-V specification (section 3).
_OP_NAME, _OP_ENTRY_POINT, _OP_EXECUTION_MODE = 5, 15, 16
_OP_TYPE_BOOL, _OP_TYPE_INT, _OP_TYPE_FLOAT, _OP_TYPE_VECTOR = 20, 21, 22, 23
_OP_TYPE_ARRAY, _OP_TYPE_RUNTIME_ARRAY, _OP_TYPE_STRUCT, _OP_TYPE_POINTER = 28, 29, 30, 32
_OP_CONSTANT, _OP_CONSTANT_COMPOSITE = 43, 44
_OP_SPEC_TRUE, _OP_SPEC_FALSE, _OP_SPEC_CONSTANT, _OP_SPEC_COMPOSITE = 48, 49, 50, 51
_OP_VARIABLE, _OP_DECORATE, _OP_MEMBER_DECORATE, _OP_EXECUTION_MODE_ID = 59, 71, 72, 331
_SPEC_ID, _BLOCK, _BUFFER_BLOCK, _BUILTIN, _BINDING, _DESCRIPTOR_SET, _OFFSET = 1, 2, 3, 11, 33, 34, 35
_GL_COMPUTE, _KERNEL, _LOCAL_SIZE, _LOCAL_SIZE_ID, _WORKGROUP_SIZE = 5, 6, 17, 38, 25
_UNIFORM, _PUSH_CONSTANT, _STORAGE_BUFFER = 2, 9, 12


@dataclass(frozen=True)
class Resource:
    """A descriptor the shader declares: ``kind`` ``"storage"``, ``"uniform"`` or ``"other"`` (an image)."""

    set: int
    binding: int
    kind: str
    scalars: frozenset[str | None]  # the element type of each variable there ("f32"; None: a mixed struct)
    offsets: tuple[int, ...] = ()  # the byte offset of each member of its block (its first variable's)


@dataclass(frozen=True)
class PushMember:
    """A member of the push-constant block: its byte offset and scalar type (None: not a scalar)."""

    index: int
    name: str
    offset: int
    scalar: str | None


@dataclass(frozen=True)
class SpecConstant:
    """A specialization constant: its ``SpecId``, name (``""`` if unnamed), type and default value."""

    spec_id: int
    name: str
    scalar: str  # "u32", "i32", "f32", "f64", "bool", ...
    default: int | float | bool


@dataclass
class Shader:
    """A SPIR-V module's reflection (see the module docstring)."""

    entry_points: dict[str, int] = field(default_factory=dict)  # GLCompute entry points: name -> function id
    kernels: list[str] = field(default_factory=list)  # OpenCL (Kernel) entry points: not a Vulkan shader
    resources: dict[tuple[int, int], Resource] = field(default_factory=dict)
    push_members: list[PushMember] = field(default_factory=list)
    push_size: int = 0
    spec_constants: dict[int, SpecConstant] = field(default_factory=dict)  # by SpecId
    _local_sizes: dict[int, tuple[object, object, object]] = field(default_factory=dict)
    _workgroup_builtin: tuple[object, object, object] | None = None

    @classmethod
    def read(cls, code: bytes | memoryview) -> Shader:
        """Reflect ``code`` (a SPIR-V module)."""
        return _read(bytes(code))

    def local_size(self, entry: str = "main", values: dict[int, object] | None = None) -> tuple[int, int, int] | None:
        """The workgroup size of ``entry`` with specialization ``values`` (SpecId -> value), or None.

        A ``WorkgroupSize`` built-in wins over the execution mode, as Vulkan says; a component
        that is a specialization constant takes its given value, else its default.
        """
        target = self.entry_points.get(entry)
        size = self._workgroup_builtin or self._local_sizes.get(target if target is not None else -1)
        if size is None:
            return None
        given = values or {}
        out = []
        for part in size:
            if isinstance(part, SpecConstant):
                part = given.get(part.spec_id, part.default)
            out.append(int(part))  # type: ignore[call-overload]
        return out[0], out[1], out[2]


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


def _literal(scalar: str, words: tuple[int, ...]) -> int | float:
    """A constant's value from its literal words (low word first)."""
    bits = words[0] | (words[1] << 32 if len(words) > 1 else 0)
    if scalar == "f32":
        return struct.unpack("<f", struct.pack("<I", words[0]))[0]
    if scalar == "f64":
        return struct.unpack("<d", struct.pack("<Q", bits))[0]
    width = int(scalar[1:])
    if scalar[0] == "i" and bits >= 1 << (width - 1):
        bits -= 1 << width
    return bits


def _read(code: bytes) -> Shader:
    instructions = _instructions(code)
    names: dict[int, str] = {}
    member_names: dict[tuple[int, int], str] = {}
    decorations: dict[int, dict[int, int]] = {}
    member_offsets: dict[tuple[int, int], int] = {}
    types: dict[int, tuple[int, tuple[int, ...]]] = {}
    for op, ops in instructions:
        if op == _OP_NAME:
            names[ops[0]] = _string(ops[1:])
        elif op == 6:  # OpMemberName
            member_names[ops[0], ops[1]] = _string(ops[2:])
        elif op == _OP_DECORATE and len(ops) >= 2:
            decorations.setdefault(ops[0], {})[ops[1]] = ops[2] if len(ops) > 2 else 1
        elif op == _OP_MEMBER_DECORATE and len(ops) >= 4 and ops[2] == _OFFSET:
            member_offsets[ops[0], ops[1]] = ops[3]
        elif _OP_TYPE_BOOL <= op <= _OP_TYPE_POINTER:
            types[ops[0]] = (op, ops[1:])

    def scalar(type_id: int, depth: int = 0) -> str | None:
        """The element type of a buffer's type: its first member's, or the array's (or vector's) element's."""
        op, ops = types.get(type_id, (0, ()))
        if depth > 8:
            return None
        if op == _OP_TYPE_BOOL:
            return "bool"
        if op == _OP_TYPE_INT:
            return f"{'i' if ops[1] else 'u'}{ops[0]}"
        if op == _OP_TYPE_FLOAT:
            return f"f{ops[0]}"
        if op in (_OP_TYPE_VECTOR, _OP_TYPE_ARRAY, _OP_TYPE_RUNTIME_ARRAY) or (op == _OP_TYPE_STRUCT and ops):
            return scalar(ops[0], depth + 1)
        if op == _OP_TYPE_POINTER:
            return scalar(ops[1], depth + 1)
        return None

    shader = Shader()
    constants: dict[int, object] = {}
    composites: dict[int, tuple[int, ...]] = {}
    found: dict[tuple[int, int], tuple[str, set[str | None], tuple[int, ...]]] = {}
    modes: dict[int, tuple[bool, tuple[int, ...]]] = {}  # entry point -> (LocalSizeId?, operands)
    for op, ops in instructions:
        if op == _OP_ENTRY_POINT and ops[0] == _GL_COMPUTE:
            shader.entry_points[_string(ops[2:])] = ops[1]
        elif op == _OP_ENTRY_POINT and ops[0] == _KERNEL:
            shader.kernels.append(_string(ops[2:]))
        elif (
            op in (_OP_EXECUTION_MODE, _OP_EXECUTION_MODE_ID)
            and len(ops) >= 5
            and ops[1] in (_LOCAL_SIZE, _LOCAL_SIZE_ID)
        ):
            modes[ops[0]] = (ops[1] == _LOCAL_SIZE_ID, ops[2:5])
        elif op == _OP_CONSTANT and len(ops) >= 3:
            constants[ops[1]] = _literal(scalar(ops[0]) or "u32", ops[2:])
        elif op in (_OP_SPEC_TRUE, _OP_SPEC_FALSE, _OP_SPEC_CONSTANT) and _SPEC_ID in decorations.get(ops[1], {}):
            kind = "bool" if op != _OP_SPEC_CONSTANT else scalar(ops[0]) or "u32"
            default = op == _OP_SPEC_TRUE if op != _OP_SPEC_CONSTANT else _literal(kind, ops[2:])
            spec = SpecConstant(decorations[ops[1]][_SPEC_ID], names.get(ops[1], ""), kind, default)
            shader.spec_constants[spec.spec_id] = spec
            constants[ops[1]] = spec
        elif op in (_OP_CONSTANT_COMPOSITE, _OP_SPEC_COMPOSITE):
            composites[ops[1]] = ops[2:]
            if decorations.get(ops[1], {}).get(_BUILTIN) == _WORKGROUP_SIZE and len(ops) >= 5:
                shader._workgroup_builtin = tuple(constants.get(i, 0) for i in ops[2:5])  # type: ignore[assignment]
        elif op == _OP_VARIABLE:
            pointer, variable, storage = ops[0], ops[1], ops[2]
            pointee = types.get(pointer, (0, (0, 0)))[1][1]
            where = decorations.get(variable, {})
            if storage == _PUSH_CONSTANT:
                members = types.get(pointee, (0, ()))[1]
                shader.push_members = [
                    PushMember(
                        k,
                        member_names.get((pointee, k), ""),
                        member_offsets.get((pointee, k), 0),
                        scalar(m) if types.get(m, (0,))[0] in (_OP_TYPE_BOOL, _OP_TYPE_INT, _OP_TYPE_FLOAT) else None,
                    )
                    for k, m in enumerate(members)
                ]
                shader.push_size = max(
                    (p.offset + _size(types, m) for p, m in zip(shader.push_members, members, strict=False)), default=0
                )
            elif _BINDING in where:
                block = decorations.get(pointee, {})
                if storage == _STORAGE_BUFFER or (storage == _UNIFORM and _BUFFER_BLOCK in block):
                    kind = "storage"
                elif storage == _UNIFORM:
                    kind = "uniform"
                else:
                    kind = "other"
                key = (where.get(_DESCRIPTOR_SET, 0), where[_BINDING])
                count = len(types.get(pointee, (0, ()))[1]) if types.get(pointee, (0,))[0] == _OP_TYPE_STRUCT else 0
                offsets = tuple(member_offsets.get((pointee, k), 0) for k in range(count))
                found.setdefault(key, (kind, set(), offsets))[1].add(scalar(pointer))
    for key, (kind, scalars, offsets) in found.items():
        shader.resources[key] = Resource(key[0], key[1], kind, frozenset(scalars), offsets)
    for target, (by_id, operands) in modes.items():
        # LocalSizeId names constants (or specialization constants); LocalSize has literals.
        size = tuple(constants.get(i, 0) for i in operands) if by_id else operands
        shader._local_sizes[target] = (size[0], size[1], size[2])
    return shader


def _size(types: dict[int, tuple[int, tuple[int, ...]]], type_id: int) -> int:
    """Bytes of a push-constant member of a scalar or vector type (4 otherwise: a lower bound)."""
    op, ops = types.get(type_id, (0, ()))
    if op in (_OP_TYPE_INT, _OP_TYPE_FLOAT):
        return ops[0] // 8
    if op == _OP_TYPE_VECTOR:
        return _size(types, ops[0]) * ops[1]
    return 4
