"""The on-disk compile cache: a second process skips LLVM; concurrent fills stay consistent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

KERNEL = """
import json, sys, numpy as np, kernpack as kp

@kp.kernel
def scale_add(a: kp.f64, x: kp.f64[:], out: kp.f64[:]):
    for i in kp.grid(x.shape[0]):
        out[i] = a * x[i] + 1.0

if sys.argv[1] == "forbid-llvm":
    import kernpack.driver.targets.cpu as cpu, kernpack.driver.llvm as l
    def boom(*args, **kwargs):
        raise AssertionError("LLVM code generation ran despite a cache hit")
    cpu.lower_kernels = cpu.optimize = cpu.jit_object = boom
    l.llvm_module = l.optimize = l.jit_object = boom
x = np.arange(5.0); out = np.empty_like(x)
scale_add(3.0, x, out)
print(json.dumps(out.tolist()))
"""


def script(directory: Path) -> str:
    # Kernels need a source file: python -c would give the front end nothing to read.
    path = directory.parent / f"{directory.name}_kernel.py"
    path.write_text(textwrap.dedent(KERNEL))
    return str(path)


def run(cache: Path, mode: str, **env_extra: str) -> subprocess.Popen:
    env = {**os.environ, "KERNPACK_CACHE_DIR": str(cache), **env_extra}
    return subprocess.Popen([sys.executable, script(cache), mode], env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True)


def result(proc: subprocess.Popen) -> list[float]:
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0
    return json.loads(out.strip().splitlines()[-1])


def test_second_process_skips_code_generation(tmp_path):
    expected = [1.0, 4.0, 7.0, 10.0, 13.0]
    assert result(run(tmp_path, "fill")) == expected
    entries = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(entries) == 1 and not entries[0].name.startswith(".tmp")
    assert result(run(tmp_path, "forbid-llvm")) == expected


def test_concurrent_fills_leave_one_complete_entry(tmp_path):
    procs = [run(tmp_path, "fill") for _ in range(4)]
    assert all(result(p) == [1.0, 4.0, 7.0, 10.0, 13.0] for p in procs)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) == 1
    assert result(run(tmp_path, "forbid-llvm")) == [1.0, 4.0, 7.0, 10.0, 13.0]


def test_cache_can_be_turned_off(tmp_path):
    assert result(run(tmp_path, "fill", KERNPACK_CACHE="0")) == [1.0, 4.0, 7.0, 10.0, 13.0]
    assert not any(tmp_path.iterdir())


def test_corrupt_entry_is_a_miss(tmp_path):
    result(run(tmp_path, "fill"))
    (entry,) = [p for p in tmp_path.rglob("*") if p.is_file()]
    entry.write_bytes(b"garbage")
    assert result(run(tmp_path, "fill")) == [1.0, 4.0, 7.0, 10.0, 13.0]
