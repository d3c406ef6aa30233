"""Where a Vulkan kernel's arguments go: descriptor bindings, push constants, specialization.

kernpack's own shaders follow :mod:`.abi` (set 0: binding 0 the arrays' extents, binding 1 + k
parameter k). A shader written elsewhere says where its inputs are in its own decorations; its
author describes that per parameter, and :func:`describe` checks the description against the
shader (:class:`.spirv.Shader`), so that a shader and its description cannot disagree without
an error naming both. The checked layout is kept in the kernel's attributes as plain JSON
(``attrs["layout"]``), which :func:`layout_of` reads back at launch.

A parameter's place is one of:

- ``b`` or ``{"binding": b, "set": s}``: a storage buffer (an array, or a scalar in a buffer of one);
- ``{"binding": b, "set": s, "kind": "uniform"}``: a uniform buffer holding the argument's bytes;
- ``"push"`` or ``{"push": member}``: a member of the push-constant block (by index or name;
  ``"push"`` alone takes the members in order).

``"extents": {"set": s, "binding": b}`` asks for kernpack's extents buffer there too.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ArgumentError, FormatError
from .abi import DESCRIPTOR_SET, EXTENTS_BINDING, SCALARS, parameter_binding
from .device import KernelEntry
from .signature import Param
from .spirv import Resource, Shader

__all__ = ["Buffer", "Layout", "Push", "describe", "layout_of", "specialization", "specialization_data"]


@dataclass(frozen=True)
class Buffer:
    """A descriptor: (set, binding), ``"storage"`` or ``"uniform"``, the parameter (-1: the extents)."""

    set: int
    binding: int
    kind: str
    param: int


@dataclass(frozen=True)
class Push:
    """A parameter written into the push-constant block at ``offset``."""

    param: int
    offset: int


@dataclass(frozen=True)
class Layout:
    """Where every argument of a kernel goes."""

    buffers: tuple[Buffer, ...]
    push: tuple[Push, ...] = ()
    push_size: int = 0

    @property
    def sets(self) -> int:
        """How many descriptor sets the pipeline layout has (the highest used, plus one)."""
        return 1 + max((b.set for b in self.buffers), default=0)

    def to_json(self) -> dict[str, Any]:
        """The layout as JSON-able data (``attrs["layout"]``)."""
        return {
            "buffers": [[b.set, b.binding, b.kind, b.param] for b in self.buffers],
            "push": [[p.param, p.offset] for p in self.push],
            "push_size": self.push_size,
        }


def _kernpack_layout(entry: KernelEntry) -> Layout:
    extents = Buffer(DESCRIPTOR_SET, EXTENTS_BINDING, "storage", -1)
    params = (Buffer(DESCRIPTOR_SET, parameter_binding(k), "storage", k) for k in range(len(entry.signature.params)))
    return Layout((extents, *params))


def layout_of(entry: KernelEntry) -> Layout:
    """The layout of a kernel: its described one (``attrs["layout"]``), else kernpack's.

    Raises
    ------
    FormatError
        If a described layout is damaged (a loaded file's).
    """
    doc = entry.attrs.get("layout")
    if doc is None:
        return _kernpack_layout(entry)
    count = len(entry.signature.params)
    try:
        buffers = tuple(Buffer(int(s), int(b), str(k), int(p)) for s, b, k, p in doc["buffers"])
        push = tuple(Push(int(p), int(o)) for p, o in doc["push"])
        size = int(doc["push_size"])
        if not all(
            0 <= b.set < 32 and b.binding >= 0 and b.kind in ("storage", "uniform") and -1 <= b.param < count
            for b in buffers
        ) or not all(0 <= p.param < count and 0 <= p.offset < size <= 4096 for p in push):
            raise ValueError("an entry out of range")
    except (KeyError, TypeError, ValueError) as exc:
        raise FormatError(f"vulkan module: kernel {entry.name!r} has a damaged layout ({exc})") from None
    return Layout(buffers, push, size)


def _kind(ctype: str) -> str:
    """A parameter type as a shader names it: ``"f32"``, ``"i64"`` (signedness aside)."""
    dtype = SCALARS[ctype].dtype if ctype in SCALARS else None
    if dtype is None:
        return "?"
    return "bool" if dtype.kind == "b" else f"{'f' if dtype.kind == 'f' else 'i'}{dtype.itemsize * 8}"


def _holds(scalar: str | None, kind: str, words: bool) -> bool:
    """True if a buffer of ``scalar`` ("f32", "u64"; None: mixed) can hold ``kind``, any signedness.

    With ``words``, a 32-bit integer view of a 64-bit integer buffer too (how kernpack's
    shaders do 64-bit atomic adds); a bool travels as an 8- or 32-bit integer.
    """
    if scalar is None or kind == "?":
        return True
    if kind == "bool":
        return scalar[0] != "f"
    if words and scalar[0] != "f" and kind[0] != "f" and scalar[1:] == "32" and kind[1:] == "64":
        return True
    return (scalar[0] == "f") == (kind[0] == "f") and scalar[1:] == kind[1:]


def _place(name: str, spec: Any, entry: KernelEntry) -> tuple[str, int, int, Any]:
    """(kind, set, binding, member) of one parameter's description; refuse a malformed one."""
    if spec == "push":
        return "push", 0, 0, None
    if isinstance(spec, int) and not isinstance(spec, bool):
        return "storage", 0, spec, None
    if isinstance(spec, Mapping) and "push" in spec:
        return "push", 0, 0, spec["push"]
    if isinstance(spec, Mapping) and isinstance(spec.get("binding"), int):
        kind = spec.get("kind", "storage")
        if kind in ("storage", "uniform") and isinstance(spec.get("set", 0), int):
            return kind, spec.get("set", 0), spec["binding"], None
    raise ArgumentError(
        f"kernel {entry.name!r}: parameter {name!r} has layout {spec!r}; write a binding (2), "
        '{"set": 1, "binding": 2}, {"binding": 0, "kind": "uniform"}, "push" or {"push": "member"}'
    )


def describe(entry: KernelEntry, shader: Shader, given: Mapping[str, Any] | None) -> Layout:
    """Check a kernel's described layout (``given``; None: kernpack's) against its shader.

    Raises
    ------
    ArgumentError
        If a parameter's place is missing, malformed, or not what the shader declares there,
        or the shader declares a buffer or push constant no parameter fills: naming both.
    """
    if given is None:
        layout = _kernpack_layout(entry)
        where = "kernpack binds set 0: binding 0 the arrays' extents (int64), binding 1 + k parameter k"
    else:
        layout = _described(entry, shader, given)
        where = f"its layout {dict(given)}"
    for buffer in layout.buffers:
        what, kind = ("the arrays' extents", "i64") if buffer.param < 0 else _param(entry, buffer.param)
        resource = shader.resources.get((buffer.set, buffer.binding))
        at = f"set {buffer.set}, binding {buffer.binding}"
        if resource is None and given is None:
            continue  # kernpack's shaders leave out the buffers of parameters they do not use
        if resource is None:
            declared = ", ".join(f"({s}, {b}) {r.kind}" for (s, b), r in sorted(shader.resources.items())) or "none"
            raise ArgumentError(
                f"kernel {entry.name!r}: {what} is bound at {at}, where its shader declares nothing (it declares "
                f"(set, binding): {declared}); {where}"
            )
        if resource.kind == "other":
            raise ArgumentError(_no_images(entry, resource))
        if resource.kind != buffer.kind:
            raise ArgumentError(
                f"kernel {entry.name!r}: {what} is bound at {at} as a {buffer.kind} buffer, but its shader declares "
                f"a {resource.kind} buffer there; say "
                f'{{"binding": {buffer.binding}, "set": {buffer.set}, "kind": "{resource.kind}"}}'
            )
        if buffer.param >= 0 and entry.signature.params[buffer.param].layout is not None:
            _same_offsets(entry, entry.signature.params[buffer.param], resource.offsets, f"block at {at}")
            continue
        # A uniform block's first member says little of the argument (a struct of settings).
        words = buffer.param >= 0 and given is None  # kernpack's shaders view 64-bit integers as words
        if buffer.kind == "storage" and not any(_holds(s, kind, words) for s in resource.scalars):
            held = ", ".join(sorted(s for s in resource.scalars if s is not None))
            raise ArgumentError(
                f"kernel {entry.name!r}: its shader's buffer at {at} holds {held}, but {what} ({kind}) is bound "
                f"there ({where}); declare the parameter with the shader's type, or bind it elsewhere"
            )
    bound = {(b.set, b.binding) for b in layout.buffers}
    for key, resource in sorted(shader.resources.items()):
        if resource.kind == "other":
            raise ArgumentError(_no_images(entry, resource))
        if key not in bound:
            raise ArgumentError(
                f"kernel {entry.name!r}: its shader declares a {resource.kind} buffer at set {key[0]}, binding "
                f"{key[1]}, which no parameter fills ({where}; signature {entry.signature}); give it a parameter"
                ' with "layout"'
            )
    if shader.push_members and not layout.push:
        names = ", ".join(m.name or f"member {m.index}" for m in shader.push_members)
        raise ArgumentError(
            f"kernel {entry.name!r}: its shader has push constants ({names}), which no parameter fills; "
            f'mark the parameters that hold them "push" in "layout"'
        )
    return layout


def _no_images(entry: KernelEntry, resource: Resource) -> str:
    return (
        f"kernel {entry.name!r}: its shader declares an image, sampler or texel buffer at set {resource.set}, "
        f"binding {resource.binding}, which kernpack does not bind (storage and uniform buffers only); read the data "
        "from a storage buffer instead"
    )


def _same_offsets(entry: KernelEntry, param: Param, offsets: tuple[int, ...], where: str) -> None:
    """Refuse a struct parameter whose members are not where the shader's block has them."""
    layout = param.layout
    assert layout is not None
    mine = tuple(layout.fields[n][1] for n in layout.names) if layout.names != ("s",) else (0,)
    if offsets and mine != offsets:
        raise ArgumentError(
            f"kernel {entry.name!r}: parameter {param} lays its members at offsets {list(mine)}, but the shader's "
            f"{where} has them at {list(offsets)}; declare the struct's members as the block does (a vec3 takes 16 "
            "bytes in kernpack's layout, as in OpenCL C: use vec4, or put it last)"
        )


def _param(entry: KernelEntry, index: int) -> tuple[str, str]:
    param = entry.signature.params[index]
    return f"parameter {param.name!r} ({param})", _kind(param.ctype)


def _described(entry: KernelEntry, shader: Shader, given: Mapping[str, Any]) -> Layout:
    """The layout a user describes, its push members placed by the shader's offsets."""
    names = [p.name for p in entry.signature.params]
    unknown = [n for n in given if n not in names and n != "extents"]
    if unknown:
        raise ArgumentError(
            f"kernel {entry.name!r}: its layout names {', '.join(map(repr, unknown))}, not parameters of "
            f"{entry.signature}"
        )
    buffers, push, members = [], [], list(shader.push_members)
    taken: set[int] = set()
    if "extents" in given:
        kind, set_, binding, _ = _place("extents", given["extents"], entry)
        buffers.append(Buffer(set_, binding, "storage", -1))
    for index, param in enumerate(entry.signature.params):
        if param.name not in given:
            raise ArgumentError(
                f"kernel {entry.name!r}: parameter {param.name!r} has no place in its layout; give it a binding "
                'or "push"'
            )
        kind, set_, binding, member = _place(param.name, given[param.name], entry)
        if kind != "push":
            buffers.append(Buffer(set_, binding, kind, index))
            continue
        if param.pointer:
            raise ArgumentError(
                f"kernel {entry.name!r}: parameter {param.name!r} is an array; only scalars are push constants"
            )
        struct = param.layout is not None and param.layout.names != ("s",)
        if struct and member is None:  # a struct fills the whole block, member for member
            _same_offsets(entry, param, tuple(m.offset for m in members), "push-constant block")
            taken.update(m.index for m in members)
            push.append(Push(index, 0))
            continue
        if member is None:
            chosen = next((m for m in members if m.index not in taken), None)
        else:
            chosen = next((m for m in members if member in (m.index, m.name)), None)
        if chosen is None:
            have = ", ".join(f"{m.index} {m.name!r}" for m in members) or "none"
            raise ArgumentError(
                f"kernel {entry.name!r}: parameter {param.name!r} is a push constant, but its shader's push-constant "
                f"block has no {'further member' if member is None else f'member {member!r}'} (members: {have})"
            )
        taken.add(chosen.index)
        kind_ = _kind(param.ctype)
        if param.layout is not None:  # a vector (or struct) fills a member that is one
            if chosen.scalar is not None:
                raise ArgumentError(
                    f"kernel {entry.name!r}: parameter {param.name!r} ({param.ctype}) fills push constant "
                    f"{chosen.name!r}, which holds {chosen.scalar}; declare it with the member's type"
                )
        elif chosen.scalar is None or not _holds(chosen.scalar, kind_, False) or chosen.scalar == "bool":
            raise ArgumentError(
                f"kernel {entry.name!r}: parameter {param.name!r} ({kind_}) fills push constant {chosen.name!r}, "
                f"which holds {chosen.scalar or 'a vector or struct'}; declare it with the member's type"
            )
        push.append(Push(index, chosen.offset))
    missing = [m for m in members if m.index not in taken]
    if push and missing:
        raise ArgumentError(
            f"kernel {entry.name!r}: its shader's push constant {missing[0].name or missing[0].index!r} is filled by "
            "no parameter (it would read 0); give it one"
        )
    return Layout(tuple(buffers), tuple(push), shader.push_size)


def specialization(entry: KernelEntry, shader: Shader, given: Mapping[str | int, Any]) -> dict[str, int | float]:
    """Check specialization values (by ``SpecId`` or constant name) for a shader; JSON by SpecId.

    Raises
    ------
    ArgumentError
        If a constant is not the shader's, or its value does not fit the constant's type.
    """
    out: dict[str, int | float] = {}
    by_name = {c.name: c for c in shader.spec_constants.values() if c.name}
    for key, value in given.items():
        constant = by_name.get(key) if isinstance(key, str) and not key.isdigit() else None
        if constant is None:
            try:
                constant = shader.spec_constants.get(int(key))
            except (TypeError, ValueError):
                constant = None
        if constant is None:
            have = ", ".join(f"{c.spec_id} {c.name!r}" for c in shader.spec_constants.values()) or "none"
            raise ArgumentError(
                f"kernel {entry.name!r}: its shader has no specialization constant {key!r} (it has: {have})"
            )
        out[str(constant.spec_id)] = _spec_value(entry, constant.name or str(constant.spec_id), constant.scalar, value)
    return out


def _spec_value(entry: KernelEntry, name: str, scalar: str, value: Any) -> int | float:
    bad = ArgumentError(f"kernel {entry.name!r}: specialization constant {name!r} is {scalar}; {value!r} does not fit")
    if scalar == "bool":
        if not isinstance(value, bool | np.bool_ | int) or int(value) not in (0, 1):
            raise bad
        return int(bool(value))
    if scalar[0] == "f":
        if isinstance(value, bool) or not isinstance(value, int | float | np.number):
            raise bad
        number = float(value)
        if scalar == "f32" and math.isfinite(number) and abs(number) > 3.4028234663852886e38:
            raise bad
        return number
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise bad
    bits = int(scalar[1:])
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if scalar[0] == "i" else (0, (1 << bits) - 1)
    if not low <= int(value) <= high:
        raise bad
    return int(value)


def specialization_data(shader: Shader, values: Mapping[str, int | float]) -> tuple[list[tuple[int, int, int]], bytes]:
    """(SpecId, offset, size) map entries and the data of ``VkSpecializationInfo`` for ``values``."""
    entries, data = [], bytearray()
    for key, value in sorted(values.items(), key=lambda kv: int(kv[0])):
        scalar = shader.spec_constants[int(key)].scalar
        code = {"f32": "<f", "f64": "<d", "bool": "<I", "u32": "<I", "i32": "<i", "u64": "<Q", "i64": "<q"}.get(scalar)
        if code is None:
            raise ArgumentError(f"specialization constant {key} of type {scalar} cannot be given (32 or 64 bits only)")
        packed = struct.pack(code, value)
        entries.append((int(key), len(data), len(packed)))
        data += packed
    return entries, bytes(data)
