"""``kp.build``: kernels through a target's stages, with the compile cache and stage dumps.

Every build, of kernels (:func:`compile_kernels`) or of LLVM IR brought for a device
(:func:`run_units`, which ``device_module_from_ir`` enters after the ``llir`` stage), runs each
unit through the target's stages, from the cache where it has the unit, the units of a
per-kernel target at once (each stage that compiles runs in a child process of its own).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

from ..errors import CompileError
from ..runtime.device import with_hidden
from ..runtime.module import Module
from ..runtime.signature import Signature
from . import cache as disk
from .gridexpr import grid_expressions
from .hidden import hidden_params
from .lang import kir
from .targets import Function, Options, Target, Unit, device_targets, get_target

__all__ = ["KernelSource", "build", "compile_kernels", "run_units"]


@runtime_checkable
class KernelSource(Protocol):
    """What a build needs of a kernel: ``@kp.kernel`` functions are these."""

    @property
    def name(self) -> str: ...

    kir: kir.Kernel
    signature: Signature


def build(
    kernels: Iterable[KernelSource],
    target: str = "cpu",
    *,
    name: str | None = None,
    cache: bool = True,
    devices: Iterable[str] | Mapping[str, Mapping[str, Any]] = (),
    dump: str | os.PathLike[str] | None = None,
    boundscheck: bool | None = None,
    **options: Any,
) -> Module:
    """Compile kernels into one module.

    Parameters
    ----------
    kernels : iterable of Kernel
        The kernels, each decorated with ``@kp.kernel``; names must differ.
    target : {"cpu", "cuda", "opencl", "vulkan", "interpret"}
        ``"cpu"`` gives an ``llvm`` module; ``"cuda"`` a ``cuda`` module (PTX, and a cubin where
        ptxas is installed); ``"opencl"`` an ``opencl`` module (SPIR-V 1.2); ``"vulkan"`` a
        ``vulkan`` module (a compute shader per kernel). ``"interpret"`` compiles nothing: a
        ``python`` module whose functions run the reference interpreter (slow; for debugging).
    name : str, optional
        The module's name; the kernels' names joined by ``+`` by default.
    cache : bool, default True
        Use the on-disk compile cache (see ``kernpack.driver.cache``; ``KERNPACK_CACHE=0``
        turns it off everywhere).
    devices : iterable of str, or mapping of str to dict
        With a host target (``"cpu"``): device targets to build as well, each with its
        default options (``["cuda", "vulkan"]``) or the options given
        (``{"cuda": {"arch": "sm_90"}, "opencl": {}}``). The host module imports one module
        per device, so one exported library carries them all.
    dump : path, optional
        Write every stage's output here: ``<kernel>.kir``, then ``<unit>.<target>.<suffix>``
        for each stage (``.ll``, ``.ptx``, ``.cubin``, ``.spv``, ``.bc``, ``.o``).
    boundscheck : bool, optional
        Check every index against its array's extent: the first out-of-range access of a call
        raises :class:`~kernpack.KernelIndexError` (an ``IndexError``) after it, naming the
        kernel, the array, the indices, the shape and the line. By default as each kernel was
        declared (``@kp.kernel(boundscheck=True)``, or ``KERNPACK_BOUNDSCHECK=1``); off
        otherwise, as checks cost time (``docs/kernel-language.md``).
    **options
        The target's options, named for what they are: ``opt_level`` (LLVM's level, 0-3) for
        every target but vulkan, which has one pipeline; ``cpu`` (this machine's by default, or
        ``"generic"`` for a portable export), ``threads`` (the cores available by default) and
        ``triple`` (another architecture to build for, ``"aarch64-linux-gnu"``: exported with
        its C compiler and run there) for ``"cpu"``; ``arch`` (``"sm_80"`` by default) for
        ``"cuda"``.

    Returns
    -------
    Module
        The target's module (for ``"cpu"`` an ``llvm`` module, RUNNABLE | DSO_EXPORTABLE)
        whose functions are the kernels.

    Raises
    ------
    CompileError
        If a kernel cannot be compiled for the target: the message names it, its line where
        the refusal has one, the target and what to write instead.
    ValueError
        If a target, device or option is unknown or out of range.
    """
    kernels = list(kernels)
    generic = [k for k in kernels if hasattr(k, "specialize") and not isinstance(k, KernelSource)]
    if generic:
        name = generic[0].__name__
        raise TypeError(
            f"{name} is a generic kernel: name its specialisations, e.g. kp.build([{name}.specialize(T=kp.f32)])"
        )
    if not kernels or not all(isinstance(k, KernelSource) for k in kernels):
        raise TypeError("kp.build() takes a list of @kp.kernel functions")
    names = [k.name for k in kernels]
    if len(set(names)) != len(names):
        raise ValueError(f"kernel names must differ in one module: {names}")
    spec = get_target(target)
    label = name or "+".join(names)
    wanted = _devices(devices)
    if wanted and spec.device:
        raise ValueError(f"devices= goes with a host target such as 'cpu'; {target!r} is itself a device target")
    checks = {"cache": cache, "dump": dump, "boundscheck": boundscheck}
    module = compile_kernels(spec, kernels, spec.make_options(options), label, **checks)
    for device, device_options in wanted.items():
        device_spec = get_target(device)
        device_module = compile_kernels(device_spec, kernels, device_spec.make_options(device_options), label, **checks)
        module.import_module(device_module)
    return module


def _devices(devices: Iterable[str] | Mapping[str, Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    wanted = dict(devices) if isinstance(devices, Mapping) else {device: {} for device in devices}
    for device in wanted:
        try:
            is_device = get_target(device).device
        except ValueError:
            is_device = False
        if not is_device:
            known = ", ".join(device_targets())
            raise ValueError(f"unknown device {device!r}; this version builds device code for {known}")
    return wanted


def compile_kernels(
    target: Target,
    kernels: list[KernelSource],
    options: Options,
    label: str,
    *,
    cache: bool = True,
    dump: str | os.PathLike[str] | None = None,
    boundscheck: bool | None = None,
) -> Module:
    """The target's module of ``kernels``: lower, run the stages (or find them cached), package.

    ``boundscheck``: check every index (True), none (False), or as each kernel says (None).
    """
    kirs = [_checked(k, boundscheck) for k in kernels]
    functions = [
        Function(k.name, _signature(k, ir, target), _grid(k, target)) for k, ir in zip(kernels, kirs, strict=True)
    ]
    if target.per_kernel:
        units = [Unit(f.name, options, [f], [ir]) for ir, f in zip(kirs, functions, strict=True)]
    else:
        units = [Unit(label, options, functions, kirs)]
    for unit, error in zip(units, _run_all(target, units, None, [b""] * len(units), cache), strict=True):
        if error is not None:
            raise _named(target, unit, error, kernels) from None
    if dump is not None:
        write_dump(dump, target, units, kernels)
    return target.package(units, label)


def run_units(
    target: Target, units: list[Unit], *, sources: list[bytes], given: str = "llir", cache: bool = True
) -> None:
    """Run every unit through the target's stages after ``given``, whose outputs ``sources`` are.

    This is how LLVM IR brought by a user enters a target's pipeline (``given="llir"``).

    Raises
    ------
    CompileError
        The first failing unit's error (in the units' order).
    """
    for error in _run_all(target, units, target.stage_index(given), sources, cache):
        if error is not None:
            raise error


def _run_all(
    target: Target, units: list[Unit], given: int | None, sources: list[bytes], cache: bool
) -> list[CompileError | None]:
    """Each unit's error, or None; the units run at once where there are several.

    ``given``: the index of the stage whose output ``sources`` are (None: every stage runs).
    """

    def one(item: tuple[Unit, bytes]) -> CompileError | None:
        unit, source = item
        try:
            _run_stages(target, unit, given, source, cache)
        except CompileError as exc:
            return exc
        return None

    if not target.stages:
        return [None] * len(units)
    if len(units) == 1:
        return [one((units[0], sources[0]))]
    import concurrent.futures  # here: a one-unit build (every cache hit) needs no thread pool (10 ms to import)

    with concurrent.futures.ThreadPoolExecutor(max_workers=min(len(units), os.cpu_count() or 1)) as pool:
        return list(pool.map(one, zip(units, sources, strict=True)))


def _run_stages(target: Target, unit: Unit, given: int | None, source: bytes, cache: bool) -> None:
    first = 0 if given is None else given + 1
    key = None
    if cache and disk.cache_enabled():
        key = disk.make_key(
            "stages",
            target.name,
            repr(unit.options),
            target.environment(unit.options) if target.environment else "",
            "" if given is None else target.stages[given].name,
            unit.label,
            json.dumps([[f.name, str(f.signature), list(f.grid)] for f in unit.functions]),
            json.dumps(unit.notes, sort_keys=True),
            *(str(k) for k in unit.kernels),
            source,
        )
        unit.cache_key = key
        hit = disk.load(key)
        if hit is not None and _NOTES in hit:
            unit.notes = json.loads(hit.pop(_NOTES))
            unit.artifacts = hit
            return
    if given is not None:
        unit.artifacts[target.stages[given].name] = source
    src = source
    for stage in target.stages[first:]:
        src = stage.run(src, unit)
        unit.artifacts[stage.name] = src
    if key is not None:
        disk.store(key, {**unit.artifacts, _NOTES: json.dumps(unit.notes).encode()})


_NOTES = "\0notes"  # the part of a cache entry that holds the unit's notes (no stage has this name)


def _named(target: Target, unit: Unit, error: CompileError, kernels: list[KernelSource]) -> CompileError:
    """The error said of the kernel at fault, which is found by compiling each alone if need be."""
    by_name = {k.name: k for k in kernels}
    suspects = [by_name[f.name] for f in unit.functions if f.name in by_name]
    named = [k for k in suspects if str(error).startswith(f"kernel {k.name!r}")]
    if named or len(suspects) == 1:
        return _blame((named or suspects)[0], target.name, error)
    # One child process compiled the whole unit, so a crash does not say whose kernel it was.
    for k in suspects:
        function = next(f for f in unit.functions if f.name == k.name)
        alone = Unit(k.name, unit.options, [function], [k.kir])
        try:
            _run_stages(target, alone, None, b"", cache=False)
        except CompileError as exc:
            return _blame(k, target.name, exc)
    return error


def _blame(k: KernelSource, target: str, exc: CompileError) -> CompileError:
    """``exc`` said of kernel ``k``: its name and where it is defined lead the message.

    A refusal that names the kernel and a line (``kernel 'k', line 12: ...``) gets the file
    too: ``kernel 'k' at path/to/kernels.py:12: ...``.
    """
    message = str(exc)
    code = getattr(getattr(k, "py_func", None), "__code__", None)
    if message.startswith(f"kernel {k.name!r}"):
        at_line = re.match(rf"kernel {re.escape(repr(k.name))}, line (\d+): ", message)
        if at_line and code is not None:
            return CompileError(f"kernel {k.name!r} at {code.co_filename}:{at_line[1]}: {message[at_line.end() :]}")
        return exc if type(exc) is CompileError else CompileError(message)  # a refusal that names it
    where = f" ({code.co_filename}:{code.co_firstlineno})" if code is not None else ""
    return CompileError(f"kernel {k.name!r}{where} could not be compiled for {target}: {message}")


def _checked(k: KernelSource, boundscheck: bool | None) -> kir.Kernel:
    """The kernel IR to build: with bounds checks where the build or the kernel asks for them."""
    if not (boundscheck if boundscheck is not None else getattr(k, "boundscheck", False)):
        return k.kir
    code = getattr(getattr(k, "py_func", None), "__code__", None)
    return dataclasses.replace(k.kir, boundscheck=True, filename=code.co_filename if code else "")


def _signature(k: KernelSource, ir: kir.Kernel, target: Target) -> Signature:
    """The kernel's signature as the target's module declares it (a device kernel's hidden arrays too)."""
    if not target.device:
        return k.signature
    return with_hidden(k.signature, hidden_params(ir))


def _grid(k: KernelSource, target: Target) -> tuple[str, ...]:
    """The kernel's grid extents as host expressions (for a device target), or a named refusal."""
    if not target.device:
        return ()
    try:
        return tuple(grid_expressions(k.kir))
    except CompileError as exc:
        raise _blame(k, target.name, exc) from None


def write_dump(
    directory: str | os.PathLike[str], target: Target, units: list[Unit], kernels: list[KernelSource] = ()
) -> None:
    """Write each kernel's IR and every stage's output of every unit into ``directory``."""
    os.makedirs(directory, exist_ok=True)
    for k in kernels:
        with open(os.path.join(directory, f"{k.name}.kir"), "w") as f:
            f.write(str(k.kir) + "\n")
    suffixes = {stage.name: stage.suffix for stage in target.stages}
    for unit in units:
        stem = unit.label
        if len(stem) > 100:  # a module of many kernels is named by all of them: too long for a file
            stem = f"{stem[:80]}-{disk.sha256_hex(stem.encode())[:12]}"
        for stage, output in unit.artifacts.items():
            if output:  # an empty output is a stage that had nothing to do (no ptxas for a cubin)
                with open(os.path.join(directory, f"{stem}.{target.name}{suffixes[stage]}"), "wb") as f:
                    f.write(output)
