"""``@kp.kernel``: a Python function checked against the kernel language, callable at once.

The front end (:mod:`.lang`) turns the function into typed kernel IR; calling the kernel builds
it for the host through :func:`.build.build` (once per set of options) and runs it.

A definition the front end accepted before, on this machine and with the same compiler, is in
the compile cache's kernel index: its key is a hash of everything the typed IR depends on
(:mod:`.lang.definition`), its entry the kernel's signature and the cache entry of its host
code. Such a kernel is not parsed at decoration, and its first call opens that code's shared
object: a process reaches the first result of a cached kernel without the front end, the
build driver or LLVM. The typed IR is still there for whoever asks (:attr:`Kernel.kir`).
"""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ArgumentError, CompileError, KernpackError
from ..runtime.library import load_library
from ..runtime.signature import Param, Signature
from . import cache as disk
from .host import cpu_environment, default_threads
from .lang.definition import definition_parts
from .lang.namespace import annotations
from .lang.types import BY_DTYPE, ArrayType, GenericArrayType, ScalarType, TypeVar

if TYPE_CHECKING:
    from .lang import kir

__all__ = ["GenericKernel", "Kernel", "kernel", "kernel_signature"]


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

    def __init__(
        self, fn: Callable[..., Any], types: Mapping[TypeVar, ScalarType] | None = None, *, boundscheck: bool = False
    ) -> None:
        self.py_func = fn
        #: Built with every index checked (``kp.build`` may say otherwise).
        self.boundscheck = boundscheck
        self._types = dict(types or {})  # a specialisation of a generic kernel: its type variables, bound
        self.__name__ = fn.__name__
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn
        self._modules: dict[tuple[Any, ...], Any] = {}
        self._call: Callable[..., Any] | None = None
        self._lock = threading.RLock()  # compile() holds it while the build reads self.kir
        self._kir: kir.Kernel | None = None
        # A checked kernel is not in the index: it maps a definition to its unchecked code.
        self._index_key = None if boundscheck else _index_key(fn, self._types)
        entry = _index_load(self._index_key)
        if entry is not None:  # this definition passed the front end before: it would again
            self._name, self.signature, self._cached_code = entry
        else:
            self._cached_code = None
            self._kir = _parse(fn, self._types)
            self._name = self._kir.name
            self.signature = kernel_signature(self._kir)

    @property
    def kir(self) -> kir.Kernel:
        """The typed kernel IR (``print(k.kir)`` shows it); made on first use for a cached kernel."""
        if self._kir is None:
            with self._lock:
                if self._kir is None:
                    if self._index_key is not None and _index_key(self.py_func, self._types) != self._index_key:
                        # Parsed now, it would not be the kernel that runs: its file or a value it
                        # names changed since it was decorated (when it would have been parsed).
                        code = self.py_func.__code__
                        raise CompileError(
                            f"kernel {self.name!r} ({code.co_filename}:{code.co_firstlineno}) changed since it was "
                            "decorated (its file, or a global it uses); import its module again to use the new code"
                        )
                    self._kir = _parse(self.py_func, self._types)
        return self._kir

    @property
    def name(self) -> str:
        """The kernel's name (its symbol in compiled code)."""
        return self._name

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

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        call = self._call
        if call is None:
            function = self._cached_function()
            if function is None:
                module = self.compile()
                function = module[self.name]
                _index_store(self._index_key, self, module)
            call = self._call = function.native_entry or function
            if function.native_entry is not None:
                # From now on, calling the kernel is calling its native entry point: a builtin
                # set as __call__ of a class of its own is called without this frame (a builtin
                # binds no self), which halves the cost of a call (about 320 -> 150 ns).
                self.__class__ = type(type(self).__name__, (type(self),), {"__call__": call, "__slots__": ()})
        return call(*args, **kwargs)

    def _cached_function(self) -> Any:
        """The kernel's function from the cached shared object of its host code, or None."""
        if self._cached_code is None:
            return None
        # From the shared tier if it is not here; else it was not linked (yet, or no C
        # compiler), and the build finds the code.
        if not disk.fetch_native(self._cached_code):
            return None
        path = disk.native_path(self._cached_code)
        try:
            return load_library(path).bind(self.signature)
        except KernpackError:  # damaged: the build makes it again
            return None

    def interpret(self, *args: Any, perturb: int = 0, alternate: bool = False) -> None:
        """Run the kernel by the language's definition, in Python: slow, every index checked.

        Unlike :attr:`py_func` (Python's own arithmetic), this is the semantics every target
        implements: fixed-width integers that wrap, float32 rounding, saturating casts, ...
        ``perturb`` moves every ``exp log sin cos tanh`` result by that many ulps (to see how
        much the outputs depend on a target's rounding of them); with ``alternate``, every other
        call of them the other way.
        """
        from .lang.interpret import interpret  # here: a kernel that is only called needs no interpreter

        interpret(self.kir, self.signature, args, perturb=perturb, alternate=alternate)

    def __repr__(self) -> str:
        return f"<kernpack kernel {self.signature}>"


def kernel(
    fn: Callable[..., Any] | None = None, *, boundscheck: bool | None = None
) -> Kernel | GenericKernel | Callable[[Callable[..., Any]], Kernel | GenericKernel]:
    """Decorate a Python function as a kernpack kernel: ``@kp.kernel`` or ``@kp.kernel(boundscheck=True)``.

    The function is checked against the kernel language at once; anything outside it raises
    :class:`~kernpack.KernelSyntaxError` or :class:`~kernpack.KernelTypeError` pointing at the
    line.

    Parameters
    ----------
    fn : callable
        The kernel's Python function.
    boundscheck : bool, optional
        Check every index against its array's extent on every target: the first out-of-range
        access of a call raises :class:`~kernpack.KernelIndexError` (an ``IndexError``) naming
        the kernel, the array, the indices, the shape and the file and line. Off by default
        (``KERNPACK_BOUNDSCHECK=1`` turns it on for every kernel); ``kp.build(...,
        boundscheck=)`` overrides it for a build.

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
    checked = boundscheck if boundscheck is not None else os.environ.get("KERNPACK_BOUNDSCHECK", "0") not in ("", "0")

    def decorate(fn: Callable[..., Any]) -> Kernel | GenericKernel:
        if _type_variables(fn):
            return functools.update_wrapper(GenericKernel(fn, boundscheck=checked), fn, updated=())
        return functools.update_wrapper(Kernel(fn, boundscheck=checked), fn, updated=())

    return decorate if fn is None else decorate(fn)


def kernel_signature(k: kir.Kernel) -> Signature:
    """The C signature of a kernel: arrays as ``T name[:]``, const unless the kernel writes them."""
    params = []
    for name, t in k.params:
        if isinstance(t, ArrayType):
            params.append(Param(name, t.dtype.ctype, pointer=True, const=name not in k.written, ndim=t.ndim))
        else:
            params.append(Param(name, t.ctype))
    return Signature(k.name, tuple(params))


def _parse(fn: Callable[..., Any], types: Mapping[TypeVar, ScalarType]) -> kir.Kernel:
    # Imported here, not above: a kernel found in the kernel index never loads the front end
    # (its dataclasses alone take about 6 ms to create).
    from .lang.frontend import parse_kernel

    return parse_kernel(fn, types)


# ---------------------------------------------------------------------- the kernel index
def _index_key(fn: Callable[..., Any], types: Mapping[TypeVar, ScalarType]) -> str | None:
    """The kernel index's key of a definition built with call()'s defaults, or None."""
    if not disk.cache_enabled():
        return None
    parts = definition_parts(fn)
    if parts is None:
        return None
    parts += [f"bound:{var.name}={t.name}" for var, t in types.items()]
    # What the host code of compile()'s defaults depends on besides the definition.
    return disk.make_key("kernel-index", cpu_environment(None), str(default_threads()), *parts)


def _index_load(key: str | None) -> tuple[str, Signature, str] | None:
    """(name, signature, cache key of the host code) recorded for a definition, or None."""
    hit = disk.load(key) if key is not None else None
    if hit is None or "kernel" not in hit:
        return None
    try:
        entry = json.loads(hit["kernel"])
        return entry["name"], Signature.parse(entry["signature"]), entry["code"]
    except (ValueError, KeyError, TypeError, KernpackError):
        return None  # a damaged entry is a miss


def _index_store(key: str | None, k: Kernel, module: Any) -> None:
    code = getattr(module, "cache_key", None)
    if key is None or code is None or k._cached_code == code:
        return
    entry = {"name": k.name, "signature": str(k.signature), "code": code}
    disk.store(key, {"kernel": json.dumps(entry).encode()})


# ---------------------------------------------------------------------- generic kernels
class GenericKernel:
    """A kernel written once for several types: its annotations hold type variables.

    Calling it reads the types off the arguments (an array's dtype; a numpy scalar's; ``float``
    as f64, ``int`` as i64, ``bool``), specialises the kernel for them on the first call with
    each combination (a :class:`Kernel` named like ``saxpy__f32``) and runs that.
    ``k.specialize(T=kp.f32)`` names a specialisation, for ``kp.build`` and for devices.
    """

    def __init__(self, fn: Callable[..., Any], *, boundscheck: bool = False) -> None:
        self.py_func = fn  # kp.kernel() gives it fn's __name__, __doc__ and __wrapped__
        self.boundscheck = boundscheck  # given to each specialisation
        self.params = _annotations(fn)
        self.type_variables = _type_variables(fn)
        self._specialisations: dict[tuple[ScalarType, ...], Kernel] = {}
        self._lock = threading.Lock()

    def specialize(self, **types: ScalarType) -> Kernel:
        """The kernel with each type variable (by name) bound to a scalar type."""
        by_name = {v.name: v for v in self.type_variables}
        unknown = sorted(set(types) - set(by_name))
        missing = sorted(set(by_name) - set(types))
        if unknown or missing:
            raise ArgumentError(
                f"{self.__name__}.specialize() takes its type variables {', '.join(by_name)}"
                + (f"; unknown: {', '.join(unknown)}" if unknown else "")
                + (f"; missing: {', '.join(missing)}" if missing else "")
            )
        bound = []
        for var in self.type_variables:
            t = types[var.name]
            if not isinstance(t, ScalarType):
                raise ArgumentError(f"{self.__name__}.specialize(): {var.name} is a kernpack scalar type, not {t!r}")
            if var.allowed and t not in var.allowed:
                allowed = ", ".join(repr(a) for a in var.allowed)
                raise ArgumentError(f"{self.__name__}: {var.name} may be {allowed}, not {t!r}")
            bound.append(t)
        key = tuple(bound)
        kernel = self._specialisations.get(key)
        if kernel is None:
            with self._lock:
                kernel = self._specialisations.get(key)
                if kernel is None:
                    types = dict(zip(self.type_variables, bound, strict=True))
                    kernel = Kernel(self.py_func, types, boundscheck=self.boundscheck)
                    self._specialisations[key] = kernel
        return kernel

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        return self._for(args, kwargs)(*args, **kwargs)

    def interpret(self, *args: Any, **kwargs: Any) -> None:
        """Run the specialisation for these arguments in the reference interpreter."""
        self._for(args, {}).interpret(*args, **kwargs)

    def _for(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Kernel:
        """The specialisation whose types the arguments have."""
        names = [name for name, _ in self.params]
        values = dict(zip(names, args, strict=False))
        values.update((k, v) for k, v in kwargs.items() if k in names)
        found: dict[TypeVar, tuple[ScalarType, str]] = {}
        # Arrays first: a Python number says less (2.0 is an f64, but fits an f32 parameter).
        for arrays_first in (True, False):
            for name, hint in self.params:
                var = hint.var if isinstance(hint, GenericArrayType) else hint
                if not isinstance(var, TypeVar) or isinstance(hint, GenericArrayType) != arrays_first:
                    continue
                if name not in values or (var in found and not arrays_first):
                    continue
                t = _type_of(values[name])
                if t is None:
                    raise ArgumentError(
                        f"{self.__name__}(): cannot tell the type of {name!r} ({type(values[name]).__name__}) "
                        f"for {var.name}; pass a numpy array or scalar"
                    )
                if var in found and found[var][0] is not t:
                    raise ArgumentError(
                        f"{self.__name__}(): {var.name} is {found[var][0]!r} from {found[var][1]!r} "
                        f"but {t!r} from {name!r}; pass arguments of one type"
                    )
                found.setdefault(var, (t, name))
        unbound = [v.name for v in self.type_variables if v not in found]
        if unbound:
            raise ArgumentError(f"{self.__name__}(): no argument tells the type of {', '.join(unbound)}")
        return self.specialize(**{v.name: found[v][0] for v in self.type_variables})

    def __repr__(self) -> str:
        return f"<kernpack generic kernel {self.__name__} over {', '.join(v.name for v in self.type_variables)}>"


def _annotations(fn: Callable[..., Any]) -> list[tuple[str, Any]]:
    """(name, annotation) of each parameter, in order, read as the front end reads them."""
    code, hints = fn.__code__, annotations(fn)
    return [(name, hints.get(name)) for name in code.co_varnames[: code.co_argcount]]


def _type_variables(fn: Callable[..., Any]) -> list[TypeVar]:
    """The type variables of ``fn``'s parameters, in order of first appearance."""
    found: list[TypeVar] = []
    for _, hint in _annotations(fn):
        var = hint.var if isinstance(hint, GenericArrayType) else hint
        if isinstance(var, TypeVar) and var not in found:
            found.append(var)
    return found


def _type_of(value: Any) -> ScalarType | None:
    dtype = getattr(value, "dtype", None)  # arrays (numpy, device), numpy scalars
    if dtype is not None:
        return BY_DTYPE.get(np.dtype(dtype))
    if isinstance(value, bool):
        return BY_DTYPE[np.dtype(np.bool_)]
    if isinstance(value, int):
        return BY_DTYPE[np.dtype(np.int64)]
    if isinstance(value, float):
        return BY_DTYPE[np.dtype(np.float64)]
    return None
