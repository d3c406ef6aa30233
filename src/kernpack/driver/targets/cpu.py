"""The ``cpu`` target: kernel IR -> LLVM IR for the host -> optimized bitcode -> machine code.

Stages: ``llir`` (:mod:`.cpu_codegen`: the kernel, its thread launcher and its worker),
``bc`` (verified and optimized for the CPU), ``obj`` (machine code for this process's JIT).
The package is an ``llvm`` module. A build the compile cache holds also gets a shared object
linked from that machine code (in the background, by the C compiler, where there is one), so
that a later process runs a cached kernel with ``dlopen`` and no LLVM at all: nothing here
imports llvmlite before a stage needs it.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from ...errors import LoadError
from ...runtime.elfcheck import check_shared_object
from ...runtime.module import Module
from .. import cache
from ..host import cpu_environment, default_threads
from ..llvm import LLVMModule, jit_object, optimize
from ..triples import normalize_triple
from ..util import HOST_LIBRARIES, c_compiler
from .base import Options, Stage, Target, Unit

__all__ = ["TARGET", "CPUOptions"]


@dataclass(frozen=True)
class CPUOptions(Options):
    """Options of the ``cpu`` target.

    ``cpu``: this machine's (None) or an LLVM CPU name (``"generic"`` for a portable export,
    ``"x86-64-v3"``); ``threads``: threads a grid is split across, the cores available by
    default (grids smaller than a few tens of thousands of points run on the calling thread);
    ``triple``: another architecture to build for (``"aarch64-linux-gnu"``; its CPU then
    ``"generic"`` unless named): code to export and run there, not here.
    """

    cpu: str | None = None
    threads: int | None = None
    triple: str | None = None
    hints: ClassVar[Mapping[str, str]] = {"arch": "another architecture is triple=, e.g. triple='aarch64-linux-gnu'"}

    def __post_init__(self) -> None:
        super().__post_init__()
        threads = default_threads() if self.threads is None else int(self.threads)
        if threads < 1:
            raise ValueError(f"threads must be at least 1, not {threads}")
        object.__setattr__(self, "threads", threads)  # resolved here: the cache key holds the count
        triple = normalize_triple(self.triple)
        object.__setattr__(self, "triple", triple)
        if triple is not None and self.cpu is None:  # "this machine's CPU" means nothing there
            object.__setattr__(self, "cpu", "generic")


def _lower(_: bytes, unit: Unit) -> bytes:
    assert isinstance(unit.options, CPUOptions)
    from .cpu_codegen import lower_kernels  # here: llvmlite loads when code is generated, not before

    threads = unit.options.threads or 1
    return str(lower_kernels(unit.kernels, unit.label, threads)).encode()


def _optimize(src: bytes, unit: Unit) -> bytes:
    assert isinstance(unit.options, CPUOptions)
    return optimize(src, unit.label, unit.options.opt_level, unit.options.cpu, unit.options.triple)[0]


def _machine_code(src: bytes, unit: Unit) -> bytes:
    assert isinstance(unit.options, CPUOptions)
    return jit_object(src, unit.options.cpu, unit.options.opt_level, triple=unit.options.triple)


def _package(units: list[Unit], name: str) -> Module:
    (unit,) = units
    assert isinstance(unit.options, CPUOptions)
    shared_object = None
    # A cross build runs elsewhere; a cache directory others can write to is not trusted.
    if unit.cache_key is not None and unit.options.triple is None and cache.local_usable():
        path = cache.native_path(unit.cache_key)
        try:
            check_shared_object(str(path))
            shared_object = str(path)
        except LoadError:  # not linked yet, or damaged since: link it (again) for the next process
            _link_in_background(unit.artifacts["obj"], path)
    return LLVMModule(
        unit.artifacts["bc"],
        {f.name: f.signature for f in unit.functions},
        {},
        name=name,
        cpu=unit.options.cpu,
        opt_level=unit.options.opt_level,
        object_code=unit.artifacts["obj"],
        shared_object=shared_object,
        cache_key=unit.cache_key,
        triple=unit.options.triple,
    )


_linking: set[str] = set()  # shared objects this process is linking now
_linking_lock = threading.Lock()


def _link_in_background(object_code: bytes, path: os.PathLike[str]) -> None:
    """Link the machine code into a shared object at ``path`` for later processes, off this thread.

    The C compiler takes about 20 ms: on a thread that is not a daemon, so the interpreter
    waits for it at exit rather than the first call waiting for it now. No compiler, or a link
    that fails, leaves no shared object, and later processes use LLVM as before.
    """
    key = os.fspath(path)
    with _linking_lock:
        if key in _linking:
            return
        _linking.add(key)
    threading.Thread(target=_link, args=(object_code, key), name="kernpack-cache-link").start()


def _link(object_code: bytes, path: str) -> None:
    import subprocess  # here, on the linking thread: a cache hit imports neither
    import tempfile

    temporaries: list[str] = []
    try:
        directory = os.path.dirname(path)
        os.makedirs(directory, exist_ok=True)
        for suffix in (".o", ".so"):
            fd, name = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=directory)
            os.close(fd)
            temporaries.append(name)
        source, linked = temporaries
        with open(source, "wb") as f:
            f.write(object_code)
        command = [*c_compiler(), "-shared", "-Wl,-z,text", "-o", linked, source, *HOST_LIBRARIES]
        if subprocess.run(command, capture_output=True).returncode == 0:
            os.replace(linked, path)  # a reader sees the whole file or none
            cache.publish_native(os.path.basename(path).removesuffix(".so"))  # for the shared tier
    except OSError:
        pass  # no compiler, a full disk, a read-only cache: the next process uses LLVM
    finally:
        for name in temporaries:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
        with _linking_lock:
            _linking.discard(path)


def _environment(options: Options) -> str:
    assert isinstance(options, CPUOptions)
    return cpu_environment(options.cpu)


TARGET = Target(
    name="cpu",
    options=CPUOptions,
    stages=(Stage("llir", ".ll", _lower), Stage("bc", ".bc", _optimize), Stage("obj", ".o", _machine_code)),
    package=_package,
    device=False,
    environment=_environment,
)
