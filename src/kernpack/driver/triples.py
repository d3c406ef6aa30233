"""Target triples: the architectures a build's machine code is for, read without LLVM.

A cross build (``kp.build(..., triple="aarch64-linux-gnu")``) makes machine code that this
machine cannot run and that its architecture's C compiler links (``cross_compiler``).
"""

from __future__ import annotations

import os
import shutil

from ..errors import ExportError
from .elfobj import MACHINES

__all__ = ["cross_compiler", "normalize_triple"]


def normalize_triple(triple: str | None) -> str | None:
    """A target triple as LLVM spells it; None for this machine (``triple`` None or its architecture).

    ``"aarch64-linux-gnu"`` (as Debian's cross compilers are named) becomes
    ``"aarch64-unknown-linux-gnu"``. Read without LLVM: options are made on a cache hit too.

    Raises
    ------
    ValueError
        If the triple is not a Linux one for an architecture kernpack exports (``MACHINES``).
    """
    if triple is None:
        return None
    parts = triple.strip().split("-")
    if len(parts) == 3 and parts[1] == "linux":  # arch-linux-gnu: no vendor
        parts.insert(1, "unknown")
    if len(parts) != 4 or parts[2] != "linux" or parts[0] not in MACHINES:
        raise ValueError(
            f"cannot build for {triple!r}: kernpack builds libraries for Linux on "
            f"{', '.join(MACHINES)} (for example triple='aarch64-linux-gnu')"
        )
    if parts[0] == os.uname().machine:
        return None  # this machine's architecture: built as for the host
    return "-".join(parts)


def cross_compiler(arch: str) -> str:
    """The C compiler that links code for ``arch`` on this machine (Debian's ``<arch>-linux-gnu-gcc``).

    Raises
    ------
    ExportError
        If none is installed: the message names the package.
    """
    name = f"{arch}-linux-gnu-gcc"
    if shutil.which(name) is None:
        raise ExportError(
            f"the library holds machine code for {arch}, which needs a C compiler for {arch} to link: "
            f"install one (apt-get install gcc-{arch}-linux-gnu) or pass cc= (or set CC)"
        )
    return name
