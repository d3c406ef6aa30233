"""The compilation targets, one file each, and the table ``kp.build`` looks them up in.

A target (:class:`~.base.Target`) is its options, its stages and its packaging: see
``docs/targets.md`` for what a new one needs. A target's module is imported the first time the
target is asked for, so a CPU build loads no device code generator.
"""

from __future__ import annotations

import importlib

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

# The built-in targets, each the TARGET of the module of its name in this package.
_BUILTIN = ("cpu", "cuda", "opencl", "vulkan", "interpret")
_TARGETS: dict[str, Target] = {}


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
    if target is None and name in _BUILTIN:
        target = _TARGETS.setdefault(name, importlib.import_module(f"{__name__}.{name}").TARGET)
    if target is None:
        raise ValueError(f"unknown target {name!r}; this version builds for {', '.join(_names())}")
    return target


def device_targets() -> list[str]:
    """The names of the targets that a host module can import (``kp.build(..., devices=...)``)."""
    return [name for name in _names() if get_target(name).device]


def _names() -> list[str]:
    return [*_BUILTIN, *(name for name in _TARGETS if name not in _BUILTIN)]
