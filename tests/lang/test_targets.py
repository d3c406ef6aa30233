"""The target table and the one pipeline: options by name, dumps, caching, a target added from outside."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import kernpack as kp
from kernpack.driver import targets
from kernpack.driver.targets import Stage, Target, get_target, register_target
from kernpack.driver.targets import cpu as cpu_target
from tests.lang import kernels_src as K

ROOT_DIR = Path(__file__).resolve().parents[2]


def test_unknown_targets_devices_and_options_are_named():
    with pytest.raises(ValueError, match=r"unknown target 'metal'; this version builds for cpu, cuda, opencl"):
        kp.build([K.saxpy], target="metal")
    with pytest.raises(ValueError, match=r"unknown device 'interpret'; this version builds device code for cuda"):
        kp.build([K.saxpy], devices=["interpret"])
    with pytest.raises(ValueError, match=r"target 'opencl' takes the options opt_level; not threads"):
        kp.build([K.saxpy], target="opencl", threads=2)
    with pytest.raises(ValueError, match=r"vulkan has one optimization pipeline \(opt_level=1\), not opt_level=3"):
        kp.build([K.saxpy], target="vulkan", opt_level=3)
    with pytest.raises(ValueError, match="devices= goes with a host target"):
        kp.build([K.saxpy], target="opencl", devices=["cuda"])


def test_devices_take_their_own_options():
    host = kp.build([K.saxpy], devices={"cuda": {"arch": "sm_90"}, "opencl": {"opt_level": 0}})
    cuda, opencl = host.imports
    assert ".target sm_90" in cuda.inspect_source()
    assert opencl.kind == "opencl"


def test_dump_writes_every_stage_of_every_target(tmp_path):
    kp.build([K.saxpy, K.vadd_f32], target="vulkan", dump=tmp_path)
    kp.build([K.saxpy], target="cuda", dump=tmp_path, cache=False)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert {"saxpy.kir", "vadd_f32.kir", "saxpy.vulkan.ll", "saxpy.vulkan.spv", "vadd_f32.vulkan.spv"} <= set(names)
    assert {"saxpy.cuda.ll", "saxpy.cuda.ptx"} <= set(names)
    assert (tmp_path / "saxpy.vulkan.spv").read_bytes()[:4] == b"\x03\x02\x23\x07"


def test_a_target_added_from_outside_gets_the_pipeline(tmp_path, monkeypatch):
    # A fifth target, declared here: the cpu target's stages plus one of its own, registered in
    # the table; kp.build, its options, the dump and the cache come with the pipeline.
    seen = []

    def annotate(src: bytes, unit) -> bytes:
        seen.append(unit.label)
        return src + b"\n; checked by the mine target\n"

    stages = (cpu_target.TARGET.stages[0], Stage("checked", ".checked.ll", annotate), *cpu_target.TARGET.stages[1:])
    mine = dataclasses.replace(cpu_target.TARGET, name="mine", stages=stages)
    monkeypatch.setattr(targets, "_TARGETS", dict(targets._TARGETS))  # the table as it was, after the test
    register_target(mine)
    assert get_target("mine") is mine
    module = kp.build([K.saxpy], target="mine", threads=1, dump=tmp_path, cache=False)
    assert seen == ["saxpy"] and module.kind == "llvm"
    assert (tmp_path / "saxpy.mine.checked.ll").read_text().endswith("; checked by the mine target\n")
    import numpy as np

    x = np.arange(4, dtype=np.float32)
    out = np.zeros_like(x)
    module["saxpy"](2.0, x, x, out)
    np.testing.assert_array_equal(out, 3 * x)
    assert isinstance(mine, Target)


DEVICE_CACHE = """
import json, sys, kernpack as kp
from tests.lang import kernels_src as K
if sys.argv[1] == "forbid":
    import kernpack.driver.isolate as isolate
    def boom(*args, **kwargs):
        raise AssertionError("device code generation ran despite a cache hit")
    isolate.emit = isolate.emit_with_readonly = boom
module = kp.build([K.saxpy], target="opencl")
print(json.dumps({"size": len(bytes(module.binary))}))
"""


def test_device_builds_are_cached_across_processes(tmp_path):
    env = {**os.environ, "KERNPACK_CACHE_DIR": str(tmp_path)}

    def run(mode: str) -> dict:
        result = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(DEVICE_CACHE), mode], env=env, cwd=ROOT_DIR,
            capture_output=True, text=True,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout.strip().splitlines()[-1])

    assert run("fill") == run("forbid")
