"""Kernels for the Vulkan vector entry point's tests: 1-D grids whose shaders read and write some arrays as vectors."""

import kernpack as kp


@kp.kernel
def update(out: kp.f32[:], x: kp.f32[:], a: kp.f32):
    # out is read after it is written: each point sees its own store.
    for i in kp.grid(out.shape[0]):
        out[i] = out[i] * a + x[i]
        if out[i] > kp.f32(1.0):
            out[i] = out[i] - kp.f32(1.0)


@kp.kernel
def maybe(x: kp.f32[:], out: kp.i32[:], count: kp.u32[:]):
    # Stores on some paths only: the elements no point stores keep their values.
    for i in kp.grid(x.shape[0] - 1):
        if x[i] > kp.f32(0.5):
            out[i] = kp.i32(i)
        if x[i] < kp.f32(0.2):
            continue
        count[i] = count[i] + kp.u32(1)


@kp.kernel
def mixed(s: kp.f32[:], w: kp.f64[:], out: kp.f32[:], wide: kp.f64[:]):
    # s is also read beside the point (it stays scalar), w and wide have 8-byte elements.
    for i in kp.grid(out.shape[0]):
        left = s[max(i - 1, 0)]
        out[i] = s[i] - left
        wide[i] = w[i] * kp.f64(2.0) + kp.f64(out[i])


@kp.kernel
def twice(x: kp.f32[:], out: kp.f32[:]):
    # With out and x one array, the second read of x sees the first store: 2 * x + 2, not 2 * x + 1.
    for i in kp.grid(out.shape[0]):
        out[i] = x[i] + kp.f32(1.0)
        out[i] = out[i] + x[i]
