"""What a kernel's (or a device function's) names mean: its namespace and its annotations.

One reading for the front end, the kernel index and device functions alike: the index's key
must fingerprint exactly the values the front end will see.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

__all__ = ["annotations", "namespace"]


def namespace(fn: Callable[..., Any]) -> dict[str, Any]:
    """``fn``'s globals, with its filled closure cells over them (an empty cell hides nothing)."""
    names = dict(getattr(fn, "__globals__", {}))
    code = getattr(fn, "__code__", None)
    for name, cell in zip(getattr(code, "co_freevars", ()), getattr(fn, "__closure__", None) or (), strict=True):
        with contextlib.suppress(ValueError):  # an empty cell
            names[name] = cell.cell_contents
    return names


def annotations(fn: Callable[..., Any], names: dict[str, Any] | None = None) -> dict[str, Any]:
    """``fn``'s annotations, those written as strings evaluated in ``names`` (None where they fail).

    Strings are what ``from __future__ import annotations`` leaves.
    """
    names = namespace(fn) if names is None else names
    hints = dict(getattr(fn, "__annotations__", {}))
    for key, hint in hints.items():
        if isinstance(hint, str):
            try:
                hints[key] = eval(hint, dict(names))
            except Exception:
                hints[key] = None
    return hints
