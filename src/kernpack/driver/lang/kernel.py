"""``@kp.kernel`` and ``kp.build``: from a Python function to a runnable, exportable module."""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

from ...errors import CompileError
from ...runtime.pymodule import python_module
from ...runtime.signature import Param, Signature
from . import kir
from .frontend import parse_kernel
from .interpret import interpret
from .types import ArrayType

__all__ = ["Kernel", "build", "default_threads", "kernel"]


def default_threads() -> int:
    """Threads a kernel's grid uses by default: the cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class Kernel:
    """A function written in the kernel language, checked at decoration.

    Calling it compiles it for the host CPU on the first call (then reuses the code) and runs
    it on numpy arrays and scalars. ``kp.build([k, ...])`` puts several kernels in one module
    to export.

    Attributes
    ----------
    py_func : callable
        The original Python function; it also runs as plain (slow) Python.
    kir : kir.Kernel
        The typed kernel IR (``print(k.kir)`` shows it).
    signature : Signature
        The kernel's signature, arrays written ``T name[:]``.
    """

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.py_func = fn
        self.__name__ = fn.__name__
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn
        self.kir: kir.Kernel = parse_kernel(fn)
        self.signature = kernel_signature(self.kir)
        self._modules: dict[tuple[Any, ...], Any] = {}
        self._call: Callable[..., Any] | None = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        """The kernel's name (its symbol in compiled code)."""
        return self.kir.name

    def compile(self, *, cpu: str | None = None, threads: int | None = None, opt_level: int = 3) -> Any:
        """Return the ``llvm`` module of this kernel alone for these options (built once)."""
        key = (cpu, threads, opt_level)
        module = self._modules.get(key)
        if module is None:
            with self._lock:
                module = self._modules.get(key)
                if module is None:
                    module = build([self], cpu=cpu, threads=threads, opt_level=opt_level)
                    self._modules[key] = module
        return module

    def __call__(self, *args: Any) -> None:
        call = self._call
        if call is None:
            call = self._call = self.compile()[self.name]
        return call(*args)

    def interpret(self, *args: Any, perturb: int = 0) -> None:
        """Run the kernel by the language's definition, in Python: slow, every index checked.

        Unlike :attr:`py_func` (Python's own arithmetic), this is the semantics every target
        implements: fixed-width integers that wrap, float32 rounding, saturating casts, ...
        ``perturb`` moves every ``exp log sin cos tanh`` result by that many ulps (to see how
        much the outputs depend on a target's rounding of them).
        """
        interpret(self.kir, self.signature, args, perturb=perturb)

    def __repr__(self) -> str:
        return f"<kernpack kernel {self.signature}>"


def kernel(fn: Callable[..., Any]) -> Kernel:
    """Decorate a Python function as a kernpack kernel.

    The function is checked against the kernel language at once; anything outside it raises
    :class:`~kernpack.KernelSyntaxError` or :class:`~kernpack.KernelTypeError` pointing at the
    line.

    Examples
    --------
    >>> import numpy as np, kernpack as kp
    >>> @kp.kernel
    ... def saxpy(a: kp.f32, x: kp.f32[:], y: kp.f32[:], out: kp.f32[:]):
    ...     for i in kp.grid(out.shape[0]):
    ...         out[i] = a * x[i] + y[i]
    >>> x = np.arange(4, dtype=np.float32); out = np.empty_like(x)
    >>> saxpy(2.0, x, x, out)
    >>> out
    array([0., 3., 6., 9.], dtype=float32)
    """
    return functools.update_wrapper(Kernel(fn), fn, updated=())


def kernel_signature(k: kir.Kernel) -> Signature:
    """The C signature of a kernel: arrays as ``T name[:]``, const unless the kernel writes them."""
    params = []
    for name, t in k.params:
        if isinstance(t, ArrayType):
            params.append(Param(name, t.dtype.ctype, pointer=True, const=name not in k.written, ndim=t.ndim))
        else:
            params.append(Param(name, t.ctype))
    return Signature(k.name, tuple(params))


def build(
    kernels: Iterable[Kernel],
    target: str = "cpu",
    *,
    cpu: str | None = None,
    threads: int | None = None,
    opt_level: int = 3,
    name: str | None = None,
    cache: bool = True,
    devices: Iterable[str] = (),
) -> Any:
    """Compile kernels into one module.

    Parameters
    ----------
    kernels : iterable of Kernel
        The kernels, each decorated with ``@kp.kernel``; names must differ.
    target : {"cpu", "cuda", "opencl", "vulkan", "interpret"}
        The code generator: ``"cpu"`` gives an ``llvm`` module, ``"cuda"`` a ``cuda`` module
        (PTX for sm_80), ``"opencl"`` an ``opencl`` module (SPIR-V 1.2), ``"vulkan"`` a
        ``vulkan`` module (a compute shader per kernel). ``"interpret"`` compiles nothing: a
        ``python`` module whose functions run the reference interpreter (slow; for debugging).
    cpu : str, optional
        Target CPU: this machine's (default) or ``"generic"`` for a portable export; for
        ``target="cuda"`` the GPU architecture (``"sm_80"`` by default, e.g. ``"sm_90"``).
    threads : int, optional
        Threads the grid is split across; the cores available by default. Grids smaller than
        a few tens of thousands of points always run on the calling thread.
    opt_level : int, default 3
        LLVM optimization level.
    name : str, optional
        The module's name.
    cache : bool, default True
        Use the on-disk compile cache (see ``kernpack.driver.cache``; ``KERNPACK_CACHE=0``
        turns it off everywhere).
    devices : iterable of str
        With ``target="cpu"``: device targets to build as well; the host module imports one
        module per device, so one exported library carries them all.

    Returns
    -------
    LLVMModule
        A module of kind ``llvm`` (RUNNABLE | DSO_EXPORTABLE) whose functions are the kernels.
    """
    from .. import cache as disk
    from ..codegen.cpu import lower_kernels
    from ..llvm import LLVMModule, host_cpu_key, llvm_module

    kernels = list(kernels)
    if not kernels or not all(isinstance(k, Kernel) for k in kernels):
        raise TypeError("kp.build() takes a list of @kp.kernel functions")
    names = [k.name for k in kernels]
    if len(set(names)) != len(names):
        raise ValueError(f"kernel names must differ in one module: {names}")
    if target in _DEVICE_TARGETS:
        return _build_device(target, kernels, name or "+".join(names), cpu)
    if target == "interpret":
        return python_module({k.name: k.interpret for k in kernels})
    if target != "cpu":
        raise ValueError(
            f"unknown target {target!r}; this version builds for cpu, {', '.join(_DEVICE_TARGETS)} and interpret"
        )
    devices = list(devices)
    for device in devices:
        if device not in _DEVICE_TARGETS:
            raise ValueError(
                f"unknown device {device!r}; this version builds device code for {', '.join(_DEVICE_TARGETS)}"
            )
    threads = default_threads() if threads is None else int(threads)
    if threads < 1:
        raise ValueError(f"threads must be at least 1, not {threads}")
    label = name or "+".join(names)
    signatures = [k.signature for k in kernels]
    use_cache = cache and disk.cache_enabled()
    module = None
    if use_cache:
        key = disk.make_key(
            target, host_cpu_key(cpu), str(threads), str(opt_level), label, *(str(k.kir) for k in kernels)
        )
        hit = disk.load(key)
        if hit is not None:
            bitcode, object_code = hit
            module = LLVMModule(
                bitcode,
                {s.name: s for s in signatures},
                {},
                name=label,
                cpu=cpu,
                opt_level=opt_level,
                object_code=object_code,
            )
    if module is None:
        ir_module = lower_kernels([k.kir for k in kernels], label, threads)
        module = llvm_module(ir_module, name=label, opt_level=opt_level, cpu=cpu, signatures=signatures)
        if use_cache:
            disk.store(key, module._bitcode, module.jit_object())
    for device in devices:
        module.import_module(build(kernels, device, name=label))
    return module


_DEVICE_TARGETS = ("cuda", "opencl", "vulkan")


def _build_device(target: str, kernels: list[Kernel], label: str, cpu: str | None = None) -> Any:
    try:
        return _compile_device(target, kernels, label, cpu)
    except CompileError as exc:
        named = [k for k in kernels if str(exc).startswith(f"kernel {k.name!r}")]
        if len(kernels) == 1 or named:
            raise _blame((named or kernels)[0], target, exc) from None
        # One child process compiles the whole build, so a crash does not say whose kernel
        # it was: compile each alone to name the one at fault.
        for k in kernels:
            try:
                _compile_device(target, [k], k.name, cpu)
            except CompileError as alone:
                raise _blame(k, target, alone) from None
        raise


def _blame(k: Kernel, target: str, exc: CompileError) -> CompileError:
    """``exc`` said of kernel ``k``: its name and where it is defined lead the message."""
    message = str(exc)
    if message.startswith(f"kernel {k.name!r}"):
        return exc  # a refusal that already names it (and its line)
    code = getattr(k.py_func, "__code__", None)
    where = f" ({code.co_filename}:{code.co_firstlineno})" if code is not None else ""
    return CompileError(f"kernel {k.name!r}{where} could not be compiled for {target}: {message}")


def _compile_device(target: str, kernels: list[Kernel], label: str, cpu: str | None = None) -> Any:
    from ...runtime.cuda import CUDAModule
    from ...runtime.device import KernelEntry
    from ...runtime.opencl import OpenCLModule
    from ..codegen.grid import grid_expressions

    entries = [KernelEntry(k.name, k.signature, grid_expressions(k.kir)) for k in kernels]
    irs = [k.kir for k in kernels]
    if target == "cuda":
        from ..codegen.nvptx import DEFAULT_ARCH, assemble_cubin, compile_cuda

        arch = cpu or DEFAULT_ARCH
        ptx = compile_cuda(irs, label, arch=arch)
        cubin = assemble_cubin(ptx, arch, label)
        return CUDAModule(ptx.encode(), entries, {"cubin": cubin} if cubin else None)
    if target == "vulkan":
        from ...runtime.vulkan import vulkan_module
        from ..codegen.vulkan import WORKGROUP, compile_vulkan_all

        shaders = dict(zip([k.name for k in kernels], compile_vulkan_all(irs), strict=True))
        tables = [
            KernelEntry(e.name, e.signature, e.grid, {"workgroup": list(WORKGROUP[len(e.grid)])}) for e in entries
        ]
        return vulkan_module(shaders, tables)
    from ..codegen.spirv import compile_opencl

    return OpenCLModule(compile_opencl(irs, label), entries)
