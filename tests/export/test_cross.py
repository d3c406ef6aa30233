"""Libraries for another architecture: built here for aarch64, run by a C client under qemu-user.

The suite's setup installs Debian's gcc-aarch64-linux-gnu and qemu-user (scripts/test).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

import kernpack as kp
from tests.conftest import require_tool
from tests.lang import kernels_src as K

TRIPLE = "aarch64-linux-gnu"
SYSROOT = "/usr/aarch64-linux-gnu"  # where Debian's cross toolchain keeps aarch64's C library

# The kernels, as a file: kp.build gets them imported, the command line gets the file.
KERNELS = """
import kernpack as kp


@kp.kernel
def saxpy(a: kp.f32, x: kp.f32[:], y: kp.f32[:], out: kp.f32[:]):
    for i in kp.grid(out.shape[0]):
        out[i] = a * x[i] + y[i]


@kp.kernel
def total(x: kp.f64[:], out: kp.f64[:]):
    acc = 0.0
    for i in kp.grid(x.shape[0]):
        acc += x[i]
    out[0] = acc
"""

CLIENT = r"""
#include <stdio.h>
#include <stdlib.h>
#include "%(lib)s.h"
int main(void) {
    int64_t n = 300000;  /* enough points for the grid to be split across threads */
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y), *out = malloc(n * sizeof *out);
    for (int64_t i = 0; i < n; ++i) { x[i] = (float)i; y[i] = 0.5f; }
    saxpy(2.0f, x, n, y, n, out, n);
    int64_t wrong = 0;
    for (int64_t i = 0; i < n; ++i) wrong += out[i] != 2.0f * (float)i + 0.5f;
    double m[6] = {1, 2, 3, 4, 5, 6}, sum[1] = {0};
    total(m, 6, sum, 1);
    printf("{\"wrong\": %%lld, \"sum\": %%g, \"last\": %%.9g}\n", (long long)wrong, sum[0], out[n - 1]);
    return 0;
}
"""


@pytest.fixture(scope="module")
def cross():
    """The cross compiler and qemu-user, which the suite's setup installs."""
    gcc = require_tool(shutil.which(f"{TRIPLE}-gcc"), f"{TRIPLE}-gcc", f"apt-get install gcc-{TRIPLE}")
    qemu = require_tool(shutil.which("qemu-aarch64"), "qemu-aarch64", "apt-get install qemu-user")
    return gcc, qemu


@pytest.fixture(scope="module")
def kernels(tmp_path_factory):
    """The KERNELS file and the module it imports as."""
    path = tmp_path_factory.mktemp("kernels") / "cross_kernels.py"
    path.write_text(KERNELS)
    spec = importlib.util.spec_from_file_location("cross_kernels", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return path, module


def _run_client(tmp_path, library, gcc: str, qemu: str) -> dict:
    name = library.stem
    (tmp_path / "client.c").write_text(CLIENT % {"lib": name})
    client = tmp_path / "client"
    subprocess.run(
        [gcc, "-o", str(client), str(tmp_path / "client.c"), f"-L{tmp_path}", f"-l:{library.name}",
         "-Wl,-rpath,$ORIGIN"], check=True, cwd=tmp_path,
    )  # fmt: skip
    result = subprocess.run([qemu, "-L", SYSROOT, str(client)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_library_built_for_aarch64_runs_there(tmp_path, cross, kernels):
    source = kernels[1]
    module = kp.build([source.saxpy, source.total], triple=TRIPLE, devices=("opencl",))
    assert module.triple == "aarch64-unknown-linux-gnu" and module.target_arch == "aarch64"
    assert module.cpu == "generic"  # "this machine's CPU" means nothing on another one
    with pytest.raises(kp.UnsupportedOperationError, match=r"machine code for aarch64-unknown-linux-gnu.*export it"):
        module["saxpy"]
    # No cc=: the cross compiler for the module's architecture links it.
    library = tmp_path / "armlib.so"
    module.export_library(library)
    assert library.read_bytes()[18:20] == (183).to_bytes(2, "little")  # e_machine: EM_AARCH64
    with pytest.raises(kp.LoadError, match="built for aarch64"):
        kp.load_module(library)  # on this machine: refused by name, never an exec format error
    got = _run_client(tmp_path, library, *cross)
    assert got == {"wrong": 0, "sum": 21, "last": 2 * 299999 + 0.5}


def test_the_command_line_builds_for_another_machine(tmp_path, cross, kernels):
    path = kernels[0]
    cli = [sys.executable, "-m", "kernpack.cli"]
    library = tmp_path / "cli_arm.so"
    subprocess.run([*cli, "build", str(path), "--target", TRIPLE, "-o", str(library)], check=True)
    shown = subprocess.run([*cli, "inspect", str(library)], capture_output=True, text=True, check=True).stdout
    assert "machine code for aarch64 (this machine is x86_64: it cannot load it)" in shown
    assert _run_client(tmp_path, library, *cross)["wrong"] == 0
    native = subprocess.run(
        [*cli, "build", str(path), "--target", TRIPLE, "--cpu", "native", "-o", str(tmp_path / "x.so")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert native.returncode == 1 and "--cpu native means this machine's CPU" in native.stderr


def test_a_cross_build_and_a_host_build_of_one_kernel_do_not_share_code(tmp_path):
    arm = kp.build([K.saxpy], triple=TRIPLE)
    host = kp.build([K.saxpy])  # after the cross build: the cache must not hand back aarch64 code
    x = np.arange(5, dtype=np.float32)
    out = np.zeros_like(x)
    host["saxpy"](np.float32(2), x, x, out)
    assert np.array_equal(out, 3 * x) and arm.cache_key != host.cache_key
    assert kp.build([K.saxpy], triple="x86_64-linux-gnu").triple is None  # this machine's own: a host build


def test_what_cannot_be_linked_together_is_refused_before_any_work(tmp_path):
    arm = kp.build([K.saxpy], triple=TRIPLE)
    with pytest.raises(
        kp.ExportError, match=r"machine code is for aarch64, but the C compiler '[^']*cc' links for x86_64"
    ):
        arm.export_library(tmp_path / "a.so", cc="cc")
    arm.import_module(kp.build([K.vadd_f32]))
    with pytest.raises(kp.ExportError, match=r"machine code for aarch64 and x86_64, and one library is for one"):
        arm.export_library(tmp_path / "b.so")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match=r"cannot build for 'riscv64-linux-gnu'.*x86_64, aarch64"):
        kp.build([K.saxpy], triple="riscv64-linux-gnu")
    with pytest.raises(ValueError, match=r"another architecture is triple="):
        kp.build([K.saxpy], arch="aarch64")


def test_llvm_ir_builds_for_another_architecture_too(tmp_path, cross):
    ir = "define i64 @answer() {\n  ret i64 42\n}\n"
    module = kp.llvm_module(ir, triple=TRIPLE)
    assert module.triple == "aarch64-unknown-linux-gnu"
    with pytest.raises(kp.UnsupportedOperationError, match="cannot run"):
        module["answer"]
    module.export_library(tmp_path / "answer.so")
    (tmp_path / "main.c").write_text(
        '#include <stdio.h>\n#include "answer.h"\nint main(void) { printf("%lld\\n", (long long)answer()); }\n'
    )
    gcc, qemu = cross
    subprocess.run([gcc, "-o", str(tmp_path / "main"), str(tmp_path / "main.c"), f"-L{tmp_path}", "-l:answer.so",
                    "-Wl,-rpath,$ORIGIN"], check=True, cwd=tmp_path)  # fmt: skip
    run = subprocess.run([qemu, "-L", SYSROOT, str(tmp_path / "main")], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "42"
    with pytest.raises(kp.CompileError, match=r"targets 'aarch64-unknown-linux-gnu'.*pass triple="):
        kp.llvm_module(f'target triple = "aarch64-unknown-linux-gnu"\n{ir}')
