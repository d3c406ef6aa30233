"""A library whose blob is over 2 GiB exports and loads (TVM's C-literal blob failed here with
"relocation truncated to fit"). Opt-in: ``KERNPACK_LARGE_TESTS=1`` (needs ~7 GiB of disk and
~10 GiB of memory, and takes a minute or two)."""

from __future__ import annotations

import numpy as np
import pytest

import kernpack as kp
from tests.conftest import VADD_IR
from tests.export.conftest import run_fresh
from tests.export.kinds import BigKind

pytestmark = pytest.mark.large

COUNT = (2**31 + 2**28) // 8  # 2.25 GiB of uint64 values 0, 1, 2, ...

CHECK = """
import json, numpy as np, kernpack as kp
import tests.export.kinds
lib = kp.load_module({path!r})
a = np.ones(8, np.float32); out = np.empty_like(a); lib["vadd"](a, a, out, 8)
data = lib["data"]()  # the payload: a zero-copy view into the mapped library
values = np.frombuffer(data, np.uint64)
probe = [0, 1, 2**28 - 1, 2**28, {count} - 1]  # element 2**28 sits at byte offset 2 GiB
print(json.dumps({{"size": len(data), "readonly": data.readonly, "vadd": out.tolist(),
                  "probe": values[probe].tolist(), "probe_at": probe}}))
"""


def test_blob_over_2_gib_exports_and_loads(tmp_path):
    payload = np.arange(COUNT, dtype=np.uint64).tobytes()
    root = kp.llvm_module(VADD_IR)
    root.import_module(BigKind(payload))
    del payload
    path = root.export_library(tmp_path / "big.so")
    del root
    got = run_fresh(CHECK.format(path=path, count=COUNT))
    assert got["size"] == COUNT * 8 > 2**31 and got["readonly"]
    assert got["vadd"] == [2.0] * 8
    assert got["probe"] == got["probe_at"]
