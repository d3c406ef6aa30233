"""Kernels' native entry points: the same results and the same errors as the Python call path."""

from __future__ import annotations

import numpy as np
import pytest

import kernpack as kp
from kernpack.runtime import fastcall
from tests.export.conftest import run_fresh
from tests.lang import kernels_src as K


@kp.kernel
def every_scalar(b: kp.bool_, i8: kp.i8, u16: kp.u16, i32: kp.i32, u64: kp.u64, f: kp.f32, d: kp.f64,
                 m: kp.i64[:, :], out: kp.f64[:]):  # fmt: skip
    for i in kp.grid(out.shape[0]):
        out[i] = (1.0 if b else 0.0) + i8 + u16 + i32 + kp.f64(u64 % 1000) + f + d + m[i, 1]


def _function(kernel):
    return kernel.compile(threads=1)[kernel.name]


def test_the_object_layout_holds_here():
    # Where it did not, every call would quietly take the Python path: CI must exercise the native one.
    assert fastcall._layout_holds()
    assert _function(K.saxpy).native_entry is not None


def _outputs(call, *scalars):
    m = np.arange(8, dtype=np.int64).reshape(4, 2)
    out = np.zeros(4)
    call(*scalars, m, out)
    return out


GOOD = [
    (True, -3, 65535, -(2**31), 2**63 - 1, 1.5, -2.25),
    (np.bool_(False), np.int8(7), np.uint16(9), np.int32(5), np.uint64(2**64 - 1), np.float32(0.5), np.float64(3.0)),
    (False, 0, 0, 0, 0, 2, 3),  # ints for float parameters: the Python path converts them
    (True, 1, 2, 3, 4, float("inf"), float("nan")),
]


@pytest.mark.parametrize("scalars", GOOD, ids=range(len(GOOD)))
def test_results_match_the_python_path(scalars):
    fn = _function(every_scalar)
    python_path = fn.native_entry.__self__  # what the entry point hands over what it does not take
    np.testing.assert_array_equal(_outputs(fn, *scalars), _outputs(python_path, *scalars))


BAD_SCALARS = [
    (1, -3, 1, 1, 1, 1.0, 1.0),  # an int for a bool
    (True, 128, 1, 1, 1, 1.0, 1.0),  # out of int8
    (True, 1, -1, 1, 1, 1.0, 1.0),  # negative for unsigned
    (True, 1, 1, 2**31, 1, 1.0, 1.0),
    (True, 1, 1, 1, 2**64, 1.0, 1.0),  # beyond what PyLong_AsLongLong takes, and beyond uint64
    (True, 1, 1, 1, -1, 1.0, 1.0),
    (True, 1.5, 1, 1, 1, 1.0, 1.0),  # a float for an int
    (True, 1, 1, 1, 1, "1.0", 1.0),
    (True, True, 1, 1, 1, 1.0, 1.0),  # a bool for an int
]


@pytest.mark.parametrize("scalars", BAD_SCALARS, ids=range(len(BAD_SCALARS)))
def test_bad_scalars_give_the_python_paths_error(scalars):
    fn = _function(every_scalar)
    with pytest.raises(kp.ArgumentError) as python:
        _outputs(fn.native_entry.__self__, *scalars)
    with pytest.raises(kp.ArgumentError) as native:
        _outputs(fn, *scalars)
    assert str(native.value) == str(python.value)


def _arrays():
    x = np.arange(6, dtype=np.float32)
    frozen = x.copy()
    frozen.flags.writeable = False
    return {
        "float64 x": (x.astype(np.float64), x.copy(), x.copy()),
        "strided x": (np.arange(12, dtype=np.float32)[::2], x.copy(), x.copy()),
        "read-only out": (x, x.copy(), frozen),
        "byte-swapped y": (x, x.astype(">f4"), x.copy()),
        "2-D x": (x.reshape(2, 3), x.copy(), x.copy()),
        "a list": (list(x), x.copy(), x.copy()),
    }


@pytest.mark.parametrize("case", list(_arrays()))
def test_bad_arrays_give_the_python_paths_error(case):
    fn = _function(K.saxpy)
    x, y, out = _arrays()[case]
    with pytest.raises(kp.ArgumentError) as python:
        fn.native_entry.__self__(np.float32(2.0), x, y, out)
    with pytest.raises(kp.ArgumentError) as native:
        fn(np.float32(2.0), x, y, out)
    assert str(native.value) == str(python.value)
    with pytest.raises(kp.ArgumentError, match="takes 4 arguments"):
        fn(2.0, x, y)


def test_what_the_python_path_accepts_still_works():
    fn = _function(K.saxpy)

    class Tagged(np.ndarray):
        pass

    x = np.arange(5, dtype=np.float32)
    out = np.zeros(5, np.float32)
    fn(2.0, x.view(Tagged), memoryview(x), out)  # a subclass and a buffer: converted, not refused
    np.testing.assert_array_equal(out, 3 * x)
    empty = np.zeros(0, np.float32)
    fn(2.0, empty, empty, empty)


def test_an_exported_library_and_its_import_use_the_entry_points(tmp_path):
    kp.build([K.saxpy], cpu="generic").export_library(tmp_path / "entry_lib.so")
    got = run_fresh(
        f"""
        import json, sys
        import numpy as np
        from kernpack.runtime import load_module
        sys.path.insert(0, {str(tmp_path)!r})
        import entry_lib
        lib = load_module({str(tmp_path / "entry_lib.so")!r})
        x = np.ones(3, np.float32); out = np.zeros(3, np.float32)
        entry_lib.saxpy(2.0, x, x, out)
        print(json.dumps({{"out": out.tolist(), "builtin": type(entry_lib.saxpy).__name__,
                          "loaded": lib["saxpy"].native_entry is not None}}))
        """
    )
    assert got == {"out": [3.0, 3.0, 3.0], "builtin": "builtin_function_or_method", "loaded": True}
