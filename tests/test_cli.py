"""The kernpack command: build, inspect (without executing the file), run, errors and exit codes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

import kernpack as kp

ROOT = Path(__file__).resolve().parents[1]
KERNELS = ROOT / "tests" / "lang" / "kernels_src.py"


def kernpack(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kernpack.cli", *args], capture_output=True, text=True, cwd=cwd, env=dict(os.environ)
    )


def test_build_inspect_run(tmp_path):
    shutil.copy(KERNELS, tmp_path / "ks.py")
    built = kernpack("build", "ks.py", "-o", "ks.so", "--cpu", "generic", "--devices", "opencl", "--dump", "dump",
                     "--json", cwd=tmp_path)  # fmt: skip
    assert built.returncode == 0, built.stderr
    assert json.loads(built.stdout)["modules"] == ["llvm", "opencl"]
    assert (tmp_path / "dump" / "saxpy.kir").read_text().startswith("kernel saxpy(")
    assert (tmp_path / "dump" / "ks.opencl.spv").read_bytes()[:4] == b"\x03\x02\x23\x07"  # the module is the .so's
    assert (tmp_path / "dump" / "ks.opencl.ll").read_text().count("spir_kernel") >= 2
    assert (tmp_path / "dump" / "ks.cpu.bc").read_bytes()[:4] == b"BC\xc0\xde"
    assert (tmp_path / "dump" / "ks.cpu.o").read_bytes()[:4] == b"\x7fELF"

    shown = kernpack("inspect", "ks.so", "--json", cwd=tmp_path)
    info = json.loads(shown.stdout)
    library, opencl = info["modules"]
    assert (library["kind"], library["mask_names"], library["imports"]) == ("library", "RUNNABLE", [1])
    assert opencl["kind"] == "opencl" and opencl["crc_ok"]
    assert {"name": "saxpy", "signature": "void saxpy(float a, const float x[:], const float y[:], float out[:])",
            "grid": ["out.shape[0]"]} in opencl["functions"]  # fmt: skip
    assert "void saxpy(float a, const float x[:]" in kernpack("inspect", "ks.so", cwd=tmp_path).stdout

    ran = kernpack("run", "ks.so", "vadd_f32", "--args", "4", "4", "4", "--json", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    doc = json.loads(ran.stdout)
    a, b = (np.array(doc["inputs"][n], np.float32) for n in ("a", "b"))
    assert np.array_equal(np.array(doc["outputs"]["out"], np.float32), a + b)


def test_user_mistakes_are_one_line_with_exit_code_1_and_debug_shows_the_traceback(tmp_path):
    (tmp_path / "bad.py").write_text("import kernpack as kp\n\ndef broken(:\n")
    (tmp_path / "raises.py").write_text("raise RuntimeError('the kernel file failed')\n")
    shutil.copy(KERNELS, tmp_path / "ks.py")
    assert kernpack("build", "ks.py", "-o", "ks.so", cwd=tmp_path).returncode == 0
    cases = [
        (("build", "missing.py", "-o", "x.so"), "no such file: missing.py"),
        (("build", "bad.py", "-o", "x.so"), "bad.py:3: invalid syntax"),
        (("build", "raises.py", "-o", "x.so"), "importing raises.py failed: RuntimeError: the kernel file failed"),
        (("run", "ks.so", "vadd_f32", "--args", "two", "4", "4"), "'two' is neither a .npy file nor a shape"),
        (("run", "ks.so", "vadd_f32", "--args", "-4", "4", "4"), "'-4' is neither a .npy file nor a shape"),
        (("run", "ks.so", "saxpy", "--args", "x", "4", "4", "4"), "float a: 'x' is not a number"),
        (("run", "ks.so", "vadd_f32", "--args", "4"), "vadd_f32 takes 3 arguments"),
    ]
    for args, words in cases:
        result = kernpack(*args, cwd=tmp_path)
        assert result.returncode == 1, (args, result.stderr)
        assert result.stderr.count("\n") == 1 and words in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    debug = kernpack("build", "raises.py", "-o", "x.so", "--debug", cwd=tmp_path)
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_build_imports_the_kernel_files_neighbours_as_python_does(tmp_path):
    (tmp_path / "consts.py").write_text("N = 3\n")
    (tmp_path / "scaled.py").write_text(
        "import kernpack as kp\nfrom consts import N\n\n@kp.kernel\ndef scale(x: kp.f32[:], out: kp.f32[:]):\n"
        "    for i in kp.grid(out.shape[0]):\n        out[i] = x[i] * N\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    built = kernpack("build", str(tmp_path / "scaled.py"), "-o", "scaled_lib.so", cwd=elsewhere)
    assert built.returncode == 0, built.stderr
    ran = kernpack("run", "scaled_lib.so", "scale", "--args", "5", "5", "--seed", "7", "--out", "outs", "--json",
                   cwd=elsewhere)  # fmt: skip
    doc = json.loads(ran.stdout)
    x = np.array(doc["inputs"]["x"], np.float32)
    assert np.array_equal(np.load(elsewhere / "outs" / "out.npy"), x * 3)
    again = json.loads(kernpack("run", "scaled_lib.so", "scale", "--args", "5", "5", "--seed", "7", "--json",
                                cwd=elsewhere).stdout)  # fmt: skip
    assert again["inputs"]["x"] == doc["inputs"]["x"]  # the seed decides the inputs
    # Built for any x86-64 by default (a library to ship), and inspect says so.
    assert "needs CPU generic (baseline features)" in kernpack("inspect", "scaled_lib.so", cwd=elsewhere).stdout
    shown = kernpack("run", "scaled_lib.so", "scale", "--args", "5", "5", cwd=elsewhere).stdout
    assert "in  x: float32[5]" in shown and "out out: float32[5]" in shown


def test_run_prints_what_a_function_returns_and_version_and_help(tmp_path):
    kp.llvm_module("define i64 @answer(i64 %x) {\n  %y = mul i64 %x, 6\n  ret i64 %y\n}\n").export_library(
        tmp_path / "answer.so"
    )
    assert "returned 42" in kernpack("run", "answer.so", "answer", "--args", "7", cwd=tmp_path).stdout
    doc = json.loads(kernpack("run", "answer.so", "answer", "--args", "1e1", "--json", cwd=tmp_path).stdout)
    assert doc["result"] == 60
    assert kernpack("--version", cwd=tmp_path).stdout.strip() == f"kernpack {kp.__version__}"
    assert ".ptx, .spv, .cl" in kernpack("build", "--help", cwd=tmp_path).stdout
    assert "the function to call" in kernpack("run", "--help", cwd=tmp_path).stdout


def test_errors_are_one_line_with_exit_code_1(tmp_path):
    (tmp_path / "text.so").write_text("not a library")
    result = kernpack("inspect", "text.so", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "not an ELF file" in result.stderr
    assert kernpack("run", "missing.so", "k", cwd=tmp_path).returncode == 1
    assert kernpack("frobnicate", cwd=tmp_path).returncode == 2


def test_inspect_never_executes_the_library(tmp_path):
    marker = tmp_path / "constructor-ran"
    code = f"""
    #include <stdio.h>
    __attribute__((constructor)) static void touch(void) {{ fclose(fopen("{marker}", "w")); }}
    int answer(void) {{ return 42; }}
    """
    root = kp.c_source_module(code, ["answer"], signatures=["int32_t answer(void)"])
    pipe = kp.pipeline_module([("answer", [])])
    pipe.import_module(root)
    pipe.export_library(tmp_path / "hostile.so")
    assert not marker.exists()
    result = kernpack("inspect", "hostile.so", cwd=tmp_path)
    assert result.returncode == 0 and "pipeline" in result.stdout
    assert not marker.exists()  # read as an ELF file, never loaded
    kp.load_module(tmp_path / "hostile.so")
    assert marker.exists()  # while dlopen does run it: the test can tell


def test_build_from_ptx_and_spirv_with_json_side_files(tmp_path):
    saxpy = {"name": "saxpy", "signature": "void saxpy(float a, const float x[:], const float y[:], float out[:])",
             "grid": ["out.shape[0]"]}  # fmt: skip
    from tests.lang import kernels_src as K

    (tmp_path / "k.ptx").write_bytes(bytes(kp.build([K.saxpy], target="cuda").binary))
    (tmp_path / "k.json").write_text(json.dumps({"functions": [saxpy]}))
    (tmp_path / "o.spv").write_bytes(bytes(kp.build([K.saxpy], target="opencl").binary))
    (tmp_path / "o.json").write_text(json.dumps({"target": "opencl", "functions": [saxpy]}))
    built = kernpack("build", "k.ptx", "o.spv", "-o", "dev.so", "--json", cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    assert json.loads(built.stdout)["modules"] == ["cuda", "opencl"]
    (tmp_path / "lonely.ptx").write_text("// no side file")
    missing = kernpack("build", "lonely.ptx", "-o", "x.so", cwd=tmp_path)
    assert missing.returncode == 1 and "lonely.json" in missing.stderr
    (tmp_path / "text.spv").write_text("OpCapability Shader")  # assembly text, not a SPIR-V binary
    (tmp_path / "text.json").write_text(json.dumps({"functions": [saxpy]}))
    text = kernpack("build", "text.spv", "-o", "x.so", cwd=tmp_path)
    assert text.returncode == 1 and "text.spv" in text.stderr and "not a SPIR-V module" in text.stderr
