"""export_library and load_module: trees exported, reloaded in fresh processes, checked."""

from __future__ import annotations

import os
import struct
import subprocess

import numpy as np
import pytest

import kernpack as kp
from kernpack.driver.link import plan_export
from kernpack.runtime.blob import MAGIC, BlobIndex
from tests.conftest import SUM_IR, VADD_IR
from tests.export.kinds import BlobKind, Orphan

SCALE_C = """
#include <stdint.h>
void scale(float *x, float a, int64_t n) { for (int64_t i = 0; i < n; ++i) x[i] *= a; }
"""
TWICE_IR = "define i64 @twice(i64 %x) {\n  %y = mul i64 %x, 2\n  ret i64 %y\n}"

DESCRIBE = """
import json, numpy as np, kernpack as kp
{prelude}
root = kp.load_module({path!r})
def tree(m):
    return {{"kind": m.kind, "mask": int(m.property_mask), "imports": [tree(c) for c in m.imports]}}
out = {{"tree": tree(root)}}
{body}
print(json.dumps(out))
"""


def describe(fresh, path, body="", prelude=""):
    return fresh(DESCRIBE.format(path=str(path), body=body, prelude=prelude))


def blob_bytes(path) -> bytes:
    with open(path, "rb") as f:
        data = f.read()
    start = data.index(MAGIC)
    (size,) = struct.unpack_from("<Q", data, start + 16)
    return data[start : start + size]


def test_a_llvm_alone(tmp_path, fresh):
    path = kp.llvm_module(VADD_IR).export_library(tmp_path / "a.so")
    assert path == str(tmp_path / "a.so")
    got = describe(
        fresh,
        path,
        "a = np.arange(5, dtype=np.float32); c = np.empty_like(a); root['vadd'](a, a, c, 5)\n"
        "out['c'] = c.tolist(); out['sig'] = str(root['vadd'].signature)",
    )
    assert got["tree"] == {"kind": "library", "mask": 2, "imports": []}
    assert got["c"] == [0, 2, 4, 6, 8]
    assert got["sig"] == "void vadd(const float *a, const float *b, float *c, int64_t n)"


def test_b_llvm_importing_c(tmp_path, fresh):
    root = kp.llvm_module(VADD_IR)
    root.import_module(kp.c_source_module(SCALE_C, ["scale"], signatures=["void scale(float *x, float a, int64_t n)"]))
    root.export_library(tmp_path / "b.so")
    got = describe(
        fresh,
        tmp_path / "b.so",
        "x = np.ones(3, np.float32); root['scale'](x, 2.5, 3); out['x'] = x.tolist()",
    )
    assert got["tree"] == {"kind": "library", "mask": 2, "imports": []}
    assert got["x"] == [2.5, 2.5, 2.5]


def test_c_llvm_importing_two_llvm_modules_are_merged(tmp_path, fresh):
    root = kp.llvm_module(VADD_IR)
    root.import_module(kp.llvm_module(SUM_IR))
    root.import_module(kp.llvm_module(TWICE_IR))
    root.export_library(tmp_path / "c.so")
    got = describe(fresh, tmp_path / "c.so", "out['r'] = [root['twice'](21), root['sum'](np.arange(4.0), 4)]")
    assert got["tree"] == {"kind": "library", "mask": 2, "imports": []}
    assert got["r"] == [42, 6.0]


def test_d_pipeline_root_importing_llvm(tmp_path, fresh):
    pipe = kp.pipeline_module([("vadd", ["a", "b", "tmp", "n"]), ("vadd", ["tmp", "b", "out", "n"])])
    pipe.import_module(kp.llvm_module(VADD_IR))
    pipe.export_library(tmp_path / "d.so")
    got = describe(
        fresh,
        tmp_path / "d.so",
        "a = np.arange(4, dtype=np.float32); b = np.ones(4, np.float32)\n"
        "t = np.empty_like(a); o = np.empty_like(a)\n"
        "root['main'](a=a, b=b, tmp=t, n=4, out=o); out['o'] = o.tolist()",
    )
    assert got["tree"] == {"kind": "pipeline", "mask": 3, "imports": [{"kind": "library", "mask": 2, "imports": []}]}
    assert got["o"] == [2, 3, 4, 5]


def test_e_serializable_modules_nested_two_deep(tmp_path, fresh):
    root = kp.llvm_module(TWICE_IR)
    outer, inner = BlobKind("outer", 1), BlobKind("inner", 2)
    outer.import_module(inner)
    root.import_module(outer)
    root.import_module(BlobKind("side", 3))
    root.export_library(tmp_path / "e.so")
    got = describe(
        fresh,
        tmp_path / "e.so",
        "out['lazy'] = [m.is_decoded for m in root.imports]\n"
        "out['r'] = [root['twice'](2), root['outer'](), root['inner'](), root['side']()]",
        prelude="import tests.export.kinds",
    )
    blob = {"kind": "test_blob", "mask": 3}
    assert got["tree"] == {
        "kind": "library",
        "mask": 2,
        "imports": [{**blob, "imports": [{**blob, "imports": []}]}, {**blob, "imports": []}],
    }
    assert got["lazy"] == [False, False]
    assert got["r"] == [4, 1, 2, 3]


def test_inspect_shows_a_user_kind_through_its_describer(tmp_path):
    from kernpack.inspection import describe_library

    root = kp.llvm_module(TWICE_IR)
    root.import_module(BlobKind("answer", 42))
    root.export_library(tmp_path / "user.so")
    library, blob = describe_library(tmp_path / "user.so")["modules"]
    assert library["functions"][0]["name"] == "twice"
    assert blob["kind"] == "test_blob" and blob["functions"] == [{"name": "answer", "returns": 42}]


def test_root_without_any_dso_module(tmp_path, fresh):
    root = BlobKind("only", 7)
    root.import_module(BlobKind("child", 8))
    root.export_library(tmp_path / "nodso.so")
    got = describe(fresh, tmp_path / "nodso.so", "out['r'] = root['child']()", prelude="import tests.export.kinds")
    assert got["tree"] == {"kind": "test_blob", "mask": 3, "imports": [{"kind": "test_blob", "mask": 3, "imports": []}]}
    assert got["r"] == 8


def test_kind_without_loader_still_loads_and_fails_on_use(tmp_path, fresh):
    root = kp.llvm_module(TWICE_IR)
    root.import_module(BlobKind("x", 1))
    root.export_library(tmp_path / "noloader.so")
    got = describe(
        fresh,
        tmp_path / "noloader.so",
        "out['twice'] = root['twice'](5)\ntry:\n    root['x']\nexcept kp.LoadError as e:\n    out['err'] = str(e)",
    )
    assert got["tree"]["imports"] == [{"kind": "test_blob", "mask": 3, "imports": []}]
    assert got["twice"] == 10
    assert "no loader is registered for module kind 'test_blob'" in got["err"]
    assert "pipeline" in got["err"]  # lists the loaders that exist


# --------------------------------------------------------------------- (f) every ExportError
def test_f_neither_mask_is_refused_with_the_path(tmp_path):
    root = kp.llvm_module(TWICE_IR)
    pipe = kp.pipeline_module([("twice", ["x"])])
    root.import_module(BlobKind("b", 1))
    root.import_module(pipe)
    pipe.import_module(kp.python_module({"f": len}))
    with pytest.raises(kp.ExportError) as info:
        root.export_library(tmp_path / "x.so")
    message = str(info.value)
    assert "root(llvm) -> imports[1](pipeline) -> imports[0](python)" in message
    assert "kind 'python', mask RUNNABLE" in message
    assert "neither DSO_EXPORTABLE nor BINARY_SERIALIZABLE" in message
    assert list(tmp_path.iterdir()) == []


def test_f_loaded_library_is_refused_with_advice(tmp_path):
    kp.llvm_module(TWICE_IR).export_library(tmp_path / "lib.so")
    loaded = kp.load_module(tmp_path / "lib.so")
    with pytest.raises(kp.ExportError, match=r"root\(library\).*export again from the modules it was built from"):
        loaded.export_library(tmp_path / "again.so")
    pipe = kp.pipeline_module([("twice", [1])])
    pipe.import_module(loaded)
    with pytest.raises(kp.ExportError, match=r"root\(pipeline\) -> imports\[0\]\(library\)"):
        pipe.export_library(tmp_path / "again.so")


def test_f_serializable_kind_without_loader_is_refused(tmp_path):
    root = kp.llvm_module(TWICE_IR)
    root.import_module(Orphan("o", 1))
    with pytest.raises(kp.ExportError, match=r"imports\[0\]\(test_orphan\).*no loader is registered"):
        root.export_library(tmp_path / "x.so")


def test_f_merge_cycle_names_both_modules(tmp_path):
    root = kp.llvm_module(TWICE_IR)
    middle = BlobKind("mid", 1)
    middle.import_module(kp.llvm_module(VADD_IR))
    root.import_module(middle)
    with pytest.raises(kp.ExportError, match=r"without a cycle.*imports\[0\]\(test_blob\).*imports .*llvm"):
        root.export_library(tmp_path / "x.so")


def test_f_duplicate_function_and_missing_directory(tmp_path):
    root = kp.llvm_module(TWICE_IR)
    root.import_module(kp.llvm_module(TWICE_IR))
    with pytest.raises(kp.ExportError, match="'twice' is defined by both"):
        root.export_library(tmp_path / "x.so")
    with pytest.raises(kp.ExportError, match="does not exist"):
        kp.llvm_module(TWICE_IR).export_library(tmp_path / "no" / "x.so")
    with pytest.raises(kp.ExportError, match="it is a directory"):
        kp.llvm_module(TWICE_IR).export_library(tmp_path)


def test_failing_write_is_an_export_error_and_leaves_nothing(tmp_path, monkeypatch):
    import kernpack.driver.link as link

    def broken(out, size, chunks, arch):
        out.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(link, "write_blob_object", broken)
    with pytest.raises(kp.ExportError, match="No space left on device"):
        kp.llvm_module(TWICE_IR).export_library(tmp_path / "x.so")
    assert list(tmp_path.iterdir()) == []


def test_link_error_leaves_nothing_and_keeps_an_existing_file(tmp_path):
    target = tmp_path / "x.so"
    target.write_bytes(b"previous")
    root = kp.llvm_module(TWICE_IR)
    root.import_module(kp.c_source_module("this is not C;", ["nothing"]))
    with pytest.raises(kp.LinkError) as info:
        root.export_library(target)
    err = info.value
    assert err.returncode != 0 and "error" in err.stderr and "-shared" in err.command
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.so"]


def test_missing_compiler_is_a_link_error(tmp_path):
    with pytest.raises(kp.ToolError, match=r"cc='/nonexistent/cc' names no executable") as caught:
        kp.llvm_module(TWICE_IR).export_library(tmp_path / "x.so", cc="/nonexistent/cc")
    assert isinstance(caught.value, kp.LinkError)
    assert list(tmp_path.iterdir()) == []


def test_workspace_is_kept_when_given_and_removed_otherwise(tmp_path):
    work = tmp_path / "work"
    root = kp.llvm_module(TWICE_IR)
    root.import_module(kp.c_source_module(SCALE_C, ["scale"]))
    root.export_library(tmp_path / "w.so", workspace=work, options=["-Wall"])
    assert sorted(os.listdir(work)) == ["blob.o", "cpu.c", "lib0.o", "lib1.c", "pyinit.c"]


# --------------------------------------------------------------------- (g) format version
def test_g_unknown_format_version_is_refused(tmp_path):
    path = tmp_path / "v.so"
    kp.llvm_module(TWICE_IR).export_library(path)
    data = bytearray(path.read_bytes())
    start = data.index(MAGIC)
    struct.pack_into("<I", data, start + 8, 99)
    bumped = tmp_path / "v99.so"
    bumped.write_bytes(bytes(data))
    with pytest.raises(kp.FormatError, match=r"blob format version 99 is not supported.*upgrade kernpack"):
        kp.load_module(bumped)


def test_corrupt_payload_fails_on_first_use_only(tmp_path):
    root = kp.llvm_module(TWICE_IR)
    root.import_module(BlobKind("val", 5))
    path = tmp_path / "p.so"
    root.export_library(path)
    data = bytearray(path.read_bytes())
    start = data.index(MAGIC)
    index = BlobIndex(bytes(data[start:]))
    payload_at = start + index.entries[1].offset
    data[payload_at] ^= 0xFF
    bad = tmp_path / "bad.so"
    bad.write_bytes(bytes(data))
    loaded = kp.load_module(bad)
    assert loaded["twice"](1) == 2
    with pytest.raises(kp.FormatError, match=r"module 1 \(test_blob\): payload checksum mismatch"):
        loaded["val"]


# --------------------------------------------------------------------- (h) a C program
def test_h_c_program_calls_the_library_through_the_header(tmp_path):
    root = kp.llvm_module(VADD_IR)
    root.import_module(kp.llvm_module(TWICE_IR))
    lib = root.export_library(tmp_path / "libk.so")
    header = (tmp_path / "libk.h").read_text()
    assert "void vadd(const float *a, const float *b, float *c, int64_t n);" in header
    assert "int64_t twice(int64_t x);" in header
    program = tmp_path / "main.c"
    program.write_text(
        f"""
        #include <dlfcn.h>
        #include <stdio.h>
        #include "libk.h"
        int main(void) {{
            void *h = dlopen("{lib}", RTLD_NOW);
            if (!h) {{ printf("dlopen: %s\\n", dlerror()); return 1; }}
            typeof(&vadd) f = (typeof(&vadd))dlsym(h, "vadd");
            typeof(&twice) t = (typeof(&twice))dlsym(h, "twice");
            float a[3] = {{1, 2, 3}}, c[3];
            f(a, a, c, 3);
            printf("%g %g %g %lld\\n", c[0], c[1], c[2], (long long)t(21));
            return 0;
        }}
        """
    )
    exe = tmp_path / "main"
    subprocess.run(["cc", "-std=gnu11", "-I", str(tmp_path), "-o", str(exe), str(program), "-ldl"], check=True)
    assert subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split() == [
        "2",
        "4",
        "6",
        "42",
    ]


def test_exporting_twice_gives_a_byte_identical_blob(tmp_path):
    def build():
        root = kp.llvm_module(VADD_IR)
        root.import_module(BlobKind("a", 1))
        root.import_module(kp.c_source_module(SCALE_C, ["scale"]))
        return root

    build().export_library(tmp_path / "1.so")
    build().export_library(tmp_path / "2.so")
    assert blob_bytes(tmp_path / "1.so") == blob_bytes(tmp_path / "2.so")


def test_plan_matches_tvm_two_phase_merge():
    root = kp.pipeline_module([("twice", [1])])
    host_a, host_b = kp.llvm_module(TWICE_IR), kp.llvm_module(VADD_IR)
    dev = BlobKind("d", 1)
    root.import_module(host_a)
    host_a.import_module(dev)
    host_a.import_module(host_b)
    plan = plan_export(root)
    assert [[m.kind for m in g] for g in plan.groups] == [["pipeline"], ["llvm", "llvm"], ["test_blob"]]
    assert plan.host == 1
    assert (plan.row_ptr, plan.children) == ([0, 1, 2, 2], [1, 2])


# --------------------------------------------------------------------- plain libraries
def test_plain_shared_library_binds_explicit_signatures(tmp_path):
    src = tmp_path / "plain.c"
    src.write_text(SCALE_C)
    so = tmp_path / "libplain.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(so), str(src)], check=True)
    with kp.load_module(so) as lib:
        assert lib.kind == "library" and lib.function_names() == ()
        scale = lib.bind("void scale(float *x, float a, int64_t n)")
        x = np.ones(4, np.float32)
        scale(x, 3.0, 4)
        assert x.tolist() == [3, 3, 3, 3]
        with pytest.raises(kp.FunctionNotFoundError, match="does not export a function 'missing'"):
            lib.bind("void missing(void)")
    scale(x, 2.0, 4)  # still mapped: the function holds the library
    assert x.tolist() == [6, 6, 6, 6]
    with pytest.raises(kp.UnsupportedOperationError, match="closed"):
        lib.bind("void scale(float *x, float a, int64_t n)")


def test_a_loaded_tree_makes_each_module_once_and_when_reached(tmp_path):
    root = kp.llvm_module(TWICE_IR)
    shared = BlobKind("shared", 5)
    for i in range(3):
        child = BlobKind("child", i)
        child.import_module(shared)
        root.import_module(child)
    root.export_library(tmp_path / "t.so")
    loaded = kp.load_module(tmp_path / "t.so")
    nodes = loaded._tree._nodes
    assert sum(node is not None for node in nodes) == 1  # the root only
    children = loaded.imports
    assert children == loaded.imports and not any(child.is_decoded for child in children)
    assert sum(node is not None for node in nodes) == 4
    assert len({id(child.imports[0]) for child in children}) == 1  # one module, three importers
    assert [loaded["child"]() for _ in range(2)] == [0, 0] and loaded["shared"]() == 5


def test_library_module_is_runnable_only(tmp_path):
    kp.llvm_module(TWICE_IR).export_library(tmp_path / "r.so")
    lib = kp.load_module(tmp_path / "r.so")
    assert lib.property_mask == kp.ModulePropertyMask.RUNNABLE
    with pytest.raises(kp.UnsupportedOperationError, match=r"Module\[library\] does not support save_to_bytes"):
        lib.save_to_bytes()


def test_payload_is_a_zero_copy_view_and_round_trips(tmp_path):
    root = kp.llvm_module(TWICE_IR)
    root.import_module(BlobKind("v", 9))
    root.export_library(tmp_path / "z.so")
    loaded = kp.load_module(tmp_path / "z.so")
    lazy = loaded.imports[0]
    assert lazy.save_to_bytes() == b"v=9"
    assert not lazy.is_decoded
    view = lazy._payload()
    assert isinstance(view, memoryview) and view.readonly
    del loaded, lazy
    assert bytes(view) == b"v=9"  # the view keeps the library mapped


def test_load_errors_name_the_path(tmp_path):
    not_elf = tmp_path / "text.so"
    not_elf.write_text("hello")
    with pytest.raises(kp.LoadError, match=r"cannot load '.*text\.so'"):
        kp.load_module(not_elf)
    with pytest.raises(kp.LoadError, match="no such file"):
        kp.load_module(tmp_path / "missing.so")


def test_loading_and_calling_needs_no_llvmlite(tmp_path, fresh):
    kp.llvm_module(VADD_IR).export_library(tmp_path / "deploy.so")
    got = fresh(
        f"""
        import json, sys, numpy as np
        from kernpack.runtime import load_module
        m = load_module({str(tmp_path / "deploy.so")!r})
        a = np.ones(3, np.float32); c = np.empty_like(a); m["vadd"](a, a, c, 3)
        print(json.dumps({{"c": c.tolist(), "llvmlite": "llvmlite" in sys.modules,
                          "driver": any(k.startswith("kernpack.driver") for k in sys.modules)}}))
        """
    )
    assert got == {"c": [2, 2, 2], "llvmlite": False, "driver": False}
