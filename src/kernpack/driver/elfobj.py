"""Write the blob as an ELF relocatable object, streaming, with no compiler involved.

Packing must cost what writing the bytes costs. A C array literal costs minutes for large
blobs (TVM's old path); an assembler ``.incbin`` reads and rewrites every byte once more
before the linker does; ``objcopy --add-section`` after linking puts the data outside every
loadable segment, so ``dlopen`` does not map it. Writing the ``.o`` directly is one
sequential write of the blob plus a few hundred bytes of ELF structure, and the linker then
places the section in a read-only ``PT_LOAD`` segment like any other.

The object holds:

* the section ``.kernpack`` (``SHF_ALLOC``, read-only, 64-byte aligned) with the blob;
* the global symbols ``__kernpack_blob`` (the blob, with its size) and
  ``__kernpack_blob_end`` (one past its last byte), so a loader knows the section's true size
  without trusting the blob's own header;
* an empty ``.note.GNU-stack``, so the library does not ask for an executable stack.

Blobs over 1 GiB on x86-64 go in a *large* section (``SHF_X86_64_LARGE``, named
``.lrodata.kernpack``), which GNU ld places beyond the small-code-model sections, so that no
32-bit relocation in the host code has to reach across the blob.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import BinaryIO

from ..runtime.blob import ALIGN, BLOB_END_SYMBOL, BLOB_SYMBOL, SECTION

__all__ = ["MACHINES", "undefined_symbols", "write_blob_object"]

#: ELF e_machine values for the architectures (as ``cc -dumpmachine`` names them) we write.
MACHINES = {"x86_64": 62, "aarch64": 183}
_LARGE_THRESHOLD = 1 << 30
_SHF_ALLOC = 0x2
_SHF_X86_64_LARGE = 0x10000000

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_SYM = struct.Struct("<IBBHQQ")


def write_blob_object(out: BinaryIO, size: int, chunks: Iterable[bytes | memoryview], arch: str) -> None:
    """Write an ELF64 little-endian relocatable object holding a blob of ``size`` bytes.

    Parameters
    ----------
    out : binary file
        Where to write; seekable.
    size : int
        The blob's size in bytes; ``chunks`` must yield exactly that many.
    chunks : iterable of bytes-like
        The blob's bytes, in order.
    arch : str
        Target architecture, a key of :data:`MACHINES`.
    """
    machine = MACHINES[arch]
    large = arch == "x86_64" and size > _LARGE_THRESHOLD
    section_name = ".lrodata" + SECTION if large else SECTION
    flags = _SHF_ALLOC | (_SHF_X86_64_LARGE if large else 0)

    shstrtab = b"\0" + section_name.encode() + b"\0.note.GNU-stack\0.symtab\0.strtab\0.shstrtab\0"
    strtab = b"\0" + BLOB_SYMBOL.encode() + b"\0" + BLOB_END_SYMBOL.encode() + b"\0"

    def name(table: bytes, text: str) -> int:
        return table.index(b"\0" + text.encode() + b"\0") + 1

    # Symbols: null, section symbol (local), then the two globals.
    symtab = b"".join(
        [
            _SYM.pack(0, 0, 0, 0, 0, 0),
            _SYM.pack(0, 0x03, 0, 1, 0, 0),  # STB_LOCAL | STT_SECTION, section 1
            _SYM.pack(name(strtab, BLOB_SYMBOL), 0x11, 0, 1, 0, size),  # STB_GLOBAL | STT_OBJECT
            _SYM.pack(name(strtab, BLOB_END_SYMBOL), 0x11, 0, 1, size, 0),
        ]
    )

    data_offset = ALIGN  # after the 64-byte ELF header
    out.write(bytes(data_offset))
    written = 0
    for chunk in chunks:
        out.write(chunk)
        written += len(chunk)
    if written != size:
        raise ValueError(f"blob writer produced {written} bytes, expected {size}")
    position = data_offset + size
    tables = []
    for blob in (symtab, strtab, shstrtab):
        pad = -position % 8
        out.write(bytes(pad))
        position += pad
        tables.append(position)
        out.write(blob)
        position += len(blob)
    pad = -position % 8
    out.write(bytes(pad))
    shoff = position + pad

    sections = [
        _SHDR.pack(0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
        _SHDR.pack(name(shstrtab, section_name), 1, flags, 0, data_offset, size, 0, 0, ALIGN, 0),
        _SHDR.pack(name(shstrtab, ".note.GNU-stack"), 1, 0, 0, data_offset + size, 0, 0, 0, 1, 0),
        # .symtab: link = .strtab (4), info = index of the first global symbol (2)
        _SHDR.pack(name(shstrtab, ".symtab"), 2, 0, 0, tables[0], len(symtab), 4, 2, 8, _SYM.size),
        _SHDR.pack(name(shstrtab, ".strtab"), 3, 0, 0, tables[1], len(strtab), 0, 0, 1, 0),
        _SHDR.pack(name(shstrtab, ".shstrtab"), 3, 0, 0, tables[2], len(shstrtab), 0, 0, 1, 0),
    ]
    out.write(b"".join(sections))
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)  # 64-bit, little-endian, version 1, SysV
    header = _EHDR.pack(ident, 1, machine, 1, 0, 0, shoff, 0, _EHDR.size, 0, 0, _SHDR.size, len(sections), 5)
    out.seek(0)
    out.write(header)


def undefined_symbols(data: bytes) -> list[str]:
    """Names an ELF64 little-endian relocatable object needs from elsewhere (its undefined globals).

    The JIT checks them before loading machine code: a symbol the process lacks would
    otherwise become a call through address 0.
    """
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return []
    header = _EHDR.unpack_from(data)
    shoff, shentsize, shnum = header[6], header[11], header[12]
    sections = [_SHDR.unpack_from(data, shoff + i * shentsize) for i in range(shnum)]
    names = []
    for sh in sections:
        if sh[1] != 2:  # SHT_SYMTAB
            continue
        strtab = sections[sh[6]]
        strings = data[strtab[4] : strtab[4] + strtab[5]]
        for offset in range(sh[4] + _SYM.size, sh[4] + sh[5], _SYM.size):
            name_off, info, _, shndx, _, _ = _SYM.unpack_from(data, offset)
            if shndx == 0 and info >> 4 in (1, 2) and name_off:  # undefined, global or weak
                names.append(strings[name_off : strings.index(b"\0", name_off)].decode())
    return names
