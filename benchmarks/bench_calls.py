"""Calling a kernel: per-call cost, and the first result of a cached kernel in a fresh process.

Run: ``.venv/bin/python benchmarks/bench_calls.py [--no-warp] [--no-taichi]`` (numba from ``pip
install -e .[bench]``; NVIDIA Warp's CPU backend and Taichi from the peer venvs
``peers/setup_warp.sh`` and ``peers/setup_taichi.sh`` make, the first run makes them). Writes
``results/calls.{json,md,png}``.

* Call: ``saxpy(2.0, x, y, out)`` on float32 arrays of length 1, 20,000 calls a batch, the
  median of 15 batches (one batch of each in turn): the kernel object (its native entry point),
  the function of the built module, of a loaded ``.so`` and of ``import mylib``, each against
  numba's ``@njit`` of the same loop, called the same way (from a lambda) in the same run.
  Warp's launches (``wp.launch`` and a recorded launch) on the CPU and a Taichi launch
  (``ti.cpu``, numpy arguments), the same kernel, are the other peers.
* Fresh process: ``import kernpack``, define the kernel, call it once, with the kernel already in
  the compile cache; against numba's ``@njit(cache=True)`` first call from its cache and Warp's
  cached first launch. The time counts from after the import of each package (``import numba``,
  ``import warp`` and ``wp.init()`` are not counted either). Each is run once before, to fill
  its cache (and write its bytecode), then nine times, the three taking turns; the median.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import medians_per_call, peer_python, report, run_json, warp_peer  # noqa: E402
from kernpack.runtime import load_module  # noqa: E402

KERNEL = """
import kernpack as kp

@kp.kernel
def saxpy(a: kp.f32, x: kp.f32[:], y: kp.f32[:], out: kp.f32[:]):
    for i in kp.grid(out.shape[0]):
        out[i] = a * x[i] + y[i]
"""
FIRST_CALL = """
import sys, time, json
sys.path.insert(0, {directory!r})
import numpy as np
import kernpack
start = time.perf_counter()
from calls_kernel import saxpy
x = np.ones(1, np.float32); out = np.zeros(1, np.float32)
saxpy(2.0, x, x, out)
print(json.dumps({{"s": time.perf_counter() - start, "llvmlite": "llvmlite" in sys.modules}}))
"""
NUMBA_FIRST_CALL = """
import sys, time, json
sys.path.insert(0, {directory!r})
import numpy as np
import numba
start = time.perf_counter()
from numba_kernel import saxpy
x = np.ones(1, np.float32); out = np.zeros(1, np.float32)
saxpy(np.float32(2.0), x, x, out)
print(json.dumps({{"s": time.perf_counter() - start}}))
"""
NUMBA_KERNEL = """
import numba

@numba.njit(cache=True)
def saxpy(a, x, y, out):
    for i in range(out.shape[0]):
        out[i] = a * x[i] + y[i]
"""


def main() -> None:
    warp = None if "--no-warp" in sys.argv[1:] else peer_python("warp", setup=True)
    work = Path(tempfile.mkdtemp(prefix="kernpack-bench-calls-"))
    (work / "calls_kernel.py").write_text(textwrap.dedent(KERNEL))
    (work / "numba_kernel.py").write_text(textwrap.dedent(NUMBA_KERNEL))
    sys.path.insert(0, str(work))
    from calls_kernel import saxpy

    numba = _numba(work)
    x, y, out = (np.ones(1, np.float32) for _ in range(3))
    calls, batches = 20_000, 15

    saxpy(2.0, x, y, out)  # built (or found in the cache) before timing
    module = saxpy.compile()
    module.export_library(work / "callslib.so")
    loaded = load_module(work / "callslib.so")
    import callslib

    built, from_library, imported = module["saxpy"], loaded["saxpy"], callslib.saxpy
    python_path = built.native_entry.__self__
    a32 = np.float32(2.0)  # numba compiles for the type of the first call's arguments: float32
    if numba:
        base_name, base = "numba @njit", (lambda: numba(a32, x, y, out))  # type: ignore[operator]
    else:
        base_name, base = "kernpack's Python path (numba not installed)", (lambda: python_path(2.0, x, y, out))
    t = medians_per_call(
        {
            "base": base,
            "call: kernel saxpy(2.0, x, y, out)": lambda: saxpy(2.0, x, y, out),
            "call: the built module's function": lambda: built(2.0, x, y, out),
            "call: load_module('lib.so')['saxpy']": lambda: from_library(2.0, x, y, out),
            "call: import lib; lib.saxpy": lambda: imported(2.0, x, y, out),
            "call: the Python path (no native entry)": lambda: python_path(2.0, x, y, out),
        },
        calls,
        batches,
    )
    kernel_call = t["call: kernel saxpy(2.0, x, y, out)"]
    rows = [_row(what, seconds, t["base"], base_name) for what, seconds in t.items() if what != "base"]
    if warp:
        theirs = warp_peer(warp, "call", str(calls), str(batches))
        recorded = theirs["recorded_s"]
        rows.append(_row("call: kernel vs Warp's recorded launch", kernel_call, recorded, "Warp cmd.launch()"))
        rows.append(_row("call: kernel vs Warp's wp.launch", kernel_call, theirs["launch_s"], "Warp wp.launch"))
    taichi = None if "--no-taichi" in sys.argv[1:] else peer_python("taichi", setup=True)
    if taichi:
        theirs = run_json([taichi, str(ROOT / "benchmarks" / "peers" / "taichi_peer.py"), "call", str(calls),
                           str(batches)])  # fmt: skip
        rows.append(_row("call: kernel vs a Taichi launch (ti.cpu)", kernel_call, theirs["launch_s"],
                         "Taichi kernel(), numpy args"))  # fmt: skip
    cache = work / "cache"
    env = {**os.environ, "KERNPACK_CACHE_DIR": str(cache), "NUMBA_CACHE_DIR": str(work / "numba-cache")}
    # Bytecode as an installed package has it: pip compiles a wheel's at install, and an editable
    # checkout's are written by the first (filling) run, unless this variable forbids it.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    # Every process of each once first, to fill its cache; then the timed ones, taking turns,
    # so that a busy spell of the machine falls on all of them alike.
    runs: dict[str, Callable[[], dict]] = {"kernpack": lambda: _child(FIRST_CALL.format(directory=str(work)), env)}
    if numba:
        runs["numba"] = lambda: _child(NUMBA_FIRST_CALL.format(directory=str(work)), env)
    if warp:
        warp_dir = work / "warp"
        warp_dir.mkdir()
        runs["warp"] = lambda: warp_peer(warp, "first-call", str(warp_dir))
    for run in runs.values():
        run()
    fresh: dict[str, list[dict]] = {name: [] for name in runs}
    for _ in range(9):
        for name, run in runs.items():
            fresh[name].append(run())
    first = float(np.median([r["s"] for r in fresh["kernpack"]]))
    for name, label in (("numba", "numba cache=True"), ("warp", "Warp, cached")):
        if name in fresh:
            theirs = float(np.median([r["s"] for r in fresh[name]]))
            rows.append(_row("fresh process: first result of a cached kernel", first, theirs, label))
    report("calls", rows, {"llvmlite_loaded_on_cache_hit": any(r["llvmlite"] for r in fresh["kernpack"])})


def _row(what: str, mine: float, base: float, base_name: str) -> dict:
    return {"what": what, "kernpack_s": mine, "baseline_s": base, "baseline_name": base_name}


def _child(code: str, env: dict[str, str]) -> dict:
    result = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def _numba(work: Path) -> object | None:
    if importlib.util.find_spec("numba") is None:
        return None
    from numba_kernel import saxpy

    x = np.ones(1, np.float32)
    saxpy(np.float32(2.0), x, x, x)  # compiled before timing
    return saxpy


if __name__ == "__main__":
    main()
