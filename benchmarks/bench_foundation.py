"""JIT time and per-call overhead of an llvm module, beside bare llvmlite + cffi.

Run: ``.venv/bin/python benchmarks/bench_foundation.py`` (after ``scripts/test`` or
``scripts/demo`` made the environment). Writes ``results/foundation.{json,md,png}``.

* JIT: ``kp.llvm_module(VADD_IR)`` then the first ``get_function`` (parse, verify, signature
  inference, O3 pipeline, MCJIT) against the same steps done by hand with llvmlite.
* Call: ``vadd(a, b, c, 1)`` with three float32 arrays of length 1, against a cffi function
  pointer called with ``ffi.from_buffer`` on each array (the least a safe caller must do), and
  ``np.add(a, b, out=c)`` for scale.
"""

from __future__ import annotations

import sys
from pathlib import Path

import llvmlite.binding as llvm
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import VADD_IR

import kernpack as kp
from benchmarks._common import fmt_time, median_per_call, median_seconds, report
from kernpack.runtime.calling import ffi


def bare_llvmlite_jit() -> int:
    """What a careful user writes with llvmlite alone: parse, verify, O3, MCJIT, address."""
    module = llvm.parse_assembly(VADD_IR)
    module.verify()
    target = llvm.Target.from_default_triple()
    machine = target.create_target_machine(
        cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(), opt=3
    )
    builder = llvm.create_pass_builder(machine, llvm.create_pipeline_tuning_options(speed_level=3))
    builder.getModulePassManager().run(module, builder)
    engine = llvm.create_mcjit_compiler(module, machine)
    engine.finalize_object()
    bare_llvmlite_jit.keep = engine  # keep the code alive for the call benchmark
    return engine.get_function_address("vadd")


def kernpack_jit() -> object:
    return kp.llvm_module(VADD_IR)["vadd"]


def main() -> None:
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    repeat = 30
    jit_bare = median_seconds(bare_llvmlite_jit, repeat)
    jit_kp = median_seconds(kernpack_jit, repeat)

    fn = kernpack_jit()
    raw = ffi.cast("void(*)(float *, float *, float *, int64_t)", bare_llvmlite_jit())
    a, b, c = (np.ones(1, np.float32) for _ in range(3))
    fb = ffi.from_buffer
    calls, batches = 20_000, 15
    call_kp = median_per_call(lambda: fn(a, b, c, 1), calls, batches)
    call_bare = median_per_call(lambda: raw(fb("float[]", a), fb("float[]", b), fb("float[]", c), 1), calls, batches)
    call_numpy = median_per_call(lambda: np.add(a, b, out=c), calls, batches)
    call_empty = median_per_call(lambda: None, calls, batches)

    rows = [
        {
            "what": "JIT of vadd IR (O3)",
            "kernpack_s": jit_kp,
            "baseline_s": jit_bare,
            "baseline_name": "bare llvmlite",
        },
        {
            "what": "call, 3 float32[1] arrays",
            "kernpack_s": call_kp,
            "baseline_s": call_bare,
            "baseline_name": "bare cffi",
        },
    ]
    extra = {
        "np_add_out_s": call_numpy,
        "empty_lambda_s": call_empty,
        "llvm": ".".join(map(str, llvm.llvm_version_info)),
    }
    report("foundation", rows, extra)
    print(f"for scale: np.add(a, b, out=c) {fmt_time(call_numpy)}, an empty lambda call {fmt_time(call_empty)}")


if __name__ == "__main__":
    main()
