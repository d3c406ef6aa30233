"""The lines a kernel's print() calls write, from the sites and values it sends (``abi``)."""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["cpu_printer", "print_records"]

# The C type of the CPU printer: void (int32_t site, const uint64_t *values).
_PRINTER = ctypes.CFUNCTYPE(None, ctypes.c_int32, ctypes.POINTER(ctypes.c_uint64))
_KEEP: list[Any] = []  # the callbacks kernels hold the address of: alive for the process


def _value(word: int, type_: str) -> Any:
    """A value as the kernel had it, from its 64-bit word."""
    if type_ == "bool":
        return bool(word)
    if type_ == "f32":
        return np.uint32(word & 0xFFFFFFFF).view(np.float32)
    if type_ == "f64":
        return np.uint64(word).view(np.float64)
    bits = int(type_[1:])
    word &= (1 << bits) - 1
    return word - (1 << bits) if type_[0] == "i" and word >= 1 << (bits - 1) else word


def line(site: Mapping[str, Any], words: Sequence[int]) -> str:
    """The text of one print: its pieces of text around its values, printed as Python would."""
    text, types = site["text"], site["types"]
    out = [text[0]]
    for k, type_ in enumerate(types):
        out += [str(_value(int(words[k]), type_)), text[k + 1]]
    return "".join(out)


def cpu_printer(sites: Sequence[Mapping[str, Any]]) -> int:
    """The address of a printer for a CPU kernel with these sites (kept alive for the process)."""

    def printer(site: int, values: Any) -> None:
        entry = sites[site]
        sys.stdout.write(line(entry, [values[k] for k in range(len(entry["types"]))]))

    callback = _PRINTER(printer)
    _KEEP.append(callback)
    return ctypes.cast(callback, ctypes.c_void_p).value or 0


def print_records(kernel: str, buffer: np.ndarray, sites: Sequence[Mapping[str, Any]]) -> None:
    """Write the lines a device kernel's prints left in its buffer, in the order they were made."""
    words = buffer.astype(np.uint64)
    used, lost = int(words[0]), int(words[1])
    at, end = 2, 2 + min(used, len(words) - 2)
    write: Callable[[str], Any] = sys.stdout.write
    # The prints that fit are the first ones in the buffer; each starts with its site + 1.
    while at < end and words[at]:
        site = sites[int(words[at]) - 1]
        n = len(site["types"])
        values = [int(words[at + 1 + 2 * k]) | int(words[at + 2 + 2 * k]) << 32 for k in range(n)]
        write(line(site, values))
        at += 1 + 2 * n
    if lost:
        sys.stderr.write(
            f"kernpack: {lost} print() calls of kernel {kernel!r} did not fit its print buffer "
            f"({len(words) - 2} words) and were dropped; print less in one launch\n"
        )
