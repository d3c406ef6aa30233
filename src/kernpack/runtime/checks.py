"""The error a bounds-checked kernel reports: its record read back after a launch (``abi``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import KernelIndexError
from .abi import CHECK_WORDS

__all__ = ["index_error"]


def index_error(kernel: str, record: Sequence[int] | np.ndarray, sites: Mapping[str, Any]) -> KernelIndexError | None:
    """The ``IndexError`` of the first out-of-range access in ``record``, or None if there was none.

    ``sites`` is what the build wrote: ``{"file": path, "sites": [[array, line], ...]}``.
    """
    words = [int(w) for w in np.asarray(record, dtype=np.uint32)[:CHECK_WORDS]]
    count = words[0]
    if count == 0:
        return None
    site = words[1]
    table = sites.get("sites", [])
    array, line = table[site] if site < len(table) else ("an array", 0)

    def int64(k: int) -> int:
        value = words[k] | words[k + 1] << 32
        return value - (1 << 64) if value >= 1 << 63 else value

    ndim = sites.get("ndim", {}).get(array, 3)
    indices = [int64(2 + 2 * d) for d in range(ndim)]
    extents = [int64(8 + 2 * d) for d in range(ndim)]
    bad = next((d for d, (i, n) in enumerate(zip(indices, extents, strict=True)) if not 0 <= i < n), 0)
    where = f"{sites.get('file', '?')}:{line}"
    more = f" ({count} out-of-range accesses in this launch; the first is shown)" if count > 1 else ""
    return KernelIndexError(
        f"kernel {kernel!r} at {where}: index [{', '.join(map(str, indices))}] is out of range for {array} of shape "
        f"({', '.join(map(str, extents))}{',' * (len(extents) == 1)}) in dimension {bad}{more}; the access was "
        "skipped (built with boundscheck=True)"
    )
