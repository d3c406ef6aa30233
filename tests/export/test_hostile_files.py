"""Files that are not the library they claim to be: each a LoadError naming the path and why.

Every case runs in a child process, so a crash (SIGBUS from a truncated mapping, SIGSEGV) is a
failed test here, not a dead test run.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile

import numpy as np
import pytest

import kernpack as kp
from tests.conftest import VADD_IR
from tests.export.conftest import ROOT

# A library whose blob symbols enclose 8 bytes: a section too short for any blob.
SHORT_SECTION_C = r"""
__attribute__((section(".kernpack"), used)) const unsigned char __kernpack_blob[8] = "\x7fKPBLOB";
__attribute__((section(".kernpack"), used)) const unsigned char __kernpack_blob_end[1] = {0};
"""

PROBE = """
import json, os, sys, kernpack as kp
if len(sys.argv) > 2:
    os.seteuid(int(sys.argv[2]))  # root reads every file; an ordinary user does not
try:
    kp.load_module(sys.argv[1])
    print(json.dumps({"loaded": True}))
except kp.KernpackError as exc:
    print(json.dumps({"error": type(exc).__name__, "load_error": isinstance(exc, kp.LoadError), "message": str(exc)}))
"""


def probe(path: str, user: int | None = None) -> dict:
    """Load ``path`` in a fresh interpreter (with effective user ``user`` if given)."""
    argv = [sys.executable, "-c", PROBE, path, *([str(user)] if user is not None else [])]
    result = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, f"the loader died (exit {result.returncode}): {result.stderr[-2000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> bytes:
    """A real exported library with a 1 MiB device payload (so truncation cuts into the blob)."""
    path = tmp_path_factory.mktemp("good") / "good.so"
    root = kp.llvm_module(VADD_IR)
    rng = np.random.default_rng(0)
    root.import_module(
        kp.opencl_module(
            # A SPIR-V header (a module that is not is refused), then noise: never built here.
            struct.pack("<5I", 0x07230203, 0x00010000, 0, 1, 0) + rng.bytes(1 << 20),
            [{"name": "k", "signature": "void k(float *x, int64_t n)", "grid": ["n"]}],
            validate=False,
        )
    )
    root.export_library(path)
    return path.read_bytes()


def cut_in_dynamic(data: bytes) -> bytes:
    """The library cut off inside its dynamic section: dlopen itself dies of SIGBUS on it."""
    from elftools.elf.elffile import ELFFile

    dynamic = next(s for s in ELFFile(io.BytesIO(data)).iter_segments() if s["p_type"] == "PT_DYNAMIC")
    return data[: dynamic["p_offset"] + 8]


def patched(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value) :]


CASES = {
    # name: (make the file's bytes from the good library, a phrase the message must contain)
    "not_elf": (lambda d: b"hello, I am not a library\n", "not an ELF shared library"),
    "empty": (lambda d: b"", "the file is empty"),
    "header_only": (lambda d: d[:40], "shorter than an ELF header"),
    "truncated_half": (lambda d: d[: len(d) // 2], "truncated: a loadable segment"),
    "truncated_in_dynamic": (cut_in_dynamic, "truncated: a loadable segment"),
    "truncated_tail": (lambda d: d[:-100], "truncated: its section table"),
    "other_machine": (lambda d: patched(d, 18, (183).to_bytes(2, "little")), "built for aarch64"),
    "32_bit": (lambda d: patched(d, 4, b"\x01"), "32-bit ELF"),
    "big_endian": (lambda d: patched(d, 5, b"\x02"), "other byte order"),
    "executable": (lambda d: patched(d, 16, (2).to_bytes(2, "little")), "an executable, not a shared library"),
    "object_file": (lambda d: patched(d, 16, (1).to_bytes(2, "little")), "a relocatable object"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_damaged_or_foreign_file_is_a_load_error(tmp_path, good, name):
    make, phrase = CASES[name]
    path = tmp_path / f"{name}.so"
    path.write_bytes(make(good))
    got = probe(str(path))
    assert got.get("load_error"), got
    assert str(path) in got["message"] and phrase in got["message"], got["message"]


def test_truncated_libraries_kill_plain_dlopen_users(tmp_path, good):
    # Why the header check exists: dlopen maps a truncated file as its headers describe it.
    # Cut inside the blob, dlopen succeeds and reading the blob raises SIGBUS; cut inside the
    # dynamic section, dlopen itself dies. Through load_module both are LoadErrors (above).
    read_blob = (
        "import ctypes, sys; lib = ctypes.CDLL(sys.argv[1]);"
        "start = ctypes.addressof(ctypes.c_char.in_dll(lib, '__kernpack_blob'));"
        "end = ctypes.addressof(ctypes.c_char.in_dll(lib, '__kernpack_blob_end'));"
        "print(sum(ctypes.string_at(start, end - start)))"
    )
    for name, data in (("half.so", good[: len(good) // 2]), ("dynamic.so", cut_in_dynamic(good))):
        path = tmp_path / name
        path.write_bytes(data)
        result = subprocess.run([sys.executable, "-c", read_blob, str(path)], capture_output=True, timeout=60)
        assert result.returncode == -signal.SIGBUS, (name, result.returncode)


def test_symbol_with_a_short_section_is_a_format_error(tmp_path):
    source = tmp_path / "short.c"
    source.write_text(SHORT_SECTION_C)
    path = tmp_path / "short.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(path), str(source)], check=True)
    got = probe(str(path))
    assert got["error"] == "FormatError" and got["load_error"]
    assert str(path) in got["message"] and "too short for a blob header" in got["message"]


def test_directory_and_missing_path(tmp_path):
    directory = tmp_path / "looks_like.so"
    directory.mkdir()
    with pytest.raises(kp.LoadError, match=r"looks_like\.so'?: it is a directory"):
        kp.load_module(directory)
    with pytest.raises(kp.LoadError, match=r"missing\.so'?: no such file"):
        kp.load_module(tmp_path / "missing.so")


def test_file_without_read_permission(good):
    # root reads any file, so the load runs as 'nobody' (uid 65534) when this test runs as root.
    directory = tempfile.mkdtemp(prefix="kernpack-perm-")
    try:
        os.chmod(directory, 0o755)
        path = os.path.join(directory, "secret.so")
        with open(path, "wb") as f:
            f.write(good)
        os.chmod(path, 0o200)  # writable by the owner, readable by no one
        user = 65534 if os.geteuid() == 0 else None
        got = probe(path, user=user)
        assert got.get("load_error"), got
        assert path in got["message"] and "permission denied" in got["message"]
    finally:
        shutil.rmtree(directory)
