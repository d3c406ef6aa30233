"""The kernel index: a definition the front end accepted before runs from the cache without it.

Each test runs kernels in fresh processes sharing one cache directory. What must hold: a hit
imports neither the front end nor the build driver nor LLVM, and anything that could change a
kernel's typed IR (a global's value, a closure cell, the file) is a miss, never a stale result.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import kernpack as kp
from kernpack.driver.lang.definition import definition_parts

ROOT = Path(__file__).resolve().parents[2]

KERNELS = """
import json, os, sys, numpy as np, kernpack as kp

SCALE = float(os.environ.get("SCALE", "2.0"))

@kp.kernel
def scaled(x: kp.f64[:], out: kp.f64[:]):
    for i in kp.grid(x.shape[0]):
        out[i] = SCALE * x[i]

def offset_by(c):
    @kp.kernel
    def offset(x: kp.f64[:], out: kp.f64[:]):
        for i in kp.grid(x.shape[0]):
            out[i] = x[i] + c
    return offset

x = np.arange(3.0); results = {}
for name, k in {"scaled": scaled, "plus1": offset_by(1.0), "plus10": offset_by(10.0)}.items():
    out = np.empty_like(x)
    k(x, out)
    results[name] = out.tolist()
loaded = [m for m in ("kernpack.driver.lang.frontend", "kernpack.driver.build", "llvmlite") if m in sys.modules]
print(json.dumps({"results": results, "loaded": loaded, "kir": str(scaled.kir).splitlines()[0]}))
"""


def run(directory: Path, **env: str) -> dict:
    script = directory / "kernels.py"
    if not script.exists():
        script.write_text(textwrap.dedent(KERNELS))
    environment = {**os.environ, "KERNPACK_CACHE_DIR": str(directory / "cache"), **env}
    out = subprocess.run([sys.executable, str(script)], env=environment, cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def expected(scale: float) -> dict:
    return {"scaled": [0.0, scale, 2 * scale], "plus1": [1.0, 2.0, 3.0], "plus10": [10.0, 11.0, 12.0]}


def test_a_known_definition_runs_without_the_front_end_or_llvm(tmp_path):
    first = run(tmp_path)
    assert first["results"] == expected(2.0)
    assert "llvmlite" in first["loaded"]
    second = run(tmp_path)
    assert second["results"] == expected(2.0)
    # k.kir ran the front end on demand, after the calls: nothing before it was needed.
    assert second["loaded"] == []
    assert second["kir"] == first["kir"]


def test_a_changed_global_or_file_is_a_miss_not_a_stale_result(tmp_path):
    run(tmp_path)
    changed = run(tmp_path, SCALE="3.0")
    assert changed["results"] == expected(3.0)
    assert "kernpack.driver.lang.frontend" in changed["loaded"]
    assert run(tmp_path, SCALE="3.0")["loaded"] == []  # now known too
    script = tmp_path / "kernels.py"
    script.write_text(script.read_text().replace("out[i] = SCALE * x[i]", "out[i] = SCALE * x[i] * 2.0"))
    edited = run(tmp_path, SCALE="3.0")
    assert edited["results"]["scaled"] == [0.0, 6.0, 12.0]
    assert "kernpack.driver.lang.frontend" in edited["loaded"]


def _damage(cache: Path, what: str) -> None:
    for path in cache.rglob("*"):
        data = path.read_bytes() if path.is_file() else b""
        if what == "index" and b'"signature"' in data:
            path.write_bytes(data[:-5])
        elif what == "so" and path.suffix == ".so":
            path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("what", ["index", "so"])
def test_damaged_index_entries_and_shared_objects_are_misses(tmp_path, what):
    run(tmp_path)
    _damage(tmp_path / "cache", what)
    damaged = run(tmp_path)
    assert damaged["results"] == expected(2.0)
    # A damaged entry sends the kernel through the front end; a damaged shared object, to
    # LLVM's JIT of the cached machine code.
    assert ("kernpack.driver.lang.frontend" if what == "index" else "llvmlite") in damaged["loaded"]
    assert run(tmp_path)["loaded"] == []  # and the entry or shared object was made again


def _import(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_ir_of_a_known_kernel_is_the_one_that_runs(tmp_path, monkeypatch):
    # A kernel the index knew is parsed on first use of its IR: if its file changed since it
    # was decorated, that IR would not be the code that runs, so asking for it is an error.
    monkeypatch.setenv("KERNPACK_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "known_kernels.py"
    path.write_text(textwrap.dedent(KERNELS).split("x = np.arange")[0])
    first = _import(path, "known_kernels_1").scaled
    x, out = np.arange(3.0), np.empty(3)
    first(x, out)
    again = _import(path, "known_kernels_2").scaled
    assert again._kir is None  # found in the index: not parsed
    assert str(again.kir) == str(first.kir)
    third = _import(path, "known_kernels_3").scaled
    path.write_text(path.read_text() + "\n# edited\n")
    with pytest.raises(kp.CompileError, match=r"'scaled' \(.*known_kernels.py:\d+\) changed since it was decorated"):
        _ = third.kir


def test_cache_off_writes_no_index(tmp_path):
    assert run(tmp_path, KERNPACK_CACHE="0")["results"] == expected(2.0)
    assert not (tmp_path / "cache").exists()


# ---------------------------------------------------------------------- what a definition depends on
LIMIT = 4
helper_module = np  # a module other than kernpack, math and numpy would be unreadable; numpy is known
not_readable = np.zeros(3)


def _uses_global(x: kp.f64[:], out: kp.f64[:]):
    for i in kp.grid(x.shape[0]):
        out[i] = x[i] * LIMIT


def _uses_array_name(x: kp.f64[:], out: kp.f64[:]):
    for i in kp.grid(x.shape[0]):
        not_readable = x[i]
        out[i] = not_readable


def test_parts_name_every_value_the_source_uses():
    parts = definition_parts(_uses_global)
    assert parts is not None
    assert "LIMIT=int:4" in parts and "kp=module:kernpack" in parts
    assert "x:array:scalar:f64:1" in parts
    # Parameters are bound before the body: a global of the same name does not matter.
    assert not any(p.startswith("x=") for p in parts)


def test_a_name_whose_value_is_not_readable_leaves_the_definition_to_the_front_end():
    # The local shares its name with a global array: the front end would only ever see the
    # local, but an index that errs must err towards parsing.
    assert definition_parts(_uses_array_name) is None
    assert definition_parts(lambda: None) is not None
    assert definition_parts(print) is None


@pytest.mark.parametrize(
    ("value", "token"),
    [
        (2, "int:2"),
        (2.0, "float:2.0"),
        (True, "bool:True"),
        (np.float32(1.5), "np.<f4:0000c03f"),
        (kp.f32, "scalar:f32"),
    ],
)
def test_tokens_fix_the_value(value, token):
    def fn():
        return value

    assert f"value={token}" in (definition_parts(fn) or [])


def test_a_changed_device_function_in_another_module_is_a_miss(tmp_path):
    (tmp_path / "helpers.py").write_text(
        "import kernpack as kp\n\n@kp.func\ndef scale(v: kp.f64) -> kp.f64:\n    return v * 2.0\n"
    )
    (tmp_path / "kernels.py").write_text(
        textwrap.dedent(
            """
            import json, sys, numpy as np, kernpack as kp
            sys.path.insert(0, __file__.rsplit("/", 1)[0])
            from helpers import scale

            @kp.kernel
            def scaled(x: kp.f64[:], out: kp.f64[:]):
                for i in kp.grid(x.shape[0]):
                    out[i] = scale(x[i])

            x = np.arange(3.0); out = np.empty_like(x)
            scaled(x, out)
            loaded = [m for m in ("kernpack.driver.lang.frontend", "llvmlite") if m in sys.modules]
            print(json.dumps({"results": {"scaled": out.tolist()}, "loaded": loaded}))
            """
        )
    )
    assert run(tmp_path)["results"]["scaled"] == [0.0, 2.0, 4.0]
    assert run(tmp_path)["loaded"] == []  # known: the function's definition is part of the key
    helpers = tmp_path / "helpers.py"
    helpers.write_text(helpers.read_text().replace("v * 2.0", "v * 3.0"))
    changed = run(tmp_path)
    assert changed["results"]["scaled"] == [0.0, 3.0, 6.0]
    assert "kernpack.driver.lang.frontend" in changed["loaded"]
