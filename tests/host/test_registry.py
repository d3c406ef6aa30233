"""load_module by suffix, loaders by kind, the C source module's round trips."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

import kernpack as kp
from tests.conftest import VADD_IR

C_CODE = """
#include <stdint.h>
void scale(float *x, float a, int64_t n) { for (int64_t i = 0; i < n; ++i) x[i] *= a; }
static int hidden(int v) { return v; }
double mean(const double *x, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += x[i];
    return n ? s / n : 0;
}
"""


def test_load_ll_and_bc_by_suffix(tmp_path):
    (tmp_path / "vadd.ll").write_text(VADD_IR)
    mod = kp.load_module(tmp_path / "vadd.ll")
    assert mod.kind == "llvm"
    mod.write_to_file(tmp_path / "vadd.bc")
    again = kp.load_module(str(tmp_path / "vadd.bc"))
    a = np.ones(3, np.float32)
    out = np.empty_like(a)
    again["vadd"](a, a, out, 3)
    assert (out == 2).all()


def test_load_c_by_suffix_finds_the_exported_functions(tmp_path):
    path = tmp_path / "k.c"
    path.write_text(C_CODE)
    mod = kp.load_module(path)
    assert mod.kind == "c"
    assert mod.function_names() == ("scale", "mean")
    assert str(mod.signatures["mean"]) == "double mean(const double *x, int64_t n)"


def test_unknown_suffix_lists_the_known_ones(tmp_path):
    path = tmp_path / "k.xyz"
    path.write_text("")
    with pytest.raises(
        kp.LoadError,
        match=r"no loader handles '\.xyz' files; handled suffixes: .*\.bc, \.c, \.cc, \.cl, \.cpp, \.cxx, \.ll, \.o",
    ):
        kp.load_module(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(kp.LoadError, match="no such file"):
        kp.load_module(tmp_path / "missing.ll")
    (tmp_path / "dir.ll").mkdir()
    with pytest.raises(kp.LoadError, match="is a directory"):
        kp.load_module(tmp_path / "dir.ll")


def test_bad_ir_file_is_a_compile_error_naming_the_file(tmp_path):
    path = tmp_path / "bad.ll"
    path.write_text("define void @f( {")
    with pytest.raises(kp.CompileError, match=r"bad\.ll"):
        kp.load_module(path)


def test_user_file_loader(tmp_path):
    @kp.register_file_loader(".twice")
    def _load(path):
        return kp.python_module({"twice": lambda x: 2 * x})

    path = tmp_path / "m.TWICE"
    path.write_text("")
    assert kp.load_module(path)["twice"](4) == 8


def test_c_module_bytes_round_trip():
    mod = kp.c_source_module(C_CODE, ["scale", "mean"], signatures=["void scale(float *x, float a, int64_t n)"])
    data = mod.save_to_bytes()
    assert isinstance(data, bytes)
    again = kp.load_from_bytes("c", data)
    assert again.code == mod.code
    assert again.function_names() == ("scale", "mean")
    assert again.signatures == mod.signatures
    assert again.save_to_bytes() == data  # reproducible
    assert kp.load_from_bytes("c", memoryview(data)).code == mod.code


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        b"KPCSRC\x00\x01\xff\xff\xff\xff{}",
        b"KPCSRC\x00\x01\x02\x00\x00\x00{}",
        b"KPCSRC\x00\x01\x02\x00\x00\x00[]",
    ],
)
def test_corrupt_c_bytes_are_a_format_error(data):
    with pytest.raises(kp.FormatError):
        kp.load_from_bytes("c", data)


def test_c_module_writes_c_and_refuses_other_formats(tmp_path):
    mod = kp.c_source_module(C_CODE, ["scale"])
    mod.write_to_file(tmp_path / "k.c")
    assert (tmp_path / "k.c").read_text() == C_CODE
    with pytest.raises(kp.UnsupportedOperationError, match=r"does not support write_to_file\(fmt='o'\)"):
        mod.write_to_file(tmp_path / "k.o")
    subprocess.run(["cc", "-c", "-fPIC", str(tmp_path / "k.c"), "-o", str(tmp_path / "k.o")], check=True)


def test_c_module_argument_errors():
    with pytest.raises(TypeError):
        kp.c_source_module(b"int f;", ["f"])
    with pytest.raises(ValueError, match="not in function_names"):
        kp.c_source_module("", ["f"], signatures=["void g(void)"])


def test_runtime_does_not_import_llvmlite():
    code = (
        "import sys, kernpack.runtime, kernpack\n"
        "from kernpack.runtime import load_module, Module, python_module\n"
        "python_module({'f': len})\n"
        "assert 'llvmlite' not in sys.modules, sorted(m for m in sys.modules if 'llvm' in m)\n"
        "assert not any(m.startswith('kernpack.driver.') for m in sys.modules)\n"
        "kernpack.llvm_module('define i64 @f(i64 %x) {\\n ret i64 %x\\n}')  # LLVM loads when it is used\n"
        "assert 'llvmlite' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_runtime_sources_never_import_the_driver():
    import pathlib

    import kernpack.runtime

    root = pathlib.Path(kernpack.runtime.__file__).parent
    for path in root.rglob("*.py"):
        imports = [line for line in path.read_text().splitlines() if line.lstrip().startswith(("import ", "from "))]
        bad = [line for line in imports if "llvmlite" in line or re.search(r"kernpack\.driver|from \.\.driver", line)]
        assert not bad, path
