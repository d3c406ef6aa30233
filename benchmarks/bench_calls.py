"""Calling a kernel: per-call cost, and the first result of a cached kernel in a fresh process.

Run: ``.venv/bin/python benchmarks/bench_calls.py [--no-warp]`` (numba from ``pip install -e
.[bench]``; NVIDIA Warp's CPU backend from the peer venv ``peers/setup_warp.sh`` makes, the first
run makes it). Writes ``results/calls.{json,md,png}``.

* Call: ``saxpy(2.0, x, y, out)`` on float32 arrays of length 1, 20,000 calls a batch, the
  median of 15 batches: the kernel object (its native entry point), the function of the built
  module, of a loaded ``.so`` and of ``import mylib``, each against numba's ``@njit`` of the
  same loop, called the same way in the same run.
  Warp's launches (``wp.launch`` and a recorded launch) on the CPU, the same kernel, are the
  other peer.
* Fresh process: ``import kernpack``, define the kernel, call it once, with the kernel already in
  the compile cache; against numba's ``@njit(cache=True)`` first call from its cache and Warp's
  cached first launch. The time counts from after the import of each package (``import numba``,
  ``import warp`` and ``wp.init()`` are not counted either).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import median_per_call, peer_python, report, warp_peer  # noqa: E402
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

    def per_call(fn: object, a: object = 2.0) -> float:
        return median_per_call(lambda: fn(a, x, y, out), calls, batches)  # type: ignore[operator]

    saxpy(2.0, x, y, out)  # built (or found in the cache) before timing
    module = saxpy.compile()
    module.export_library(work / "callslib.so")
    loaded = load_module(work / "callslib.so")
    import callslib

    python_path = module["saxpy"].native_entry.__self__
    baseline = per_call(numba, np.float32(2.0)) if numba else per_call(python_path)
    name = "numba @njit" if numba else "kernpack's Python path (numba not installed)"
    kernel_call = per_call(saxpy)
    rows = [
        _row("call: kernel saxpy(2.0, x, y, out)", kernel_call, baseline, name),
        _row("call: the built module's function", per_call(module["saxpy"]), baseline, name),
        _row("call: load_module('lib.so')['saxpy']", per_call(loaded["saxpy"]), baseline, name),
        _row("call: import lib; lib.saxpy", per_call(callslib.saxpy), baseline, name),
        _row("call: the Python path (no native entry)", per_call(python_path), baseline, name),
    ]
    if warp:
        theirs = warp_peer(warp, "call", str(calls), str(batches))
        recorded = theirs["recorded_s"]
        rows.append(_row("call: kernel vs Warp's recorded launch", kernel_call, recorded, "Warp cmd.launch()"))
        rows.append(_row("call: kernel vs Warp's wp.launch", kernel_call, theirs["launch_s"], "Warp wp.launch"))
    cache = work / "cache"
    env = {**os.environ, "KERNPACK_CACHE_DIR": str(cache), "NUMBA_CACHE_DIR": str(work / "numba-cache")}
    code = FIRST_CALL.format(directory=str(work))
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)  # fills the cache
    fresh = [_child(code, env) for _ in range(7)]
    first = float(np.median([r["s"] for r in fresh]))
    if numba:
        numba_code = NUMBA_FIRST_CALL.format(directory=str(work))
        subprocess.run([sys.executable, "-c", numba_code], env=env, check=True, capture_output=True)
        numba_first = float(np.median([_child(numba_code, env)["s"] for _ in range(7)]))
        rows.append(_row("fresh process: first result of a cached kernel", first, numba_first, "numba cache=True"))
    if warp:
        warp_dir = work / "warp"
        warp_dir.mkdir()
        warp_peer(warp, "first-call", str(warp_dir))  # fills Warp's kernel cache
        warp_first = float(np.median([warp_peer(warp, "first-call", str(warp_dir))["s"] for _ in range(7)]))
        rows.append(_row("fresh process: first result of a cached kernel", first, warp_first, "Warp, cached"))
    report("calls", rows, {"llvmlite_loaded_on_cache_hit": any(r["llvmlite"] for r in fresh)})


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
