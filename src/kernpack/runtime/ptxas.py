"""NVIDIA's PTX assembler: finding ptxas, and a cubin from PTX (generated, or brought by a user).

In the runtime because ``kp.cuda_module`` assembles the PTX a user brings (a subprocess, no
LLVM): a PTX that ptxas rejects is a :class:`~kernpack.CompileError` when the module is made,
not when a GPU first loads it.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import tempfile

from ..errors import CompileError
from .tools import nvidia_dirs, optional_tool

__all__ = ["assemble_cubin", "find_ptxas", "nvidia_dirs", "ptx_target"]


def find_ptxas() -> str | None:
    """Ptxas as :func:`.tools.resolve` finds it (KERNPACK_PTXAS, the nvidia-cuda-nvcc wheel's, PATH, a toolkit's).

    None where there is none, or it is too old (then, once, a ToolWarning says so).
    """
    return optional_tool("ptxas")


def ptx_target(ptx: str) -> str | None:
    """The architecture a PTX module names (``.target sm_80`` gives ``"sm_80"``), or None."""
    found = re.search(r"^\s*\.target\s+(sm_\w+)", ptx, re.M)
    return found[1] if found else None


def assemble_cubin(ptx: str, arch: str, label: str) -> bytes | None:
    """The cubin of ``ptx`` for ``arch`` from ptxas, or None when ptxas is not installed.

    Raises
    ------
    CompileError
        If ptxas rejects the PTX; the message gives ptxas's exit code, its output and a
        command that reproduces it.
    """
    ptxas = find_ptxas()
    if ptxas is None:
        return None
    with tempfile.TemporaryDirectory(prefix="kernpack-ptxas-") as tmp:
        stem = re.sub(r"[^\w.+-]", "_", label)[:80] or "module"
        source, target = os.path.join(tmp, f"{stem}.ptx"), os.path.join(tmp, f"{stem}.cubin")
        with open(source, "w") as f:
            f.write(ptx)
        command = [ptxas, f"-arch={arch}", "-O3", source, "-o", target]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise CompileError(
                f"ptxas rejected the PTX of {label} (exit {result.returncode}):\n{result.stderr.strip()}\n"
                f"repro: {shlex.join(command)} (the PTX is the module's inspect_source())"
            )
        with open(target, "rb") as f:
            return f.read()
