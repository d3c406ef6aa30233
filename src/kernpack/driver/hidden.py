"""The arrays a device kernel takes after its own parameters, decided from its IR (``runtime.abi``).

One place for the build (the signature a device module declares) and the targets (the
parameters they lower); no llvmlite, so a build found in the compile cache uses it too.
"""

from __future__ import annotations

from ..runtime.abi import CHECK_PARAM, LOOPS_PARAM, PRINT_PARAM, SCRATCH_PARAM
from .lang import kir

__all__ = ["hidden_params"]


def hidden_params(kernel: kir.Kernel, *, loop_guard: bool = False) -> list[str]:
    """The hidden arrays of ``kernel`` on a device, in ``abi.HIDDEN_PARAMS`` order.

    With an epilogue, the scratch; with bounds checks, the record of the first out-of-range
    access; with print() calls, their buffer; with ``loop_guard`` (a Vulkan shader with
    loops), the word its loop guard sets.
    """
    wanted = {
        SCRATCH_PARAM: bool(kernel.epilogue),
        CHECK_PARAM: kernel.boundscheck,
        PRINT_PARAM: kir.prints(kernel),
        LOOPS_PARAM: loop_guard,
    }
    return [name for name, wants in wanted.items() if wants]
