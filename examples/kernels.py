"""Two kernels in one file: what the demo builds for every device (``kernpack build examples/kernels.py``).

Run it as a script to check them on the CPU against numpy.
"""

from __future__ import annotations

import numpy as np

import kernpack as kp


@kp.kernel
def saxpy(a: kp.f32, x: kp.f32[:], y: kp.f32[:], out: kp.f32[:]):
    """out = a * x + y, one grid point per element."""
    for i in kp.grid(out.shape[0]):
        out[i] = a * x[i] + y[i]


@kp.kernel
def blur(image: kp.f32[:, :], out: kp.f32[:, :]):
    """A 3x3 box blur, the edges clamped: one grid point per pixel."""
    n = image.shape[0]
    m = image.shape[1]
    for i, j in kp.grid(n, m):
        acc = kp.f32(0.0)
        for di in range(-1, 2):
            for dj in range(-1, 2):
                acc += image[min(max(i + di, 0), n - 1), min(max(j + dj, 0), m - 1)]
        out[i, j] = acc / kp.f32(9.0)


if __name__ == "__main__":
    x = np.linspace(0, 1, 1000, dtype=np.float32)
    out = np.empty_like(x)
    saxpy(2.0, x, x, out)
    assert np.allclose(out, 3 * x)
    impulse = np.zeros((64, 48), np.float32)
    impulse[10, 20] = 9
    blurred = np.empty_like(impulse)
    blur(impulse, blurred)
    assert np.array_equal(np.argwhere(blurred), np.argwhere(np.ones((3, 3))) + np.array([9, 19]))  # a 3x3 square...
    assert np.allclose(blurred[9:12, 19:22], 1)  # ...of ones
    print("saxpy and blur match numpy on the CPU")
