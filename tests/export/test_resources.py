"""Modules own their native handles: loading and dropping thousands leaks no fd, mapping or memory.

Each measurement runs in a fresh interpreter, so what other tests left behind does not count:
it warms up, takes a baseline (open file descriptors, lines of /proc/self/maps, resident
memory), runs the loop, collects garbage and measures again.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import kernpack as kp
from tests.conftest import VADD_IR, require_device
from tests.export.conftest import run_fresh
from tests.export.kinds import BlobKind

MEASURE = """
import gc, json, os, sys, numpy as np, kernpack as kp
import tests.export.kinds
def usage():
    gc.collect()
    fds = len(os.listdir("/proc/self/fd"))
    with open("/proc/self/maps") as f:
        maps = sum(1 for _ in f)
    with open("/proc/self/statm") as f:
        rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return {{"fds": fds, "maps": maps, "rss": rss}}
paths = {paths!r}
{prelude}
a = np.ones(64, np.float32); out = np.empty_like(a)
def once(i):
{body}
for i in range({warmup}):
    once(i)
before = usage()
for i in range({count}):
    once(i)
print(json.dumps({{"before": before, "after": usage()}}))
"""

MIB = 1 << 20


def measure(paths: list[str], body: str, count: int, warmup: int = 50, prelude: str = "") -> tuple[dict, dict]:
    body = "\n".join("    " + line for line in body.strip().splitlines())
    got = run_fresh(MEASURE.format(paths=paths, body=body, count=count, warmup=warmup, prelude=prelude))
    return got["before"], got["after"]


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> str:
    root = kp.llvm_module(VADD_IR)
    root.import_module(BlobKind("value", 7))
    return root.export_library(tmp_path_factory.mktemp("res") / "lib.so")


@pytest.mark.parametrize("how", ["close", "with", "drop"])
def test_loading_one_library_thousands_of_times(library, how):
    body = {
        "close": "lib = kp.load_module(paths[0]); lib['vadd'](a, a, out, 64); lib['value'](); lib.close()",
        "with": "with kp.load_module(paths[0]) as lib:\n    lib['vadd'](a, a, out, 64); lib['value']()",
        "drop": "lib = kp.load_module(paths[0]); lib['vadd'](a, a, out, 64); lib['value'](); del lib",
    }[how]
    before, after = measure([library], body, count=3000)
    assert after["fds"] == before["fds"]
    assert after["maps"] == before["maps"]
    assert after["rss"] - before["rss"] < 8 * MIB, (before, after)


def test_distinct_libraries_are_unmapped_when_dropped(library, tmp_path):
    # dlopen shares one mapping per file: distinct copies prove each library is really closed.
    copies = [str(shutil.copy(library, tmp_path / f"copy{i}.so")) for i in range(300)]
    body = "lib = kp.load_module(paths[i % len(paths)]); lib['vadd'](a, a, out, 64); lib.close()"
    before, after = measure(copies, body, count=len(copies), warmup=0)
    assert after["fds"] == before["fds"]
    assert after["maps"] == before["maps"]


def test_a_kept_function_or_view_keeps_the_library_mapped(library):
    lib = kp.load_module(library)
    vadd = lib["vadd"]
    payload = lib.imports[0].save_to_bytes  # a bound method of the lazy module: no view yet
    view = lib.imports[0]._payload()
    lib.close()
    a = np.arange(4, dtype=np.float32)
    out = np.empty_like(a)
    vadd(a, a, out, 4)  # still mapped: the function holds the library
    assert out.tolist() == [0, 2, 4, 6] and bytes(view) == b"value=7"
    with pytest.raises(kp.UnsupportedOperationError, match="closed"):
        payload()
    with pytest.raises(kp.UnsupportedOperationError, match="closed"):
        lib["vadd"]


def test_close_is_idempotent_and_closes_the_whole_tree(library):
    with kp.load_module(library) as lib:
        assert lib["value"]() == 7
        child = lib.imports[0]
    assert "closed" in repr(lib)
    lib.close()
    with pytest.raises(kp.UnsupportedOperationError, match="closed"):
        child.decode()


def test_llvm_module_close_frees_the_engine():
    with kp.llvm_module(VADD_IR) as m:
        vadd = m["vadd"]
    a = np.ones(3, np.float32)
    out = np.empty_like(a)
    vadd(a, a, out, 3)  # a function obtained before close keeps its engine
    assert out.tolist() == [2, 2, 2]
    with pytest.raises(kp.KernpackError, match="closed"):
        m["vadd"]


@pytest.mark.parametrize("target", ["opencl", "vulkan"])
def test_device_modules_release_their_driver_objects(target):
    from tests.lang import kernels_src as K

    module = require_device(kp.build([K.vadd_f32], target=target, name="res"))
    data = module.save_to_bytes()
    body = f"""
m = kp.load_from_bytes({target!r}, data)
m['vadd_f32'](a, a, out)
assert out[0] == 2
if i % 2:
    m.close()  # the others are dropped: the finalizer releases them
"""
    # Vulkan objects are not garbage-collected: before kernpack destroyed them, 200 modules
    # here left ~400 mappings and ~28 MiB of lavapipe's compiled shaders behind.
    count = {"opencl": 100, "vulkan": 200}[target]
    before, after = measure([], body, count=count, warmup=20, prelude=f"data = {data!r}")
    assert after["fds"] == before["fds"]
    assert after["maps"] - before["maps"] < 100, (before, after)
    assert after["rss"] - before["rss"] < 16 * MIB, (before, after)
