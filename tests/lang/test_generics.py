"""Generic kernels: type variables in the annotations, one specialisation per combination of types."""

from __future__ import annotations

import numpy as np
import pytest

import kernpack as kp
from tests.conftest import require_device
from tests.lang.helpers import import_source as _import
from tests.lang.helpers import run_documented_example

KERNELS = """
import kernpack as kp

T = kp.TypeVar("T", kp.f32, kp.f64)
I = kp.TypeVar("I")

@kp.kernel
def scale(a: T, x: T[:], out: T[:]):
    for i in kp.grid(out.shape[0]):
        out[i] = a * x[i] + T(1)

@kp.kernel
def count(x: T[:], limit: T, hits: I[:]):
    for i in kp.grid(x.shape[0]):
        if x[i] > limit:
            kp.atomic_add(hits, 0, I(1))
"""


def test_the_documented_example_runs(tmp_path):
    run_documented_example(tmp_path, "Generic kernels")


def test_a_call_specialises_for_the_argument_types(tmp_path):
    kernels = _import(tmp_path, KERNELS, "generic_kernels")
    for dtype in (np.float32, np.float64):
        x = np.arange(5, dtype=dtype)
        out = np.zeros_like(x)
        kernels.scale(2.0, x, out)
        assert np.array_equal(out, 2 * x + 1) and out.dtype == dtype
    assert kernels.scale.specialize(T=kp.f32) is kernels.scale.specialize(T=kp.f32)  # cached
    for hits_dtype in (np.int32, np.uint64):
        hits = np.zeros(1, hits_dtype)
        kernels.count(np.arange(10.0), 6.5, hits)  # two variables, each from its own arguments
        assert hits[0] == 3 and hits.dtype == hits_dtype


def test_specialisations_build_together_and_run_on_devices(tmp_path):
    scale = _import(tmp_path, KERNELS, "generic_kernels").scale
    host = kp.build([scale.specialize(T=kp.f32), scale.specialize(T=kp.f64)], devices=("opencl", "vulkan"))
    assert host.function_names() == ("scale__f32", "scale__f64")
    for kind in ("opencl", "vulkan"):
        device = require_device(host.device_module(kind))
        x = np.arange(4.0)
        out = np.zeros_like(x)
        device["scale__f64"](3.0, x, out)
        assert np.array_equal(out, 3 * x + 1)
    with pytest.raises(TypeError, match=r"scale is a generic kernel: name its specialisations"):
        kp.build([scale])


def test_disagreeing_or_disallowed_types_are_refused_by_name(tmp_path):
    kernels = _import(tmp_path, KERNELS, "generic_kernels")
    with pytest.raises(kp.ArgumentError, match=r"T is kp.f32 from 'x' but kp.f64 from 'out'"):
        kernels.scale(2.0, np.ones(3, np.float32), np.ones(3))
    with pytest.raises(kp.ArgumentError, match=r"T may be kp.f32, kp.f64, not kp.i32"):
        kernels.scale(2, np.ones(3, np.int32), np.ones(3, np.int32))
    with pytest.raises(kp.ArgumentError, match=r"cannot tell the type of 'x' \(list\)"):
        kernels.scale(2.0, [1.0], np.ones(1))
    with pytest.raises(kp.ArgumentError, match=r"takes its type variables T; unknown: U; missing: T"):
        kernels.scale.specialize(U=kp.f32)
