"""Kernels for the Vulkan tiling tests: 1-D grids without loops, whose shaders take several points per invocation."""

import kernpack as kp


@kp.kernel
def carried(x: kp.f32[:], out: kp.f32[:]):
    # Every point starts from t as the prologue left it, though an invocation computes several.
    t = kp.f32(-1.0)
    for i in kp.grid(out.shape[0]):
        if x[i] > 0.5:
            t = x[i]
        if x[i] < 0.1:
            continue
        out[i] = t + kp.f32(i)


@kp.kernel
def strided(x: kp.f32[:], out: kp.f32[:], step: kp.i64):
    for i in kp.grid((out.shape[0] + step - 1) // step):
        out[i * step] = x[i * step] * kp.f32(2.0)
