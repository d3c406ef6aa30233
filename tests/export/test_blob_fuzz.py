"""The blob parser and the payload decoders on hostile input: only FormatError, never a crash.

A bounded hypothesis run inside the normal suite. For a long campaign, raise the number of
examples per test: ``KERNPACK_FUZZ_EXAMPLES=100000 python -m pytest tests/export/test_blob_fuzz.py``.
Damaged library files (not ELF, truncated, another machine) are in test_hostile_files.py.
"""

from __future__ import annotations

import contextlib
import os
import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kernpack as kp
from kernpack.runtime.blob import MAGIC, BlobEntry, BlobIndex, encode
from kernpack.runtime.device import KernelEntry, encode_payload
from kernpack.runtime.library import _function_table


def examples(default: int) -> int:
    """How many inputs a fuzz test tries: ``default``, or KERNPACK_FUZZ_EXAMPLES for long runs."""
    return int(os.environ.get("KERNPACK_FUZZ_EXAMPLES") or default)


VALID = encode(
    [
        BlobEntry("_lib", b"void f(float x[:])\n", 2),
        BlobEntry("pipeline", b"KPPIPE\x00\x01{}", 3),
        BlobEntry("test_blob", b"x=1", 3),
    ],
    [0, 2, 3, 3],
    [1, 2, 2],
)


def parse_everything(data: bytes) -> None:
    """Parse and touch every payload; anything but FormatError fails the test."""
    try:
        index = BlobIndex(data, source="fuzz")
        for i in range(len(index)):
            index.imports_of(i)
            index.payload(i)
    except kp.FormatError:
        pass


def test_valid_blob_parses():
    index = BlobIndex(VALID)
    assert [e.kind for e in index.entries] == ["_lib", "pipeline", "test_blob"]
    assert index.imports_of(0) == (1, 2) and index.imports_of(1) == (2,)


@settings(max_examples=examples(400), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_bit_flips_and_truncation_give_only_format_errors(data):
    blob = bytearray(VALID)
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(blob) - 1))
        blob[position] ^= 1 << data.draw(st.integers(0, 7))
    cut = data.draw(st.integers(0, len(blob)))
    parse_everything(bytes(blob[:cut]))
    parse_everything(bytes(blob))


@settings(max_examples=examples(300), deadline=None)
@given(
    fields=st.tuples(
        st.integers(0, 2**64 - 1),  # blob size
        st.integers(0, 2**32 - 1),  # modules
        st.integers(0, 2**32 - 1),  # edges
        st.integers(0, 2**32 - 1),  # index end
    ),
    fix_crc=st.booleans(),
)
def test_huge_and_inconsistent_header_fields(fields, fix_crc):
    blob = bytearray(VALID)
    struct.pack_into("<QIII", blob, 16, *fields)
    if fix_crc:  # get past the checksum, so the structural checks themselves are exercised
        end = min(fields[3], len(blob))
        struct.pack_into("<I", blob, 12, zlib.crc32(bytes(blob[16:end])))
    parse_everything(bytes(blob))


def _rechecksum(blob: bytearray) -> bytes:
    (index_end,) = struct.unpack_from("<I", blob, 32)
    struct.pack_into("<I", blob, 12, zlib.crc32(bytes(blob[16:index_end])))
    return bytes(blob)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: struct.pack_into("<I", b, 64 + 4 * 4 + 4, 9), "imports module 9"),  # child out of range
        (lambda b: struct.pack_into("<I", b, 64 + 4 * 4 + 8, 0), "imports module 0"),  # cycle back to the root
        (lambda b: struct.pack_into("<I", b, 64 + 8, 1), "decrease"),  # row pointers not monotonic
        (lambda b: b.__setitem__(slice(64 + 28 + 32 * 3, 64 + 28 + 32 * 3 + 1), b"\xff"), "not UTF-8|out of range"),
        (lambda b: struct.pack_into("<I", b, 64 + 28 + 28, 99), "unknown bits"),  # mask
        (lambda b: struct.pack_into("<Q", b, 64 + 28 + 8, 65), "misaligned or out of range"),
        (lambda b: struct.pack_into("<Q", b, 64 + 28 + 16, 2**40), "misaligned or out of range"),
    ],
)
def test_each_structural_check_names_the_problem(mutate, message):
    blob = bytearray(VALID)
    mutate(blob)
    with pytest.raises(kp.FormatError, match=message):
        parse_everything_strict(_rechecksum(blob))


def test_a_forged_row_is_refused_when_read_and_spares_the_others():
    blob = bytearray(VALID)
    struct.pack_into("<I", blob, 64 + 16 + 12 + 32 * 2 + 28, 99)  # module 2's mask, checksum forged
    index = BlobIndex(_rechecksum(blob), source="forged")
    assert index.kind(0) == "_lib" and index.imports_of(0) == (1, 2)
    for _ in range(2):  # a row is refused every time, not only the first
        with pytest.raises(kp.FormatError, match=r"forged: module 2 \(test_blob\): property mask 99 has unknown bits"):
            index.entry(2)
    with pytest.raises(IndexError, match="no module 3"):
        index.entry(3)


def parse_everything_strict(data: bytes) -> None:
    # The index checks each module's rows the first time they are read: read them all.
    index = BlobIndex(data, source="fuzz")
    for i in range(len(index)):
        index.imports_of(i)
        index.payload(i)


def test_wrong_payload_checksum_and_unknown_version():
    blob = bytearray(VALID)
    blob[-1] ^= 0xFF
    index = BlobIndex(bytes(blob))
    with pytest.raises(kp.FormatError, match=r"module 2 \(test_blob\): payload checksum mismatch"):
        index.payload(2)
    blob = bytearray(VALID)
    struct.pack_into("<I", blob, 8, 2)
    with pytest.raises(kp.FormatError, match="version 2 is not supported"):
        BlobIndex(bytes(blob))
    assert bytes(VALID[:8]) == MAGIC


# ------------------------------------------------------------- behind the payload checksum
# A payload that passes its CRC reaches its kind's decoder: those must refuse garbage too.
SPIRV = (0x07230203).to_bytes(4, "little") + bytes(range(236))
KERNEL = KernelEntry("k", "void k(const float x[:], float out[:, :], int64_t n)", ["out.shape[0]", "(n + 1) // 2"])
PAYLOADS = {
    "opencl": encode_payload("spirv", [KERNEL], SPIRV * 4, {"extra": b"\x01" * 40}),
    # (kp.vulkan_module checks a shader's entry points, workgroup and bindings: stand-in words have none)
    "vulkan": encode_payload(
        "spirv-shaders",
        [
            KernelEntry(
                KERNEL.name, KERNEL.signature, KERNEL.grid, {"offset": 0, "size": len(SPIRV), "workgroup": [8, 8, 1]}
            )
        ],
        SPIRV,
    ),
    "cuda": encode_payload("ptx", [KERNEL], b".version 8.0\n.target sm_80\n", {"cubin": b"\x7fELF" + bytes(60)}),
    "pipeline": kp.pipeline_module([("k", ["x", "out", 3]), ("k", ["out", "x", 4])]).save_to_bytes(),
}


def test_the_unmutated_payloads_decode():
    for kind, payload in PAYLOADS.items():
        assert kp.load_from_bytes(kind, payload).function_names()


@pytest.mark.parametrize("kind", sorted(PAYLOADS))
@settings(max_examples=examples(150), deadline=None)
@given(data=st.data())
def test_payload_decoders_give_only_format_errors(kind, data):
    payload = bytearray(PAYLOADS[kind])
    for _ in range(data.draw(st.integers(1, 6))):
        position = data.draw(st.integers(0, len(payload) - 1))
        payload[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(payload)))
    for candidate in (bytes(payload), bytes(payload[:cut])):
        with contextlib.suppress(kp.FormatError):
            kp.load_from_bytes(kind, candidate)


@settings(max_examples=examples(300), deadline=None)
@given(text=st.text(max_size=200) | st.binary(max_size=200))
def test_host_function_table_gives_only_format_errors(text):
    raw = text.encode(errors="surrogatepass") if isinstance(text, str) else text
    table = encode([BlobEntry("_lib", raw, 2)], [0, 0], [])
    with contextlib.suppress(kp.FormatError):
        _function_table(BlobIndex(table), 0)
