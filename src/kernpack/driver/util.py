"""Small helpers shared by the compile side."""

from __future__ import annotations

import contextlib
import os

__all__ = ["HOST_LIBRARIES", "UMASK", "atomic_write", "c_compiler", "write_temp"]

#: What host code links against: libm (the math kernels call) and pthreads (a grid's threads).
HOST_LIBRARIES = ("-lm", "-lpthread")

# mkstemp creates files readable by the owner only; finished outputs get the usual mode.
UMASK = os.umask(0)
os.umask(UMASK)


def c_compiler(cc: str | None = None) -> list[str]:
    """The C compiler's command: ``cc`` if given, else ``$CC``, else ``cc`` on PATH, its version checked.

    Raises
    ------
    ToolError
        If it is missing or older than kernpack supports (:func:`kernpack.runtime.tools.c_compiler`).
    """
    from ..runtime import tools  # here: a cache hit links nothing (tools imports subprocess)

    return tools.c_compiler(cc)


def write_temp(directory: str, data: bytes | str, suffix: str = "") -> str:
    """Write ``data`` to a new hidden temporary file in ``directory``; return its path.

    The file gets the usual mode (not mkstemp's owner-only one). On failure nothing is left.
    """
    import tempfile  # here: importing it costs 4 ms, and a cache hit writes nothing

    fd, tmp = tempfile.mkstemp(prefix=".kernpack-", suffix=suffix, dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.chmod(tmp, 0o666 & ~UMASK)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return tmp


def atomic_write(path: str, data: bytes | str) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one.

    The bytes go to a temporary file in the same directory, which replaces ``path`` only once
    it is complete; on any failure the temporary file is removed and ``path`` is untouched.
    """
    tmp = write_temp(os.path.dirname(os.path.abspath(path)), data)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
