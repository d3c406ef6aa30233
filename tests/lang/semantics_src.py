"""Kernels that pin down the language's defined semantics, one per bug class found by the
differential campaign (tests/difftest). Shared by the CPU tests and the device tests."""

import kernpack as kp


@kp.kernel
def float_divmod(a: kp.f64[:], b: kp.f64[:], q: kp.f64[:], r: kp.f64[:]):
    for i in kp.grid(q.shape[0]):
        q[i] = a[i] // b[i]
        r[i] = a[i] % b[i]


@kp.kernel
def float32_divmod(a: kp.f32[:], b: kp.f32[:], q: kp.f32[:], r: kp.f32[:]):
    for i in kp.grid(q.shape[0]):
        q[i] = a[i] // b[i]
        r[i] = a[i] % b[i]


@kp.kernel
def power_i64(x: kp.f64[:], n: kp.i64, out: kp.f64[:]):
    for i in kp.grid(out.shape[0]):
        out[i] = x[i] ** n


@kp.kernel
def unfit_literals(x: kp.u32[:], y: kp.i8[:], z: kp.u8[:], o32: kp.u32[:], o8: kp.i8[:], ou8: kp.u8[:]):
    for i in kp.grid(o32.shape[0]):
        o32[i] = x[i] + (-1)
        o8[i] = y[i] * 300
        ou8[i] = max(z[i], -1) + z[i] ** -2


@kp.kernel
def locals_per_point(x: kp.i64[:], out: kp.i64[:]):
    s = 10
    for i in kp.grid(out.shape[0]):
        s += x[i]  # each point starts from s = 10: points are independent
        if x[i] > 2:
            t = 7
        out[i] = s * 100 + t  # t is 0 on a point that did not assign it


@kp.kernel
def ranges(step: kp.i64, out: kp.i64[:]):
    for i in kp.grid(out.shape[0]):
        count = 0
        for _k in range(9223372036854775800, 9223372036854775807, 3):  # must not wrap around
            count += 1
        for _k in range(10, -10, step):  # a zero step runs no iterations
            count += 100
        out[i] = count


@kp.kernel
def grid_cast(n: kp.i64, out: kp.i32[:]):
    for i in kp.grid(min(kp.u8(n - 1), out.shape[0])):
        out[i] = 7


@kp.kernel
def grid_negative_literal(out: kp.i32[:]):
    for i in kp.grid(out.shape[0] + (-1)):
        out[i] = 7


@kp.kernel
def grid_wrapping(n: kp.i64, s: kp.u64, a: kp.i32[:], out: kp.i32[:, :]):
    m = n * n  # wraps to 0 for n = 2**32
    for i, j in kp.grid(min(a.shape[0] - s, out.shape[0]), m + 2):
        out[i, j] = 7


@kp.kernel
def nan_to_u32(x: kp.f32[:], out: kp.u32[:]):
    for i in kp.grid(out.shape[0]):
        out[i] = kp.u32(x[i])


@kp.kernel
def narrow_atomics(x: kp.i8[:], a8: kp.i8[:], y: kp.u16[:], a16: kp.u16[:]):
    for i in kp.grid(x.shape[0]):
        kp.atomic_add(a8, i % 4, x[i])
        kp.atomic_add(a16, i % 3, y[i])


@kp.kernel
def narrow_atomic_and_store(x: kp.i8[:], a8: kp.i8[:]):
    for i in kp.grid(x.shape[0]):
        kp.atomic_add(a8, 0, x[i])
        a8[1] = 5


@kp.kernel
def reads_outside(x: kp.f32[:], out: kp.f32[:]):
    for i in kp.grid(out.shape[0]):
        out[i] = x[i + 1]


@kp.kernel
def grid_param_reassigned(p: kp.i64, out: kp.i32[:]):
    p = p - 1  # straight-line: the device grid uses p - 1
    for i in kp.grid(min(p, out.shape[0])):
        out[i] = 7


@kp.kernel
def grid_param_reassigned_in_if(p: kp.i64, out: kp.i32[:]):
    if p > 0:
        p = p - 1  # the grid depends on a branch: not known before launch
    for i in kp.grid(min(p, out.shape[0])):
        out[i] = 7


@kp.kernel
def narrowed_arithmetic(o4: kp.u16[:]):
    # The SPIR-V backend's -O2 narrowed (i0 & 1) + 1 to 8 bits and left the i64 operand
    # untruncated: an invalid OpBitwiseAnd that OpenCL's runtime refuses.
    for i0 in kp.grid(o4.shape[0]):
        for k7 in range(-2, 5, i0 % 2 + 1):
            for _k9 in range(min(max(kp.u32(i0), 0), 4)):
                o4[i0] = kp.u8(k7 + i0) % 5
                break
