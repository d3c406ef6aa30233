"""Kernel language: kernels built for a generic CPU, exported, and run in a fresh process.

The fresh process imports only ``kernpack.runtime``; it reads the inputs from an ``.npz`` file,
runs a plan of calls, and writes every array back to another ``.npz`` file. The same plan runs
here on the in-process module, and the two sets of arrays must agree.
"""

import json

import numpy as np
import pytest

import kernpack as kp
from tests.export.conftest import run_fresh

from . import kernels_src as ks

CHILD = """
import json, sys
import numpy as np
from kernpack.runtime import load_module

module = load_module({library!r})
arrays = dict(np.load({inputs!r}))
plan = json.loads({plan!r})
for name, args in plan:
    module[name](*[arrays[a[1:]] if isinstance(a, str) else a for a in args])
np.savez({outputs!r}, **arrays)
print(json.dumps({{
    "llvmlite": "llvmlite" in sys.modules,
    "signatures": {{name: str(module[name].signature) for name, _ in plan}},
}}))
"""


def run_plan(module, arrays: dict[str, np.ndarray], plan: list) -> dict[str, np.ndarray]:
    arrays = {k: v.copy() for k, v in arrays.items()}
    for name, args in plan:
        module[name](*[arrays[a[1:]] if isinstance(a, str) else a for a in args])
    return arrays


def run_exported(tmp_path, library: str, arrays: dict[str, np.ndarray], plan: list) -> tuple[dict, dict]:
    np.savez(tmp_path / "inputs.npz", **arrays)
    code = CHILD.format(
        library=str(library),
        inputs=str(tmp_path / "inputs.npz"),
        outputs=str(tmp_path / "outputs.npz"),
        plan=json.dumps(plan),
    )
    info = run_fresh(code)
    with np.load(tmp_path / "outputs.npz") as f:
        return dict(f), info


def compare(got: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        assert got[key].dtype == value.dtype, key
        assert got[key].shape == value.shape, key
        if value.dtype.kind == "f":
            rtol = 1e-6 if value.dtype == np.float32 else 1e-12
            np.testing.assert_allclose(got[key], value, rtol=rtol, atol=rtol, err_msg=key)
        else:
            np.testing.assert_array_equal(got[key], value, err_msg=key)


def inputs(seed: int = 2024) -> tuple[dict[str, np.ndarray], list]:
    r = np.random.default_rng(seed)
    f32 = np.float32
    arrays = {
        "x": r.standard_normal(1001).astype(f32),
        "y": r.standard_normal(1001).astype(f32),
        "saxpy_out": np.zeros(1001, f32),
        "vadd_out": np.zeros(1001, f32),
        "ma": r.standard_normal((13, 7)).astype(f32),
        "mb": r.standard_normal((7, 9)).astype(f32),
        "mc": np.zeros((13, 9), f32),
        "logits": (r.standard_normal((6, 11)) * 3).astype(f32),
        "probs": np.zeros((6, 11), f32),
        "samples": r.uniform(-1.0, 9.0, 5000),
        "counts": np.zeros(16, np.uint32),
        "labels": r.integers(0, 10, 777, dtype=np.int32),
        "bins": np.zeros(10, np.int32),
        "field": r.standard_normal((9, 12)),
        "smoothed": np.zeros((9, 12)),
        "starts": np.arange(1, 200, dtype=np.int64),
        "steps": np.zeros(199, np.int64),
    }
    plan = [
        ["saxpy", [1.75, "@x", "@y", "@saxpy_out"]],
        ["vadd_f32", ["@x", "@y", "@vadd_out"]],
        ["matmul", ["@ma", "@mb", "@mc"]],
        ["softmax", ["@logits", "@probs"]],
        ["histogram", ["@samples", 0.0, 8.0, "@counts"]],
        ["bincount", ["@labels", "@bins"]],
        ["stencil", ["@field", "@smoothed"]],
        ["collatz_steps", ["@starts", 100, "@steps"]],
    ]
    return arrays, plan


def check_against_numpy(out: dict[str, np.ndarray]) -> None:
    x, y = out["x"], out["y"]
    np.testing.assert_allclose(out["saxpy_out"], np.float32(1.75) * x + y, rtol=2e-6, atol=1e-6)
    np.testing.assert_array_equal(out["vadd_out"], x + y)
    np.testing.assert_allclose(out["mc"], out["ma"] @ out["mb"], rtol=1e-5, atol=1e-5)
    logits = out["logits"].astype(np.float64)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(out["probs"], e / e.sum(axis=1, keepdims=True), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(out["counts"], np.histogram(out["samples"], bins=16, range=(0.0, 8.0))[0])
    np.testing.assert_array_equal(out["bins"], np.bincount(out["labels"], minlength=10))
    f = out["field"]
    smoothed = f.copy()
    smoothed[1:-1, 1:-1] = 0.25 * (f[:-2, 1:-1] + f[2:, 1:-1] + f[1:-1, :-2] + f[1:-1, 2:])
    np.testing.assert_allclose(out["smoothed"], smoothed, rtol=1e-12)
    assert out["steps"][:7].tolist() == [0, 1, 7, 2, 5, 8, 16]  # Collatz steps of 1..7


BY_NAME = {
    "saxpy": ks.saxpy,
    "vadd_f32": ks.vadd_f32,
    "matmul": ks.matmul,
    "softmax": ks.softmax,
    "histogram": ks.histogram,
    "bincount": ks.bincount,
    "stencil": ks.stencil,
    "collatz_steps": ks.collatz_steps,
}
KERNELS = list(BY_NAME.values())


def test_generic_cpu_library_runs_in_a_fresh_process(tmp_path):
    mod = kp.build(KERNELS, cpu="generic")
    library = mod.export_library(str(tmp_path / "kernels.so"))
    assert library == str(tmp_path / "kernels.so")
    arrays, plan = inputs()
    here = run_plan(mod, arrays, plan)
    check_against_numpy(here)
    there, info = run_exported(tmp_path, library, arrays, plan)
    assert info["llvmlite"] is False
    compare(there, here)
    check_against_numpy(there)
    assert info["signatures"] == {name: str(k.signature) for name, k in BY_NAME.items()} | {
        "saxpy": "void saxpy(float a, const float x[:], const float y[:], float out[:])"
    }


def test_exported_results_match_the_jit_kernels(tmp_path):
    arrays, plan = inputs(seed=7)
    jit = run_plan(BY_NAME, arrays, plan)  # the kernel objects, host CPU
    library = kp.build(KERNELS, cpu="generic").export_library(tmp_path / "k.so")
    there, _ = run_exported(tmp_path, library, arrays, plan)
    compare(there, jit)


@pytest.mark.parametrize("threads", [2])
def test_threaded_build_exports_too(tmp_path, threads):
    mod = kp.build([ks.bincount, ks.vadd_f32, ks.matmul], cpu="generic", threads=threads)
    library = mod.export_library(tmp_path / "t.so")
    r = np.random.default_rng(5)
    arrays = {
        "labels": r.integers(0, 10, 50001, dtype=np.int32),
        "bins": np.zeros(10, np.int32),
        "x": r.standard_normal(20001).astype(np.float32),
        "out": np.zeros(20001, np.float32),
        "ma": r.standard_normal((40, 30)).astype(np.float32),
        "mb": r.standard_normal((30, 20)).astype(np.float32),
        "mc": np.zeros((40, 20), np.float32),
    }
    plan = [
        ["bincount", ["@labels", "@bins"]],
        ["vadd_f32", ["@x", "@x", "@out"]],
        ["matmul", ["@ma", "@mb", "@mc"]],
    ]
    here = run_plan(mod, arrays, plan)
    there, info = run_exported(tmp_path, library, arrays, plan)
    assert info["llvmlite"] is False
    compare(there, here)
    np.testing.assert_array_equal(there["bins"], np.bincount(arrays["labels"], minlength=10))
    np.testing.assert_array_equal(there["out"], arrays["x"] * 2)


def test_load_module_from_the_package_root_in_a_fresh_process(tmp_path):
    library = kp.build([ks.saxpy]).export_library(tmp_path / "s.so")
    got = run_fresh(
        f"""
        import json, sys, numpy as np
        import kernpack as kp
        m = kp.load_module({str(library)!r})
        x = np.arange(5, dtype=np.float32); y = np.ones(5, np.float32); out = np.zeros(5, np.float32)
        m["saxpy"](2.0, x, y, out)
        print(json.dumps({{"out": out.tolist(), "llvmlite": "llvmlite" in sys.modules}}))
        """
    )
    assert got == {"out": [1.0, 3.0, 5.0, 7.0, 9.0], "llvmlite": False}
