"""Calling native functions from Python with numpy arrays and scalars.

The call path is the hot path of every kernel launch, so it is built once per function and
kept short: one arity check, one converter per parameter, one cffi call. A converter accepts a
C-contiguous ``numpy.ndarray`` of the exact dtype in a few hundred nanoseconds; anything else
(another dtype, a strided view, a buffer, a DLPack tensor) falls to a slow path that either
converts without copying or raises an :class:`ArgumentError` naming the parameter.

cffi: the FFI object comes from ``_cffi_backend`` (cffi's C core). Building it costs well under a
millisecond, where ``cffi.FFI()`` imports pycparser and costs ~45 ms; its built-in type parser
knows every C type a :class:`Signature` can spell. Pointers are declared ``void *`` so that the
``char[]`` cdata ``from_buffer`` returns is accepted without a cast.
"""

from __future__ import annotations

import ctypes
import functools
import json
import operator
import types
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import ArgumentError
from .abi import CHECK_WORDS
from .checks import index_error
from .devices import DeviceArray
from .fastcall import native_entry
from .printing import cpu_printer
from .signature import Param, Signature

__all__ = ["NativeFunction", "as_array", "convert_scalar", "ffi"]

try:
    import _cffi_backend

    ffi: Any = _cffi_backend.FFI()
except (ImportError, AttributeError):  # pragma: no cover - very old cffi
    import cffi

    ffi = cffi.FFI()

_CHAR_ARRAY = ffi.typeof("char[]")
_from_buffer = ffi.from_buffer
_ndarray = np.ndarray


class NativeFunction:
    """A native function at a fixed address, callable with numpy arrays and scalars.

    Parameters
    ----------
    signature : Signature
        What the function takes and returns.
    address : int
        The function's address in this process.
    owner : object
        The object that keeps the code alive (a JIT engine, a loaded library); held for as
        long as this function is.

    Notes
    -----
    cffi releases the GIL for the duration of the native call, so native functions run in
    parallel from several Python threads.
    """

    __slots__ = ("__weakref__", "_cfunc", "_owner", "native_entry", "signature")

    def __new__(cls, signature: Signature, address: int, owner: object) -> NativeFunction:
        # Each function gets its own subclass whose __call__ is generated for its signature (on
        # its first call): the interpreter then enters the generated code directly, with no
        # forwarding frame.
        if cls is NativeFunction:
            cls = type(cls.__name__, (cls,), {"__slots__": (), "__call__": _python_path})
        return super().__new__(cls)

    def __init__(self, signature: Signature, address: int, owner: object) -> None:
        self.signature = signature
        self._cfunc = ffi.cast(signature.cffi_type, address)
        self._owner = owner
        # The kernel's own METH_FASTCALL entry point (kernpack.runtime.fastcall), where it has
        # one: the same call, checked in native code, this function's path for the rest.
        self.native_entry: Callable[..., Any] | None = None

    @property
    def name(self) -> str:
        """The function's symbol name."""
        return self.signature.name

    def attach_native_entry(self, definition: int, table: int) -> None:
        """Call through the kernel's own METH_FASTCALL entry point (``runtime.fastcall``).

        ``definition`` and ``table`` are the addresses of its ``PyMethodDef`` and table. From
        then on calling this function calls the entry point directly (set as ``__call__`` of
        this function's own class: a builtin binds no self), and the entry point hands what it
        does not take to the generated Python path, bound to this function.
        """
        python_path = types.MethodType(type(self).__call__, self)
        entry = native_entry(python_path, self.signature, definition, table)
        if entry is not None:
            self.native_entry = entry
            type(self).__call__ = entry  # type: ignore[method-assign,assignment]

    def attach_bounds_check(self, record: int, sites: int) -> None:
        """Raise the first out-of-range access of each call (a kernel built with boundscheck).

        ``record`` and ``sites`` are the addresses of its ``abi.check_symbols``: the record is
        cleared by the kernel on entry and read here after the call. Calls of one such kernel
        from several threads at once share the record.
        """
        words = (ctypes.c_uint32 * CHECK_WORDS).from_address(record)
        table = json.loads(ctypes.string_at(sites).decode())
        inner = type(self).__call__

        def checked(self: NativeFunction, *args: Any, **kwargs: Any) -> Any:
            result = inner(self, *args, **kwargs)
            if words[0]:
                error = index_error(self.name, list(words), table)
                if error is not None:
                    raise error
            return result

        type(self).__call__ = checked  # type: ignore[method-assign]

    def attach_printer(self, printer: int, sites: int) -> None:
        """Give a kernel that prints (``abi.print_symbols``) the printer that writes its lines."""
        table = json.loads(ctypes.string_at(sites).decode())
        ctypes.c_void_p.from_address(printer).value = cpu_printer(table)

    @property
    def address(self) -> int:
        """The function's address in this process."""
        return int(ffi.cast("uintptr_t", self._cfunc))

    def __call__(self, *args: Any) -> Any:  # replaced per signature in __new__
        raise NotImplementedError

    def _diagnose(self, args: tuple[Any, ...], exc: Exception) -> ArgumentError:
        """Find the argument at fault after the fast path failed, and say what is wrong."""
        params = self.signature.params
        if len(args) != len(params):
            return ArgumentError(
                f"{self.name}() takes {len(params)} argument{'s' if len(params) != 1 else ''} "
                f"({', '.join(p.name for p in params)}) but {len(args)} were given; "
                f"signature: {self.signature}"
            )
        for index, (param, value) in enumerate(zip(params, args, strict=True)):
            try:
                _check(param, value)
                if param.pointer:
                    _from_buffer(_CHAR_ARRAY, as_array(param, value), param.is_output)
            except (TypeError, ValueError, OverflowError, BufferError) as err:
                return ArgumentError(
                    f"{self.name}(): argument {param.name!r} (parameter {index + 1} of {len(params)}, {param}): {err}"
                )
        return ArgumentError(f"{self.name}(): {exc} (signature: {self.signature})")

    def __repr__(self) -> str:
        return f"<NativeFunction {self.signature}>"


def _python_path(self: NativeFunction, *args: Any, **kwargs: Any) -> Any:
    """The generated call path of ``self``'s signature, made on the first call that takes it.

    Generating it costs about 0.4 ms (``compile``): a function whose every call its native entry
    point takes never pays that. The first call installs it as ``__call__`` of the function's
    own class, unless the native entry point is there.
    """
    cls = type(self)
    caller = cls.__dict__.get("_caller")
    if caller is None:
        caller = _make_caller(self.signature)
        cls._caller = caller  # type: ignore[attr-defined]
        if cls.__dict__["__call__"] is _python_path:
            cls.__call__ = caller  # type: ignore[method-assign]
    return caller(self, *args, **kwargs)


def _make_caller(signature: Signature) -> Callable[..., Any]:
    """Generate the call path for one signature: straight-line checks, no loops.

    Each argument is tested inline against its fast case (an ndarray of exactly the dtype, a
    Python int or float); anything else goes through the parameter's converter. Every failure
    lands in ``_diagnose``, which names the argument. Generating the code once per function
    keeps a three-array call within a few hundred nanoseconds of a bare cffi call.
    """
    params = signature.params
    env: dict[str, Any] = {
        "_fb": _from_buffer,
        "_ct": _CHAR_ARRAY,
        "_nd": _ndarray,
        "_errors": (TypeError, ValueError, OverflowError, BufferError),
    }
    names = [f"a{i}" for i in range(len(params))]
    exprs = []
    checks = []
    for i, (param, name) in enumerate(zip(params, names, strict=True)):
        env[f"_c{i}"] = _converter(param)
        if param.pointer:
            # Anything but an ndarray of exactly this dtype and rank is converted (or refused)
            # first; from_buffer then refuses non-contiguous and read-only-output arrays.
            env[f"_dt{i}"] = param.dtype
            env[f"_w{i}"] = param.is_output
            slow = [f"type({name}) is not _nd"]
            if param.dtype is not None:
                slow.append(f"{name}.dtype is not _dt{i}")
            if param.ndim:
                slow.append(f"{name}.ndim != {param.ndim}")
            checks.append(f"        if {' or '.join(slow)}:\n            {name} = _c{i}({name})\n")
            exprs.append(f"_fb(_ct, {name}, _w{i})")
            exprs.extend(f"{name}.shape[{d}]" for d in range(param.ndim))
        elif param.dtype is not None and param.dtype.kind in "iu":
            exprs.append(f"{name} if type({name}) is int else _c{i}({name})")
        elif param.dtype is not None and param.dtype.kind == "f":
            exprs.append(f"{name} if type({name}) is float else _c{i}({name})")
        else:
            exprs.append(f"_c{i}({name})")
    unpack = f"        {', '.join(names)}{',' if len(names) == 1 else ''} = args\n" if names else ""
    source = (
        "def __call__(self, *args, **kwargs):\n"
        "    if kwargs:\n"  # bound by name, then the call as if positional (native where it can)
        "        args = self.signature.bind(args, kwargs)\n"
        "        if self.native_entry is not None:\n"
        "            return self.native_entry(*args)\n"
        "    try:\n"
        f"{unpack}"
        f"{''.join(checks)}"
        f"        return self._cfunc({', '.join(exprs)})\n"
        "    except _errors as exc:\n"
        "        raise self._diagnose(args, exc) from None\n"
    )
    exec(compile(source, f"<kernpack call {signature.name}>", "exec"), env)
    return env["__call__"]


def _converter(param: Param) -> Callable[[Any], Any]:
    """Build the slow-path converter for one parameter (arrays: to a checked ndarray)."""
    if not param.pointer:
        return _scalar_converter(param)

    def convert(value: Any) -> np.ndarray:
        return as_array(param, value)

    return convert


def _scalar_converter(param: Param) -> Callable[[Any], Any]:
    # cffi converts Python scalars itself and raises TypeError/OverflowError on a bad one;
    # the converter only has to pass values through. Booleans and floats given to integer
    # parameters are refused explicitly: cffi would accept True silently.
    kind = param.dtype.kind if param.dtype is not None else "f"
    if kind in "iu":

        def convert_int(value: Any) -> Any:
            if type(value) is int:
                return value
            if isinstance(value, (bool, np.bool_)) or not hasattr(value, "__index__"):
                raise ArgumentError(f"expected an integer, got {_describe(value)}")
            return operator.index(value)

        return convert_int
    if kind == "b":

        def convert_bool(value: Any) -> Any:
            if isinstance(value, (bool, np.bool_)):
                return bool(value)
            raise ArgumentError(f"expected a bool, got {_describe(value)}")

        return convert_bool

    def convert_float(value: Any) -> Any:
        if type(value) is float:
            return value
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
            raise ArgumentError(f"expected a real number, got {_describe(value)}")
        if isinstance(value, np.complexfloating):
            raise ArgumentError(f"expected a real number, got {_describe(value)}")
        return float(value)

    return convert_float


def as_array(param: Param, value: Any) -> np.ndarray:
    """Turn an argument for a pointer parameter into an ndarray without copying, or raise."""
    array = value
    if type(value) is not _ndarray and not isinstance(value, _ndarray):
        if isinstance(value, DeviceArray):
            raise ArgumentError(
                f"{value!r} lives on a device, and this function runs on the host; pass a numpy array "
                "(device_array.numpy() copies it back) or call the kernel built for that device"
            )
        if hasattr(value, "__dlpack__") and not isinstance(value, (bytes, bytearray, memoryview)):
            try:
                array = np.from_dlpack(value)
            except (TypeError, ValueError, RuntimeError, BufferError) as exc:
                raise ArgumentError(f"cannot view the DLPack tensor on the CPU: {exc}") from None
        else:
            try:
                array = np.asarray(memoryview(value))
            except TypeError:
                raise ArgumentError(f"expected {_array_wanted(param)}, got {_describe(value)}") from None
    if param.dtype is not None and array.dtype != param.dtype:
        raise ArgumentError(f"expected {_array_wanted(param)}, got {_describe(array)}")
    if param.ndim and array.ndim != param.ndim:
        raise ArgumentError(f"expected {_array_wanted(param)}, got {_describe(array)}")
    if not array.flags.c_contiguous:
        if param.is_output:
            # A contiguous copy would take the results and be thrown away: say what keeps them.
            raise ArgumentError(
                f"the function writes through {param.name!r}, which needs a C-contiguous array, got "
                f"{_describe(array)} with strides {array.strides}; pass a C-contiguous array (e.g. "
                f"tmp = np.empty_like({param.name}, order='C')) and copy the results back ({param.name}[...] = tmp)"
            )
        raise ArgumentError(
            f"expected a C-contiguous array, got {_describe(array)} with strides {array.strides}; "
            f"pass np.ascontiguousarray({param.name})"
        )
    if param.is_output and not array.flags.writeable:
        raise ArgumentError(
            f"the function writes through {param.name!r}, but the array is read-only; "
            "pass a writable array (or declare the parameter const if it is an input)"
        )
    return array


def _check(param: Param, value: Any) -> None:
    """Raise ArgumentError if ``value`` does not fit ``param`` (the slow, precise check)."""
    if param.pointer:
        as_array(param, value)
        return
    _checked_scalar(param, value)


def _array_wanted(param: Param) -> str:
    rank = f"{param.ndim}-D " if param.ndim else ""
    return f"a C-contiguous {rank}{param.dtype} array" if param.dtype is not None else f"a C-contiguous {rank}array"


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        article = "an" if value.dtype.name.startswith(("int", "object")) else "a"
        return f"{article} {value.dtype} array of shape {value.shape}"
    if isinstance(value, np.generic):
        return f"a numpy {value.dtype} scalar"
    return f"{type(value).__name__} {value!r}"[:120]


def convert_scalar(param: Param, value: Any) -> Any:
    """``value`` as a numpy scalar of the parameter's dtype, or ArgumentError (range-checked)."""
    return param.dtype.type(_checked_scalar(param, value))


def _checked_scalar(param: Param, value: Any) -> Any:
    """``value`` converted for a scalar parameter, an integer checked against its range."""
    converted = _cached_converter(param)(value)
    if param.dtype is not None and param.dtype.kind in "iu":
        low, high = _int_range(param.dtype)
        if not low <= converted <= high:
            raise ArgumentError(f"{converted} does not fit in {param.ctype} [{low}, {high}]")
    return converted


# One converter and range per parameter and dtype, not one per call: a device launch converts
# its scalars on every call.
_cached_converter = functools.lru_cache(maxsize=1024)(_scalar_converter)


@functools.lru_cache(maxsize=16)
def _int_range(dtype: np.dtype) -> tuple[int, int]:
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)
