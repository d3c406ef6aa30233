"""The compilation targets, one file each, and the table ``kp.build`` looks them up in.

A target (:class:`~.base.Target`) is its options, its stages and its packaging: see
``docs/adding-a-target.md`` for what a new one needs.
"""

from __future__ import annotations

from . import cpu, cuda, interpret, opencl, vulkan
from .base import Function, IRContract, Options, Stage, Target, Unit

__all__ = [
    "Function",
    "IRContract",
    "Options",
    "Stage",
    "Target",
    "Unit",
    "device_targets",
    "get_target",
    "register_target",
]

_TARGETS: dict[str, Target] = {
    t.name: t for t in (cpu.TARGET, cuda.TARGET, opencl.TARGET, vulkan.TARGET, interpret.TARGET)
}


def register_target(target: Target) -> None:
    """Add a target (or replace the one of that name): ``kp.build(..., target=target.name)``."""
    _TARGETS[target.name] = target


def get_target(name: str) -> Target:
    """The target called ``name``.

    Raises
    ------
    ValueError
        If there is none; the message lists those there are.
    """
    target = _TARGETS.get(name)
    if target is None:
        raise ValueError(f"unknown target {name!r}; this version builds for {', '.join(_TARGETS)}")
    return target


def device_targets() -> list[str]:
    """The names of the targets that a host module can import (``kp.build(..., devices=...)``)."""
    return [name for name, t in _TARGETS.items() if t.device]
