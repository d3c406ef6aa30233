"""``@kp.func`` device functions: inlined into kernels, on every target; errors at the function's line."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import numpy as np
import pytest

import kernpack as kp
from tests.conftest import require_device
from tests.lang.helpers import import_source, run_documented_example


def _import(tmp_path: Path, source: str, name: str = "fn_kernels"):
    return import_source(tmp_path, source, name)


def test_the_documented_example_runs(tmp_path):
    run_documented_example(tmp_path, "Device functions")  # its asserts check the results


KERNELS = """
import kernpack as kp

SCALE = 3.0

@kp.func
def clamp(v: kp.f32, lo: kp.f32, hi: kp.f32) -> kp.f32:
    return min(max(v, lo), hi)

@kp.func
def axpy(a: kp.f32, x: kp.f32) -> kp.f32:
    t = a * x
    return t + clamp(x, 0.0, 1.0)

@kp.func
def bump(counts: kp.i32[:], k: kp.i64):
    kp.atomic_add(counts, k, 1)

@kp.func
def scaled(x: kp.f32) -> kp.f32:
    return SCALE * x  # a global of the function's module

@kp.kernel
def combine(x: kp.f32[:], out: kp.f32[:], counts: kp.i32[:]):
    n = x.shape[0]
    for i in kp.grid(n):
        t = clamp(x[i], 0.0, 1.0) + axpy(2.0, x[i])
        if clamp(x[i], 0.0, 1.0) > 0.5:
            bump(counts, 0)
        out[i] = t + scaled(1.0)
"""


def _expected(x: np.ndarray) -> tuple[np.ndarray, int]:
    c = np.clip(x, 0, 1)
    return c + 2 * x + c + 3.0, int((c > 0.5).sum())


@pytest.mark.parametrize("target", ["cpu", "interpret", "opencl", "vulkan"])
def test_functions_run_on_every_target(tmp_path, target):
    combine = _import(tmp_path, KERNELS).combine
    x = np.linspace(-1, 2, 9, dtype=np.float32)
    out, counts = np.zeros_like(x), np.zeros(1, np.int32)
    module = kp.build([combine], target=target)
    if target in ("opencl", "vulkan"):
        require_device(module)
    module["combine"](x, out, counts)
    expected, over = _expected(x)
    assert np.allclose(out, expected) and counts[0] == over
    assert combine.signature.params[2].const is False  # written through bump: an output


def test_functions_compile_for_cuda(tmp_path):
    combine = _import(tmp_path, KERNELS).combine
    module = kp.build([combine], target="cuda")  # PTX, and a cubin where ptxas is installed
    assert "combine" in module.functions and b".entry combine" in bytes(module.binary)


def _error(tmp_path: Path, source: str) -> kp.CompileError:
    with pytest.raises(kp.CompileError) as info:
        kernels = _import(tmp_path, "import kernpack as kp\n" + textwrap.dedent(source))
        kp.build([kernels.k])
    return info.value


def _line(tmp_path: Path, marker: str) -> int:
    lines = (tmp_path / "fn_kernels.py").read_text().splitlines()
    return next(n for n, text in enumerate(lines, 1) if marker in text)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("        while f(x[i]) > 0.0:  # HERE\n            out[i] = 1.0\n", "while test would run once"),
        ("        out[i] = 1.0 if x[i] > 0.0 else f(x[i])  # HERE\n", "a if c else b"),
        ("        if x[i] > 0.0 and f(x[i]) > 0.0:  # HERE\n            out[i] = 1.0\n", "after 'and'/'or'"),
        ("        out[i] = f(x[i], x[i])  # HERE\n", r"f\(\) takes 1 argument\(s\), not 2"),
        ("        out[i] = 2.0 * w(out, i)  # HERE\n", "w writes an array: call it as a statement"),
        ("        out[i] = g(x[i])  # HERE\n", "g returns nothing"),
    ],
)
def test_calls_where_inlining_would_change_python_are_refused(tmp_path, body, message):
    source = """
    @kp.func
    def f(v: kp.f32) -> kp.f32:
        return v + 1.0

    @kp.func
    def w(out: kp.f32[:], i: kp.i64) -> kp.f32:
        out[i] = 0.0
        return 1.0

    @kp.func
    def g(v: kp.f32):
        v = v + 1.0

    @kp.kernel
    def k(x: kp.f32[:], out: kp.f32[:]):
        for i in kp.grid(x.shape[0]):
    """
    err = _error(tmp_path, textwrap.dedent(source) + body)
    assert re.search(message, str(err)), err
    assert err.lineno == _line(tmp_path, "# HERE"), err


def test_errors_inside_a_function_point_at_the_function(tmp_path):
    err = _error(
        tmp_path,
        """
        @kp.func
        def f(v: kp.f32) -> kp.f32:
            return v + undefined_name  # HERE

        @kp.kernel
        def k(x: kp.f32[:], out: kp.f32[:]):
            for i in kp.grid(x.shape[0]):
                out[i] = f(x[i])
        """,
    )
    assert "name 'undefined_name' is not defined" in str(err)
    assert err.lineno == _line(tmp_path, "# HERE") and err.filename.endswith("fn_kernels.py")


def test_recursion_and_bad_definitions_are_refused(tmp_path):
    err = _error(
        tmp_path,
        """
        @kp.func
        def f(v: kp.f32) -> kp.f32:
            return g(v)

        @kp.func
        def g(v: kp.f32) -> kp.f32:
            return f(v)  # HERE

        @kp.kernel
        def k(x: kp.f32[:], out: kp.f32[:]):
            for i in kp.grid(x.shape[0]):
                out[i] = f(x[i])
        """,
    )
    assert "cannot be recursive: f -> g -> f" in str(err) and err.lineno == _line(tmp_path, "# HERE")
    for source, message in [
        ("@kp.func\ndef f(v: kp.f32) -> kp.f32:\n    return f(v)\n", "calls itself"),
        ("@kp.func\ndef f(v: kp.f32) -> kp.f32:\n    if v > 0.0:\n        return v\n    return 0.0\n", "last stat"),
        ("@kp.func\ndef f(v: kp.f32):\n    return v\n", "annotate it"),
        ("@kp.func\ndef f(v: kp.f32) -> kp.f32:\n    v = 1.0\n", "end it with 'return"),
        ("@kp.func\ndef f(v):\n    return v\n", "needs a kernpack type annotation"),
    ]:
        with pytest.raises(kp.KernelSyntaxError, match=message):
            _import(tmp_path, "import kernpack as kp\n" + source, "bad_def")


def test_an_array_argument_of_the_wrong_type_is_a_type_error(tmp_path):
    err = _error(
        tmp_path,
        """
        @kp.func
        def first(a: kp.f64[:]) -> kp.f64:
            return a[0]

        @kp.kernel
        def k(x: kp.f32[:], out: kp.f32[:]):
            for i in kp.grid(x.shape[0]):
                out[i] = first(x)  # HERE
        """,
    )
    assert isinstance(err, kp.KernelTypeError) and "'a' is kp.f64[:], not kp.f32[:]" in str(err)
