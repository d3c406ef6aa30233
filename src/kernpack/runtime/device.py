r"""What every device module (``cuda``, ``opencl``, ``vulkan``) shares: payload and function table.

A device module is BINARY_SERIALIZABLE | RUNNABLE: it holds a binary the device's driver
loads (PTX or SPIR-V) and a function table that says, for each kernel, its signature and its
grid extents as expressions of its arguments (``"out.shape[0]"``, ``"(n + 1) // 2"``), so the
host can launch it without running any host code from the build. The expressions use integer
literals, scalar parameters, ``a.shape[d]``, ``+ - * // %`` (``//`` and ``%`` by zero are 0),
``min``/``max`` and the casts ``i8(e)`` .. ``u64(e)``, which wrap ``e`` to that type as the
kernel's own arithmetic would.

Payload layout (``save_to_bytes``)::

    b"KPDEVM\0\1"     magic and version (8 bytes)
    u32              header length
    header           UTF-8 JSON: {"format": ..., "functions": [{"name", "signature", "grid"}]}
    padding          zeros up to a multiple of 16
    binary           the PTX or SPIR-V (``size`` bytes), then optional further sections (a
                     cubin), each 16-byte aligned; the header's ``sections`` maps each name to
                     [offset, size] from the binary's start. All zero-copy views after load.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import json
import math
import os
import struct
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Self, TypeVar, cast

import numpy as np

from ..errors import ArgumentError, DeviceUnavailableError, FormatError, LoadError, UnsupportedOperationError
from .abi import CHECK_WORDS, HIDDEN_PARAMS, PRINT_WORDS, scratch_words
from .aggregates import pack
from .calling import as_array, convert_scalar
from .checks import index_error
from .devices import Device, DeviceArray, LaunchError
from .module import Module, ModulePropertyMask
from .printing import print_records
from .registry import register_describer
from .signature import Param, Signature

__all__ = [
    "DeviceFunction",
    "DeviceModule",
    "KernelEntry",
    "decode_payload",
    "describe_payload",
    "encode_payload",
    "is_spirv",
    "load_binary_file",
    "read_side_file",
    "runtime_once",
    "with_hidden",
]

_MAGIC = b"KPDEVM\x00\x01"
_SPIRV_MAGIC = (0x07230203).to_bytes(4, "little")


def is_spirv(code: bytes | memoryview) -> bool:
    """True if ``code`` starts like a little-endian SPIR-V module (magic + 4 header words)."""
    return len(code) >= 20 and len(code) % 4 == 0 and bytes(code[:4]) == _SPIRV_MAGIC


class KernelEntry:
    """One kernel of a device module.

    Its signature, its grid extents (as expressions of the arguments) and target-specific
    attributes (``attrs``: JSON-able, e.g. where a Vulkan shader starts).
    """

    def __init__(
        self, name: str, signature: Signature | str, grid: Iterable[str], attrs: Mapping[str, Any] | None = None
    ) -> None:
        self.attrs = dict(attrs or {})
        types = self.attrs.get("types")  # structs the kernel takes by value
        self.signature = signature if isinstance(signature, Signature) else Signature.parse(signature, types)
        if self.signature.name != name:
            raise ValueError(f"signature {self.signature} does not name kernel {name!r}")
        self.name = name
        self.grid = tuple(grid)
        if not 1 <= len(self.grid) <= 3:
            raise ValueError(f"kernel {name!r}: a grid has 1 to 3 extents, not {len(self.grid)}")
        self._extents = [_compile_extent(e, self.signature) for e in self.grid]

    @classmethod
    def of(cls, spec: KernelEntry | Mapping[str, Any], options: Iterable[str] = ()) -> KernelEntry:
        """An entry from a ``{"name", "signature", "grid"[, "attrs"]}`` mapping (or itself).

        ``options`` are the further keys the mapping may have (``"workgroup"``), which go into
        the attributes.

        Raises
        ------
        ArgumentError
            If the mapping has another key, or lacks one of the three.
        """
        if isinstance(spec, KernelEntry):
            return spec
        allowed = {"name", "signature", "grid", "attrs", "types", *options}
        unknown = sorted(set(spec) - allowed)
        missing = [k for k in ("name", "signature", "grid") if k not in spec]
        if unknown or missing:
            what = f"has no key {', '.join(map(repr, unknown))}" if unknown else f"lacks {', '.join(missing)}"
            raise ArgumentError(
                f"kernel description {spec.get('name', '?')!r} {what}; it takes {', '.join(sorted(allowed))}"
            )
        attrs = {k: v for k, v in spec.items() if k not in ("name", "signature", "grid", "attrs")}
        return cls(spec["name"], spec["signature"], spec["grid"], {**attrs, **(spec.get("attrs") or {})})

    def extents(self, arrays: Mapping[str, np.ndarray], scalars: Mapping[str, Any]) -> tuple[int, ...]:
        """The grid extents for these arguments."""
        return tuple(int(f(arrays, scalars)) for f in self._extents)

    def evaluate(self, size: int | str, args: list[Any]) -> int:
        """A size given as bytes or as an extent expression (``"4 * n"``), for a launch's ``args``."""
        if isinstance(size, int):
            return size
        params = self.signature.params
        arrays = {p.name: v for p, v in zip(params, args, strict=True) if p.pointer and v is not None}
        scalars = {p.name: v for p, v in zip(params, args, strict=True) if not p.pointer}
        return int(_compile_extent(size, self.signature)(arrays, scalars))

    def reconfigured(self, workgroup: list[int] | None, **attrs: Any) -> KernelEntry:
        """The entry with another workgroup (None: the same) and the further ``attrs`` that are not None.

        Raises
        ------
        ArgumentError
            If the kernel combines its workgroup's values after its grid (an epilogue): its
            workgroup is fixed when it is built.
        """
        changed = {**self.attrs, **{k: v for k, v in attrs.items() if v is not None}}
        if workgroup is not None:
            if "scratch" in self.attrs and list(workgroup) != list(self.attrs["workgroup"]):
                raise ArgumentError(
                    f"kernel {self.name!r} combines its workgroup's values after the grid: its workgroup "
                    f"{self.attrs['workgroup']} is fixed when it is built"
                )
            changed["workgroup"] = list(workgroup)
        return KernelEntry(self.name, self.signature, self.grid, changed)

    def check_workgroup(self, most: int | None = None) -> None:
        """Refuse a malformed ``attrs["workgroup"]``: 1 to 3 positive integers, at most ``most`` in all.

        Raises
        ------
        ArgumentError
            Naming the kernel and the workgroup.
        """
        workgroup = self.attrs.get("workgroup")
        if workgroup is not None and not (
            isinstance(workgroup, list | tuple)
            and 1 <= len(workgroup) <= 3
            and all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in workgroup)
            and (most is None or math.prod(workgroup) <= most)
        ):
            limit = "" if most is None else f" of at most {most} work-items in all"
            raise ArgumentError(f"kernel {self.name!r}: workgroup {workgroup!r} is not 1 to 3 positive integers{limit}")

    def check_size(self, what: str, size: Any) -> None:
        """Refuse a size (``what``) that is neither bytes (an int >= 0) nor an extent expression.

        Raises
        ------
        ArgumentError
            Naming the kernel and ``what``.
        """
        if isinstance(size, bool) or not isinstance(size, int | str) or (isinstance(size, int) and size < 0):
            raise ArgumentError(
                f'kernel {self.name!r}: {what} has size {size!r}; give bytes (an int, or an extent such as "4 * n")'
            )
        if isinstance(size, str):
            _compile_extent(size, self.signature)  # a bad expression is refused now

    def to_json(self) -> dict[str, Any]:
        """The entry as JSON-able data."""
        entry = {"name": self.name, "signature": str(self.signature), "grid": list(self.grid)}
        if self.attrs:
            entry["attrs"] = self.attrs
        return entry


def encode_payload(
    fmt: str,
    functions: Iterable[KernelEntry],
    binary: bytes | memoryview,
    sections: Mapping[str, bytes | memoryview] | None = None,
) -> bytes:
    """Serialize a device module (see the module docstring)."""
    body = bytearray(binary)
    table = {}
    for name, data in sorted((sections or {}).items()):
        body += bytes(-len(body) % 16)
        table[name] = [len(body), len(data)]
        body += bytes(data)
    doc = {"format": fmt, "functions": [f.to_json() for f in functions], "size": len(binary)}
    if table:
        doc["sections"] = table
    header = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    start = len(_MAGIC) + 4 + len(header)
    return _MAGIC + struct.pack("<I", len(header)) + header + bytes(-start % 16) + bytes(body)


def decode_payload(data: bytes | memoryview) -> tuple[str, list[KernelEntry], memoryview, dict[str, memoryview]]:
    """Parse a device module payload; the binary and sections are zero-copy views of ``data``."""
    view = memoryview(data).cast("B")
    if bytes(view[: len(_MAGIC)]) != _MAGIC or len(view) < len(_MAGIC) + 4:
        raise FormatError("not a kernpack device module (bad magic or version)")
    (length,) = struct.unpack_from("<I", view, len(_MAGIC))
    start = len(_MAGIC) + 4
    if start + length > len(view):
        raise FormatError(f"device module header claims {length} bytes, only {len(view) - start} remain")
    try:
        header = json.loads(bytes(view[start : start + length]))
        functions = [KernelEntry.of(f) for f in header["functions"]]
        fmt = str(header["format"])
        body = start + length
        body = view[body + (-body % 16) :]
        size = int(header.get("size", len(body)))
        sections = {}
        for name, (offset, count) in header.get("sections", {}).items():
            if not 0 <= offset <= offset + count <= len(body):
                raise ValueError(f"section {name!r} lies outside the payload")
            sections[str(name)] = body[offset : offset + count]
        if not 0 <= size <= len(body):
            raise ValueError("binary size lies outside the payload")
    except (ValueError, KeyError, TypeError, ArgumentError) as exc:
        raise FormatError(f"corrupt device module header: {exc}") from None
    return fmt, functions, body[:size], sections


_T = TypeVar("_T")


def runtime_once(probe: Callable[[], _T]) -> Callable[[], _T]:
    """``probe`` (find the device, make a context) run once per process, whatever it gives.

    Later calls return the same runtime, or raise the same ``DeviceUnavailableError`` again
    (a fresh one with the same message): a machine without the device is probed once.
    """
    lock = threading.Lock()
    outcome: list[tuple[_T | None, str | None]] = []

    @functools.wraps(probe)
    def runtime() -> _T:
        if not outcome:
            with lock:
                if not outcome:
                    try:
                        outcome.append((probe(), None))
                    except DeviceUnavailableError as exc:
                        outcome.append((None, str(exc)))
        value, reason = outcome[0]
        if reason is not None:
            raise DeviceUnavailableError(reason)
        return cast(_T, value)

    return runtime


_DEVICE_KINDS: dict[str, type[DeviceModule]] = {}


def load_binary_file(path: str, default_kind: str) -> DeviceModule:
    """A device binary (``k.spv``, ``k.ptx``) and its JSON side file (``k.json``) as a module.

    The side file's ``"target"`` names the kind (``default_kind`` when it says none), whose
    :meth:`DeviceModule.from_binary` checks the binary.
    """
    doc = read_side_file(path)
    kind = str(doc.get("target", default_kind))
    cls = _DEVICE_KINDS.get(kind)
    if cls is None:
        raise LoadError(
            f"cannot load {path!r}: its side file names target {kind!r}; device kinds: {', '.join(_DEVICE_KINDS)}"
        )
    with open(path, "rb") as f:
        binary = f.read()
    return cls.from_binary(binary, doc["functions"], path)


def describe_payload(data: bytes | memoryview) -> list[dict[str, Any]]:
    """The functions of a device module payload (every device kind's describer, for inspect)."""
    _, functions, _, _ = decode_payload(data)
    return [{"name": f.name, "signature": str(f.signature), "grid": list(f.grid)} for f in functions]


class DeviceModule(Module):
    """Base of the device kinds.

    Subclasses set ``kind`` and ``binary_format`` and implement :meth:`_runtime`,
    :meth:`_launch` and :meth:`from_binary`. Every subclass with a kind is found by it (a side
    file's ``"target"`` names it, :func:`load_binary_file`), and ``kernpack inspect`` reads its
    payloads with :func:`describe_payload`: all device kinds share the payload format.
    """

    property_mask = ModulePropertyMask.BINARY_SERIALIZABLE | ModulePropertyMask.RUNNABLE
    binary_format: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            _DEVICE_KINDS[cls.kind] = cls
            register_describer(cls.kind)(describe_payload)

    @classmethod
    def from_binary(cls, binary: bytes, functions: list[Any], path: str) -> DeviceModule:
        """A module of this kind from a device binary file (``path``) and its functions.

        Raises
        ------
        LoadError
            If the binary is not one this kind runs; the message names ``path``.
        """
        raise LoadError(f"cannot load {path!r}: kind {cls.kind!r} does not load binary files")

    def __init__(
        self,
        binary: bytes | memoryview,
        functions: Iterable[KernelEntry],
        sections: Mapping[str, bytes | memoryview] | None = None,
    ) -> None:
        super().__init__()
        self.binary = binary
        self.sections = dict(sections or {})  # further binaries, e.g. a cubin beside the PTX
        self.functions = {f.name: f for f in functions}
        # What the driver made of this module (program, module, pipelines), built on first use
        # and released by the finalizer, which holds the dict but not the module: on close(),
        # or when the module is collected. At exit the process's teardown frees it all.
        self._loaded: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._finalizer = weakref.finalize(self, type(self)._release, self._loaded)
        self._finalizer.atexit = False

    @classmethod
    def from_bytes(cls, data: bytes | memoryview) -> Self:
        """Rebuild a module from :meth:`save_to_bytes` output (the kind's registered loader)."""
        fmt, functions, binary, sections = decode_payload(data)
        if fmt != cls.binary_format:
            raise FormatError(f"a {cls.kind} module holds {cls.binary_format}, not {fmt}")
        return cls(binary, functions, sections)

    @property
    def signatures(self) -> dict[str, Signature]:
        """The signature of every kernel."""
        return {name: f.signature for name, f in self.functions.items()}

    def _own_function_names(self) -> tuple[str, ...]:
        return tuple(self.functions)

    def _check_open(self) -> None:
        if self._closed:
            raise UnsupportedOperationError(f"{self!r} is closed; load or build it again")

    @staticmethod
    def _release(loaded: dict[str, Any]) -> None:
        """Destroy the driver objects in ``loaded`` (kinds whose objects Python does not free)."""
        loaded.clear()

    def _close(self) -> None:
        with self._lock:
            self._closed = True
            # The binary may be a view into a loaded library: drop it so the library can unmap.
            self.binary = b""
            self.sections = {}
        self._finalizer()

    def _get_own_function(self, name: str) -> DeviceFunction | None:
        self._check_open()
        entry = self.functions.get(name)
        if entry is None:
            return None
        # Not cached on the module: the function holds its module, and a cache would close the
        # cycle that keeps a dropped module (and its driver objects) alive until the next GC.
        return DeviceFunction(self, entry)

    def _save_to_bytes(self) -> bytes:
        self._check_open()
        return encode_payload(self.binary_format, self.functions.values(), self.binary, self.sections)

    @staticmethod
    def _runtime() -> Any:
        """The process-wide device runtime (see :func:`runtime_once`).

        Raises
        ------
        DeviceUnavailableError
            Why there is none here: what is missing and how to get it.
        """
        raise NotImplementedError

    def is_available(self) -> bool:
        """True if this machine can run the module (without raising)."""
        return self.unavailable_reason() is None

    def unavailable_reason(self) -> str | None:
        """Why the device cannot run here (what is missing and how to get it), or None."""
        try:
            self._runtime()
        except DeviceUnavailableError as exc:
            return str(exc)
        return None

    def _launch(self, entry: KernelEntry, args: list[Any], grid: tuple[int, ...]) -> None:
        raise NotImplementedError

    def _device(self) -> Device | None:
        """The device this module launches on, for kinds that have device arrays (else None)."""
        return None

    def _configure(self, entry: KernelEntry, options: dict[str, Any]) -> KernelEntry:
        """``entry`` with launch ``options`` (see :meth:`DeviceFunction.configure`), checked.

        Each kind takes the options it knows from ``options`` and calls this for the rest.

        Raises
        ------
        ArgumentError
            If an option is not one this kind takes.
        """
        unknown = [name for name, value in options.items() if value is not None]
        if unknown:
            raise ArgumentError(
                f"kernel {entry.name!r} on {self.kind}: no launch option {', '.join(map(repr, unknown))} here "
                f"(see DeviceFunction.configure for what each device kind takes)"
            )
        return entry

    def loop_limit(self) -> int | None:
        """The loop iterations after which this kind's driver cuts a work-item short (None: no limit)."""
        return None

    def __repr__(self) -> str:
        state = ", closed" if self._closed else ""
        return f"Module[{self.kind}](functions={list(self.functions)}{state})"


def with_hidden(signature: Signature, names: list[str]) -> Signature:
    """``signature`` with the hidden arrays ``names`` after its own (``abi.HIDDEN_PARAMS``)."""
    hidden = tuple(Param(name, "uint32_t", pointer=True, ndim=1) for name in names)
    return dataclasses.replace(signature, params=(*signature.params, *hidden))


class DeviceFunction:
    """A kernel of a device module, called like the CPU kernel: arrays in, results written back."""

    def __init__(self, module: DeviceModule, entry: KernelEntry) -> None:
        self.module = module
        self.entry = entry
        # A kernel with statements after its grid takes the launch's scratch, a bounds-checked
        # one its record, after its own parameters: the caller does not see them (see abi).
        self.scratch = entry.attrs.get("scratch")
        self.checks = entry.attrs.get("checks")
        self.prints = entry.attrs.get("prints")
        self.loop_guard = entry.attrs.get("loop_guard")
        hidden = sum(attr in entry.attrs for _, attr in HIDDEN_PARAMS)
        # OpenCL ``__local`` parameters get workgroup memory of a given size, not an argument.
        self.local = entry.attrs.get("local") or {}
        own = entry.signature.params[: len(entry.signature.params) - hidden]
        self.signature = entry.signature
        if hidden or self.local:
            visible = tuple(p for p in own if p.name not in self.local)
            self.signature = dataclasses.replace(entry.signature, params=visible)
        self._own = own

    @property
    def name(self) -> str:
        """The kernel's name."""
        return self.entry.name

    def configure(
        self,
        *,
        workgroup: Iterable[int] | None = None,
        shared: int | None = None,
        local: Mapping[str, int] | None = None,
        specialization: Mapping[str | int, Any] | None = None,
    ) -> DeviceFunction:
        """The kernel launched another way: a new function (this one is unchanged).

        Parameters
        ----------
        workgroup : iterable of int, optional
            Work-items per workgroup along x, y, z (OpenCL's local size, CUDA's block). On
            Vulkan, the shader fixes it; a given one must agree.
        shared : int, optional
            CUDA: bytes of dynamic shared memory per block.
        local : mapping of str to int, optional
            OpenCL: bytes of each ``__local`` argument, by parameter name.
        specialization : mapping, optional
            Vulkan: values of specialization constants, by name or ``SpecId``, over the
            module's; each set of values gets its own pipeline.

        Raises
        ------
        ArgumentError
            If this kind takes no such option, or a value does not fit the kernel.
        """
        options = {
            "workgroup": None if workgroup is None else [int(w) for w in workgroup],
            "shared": shared,
            "local": local,
            "specialization": specialization,
        }
        return DeviceFunction(self.module, self.module._configure(self.entry, options))

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        if kwargs:
            args = self.signature.bind(args, kwargs)
        params = self.signature.params
        if len(args) != len(params):
            raise ArgumentError(
                f"{self.name}() takes {len(params)} argument{'s' * (len(params) != 1)} "
                f"({', '.join(p.name for p in params)}) but {len(args)} were given; signature: {self.signature}"
            )
        self.module._check_open()
        reason = self.module.unavailable_reason()
        if reason is not None:
            raise DeviceUnavailableError(f"cannot run {self.name} on {self.module.kind}: {reason}")
        values: list[Any] = []
        arrays: dict[str, np.ndarray] = {}
        scalars: dict[str, Any] = {}
        device = self.module._device()
        for index, (param, value) in enumerate(zip(params, args, strict=True)):
            try:
                if param.pointer and isinstance(value, DeviceArray):
                    values.append(arrays.setdefault(param.name, self._on_device(param, value, device)))
                elif param.layout is not None:
                    values.append(pack(param.layout, value))
                elif param.pointer:
                    # Another library's array on this device (a CuPy one on CUDA) is used in place.
                    other = None if device is None or isinstance(value, np.ndarray) else device.borrow(value)
                    if other is not None and param.is_output and device._read_only(other.buffer):
                        raise ArgumentError(
                            f"the {type(value).__name__} is read-only (its library lends it so), and the kernel "
                            "may write it; pass a writable array, or declare the parameter const if it only reads it"
                        )
                    array = as_array(param, value) if other is None else self._on_device(param, other, device)
                    values.append(arrays.setdefault(param.name, array))
                else:
                    values.append(scalars.setdefault(param.name, convert_scalar(param, value)))
            except (TypeError, ValueError, OverflowError) as err:
                raise ArgumentError(
                    f"{self.name}(): argument {param.name!r} (parameter {index + 1} of {len(params)}, {param}): {err}"
                ) from None
        grid = self.entry.extents(arrays, scalars)
        if self.local:  # a place for each __local parameter, which the launcher fills
            given = iter(values)
            values = [None if p.name in self.local else next(given) for p in self._own]
        if self.scratch is not None:
            grid = tuple(max(1, n) for n in grid)  # the epilogue runs even for an empty grid
            values.append(np.zeros(scratch_words(grid, self.entry.attrs["workgroup"], self.scratch), np.uint32))
        elif min(grid) <= 0:
            return
        record = np.zeros(CHECK_WORDS, np.uint32) if self.checks is not None else None
        if record is not None:
            values.append(record)
        prints = np.zeros(PRINT_WORDS, np.uint32) if self.prints is not None else None
        if prints is not None:
            values.append(prints)
        loops = np.zeros(1, np.uint32) if self.loop_guard is not None else None
        if loops is not None:
            values.append(loops)
        self.module._launch(self.entry, values, grid)
        if loops is not None and loops[0] and self.module.loop_limit() is not None:
            driver = getattr(self.module._device(), "name", self.module.kind)
            raise LaunchError(
                f"kernel {self.name!r} on {self.module.kind}: a work-item ran {self.loop_guard} or more loop "
                f"iterations, and this driver ({driver}) stops a work-item's loops after "
                f"{self.module.loop_limit()} in all without a word, so its results would be wrong; run it on "
                "cpu or opencl, or give each grid point less serial work"
            )
        # Both are read back with the results: the launch waited for them.
        if prints is not None:
            print_records(self.name, prints, self.prints)
        if record is not None:
            error = index_error(self.name, record, self.checks)
            if error is not None:
                raise error

    def _on_device(self, param: Param, array: DeviceArray, device: Device | None) -> DeviceArray:
        """``array`` if this kernel (on ``device``) can take it as it is: its device, dtype, rank."""
        if array.device is not device:
            where = f"{device}" if device is not None else f"a {self.module.kind} kernel (it has no device arrays)"
            raise ArgumentError(
                f"{array!r} lives on another device than {where}; pass a numpy array "
                "(array.numpy()) or an array of this kernel's device"
            )
        if (param.dtype is not None and array.dtype != param.dtype) or (param.ndim and array.ndim != param.ndim):
            rank = param.ndim or "any number of"
            raise ArgumentError(f"expected {param.ctype} with {rank} dimensions, got {array!r}")
        return array

    def __repr__(self) -> str:
        return f"<{self.module.kind} kernel {self.signature}>"


# ---------------------------------------------------------------------------- grid extents
_BINOPS: dict[type, Callable[[int, int], int]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.FloorDiv: lambda a, b: a // b if b else 0,
    ast.Mod: lambda a, b: a % b if b else 0,
}


# Casts an extent may use, written like the kernel language's types: ``u8(n - 1)`` is n - 1
# wrapped to 8 bits unsigned, as the kernel computes it (modulus, lowest value).
_WRAP: dict[str, tuple[int, int]] = {
    f"{kind}{bits}": (1 << bits, -(1 << (bits - 1)) if kind == "i" else 0) for kind in "iu" for bits in (8, 16, 32, 64)
}


@functools.lru_cache(maxsize=1024)
def _parse_extent(text: str) -> ast.expr:
    try:
        return ast.parse(text, mode="eval").body
    except SyntaxError:
        raise FormatError(f"grid extent {text!r} is not an expression") from None


@functools.lru_cache(maxsize=4096)  # the functions are pure: a library's kernels repeat their extents
def _compile_extent(text: str, signature: Signature) -> Callable[[Mapping[str, Any], Mapping[str, Any]], int]:
    """Turn an extent expression into a function of (arrays, scalars); refuse anything else."""
    params = {p.name: p for p in signature.params}

    def build(node: ast.expr) -> Callable[[Mapping[str, Any], Mapping[str, Any]], int]:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            value = node.value
            return lambda arrays, scalars: value
        if (
            isinstance(node, ast.Name)
            and node.id in params
            and params[node.id].dtype is not None
            and not params[node.id].pointer
        ):
            name = node.id
            return lambda arrays, scalars: int(scalars[name])
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "shape"
            and isinstance(node.value.value, ast.Name)
            and node.value.value.id in params
            and params[node.value.value.id].ndim > 0
            and isinstance(node.slice, ast.Constant)
            and type(node.slice.value) is int
            and 0 <= node.slice.value < params[node.value.value.id].ndim
        ):
            array, dim = node.value.value.id, node.slice.value
            return lambda arrays, scalars: arrays[array].shape[dim]
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            op, left, right = _BINOPS[type(node.op)], build(node.left), build(node.right)
            return lambda arrays, scalars: op(left(arrays, scalars), right(arrays, scalars))
        if (
            isinstance(node, ast.UnaryOp)
            and isinstance(node.op, ast.USub)
            and isinstance(node.operand, ast.Constant)
            and type(node.operand.value) is int
        ):
            negative = -node.operand.value
            return lambda arrays, scalars: negative
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in _WRAP
            and len(node.args) == 1
            and not node.keywords
        ):
            inner, (modulus, low) = build(node.args[0]), _WRAP[node.func.id]
            return lambda arrays, scalars: (inner(arrays, scalars) - low) % modulus + low
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("min", "max"):
            pick = min if node.func.id == "min" else max
            parts = [build(a) for a in node.args]
            if not parts or node.keywords:
                raise FormatError(f"grid extent {text!r}: {node.func.id} needs arguments")
            return lambda arrays, scalars: pick(p(arrays, scalars) for p in parts)
        raise FormatError(f"grid extent {text!r} of {signature.name} uses {ast.unparse(node)!r}: {why(node)}")

    def why(node: ast.expr) -> str:
        """What is wrong with a part of an extent, and what to write instead."""
        allowed = (
            "an extent is built from integer literals, integer parameters, a[:]'s a.shape[d], "
            "+ - * // %, min, max and the casts i8() .. u64()"
        )
        shape_of = isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute)
        name = node.value.value if shape_of and isinstance(node.value.value, ast.Name) else node  # type: ignore[union-attr]
        if isinstance(name, ast.Name) and name.id not in params:
            return f"{name.id!r} is not a parameter ({', '.join(params) or 'it has none'}); {allowed}"
        param = params.get(name.id) if isinstance(name, ast.Name) else None
        if param is not None and param.pointer and not param.ndim:
            return (
                f"{param.name!r} is a plain pointer ({param}), which carries no length; declare it "
                f"{param.ctype} {param.name}[:] (its extents are then passed after it) or use an integer parameter"
            )
        if param is not None and param.pointer and not shape_of:
            return f"{param.name!r} is an array: use {param.name}.shape[0] (or another dimension); {allowed}"
        return allowed

    return build(_parse_extent(text))


def read_side_file(path: str) -> dict[str, Any]:
    """The JSON file that describes a device binary's functions: ``k.ptx`` -> ``k.json``."""
    side = os.path.splitext(path)[0] + ".json"
    try:
        with open(side, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        raise LoadError(
            f"cannot load {path!r}: its functions are described in a JSON side file, and {side!r} is missing; "
            'write {"functions": [{"name": ..., "signature": ..., "grid": [...]}]} there'
        ) from None
    except ValueError as exc:
        raise LoadError(f"cannot load {path!r}: {side!r} is not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("functions"), list):
        raise LoadError(f'cannot load {path!r}: {side!r} needs a "functions" list')
    return doc
