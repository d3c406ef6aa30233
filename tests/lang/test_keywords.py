"""Keyword arguments: kernels, built and loaded functions and device kernels bind them by name."""

from __future__ import annotations

import numpy as np
import pytest

import kernpack as kp
from tests.conftest import require_device
from tests.export.conftest import run_fresh
from tests.lang import kernels_src as K


def _calls(fn):
    x, y = np.arange(4, dtype=np.float32), np.ones(4, np.float32)
    out = np.zeros(4, np.float32)
    fn(a=2.0, x=x, y=y, out=out)
    assert np.array_equal(out, 2 * x + y)
    fn(np.float32(3.0), x, out=out, y=y)  # positions first, then any order
    assert np.array_equal(out, 3 * x + y)
    with pytest.raises(kp.ArgumentError, match=r"saxpy\(\) has no parameter 'z'; its parameters: a, x, y, out"):
        fn(a=2.0, x=x, y=y, out=out, z=1)
    with pytest.raises(kp.ArgumentError, match=r"saxpy\(\) is missing 'out'; signature: void saxpy\(float a"):
        fn(2.0, x, y=y)
    with pytest.raises(kp.ArgumentError, match=r"saxpy\(\) got 'a' by position and by keyword"):
        fn(2.0, x, y, out, a=1.0)
    with pytest.raises(kp.ArgumentError, match=r"argument 'out' .*read-only"):
        frozen = np.zeros(4, np.float32)
        frozen.flags.writeable = False
        fn(a=2.0, x=x, y=y, out=frozen)  # bound, then checked as a positional call is


def test_the_kernel_object_takes_keywords():
    _calls(K.saxpy)


def test_built_and_loaded_functions_take_keywords(tmp_path):
    module = kp.build([K.saxpy])
    _calls(module["saxpy"])
    module.export_library(tmp_path / "kwlib.so")
    _calls(kp.load_module(tmp_path / "kwlib.so")["saxpy"])


@pytest.mark.parametrize("target", ["opencl", "vulkan"])
def test_device_kernels_take_keywords(target):
    _calls(require_device(kp.build([K.saxpy], target=target))["saxpy"])


def test_import_mylib_functions_take_keywords(tmp_path):
    kp.build([K.saxpy]).export_library(tmp_path / "kwmod.so")
    got = run_fresh(
        f"""
        import json, sys
        import numpy as np
        sys.path.insert(0, {str(tmp_path)!r})
        import kwmod
        x = np.arange(4, dtype=np.float32); out = np.zeros_like(x)
        kwmod.saxpy(out=out, y=x, x=x, a=2.0)
        print(json.dumps(out.tolist()))
        """
    )
    assert got == [0.0, 3.0, 6.0, 9.0]
