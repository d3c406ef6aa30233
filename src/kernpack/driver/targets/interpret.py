"""The ``interpret`` target: no code at all, a ``python`` module that runs the reference interpreter.

``kp.build(kernels, target="interpret")`` gives functions that run each kernel exactly as
``docs/kernel-language.md`` defines it (slowly, every index checked): what the differential
tests compare every other target against, and a way to debug a kernel.
"""

from __future__ import annotations

import functools
from typing import Any

from ...runtime.module import Module
from ...runtime.pymodule import python_module
from ...runtime.signature import Signature
from ..lang import kir
from ..lang.interpret import interpret
from .base import Options, Target, Unit

__all__ = ["TARGET"]


def _package(units: list[Unit], name: str) -> Module:
    (unit,) = units
    signatures = {f.name: f.signature for f in unit.functions}
    return python_module({k.name: functools.partial(_run, k, signatures[k.name]) for k in unit.kernels})


def _run(kernel: kir.Kernel, signature: Signature, *args: Any) -> None:
    interpret(kernel, signature, args)


TARGET = Target(name="interpret", options=Options, stages=(), package=_package, device=False)
