"""The runtime-only install: kernpack-runtime's wheel, in a fresh venv, runs what kernpack exported.

The venv gets the wheel and what it declares from the package index (numpy, cffi, and the device
extras), as a user's would; nothing from the test environment.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import textwrap
import zipfile
from pathlib import Path

import pytest

import kernpack as kp
from tests.export.conftest import ROOT
from tests.lang import kernels_src as K

IN_RUNTIME = """
import importlib.util, json, sys
import numpy as np
import kernpack as kp

out = {"compile_side": [m for m in ("llvmlite", "elftools", "kernpack.driver") if importlib.util.find_spec(m)]}
lib = kp.load_module(sys.argv[1])
x = np.arange(1000, dtype=np.float32)
results = {}
for where in ("cpu", "opencl", "vulkan"):
    y = np.zeros_like(x)
    fn = lib["saxpy"] if where == "cpu" else lib.device_module(where)["saxpy"]
    fn(np.float32(2), x, x, y)
    results[where] = bool(np.array_equal(y, 3 * x))
out["ran"] = results
dev = kp.device("opencl")
dy = dev.zeros(1000, np.float32)
lib.device_module("opencl")["saxpy"](np.float32(2), dev.asarray(x), dev.asarray(x), dy)
out["device_array"] = bool(np.array_equal(dy.numpy(), 3 * x))
errors = {}
for what, attempt in (("build", lambda: kp.build), ("ll", lambda: kp.load_module(sys.argv[2]))):
    try:
        attempt()
    except kp.CompilerNotInstalledError as exc:
        errors[what] = [str(exc), isinstance(exc, ImportError)]
out["errors"] = errors
print(json.dumps(out))
"""


def _wheels(out: Path) -> dict[str, Path]:
    subprocess.run([sys.executable, str(ROOT / "scripts" / "wheels"), "--out", str(out)], check=True, timeout=300)
    return {p.name.split("-")[0]: p for p in out.glob("*.whl")}


@pytest.mark.slow
def test_the_runtime_wheel_alone_loads_and_runs_an_exported_library_on_every_device(tmp_path):
    wheels = _wheels(tmp_path / "dist")
    assert set(wheels) == {"kernpack", "kernpack_runtime"}
    with zipfile.ZipFile(wheels["kernpack_runtime"]) as z:
        names = z.namelist()
        metadata = z.read(next(n for n in names if n.endswith("/METADATA"))).decode()
    assert not any(n.startswith(("kernpack/driver/", "kernpack/cli")) for n in names)
    assert "kernpack/runtime/device.py" in names and "kernpack/errors.py" in names
    requires = [line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert not any(r.startswith(("llvmlite", "pyelftools")) for r in requires), requires
    with zipfile.ZipFile(wheels["kernpack"]) as z:
        assert "kernpack/driver/build.py" in z.namelist()

    library = kp.build([K.saxpy], cpu="generic", devices=("opencl", "vulkan")).export_library(tmp_path / "saxpy.so")
    ll = tmp_path / "seven.ll"
    kp.llvm_module("define i64 @seven() {\n  ret i64 7\n}\n").write_to_file(ll)
    # Outside tmp_path: the venv is about 1 GB (Intel's OpenCL runtime), and pytest keeps the
    # last runs' tmp_path directories.
    with tempfile.TemporaryDirectory(prefix="kernpack-runtime-venv-") as venv:
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        python = str(Path(venv, "bin", "python"))
        spec = f"kernpack-runtime[opencl,vulkan] @ {wheels['kernpack_runtime'].as_uri()}"
        install = subprocess.run(
            [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", spec],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert install.returncode == 0, install.stderr
        # From a directory without the checkout, so that only the installed package is found.
        run = subprocess.run(
            [python, "-c", textwrap.dedent(IN_RUNTIME), str(library), str(ll)],
            capture_output=True, text=True, cwd=venv, timeout=300,
        )  # fmt: skip
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["compile_side"] == []
    assert got["ran"] == {"cpu": True, "opencl": True, "vulkan": True}
    assert got["device_array"]
    for what in ("build", "ll"):
        message, is_import_error = got["errors"][what]
        assert "runtime-only install" in message and "pip install kernpack'" in message and is_import_error, message
    assert "kernpack.build needs kernpack's compiler" in got["errors"]["build"][0]
    assert "a .ll file needs kernpack's compiler" in got["errors"]["ll"][0]


def test_a_runtime_only_environment_names_what_to_install(tmp_path):
    """kernpack installed without its dependencies: llvmlite hidden from a fresh interpreter."""
    code = """
    import json, sys

    sys.modules["llvmlite"] = None  # import llvmlite fails, find_spec finds nothing
    import kernpack as kp
    out = {}
    for name in ("build", "kernel", "llvm_module"):
        try:
            getattr(kp, name)
        except kp.CompilerNotInstalledError as exc:
            out[name] = str(exc)
    try:
        kp.load_module(sys.argv[1])
    except kp.CompilerNotInstalledError as exc:
        out["c"] = str(exc)
    print(json.dumps(out))
    """
    (tmp_path / "k.c").write_text("int f(void) { return 1; }\n")
    run = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), str(tmp_path / "k.c")],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    assert set(got) == {"build", "kernel", "llvm_module", "c"}
    assert got["kernel"].startswith("kernpack.kernel needs kernpack's compiler")
    assert got["c"].startswith("a .c file needs kernpack's compiler: llvmlite is not installed")
    assert "'pip install llvmlite'" in got["c"]
