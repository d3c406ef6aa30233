"""The kernel-language test set with inputs, shared by every device's tests."""

from __future__ import annotations

import numpy as np

from tests.lang import kernels_src as K


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# Each case: the kernel and a function making fresh arguments (the same for both runs).
CASES = {
    "saxpy": (K.saxpy, lambda: [np.float32(2.5), rng().random(1001, np.float32), rng(1).random(1001, np.float32),
                                np.zeros(1001, np.float32)]),
    "vadd_f32": (K.vadd_f32, lambda: [rng().random(999, np.float32), rng(1).random(999, np.float32),
                                      np.zeros(999, np.float32)]),
    "vadd_f64": (K.vadd_f64, lambda: [rng().random(77), rng(1).random(77), np.zeros(77)]),
    "vadd_i32": (K.vadd_i32, lambda: [rng().integers(-1000, 1000, 500, np.int32),
                                      rng(1).integers(-1000, 1000, 500, np.int32), np.zeros(500, np.int32)]),
    "matmul": (K.matmul, lambda: [rng().random((33, 17), np.float32), rng(1).random((17, 29), np.float32),
                                  np.zeros((33, 29), np.float32)]),
    "matmul_into": (K.matmul_into, lambda: [rng().random((20, 15)), rng(1).random((15, 11)), np.zeros((20, 11))]),
    "softmax": (K.softmax, lambda: [rng().standard_normal((13, 37)).astype(np.float32),
                                    np.zeros((13, 37), np.float32)]),
    "stencil": (K.stencil, lambda: [rng().random((40, 50)), np.zeros((40, 50))]),
    "histogram": (K.histogram, lambda: [rng().random(5000), 0.0, 1.0, np.zeros(10, np.uint32)]),
    "bincount": (K.bincount, lambda: [rng().integers(0, 16, 5000, np.int32), np.zeros(16, np.int32)]),
    "histogram2d": (K.histogram2d, lambda: [rng().integers(0, 8, 3000), rng(1).integers(0, 8, 3000),
                                            np.zeros((8, 8), np.uint32)]),
    "weighted_bincount": (K.weighted_bincount, lambda: [rng().integers(0, 10, 2000), rng(1).random(2000),
                                                        np.zeros(10)]),
    "collatz_steps": (K.collatz_steps, lambda: [np.arange(1, 300, dtype=np.int64), 500, np.zeros(299, np.int64)]),
    "first_above": (K.first_above, lambda: [rng().random((20, 30)), 0.9, np.zeros(20, np.int64)]),
}  # fmt: skip


def assert_same(on_cpu: list, on_device: list) -> None:
    """The arrays a kernel wrote on the device equal those it wrote on the CPU."""
    for a, b in zip(on_cpu, on_device, strict=True):
        if isinstance(a, np.ndarray):
            if a.dtype.kind == "f":
                np.testing.assert_allclose(b, a, rtol=2e-6 if a.dtype == np.float32 else 1e-12, atol=1e-12)
            else:
                np.testing.assert_array_equal(b, a)
