"""Kernels shared by the kernel-language tests (run in-process and exported to a library).

No ``from __future__ import annotations`` here on purpose: the annotations are real objects.
"""

import kernpack as kp

# --------------------------------------------------------------------- element-wise


@kp.kernel
def saxpy(a: kp.f32, x: kp.f32[:], y: kp.f32[:], out: kp.f32[:]):
    for i in kp.grid(out.shape[0]):
        out[i] = a * x[i] + y[i]


@kp.kernel
def vadd_f32(a: kp.f32[:], b: kp.f32[:], out: kp.f32[:]):
    for i in kp.grid(out.shape[0]):
        out[i] = a[i] + b[i]


@kp.kernel
def vadd_f64(a: kp.f64[:], b: kp.f64[:], out: kp.f64[:]):
    for i in kp.grid(out.shape[0]):
        out[i] = a[i] + b[i]


@kp.kernel
def vadd_i32(a: kp.i32[:], b: kp.i32[:], out: kp.i32[:]):
    for i in kp.grid(out.shape[0]):
        out[i] = a[i] + b[i]


# --------------------------------------------------------------------- 2-D kernels


@kp.kernel
def matmul(a: kp.f32[:, :], b: kp.f32[:, :], c: kp.f32[:, :]):
    for i, j in kp.grid(c.shape[0], c.shape[1]):
        acc = 0.0
        for k in range(a.shape[1]):
            acc += a[i, k] * b[k, j]
        c[i, j] = acc


@kp.kernel
def matmul_into(a: kp.f64[:, :], b: kp.f64[:, :], c: kp.f64[:, :]):
    for i, j in kp.grid(c.shape[0], c.shape[1]):
        c[i, j] = 0.0
        for k in range(a.shape[1]):
            c[i, j] += a[i, k] * b[k, j]


@kp.kernel
def softmax(x: kp.f32[:, :], out: kp.f32[:, :]):
    m = x.shape[1]
    for i in kp.grid(x.shape[0]):
        mx = x[i, 0]
        for j in range(1, m):
            mx = kp.math.max(mx, x[i, j])
        s = 0.0
        for j in range(m):
            e = kp.math.exp(x[i, j] - mx)
            out[i, j] = e
            s += e
        for j in range(m):
            out[i, j] = out[i, j] / s


@kp.kernel
def stencil(x: kp.f64[:, :], out: kp.f64[:, :]):
    n = x.shape[0]
    m = x.shape[1]
    for i, j in kp.grid(n, m):
        if i > 0 and i < n - 1 and j > 0 and j < m - 1:
            out[i, j] = 0.25 * (x[i - 1, j] + x[i + 1, j] + x[i, j - 1] + x[i, j + 1])
        else:
            out[i, j] = x[i, j]


# --------------------------------------------------------------------- atomics


@kp.kernel
def histogram(x: kp.f64[:], lo: kp.f64, hi: kp.f64, counts: kp.u32[:]):
    nbins = counts.shape[0]
    scale = kp.f64(nbins) / (hi - lo)
    for i in kp.grid(x.shape[0]):
        v = x[i]
        if v >= lo and v <= hi:
            b = kp.i64((v - lo) * scale)
            if b >= nbins:
                b = nbins - 1
            kp.atomic_add(counts, b, 1)


@kp.kernel
def bincount(x: kp.i32[:], counts: kp.i32[:]):
    for i in kp.grid(x.shape[0]):
        kp.atomic_add(counts, x[i], 1)


@kp.kernel
def histogram2d(a: kp.i64[:], b: kp.i64[:], h: kp.u32[:, :]):
    for i in kp.grid(a.shape[0]):
        kp.atomic_add(h, (a[i], b[i]), 1)


@kp.kernel
def weighted_bincount(k: kp.i64[:], w: kp.f64[:], sums: kp.f64[:]):
    for i in kp.grid(k.shape[0]):
        kp.atomic_add(sums, k[i], w[i])


# --------------------------------------------------------------------- while / break


@kp.kernel
def collatz_steps(x: kp.i64[:], limit: kp.i64, out: kp.i64[:]):
    for i in kp.grid(x.shape[0]):
        v = x[i]
        c = 0
        while v != 1:
            if c >= limit:
                break
            if v % 2 == 0:  # noqa: SIM108 (an if/else statement on purpose)
                v = v // 2
            else:
                v = 3 * v + 1
            c += 1
        out[i] = c


@kp.kernel
def first_above(x: kp.f64[:, :], t: kp.f64, out: kp.i64[:]):
    for i in kp.grid(x.shape[0]):
        idx = -1
        j = 0
        while j < x.shape[1]:
            if x[i, j] > t:
                idx = j
                break
            j += 1
        out[i] = idx


ALL = [
    saxpy,
    vadd_f32,
    vadd_f64,
    vadd_i32,
    matmul,
    matmul_into,
    softmax,
    stencil,
    histogram,
    bincount,
    histogram2d,
    weighted_bincount,
    collatz_steps,
    first_above,
]
