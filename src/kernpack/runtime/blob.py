r"""The blob: how a module tree travels inside a shared library.

``export_library`` packs every module that is not linked as code into one blob, placed in the
read-only section ``.kernpack`` of the ``.so`` between the symbols ``__kernpack_blob`` and
``__kernpack_blob_end``. ``load_module`` finds it with ``dlsym`` (or ``kernpack inspect``, without
running anything, by reading the ELF section), reads only the index, and hands each module's
payload to its kind's loader as a zero-copy view, the first time the module is used.

Layout, version 1. Integers are little-endian; offsets count from the blob's first byte::

    offset  size  field
    0       8     magic            b"\\x7fKPBLOB\\0"
    8       4     version          u32, 1
    12      4     index_crc        CRC-32 of bytes [16, index_end): the rest of the index
    16      8     blob_size        u64, bytes from the magic to the end of the last payload
    24      4     num_modules      u32, N >= 1; module 0 is the root of the tree
    28      4     num_edges        u32, E
    32      4     index_end        u32, end of the index (header, tables, strings)
    36      28    reserved         zero
    64      4(N+1)  row_ptr        u32 each: the import tree in CSR form; the imports of
                                   module i are child[row_ptr[i] : row_ptr[i+1]], in order
    ...     4E      child          u32 each; every child index is greater than its parent's,
                                   so the tree is acyclic by construction
    ...     32N     module table   per module:
                                     u32 kind_offset, u32 kind_size   (into the strings)
                                     u64 payload_offset, u64 payload_size
                                     u32 payload_crc  (CRC-32, checked when decoded)
                                     u32 mask         (the exported module's property mask)
    ...             strings        UTF-8 kind names
    index_end       payloads       each at an offset that is a multiple of 64 (SPIR-V words,
                                   aligned numpy views), zero padding between them

The kind ``_lib`` stands for the host library itself (every DSO-exportable module, linked as
code); its payload is its function table: one C prototype per line, UTF-8, so that a loaded
``.so`` is callable without a header.

Every length and index is checked against ``blob_size`` before it is used: a corrupt blob is a
:class:`FormatError`, never a crash, a hang or a huge allocation. The same inputs give the same
bytes: nothing depends on time, paths or hash order.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from ..errors import FormatError

__all__ = [
    "ALIGN",
    "BLOB_END_SYMBOL",
    "BLOB_SYMBOL",
    "HOST_KIND",
    "MAGIC",
    "SECTION",
    "VERSION",
    "BlobEntry",
    "BlobIndex",
    "encode",
    "encode_chunks",
]

MAGIC = b"\x7fKPBLOB\x00"
VERSION = 1
ALIGN = 64
HOST_KIND = "_lib"
SECTION = ".kernpack"
BLOB_SYMBOL = "__kernpack_blob"
BLOB_END_SYMBOL = "__kernpack_blob_end"

_HEADER = struct.Struct("<8sIIQIII28x")  # 64 bytes
_ENTRY = struct.Struct("<IIQQII")  # 32 bytes
_ROW = struct.Struct("<2I")  # a module's two row pointers: its first import, one past its last
_U32 = struct.Struct("<I")
_U32_MAX = 0xFFFFFFFF
assert _HEADER.size == 64 and _ENTRY.size == 32


@dataclass(frozen=True)
class BlobEntry:
    """One module in a blob: its kind, its serialized bytes and its property mask."""

    kind: str
    payload: bytes | memoryview
    mask: int


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def encode_chunks(
    entries: Sequence[BlobEntry], row_ptr: Sequence[int], children: Sequence[int]
) -> tuple[int, Iterator[bytes | memoryview]]:
    """Lay out a blob; return its size and an iterator over its bytes in order.

    Streaming lets export write a blob of any size into the object file without building it
    in memory first. The caller must consume the iterator once.
    """
    n, e = len(entries), len(children)
    if n < 1 or len(row_ptr) != n + 1 or row_ptr[0] != 0 or row_ptr[-1] != e:
        raise ValueError("malformed import tree for the blob")
    kinds = [entry.kind.encode() for entry in entries]
    # Each kind name once in the strings, however many modules share it: a reader decodes it
    # once (a tree of hundreds of device modules has three kinds).
    kind_offsets: dict[bytes, int] = {}
    for kind in kinds:
        kind_offsets.setdefault(kind, sum(len(k) for k in kind_offsets))
    tables = 4 * (n + 1) + 4 * e + _ENTRY.size * n
    index_end = _HEADER.size + tables + sum(len(k) for k in kind_offsets)
    offsets, position = [], _align(index_end)
    for entry in entries:
        offsets.append(position)
        position = _align(position + len(entry.payload))
    blob_size = offsets[-1] + len(entries[-1].payload)
    if index_end > _U32_MAX or n > _U32_MAX or e > _U32_MAX:
        raise ValueError("blob index too large")

    parts = [struct.pack(f"<{n + 1}I", *row_ptr), struct.pack(f"<{e}I", *children)]
    for entry, kind, offset in zip(entries, kinds, offsets, strict=True):
        crc = zlib.crc32(entry.payload)
        parts.append(_ENTRY.pack(kind_offsets[kind], len(kind), offset, len(entry.payload), crc, int(entry.mask)))
    parts.extend(kind_offsets)
    body = b"".join(parts)
    header = _HEADER.pack(MAGIC, VERSION, 0, blob_size, n, e, index_end)
    crc = zlib.crc32(body, zlib.crc32(header[16:]))
    header = _HEADER.pack(MAGIC, VERSION, crc, blob_size, n, e, index_end)

    def chunks() -> Iterator[bytes | memoryview]:
        yield header
        yield body
        written = index_end
        for entry, offset in zip(entries, offsets, strict=True):
            yield bytes(offset - written)
            yield entry.payload
            written = offset + len(entry.payload)

    return blob_size, chunks()


def encode(entries: Sequence[BlobEntry], row_ptr: Sequence[int], children: Sequence[int]) -> bytes:
    """Return the whole blob as bytes (see the module docstring for the layout)."""
    _, chunks = encode_chunks(entries, row_ptr, children)
    return b"".join(chunks)


class _Entry(NamedTuple):
    kind: str
    offset: int
    size: int
    crc: int
    mask: int


class BlobIndex:
    """The parsed index of a blob: module kinds, masks, the import tree, payload views.

    Opening checks the header and the index checksum, which catches any corruption of the
    tables; each module's row of the module table and of the import tree is then checked the
    first time it is read. A library of hundreds of modules thus opens in constant time, and a
    blob whose rows are inconsistent (which only a forged checksum lets through) is refused with
    a :class:`FormatError` the moment the faulty row is used. Payloads are sliced without
    copying and checked against their CRC-32 when :meth:`payload` asks for them.

    Parameters
    ----------
    data : bytes or memoryview
        The blob, exactly ``blob_size`` bytes or more (trailing bytes are ignored).
    source : str
        Where the blob came from, for error messages.

    Raises
    ------
    FormatError
        If the header is inconsistent (magic, version, sizes), the index checksum does not
        match, or, from the accessors, a module's row is (kind, payload range, mask, imports).
    """

    def __init__(self, data: bytes | memoryview, source: str = "blob") -> None:
        view = memoryview(data).cast("B")
        self.source = source
        if len(view) < _HEADER.size:
            raise self._error(f"{len(view)} bytes is too short for a blob header ({_HEADER.size} bytes)")
        magic, version, crc, blob_size, n, e, index_end = _HEADER.unpack_from(view)
        if magic != MAGIC:
            raise self._error("no kernpack blob here (bad magic)")
        if version != VERSION:
            raise self._error(
                f"blob format version {version} is not supported; this kernpack reads version {VERSION}"
                + ("; upgrade kernpack to load it" if version > VERSION else "")
            )
        if blob_size > len(view):
            raise self._error(f"blob claims {blob_size} bytes but only {len(view)} are present (truncated?)")
        if n < 1:
            raise self._error("blob holds no modules")
        tables_end = _HEADER.size + 4 * (n + 1) + 4 * e + _ENTRY.size * n
        if not tables_end <= index_end <= blob_size:
            raise self._error(f"index of {n} modules and {e} imports does not fit in {blob_size} bytes")
        if zlib.crc32(view[16:index_end]) != crc:
            raise self._error("index checksum mismatch (the blob is corrupt)")
        self.view = view[:blob_size]
        self.version = version
        self.size = blob_size
        self._count, self._edges, self._index_end = n, e, index_end
        self._children_at = _HEADER.size + 4 * (n + 1)
        self._table_at = self._children_at + 4 * e
        self._strings = view[tables_end:index_end]
        if _U32.unpack_from(view, _HEADER.size) != (0,) or _U32.unpack_from(view, _HEADER.size + 4 * n) != (e,):
            raise self._error("import tree row pointers do not run from 0 to the edge count")
        self._entries: dict[int, _Entry] = {}
        self._kinds: dict[tuple[int, int], str] = {}  # a tree of many modules has few kinds

    def __len__(self) -> int:
        return self._count

    def entry(self, index: int) -> _Entry:
        """Module ``index``'s row of the module table, checked: kind, payload range, CRC-32, mask."""
        entry = self._entries.get(index)
        if entry is None:
            self._check_position(index)
            kind_off, kind_size, offset, size, crc, mask = _ENTRY.unpack_from(
                self.view, self._table_at + _ENTRY.size * index
            )
            kind = self._kind(index, kind_off, kind_size)
            if offset % ALIGN or offset < self._index_end or offset + size > self.size:
                raise self._error(f"module {index} ({kind}): payload [{offset}, +{size}) is misaligned or out of range")
            if mask > 0b111:
                raise self._error(f"module {index} ({kind}): property mask {mask} has unknown bits")
            entry = self._entries[index] = _Entry(kind, offset, size, crc, mask)
        return entry

    def _kind(self, index: int, first: int, size: int) -> str:
        kind = self._kinds.get((first, size))
        if kind is None:
            if size == 0 or first + size > len(self._strings):
                raise self._error(f"module {index}: kind name out of range")
            try:
                kind = self._kinds[first, size] = bytes(self._strings[first : first + size]).decode()
            except UnicodeDecodeError:
                raise self._error(f"module {index}: kind name is not UTF-8") from None
        return kind

    def kind(self, index: int) -> str:
        """Module ``index``'s kind name."""
        return self.entry(index).kind

    @property
    def entries(self) -> tuple[_Entry, ...]:
        """Every module's row of the module table, in module order (each checked)."""
        return tuple(map(self.entry, range(self._count)))

    def imports_of(self, index: int) -> tuple[int, ...]:
        """The module indices that module ``index`` imports, in import order (checked)."""
        self._check_position(index)
        first, last = _ROW.unpack_from(self.view, _HEADER.size + 4 * index)
        if not first <= last <= self._edges:
            raise self._error(f"import tree row pointers decrease at module {index}")
        children = struct.unpack_from(f"<{last - first}I", self.view, self._children_at + 4 * first)
        # Every import comes after its importer: the tree cannot hold a cycle.
        if children and not index < min(children) <= max(children) < self._count:
            child = next(c for c in children if not index < c < self._count)
            raise self._error(f"module {index} imports module {child}: not a module after it in the tree")
        return children

    def payload(self, index: int, *, verify: bool = True) -> memoryview:
        """A zero-copy view of module ``index``'s payload, its checksum verified first."""
        entry = self.entry(index)
        view = self.view[entry.offset : entry.offset + entry.size]
        if verify and zlib.crc32(view) != entry.crc:
            raise self._error(f"module {index} ({entry.kind}): payload checksum mismatch (the blob is corrupt)")
        return view

    def _check_position(self, index: int) -> None:
        if not 0 <= index < self._count:
            raise IndexError(f"{self.source}: no module {index} (the blob holds {self._count})")

    def _error(self, message: str) -> FormatError:
        return FormatError(f"{self.source}: {message}")
