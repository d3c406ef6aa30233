"""Builds at scale: every core, and a compile cache shared through Redis.

Run: ``.venv/bin/python benchmarks/bench_build.py [--quick]`` (after ``scripts/test``, which
installs redis-server and the redis client). Writes ``results/build.{json,md,png}``.

Each figure is measured in fresh processes, each with a local cache directory of its own (a
"machine"), beside its baseline in the same run:

* **cold, all cores**: 256 kernels (``manykernels.py``) for cpu, opencl, vulkan and cuda, with
  an empty cache, ``jobs`` = the cores available, against the same build with ``jobs=1``.
* **second machine**: the same build with an empty local cache and a warm Redis, against the
  cold build on all cores.
* **first call from Redis**: a fresh process's first call of one kernel (the kernel index, the
  code, and for the CPU its shared object, all from Redis), against the same call from a warm
  local-disk cache; and with signed entries (the default with a key) against unsigned ones.

Shared entries are signed with a key, as ``docs/cache.md`` recommends.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import manykernels
from benchmarks._common import ROOT, report

BUILD = """
import importlib.util, json, sys, time
spec = importlib.util.spec_from_file_location("many", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
import kernpack as kp
kernels = [getattr(module, n) for n in sorted(dir(module)) if isinstance(getattr(module, n), kp.Kernel)]
start = time.perf_counter()
kp.build(kernels, cpu="generic", devices=("opencl", "vulkan", "cuda"), jobs=int(sys.argv[2]))
took = time.perf_counter() - start
print(json.dumps({"seconds": took, "cache": kp.cache_info()["process"]}))
"""

FIRST_CALL = """
import json, sys, time, numpy as np, kernpack as kp

@kp.kernel
def first_call_axpy(a: kp.f32, x: kp.f32[:], out: kp.f32[:]):
    for i in kp.grid(x.shape[0]):
        out[i] = a * x[i] + kp.f32(1.0)

x = np.ones(1000, np.float32); out = np.empty_like(x)
start = time.perf_counter()
first_call_axpy(np.float32(2), x, out)
took = time.perf_counter() - start
assert out[0] == 3.0
print(json.dumps({"seconds": took, "cache": kp.cache_info()["process"]}))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


KEY = "bench key"


def _child(script: Path, args: list[str], cache: Path, url: str | None = None, signed: bool = True) -> dict:
    """Run ``script`` as a fresh process with its own local cache, and the shared tier ``url``.

    ``signed``: the tier's entries are signed with a key (as docs/cache.md recommends), else
    unsigned in a tier the process is told to trust.
    """
    env = {**os.environ, "KERNPACK_CACHE_DIR": str(cache)}
    for variable in (
        "KERNPACK_CACHE_URL",
        "KERNPACK_CACHE_KEY",
        "KERNPACK_CACHE_KEY_FILE",
        "KERNPACK_CACHE_TRUST_UNSIGNED",
    ):
        env.pop(variable, None)
    if url:
        env["KERNPACK_CACHE_URL"] = url
        env.update({"KERNPACK_CACHE_KEY": KEY} if signed else {"KERNPACK_CACHE_TRUST_UNSIGNED": "1"})
    run = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, env=env, cwd=ROOT)
    if run.returncode != 0:
        raise SystemExit(run.stderr[-3000:])
    return json.loads(run.stdout.strip().splitlines()[-1])


def main() -> None:
    quick = "--quick" in sys.argv
    count, repeat = (64, 1) if quick else (256, 3)
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        raise SystemExit("bench_build needs redis-server (apt-get install redis-server; scripts/test installs it)")
    cores = len(os.sched_getaffinity(0))
    rows = []
    with tempfile.TemporaryDirectory(prefix="kernpack-bench-build-") as tmp_name:
        tmp = Path(tmp_name)
        kernels = manykernels.write(tmp / "many.py", count)
        build, first_call = tmp / "build_many.py", tmp / "first_call.py"  # files: kernels need their source
        build.write_text(BUILD)
        first_call.write_text(FIRST_CALL)
        port = _free_port()
        server = subprocess.Popen(
            [redis_server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(tmp)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        url = f"redis://127.0.0.1:{port}/0"
        time.sleep(0.5)
        try:
            serial, parallel, second = [], [], []
            for n in range(repeat):  # the three builds take turns, so that a busy spell hits them alike
                serial.append(_child(build, [str(kernels), "1"], tmp / f"serial{n}")["seconds"])
                cold = _child(build, [str(kernels), str(cores)], tmp / f"cold{n}", url)
                parallel.append(cold["seconds"])
                warm = _child(build, [str(kernels), str(cores)], tmp / f"second{n}", url)
                assert warm["cache"]["remote_hits"] >= count + 3, warm  # every unit (the misses: kernel-index lookups)
                second.append(warm["seconds"])
                subprocess.run(["redis-cli", "-p", str(port), "flushall"], capture_output=True)
            what = f"{count} kernels x 4 targets"
            rows.append(_row(f"{what}, cold, jobs={cores} ({cores} cores)", parallel, serial, "jobs=1"))
            rows.append(_row(f"{what}, 2nd machine, warm Redis", second, parallel, f"cold, jobs={cores}"))
            # One kernel's first call in a fresh process: from the local disk, from Redis.
            _child(first_call, [], tmp / "first-local", url)  # fills the local cache and Redis
            local = [_child(first_call, [], tmp / "first-local")["seconds"] for _ in range(5)]
            unsigned_url = url[: -len("/0")] + "/1"  # another database: entries stored unsigned
            _child(first_call, [], tmp / "first-unsigned", unsigned_url, signed=False)
            signed, unsigned = [], []
            for n in range(7):  # taking turns
                for samples, tier, sign in ((signed, url, True), (unsigned, unsigned_url, False)):
                    result = _child(first_call, [], tmp / f"first-{sign}-{n}", tier, signed=sign)
                    assert result["cache"]["misses"] == 0 and result["cache"]["remote_hits"] > 0, result
                    samples.append(result["seconds"])
            rows.append(_row("first call of a kernel, fresh process, warm Redis", signed, local, "local-disk hit"))
            rows.append(_row("the same, entries signed (HMAC-SHA256)", signed, unsigned, "unsigned, trusted tier"))
        finally:
            server.terminate()
            server.wait()
    report("build", rows, {"kernels": count, "cores": cores, "repeat": repeat})


def _row(what: str, kernpack: list[float], baseline: list[float], baseline_name: str) -> dict:
    return {
        "what": what,
        "kernpack_s": statistics.median(kernpack),
        "baseline_s": statistics.median(baseline),
        "baseline_name": baseline_name,
        "samples": {"kernpack": kernpack, "baseline": baseline},
    }


if __name__ == "__main__":
    main()
