"""Vulkan: one kernel per failure class of shared/reference/kernel-bugs.md (and those found since).

Each kernel runs on the CPU and on Vulkan (lavapipe) and must give the same bits (NaNs equal,
zeros of the same sign); each shader must also pass ``spirv-val --target-env vulkan1.3``.
The kernels are written here, in a real file: the front end reads their source.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

import kernpack as kp
from tests.conftest import require_device, shader, spirv_val

G_I7 = 7
G_I9 = 5


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# ----------------------------------------------------------- structured control flow
@kp.kernel
def loop_in_if_arm(x2: kp.u32[:], o1: kp.f64[:, :, :], g6: kp.i16):
    # vulkan_if_else_loop_invalid_spirv: "OpSelectionMerge must immediately precede ..."
    for i, j in kp.grid(o1.shape[0], g6):
        if kp.bool_(x2[j]):
            for k9 in range(4):
                o1[i, j, kp.u64(1) % o1.shape[2]] = x2[k9]
        else:
            o1[i, j, 1] = o1[i, j, x2[14] % o1.shape[2]]


@kp.kernel
def continue_after_select(x: kp.f64[:], o: kp.i8[:], s3: kp.bool_):
    # vulkan_structured_exit_invalid_spirv: "... exits the selection ..., but not via a structured exit"
    for i in kp.grid(o.shape[0]):
        if x[i] > 0.0:
            pass
        else:
            o[i] = 1
        if x[(o[i] if s3 else o[i]) % x.shape[0]] != 0.0:  # noqa: RUF034 - the select is the point
            continue
        o[i] = kp.i8(x[0]) if (x[i] < 0.5) else 3


@kp.kernel
def break_continue_nested(x: kp.i32[:, :], out: kp.i64[:]):
    for i in kp.grid(out.shape[0]):
        s = 0
        for j in range(x.shape[1]):
            if x[i, j] < 0:
                continue
            if x[i, j] > 90:
                break
            k = 0
            while True:
                k += 1
                if k > x[i, j] % 7:
                    break
                if k == 3:
                    continue
                s += k
            s += x[i, j]
        if s > 1000:
            continue
        out[i] = s


@kp.kernel
def short_circuits(x: kp.f64[:], y: kp.i32[:], out: kp.i32[:]):
    n = x.shape[0]
    for i in kp.grid(out.shape[0]):
        if i < n and x[i] > 0.5 and (y[i] > 3 or y[(i + 1) % n] < -3):
            out[i] = 1 if x[i] > 0.75 else (2 if y[i] > 0 else 3)
        elif not (x[i] < 0.1 or y[i] == 0):
            for k in range(3):
                if k == 1 and y[i] > 0:
                    break
                out[i] += k
        else:
            out[i] = -1


@kp.kernel
def reducible_only(o1: kp.i64[:, :], s6: kp.i32, s7: kp.i8, x4: kp.u8[:], x2: kp.f64[:], x3: kp.f32[:], g8: kp.i16):
    # vulkan_irreducible_graph_abort ("Is the graph reducible?"), with its math in f32.
    v9 = g8
    for i in kp.grid(g8):
        v10 = v9
        if (x4[i] > kp.f64(0.0)) or (kp.f32(0.0) != (s6 / i)):
            v10 = kp.i16(x2[i])
        else:
            for _ in range(3):
                v10 *= x4[g8] ** v10
        for k23 in range(4):
            v10 = v10 + kp.i8(1)
            if kp.math.sin(kp.f32(x3[8 % x3.shape[0]] / x2[k23])) != kp.math.log(kp.math.abs(x3[1]) + kp.f32(1.0)):
                pass
            else:
                v10 = kp.i16(abs(kp.math.log(kp.f32(o1.shape[1]) + kp.f32(1.0))))
        o1[i, (s6 + x4[g8]) % o1.shape[1]] = kp.i64(min(9, i / x4[min(max(x4[kp.i64(s7) % x4.shape[0]], s7), 9)]))


@kp.kernel
def loop_conditional_store(o2: kp.u64[:, :], x4: kp.u64[:, :, :], o1: kp.i32[:, :]):
    # vulkan_loop_conditional_store_miscompile (lavapipe: kp.i64(i32) > constant was always true)
    for i in kp.grid(o1.shape[0]):
        for k6 in range(5):
            if k6 < (-o1[i, x4[i, 0, k6] % o1.shape[1]]):
                o2[i, 0] = max((i * o1[i, 0]) - i, k6)


# ----------------------------------------------------------- optimizer-made pointer select/phi, idioms
@kp.kernel
def two_stores_one_pointer(x4: kp.f32[:], s5: kp.u32, s6: kp.u32, x3: kp.i8[:], o1: kp.u16[:], o2: kp.f32[:, :]):
    # vulkan_pointer_phi_invalid_spirv: "Using pointers with OpPhi requires capability VariablePointers"
    for i in kp.grid(o1.shape[0]):
        if (s6 - i) != (o1.shape[0] * G_I7):
            o1[i] = kp.u16(kp.math.sin(kp.f32(x3[80])))
        elif (kp.bool_(x4[x3[(s6 - x3[i]) % x3.shape[0]] % x4.shape[0]]) != (s5 == s6)) and (
            (0.1 % (kp.f32(o2.shape[0]) + 0.25)) < x4[(s6 * 9) % x4.shape[0]]
        ):
            pass
        elif ((s6 // x3[2 % x3.shape[0]]) - (x4[2] ** G_I9)) >= (kp.u64(i) + kp.u64(s6)):
            w10 = 0
            while w10 < 3 and ((s6 - s5) != kp.math.exp(x4[2])):
                w10 += 1
                o2[i, (o2.shape[1] + i) % o2.shape[1]] /= kp.u8(s5 * o1[i])
        inner = x3[min(max(min(x3[i], 127), 0), x3.shape[0] - 1)]
        o2[i, s6 % o2.shape[1]] = x3[min(max(inner % 9, 0), x3.shape[0] - 1)]


@kp.kernel
def select_between_elements(o1: kp.f32[:, :], x2: kp.u32[:], x4: kp.i32[:], s5: kp.i64, n7: kp.i8, x3: kp.i64[:, :]):
    # vulkan_ptrcast_unreachable: "Unsupported ptrcast user"
    for i in kp.grid(min(max(max(s5, x2.shape[0]), x4.shape[0] + x2.shape[0]), o1.shape[0])):
        w17 = 0
        while w17 < 3 and (kp.f64(0.0) < min(x2[64], x2.shape[0])):
            w17 += 1
            o1[i, ((4 // o1.shape[0]) % x4.shape[0]) % o1.shape[1]] = (
                kp.i32(0) if (x3[n7, n7] < o1[i, 0]) else kp.f32(1.0)
            )
        o1[i, 0] = x3[n7, n7]


@kp.kernel
def zero_times_int(s: kp.i32, out: kp.f64[:]):
    # vulkan_zero_times_x_copysign: "cannot select: G_FCOPYSIGN"
    for i in kp.grid(out.shape[0]):
        out[i] = 0.0 * kp.f64(s)


@kp.kernel
def clamped_index(x: kp.i32[:], o: kp.i32[:]):
    # vulkan_clamped_index_usubsat: "cannot select: G_USUBSAT"
    for i in kp.grid(o.shape[0]):
        o[i] = x[min(max(i - 5, 0), x.shape[0] - 1)]


@kp.kernel
def narrowing_casts(n: kp.i64, m: kp.i32, x: kp.i64[:], o: kp.i64[:, :]):
    # zext(trunc i64 -> i8): the backend made an i32 `and` of the i64 (spirv-val: bit width);
    # kp.i64(i32) compared with a constant: lavapipe got it wrong
    for i in kp.grid(o.shape[0]):
        o[i, 0] = kp.u32(kp.u8(n))
        o[i, 1] = kp.u64(kp.u8(n))
        o[i, 2] = kp.u32(kp.u16(n))
        o[i, 3] = kp.i32(kp.i8(x.shape[0]))
        o[i, 4] = kp.u16(kp.i8(x[i]))
        o[i, 5] = kp.i64(kp.i16(m))
        o[i, 6] = kp.i64(kp.i32(x[i])) > 2
        o[i, 7] = kp.i64(kp.i32(x[i])) < -2


# ----------------------------------------------------------- atomics
@kp.kernel
def atomic_add_i64(x: kp.i64[:], acc: kp.i64[:]):
    # vulkan_atomic_add_int64_llvm_abort: "Unable to meet SPIR-V requirements"
    for i in kp.grid(x.shape[0]):
        kp.atomic_add(acc, i % 3, x[i])


@kp.kernel
def atomic_add_u64(x: kp.u64[:], acc: kp.u64[:]):
    for i in kp.grid(x.shape[0]):
        kp.atomic_add(acc, 0, x[i])


# ----------------------------------------------------------- float semantics
@kp.kernel
def divide_by_constant_zero(s: kp.i64, x: kp.f64[:], y: kp.f32[:], out: kp.f64[:, :], out32: kp.f32[:]):
    # vulkan_float_div_by_zero_store_dropped: the store vanished
    for i in kp.grid(out.shape[0]):
        out[i, 0] = s / kp.i64(0)
        out[i, 1] = x[i] / -0.0
        out[i, 2] = x[i] / 0.0
        out[i, 3] = kp.f64(-0.0) ** -1
        out32[i] = y[i] / kp.f32(0.0)


@kp.kernel
def float_mod_floordiv(x: kp.f64[:], y: kp.f64[:], u: kp.f32[:], v: kp.f32[:], out: kp.f64[:, :], out32: kp.f32[:, :]):
    # vulkan_float_mod_inexact: 126.0 % 0.1 was 0.0
    for i in kp.grid(x.shape[0]):
        out[i, 0] = x[i] % y[i]
        out[i, 1] = x[i] // y[i]
        out32[i, 0] = u[i] % v[i]
        out32[i, 1] = u[i] // v[i]


@kp.kernel
def nan_to_int(x: kp.f32[:], y: kp.f64[:], o: kp.i64[:, :]):
    # docs rule 10: NaN converts to 0, out-of-range values saturate
    for i in kp.grid(x.shape[0]):
        o[i, 0] = kp.i32(x[i])
        o[i, 1] = kp.u32(x[i])
        o[i, 2] = kp.i8(x[i])
        o[i, 3] = kp.u8(y[i])
        o[i, 4] = kp.i64(y[i])
        o[i, 5] = kp.u64(y[i])
        o[i, 6] = kp.i16(y[i])
        o[i, 7] = kp.i64(x[i])


@kp.kernel
def multiply_add(
    a: kp.f32[:], b: kp.f32[:], c: kp.f32[:], d: kp.f64[:], e: kp.f64[:], f: kp.f64[:], o: kp.f32[:], p: kp.f64[:]
):
    # a * b + c must round twice, as numpy does: no contraction into an fma
    for i in kp.grid(o.shape[0]):
        o[i] = a[i] * b[i] + c[i]
        p[i] = d[i] * e[i] - f[i]


@kp.kernel
def folded_zeros(o: kp.f64[:, :], x: kp.f64[:], q: kp.i64[:]):
    # lavapipe folds x * 0.0, 0.0 / x, x + 0.0, 0.0 - x and x - (-0.0) whenever it can see the
    # zero as a constant, even under SignedZeroInfNanPreserve: wrong for NaN, inf and -0.0.
    v = 0.0
    m = -0.0
    for i in kp.grid(o.shape[0]):
        o[i, 0] = v * x[i]
        o[i, 1] = kp.f64(q[i] - q[i]) * x[i]
        o[i, 2] = x[i] + v
        o[i, 3] = v / x[i]
        o[i, 4] = (v if i > 100 else 0.0) * x[i]
        o[i, 5] = v - x[i]
        o[i, 6] = x[i] - m
        o[i, 7] = (q[i] - q[i]) * (i / i)


@kp.kernel
def float32_log_tanh(x: kp.f32[:], o: kp.f32[:, :]):
    # lavapipe's 32-bit Log is wrong for subnormals (log(1e-40) gave -88.02, not -92.10), and
    # its Tanh is off by an absolute 3e-08 near 0 (tanh(1e-30) gave 2.98e-08): both via float64
    for i in kp.grid(x.shape[0]):
        o[i, 0] = math.log(x[i])
        o[i, 1] = math.tanh(x[i])


@kp.kernel
def float32_math(x: kp.f32[:], o: kp.f32[:, :]):
    for i in kp.grid(x.shape[0]):
        o[i, 0] = kp.math.exp(x[i])
        o[i, 1] = kp.math.log(x[i])
        o[i, 2] = kp.math.sin(x[i])
        o[i, 3] = kp.math.cos(x[i])
        o[i, 4] = kp.math.tanh(x[i])


@kp.kernel
def fused32(a: kp.f32[:], b: kp.f32[:], c: kp.f32[:], o: kp.f32[:]):
    for i in kp.grid(o.shape[0]):
        o[i] = kp.math.fma(a[i], b[i], c[i])


@kp.kernel
def fused64(a: kp.f64[:], b: kp.f64[:], c: kp.f64[:], o: kp.f64[:]):
    for i in kp.grid(o.shape[0]):
        o[i] = kp.math.fma(a[i], b[i], c[i])


@kp.kernel
def float64_math(x: kp.f64[:], o: kp.f64[:, :]):
    for i in kp.grid(x.shape[0]):
        o[i, 0] = kp.math.exp(x[i])
        o[i, 1] = kp.math.log(x[i])
        o[i, 2] = kp.math.sin(x[i])
        o[i, 3] = kp.math.cos(x[i])
        o[i, 4] = kp.math.tanh(x[i])


def _random_floats(seed: int, n: int, dtype: type, bits: type) -> np.ndarray:
    """Half arbitrary bit patterns (NaNs, infinities, subnormals), half ordinary values."""
    r = rng(seed)
    patterns = r.integers(0, np.iinfo(bits).max, n, dtype=bits, endpoint=True).view(dtype)
    ordinary = (r.standard_normal(n) * 10.0 ** r.integers(-5, 5, n)).astype(dtype)
    return np.where(r.random(n) < 0.5, patterns, ordinary)


_MOD_X = [126.0, 1.0, 5.5, -5.5, 5.5, -0.0, 0.0, 1e300, 3.0, math.inf, 1.0, math.nan, 7.0, 1e-310, 2.0, 1e10]
_MOD_Y = [0.1, 0.1, 2.0, 2.0, -2.0, 3.0, -3.0, 1e-300, math.inf, 2.0, 0.0, 1.0, -math.inf, 3e-320, 1e-310, 3.0]
_SPECIAL32 = [math.nan, -math.nan, 1e20, -1e20, 3.7, -3.7, math.inf, -math.inf]


def _mod_args() -> list:
    x = np.r_[_MOD_X, _random_floats(1, 2000, np.float64, np.uint64)]
    y = np.r_[_MOD_Y, _random_floats(2, 2000, np.float64, np.uint64)]
    with np.errstate(over="ignore"):  # 1e300 is inf in float32, on purpose
        u = np.r_[np.array(_MOD_X, np.float32), _random_floats(3, 2000, np.float32, np.uint32)]
        v = np.r_[np.array(_MOD_Y, np.float32), _random_floats(4, 2000, np.float32, np.uint32)]
    return [x, y, u, v, np.zeros((len(x), 2)), np.zeros((len(x), 2), np.float32)]


def _pointer_phi_args() -> list:
    r = rng(0)
    x4, x3 = r.standard_normal(100).astype(np.float32), r.integers(-10, 10, 100).astype(np.int8)
    return [x4, np.uint32(3), np.uint32(5), x3, np.zeros(100, np.uint16), np.zeros((100, 4), np.float32)]


def _conditional_store_args() -> list:
    o1 = np.array([[0] * 5, [-707250739, 2002919927, 825683925, -1638240496, -1444270654]], np.int32)
    x4 = np.zeros((2, 1, 5), np.uint64)
    x4[1, 0] = [1, 1, 0, 1, 1]  # only k6 == 2 reads -o1[1, 0] = 707250739 > 2
    return [np.full((2, 1), 99, np.uint64), x4, o1]


@kp.kernel
def select_zero_sign(o: kp.f32[:], s: kp.f64[:], c: kp.bool_):
    # vulkan_select_zero_sign: lavapipe turns a select of 0.0 and -1.0 into -(float)(!c), -0.0
    # where 0.0 was chosen: x // (0.0 if c else -1.0) gave the infinity of the wrong sign.
    for i in kp.grid(o.shape[0]):
        o[i] //= kp.f32(0.0) if c else kp.f32(-1.0)
        s[i] = (-1.0 if c else 0.0) + (0.0 if c else -1.0)


@kp.kernel
def zero_over_negative(x: kp.f64[:], o: kp.f64[:]):
    # vulkan_call_of_zero_folds: lavapipe folds 0.0 / y to +0.0; sqrt(0.0) is such a 0.0 for it,
    # and -0.0 / ... must stay -0.0 for a negative y.
    for i in kp.grid(o.shape[0]):
        o[i] = kp.math.sqrt(kp.f32(0.0)) / x[i]


@kp.kernel
def min_limit_loop(x: kp.u32[:], out: kp.i64[:, :]):
    # vulkan_min_limit_loop_cut_short: lavapipe's loop analysis took the constant c of a limit
    # min(x, c) as the loop's limit, even counting down: range(4, min(x, 1), -1) ran 3 times for
    # x = -3, not 7. The same for a while loop, and where the limit is clamped from both sides.
    for i in kp.grid(out.shape[0]):
        for _k in range(4, min(kp.i64(x[i]) - 10, 1), -1):
            out[i, 0] += 1
        n = 4
        while n > min(kp.i64(x[i]) - 10, 1):
            n -= 1
            out[i, 1] += 1
        for k in range(4, min(max(x.shape[0] - x[i], -3), 1), -1):
            out[i, 2] += k


CASES: dict[str, tuple[kp.Kernel, Callable[[], list]]] = {
    "loop_in_if_arm": (loop_in_if_arm, lambda: [np.arange(16, dtype=np.uint32), np.zeros((3, 4, 2)), np.int16(4)]),
    "continue_after_select": (continue_after_select, lambda: [np.array([0.0, -1.0, 2.0, 0.0]), np.zeros(4, np.int8),
                                                              True]),
    "break_continue_nested": (break_continue_nested, lambda: [rng().integers(-20, 100, (50, 30), dtype=np.int32),
                                                              np.full(50, -5, np.int64)]),
    "short_circuits": (short_circuits, lambda: [rng().random(100), rng(1).integers(-6, 6, 100, dtype=np.int32),
                                                np.zeros(100, np.int32)]),
    "reducible_only": (reducible_only, lambda: [np.zeros((6, 5), np.int64), np.int32(2), np.int8(1),
                                                np.arange(10, dtype=np.uint8), rng().standard_normal(10) * 3,
                                                rng(1).standard_normal(10).astype(np.float32), np.int16(6)]),
    "loop_conditional_store": (loop_conditional_store, _conditional_store_args),
    "two_stores_one_pointer": (two_stores_one_pointer, _pointer_phi_args),
    "select_between_elements": (select_between_elements, lambda: [rng().random((70, 3), np.float32),
                                                                  np.arange(70, dtype=np.uint32),
                                                                  np.arange(5, dtype=np.int32), np.int64(3),
                                                                  np.int8(1), rng().integers(-3, 3, (3, 3))]),
    "select_zero_sign": (select_zero_sign, lambda: [np.array([-2.5, 2.5, -0.0, 0.0], np.float32), np.zeros(4), True]),
    "zero_over_negative": (zero_over_negative, lambda: [np.array([-2.0, 3.0, -0.5]), np.zeros(3)]),
    "min_limit_loop": (min_limit_loop, lambda: [np.array([4, 16, 16, 12, 2, 0, 0, 18], np.uint32),
                                                np.zeros((8, 3), np.int64)]),
    "zero_times_int": (zero_times_int, lambda: [np.int32(-3), np.ones(4)]),
    "clamped_index": (clamped_index, lambda: [np.arange(10, dtype=np.int32), np.zeros(10, np.int32)]),
    "narrowing_casts": (narrowing_casts, lambda: [np.int64(-3), np.int32(1000),
                                                  np.array([-1, 300, 70000, -129, 2**40 + 255, -3, 3, 2]),
                                                  np.zeros((8, 8), np.int64)]),
    "atomic_add_i64": (atomic_add_i64, lambda: [rng().integers(-2**62, 2**62, 5000, dtype=np.int64),
                                                np.array([5, -7, 2**40], np.int64)]),
    "atomic_add_u64": (atomic_add_u64, lambda: [rng(3).integers(0, 2**64 - 1, 5000, dtype=np.uint64),
                                                np.array([2**64 - 3], np.uint64)]),
    "divide_by_constant_zero": (divide_by_constant_zero, lambda: [np.int64(-3), np.array([1.0, -2.0, 0.0, math.nan]),
                                                                  np.array([1.0, -2.0, 0.0, math.nan], np.float32),
                                                                  np.full((4, 4), 7.0), np.full(4, 7.0, np.float32)]),
    "float_mod_floordiv": (float_mod_floordiv, _mod_args),
    "nan_to_int": (nan_to_int, lambda: [np.array(_SPECIAL32, np.float32), np.array(_SPECIAL32),
                                        np.full((8, 8), 7, np.int64)]),
    "folded_zeros": (folded_zeros, lambda: [np.zeros((6, 8)), np.array([math.nan, math.inf, -math.inf, -0.0, 0.0, -2.]),
                                            np.arange(6)]),
    "multiply_add": (multiply_add, lambda: [rng(1).random(1000, np.float32), rng(2).random(1000, np.float32),
                                            -rng(3).random(1000, np.float32), rng(4).random(1000), rng(5).random(1000),
                                            rng(6).random(1000), np.zeros(1000, np.float32), np.zeros(1000)]),
    "float32_log_tanh": (float32_log_tanh, lambda: [np.array([1e-40, -1e-40, 6e-39, 1e-45, 1e-30, -3.121e-30, 1e-5,
                                                              0.0, -0.0, 1.0, 2.0, -5.0, math.inf, -math.inf,
                                                              math.nan], np.float32), np.zeros((15, 2), np.float32)]),
}  # fmt: skip


@pytest.fixture(scope="module")
def device() -> kp.DeviceModule:
    return require_device(kp.build([zero_times_int], target="vulkan"))


def assert_same_bits(on_cpu: list, on_device: list) -> None:
    """Equal arrays, NaNs equal to NaNs (any payload), zeros of the same sign."""
    for a, b in zip(on_cpu, on_device, strict=True):
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(b, a)
            if a.dtype.kind == "f":
                np.testing.assert_array_equal(np.signbit(b) | np.isnan(b), np.signbit(a) | np.isnan(a))


@pytest.mark.parametrize("name", list(CASES))
def test_vulkan_gives_the_cpu_result(device, name):
    kernel, make = CASES[name]
    on_cpu, on_device = make(), make()
    kp.build([kernel], target="cpu")[kernel.kir.name](*on_cpu)
    kp.build([kernel], target="vulkan")[kernel.kir.name](*on_device)
    assert_same_bits(on_cpu, on_device)


@pytest.mark.parametrize("name", list(CASES))
def test_shader_validates_for_vulkan_1_3(name, tmp_path):
    assert spirv_val(shader(CASES[name][0]), "vulkan1.3", tmp_path) == ""


_MATH = (np.exp, np.log, np.sin, np.cos, np.tanh)
_MATH_X = [
    0.0,
    -0.0,
    math.inf,
    -math.inf,
    math.nan,
    1.0,
    -1.0,
    710.0,
    709.78,
    -708.5,
    -740.0,
    -745.1,
    -746.0,
    1e-310,
    5e-324,
    -5e-324,
    1e-20,
    -1e-20,
    22.0,
    -22.0,
    math.pi,
    1e22,
    1e300,
    -1e300,
    1.7976931348623157e308,
]
# (x, column, value): exact results, and cos at the double nearest a multiple of pi/2 (its reduced
# argument, 4.7e-19, needs about 120 bits of pi; the value checked against an exact rational reduction).
_MATH_EXACT = [(-math.inf, 0, 0.0), (math.inf, 0, math.inf), (710.0, 0, math.inf), (-746.0, 0, 0.0),
               (0.0, 1, -math.inf), (-0.0, 1, -math.inf), (-1.0, 1, math.nan), (math.inf, 1, math.inf),
               (math.inf, 2, math.nan),
               (-math.inf, 3, math.nan), (math.inf, 4, 1.0), (-math.inf, 4, -1.0), (-0.0, 4, -0.0), (-0.0, 2, -0.0),
               (0.0, 2, 0.0), (-0.0, 3, 1.0), (1e-300, 4, 1e-300), (-5e-324, 2, -5e-324),
               (6381956970095103.0 * 2.0**797, 3, -4.687165924254628e-19)]  # fmt: skip


def _ulps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance in units in the last place (ordered bit patterns; NaN to NaN is 0)."""
    signed = np.int64 if a.dtype == np.float64 else np.int32
    ia, ib = (
        np.where(v.view(signed) < 0, -(v.view(signed) & signed(np.iinfo(signed).max)), v.view(signed)).astype(np.int64)
        for v in (a, b)
    )
    same_side = ((ia >= 0) == (ib >= 0)) | (ia == 0) | (ib == 0)  # else the difference is huge (and would overflow)
    d = np.where(same_side, np.abs(np.where(same_side, ia - ib, 0)).astype(np.float64), np.inf)
    return np.where(np.isnan(a) & np.isnan(b), 0.0, np.where(np.isnan(a) | np.isnan(b), np.inf, d))


def test_float64_math_is_within_4_ulps(device):
    # vulkan_f64_transcendentals_wrong: GLSL.std.450 has no float64 exp; f64math computes it
    r = rng(7)
    x = np.r_[_MATH_X, [v for v, _, _ in _MATH_EXACT], _random_floats(8, 3000, np.float64, np.uint64),
              r.uniform(-750.0, 750.0, 1000), r.uniform(-4.0, 4.0, 1000), np.exp(r.uniform(-745.0, 709.0, 1000)),
              r.integers(-2**40, 2**40, 500) * (math.pi / 2)]  # fmt: skip
    o = np.zeros((len(x), 5))
    kp.build([float64_math], target="vulkan")["float64_math"](x, o)
    with np.errstate(all="ignore"):
        for column, f in enumerate(_MATH):
            checked = x != _MATH_EXACT[-1][0]  # numpy itself is 8 ulps off there
            worst = _ulps(o[checked, column], f(x[checked])).max()
            assert worst <= 4, (f.__name__, worst)
    for value, column, expected in _MATH_EXACT:
        got = o[np.nonzero(x.view(np.int64) == np.float64(value).view(np.int64))[0][0], column]
        assert got == expected or (math.isnan(got) and math.isnan(expected)), (value, column, got)
        assert math.copysign(1.0, got) == math.copysign(1.0, expected) or math.isnan(expected), (value, column, got)


def test_float64_math_shader_validates_for_vulkan_1_3(tmp_path):
    assert spirv_val(shader(float64_math), "vulkan1.3", tmp_path) == ""


def test_float32_math_is_within_2_ulps(device):
    # lavapipe's 32-bit GLSL.std.450 functions are far off for large sin/cos arguments (Vulkan
    # asks for 2**-11 on [-pi, pi] only), subnormal log, tiny tanh: all go through float64.
    r = rng(9)
    x = np.r_[np.array(_MATH_X, np.float32), _random_floats(10, 3000, np.float32, np.uint32),
              r.uniform(-100.0, 100.0, 1000), r.uniform(-4.0, 4.0, 1000), np.exp(r.uniform(-103.0, 88.0, 1000)),
              r.integers(-2**20, 2**20, 500) * (math.pi / 2), [1e30, -1e38, 3e38]].astype(np.float32)  # fmt: skip
    o = np.zeros((len(x), 5), np.float32)
    kp.build([float32_math], target="vulkan")["float32_math"](x, o)
    with np.errstate(all="ignore"):
        for column, f in enumerate(_MATH):
            expected = f(x.astype(np.float64)).astype(np.float32)  # correctly rounded, near enough
            worst = _ulps(o[:, column], expected).max()
            assert worst <= 2, (f.__name__, worst)


def _fma_operands(seed: int, n: int, dtype: type, bits: type) -> list[np.ndarray]:
    """a, b, c: arbitrary bits, specials, exact cancellations, sums that overflow or underflow."""
    r = rng(seed)
    a, b, c = (_random_floats(seed + k, n, dtype, bits) for k in range(3))
    info = np.finfo(dtype)
    special = np.array([0.0, -0.0, 1.0, -1.0, math.inf, -math.inf, math.nan, info.max, -info.max, info.tiny,
                        info.smallest_subnormal, -info.smallest_subnormal], dtype)  # fmt: skip
    k = n // 6
    a[:k], b[k : 2 * k], c[2 * k : 3 * k] = (r.choice(special, k) for _ in range(3))
    with np.errstate(all="ignore"):
        c[3 * k : 4 * k] = -(a[3 * k : 4 * k] * b[3 * k : 4 * k])  # the product's rounding error is the result
        scale = 2.0 ** r.integers(-30, 30, (3, k))  # operands of nearby size: long carries and cancellations
        for x, s in zip((a, b, c), scale, strict=True):
            x[4 * k : 5 * k] = (r.uniform(-2.0, 2.0, k) * s).astype(dtype)
    return [a, b, c]


@pytest.mark.parametrize("dtype, bits", [(np.float32, np.uint32), (np.float64, np.uint64)])
def test_fma_rounds_once_like_the_interpreter(device, dtype, bits):
    # vulkan_fma_rounds_twice: Vulkan's Fma may round twice, lavapipe's float64 one does; kernpack
    # computes kp.math.fma on the integer bits, with one rounding.
    a, b, c = _fma_operands(11, 3000, dtype, bits)
    o = np.zeros_like(a)
    kernel = fused32 if dtype is np.float32 else fused64
    kp.build([kernel], target="vulkan")[kernel.name](a, b, c, o)
    expected = np.zeros_like(a)
    kernel.interpret(a, b, c, expected)
    same = (o.view(bits) == expected.view(bits)) | (np.isnan(o) & np.isnan(expected))
    assert same.all(), [(a[i], b[i], c[i], o[i], expected[i]) for i in np.nonzero(~same)[0][:5]]


def test_fma_shader_validates_for_vulkan_1_3(tmp_path):
    assert spirv_val(shader(fused64), "vulkan1.3", tmp_path) == ""


# ----------------------------------------------------------- lavapipe's loop limit
@kp.kernel
def long_sum(x: kp.f32[:], out: kp.f64[:]):
    for i in kp.grid(1):
        s = 0.0
        for k in range(x.shape[0]):
            s += x[k]
        out[i] = s


@kp.kernel
def nested_sum(n: kp.i64, m: kp.i64, out: kp.f64[:]):
    for i in kp.grid(1):
        s = 0.0
        for _a in range(n):
            for _b in range(m):
                s += 1.0
        out[i] = s


def test_a_work_item_past_lavapipes_loop_limit_raises_instead_of_a_wrong_sum(device):
    # vulkan_loop_limit_wrong_sum: llvmpipe ends all of an invocation's loops after 65535
    # iterations together (a sum of 10**5 twos came out 131070): the shader counts, and the
    # launcher raises where the driver has the limit.
    module = kp.build([long_sum, nested_sum], target="vulkan")
    out = np.zeros(1)
    module["long_sum"](np.full(60_000, 2.0, np.float32), out)
    assert out[0] == 120_000.0
    module["nested_sum"](200, 300, out)
    assert out[0] == 60_000.0
    if module.loop_limit() is None:
        pytest.skip("this Vulkan driver has no loop limit")
    with pytest.raises(kp.LaunchError, match=r"long_sum.*65000 or more loop iterations.*run it on cpu or opencl"):
        module["long_sum"](np.full(100_000, 2.0, np.float32), out)
    with pytest.raises(kp.LaunchError, match="nested_sum"):
        module["nested_sum"](300, 300, out)
