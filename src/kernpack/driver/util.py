"""Small helpers shared by the compile side."""

from __future__ import annotations

import contextlib
import os
import tempfile

__all__ = ["UMASK", "atomic_write"]

# mkstemp creates files readable by the owner only; finished outputs get the usual mode.
UMASK = os.umask(0)
os.umask(UMASK)


def atomic_write(path: str, data: bytes | str) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one.

    The bytes go to a temporary file in the same directory, which replaces ``path`` only once
    it is complete; on any failure the temporary file is removed and ``path`` is untouched.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".kernpack-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.chmod(tmp, 0o666 & ~UMASK)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
