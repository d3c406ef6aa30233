"""Check that a file is a shared library this process can map, before ``dlopen`` sees it.

``dlopen`` trusts the file: it maps every loadable segment as the program headers describe it,
even past the end of a truncated file, and the first touch of such a page kills the process
with SIGBUS (while relocating, or when the blob is read). It also answers a file built for
another machine with a terse message. So ``load_module`` reads the ELF header and the program
headers first (one ``open`` and one ``read`` of the file's first page, tens of microseconds) and
refuses, with the path and the reason, anything that is:

* not an ELF file, or an ELF file of another class, byte order or machine than this Python;
* not a shared object (an executable or a relocatable ``.o``);
* shorter than its headers, program headers, loadable segments or section table say.

This is a check against damaged and mismatched files, not a sandbox: loading a library runs its
constructors, as ``dlopen`` always does. ``kernpack inspect`` reads a library without running it.
"""

from __future__ import annotations

import os
import struct
import sys

from ..errors import LoadError

__all__ = ["check_shared_object"]

_MACHINES = {3: "x86", 8: "mips", 20: "ppc", 21: "ppc64", 22: "s390", 40: "arm", 62: "x86_64", 183: "aarch64"}
_MACHINES |= {243: "riscv", 258: "loongarch"}
_ET_NAMES = {0: "an ELF file of no type", 1: "a relocatable object (.o)", 2: "an executable", 4: "a core dump"}
_ET_DYN, _PT_LOAD = 3, 1
_READ = 4096  # the ELF header and the program headers sit in the first page of any linked file


# os.uname().machine -> e_machine. Asking the kernel costs nothing; reading our own executable's
# header (/proc/self/exe) cost ~100 us on the first load of every process.
_UNAME_MACHINES = {"x86_64": 62, "amd64": 62, "aarch64": 183, "arm64": 183, "ppc64le": 21, "ppc64": 21}
_UNAME_MACHINES |= {"s390x": 22, "riscv64": 243, "loongarch64": 258}


def _host() -> tuple[int, int, int | None]:
    """(class, byte order, machine) of this interpreter; machine None where it is not known."""
    bits = 2 if sys.maxsize > 2**32 else 1
    machine = _UNAME_MACHINES.get(os.uname().machine) if bits == 2 else None
    return bits, 1 if sys.byteorder == "little" else 2, machine


def _machine(code: int | None) -> str:
    return f"{_MACHINES.get(code, 'an unknown machine')} (e_machine {code})"


def check_shared_object(path: str) -> None:
    """Raise :class:`LoadError` unless ``path`` is a complete shared library for this machine.

    Parameters
    ----------
    path : str
        The file to check.

    Raises
    ------
    LoadError
        Naming ``path`` and what is wrong: missing, a directory, unreadable, not ELF, another
        machine, not a shared object, or truncated.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            reason = _problem(fd, os.pread(fd, _READ, 0), size)
        finally:
            os.close(fd)
    except FileNotFoundError:
        raise LoadError(f"cannot load {path!r}: no such file") from None
    except IsADirectoryError:
        raise LoadError(f"cannot load {path!r}: it is a directory, not a file") from None
    except PermissionError:
        raise LoadError(f"cannot load {path!r}: permission denied (this user may not read the file)") from None
    except OSError as exc:
        raise LoadError(f"cannot load {path!r}: {exc.strerror or exc}") from None
    if reason:
        raise LoadError(f"cannot load {path!r}: {reason}")


def _layout() -> tuple[struct.Struct, struct.Struct, tuple[int, int, int]]:
    """The ELF header and program header layouts of this machine's class and byte order.

    The third item says where (type, offset, filesz) sit in a program header.
    """
    wide, order = _HOST[0] == 2, "<" if _HOST[1] == 1 else ">"
    if wide:
        return struct.Struct(order + "16sHHIQQQIHHHHHH"), struct.Struct(order + "IIQQQQQQ"), (0, 2, 5)
    return struct.Struct(order + "16sHHIIIIIHHHHHH"), struct.Struct(order + "IIIIIIII"), (0, 1, 4)


# Computed once at import (a few microseconds), not on a process's first load.
_HOST = _host()
_HEADER, _PHDR, _PHDR_FIELDS = _layout()


def _problem(fd: int, head: bytes, size: int) -> str:
    """What is wrong with the file whose first page is ``head``, or "" if nothing is."""
    if size == 0:
        return "the file is empty"
    if len(head) < 16 or head[:4] != b"\x7fELF":
        return f"not an ELF shared library (it starts with {head[:8]!r}, {size} bytes)"
    host_class, host_order, host_machine = _HOST
    if head[4] != host_class:
        bits = {1: "32", 2: "64"}.get(head[4], "unknown")
        return f"a {bits}-bit ELF file; this Python is {64 if sys.maxsize > 2**32 else 32}-bit"
    if head[5] != host_order:
        return "an ELF file of the other byte order than this machine"
    header, phdr, (at_type, at_offset, at_filesz) = _HEADER, _PHDR, _PHDR_FIELDS
    if len(head) < header.size:
        return f"truncated: {size} bytes is shorter than an ELF header"
    _, e_type, machine, _, _, phoff, shoff, _, _, phentsize, phnum, shentsize, shnum, _ = header.unpack_from(head)
    if host_machine is not None and machine != host_machine:
        return f"built for {_machine(machine)}; this machine is {_machine(host_machine)}"
    if e_type != _ET_DYN:
        return f"{_ET_NAMES.get(e_type, f'an ELF file of type {e_type}')}, not a shared library"
    if phentsize < phdr.size or phnum == 0:
        return "corrupt: its program headers are missing"
    table_end = phoff + phnum * phentsize
    if table_end > size:
        return f"truncated: its program headers end at byte {table_end}, the file has {size}"
    table = head[phoff:table_end] if table_end <= len(head) else os.pread(fd, table_end - phoff, phoff)
    for i in range(phnum):
        fields = phdr.unpack_from(table, i * phentsize)
        end = fields[at_offset] + fields[at_filesz]
        if fields[at_type] == _PT_LOAD and end > size:
            return f"truncated: a loadable segment needs bytes up to {end}, the file has {size} (copy it again)"
    if shnum and shoff + shnum * shentsize > size:
        return f"truncated: its section table ends at byte {shoff + shnum * shentsize}, the file has {size}"
    return ""
