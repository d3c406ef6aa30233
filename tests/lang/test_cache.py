"""The on-disk compile cache: a second process skips LLVM (it does not even load it); fills stay consistent."""

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
    cpu.optimize = cpu.jit_object = boom
    l.llvm_module = l.optimize = l.jit_object = boom
x = np.arange(5.0); out = np.empty_like(x)
scale_add(3.0, x, out)
if sys.argv[1] == "forbid-llvm":
    # A hit runs the shared object linked beside the entry: LLVM is never loaded, whether the
    # kernel index knew the kernel (the call above) or the build looks it up (here).
    kp.build([scale_add])["scale_add"](3.0, x, out)
    assert "llvmlite" not in sys.modules, sorted(m for m in sys.modules if "llvm" in m)
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


def entries(cache: Path) -> list[Path]:
    """The cache's build entries: not the shared objects linked from them, the kernel index, the fingerprints."""
    files = [p for p in cache.rglob("*") if p.is_file() and p.suffix != ".so" and p.parent.name != "fingerprints"]
    return [p for p in files if b'"signature"' not in p.read_bytes()]


def test_second_process_skips_code_generation(tmp_path):
    expected = [1.0, 4.0, 7.0, 10.0, 13.0]
    assert result(run(tmp_path, "fill")) == expected
    (entry,) = entries(tmp_path)
    assert not entry.name.startswith(".tmp")
    # The first process linked the machine code as a shared object before it exited.
    assert entry.with_name(entry.name + ".so").read_bytes()[:4] == b"\x7fELF"
    assert result(run(tmp_path, "forbid-llvm")) == expected


def test_a_hit_without_its_shared_object_uses_llvm_and_links_it(tmp_path):
    result(run(tmp_path, "fill"))
    (entry,) = entries(tmp_path)
    shared = entry.with_name(entry.name + ".so")
    shared.unlink()  # no compiler that time, say
    assert result(run(tmp_path, "fill")) == [1.0, 4.0, 7.0, 10.0, 13.0]
    assert shared.exists()


def test_concurrent_fills_leave_one_complete_entry(tmp_path):
    procs = [run(tmp_path, "fill") for _ in range(4)]
    assert all(result(p) == [1.0, 4.0, 7.0, 10.0, 13.0] for p in procs)
    assert len(entries(tmp_path)) == 1
    assert not [p for p in tmp_path.rglob(".tmp*")]  # every shared object linked is in place too
    assert result(run(tmp_path, "forbid-llvm")) == [1.0, 4.0, 7.0, 10.0, 13.0]


def test_cache_can_be_turned_off(tmp_path):
    assert result(run(tmp_path, "fill", KERNPACK_CACHE="0")) == [1.0, 4.0, 7.0, 10.0, 13.0]
    assert not any(tmp_path.iterdir())


def test_corrupt_entry_is_a_miss(tmp_path):
    result(run(tmp_path, "fill"))
    (entry,) = entries(tmp_path)
    entry.write_bytes(b"garbage")
    assert result(run(tmp_path, "fill")) == [1.0, 4.0, 7.0, 10.0, 13.0]
