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
from . import workers
from .gridexpr import grid_expressions
from .hidden import hidden_params
from .host import default_threads
from .lang import kir
from .targets import Function, Options, Target, Unit, device_targets, get_target

__all__ = ["KernelSource", "build", "build_jobs", "compile_kernels", "compile_targets", "compile_unit", "run_units"]


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
    jobs: int | None = None,
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
    jobs : int, optional
        Processes to compile in: the cores available by default (``KERNPACK_JOBS`` overrides),
        1 for this process alone. A build of enough kernels (the host's and every device's
        units together) is spread over that many worker processes, kept for later builds; the
        output is the same, byte for byte, whatever the number.
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
    plans = [(spec, spec.make_options(options))]
    plans += [(get_target(d), get_target(d).make_options(o)) for d, o in wanted.items()]
    module, *device_modules = compile_targets(
        plans, kernels, label, cache=cache, dump=dump, boundscheck=boundscheck, jobs=jobs
    )
    for device_module in device_modules:
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
    jobs: int | None = None,
) -> Module:
    """The target's module of ``kernels``: lower, run the stages (or find them cached), package.

    ``boundscheck``: check every index (True), none (False), or as each kernel says (None).
    """
    (module,) = compile_targets(
        [(target, options)], kernels, label, cache=cache, dump=dump, boundscheck=boundscheck, jobs=jobs
    )
    return module


def compile_targets(
    plans: list[tuple[Target, Options]],
    kernels: list[KernelSource],
    label: str,
    *,
    cache: bool = True,
    dump: str | os.PathLike[str] | None = None,
    boundscheck: bool | None = None,
    jobs: int | None = None,
) -> list[Module]:
    """A module of ``kernels`` for each (target, options), their units compiled together.

    Every unit of every target is one job, so that a worker compiles the CPU code while
    another makes the SPIR-V; each target's module is packaged from its units as before.
    """
    kirs = [_checked(k, boundscheck) for k in kernels]
    per_target: list[list[Unit]] = []
    for target, options in plans:
        functions = [
            Function(k.name, _signature(k, ir, target), _grid(k, target)) for k, ir in zip(kernels, kirs, strict=True)
        ]
        if target.per_kernel:
            per_target.append([Unit(f.name, options, [f], [ir]) for ir, f in zip(kirs, functions, strict=True)])
        else:
            per_target.append([Unit(label, options, functions, kirs)])
    work = [(target, unit) for (target, _), units in zip(plans, per_target, strict=True) for unit in units]
    errors = iter(_run_all(work, None, [b""] * len(work), cache, jobs))
    modules = []
    for (target, _), units in zip(plans, per_target, strict=True):
        for unit in units:
            error = next(errors)
            if error is not None:
                raise _named(target, unit, error, kernels) from None
        if dump is not None:
            write_dump(dump, target, units, kernels)
        modules.append(target.package(units, label))
    return modules


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
    for error in _run_all([(target, u) for u in units], target.stage_index(given), sources, cache, None):
        if error is not None:
            raise error


# A build is spread over worker processes only when it has at least this many kernels to
# compile (summed over the units the cache did not have): starting workers costs about half a
# second, more than a small build takes.
_PROCESS_MIN_KERNELS = 16


def _run_all(
    work: list[tuple[Target, Unit]], given: int | None, sources: list[bytes], cache: bool, jobs: int | None
) -> list[CompileError | None]:
    """Each unit's error, or None: cached units from the cache, the others compiled.

    ``given``: the index of the stage whose output ``sources`` are (None: every stage runs).
    Where several units miss the cache they compile at once: in worker processes for a large
    build, else on threads of this process (each device stage runs in a child process anyway).
    """
    results: list[CompileError | None] = [None] * len(work)
    missing = []
    for i, ((target, unit), source) in enumerate(zip(work, sources, strict=True)):
        if target.stages and not _from_cache(target, unit, given, source, cache):
            missing.append(i)
    if not missing:
        return results
    jobs = build_jobs(jobs)
    kernels = sum(max(1, len(work[i][1].functions)) for i in missing)
    if jobs > 1 and len(missing) > 1 and kernels >= _PROCESS_MIN_KERNELS:
        calls = [(work[i][0].name, work[i][1], given, sources[i]) for i in missing]
        outcomes = workers.run(compile_unit, calls, jobs, cost=lambda call: len(call[1].functions),
                               context=disk.worker_context())  # fmt: skip
        in_process = []
        for i, (ok, value) in zip(missing, outcomes, strict=True):
            if ok:
                work[i][1].artifacts, work[i][1].notes = value
            elif isinstance(value, CompileError):
                results[i] = value
            elif isinstance(value, workers.ChildDied):
                in_process.append(i)  # compiled here, as a build of one job would
            else:
                raise value
        if not in_process:
            return results
        missing = in_process

    def one(i: int) -> CompileError | None:
        target, unit = work[i]
        try:
            _compile_unit(target, unit, given, sources[i])
        except CompileError as exc:
            return exc
        return None

    if len(missing) == 1 or jobs == 1:
        outcomes = [one(i) for i in missing]
    else:
        import concurrent.futures  # here: a one-unit build (every cache hit) needs no thread pool (10 ms to import)

        with concurrent.futures.ThreadPoolExecutor(max_workers=min(len(missing), jobs)) as pool:
            outcomes = list(pool.map(one, missing))
    for i, outcome in zip(missing, outcomes, strict=True):
        results[i] = outcome
    return results


def build_jobs(jobs: int | None) -> int:
    """The processes a build may use: ``jobs``, else ``KERNPACK_JOBS``, else the cores available.

    Raises
    ------
    ValueError
        If the number is below 1 or not a number.
    """
    given = jobs if jobs is not None else os.environ.get("KERNPACK_JOBS") or default_threads()
    try:
        value = int(given)
    except (TypeError, ValueError):
        value = 0
    if value < 1:
        source = "jobs" if jobs is not None else "KERNPACK_JOBS"
        raise ValueError(f"{source}={given!r}: give the number of processes to compile in, 1 or more")
    return value


def _cache_key(target: Target, unit: Unit, given: int | None, source: bytes) -> str:
    return disk.make_key(
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


def _from_cache(target: Target, unit: Unit, given: int | None, source: bytes, cache: bool) -> bool:
    """Fill the unit from the cache if it has it (and note its key for the store); True on a hit."""
    if not (cache and disk.cache_enabled()):
        return False
    unit.cache_key = _cache_key(target, unit, given, source)
    hit = disk.load(unit.cache_key)
    if hit is None or _NOTES not in hit:
        return False
    unit.notes = json.loads(hit.pop(_NOTES))
    unit.artifacts = hit
    return True


def compile_unit(target_name: str, unit: Unit, given: int | None, source: bytes) -> tuple[dict[str, bytes], dict]:
    """Run a unit's stages and store them under its cache key: what a worker process does.

    Returns the unit's artifacts and notes; a refusal is raised as the CompileError it is.
    """
    _compile_unit(get_target(target_name), unit, given, source)
    return unit.artifacts, unit.notes


def _compile_unit(target: Target, unit: Unit, given: int | None, source: bytes) -> None:
    """Run the unit's stages after ``given`` (None: all) and store them where it has a cache key."""
    first = 0 if given is None else given + 1
    if given is not None:
        unit.artifacts[target.stages[given].name] = source
    src = source
    for stage in target.stages[first:]:
        src = stage.run(src, unit)
        unit.artifacts[stage.name] = src
    if unit.cache_key is not None:
        disk.store(unit.cache_key, {**unit.artifacts, _NOTES: json.dumps(unit.notes).encode()})


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
            _compile_unit(target, alone, None, b"")
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
