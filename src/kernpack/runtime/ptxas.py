"""NVIDIA's PTX assembler: finding ptxas, and a cubin from PTX (generated, or brought by a user).

In the runtime because ``kp.cuda_module`` assembles the PTX a user brings (a subprocess, no
LLVM): a PTX that ptxas rejects is a :class:`~kernpack.CompileError` when the module is made,
not when a GPU first loads it.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

from ..errors import CompileError

__all__ = ["assemble_cubin", "find_ptxas", "nvidia_dirs", "ptx_target"]


def nvidia_dirs() -> list[str]:
    """Where NVIDIA's tools may be: the ``nvidia-*`` wheels' directories, then a CUDA toolkit's."""
    roots = [os.path.join(p, "nvidia") for p in sys.path if os.path.isdir(os.path.join(p, "nvidia"))]
    return [d for root in roots for d in sorted(glob.glob(os.path.join(root, "cu*")))] + ["/usr/local/cuda"]


def find_ptxas() -> str | None:
    """Find ptxas: the ``nvidia-cuda-nvcc`` wheel's, a CUDA toolkit's, or one on PATH."""
    for base in nvidia_dirs():
        path = os.path.join(base, "bin", "ptxas")
        if os.access(path, os.X_OK):
            return path
    return shutil.which("ptxas")


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
