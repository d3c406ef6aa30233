"""What a target is: its options, its stages, how their output becomes a runtime module.

A build runs a target's stages in order, each a plain function ``stage(src, unit) -> bytes``:
the first lowers the kernel IR (``unit.kernels``) to LLVM IR, the next ones turn that into
what the device loads (PTX, SPIR-V, machine code). User LLVM IR enters the same list at the
``llir`` stage. Every stage's output is kept in ``unit.artifacts`` under the stage's name, which
is what ``--dump`` writes and what the compile cache stores; ``target.package`` then makes the
runtime module from the artifacts alone, so a cache hit packages without running LLVM.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ...runtime.device import KernelEntry
from ...runtime.module import Module
from ...runtime.signature import Signature
from .. import isolate
from ..lang import kir

__all__ = ["Function", "IRContract", "Options", "Stage", "Target", "Unit", "emit", "kernel_entries"]


@dataclass(frozen=True)
class Options:
    """A target's build options. Frozen and hashable: their ``repr`` is part of the cache key.

    A target subclasses it with the fields it takes (an architecture, a CPU, thread count),
    each with its default; ``opt_level`` is LLVM's optimization level, 0 to 3.
    """

    opt_level: int = 3
    #: What a name the target does not take means here (``{"cpu": "the GPU architecture is
    #: arch="}``), said beside the refusal.
    hints: ClassVar[Mapping[str, str]] = {}

    def __post_init__(self) -> None:
        if self.opt_level not in (0, 1, 2, 3):
            raise ValueError(f"opt_level must be 0, 1, 2 or 3, not {self.opt_level!r}")


@dataclass(frozen=True)
class Function:
    """What a built module says of one of its kernels: the signature, and for a device the grid."""

    name: str
    signature: Signature
    grid: tuple[str, ...] = ()


@dataclass
class Unit:
    """One run of a target's stages: every kernel of a build, or one for a per-kernel target.

    ``notes`` carries what a stage learns for a later one or for packaging (JSON-able: the
    cache keeps it with the artifacts).
    """

    label: str
    options: Options
    functions: list[Function]
    kernels: list[kir.Kernel] = field(default_factory=list)  # empty when entered with LLVM IR
    artifacts: dict[str, bytes] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)
    cache_key: str | None = None  # the compile-cache entry of its artifacts, when cached


@dataclass(frozen=True)
class Stage:
    """One step of a target's pipeline; ``suffix`` names its output file in dumps."""

    name: str
    suffix: str
    run: Callable[[bytes, Unit], bytes]


@dataclass(frozen=True)
class IRContract:
    """What LLVM IR a user brings for a device target must look like (``device_module_from_ir``)."""

    default_triple: str
    triples: str  # a regular expression every fitting triple matches
    triple_text: str  # the same, for messages
    calling_convention: str  # of a kernel ("" for a shader entered at a plain @main)
    pointer_spaces: tuple[int, ...]  # address spaces a buffer parameter may be in
    canonical_triple: str | None = None  # set in place of any fitting triple, where the loader needs it


@dataclass(frozen=True)
class Target:
    """A compilation target: options, stages, packaging. See the module docstring.

    Attributes
    ----------
    name : str
        What ``kp.build(..., target=name)`` selects.
    options : type of Options
        Its options dataclass.
    stages : tuple of Stage
        In order; the first lowers kernel IR to LLVM IR (stage ``llir``).
    package : callable
        ``package(units, name) -> Module``: the runtime module, from the units' artifacts.
    per_kernel : bool
        Each kernel is a unit of its own (a Vulkan shader is one module per entry point).
    device : bool
        Launched on a device over a grid: its functions carry grid extents, and a host
        module can import it (``kp.build(..., devices=[name])``).
    ir : IRContract, optional
        How user LLVM IR enters at ``llir`` (``device_module_from_ir``); None if it cannot.
    environment : callable, optional
        ``environment(options) -> str``: what else the output depends on (the host CPU's
        name and features for ``cpu=None``), for the cache key.
    """

    name: str
    options: type[Options]
    stages: tuple[Stage, ...]
    package: Callable[[list[Unit], str], Module]
    per_kernel: bool = False
    device: bool = True
    ir: IRContract | None = None
    environment: Callable[[Options], str] | None = None

    def make_options(self, given: Mapping[str, Any]) -> Options:
        """The target's options from keyword arguments, refusing ones it does not take."""
        known = [f.name for f in dataclasses.fields(self.options)]
        unknown = sorted(set(given) - set(known))
        if unknown:
            hint = "".join(f" ({self.options.hints[name]})" for name in unknown if name in self.options.hints)
            raise ValueError(
                f"target {self.name!r} takes the options {', '.join(known)}; not {', '.join(unknown)}{hint}"
            )
        return self.options(**given)

    def stage_index(self, name: str) -> int:
        """The position of stage ``name`` in :attr:`stages`."""
        for i, stage in enumerate(self.stages):
            if stage.name == name:
                return i
        raise ValueError(f"target {self.name!r} has no stage {name!r}: {', '.join(s.name for s in self.stages)}")


def kernel_entries(unit: Unit, attrs: Mapping[str, Any] | None = None) -> list[KernelEntry]:
    """The function table a device module of ``unit`` carries.

    ``attrs`` go to every kernel, and ``unit.notes["attrs"][name]`` (what lowering found, such
    as a reduction's scratch) to kernel ``name``.
    """
    own = unit.notes.get("attrs", {})
    return [KernelEntry(f.name, f.signature, f.grid, {**(attrs or {}), **own.get(f.name, {})}) for f in unit.functions]


def emit(text: str, triple: str, unit: Unit, **keywords: Any) -> bytes:
    """:func:`kernpack.driver.isolate.emit` for a stage; also LLVM's read-only analysis, if asked.

    ``unit.notes["readonly_of"]`` (set for user IR whose signatures were read from it) names
    the kernels whose read-only parameters to report: the answer goes to
    ``unit.notes["readonly"]``, found in the same child process as the code.
    """
    keywords.setdefault("label", repr(unit.label))  # what an error message calls the code
    if "readonly_of" in unit.notes:
        output, unit.notes["readonly"] = isolate.emit_with_readonly(text, triple, unit.notes["readonly_of"], **keywords)
        return output
    return isolate.emit(text, triple, **keywords)
