"""Export and load of one deployable .so, beside bare dlopen and Apache TVM 0.27, in one run.

Run: ``.venv/bin/python benchmarks/bench_export_load.py [--quick]`` (``--quick`` skips the
512 MiB case and takes fewer samples). TVM's figures come from ``benchmarks/peers/tvm_peer.py``
in its own environment (``benchmarks/peers/setup_tvm.sh`` makes it; pass ``--no-tvm`` to skip).
Writes ``results/export_load.{json,md,png}``.

* **load**: ``load_module`` of a library whose blob carries 1 KiB .. 512 MiB, beside a bare
  ``ctypes.CDLL`` of a byte-identical copy, each timed inside a fresh process (the library is
  new to the process, the file is in the page cache), median over processes; and TVM 0.27's
  ``load_module`` of a library carrying a constant of the same size. The curves
  (medians, min-max bands, log axes) are ``results/load_curves.png``.
* **load by module count**: the same for a host library importing 1 .. 256 small device
  modules (opencl, vulkan, cuda in turn; 1 KiB of bytes each, a small real shader for Vulkan,
  whose bindings are checked when the module is made; no device runs them here, plus a one-kernel
  function table). ``load_module`` only indexes them; a second row
  adds touching every module, ``tree_function_names()`` on the loaded root, which decodes each
  lazy module and reads every function table, timed in the same process right after the load.
  Beside TVM's ``load_module`` of a library of as many binary-serialized modules (Relax VM
  executables: TVM's pip wheel has no GPU runtime to carry device modules), which it
  deserializes when it loads, and its load + first call.
* **cold process**: the wall time of a whole ``python`` process that imports the runtime, loads
  a small exported library and calls ``vadd`` once, beside the same with ``tvm_ffi``.
* **export**: ``export_library`` of a tree carrying 64 MiB, beside (a) copying a 64 MiB file
  and linking a one-function ``.so``, and (b) TVM's ``export_library`` of a Relax VM executable
  holding a 64 MiB constant.
"""

from __future__ import annotations

import argparse
import functools
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from tests.conftest import VADD_IR  # noqa: E402

import kernpack as kp  # noqa: E402
from benchmarks._common import TVM_PEER, plot_curves, report, run_json, tvm_peer, tvm_python  # noqa: E402
from kernpack import ModulePropertyMask as M  # noqa: E402

KIB, MIB = 1 << 10, 1 << 20
DEVICE_KINDS = ("opencl", "vulkan", "cuda")


class Payload(kp.Module):
    """A serializable module that is just bytes (stands in for device code or weights)."""

    kind = "bench_payload"
    property_mask = M.BINARY_SERIALIZABLE

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self.data = data

    def _save_to_bytes(self) -> bytes:
        return self.data


@kp.register_loader("bench_payload")
def _load(data):
    return Payload(bytes(data))


def tree(nbytes: int) -> kp.Module:
    root = kp.llvm_module(VADD_IR)
    root.import_module(Payload(np.random.default_rng(0).bytes(nbytes)))
    return root


def device_module(kind: str, i: int, code: bytes) -> kp.Module:
    """A device module of ``kind`` with one kernel ``k<i>`` whose code is ``code``.

    Nothing short of a launch reads the code beyond the SPIR-V header that the loaders check, so
    :func:`dummy_code` stands in for SPIR-V or PTX and no device or compiler is needed.
    """
    name = f"k{i}"
    entry = {"name": name, "signature": f"void {name}(float x[:])", "grid": ["x.shape[0]"]}
    if kind == "opencl":
        return kp.opencl_module(code, [entry], validate=False)  # stand-in code
    if kind == "vulkan":
        return kp.vulkan_module({name: code}, [entry])
    return kp.cuda_module(code, [entry], assemble=False)  # stand-in code: not PTX that ptxas takes


@kp.kernel
def standin(x: kp.f32[:]):
    for i in kp.grid(x.shape[0]):
        x[i] = x[i] + 1.0


def dummy_code(kind: str, rng: np.random.Generator) -> bytes:
    """Stand-in kernel code: for Vulkan a real shader (its bindings are checked when the module
    is made), elsewhere 1 KiB of noise, behind a SPIR-V header for OpenCL."""
    if kind == "vulkan":
        return _shader()
    if kind == "cuda":
        return rng.bytes(KIB)
    return (0x07230203).to_bytes(4, "little") + bytes(16) + rng.bytes(KIB - 20)


@functools.cache
def _shader() -> bytes:
    return kp.build([standin], "vulkan").shader("standin")


def device_tree(count: int) -> kp.Module:
    """The vadd host module importing ``count`` one-kernel device modules, kinds in turn."""
    root = kp.llvm_module(VADD_IR)
    rng = np.random.default_rng(0)
    for i in range(count):
        kind = DEVICE_KINDS[i % len(DEVICE_KINDS)]
        root.import_module(device_module(kind, i, dummy_code(kind, rng)))
    return root


LOAD_CHILD = """
import sys, time, json, ctypes
from kernpack.runtime import load_module
a, b, kernpack_first, touch = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4] == "1"
def cdll():
    t = time.perf_counter(); ctypes.CDLL(a); return time.perf_counter() - t
def kernpack():
    t = time.perf_counter(); m = load_module(b); return time.perf_counter() - t, m
# Alternate which goes first, so neither gains from the other warming the dynamic loader.
if kernpack_first:
    (k, m), c = kernpack(), cdll()
else:
    c = cdll(); k, m = kernpack()
out = {"cdll": c, "kernpack": k, "imports": [x.kind for x in m.imports]}
if touch:  # the first call of a host function, then decode every lazy module and read its table
    import numpy as np
    x = np.ones(4, np.float32); y = np.empty_like(x)
    t = time.perf_counter(); m["vadd"](x, x, y, 4); out["first_call"] = time.perf_counter() - t
    t = time.perf_counter(); out["functions"] = len(m.tree_function_names()); out["touch"] = time.perf_counter() - t
print(json.dumps(out))
"""

COLD_KERNPACK = """
import sys, numpy as np
from kernpack.runtime import load_module
m = load_module(sys.argv[1])
n = int(sys.argv[2]); a = np.ones(n, np.float32); c = np.empty_like(a)
m["vadd"](a, a, c, n)
assert c[0] == 2
"""


def wall(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, capture_output=True, check=True, cwd=ROOT)
    return time.perf_counter() - start


def load_samples(lib: Path, procs: int, touch: bool = False) -> list[dict]:
    """``LOAD_CHILD``'s figures for ``lib``, one dict per fresh process (the first, a warm-up, dropped).

    ``ctypes.CDLL`` opens a byte-identical copy: dlopen of a path the process already has open
    returns the open handle, which would make whichever comes second free.
    """
    copy = lib.with_name(f"{lib.stem}_copy.so")
    shutil.copyfile(lib, copy)
    argv = [sys.executable, "-c", LOAD_CHILD, str(copy), str(lib)]
    samples = [run_json([*argv, str(i % 2), str(int(touch))]) for i in range(2 * procs + 1)][1:]
    copy.unlink()
    return samples


def _band(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _curve(points: list[dict[str, float]]) -> dict[str, list[float]]:
    return {k: [p[k] for p in points] for k in ("median", "min", "max")}


def _label(size: int) -> str:
    return f"{size // MIB} MiB" if size >= MIB else f"{size // KIB} KiB"


def bench_load(work: Path, sizes: list[int], procs: int, tvm: str | None, extra: dict) -> list[dict]:
    """Load time against blob size: kernpack, a bare dlopen of the same file, and TVM's load_module."""
    rows, mine, bare = [], [], []
    for size in sizes:
        lib = work / f"load_{size}.so"
        tree(size).export_library(lib)
        samples = load_samples(lib, procs)
        assert all(s["imports"] == ["bench_payload"] for s in samples)
        mine.append(_band([s["kernpack"] for s in samples]))
        bare.append(_band([s["cdll"] for s in samples]))
        rows.append(
            {
                "what": f"load_module, {_label(size)} blob",
                "kernpack_s": mine[-1]["median"],
                "baseline_s": bare[-1]["median"],
                "baseline_name": "ctypes.CDLL",
            }
        )
        lib.unlink()
    series = {"kernpack load_module": _curve(mine), "ctypes.CDLL (the same file)": _curve(bare)}
    if tvm:
        # TVM carries the payload as a Relax constant (512 MiB: a 30 s compile, 3.7 GB).
        theirs = tvm_peer(tvm, "load-sweep", str(work), str(procs), *map(str, sizes))
        series["TVM 0.27 load_module"] = {k: theirs[k] for k in ("median", "min", "max")}
        for size, t in zip(sizes, theirs["median"], strict=True):
            ours = mine[sizes.index(size)]["median"]
            rows.append({"what": f"load_module, {_label(size)} blob vs TVM", "kernpack_s": ours, "baseline_s": t,
                         "baseline_name": "TVM 0.27 load_module"})  # fmt: skip
    extra.setdefault("curves", {})["load_vs_blob"] = {
        "x": sizes,
        "labels": [_label(s) for s in sizes],
        "series": series,
    }
    return rows


def bench_load_count(work: Path, counts: list[int], procs: int, tvm: str | None, extra: dict) -> list[dict]:
    """Load time against the number of device modules in the tree, and the cost of touching them all.

    Beside TVM's load of a library of as many binary-serialized modules (Relax VM executables,
    which it deserializes at load as it would device modules; its pip wheel has no GPU runtime
    to carry real ones), and its load + first call.
    """
    loads, touches, record = [], [], {}
    curves: dict[str, list[dict[str, float]]] = {
        k: [] for k in ("kernpack load_module", "ctypes.CDLL (the same file)", "load + first call",
                        "load + decode every module")
    }  # fmt: skip
    for count in counts:
        lib = work / f"count_{count}.so"
        device_tree(count).export_library(lib)
        samples = load_samples(lib, procs, touch=True)
        kinds = [DEVICE_KINDS[i % len(DEVICE_KINDS)] for i in range(count)]
        assert all(s["imports"] == kinds and s["functions"] == count + 1 for s in samples)
        cdll = statistics.median(s["cdll"] for s in samples)
        load = statistics.median(s["kernpack"] for s in samples)
        # Load and touch come from the same process, so their sum is what a caller who uses
        # every module pays; the median of the sums, not the sum of the medians.
        both = statistics.median(s["kernpack"] + s["touch"] for s in samples)
        plural = "s" * (count > 1)
        loads.append(
            {
                "what": f"load_module, {count} device module{plural}",
                "kernpack_s": load,
                "baseline_s": cdll,
                "baseline_name": "ctypes.CDLL",
            }
        )
        touches.append(
            {
                "what": f"load_module + decode all, {count} device module{plural}",
                "kernpack_s": both,
                "baseline_s": cdll,
                "baseline_name": "ctypes.CDLL",
            }
        )
        record[str(count)] = {
            "so_bytes": lib.stat().st_size,
            "touch_s_median": statistics.median(s["touch"] for s in samples),
            "samples": [{k: s[k] for k in ("cdll", "kernpack", "first_call", "touch")} for s in samples],
        }
        curves["kernpack load_module"].append(_band([s["kernpack"] for s in samples]))
        curves["ctypes.CDLL (the same file)"].append(_band([s["cdll"] for s in samples]))
        curves["load + first call"].append(_band([s["kernpack"] + s["first_call"] for s in samples]))
        curves["load + decode every module"].append(_band([s["kernpack"] + s["touch"] for s in samples]))
        lib.unlink()
    extra["load_by_module_count"] = record
    series = {k: _curve(v) for k, v in curves.items()}
    if tvm:
        theirs = tvm_peer(tvm, "load-count", str(work), str(procs), *map(str, counts))
        series["TVM 0.27 load_module"] = theirs["load"]
        series["TVM 0.27 load + first call"] = theirs["first_call"]
        versus = [
            {**row, "what": f"{row['what']} vs TVM", "baseline_s": t, "baseline_name": "TVM 0.27 load_module"}
            for row, t in zip(loads, theirs["load"]["median"], strict=True)
        ]
        loads += versus
    extra.setdefault("curves", {})["load_vs_modules"] = {
        "x": counts,
        "labels": [str(c) for c in counts],
        "series": series,
    }
    return loads + touches


def bench_cold(work: Path, tvm: str | None, procs: int) -> list[dict]:
    lib = work / "cold.so"
    kp.llvm_module(VADD_IR).export_library(lib)
    n = "1024"
    mine = [wall([sys.executable, "-c", COLD_KERNPACK, str(lib), n]) for _ in range(procs + 1)][1:]
    numpy_only = [wall([sys.executable, "-c", "import numpy"]) for _ in range(procs)]
    row = {
        "what": "cold process: import, load, call",
        "kernpack_s": statistics.median(mine),
        "python_import_numpy_s": statistics.median(numpy_only),
    }
    if tvm:
        tvm_lib = work / "tvm_vadd.so"
        fn = tvm_peer(tvm, "export-vadd", str(tvm_lib))["function"]
        theirs = [wall([tvm, str(TVM_PEER), "cold-call", str(tvm_lib), fn, n]) for _ in range(procs + 1)][1:]
        row.update(baseline_s=statistics.median(theirs), baseline_name="TVM 0.27 tvm_ffi")
    else:
        row.update(baseline_s=row["python_import_numpy_s"], baseline_name="python -c 'import numpy'")
    return [row]


def bench_export(work: Path, tvm: str | None, reps: int) -> list[dict]:
    size = 64 * MIB
    root = tree(size)
    times = []
    for i in range(reps):
        start = time.perf_counter()
        root.export_library(work / f"export_{i}.so")
        times.append(time.perf_counter() - start)
        (work / f"export_{i}.so").unlink()
    blob = work / "blob.bin"
    blob.write_bytes(np.random.default_rng(0).bytes(size))
    (work / "one.c").write_text("int one(void) { return 1; }\n")
    copy_link = []
    for _ in range(reps):
        start = time.perf_counter()
        shutil.copyfile(blob, work / "blob_copy.bin")
        subprocess.run(["cc", "-shared", "-fPIC", "-o", str(work / "one.so"), str(work / "one.c")], check=True)
        copy_link.append(time.perf_counter() - start)
    rows = [
        {
            "what": "export_library, 64 MiB",
            "kernpack_s": statistics.median(times),
            "baseline_s": statistics.median(copy_link),
            "baseline_name": "cp 64 MiB + cc -shared",
        }
    ]
    if tvm:
        theirs = tvm_peer(tvm, "export-const", str(work / "tvm_const.so"), "64")
        rows.append(
            {
                "what": "export_library, 64 MiB vs TVM",
                "kernpack_s": statistics.median(times),
                "baseline_s": theirs["export_s_median"],
                "baseline_name": "TVM 0.27 export_library",
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip 512 MiB, fewer samples")
    parser.add_argument("--no-tvm", action="store_true", help="do not set up or measure Apache TVM")
    args = parser.parse_args()
    sizes = [KIB, 16 * KIB, 256 * KIB, 4 * MIB, 64 * MIB] + ([] if args.quick else [256 * MIB, 512 * MIB])
    counts = [1, 4, 16, 64, 256]
    procs = 3 if args.quick else 7
    tvm = None if args.no_tvm else tvm_python(setup=True)
    extra = {"tvm": bool(tvm), "quick": args.quick}
    with tempfile.TemporaryDirectory(prefix="kernpack-bench-") as tmp:
        work = Path(tmp)
        rows = (
            bench_load(work, sizes, procs, tvm, extra)
            + bench_load_count(work, counts, procs, tvm, extra)
            + bench_cold(work, tvm, procs)
            + bench_export(work, tvm, 3 if args.quick else 5)
        )
    report("export_load", rows, extra)
    plot_load_curves(extra["curves"])


def plot_load_curves(curves: dict) -> None:
    """``results/load_curves.png`` from the curves a run recorded (``export_load.json``'s ``curves``)."""
    blob, modules = curves["load_vs_blob"], curves["load_vs_modules"]
    plot_curves(
        "load_curves",
        [
            {
                "title": "load time against blob size",
                "xlabel": "payload in the library",
                "x": blob["x"],
                "xticks": blob["labels"],
                "series": blob["series"],
            },
            {
                "title": "load time against module count",
                "xlabel": "device modules in the library",
                "x": modules["x"],
                "xticks": modules["labels"],
                "series": modules["series"],
            },
        ],
        "Loading one exported library in a fresh process",
    )


if __name__ == "__main__":
    main()
