"""The defined semantics, on the CPU and in the reference interpreter: one test per bug class."""

import math

import numpy as np
import pytest

import kernpack as kp
from kernpack.driver.lang.interpret import fma

from . import semantics_src as S

# Each kernel runs through the interpreter and the CPU code at both ends of the optimizer.
RUNNERS = {
    "interpret": lambda kernels: kp.build(kernels, target="interpret"),
    "cpu-O0": lambda kernels: kp.build(kernels, opt_level=0, cache=False),
    "cpu-O3": lambda kernels: kp.build(kernels, opt_level=3, threads=2, cache=False),
}


@pytest.fixture(params=list(RUNNERS))
def run(request):
    return lambda kernel, *args: RUNNERS[request.param]([kernel])[kernel.name](*args)


def same_floats(got, expected):
    """Equal as floats, NaN equal to NaN and the sign of zero significant."""
    got, expected = np.asarray(got), np.asarray(expected, dtype=got.dtype)
    np.testing.assert_array_equal(got, expected)
    numbers = ~np.isnan(expected)  # a NaN's sign means nothing
    assert np.signbit(got[numbers]).tolist() == np.signbit(expected[numbers]).tolist()


def test_float_floor_division_is_pythons(run):
    a = [1.0, math.inf, -2.0, 7.5, -7.5, 126.0, 0.0, -0.0, math.nan, 1.0, 5.0, -5.0, 0.0]
    b = [0.1, 2.0, math.inf, -2.0, 2.0, 0.1, -3.0, 3.0, 1.0, -math.inf, 0.0, 0.0, 0.0]
    q, r = np.zeros(len(a)), np.zeros(len(a))
    with np.errstate(all="ignore"):
        run(S.float_divmod, np.array(a), np.array(b), q, r)
    # Python where it is defined; by zero, x / 0.0 and NaN (as numpy)
    same_floats(q, [x // y for x, y in zip(a[:10], b[:10], strict=True)] + [math.inf, -math.inf, math.nan])
    same_floats(r, [x % y if y else math.nan for x, y in zip(a, b, strict=True)])
    assert q[0] == 9.0  # not floor(1.0 / 0.1) = 10.0


def test_float32_floor_division_is_exact(run):
    a = np.array([1e10, 1.0, -1.0], np.float32)
    b = np.array([3.0, 0.1, 0.1], np.float32)
    q, r = np.zeros_like(a), np.zeros_like(a)
    run(S.float32_divmod, a, b, q, r)
    np.testing.assert_array_equal(r, np.remainder(a, b))
    np.testing.assert_array_equal(q, np.floor_divide(a, b))


@pytest.mark.parametrize(
    ("n", "expected"), [(2**32, [0.0, math.inf]), (2**32 + 1, [0.0, math.inf]), (-(2**40), [math.inf, 0.0])]
)
def test_power_keeps_a_64_bit_exponent(run, n, expected):
    out = np.zeros(2)
    with np.errstate(all="ignore"):
        run(S.power_i64, np.array([0.5, 3.0]), n, out)
    assert out.tolist() == expected


def test_unfit_literals_wrap_to_the_integer_type(run):
    x, y, z = np.array([5, 0], np.uint32), np.array([1, -3], np.int8), np.array([1, 200], np.uint8)
    o32, o8, ou8 = np.zeros(2, np.uint32), np.zeros(2, np.int8), np.zeros(2, np.uint8)
    run(S.unfit_literals, x, y, z, o32, o8, ou8)
    assert o32.tolist() == [4, 0xFFFFFFFF]
    assert o8.tolist() == [44, 124]  # 300 wraps to 44 in i8; -3 * 44 = -132 wraps to 124
    assert ou8.tolist() == [(255 + 1) % 256, 255]  # max(z, u8(-1)) = 255; 1 ** -2 = 1, 200 ** -2 = 0


def test_each_grid_point_starts_from_the_prologue(run):
    x = np.arange(6, dtype=np.int64)
    out = np.zeros(6, np.int64)
    run(S.locals_per_point, x, out)
    assert out.tolist() == [(10 + v) * 100 + (7 if v > 2 else 0) for v in range(6)]


@pytest.mark.parametrize(("step", "extra"), [(0, 0), (-3, 7), (1, 0), (-1, 20)])
def test_ranges_count_pythons_iterations(run, step, extra):
    out = np.zeros(3, np.int64)
    run(S.ranges, step, out)
    assert out.tolist() == [3 + 100 * extra] * 3


def test_grid_extents_cast_and_wrap(run):
    out = np.zeros(4, np.int32)
    run(S.grid_cast, 0, out)
    assert out.tolist() == [7] * 4  # min(u8(-1), 4) = min(255, 4)
    out = np.zeros(4, np.int32)
    run(S.grid_negative_literal, out)
    assert out.tolist() == [7, 7, 7, 0]
    out = np.zeros((11, 3), np.int32)
    run(S.grid_wrapping, 2**32, 14801965848254440725, np.zeros(4, np.int32), out)
    assert (out[:, :2] == 7).all() and (out[:, 2] == 0).all()


def test_nan_to_unsigned_is_zero(run):
    out = np.full(4, 7, np.uint32)
    run(S.nan_to_u32, np.array([np.nan, -1.0, 1e20, 3.5], np.float32), out)
    assert out.tolist() == [0, 0, 0xFFFFFFFF, 3]


def test_narrow_atomics(run):
    a8, a16 = np.zeros(4, np.int8), np.zeros(3, np.uint16)
    run(S.narrow_atomics, np.ones(101, np.int8), a8, np.full(1000, 3, np.uint16), a16)
    assert a8.tolist() == [26, 25, 25, 25]
    assert a16.tolist() == [34 * 3, 34 * 3, 33 * 3]  # the grid is x's 101 points


# --------------------------------------------------------------------- the interpreter itself
def test_interpreter_checks_indices():
    with pytest.raises(kp.KernelIndexError, match=r"reads_outside, line \d+: index 4 of x's dimension 0"):
        S.reads_outside.interpret(np.zeros(4, np.float32), np.zeros(4, np.float32))


def test_interpreter_checks_arguments():
    with pytest.raises(kp.ArgumentError, match="argument 'x'"):
        S.reads_outside.interpret(np.zeros(4), np.zeros(4, np.float32))
    with pytest.raises(kp.ArgumentError, match="takes 2 arguments"):
        S.reads_outside.interpret(np.zeros(4, np.float32))


def test_interpret_target_is_a_python_module():
    module = kp.build([S.grid_cast], target="interpret")
    assert module.kind == "python"
    out = np.zeros(4, np.int32)
    module["grid_cast"](0, out)
    assert out.tolist() == [7] * 4


def test_fma_rounds_once():
    a, b, c = np.float64(1 + 2**-30), np.float64(1 - 2**-30), np.float64(-1.0)
    assert fma(a, b, c) == np.float64(-(2**-60))  # a * b rounds to 1.0 in float64
    x = np.float32(1 + 2**-12)
    assert fma(x, x, np.float32(-1.0)) == np.float32(2**-11 + 2**-24)
    assert math.copysign(1, fma(np.float64(-0.0), np.float64(1.0), np.float64(-0.0))) < 0
    assert fma(np.float32(3e38), np.float32(10.0), np.float32(0.0)) == np.float32(math.inf)
    # the exact product is finite: inf - it is -inf, though a * b alone overflows to inf (and inf - inf is NaN)
    assert fma(np.float64(1e300), np.float64(1e300), np.float64(-math.inf)) == -math.inf


def test_perturb_moves_transcendentals_only():
    @kp.kernel
    def mixed(x: kp.f64[:], out: kp.f64[:, :]):
        for i in kp.grid(x.shape[0]):
            out[i, 0] = kp.math.exp(x[i])
            out[i, 1] = kp.math.sqrt(x[i])

    x = np.array([0.5, 2.0])
    exact, moved = np.zeros((2, 2)), np.zeros((2, 2))
    mixed.interpret(x, exact)
    mixed.interpret(x, moved, perturb=2)
    assert (moved[:, 0] == np.nextafter(np.nextafter(exact[:, 0], math.inf), math.inf)).all()
    assert (moved[:, 1] == exact[:, 1]).all()


def test_literals_fold_as_they_would_run(run):
    @kp.kernel
    def folded(o: kp.f64[:], p: kp.i64[:]):
        for _i in kp.grid(1):
            o[0] = 0.0**-2  # 1 / 0.0: inf, where Python raises
            o[1] = 1 / 0
            o[2] = 1.0 // 0.0
            o[3] = -1.0 % 0.0
            o[4] = 10.0**400  # inf, where Python raises OverflowError
            o[5] = 1.0 // 0.1
            p[0] = 1**-3
            p[1] = 5 // 0
            p[2] = 2**62

    o, p = np.zeros(6), np.zeros(3, np.int64)
    run(folded, o, p)
    assert o[[0, 1, 2, 4]].tolist() == [math.inf] * 4 and math.isnan(o[3]) and o[5] == 9.0
    assert p.tolist() == [1, 0, 2**62]


def test_a_literal_power_beyond_64_bits_is_a_type_error():
    with pytest.raises(kp.KernelTypeError, match="far beyond 64 bits"):

        @kp.kernel
        def huge(p: kp.i64[:]):
            for i in kp.grid(p.shape[0]):
                p[i] = 10 ** (10**18)
