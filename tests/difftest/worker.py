"""The child side of the campaign: builds and runs generated kernels, one target batch at a time.

A driver that segfaults or aborts takes only this process down; the parent (``runner.py``)
records a crash for the case in flight and starts another worker. Each request is a batch of
seeds for one target: the worker builds all their kernels in one ``kp.build`` (device codegen
costs a child process per build), falls back to building each alone when that fails (to say
whose fault it was), then runs the cases one by one and sends one result per seed.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import traceback
import warnings
from typing import Any

import numpy as np

import kernpack as kp
from kernpack.driver.lang.interpret import TRANSCENDENTALS
from tests.difftest.gen import Case, generate, load_kernel

#: Target name -> (kp.build target, build options).
TARGETS: dict[str, tuple[str, dict[str, Any]]] = {
    "cpu-O0": ("cpu", {"opt_level": 0, "threads": 2, "cache": False}),
    "cpu-O3": ("cpu", {"opt_level": 3, "threads": 2, "cache": False}),
    "opencl": ("opencl", {}),
    "vulkan": ("vulkan", {}),
    "cuda": ("cuda", {}),
    # The same with every index checked: generated indices are in range, so the results must
    # not change and no check may fire.
    "cpu-check": ("cpu", {"opt_level": 3, "threads": 2, "cache": False, "boundscheck": True}),
    "opencl-check": ("opencl", {"boundscheck": True}),
    "vulkan-check": ("vulkan", {"boundscheck": True}),
    "cuda-check": ("cuda", {"boundscheck": True}),
}
PERTURB = 4
_TRANSCENDENTAL = re.compile(rf"\b({'|'.join(TRANSCENDENTALS)})\.f(32|64)\(")
_CRASH = ("LLVM crashed", "LLVM could not generate", "ptxas rejected")
# The refusals docs/kernel-language.md lists; any other CompileError of a valid kernel counts
# against the target ("exception"), so a new refusal has to be documented to pass.
_REFUSAL = re.compile(
    r"grid extents must be computable from the arguments"  # device grids (any device)
    r"|kp\.atomic_add on a float64 array is not supported on vulkan"
    r"|is written both with kp\.atomic_add .* and with a plain store"  # 8/16-bit, opencl and cuda
)


def classify(exc: BaseException, phase: str) -> dict[str, Any]:
    """The outcome class of an exception raised building or running a kernel."""
    message = str(exc)
    if isinstance(exc, kp.DeviceUnavailableError):
        cls = "crash"  # the driver refused the module or died: kernpack's fault or the driver's
    elif isinstance(exc, kp.CompileError) and any(s in message for s in _CRASH):
        cls = "crash"
    elif isinstance(exc, kp.CompileError) and phase == "build" and _REFUSAL.search(message):
        cls = "refused"
    else:
        cls = "exception"
        message = f"{type(exc).__name__}: {message}\n{''.join(traceback.format_exception(exc)[-3:])}"
    return {"class": cls, "message": message, "phase": phase}


def spirv_val(binary: bytes, env: str) -> str | None:
    """spirv-val's complaint about ``binary`` (None when it validates or spirv-val is missing)."""
    from kernpack.runtime.tools import find_tool

    tool = find_tool("spirv-val")
    if tool is None:
        return None
    with tempfile.NamedTemporaryFile(suffix=".spv") as f:
        f.write(binary)
        f.flush()
        result = subprocess.run([tool, "--target-env", env, f.name], capture_output=True, text=True)
    return None if result.returncode == 0 else (result.stderr or result.stdout).strip()


class Runner:
    """The worker's state: a directory for the kernels' source files and the loaded kernels."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="kernpack-difftest-")
        self.cases: dict[int, Case] = {}
        self.kernels: dict[int, Any] = {}

    def load(self, seed: int) -> dict[str, Any] | None:
        """Load the seed's kernel; a result dict if the front end refuses it."""
        if seed in self.kernels:
            return None
        case = self.cases[seed] = generate(seed)
        try:
            self.kernels[seed] = load_kernel(case, self.dir)
        except Exception as exc:  # a generated kernel the front end rejects is a generator (or front-end) bug
            return {"class": "rejected", "message": f"{type(exc).__name__}: {exc}"}
        return None

    # ------------------------------------------------------------------ reference
    def reference(self, seed: int) -> dict[str, Any]:
        kernel, case = self.kernels[seed], self.cases[seed]
        # Every result moved up, every one down, and every other call each way as they run (a
        # product of two moved alike can round back to its unmoved value, and so can cos applied
        # three times in a loop: seed 92001).
        perturbs = [(0, False)]
        if _TRANSCENDENTAL.search(str(kernel.kir)):
            perturbs += [(PERTURB, False), (-PERTURB, False), (PERTURB, True)]
        runs = []
        for p, alternate in perturbs:
            args = case.make_args()
            try:
                kernel.interpret(*args, perturb=p, alternate=alternate)
            except kp.KernelIndexError as exc:
                return {"class": "invalid", "message": f"the generator made an out-of-range index: {exc}"}
            except Exception as exc:
                return {"class": "exception", "message": f"reference interpreter: {type(exc).__name__}: {exc}"}
            runs.append([a for a in args if isinstance(a, np.ndarray)])
        return {"class": "ok", "runs": runs}

    # ------------------------------------------------------------------ targets
    def build(self, target: str, seeds: list[int]) -> Any:
        kind, options = TARGETS[target]
        return kp.build([self.kernels[s] for s in seeds], target=kind, **options)

    def build_batch(self, target: str, seeds: list[int]) -> dict[int, tuple[Any, bool]]:
        """Per seed: its built module (shared when the batch builds) or the build's failure, and
        whether the module holds that kernel alone."""
        try:
            module = self.build(target, seeds)
            return {s: (module, len(seeds) == 1) for s in seeds}
        except Exception as exc:
            if len(seeds) == 1:
                return {seeds[0]: (classify(exc, "build"), True)}
        return {s: (self.build_alone(target, s), True) for s in seeds}

    def build_alone(self, target: str, seed: int) -> Any:
        try:
            return self.build(target, [seed])
        except Exception as exc:
            return classify(exc, "build")

    def validate(self, target: str, seed: int, module: Any) -> str | None:
        kind = TARGETS[target][0]
        name = self.cases[seed].kernel_name
        if kind == "vulkan":
            complaint = spirv_val(module.shader(name), "vulkan1.3")
        elif kind == "opencl":
            binary = bytes(module.binary)
            complaint = spirv_val(binary, "opencl2.2")
            if complaint is not None and "Capability Int64Atomics is not allowed" in complaint:
                # spirv-val's OpenCL environment admits core capabilities only; 64-bit atomics
                # are cl_khr_int64_base_atomics, which the runtime has (a device without it
                # refuses the program: an error, not a wrong result). The rest of the module
                # is held to the SPIR-V 1.2 rules.
                complaint = spirv_val(binary, "spv1.2")
        else:
            return None
        return None if complaint is None else f"spirv-val: {complaint}"

    def run(self, target: str, seed: int, module: Any, alone: bool) -> dict[str, Any]:
        """One case on a built module: its arrays after the call, or what went wrong."""
        case, kind = self.cases[seed], TARGETS[target][0]
        complaint = self.validate(target, seed, module)
        if complaint is not None:
            if not alone:
                return self.retry_alone(target, seed)
            return {"class": "crash", "message": complaint, "phase": "validate"}
        if kind == "cuda":
            from kernpack.driver.targets.cuda import find_ptxas

            if find_ptxas() is None:
                return {"class": "unavailable", "message": "ptxas is not installed"}
            return {"class": "built"}  # ptxas accepted the PTX at build; no GPU here to run it
        reason = module.unavailable_reason() if kind != "cpu" else None
        if reason is not None:
            return {"class": "unavailable", "message": reason}
        args = case.make_args()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                module[case.kernel_name](*args)
        except Exception as exc:
            if not alone and isinstance(exc, kp.DeviceUnavailableError):
                return self.retry_alone(target, seed)  # the driver refused the batch: whose kernel was it?
            return classify(exc, "run")
        return {"class": "ok", "arrays": [a for a in args if isinstance(a, np.ndarray)]}

    def retry_alone(self, target: str, seed: int) -> dict[str, Any]:
        module = self.build_alone(target, seed)
        return module if isinstance(module, dict) else self.run(target, seed, module, alone=True)


def serve(conn: Any) -> None:
    """Answer requests ``(target, seeds)`` until the parent closes the pipe.

    For each request it sends ``("built", None)`` once the batch has built, then
    ``("result", seed, result)`` per seed, then ``("done", None)``.
    """
    warnings.simplefilter("ignore")  # numpy overflow warnings from literal folding and the interpreter
    runner = Runner()
    while True:
        try:
            target, seeds = conn.recv()
        except EOFError:
            return
        results: dict[int, dict[str, Any]] = {}
        for seed in seeds:
            failed = runner.load(seed)
            if failed is not None:
                results[seed] = failed
        ok = [s for s in seeds if s not in results]
        modules = runner.build_batch(target, ok) if ok and target != "ref" else {}
        conn.send(("built", None))
        for seed in seeds:
            if seed in results:
                result = results[seed]
            elif target == "ref":
                result = runner.reference(seed)
            else:
                module, alone = modules[seed]
                result = module if isinstance(module, dict) else runner.run(target, seed, module, alone)
            conn.send(("result", seed, result))
        conn.send(("done", None))
