"""``import mylib`` for an exported ``mylib.so``, without tying the library to Python."""

from __future__ import annotations

import subprocess
import warnings

import pytest

import kernpack as kp
from tests.conftest import VADD_IR
from tests.export.conftest import run_fresh
from tests.export.kinds import BlobKind


def test_an_exported_library_imports_as_a_python_module(tmp_path):
    root = kp.llvm_module(VADD_IR)
    root.import_module(BlobKind("answer", 42))
    root.export_library(tmp_path / "mylib.so")
    got = run_fresh(
        f"""
        import json, sys
        import numpy as np
        sys.path.insert(0, {str(tmp_path)!r})
        import tests.export.kinds  # the loader of the test kind
        import mylib
        a = np.arange(4, dtype=np.float32); c = np.zeros_like(a)
        mylib.vadd(a, a, c, 4)
        print(json.dumps({{"c": c.tolist(), "kind": mylib.module.kind, "file": mylib.__file__,
                          "answer": mylib.module.imports[0]["answer"](), "llvmlite": "llvmlite" in sys.modules}}))
        """
    )
    assert got == {"c": [0.0, 2.0, 4.0, 6.0], "kind": "library", "file": str(tmp_path / "mylib.so"),
                   "answer": 42, "llvmlite": False}  # fmt: skip


def test_the_library_references_python_only_weakly(tmp_path):
    # A C program with no Python in its process dlopens the library (test_export.py's C client);
    # that needs every Python symbol to be a weak reference, resolved only inside Python.
    lib = kp.llvm_module(VADD_IR).export_library(tmp_path / "weak.so")
    undefined = subprocess.run(["nm", "-D", "--undefined-only", lib], capture_output=True, text=True, check=True)
    python = [line.split() for line in undefined.stdout.splitlines() if "Py" in line]
    assert python and all(kind == "w" for kind, _ in python), python
    assert "PyInit_weak" in subprocess.run(["nm", "-D", "--defined-only", lib], capture_output=True, text=True).stdout


def test_a_library_named_like_a_python_file_beside_it_warns(tmp_path):
    (tmp_path / "kernels.py").write_text("X = 1\n")
    with pytest.warns(kp.ShadowingWarning, match=r"kernels.so is written beside kernels.py: `import kernels`"):
        kp.llvm_module(VADD_IR).export_library(tmp_path / "kernels.so")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kp.llvm_module(VADD_IR).export_library(tmp_path / "kernels_lib.so")  # no source of that name: quiet


def test_a_library_whose_name_is_not_an_identifier_has_no_init(tmp_path):
    lib = kp.llvm_module(VADD_IR).export_library(tmp_path / "my-lib.so")
    defined = subprocess.run(["nm", "-D", "--defined-only", lib], capture_output=True, text=True, check=True).stdout
    assert "PyInit" not in defined
