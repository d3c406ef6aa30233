"""Kernel language: every kernel run on the CPU and checked against numpy or plain Python."""

import re

import numpy as np
import pytest

import kernpack as kp

from . import kernels_src as ks

F32 = {"rtol": 2e-6, "atol": 1e-6}
F64 = {"rtol": 1e-12, "atol": 1e-12}
ODD_SIZES = [0, 1, 2, 3, 5, 7, 15, 17, 31, 33, 63, 65, 127, 1000, 1001, 4099]


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# --------------------------------------------------------------------- element-wise kernels


@pytest.mark.parametrize("n", ODD_SIZES)
def test_vadd_f32_sizes(n):
    r = rng(n)
    a = r.standard_normal(n).astype(np.float32)
    b = r.standard_normal(n).astype(np.float32)
    out = np.full(n, np.nan, np.float32)
    ks.vadd_f32(a, b, out)
    np.testing.assert_array_equal(out, a + b)  # one f32 add: exact


@pytest.mark.parametrize("n", [0, 1, 3, 17, 1001])
def test_vadd_f64_and_i32(n):
    r = rng(100 + n)
    a = r.standard_normal(n)
    b = r.standard_normal(n)
    out = np.full(n, np.nan)
    ks.vadd_f64(a, b, out)
    np.testing.assert_array_equal(out, a + b)
    ia = r.integers(-(2**30), 2**30, n, dtype=np.int32)
    ib = r.integers(-(2**30), 2**30, n, dtype=np.int32)
    iout = np.full(n, 7, np.int32)
    ks.vadd_i32(ia, ib, iout)
    np.testing.assert_array_equal(iout, ia + ib)
    assert iout.dtype == np.int32


@pytest.mark.parametrize("n", [0, 1, 9, 1023])
def test_saxpy(n):
    r = rng(n)
    x = r.standard_normal(n).astype(np.float32)
    y = r.standard_normal(n).astype(np.float32)
    out = np.zeros(n, np.float32)
    ks.saxpy(2.5, x, y, out)
    np.testing.assert_allclose(out, np.float32(2.5) * x + y, **F32)
    ks.saxpy(np.float32(-1.0), x, y, out)  # second call: cached code, numpy scalar argument
    np.testing.assert_allclose(out, y - x, **F32)


def test_saxpy_signature_and_kir():
    assert isinstance(ks.saxpy.signature, kp.Signature)
    assert str(ks.saxpy.signature) == "void saxpy(float a, const float x[:], const float y[:], float out[:])"
    text = str(ks.saxpy.kir)
    assert text.strip()


# --------------------------------------------------------------------- 2-D kernels


@pytest.mark.parametrize(("m", "k", "n"), [(1, 1, 1), (3, 5, 7), (16, 16, 16), (33, 17, 9), (0, 4, 3), (4, 0, 3)])
def test_matmul(m, k, n):
    r = rng(m * 100 + k * 10 + n)
    a = r.standard_normal((m, k)).astype(np.float32)
    b = r.standard_normal((k, n)).astype(np.float32)
    c = np.full((m, n), np.nan, np.float32)
    ks.matmul(a, b, c)
    np.testing.assert_allclose(c, a.astype(np.float64) @ b.astype(np.float64), rtol=1e-5, atol=1e-5)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    c64 = np.full((m, n), np.nan)
    ks.matmul_into(a64, b64, c64)
    np.testing.assert_allclose(c64, a64 @ b64, **F64)


@pytest.mark.parametrize("shape", [(1, 1), (4, 10), (7, 33), (0, 5)])
def test_softmax(shape):
    x = (rng(sum(shape)).standard_normal(shape) * 4).astype(np.float32)
    out = np.full(shape, np.nan, np.float32)
    ks.softmax(x, out)
    x64 = x.astype(np.float64)
    e = np.exp(x64 - x64.max(axis=1, keepdims=True, initial=-np.inf))
    np.testing.assert_allclose(out, e / e.sum(axis=1, keepdims=True), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(out.sum(axis=1), np.ones(shape[0]), rtol=1e-5)


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (3, 3), (5, 7), (16, 33)])
def test_stencil_copies_borders(shape):
    x = rng(shape[1]).standard_normal(shape)
    out = np.full(shape, np.nan)
    ks.stencil(x, out)
    expected = x.copy()
    expected[1:-1, 1:-1] = 0.25 * (x[:-2, 1:-1] + x[2:, 1:-1] + x[1:-1, :-2] + x[1:-1, 2:])
    np.testing.assert_allclose(out, expected, **F64)
    np.testing.assert_array_equal(out[0], x[0])
    np.testing.assert_array_equal(out[:, -1], x[:, -1])


# --------------------------------------------------------------------- atomics


def test_histogram_matches_numpy():
    x = rng(1).uniform(-1.5, 11.5, 5000)
    counts = np.zeros(13, np.uint32)
    ks.histogram(x, 0.0, 10.0, counts)
    expected, _ = np.histogram(x, bins=13, range=(0.0, 10.0))
    np.testing.assert_array_equal(counts, expected)
    assert counts.dtype == np.uint32


def test_histogram_includes_upper_edge_and_accumulates():
    x = np.array([0.0, 0.5, 1.0, 1.0, -0.1, 1.1])
    counts = np.array([10, 20], np.uint32)
    ks.histogram(x, 0.0, 1.0, counts)
    assert counts.tolist() == [11, 23]


@pytest.mark.parametrize("n", [0, 1, 7, 10000])
def test_bincount(n):
    x = rng(n).integers(0, 17, n, dtype=np.int32)
    counts = np.zeros(17, np.int32)
    ks.bincount(x, counts)
    np.testing.assert_array_equal(counts, np.bincount(x, minlength=17))


def test_atomic_add_with_tuple_index():
    r = rng(2)
    a = r.integers(0, 5, 3000)
    b = r.integers(0, 7, 3000)
    h = np.zeros((5, 7), np.uint32)
    ks.histogram2d(a, b, h)
    expected = np.zeros((5, 7), np.int64)
    np.add.at(expected, (a, b), 1)
    np.testing.assert_array_equal(h, expected)


def test_atomic_add_float_values():
    r = rng(3)
    k = r.integers(0, 9, 2000)
    w = r.standard_normal(2000)
    sums = np.zeros(9)
    ks.weighted_bincount(k, w, sums)
    np.testing.assert_allclose(sums, np.bincount(k, weights=w, minlength=9), rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------- while / break


def collatz_reference(v: int, limit: int) -> int:
    c = 0
    while v != 1:
        if c >= limit:
            break
        v = v // 2 if v % 2 == 0 else 3 * v + 1
        c += 1
    return c


@pytest.mark.parametrize("limit", [0, 5, 50, 1000])
def test_collatz_while_break(limit):
    x = np.arange(1, 300, dtype=np.int64)
    out = np.full(x.shape, -5, np.int64)
    ks.collatz_steps(x, limit, out)
    assert out.tolist() == [collatz_reference(int(v), limit) for v in x]


def test_first_above_threshold_while_break():
    x = rng(4).uniform(0, 1, (50, 13))
    x[3] = 0.0  # no element above: -1
    x[4, 0] = 2.0  # the very first
    x[5, :] = 0.0
    x[5, -1] = 2.0  # the very last
    out = np.zeros(50, np.int64)
    ks.first_above(x, 0.9, out)
    above = x > 0.9
    expected = np.where(above.any(axis=1), above.argmax(axis=1), -1)
    np.testing.assert_array_equal(out, expected)
    assert out[3] == -1 and out[4] == 0 and out[5] == 12


# --------------------------------------------------------------------- constructs, one by one


def test_augmented_assignment_locals_and_elements():
    @kp.kernel
    def aug(x: kp.f64[:], k: kp.i64[:], out: kp.f64[:], kout: kp.i64[:], f: kp.f32[:]):
        for i in kp.grid(x.shape[0]):
            v = x[i]
            v += 1.0
            v *= 3.0
            v -= x[i]
            v /= 2.0
            out[i] = v
            out[i] += 10.0
            out[i] *= 2.0
            out[i] -= 1.0
            out[i] /= 4.0
            t = k[i]
            t += 7
            t *= 3
            t -= 1
            t //= 2
            t %= 100
            kout[i] = t
            kout[i] += 1
            kout[i] *= 2
            kout[i] -= 3
            kout[i] //= 4
            kout[i] %= 7
            f[i] += x[i]
            f[i] *= 2.0

    x = np.linspace(-3, 3, 25)
    k = np.arange(-12, 13, dtype=np.int64) * 7
    out = np.zeros(25)
    kout = np.zeros(25, np.int64)
    f = np.ones(25, np.float32)
    aug(x, k, out, kout, f)
    v = (((x + 1.0) * 3.0 - x) / 2.0 + 10.0) * 2.0
    np.testing.assert_allclose(out, (v - 1.0) / 4.0, **F64)
    expected = []
    for t in k.tolist():
        t = ((t + 7) * 3 - 1) // 2 % 100
        expected.append((((t + 1) * 2) - 3) // 4 % 7)
    assert kout.tolist() == expected
    np.testing.assert_allclose(f, ((1.0 + x) * 2.0).astype(np.float32), **F32)
    assert f.dtype == np.float32


def python_floordiv(a: int, b: int) -> int:
    return 0 if b == 0 else a // b


def python_mod(a: int, b: int) -> int:
    return 0 if b == 0 else a % b


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_floordiv_and_mod_follow_python_with_negatives_and_zero(dtype):
    T = kp.i32 if dtype == np.int32 else kp.i64

    @kp.kernel
    def divmod_(a: T[:], b: T[:], q: T[:], r: T[:]):
        for i in kp.grid(a.shape[0]):
            q[i] = a[i] // b[i]
            r[i] = a[i] % b[i]

    values = [-9, -7, -4, -3, -1, 0, 1, 3, 4, 7, 9, 100]
    pairs = [(x, y) for x in values for y in [-4, -3, -1, 0, 1, 3, 4]]
    a = np.array([p[0] for p in pairs], dtype)
    b = np.array([p[1] for p in pairs], dtype)
    q = np.full(a.shape, 99, dtype)
    r = np.full(a.shape, 99, dtype)
    divmod_(a, b, q, r)
    assert q.tolist() == [python_floordiv(x, y) for x, y in pairs]
    assert r.tolist() == [python_mod(x, y) for x, y in pairs]


def test_integer_division_by_zero_gives_zero():
    @kp.kernel
    def div0(a: kp.i32[:], u: kp.u32[:], q: kp.i32[:], r: kp.i32[:], uq: kp.u32[:], ur: kp.u32[:]):
        z = a.shape[0] - a.shape[0]
        for i in kp.grid(a.shape[0]):
            q[i] = a[i] // 0
            r[i] = a[i] % kp.i32(z)
            uq[i] = u[i] // kp.u32(z)
            ur[i] = u[i] % kp.u32(z)

    a = np.array([-5, 0, 5, 2**31 - 1, -(2**31)], np.int32)
    u = np.array([0, 1, 7, 2**32 - 1, 12], np.uint32)
    q, r = np.full(5, 3, np.int32), np.full(5, 3, np.int32)
    uq, ur = np.full(5, 3, np.uint32), np.full(5, 3, np.uint32)
    div0(a, u, q, r, uq, ur)
    assert q.tolist() == r.tolist() == uq.tolist() == ur.tolist() == [0] * 5


def test_unsigned_floordiv_and_mod():
    @kp.kernel
    def udiv(a: kp.u32[:], b: kp.u32[:], q: kp.u32[:], r: kp.u32[:]):
        for i in kp.grid(a.shape[0]):
            q[i] = a[i] // b[i]
            r[i] = a[i] % b[i]

    a = np.array([7, 4000000000, 4294967295, 5, 0], np.uint32)
    b = np.array([2, 3, 2, 7, 9], np.uint32)
    q, r = np.zeros(5, np.uint32), np.zeros(5, np.uint32)
    udiv(a, b, q, r)
    assert q.tolist() == [int(x) // int(y) for x, y in zip(a, b, strict=True)]
    assert r.tolist() == [int(x) % int(y) for x, y in zip(a, b, strict=True)]


def test_float_floordiv_and_mod_follow_python():
    @kp.kernel
    def fdivmod(a: kp.f64[:], b: kp.f64[:], q: kp.f64[:], r: kp.f64[:]):
        for i in kp.grid(a.shape[0]):
            q[i] = a[i] // b[i]
            r[i] = a[i] % b[i]

    pairs = [(7.5, 2.0), (-7.5, 2.0), (7.5, -2.0), (-7.5, -2.0), (1.0, 3.0), (-1.0, 3.0), (6.0, 3.0), (-6.0, 3.0)]
    a = np.array([p[0] for p in pairs])
    b = np.array([p[1] for p in pairs])
    q, r = np.zeros(len(pairs)), np.zeros(len(pairs))
    fdivmod(a, b, q, r)
    np.testing.assert_allclose(q, [x // y for x, y in pairs], **F64)
    np.testing.assert_allclose(r, [x % y for x, y in pairs], **F64)


def test_true_division_of_ints_is_f64():
    @kp.kernel
    def tdiv(a: kp.i32[:], b: kp.i32[:], out: kp.f64[:]):
        for i in kp.grid(a.shape[0]):
            out[i] = a[i] / b[i]

    a = np.array([1, -7, 10, 2**31 - 1], np.int32)
    b = np.array([3, 2, 4, 3], np.int32)
    out = np.zeros(4)
    tdiv(a, b, out)
    np.testing.assert_array_equal(out, a.astype(np.float64) / b.astype(np.float64))


def test_power_with_integer_exponents():
    @kp.kernel
    def powers(x: kp.f64[:], k: kp.i32[:], o: kp.f64[:, :], ko: kp.i32[:]):
        for i in kp.grid(x.shape[0]):
            o[0, i] = x[i] ** 3
            o[1, i] = x[i] ** -2
            o[2, i] = x[i] ** 0
            o[3, i] = x[i] ** 1
            ko[i] = k[i] ** 2

    x = np.array([-2.5, -1.0, 0.5, 1.5, 3.0, 10.0])
    k = np.array([-3, -1, 0, 2, 5, 46340], np.int32)
    o = np.zeros((4, 6))
    ko = np.zeros(6, np.int32)
    powers(x, k, o, ko)
    np.testing.assert_allclose(o, [x**3, x**-2.0, np.ones(6), x], rtol=1e-13)
    assert ko.tolist() == [int(v) ** 2 for v in k]


def test_power_with_a_runtime_integer_exponent():
    @kp.kernel
    def powers(x: kp.f64[:], y: kp.f32[:], n: kp.i32, o: kp.f64[:], p: kp.f32[:]):
        for i in kp.grid(x.shape[0]):
            o[i] = x[i] ** n
            p[i] = y[i] ** (n - 7)

    x = np.array([-2.5, -1.0, 0.5, 1.5, 3.0, 10.0])
    y = x.astype(np.float32)
    o, p = np.zeros(6), np.zeros(6, np.float32)
    powers(x, y, 5, o, p)
    np.testing.assert_allclose(o, x**5, rtol=1e-13)
    np.testing.assert_allclose(p, y.astype(np.float64) ** -2.0, rtol=1e-6)


def test_chained_comparisons():
    @kp.kernel
    def chained(x: kp.f64[:], lo: kp.f64, hi: kp.f64, inside: kp.bool_[:], interior: kp.bool_[:]):
        n = x.shape[0]
        for i in kp.grid(n):
            inside[i] = lo < x[i] <= hi
            interior[i] = 0 < i < n - 1 and lo <= x[i] < hi != x[i]

    x = np.array([-1.0, 0.0, 0.5, 1.0, 2.0, 1.0, 0.0])
    inside = np.zeros(7, np.bool_)
    interior = np.ones(7, np.bool_)
    chained(x, 0.0, 1.0, inside, interior)
    assert inside.tolist() == [False, False, True, True, False, True, False]
    idx = np.arange(7)
    expected = (idx > 0) & (idx < 6) & (x >= 0.0) & (x < 1.0)
    assert interior.tolist() == expected.tolist()


def test_and_or_not_truth_tables():
    @kp.kernel
    def logic(a: kp.bool_[:], b: kp.bool_[:], o: kp.bool_[:, :]):
        for i in kp.grid(a.shape[0]):
            o[0, i] = a[i] and b[i]
            o[1, i] = a[i] or b[i]
            o[2, i] = not a[i]
            o[3, i] = (a[i] and not b[i]) or (b[i] and not a[i])
            o[4, i] = not (a[i] or b[i]) or (a[i] and b[i])

    a = np.array([False, False, True, True])
    b = np.array([False, True, False, True])
    o = np.zeros((5, 4), np.bool_)
    logic(a, b, o)
    assert o.tolist() == [
        (a & b).tolist(),
        (a | b).tolist(),
        (~a).tolist(),
        (a ^ b).tolist(),
        (~(a ^ b)).tolist(),
    ]


def test_if_elif_else():
    @kp.kernel
    def classify(x: kp.f64[:], out: kp.i32[:]):
        for i in kp.grid(x.shape[0]):
            v = x[i]
            if v < 0.0:
                out[i] = -1
            elif v == 0.0:
                out[i] = 0
            elif v < 10.0 and not v == 5.0:  # noqa: SIM201
                out[i] = 1
            elif v == 5.0 or v > 100.0:
                out[i] = 3
            else:
                out[i] = 2

    x = np.array([-3.0, 0.0, 1.0, 5.0, 9.99, 10.0, 50.0, 101.0])
    out = np.full(8, 42, np.int32)
    classify(x, out)
    assert out.tolist() == [-1, 0, 1, 3, 1, 2, 2, 3]


def test_conditional_expressions():
    @kp.kernel
    def relu_and_parity(x: kp.f32[:], k: kp.i64[:], r: kp.f32[:], p: kp.i64[:]):
        for i in kp.grid(x.shape[0]):
            r[i] = x[i] if x[i] > 0.0 else 0.0
            p[i] = k[i] // 2 if k[i] % 2 == 0 else 3 * k[i] + 1

    x = np.array([-1.5, 0.0, 2.5, -0.0, 7.0], np.float32)
    k = np.array([-4, -3, 0, 5, 10], np.int64)
    r = np.full(5, np.nan, np.float32)
    p = np.zeros(5, np.int64)
    relu_and_parity(x, k, r, p)
    assert r.tolist() == [0.0, 0.0, 2.5, 0.0, 7.0]
    assert p.tolist() == [v // 2 if v % 2 == 0 else 3 * v + 1 for v in k.tolist()]


def test_unary_minus():
    @kp.kernel
    def neg(x: kp.f64[:], k: kp.i32[:], out: kp.f64[:], kout: kp.i32[:]):
        for i in kp.grid(x.shape[0]):
            out[i] = -x[i]
            kout[i] = -k[i] + -1

    x = np.array([1.5, -2.0, 0.0])
    k = np.array([3, -4, 0], np.int32)
    out, kout = np.zeros(3), np.zeros(3, np.int32)
    neg(x, k, out, kout)
    assert out.tolist() == [-1.5, 2.0, -0.0]
    assert kout.tolist() == [-4, 3, -1]


def test_continue_and_range_forms():
    @kp.kernel
    def rows(x: kp.f64[:, :], pos: kp.f64[:], even: kp.f64[:], rev: kp.i64[:], odd_count: kp.i64[:]):
        for i in kp.grid(x.shape[0]):
            s = 0.0
            for j in range(x.shape[1]):
                if x[i, j] < 0.0:
                    continue
                s += x[i, j]
            pos[i] = s
            e = 0.0
            for j in range(0, x.shape[1], 2):
                e += x[i, j]
            even[i] = e
            last = -1
            for j in range(x.shape[1] - 1, -1, -1):
                if x[i, j] < 0.0:
                    last = j
                    break
            rev[i] = last
            c = 0
            j = 0
            while j < x.shape[1]:
                j += 1
                if j % 2 == 0:
                    continue
                c += 1
            odd_count[i] = c

    x = rng(5).standard_normal((9, 11))
    x[2] = np.abs(x[2])
    pos, even = np.zeros(9), np.zeros(9)
    rev, odd_count = np.zeros(9, np.int64), np.zeros(9, np.int64)
    rows(x, pos, even, rev, odd_count)
    np.testing.assert_allclose(pos, np.where(x < 0, 0.0, x).sum(axis=1), **F64)
    np.testing.assert_allclose(even, x[:, ::2].sum(axis=1), **F64)
    neg = x < 0
    expected_rev = [max((j for j in range(11) if neg[i, j]), default=-1) for i in range(9)]
    assert rev.tolist() == expected_rev
    assert rev[2] == -1
    assert odd_count.tolist() == [6] * 9


MATH_NAMES = ["sqrt", "exp", "log", "sin", "cos", "tanh", "abs", "floor", "ceil", "fma", "min", "max"]


def math_reference(x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    return [
        np.sqrt(x),
        np.exp(y),
        np.log(x),
        np.sin(y),
        np.cos(y),
        np.tanh(y),
        np.abs(y),
        np.floor(y),
        np.ceil(y),
        x * y + 1.5,
        np.minimum(x, y),
        np.maximum(x, y),
    ]


def test_every_math_function_f64():
    @kp.kernel
    def math64(x: kp.f64[:], y: kp.f64[:], o: kp.f64[:, :]):
        for i in kp.grid(x.shape[0]):
            o[0, i] = kp.math.sqrt(x[i])
            o[1, i] = kp.math.exp(y[i])
            o[2, i] = kp.math.log(x[i])
            o[3, i] = kp.math.sin(y[i])
            o[4, i] = kp.math.cos(y[i])
            o[5, i] = kp.math.tanh(y[i])
            o[6, i] = kp.math.abs(y[i])
            o[7, i] = kp.math.floor(y[i])
            o[8, i] = kp.math.ceil(y[i])
            o[9, i] = kp.math.fma(x[i], y[i], 1.5)
            o[10, i] = kp.math.min(x[i], y[i])
            o[11, i] = kp.math.max(x[i], y[i])

    r = rng(6)
    x = r.uniform(0.01, 20.0, 37)
    y = r.uniform(-6.0, 6.0, 37)
    y[:4] = [-2.5, -0.0, 2.0, -3.0]
    o = np.zeros((12, 37))
    math64(x, y, o)
    for name, got, expected in zip(MATH_NAMES, o, math_reference(x, y), strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-15, err_msg=name)


def test_every_math_function_f32():
    @kp.kernel
    def math32(x: kp.f32[:], y: kp.f32[:], o: kp.f32[:, :], relu: kp.f32[:]):
        for i in kp.grid(x.shape[0]):
            o[0, i] = kp.math.sqrt(x[i])
            o[1, i] = kp.math.exp(y[i])
            o[2, i] = kp.math.log(x[i])
            o[3, i] = kp.math.sin(y[i])
            o[4, i] = kp.math.cos(y[i])
            o[5, i] = kp.math.tanh(y[i])
            o[6, i] = kp.math.abs(y[i])
            o[7, i] = kp.math.floor(y[i])
            o[8, i] = kp.math.ceil(y[i])
            o[9, i] = kp.math.fma(x[i], y[i], 1.5)
            o[10, i] = kp.math.min(x[i], y[i])
            o[11, i] = kp.math.max(x[i], y[i])
            relu[i] = kp.math.max(y[i], 0.0)

    r = rng(7)
    x = r.uniform(0.01, 20.0, 37).astype(np.float32)
    y = r.uniform(-6.0, 6.0, 37).astype(np.float32)
    o = np.zeros((12, 37), np.float32)
    relu = np.zeros(37, np.float32)
    math32(x, y, o, relu)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    for name, got, expected in zip(MATH_NAMES, o, math_reference(x64, y64), strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6, err_msg=name)
    np.testing.assert_array_equal(relu, np.maximum(y, np.float32(0)))


def test_math_on_integers():
    @kp.kernel
    def imath(a: kp.i32[:], b: kp.i32[:], o: kp.i32[:, :]):
        for i in kp.grid(a.shape[0]):
            o[0, i] = kp.math.abs(a[i])
            o[1, i] = kp.math.min(a[i], b[i])
            o[2, i] = kp.math.max(a[i], b[i])
            o[3, i] = kp.math.min(a[i], 3)

    a = np.array([-5, 0, 7, -1, 100], np.int32)
    b = np.array([2, -3, 7, -2, 50], np.int32)
    o = np.zeros((4, 5), np.int32)
    imath(a, b, o)
    assert o.tolist() == [np.abs(a).tolist(), np.minimum(a, b).tolist(), np.maximum(a, b).tolist(), [-5, 0, 3, -1, 3]]


def test_casts():
    @kp.kernel
    def casts(x: kp.f64[:], oi: kp.i32[:], of: kp.f32[:], ou: kp.u8[:], oidx: kp.f64[:], ol: kp.i64[:]):
        for i in kp.grid(x.shape[0]):
            oi[i] = kp.i32(x[i])
            of[i] = kp.f32(x[i])
            ou[i] = kp.u8(kp.i32(x[i]) + 10)
            oidx[i] = kp.f64(i) * 0.5
            ol[i] = kp.i64(kp.f32(x[i]) * 4.0)

    x = np.array([-5.7, -2.5, -0.3, 0.0, 0.3, 2.5, 5.7, 100.25])
    oi, of, ou = np.zeros(8, np.int32), np.zeros(8, np.float32), np.zeros(8, np.uint8)
    oidx, ol = np.zeros(8), np.zeros(8, np.int64)
    casts(x, oi, of, ou, oidx, ol)
    assert oi.tolist() == [int(v) for v in x]  # truncation toward zero
    np.testing.assert_array_equal(of, x.astype(np.float32))
    assert ou.tolist() == [int(v) + 10 for v in x]
    np.testing.assert_array_equal(oidx, np.arange(8) * 0.5)
    assert ol.tolist() == [int(np.float32(v) * np.float32(4.0)) for v in x]


def test_grid_3d():
    @kp.kernel
    def grid3(x: kp.f64[:, :, :], out: kp.f64[:, :, :]):
        for i, j, k in kp.grid(x.shape[0], x.shape[1], x.shape[2]):
            out[i, j, k] = x[i, j, k] * 2.0 + kp.f64(i * 100 + j * 10 + k)

    for shape in [(2, 3, 4), (1, 1, 1), (5, 1, 7), (0, 3, 2)]:
        x = rng(1).standard_normal(shape)
        out = np.full(shape, np.nan)
        grid3(x, out)
        i, j, k = np.indices(shape)
        np.testing.assert_allclose(out, x * 2.0 + (i * 100 + j * 10 + k), **F64)


def test_scalar_statements_before_the_grid_loop():
    @kp.kernel
    def normalize(x: kp.f64[:], bias: kp.f64, out: kp.f64[:]):
        n = x.shape[0]
        inv = 1.0 / kp.f64(n)
        half = n // 2
        scale = 1.0
        if n > 3:
            scale = 2.0
        shift = bias * scale + kp.f64(half)
        for i in kp.grid(n):
            out[i] = x[i] * inv + shift

    for n in [1, 3, 8]:
        x = np.arange(n, dtype=np.float64)
        out = np.zeros(n)
        normalize(x, 0.5, out)
        scale = 2.0 if n > 3 else 1.0
        np.testing.assert_allclose(out, x / n + (0.5 * scale + n // 2), **F64)


def test_scalar_loop_before_the_grid_loop():
    @kp.kernel
    def pow2(x: kp.i64[:], out: kp.i64[:]):
        n = x.shape[0]
        p = 1
        while p < n:
            p *= 2
        total = 0
        for k in range(n):
            total += k
        for i in kp.grid(n):
            out[i] = x[i] + p * 1000 + total

    x = np.arange(5, dtype=np.int64)
    out = np.zeros(5, np.int64)
    pow2(x, out)
    assert out.tolist() == [v + 8000 + 10 for v in range(5)]


def test_bool_arrays_and_bool_scalar():
    @kp.kernel
    def threshold(x: kp.f32[:], t: kp.f32, flip: kp.bool_, mask: kp.bool_[:]):
        for i in kp.grid(x.shape[0]):
            m = x[i] > t
            if flip:
                m = not m
            mask[i] = m

    @kp.kernel
    def select(mask: kp.bool_[:], a: kp.f64[:], b: kp.f64[:], out: kp.f64[:]):
        for i in kp.grid(mask.shape[0]):
            out[i] = a[i] if mask[i] else b[i]

    x = np.array([0.5, 1.5, -1.0, 1.0, 2.0], np.float32)
    mask = np.zeros(5, np.bool_)
    threshold(x, 1.0, False, mask)
    assert mask.tolist() == (x > 1.0).tolist()
    threshold(x, 1.0, True, mask)
    assert mask.tolist() == (x <= 1.0).tolist()
    out = np.zeros(5)
    select(mask, np.arange(5.0), -np.arange(5.0), out)
    assert out.tolist() == np.where(mask, np.arange(5.0), -np.arange(5.0)).tolist()


def test_u8_arrays():
    @kp.kernel
    def invert(img: kp.u8[:, :], out: kp.u8[:, :]):
        for i, j in kp.grid(img.shape[0], img.shape[1]):
            out[i, j] = 255 - img[i, j]

    @kp.kernel
    def add_saturate(a: kp.u8[:], b: kp.u8[:], out: kp.u8[:]):
        for i in kp.grid(a.shape[0]):
            v = kp.i32(a[i]) + kp.i32(b[i])
            out[i] = kp.u8(kp.math.min(v, 255))

    img = rng(8).integers(0, 256, (7, 13), dtype=np.uint8)
    out = np.zeros_like(img)
    invert(img, out)
    np.testing.assert_array_equal(out, 255 - img)
    a = rng(9).integers(0, 256, 101, dtype=np.uint8)
    b = rng(10).integers(0, 256, 101, dtype=np.uint8)
    s = np.zeros(101, np.uint8)
    add_saturate(a, b, s)
    np.testing.assert_array_equal(s, np.minimum(a.astype(np.int32) + b, 255).astype(np.uint8))


# --------------------------------------------------------------------- typing rules


def differing_f32_inputs() -> np.ndarray:
    """Values for which ``x * 0.1`` in f32 differs from the f64 product rounded to f32."""
    x = np.arange(1, 2000, dtype=np.float32) * np.float32(1.37)
    as_f32 = x * np.float32(0.1)
    as_f64 = (x.astype(np.float64) * 0.1).astype(np.float32)
    assert (as_f32 != as_f64).sum() > 10  # the test below can tell the two apart
    return x


def test_weak_float_literal_keeps_f32():
    @kp.kernel
    def tenth(x: kp.f32[:], out: kp.f32[:]):
        for i in kp.grid(x.shape[0]):
            out[i] = x[i] * 0.1

    x = differing_f32_inputs()
    out = np.zeros_like(x)
    tenth(x, out)
    np.testing.assert_array_equal(out, x * np.float32(0.1))


def test_bare_float_literal_local_is_f64():
    @kp.kernel
    def tenth_via_local(x: kp.f32[:], out: kp.f32[:]):
        for i in kp.grid(x.shape[0]):
            s = 0.0
            s += x[i]
            out[i] = s * 0.1

    x = differing_f32_inputs()
    out = np.zeros_like(x)
    tenth_via_local(x, out)
    np.testing.assert_array_equal(out, (x.astype(np.float64) * 0.1).astype(np.float32))


def test_f32_with_f64_is_f64():
    @kp.kernel
    def mixed(x: kp.f32[:], y: kp.f64[:], out: kp.f32[:]):
        for i in kp.grid(x.shape[0]):
            out[i] = x[i] * y[i]

    x = differing_f32_inputs()
    y = np.full(x.shape, 0.1)
    out = np.zeros_like(x)
    mixed(x, y, out)
    np.testing.assert_array_equal(out, (x.astype(np.float64) * 0.1).astype(np.float32))


def test_i32_with_f32_is_f32_not_f64():
    @kp.kernel
    def int_float(k: kp.i32[:], x: kp.f32[:], out: kp.f32[:]):
        for i in kp.grid(k.shape[0]):
            out[i] = (k[i] + x[i]) * 0.1

    k = np.arange(1, 2000, dtype=np.int32) * 3
    x = differing_f32_inputs()[: len(k)]
    out = np.zeros_like(x)
    int_float(k, x, out)
    expected = (k.astype(np.float32) + x) * np.float32(0.1)
    as_f64 = ((k.astype(np.float64) + x.astype(np.float64)) * 0.1).astype(np.float32)
    assert (expected != as_f64).any()
    np.testing.assert_array_equal(out, expected)


def test_integer_promotions():
    @kp.kernel
    def promote(a: kp.u32[:], b: kp.i32[:], c: kp.i64[:], q: kp.i64[:], s: kp.i64[:], g: kp.bool_[:]):
        for i in kp.grid(a.shape[0]):
            q[i] = a[i] // b[i]  # u32 with i32 -> i64
            s[i] = b[i] + c[i]  # i32 with i64 -> i64
            g[i] = a[i] > b[i]

    a = np.array([7, 3000000000, 1, 4294967295], np.uint32)
    b = np.array([-2, -2, -1, 2147483647], np.int32)
    c = np.array([1, 2**40, -5, 1], np.int64)
    q, s, g = np.zeros(4, np.int64), np.zeros(4, np.int64), np.zeros(4, np.bool_)
    promote(a, b, c, q, s, g)
    assert q.tolist() == [int(x) // int(y) for x, y in zip(a, b, strict=True)]
    assert s.tolist() == [int(y) + int(z) for y, z in zip(b, c, strict=True)]
    assert g.tolist() == [int(x) > int(y) for x, y in zip(a, b, strict=True)]


def test_int_literal_and_int_to_float_store():
    @kp.kernel
    def ints(k: kp.i32[:], out: kp.i32[:], f: kp.f64[:]):
        for i in kp.grid(k.shape[0]):
            out[i] = k[i] * 2 + 1
            f[i] = k[i] + 1
            c = 0
            c += k[i]
            f[i] += c

    k = np.array([-3, 0, 5, 1000000], np.int32)
    out, f = np.zeros(4, np.int32), np.zeros(4)
    ints(k, out, f)
    assert out.tolist() == [v * 2 + 1 for v in k.tolist()]
    assert f.tolist() == [2.0 * v + 1 for v in k.tolist()]


def test_string_annotations_are_resolved():
    @kp.kernel
    def quoted(x: "kp.f64[:]", a: "kp.f64", out: "kp.f64[:]"):
        for i in kp.grid(x.shape[0]):
            out[i] = a * x[i]

    x = np.arange(4.0)
    out = np.zeros(4)
    quoted(x, 3.0, out)
    assert out.tolist() == [0.0, 3.0, 6.0, 9.0]


# --------------------------------------------------------------------- kp.build, threads


def test_build_several_kernels_and_vectorized_ir():
    mod = kp.build([ks.vadd_f32, ks.saxpy, ks.matmul])
    ir = mod.inspect_source()
    assert re.search(r"<\d+ x float>", ir), "the f32 vector add was not vectorized"
    for n in [0, 1, 7, 33, 1025]:
        a = np.arange(n, dtype=np.float32)
        b = np.full(n, 0.5, np.float32)
        out = np.zeros(n, np.float32)
        mod["vadd_f32"](a, b, out)
        np.testing.assert_array_equal(out, a + b)
        mod["saxpy"](3.0, a, b, out)
        np.testing.assert_allclose(out, np.float32(3.0) * a + b, **F32)
    a = rng(11).standard_normal((5, 6)).astype(np.float32)
    b = rng(12).standard_normal((6, 4)).astype(np.float32)
    c = np.zeros((5, 4), np.float32)
    mod["matmul"](a, b, c)
    np.testing.assert_allclose(c, a @ b, rtol=1e-5, atol=1e-5)


def test_build_options_and_signature_preserved():
    mod = kp.build([ks.saxpy], target="cpu", cpu=None, threads=None, opt_level=0)
    assert str(mod["saxpy"].signature) == str(ks.saxpy.signature)
    x = np.arange(9, dtype=np.float32)
    out = np.zeros(9, np.float32)
    mod["saxpy"](2.0, x, x, out)
    np.testing.assert_array_equal(out, 3 * x)


def test_threads_2_gives_identical_results():
    single = kp.build([ks.vadd_f64, ks.matmul_into, ks.bincount, ks.stencil, ks.collatz_steps])
    double = kp.build([ks.vadd_f64, ks.matmul_into, ks.bincount, ks.stencil, ks.collatz_steps], threads=2)
    r = rng(13)
    a, b = r.standard_normal(100001), r.standard_normal(100001)
    outs = [np.zeros(100001), np.zeros(100001)]
    ma, mb = r.standard_normal((67, 31)), r.standard_normal((31, 45))
    mcs = [np.zeros((67, 45)), np.zeros((67, 45))]
    data = r.integers(0, 50, 200003, dtype=np.int32)
    counts = [np.zeros(50, np.int32), np.zeros(50, np.int32)]
    grid = r.standard_normal((129, 77))
    sts = [np.zeros_like(grid), np.zeros_like(grid)]
    starts = np.arange(1, 5001, dtype=np.int64)
    steps = [np.zeros_like(starts), np.zeros_like(starts)]
    for mod, out, mc, cnt, st, sp in zip([single, double], outs, mcs, counts, sts, steps, strict=True):
        mod["vadd_f64"](a, b, out)
        mod["matmul_into"](ma, mb, mc)
        mod["bincount"](data, cnt)
        mod["stencil"](grid, st)
        mod["collatz_steps"](starts, 500, sp)
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[1], a + b)
    np.testing.assert_array_equal(mcs[0], mcs[1])
    np.testing.assert_array_equal(counts[0], counts[1])
    np.testing.assert_array_equal(counts[1], np.bincount(data, minlength=50))
    np.testing.assert_array_equal(sts[0], sts[1])
    np.testing.assert_array_equal(steps[0], steps[1])


# --------------------------------------------------------------------- argument checking


@kp.kernel
def scale_into(factor: kp.f64, values: kp.f64[:], result: kp.f64[:]):
    for i in kp.grid(result.shape[0]):
        result[i] = factor * values[i]


@kp.kernel
def scale_2d(values: kp.f32[:, :], result: kp.f32[:, :]):
    for i, j in kp.grid(result.shape[0], result.shape[1]):
        result[i, j] = values[i, j] * 2.0


def test_wrong_dtype_names_the_parameter():
    with pytest.raises(kp.ArgumentError, match=r"\bvalues\b"):
        scale_into(2.0, np.zeros(4, np.float32), np.zeros(4))
    with pytest.raises(kp.ArgumentError, match=r"\bresult\b"):
        scale_into(2.0, np.zeros(4), np.zeros(4, np.int64))
    with pytest.raises(TypeError):  # ArgumentError is a TypeError
        scale_into(2.0, np.zeros(4), np.zeros(4, np.float32))


def test_wrong_ndim_names_the_parameter():
    with pytest.raises(kp.ArgumentError, match=r"\bvalues\b"):
        scale_into(2.0, np.zeros((2, 2)), np.zeros(4))
    with pytest.raises(kp.ArgumentError, match=r"\bresult\b"):
        scale_2d(np.zeros((2, 2), np.float32), np.zeros(4, np.float32))


def test_non_contiguous_names_the_parameter():
    with pytest.raises(kp.ArgumentError, match=r"\bvalues\b"):
        scale_into(2.0, np.zeros(8)[::2], np.zeros(4))
    with pytest.raises(kp.ArgumentError, match=r"\bresult\b"):
        scale_2d(np.zeros((3, 4), np.float32), np.zeros((4, 3), np.float32).T)
    with pytest.raises(kp.ArgumentError, match=r"\bvalues\b"):
        scale_2d(np.asfortranarray(np.zeros((3, 4), np.float32)), np.zeros((3, 4), np.float32))


def test_read_only_output_is_refused_read_only_input_is_fine():
    values = np.arange(4.0)
    values.setflags(write=False)
    result = np.zeros(4)
    scale_into(2.0, values, result)
    assert result.tolist() == [0.0, 2.0, 4.0, 6.0]
    result.setflags(write=False)
    with pytest.raises(kp.ArgumentError, match=r"\bresult\b"):
        scale_into(2.0, values, result)
    assert result.tolist() == [0.0, 2.0, 4.0, 6.0]


def test_wrong_argument_count_and_scalar_kind():
    with pytest.raises(kp.ArgumentError):
        scale_into(2.0, np.zeros(4))
    with pytest.raises(kp.ArgumentError, match=r"\bfactor\b"):
        scale_into("2", np.zeros(4), np.zeros(4))


def test_argument_checks_apply_to_built_modules_too():
    mod = kp.build([scale_into])
    with pytest.raises(kp.ArgumentError, match=r"\bresult\b"):
        mod["scale_into"](2.0, np.zeros(4), np.zeros(4, np.float32))
