"""Every runnable example in examples/ runs to completion (the docs show code that works)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REQUIRED_DEVICES

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.py"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(path):
    result = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    if path.name == "demo.py":
        # The first screen is the headline: both kernels checked on every device this suite requires.
        headline = result.stdout.split("How it works")[0]
        assert "kernpack build examples/kernels.py --devices opencl,vulkan,cuda" in headline
        assert "the compiler blocked" in headline and "imported no compiler" in headline
        for kind in ("cpu", *sorted(REQUIRED_DEVICES)):
            assert re.search(rf"^  {kind} +yes ", headline, re.M), headline
