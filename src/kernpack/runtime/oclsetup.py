"""Point the OpenCL ICD loader at the runtime installed with ``kernpack[opencl]``, before its first use.

Intel's CPU runtime from PyPI puts ``libintelocl.so`` in the environment's ``lib`` directory
and an ``.icd`` file that names a placeholder path, so the ICD loader (ocl-icd, which
pyopencl bundles) finds no platform. Before the first OpenCL call of the process, and only
when ``OCL_ICD_VENDORS`` is not set (a user's own choice wins), :func:`configure` writes a
vendors directory holding an ``.icd`` for that library and a copy of each of the system's
own (``/etc/OpenCL/vendors``, so GPUs stay visible), and points ``OCL_ICD_VENDORS`` at it.
The loader reads that variable once, when the first OpenCL call initializes it: a process
that called OpenCL before cannot be helped, and :func:`unavailable_hint` says so.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from pathlib import Path

__all__ = ["configure", "runtime_library", "unavailable_hint"]

_LIBRARY = "libintelocl.so"
_configured: str | None = None  # the directory this process pointed the loader at


def runtime_library() -> str | None:
    """The OpenCL runtime library installed in this Python environment, or None."""
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix)):
        path = os.path.join(prefix, "lib", _LIBRARY)
        if os.path.exists(path):
            return path
    return None


def _directories(library: str) -> list[Path]:
    """Where this environment's vendors directory may go: beside the runtime, else the user cache."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    digest = hashlib.sha256(library.encode()).hexdigest()[:16]
    return [
        Path(library).parent.parent / "etc" / "OpenCL" / "kernpack-vendors",
        Path(base) / "kernpack" / "opencl-vendors" / digest,
    ]


def _write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all (processes may do this at once)."""
    if path.exists() and path.read_text() == text:
        return
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".icd-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(temporary, path)


def configure() -> str | None:
    """Point ``OCL_ICD_VENDORS`` at this environment's OpenCL runtime and the system's ICDs.

    Returns
    -------
    str or None
        The vendors directory, or None where nothing was done: ``OCL_ICD_VENDORS`` is set
        already, no runtime is installed in this environment, or there is nowhere to write.
    """
    global _configured
    library = runtime_library()
    if os.environ.get("OCL_ICD_VENDORS") or library is None:
        return None
    system = Path(os.environ.get("OPENCL_VENDOR_PATH") or "/etc/OpenCL/vendors")
    icds = {"kernpack-intel-cpu.icd": library + "\n"}
    if system.is_dir():
        icds.update((f"system-{icd.name}", icd.read_text()) for icd in sorted(system.glob("*.icd")))
    for directory in _directories(library):
        try:
            directory.mkdir(parents=True, exist_ok=True)
            for name, text in icds.items():
                _write(directory / name, text)
        except OSError:
            continue  # not writable here: the next place
        os.environ["OCL_ICD_VENDORS"] = _configured = str(directory)
        return _configured
    return None


def unavailable_hint() -> str:
    """What a user whose process found no OpenCL platform can do, given what kernpack did."""
    if _configured is not None:
        return (
            f"kernpack pointed the ICD loader at {_configured} (for {runtime_library()}); the loader reads that once, "
            "at the process's first OpenCL call, so if OpenCL was used in this process before, restart it"
        )
    if os.environ.get("OCL_ICD_VENDORS"):
        found = runtime_library()
        also = f"; unset it to use the runtime in this environment ({found})" if found else ""
        return f"OCL_ICD_VENDORS is set ({os.environ['OCL_ICD_VENDORS']}), so kernpack left the ICD loader alone{also}"
    return "no OpenCL runtime is installed in this environment: pip install 'kernpack[opencl]' brings Intel's CPU one"
