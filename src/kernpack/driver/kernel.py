"""``@kp.kernel``: a Python function checked against the kernel language, callable at once.

The front end (:mod:`.lang`) turns the function into typed kernel IR; calling the kernel builds
it for the host through :func:`.build.build` (once per set of options) and runs it.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

from ..runtime.signature import Param, Signature
from .lang import kir
from .lang.frontend import parse_kernel
from .lang.interpret import interpret
from .lang.types import ArrayType

__all__ = ["Kernel", "kernel", "kernel_signature"]


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
                    # Imported here, not above, so that defining a kernel loads no LLVM: only
                    # building does (a cycle there is none: build never imports this module).
                    from .build import build

                    module = build([self], "cpu", cpu=cpu, threads=threads, opt_level=opt_level)
                    self._modules[key] = module
        return module

    def __call__(self, *args: Any) -> None:
        call = self._call
        if call is None:
            function = self.compile()[self.name]
            call = self._call = function.native_entry or function
            if function.native_entry is not None:
                # From now on, calling the kernel is calling its native entry point: a builtin
                # set as __call__ of a class of its own is called without this frame (a builtin
                # binds no self), which halves the cost of a call (about 320 -> 150 ns).
                self.__class__ = type(type(self).__name__, (type(self),), {"__call__": call, "__slots__": ()})
        return call(*args)

    def interpret(self, *args: Any, perturb: int = 0, alternate: bool = False) -> None:
        """Run the kernel by the language's definition, in Python: slow, every index checked.

        Unlike :attr:`py_func` (Python's own arithmetic), this is the semantics every target
        implements: fixed-width integers that wrap, float32 rounding, saturating casts, ...
        ``perturb`` moves every ``exp log sin cos tanh`` result by that many ulps (to see how
        much the outputs depend on a target's rounding of them); with ``alternate``, every other
        call of them the other way.
        """
        interpret(self.kir, self.signature, args, perturb=perturb, alternate=alternate)

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
