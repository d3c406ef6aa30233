"""The host machine as a build sees it: the CPU its code is for, the threads a grid gets.

Read without LLVM (on Linux), because a cache hit must not load it: both go into the keys of
cached machine code for the host.
"""

from __future__ import annotations

import functools
import os

from . import cache

__all__ = ["cpu_environment", "default_threads"]


def default_threads() -> int:
    """Threads a kernel's grid uses by default: the cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def cpu_environment(cpu: str | None) -> str:
    """What machine code for ``cpu`` (None: this machine's) depends on besides the options."""
    machine = os.uname().machine  # platform.machine(), without importing platform
    return f"{machine}:{cpu}" if cpu is not None else f"{machine}:host:{_host_cpu()}"


@functools.cache
def _host_cpu() -> str:
    """The host CPU as LLVM's detection sees it.

    On Linux, a digest of the first processor's model and feature flags in /proc/cpuinfo
    (what decides LLVM's choice of CPU name and features). Elsewhere, LLVM's own answer.
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            first = f.read().split("\n\n")[0]
    except OSError:
        from .llvm import host_cpu_key  # here: only where /proc/cpuinfo cannot be read

        return host_cpu_key(None)
    fields = ("vendor_id", "cpu family", "model", "model name", "stepping", "flags", "features", "cpu implementer",
              "cpu architecture", "cpu variant", "cpu part", "isa")  # fmt: skip
    kept = [line for line in first.splitlines() if line.split(":")[0].strip().lower() in fields]
    return cache.sha256_hex("\n".join(kept).encode())[:24]
