"""Builds on every core: worker processes, the same bytes as one job, any script shape."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from benchmarks import manykernels

import kernpack as kp
from kernpack.driver import build as build_module

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]

TARGETS = ("opencl", "vulkan", "cuda")


def _kernels(tmp_path, count: int) -> list:
    return manykernels.kernels(tmp_path, count, f"many{count}")


def test_a_parallel_build_is_byte_identical_to_one_job(tmp_path, monkeypatch):
    kernels = _kernels(tmp_path, 24)  # above the threshold for worker processes
    libraries = {}
    for jobs in (1, 2):
        monkeypatch.setenv("KERNPACK_CACHE_DIR", str(tmp_path / f"cache{jobs}"))  # both cold
        out = tmp_path / f"jobs{jobs}"
        out.mkdir()
        root = kp.build(kernels, cpu="generic", devices=TARGETS, jobs=jobs)
        root.export_library(out / "lib.so")
        libraries[jobs] = (out / "lib.so").read_bytes()
    assert libraries[1] == libraries[2] and len(libraries[1]) > 100_000


def test_workers_compile_when_the_build_is_large(tmp_path, monkeypatch):
    calls = []
    real = build_module.workers.run

    def counting(fn, work, jobs, **keywords):
        calls.append((len(work), jobs))
        return real(fn, work, jobs, **keywords)

    monkeypatch.setattr(build_module.workers, "run", counting)
    kernels = _kernels(tmp_path, 20)
    kp.build(kernels, "vulkan", cache=False, jobs=2)  # 20 units: workers
    kp.build(kernels[:3], "vulkan", cache=False, jobs=2)  # too little to start them for
    kp.build(kernels, "vulkan", cache=False, jobs=1)  # one job: this process alone
    assert calls == [(20, 2)]


def test_jobs_are_checked(monkeypatch):
    with pytest.raises(ValueError, match=r"jobs=0: give the number of processes"):
        build_module.build_jobs(0)
    monkeypatch.setenv("KERNPACK_JOBS", "many")
    with pytest.raises(ValueError, match=r"KERNPACK_JOBS='many'"):
        build_module.build_jobs(None)
    monkeypatch.setenv("KERNPACK_JOBS", "3")
    assert build_module.build_jobs(None) == 3 and build_module.build_jobs(1) == 1


def test_a_script_without_a_main_guard_builds_in_parallel(tmp_path):
    # multiprocessing's spawn would run this script again in every worker; ours import kernpack only.
    kernels = tmp_path / "kernels_here.py"
    kernels.write_text(manykernels.source(20))
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            sys.path.insert(0, {str(tmp_path)!r})
            import kernpack as kp, kernels_here
            print("script ran")
            ks = [v for v in vars(kernels_here).values() if isinstance(v, kp.Kernel)]
            kp.build(ks, "vulkan", cache=False, jobs=2)
            print("built", len(ks))
            """
        )
    )
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["script", "ran", "built", "20"]


def test_the_command_line_takes_jobs(tmp_path):
    kernels = manykernels.write(tmp_path / "k.py", 4)
    env = {**os.environ, "KERNPACK_CACHE_DIR": str(tmp_path / "cache")}
    for jobs in ("1", "2"):
        out = str(tmp_path / f"{jobs}.so")
        run = subprocess.run(
            [sys.executable, "-m", "kernpack.cli", "build", str(kernels), "-j", jobs, "-o", out],
            capture_output=True, text=True, env=env, cwd=ROOT,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
