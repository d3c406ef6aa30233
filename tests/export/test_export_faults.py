"""Exports that fail halfway leave no partial output, no workspace, and an existing output as it was.

Faults are injected at every stage of ``export_library`` (writing a DSO module, writing the
blob object, linking, writing the header, putting the files in place), each as a full disk
(OSError), a linker failure and an interrupt (KeyboardInterrupt); then once for real: SIGINT
sent to a process while its compiler runs.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import tempfile
import time

import pytest

import kernpack as kp
import kernpack.driver.link as link
from kernpack.driver.llvm import LLVMModule
from tests.conftest import VADD_IR
from tests.export.conftest import ROOT
from tests.export.kinds import BlobKind

SCALE_C = "void scale(float *x, float a, long n) { for (long i = 0; i < n; ++i) x[i] *= a; }"
PREVIOUS = {"lib.so": b"previous library", "lib.h": b"/* previous header */"}


def tree() -> kp.Module:
    root = kp.llvm_module(VADD_IR)
    root.import_module(kp.c_source_module(SCALE_C, ["scale"]))
    root.import_module(BlobKind("value", 7))
    return root


def fail_with(fault: str):
    def fail(*args, **kwargs):
        if fault == "disk full":
            raise OSError(errno.ENOSPC, "No space left on device")
        if fault == "interrupt":
            raise KeyboardInterrupt
        raise kp.LinkError("injected linker failure", command=("cc",), returncode=1, stderr="injected")

    return fail


def _replace_fails_on(call: int):
    """os.replace that fails on its ``call``-th use (1: the library, 2: the header)."""
    real, count = os.replace, []

    def replace(src, dst, *args, **kwargs):
        count.append(dst)
        if len(count) == call:
            raise OSError(errno.EIO, "Input/output error")
        return real(src, dst, *args, **kwargs)

    return replace


STAGES = {
    "write DSO module": lambda mp, f: mp.setattr(LLVMModule, "_write_to_file", f),
    "write blob object": lambda mp, f: mp.setattr(link, "write_blob_object", f),
    "link": lambda mp, f: mp.setattr(link, "_run", f),
    "write header": lambda mp, f: mp.setattr(link, "write_temp", f),
}
FAULTS = {"disk full": kp.ExportError, "linker": kp.LinkError, "interrupt": KeyboardInterrupt}


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    """An output directory holding a previous export, and a private temporary directory."""
    out, tmp = tmp_path / "out", tmp_path / "tmp"
    out.mkdir()
    tmp.mkdir()
    for name, data in PREVIOUS.items():
        (out / name).write_bytes(data)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return out, tmp


def assert_untouched(out, tmp):
    assert {p.name: p.read_bytes() for p in out.iterdir()} == PREVIOUS
    assert list(tmp.iterdir()) == []  # the workspace is gone


@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest.mark.parametrize("stage", list(STAGES))
def test_fault_at_each_stage_leaves_everything_as_it_was(dirs, monkeypatch, stage, fault):
    out, tmp = dirs
    root = tree()
    STAGES[stage](monkeypatch, fail_with(fault))
    with pytest.raises(FAULTS[fault]):
        root.export_library(out / "lib.so")
    assert_untouched(out, tmp)


def test_failure_putting_the_library_in_place(dirs, monkeypatch):
    out, tmp = dirs
    root = tree()
    monkeypatch.setattr(link.os, "replace", _replace_fails_on(1))
    with pytest.raises(kp.ExportError, match="Input/output error"):
        root.export_library(out / "lib.so")
    assert_untouched(out, tmp)


def test_the_same_export_succeeds_once_the_fault_is_gone(dirs, monkeypatch):
    out, tmp = dirs
    root = tree()
    with monkeypatch.context() as mp:
        mp.setattr(link, "_run", fail_with("linker"))
        with pytest.raises(kp.LinkError):
            root.export_library(out / "lib.so")
    root.export_library(out / "lib.so")
    assert sorted(p.name for p in out.iterdir()) == ["lib.h", "lib.so"]
    assert kp.load_module(out / "lib.so")["value"]() == 7
    assert list(tmp.iterdir()) == []


SLOW_CC = """#!/bin/sh
touch "$KP_MARK"
exec sleep 60
"""

INTERRUPTED = """
import sys, tempfile, kernpack as kp
from tests.conftest import VADD_IR
tempfile.tempdir = sys.argv[2]
try:
    kp.llvm_module(VADD_IR).export_library(sys.argv[1], cc=sys.argv[3])
except KeyboardInterrupt:
    sys.exit(42)
"""


def test_sigint_while_the_compiler_runs(dirs, tmp_path):
    out, tmp = dirs
    cc = tmp_path / "slow-cc"
    cc.write_text(SLOW_CC)
    cc.chmod(0o755)
    mark = tmp_path / "cc-started"
    env = {**os.environ, "KP_MARK": str(mark)}
    child = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTED, str(out / "lib.so"), str(tmp), str(cc)], cwd=ROOT, env=env
    )
    try:
        deadline = time.monotonic() + 60
        while not mark.exists():
            assert child.poll() is None and time.monotonic() < deadline, "the compiler never started"
            time.sleep(0.05)
        child.send_signal(signal.SIGINT)
        assert child.wait(timeout=30) == 42
    finally:
        child.kill()
    assert_untouched(out, tmp)
