"""The CPU a library's machine code needs, and whether this machine has it.

Machine code tuned for one CPU dies of an illegal instruction on an older one, with no hint
why. An exported library records what its code was built for, as the string
``"<cpu name>;<feature>,<feature>,..."`` (LLVM's names) in the symbol :data:`SYMBOL`, also in
its own section :data:`SECTION` so that ``kernpack inspect`` can show it without loading the
file. Loading compares the features with the ones this machine's kernel reports
(``/proc/cpuinfo``) and refuses a library whose code this CPU cannot run, naming what is
missing. Features without a cpuinfo name, and CPU names whose features are not listed here
(``"skylake"``), are not checked.
"""

from __future__ import annotations

import functools

__all__ = ["LEVELS", "SECTION", "SYMBOL", "host_flags", "missing_features", "requirement", "required_features"]

SYMBOL = "kernpack_cpu_requirement"
SECTION = ".kernpack_cpu"

# LLVM feature name -> the flag Linux's /proc/cpuinfo shows for it (x86-64).
_CPUINFO = {
    "sse3": "pni",
    "ssse3": "ssse3",
    "sse4.1": "sse4_1",
    "sse4.2": "sse4_2",
    "popcnt": "popcnt",
    "cx16": "cx16",
    "avx": "avx",
    "avx2": "avx2",
    "fma": "fma",
    "f16c": "f16c",
    "bmi": "bmi1",
    "bmi2": "bmi2",
    "lzcnt": "abm",
    "movbe": "movbe",
    "xsave": "xsave",
    "aes": "aes",
    "pclmul": "pclmulqdq",
    "sha": "sha_ni",
    "adx": "adx",
    "gfni": "gfni",
    "vaes": "vaes",
    "vpclmulqdq": "vpclmulqdq",
    "avx512f": "avx512f",
    "avx512bw": "avx512bw",
    "avx512cd": "avx512cd",
    "avx512dq": "avx512dq",
    "avx512vl": "avx512vl",
    "avx512ifma": "avx512ifma",
    "avx512vbmi": "avx512vbmi",
    "avx512vbmi2": "avx512_vbmi2",
    "avx512vnni": "avx512_vnni",
    "avx512bitalg": "avx512_bitalg",
    "avx512vpopcntdq": "avx512_vpopcntdq",
    "avx512bf16": "avx512_bf16",
    "avx512fp16": "avx512_fp16",
    "avxvnni": "avx_vnni",
    "amx-tile": "amx_tile",
    "amx-int8": "amx_int8",
    "amx-bf16": "amx_bf16",
}

_V2 = ("cx16", "popcnt", "sse3", "sse4.1", "sse4.2", "ssse3")
_V3 = (*_V2, "avx", "avx2", "bmi", "bmi2", "f16c", "fma", "lzcnt", "movbe", "xsave")
#: The features of the x86-64 microarchitecture levels (the psABI's), as LLVM names them.
LEVELS: dict[str, tuple[str, ...]] = {
    "generic": (),
    "x86-64": (),
    "x86-64-v2": _V2,
    "x86-64-v3": _V3,
    "x86-64-v4": (*_V3, "avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"),
}


def requirement(cpu: str, features: str) -> str:
    """The recorded form of code built for ``cpu`` with LLVM's ``features`` (``"+avx2,-avx512f"``)."""
    enabled = sorted({f[1:] for f in features.split(",") if f.startswith("+")} | set(LEVELS.get(cpu, ())))
    return f"{cpu};{','.join(enabled)}"


def required_features(text: str) -> tuple[str, list[str]]:
    """(cpu name, features) of a recorded requirement."""
    cpu, _, features = text.partition(";")
    return cpu, [f for f in features.split(",") if f]


@functools.cache
def _cpuinfo(field: str) -> str | None:
    """The first CPU's ``field`` in /proc/cpuinfo, or None where the kernel says nothing of it."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(field):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return None


def host_flags() -> frozenset[str] | None:
    """The CPU flags this machine's kernel reports, or None where it says nothing (not x86 Linux)."""
    flags = _cpuinfo("flags")
    return None if flags is None else frozenset(flags.split())


def host_model() -> str | None:
    """The CPU model of this machine, as its kernel reports it (``"AMD EPYC 7B13"``), or None."""
    return _cpuinfo("model name")


def missing_features(text: str) -> list[str]:
    """The features a recorded requirement names that this CPU lacks (LLVM's names); [] if unknown."""
    flags = host_flags()
    if flags is None:
        return []
    _, features = required_features(text)
    return [f for f in features if f in _CPUINFO and _CPUINFO[f] not in flags]
