"""Shipping edges: a reload that reloads, IR files that keep their signatures, OpenCL with no setup."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import kernpack as kp
from tests.conftest import REQUIRED_DEVICES
from tests.export.conftest import ROOT, run_fresh

CONST_IR = """
define i64 @answer() {{
  ret i64 {value}
}}
"""


def _export(path, value: int, name: str = "answer") -> None:
    kp.llvm_module(CONST_IR.format(value=value).replace("@answer", f"@{name}")).export_library(path)


def test_exporting_again_to_a_loaded_path_loads_the_new_code(tmp_path):
    path = tmp_path / "lib.so"
    _export(path, 1)
    first = kp.load_module(path)
    assert first["answer"]() == 1
    _export(path, 2)  # the notebook loop: rebuild, export to the same path, load again
    second = kp.load_module(path)
    assert second["answer"]() == 2
    assert first["answer"]() == 1  # the old module keeps working until it is dropped
    _export(path, 3, name="renamed")
    third = kp.load_module(path)
    assert third["renamed"]() == 3 and "answer" not in third.function_names()
    assert kp.load_module(path)["renamed"]() == 3  # the same file again: its handle is shared
    assert sorted(os.listdir(tmp_path)) == ["lib.h", "lib.so"]  # no names left behind


def test_a_library_copied_over_in_place_loads_the_new_code(tmp_path):
    # cp rewrites the file in place (same inode), where dlopen would match the old library.
    path, other = tmp_path / "lib.so", tmp_path / "other.so"
    _export(path, 1)
    _export(other, 2)
    # All in a child: rewriting a file that this process has mapped would crash it.
    result = run_fresh(
        f"""
        import json, shutil
        import kernpack as kp
        first = kp.load_module({str(path)!r})
        assert first["answer"]() == 1
        del first
        with open({str(other)!r}, "rb") as src, open({str(path)!r}, "r+b") as dst:
            dst.truncate(0)
            shutil.copyfileobj(src, dst)
        print(json.dumps({{"value": kp.load_module({str(path)!r})["answer"]()}}), flush=True)
        import os
        os._exit(0)  # the first library's mapping was rewritten under it: no teardown touches it
        """
    )
    assert result == {"value": 2}


@pytest.mark.parametrize("suffix", [".ll", ".bc"])
def test_ir_written_by_kernpack_keeps_its_signatures_and_exports(tmp_path, suffix):
    from tests.lang import kernels_src as K

    built = kp.build([K.saxpy, K.matmul])
    path = tmp_path / f"kernels{suffix}"
    built.write_to_file(path)
    again = kp.load_module(path)
    assert {n: str(s) for n, s in again.signatures.items()} == {n: str(s) for n, s in built.signatures.items()}
    a = np.arange(5, dtype=np.float32)
    out = np.zeros_like(a)
    again["saxpy"](np.float32(2), a, a, out)
    assert np.array_equal(out, 3 * a)
    again.export_library(tmp_path / "again.so")
    loaded = kp.load_module(tmp_path / "again.so")
    out[:] = 0
    loaded["saxpy"](np.float32(2), a, a, out)
    assert np.array_equal(out, 3 * a)
    # Written again, the metadata is replaced, not doubled.
    again.write_to_file(tmp_path / f"twice{suffix}")
    assert str(kp.load_module(tmp_path / f"twice{suffix}").signatures["saxpy"]) == str(built.signatures["saxpy"])


def test_opencl_works_with_no_icd_setup_in_a_fresh_process(tmp_path):
    # What a user gets after pip install 'kernpack[opencl]' and nothing else: kernpack finds
    # the runtime in its environment and points the ICD loader at it.
    from kernpack.runtime.oclsetup import runtime_library

    if runtime_library() is None:
        if "opencl" in REQUIRED_DEVICES:
            pytest.fail("Intel's OpenCL runtime is not installed in this environment (pip install 'kernpack[opencl]')")
        pytest.skip("no OpenCL runtime in this environment")
    env = {k: v for k, v in os.environ.items() if k != "OCL_ICD_VENDORS"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    code = textwrap.dedent(
        """
        import json, os
        import numpy as np
        import kernpack as kp
        from tests.lang import kernels_src as K
        module = kp.build([K.vadd_f32], target="opencl")
        a = np.arange(10, dtype=np.float32)
        out = np.zeros_like(a)
        module["vadd_f32"](a, a, out)
        print(json.dumps({"ok": bool((out == 2 * a).all()), "vendors": os.environ["OCL_ICD_VENDORS"],
                          "devices": [d.kind for d in kp.devices()]}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    import json

    doc = json.loads(result.stdout.strip().splitlines()[-1])
    assert doc["ok"] and "opencl" in doc["devices"]
    assert os.path.exists(os.path.join(doc["vendors"], "kernpack-intel-cpu.icd"))


def test_a_library_records_the_cpu_its_code_needs_and_refuses_a_cpu_without_it(tmp_path, monkeypatch):
    from kernpack.inspection import describe_library
    from kernpack.runtime import cpufeatures
    from tests.lang import kernels_src as K

    path = tmp_path / "v3.so"
    kp.build([K.saxpy], cpu="x86-64-v3").export_library(path)
    cpu = describe_library(path)["cpu"]
    assert cpu["name"] == "x86-64-v3" and {"avx2", "fma", "bmi2"} <= set(cpu["features"])
    monkeypatch.setattr(cpufeatures, "host_flags", lambda: frozenset({"sse2", "pni", "ssse3", "sse4_1", "sse4_2"}))
    with pytest.raises(kp.LoadError, match=r"built for CPU x86-64-v3 and needs .*avx2.*, which this CPU lacks"):
        kp.load_module(path)
    generic = tmp_path / "generic.so"
    kp.build([K.saxpy], cpu="generic").export_library(generic)
    assert describe_library(generic)["cpu"] == {"name": "generic", "features": [], "missing_here": []}
    a = np.arange(4, dtype=np.float32)
    out = np.zeros_like(a)
    kp.load_module(generic)["saxpy"](np.float32(2), a, a, out)  # runs on this reduced CPU too
    assert np.array_equal(out, 3 * a)
    monkeypatch.undo()
    assert kp.load_module(path)  # on a CPU that has them
    native = tmp_path / "native.so"
    kp.build([K.saxpy]).export_library(native)  # this machine's CPU: its features, all present here
    assert describe_library(native)["cpu"]["missing_here"] == []


CXX = """
#include <numeric>
#include <vector>

extern "C" double mean(const double *x, long n) {
    std::vector<double> v(x, x + n);  // the C++ library: linked in
    return std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(n);
}
"""


def test_cpp_sources_compile_as_cpp_and_link_its_runtime(tmp_path):
    module = kp.c_source_module(CXX, ["mean"], signatures=["double mean(const double *x, int64_t n)"], language="c++")
    module.export_library(tmp_path / "cxx.so")
    assert kp.load_module(tmp_path / "cxx.so")["mean"](np.arange(5.0), 5) == 2.0
    again = kp.load_from_bytes("c", module.save_to_bytes())
    assert again.language == "c++" and again.dso_format == "cc"
    (tmp_path / "stats.cc").write_text(CXX)
    from_file = kp.load_module(tmp_path / "stats.cc")  # the suffix says C++
    assert from_file.language == "c++" and "mean" in from_file.function_names()
    from_file.export_library(tmp_path / "stats_lib.so")
    assert kp.load_module(tmp_path / "stats_lib.so")["mean"](np.ones(3), 3) == 1.0
    with pytest.raises(ValueError, match=r"language 'rust' is not one of 'c', 'c\+\+'"):
        kp.c_source_module(CXX, ["mean"], language="rust")


def test_an_object_file_loads_as_a_library(tmp_path):
    kp.llvm_module(CONST_IR.format(value=7)).write_to_file(tmp_path / "answer.o")
    module = kp.load_module(tmp_path / "answer.o")
    assert module.bind("int64_t answer(void)")() == 7
    assert os.listdir(tmp_path) == ["answer.o"]  # linked elsewhere, and cleaned up


def test_a_tar_export_holds_objects_that_load_back_and_link_into_a_c_program(tmp_path):
    import tarfile

    from tests.lang import kernels_src as K

    root = kp.build([K.saxpy], cpu="generic")
    root.import_module(kp.c_source_module(CXX, ["mean"], signatures=["double mean(const double *x, int64_t n)"],
                                          language="c++"))  # fmt: skip
    path = root.export_library(tmp_path / "bundle.tar")
    with tarfile.open(path) as tar:
        names = sorted(tar.getnames())
    assert "LINK" in names and "bundle.h" in names and "blob.o" in names and not any(n.endswith(".c") for n in names)
    loaded = kp.load_module(path)
    a = np.arange(4, dtype=np.float32)
    out = np.zeros_like(a)
    loaded["saxpy"](np.float32(2), a, a, out)
    assert np.array_equal(out, 3 * a) and loaded["mean"](np.arange(3.0), 3) == 1.0
    # A C program links the same objects into itself, as TVM's archives are used.
    work = tmp_path / "prog"
    work.mkdir()
    with tarfile.open(path) as tar:
        tar.extractall(work, filter="data")
    (work / "main.c").write_text(
        '#include <stdio.h>\n#include "bundle.h"\n'
        'int main(void) { double x[4] = {1, 2, 3, 6}; printf("%g\\n", mean(x, 4)); return 0; }\n'
    )
    libraries = (work / "LINK").read_text().split()
    objects = sorted(str(p) for p in work.glob("*.o"))
    subprocess.run(["cc", "-o", str(work / "prog"), str(work / "main.c"), *objects, *libraries], check=True)
    assert subprocess.run([str(work / "prog")], capture_output=True, text=True).stdout.strip() == "3"
    bad = tmp_path / "bad.tar"
    with tarfile.open(bad, "w") as tar:
        tar.add(tmp_path / "bundle.tar", arcname="../escape.o")
    with pytest.raises(kp.LoadError, match=r"holds more than plain files"):
        kp.load_module(bad)
