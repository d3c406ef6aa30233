"""Read a kernpack library without loading it: the module tree straight from the ELF file.

``dlopen`` runs a library's constructors; inspecting a file someone sent you must not. This
reads the ``.kernpack`` section with pyelftools (a maintained ELF reader) and parses the blob
and the payload headers that describe functions. Nothing from the file is executed.
"""

from __future__ import annotations

import os
import zlib
from typing import Any

from .errors import FormatError, LoadError
from .runtime import cpufeatures
from .runtime.blob import HOST_KIND, SECTION, BlobIndex
from .runtime.library import LibraryModule
from .runtime.module import ModulePropertyMask, mask_name
from .runtime.registry import lookup_describer

__all__ = ["describe_library"]


# ELF machines by pyelftools' names, as kernpack and ``uname -m`` name them.
_ARCHES = {"EM_X86_64": "x86_64", "EM_AARCH64": "aarch64"}


def _section_bytes(path: str) -> tuple[bytes, str | None, str]:
    """The blob section's bytes, the CPU requirement the library records (None: none), its architecture."""
    try:
        from elftools.common.exceptions import ELFError
        from elftools.elf.elffile import ELFFile
    except ImportError:  # pragma: no cover - a declared dependency of the cli extra
        raise LoadError("kernpack inspect needs pyelftools: pip install pyelftools") from None
    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            arch = _ARCHES.get(elf["e_machine"], str(elf["e_machine"]))
            cpu = elf.get_section_by_name(cpufeatures.SECTION)
            needs = None if cpu is None else cpu.data().split(b"\0", 1)[0].decode(errors="replace")
            for name in (SECTION, ".lrodata" + SECTION):
                section = elf.get_section_by_name(name)
                if section is not None:
                    return section.data(), needs, arch
    except ELFError as exc:
        raise LoadError(f"cannot inspect {path!r}: not an ELF file ({exc})") from None
    except OSError as exc:
        raise LoadError(f"cannot inspect {path!r}: {exc.strerror}") from None
    raise LoadError(f"{path!r} holds no kernpack blob (no {SECTION} section)")


def describe_library(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Describe a kernpack library: format version, and each module of the tree.

    Returns
    -------
    dict
        ``{"path", "blob_version", "blob_bytes", "arch", "cpu", "modules": [...]}``: ``arch`` the
        architecture of its machine code (``x86_64``, ``aarch64``), ``cpu`` what that code needs
        (``{"name", "features", "missing_here"}``; None if the library does not say), and each
        module has its
        index, kind, mask (number and names), payload size and CRC-32, the indices it imports,
        and its functions (name and signature) where the payload says.
    """
    path = os.fspath(path)
    data, needs, arch = _section_bytes(path)
    index = BlobIndex(data, source=path)
    modules = []
    for i, entry in enumerate(index.entries):
        payload = index.payload(i, verify=False)
        modules.append(
            {
                "index": i,
                "kind": LibraryModule.kind if entry.kind == HOST_KIND else entry.kind,  # what loading gives
                "mask": entry.mask,
                "mask_names": mask_name(ModulePropertyMask(entry.mask)),
                "payload_bytes": entry.size,
                "crc32": f"{entry.crc:08x}",
                "crc_ok": zlib.crc32(payload) == entry.crc,
                "imports": list(index.imports_of(i)),
                "functions": _functions(entry.kind, payload),
            }
        )
    cpu = None
    if needs is not None:
        name, features = cpufeatures.required_features(needs)
        here = arch == os.uname().machine  # another architecture's features are not this CPU's to lack
        cpu = {"name": name, "features": features, "missing_here": cpufeatures.missing_features(needs) if here else []}
    return {
        "path": os.path.abspath(path),
        "blob_version": index.version,
        "blob_bytes": index.size,
        "arch": arch,
        "cpu": cpu,
        "modules": modules,
    }


def _functions(kind: str, payload: memoryview) -> list[dict[str, Any]]:
    """What the kind's describer says the payload holds (it builds and runs nothing)."""
    describe = lookup_describer(kind)
    if describe is None:
        return []  # a kind that says nothing of its functions (or whose code is not installed)
    try:
        return describe(payload)
    except FormatError:
        return [{"error": "function table unreadable"}]
