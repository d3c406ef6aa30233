"""Comparing a target's arrays with the reference interpreter's, without hiding real bugs.

Integers and bools must be equal. A float element the perturbed reference runs leave
bit-identical does not depend on how a target rounds ``exp log sin cos tanh``, so it must match
bit for bit (NaN equals NaN: payloads and signs of NaN are not specified). Elsewhere a target may
differ by a few times the perturbation's spread plus a few ulps. A case whose perturbed runs move
an integer output, flip a NaN, or move a float a long way is ill-conditioned: only the elements
all three reference runs agree on are compared.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SPREAD_FACTOR = 4.0
ULPS = 4
ILL_RELATIVE = 1e-3


@dataclass
class Verdict:
    """``right``, ``wrong`` or ``ill-conditioned``, and for ``wrong`` where it first differs."""

    cls: str
    message: str = ""


def _same_bits(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise: equal bits, or both NaN."""
    if a.dtype.kind != "f":
        return a == b
    view = np.uint32 if a.dtype == np.float32 else np.uint64
    return (a.view(view) == b.view(view)) | (np.isnan(a) & np.isnan(b))


def _spread(runs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, bool]:
    """(elements all runs agree on, each element's spread, whether the spread is ill-conditioned)."""
    exact = runs[0]
    determined = np.ones(exact.shape, bool)
    for other in runs[1:]:
        determined &= _same_bits(exact, other)
    if exact.dtype.kind != "f":
        return determined, np.zeros(exact.shape), not determined.all()
    with np.errstate(all="ignore"):
        wide = exact.astype(np.float64)
        spread = np.zeros(exact.shape)
        ill = False
        for other in runs[1:]:
            o = other.astype(np.float64)
            nan_flip = np.isnan(wide) != np.isnan(o)
            d = np.where(np.isnan(wide) & np.isnan(o), 0.0, np.abs(o - wide))
            d = np.where(np.isinf(wide) & (wide == o), 0.0, d)
            ill |= bool(nan_flip.any())
            big = d > ILL_RELATIVE * np.maximum(np.abs(wide), np.finfo(exact.dtype).tiny)
            ill |= bool((big & ~determined).any())
            spread = np.maximum(spread, np.nan_to_num(d, nan=np.inf))
    return determined, spread, ill


def _describe(name: str, got: np.ndarray, want: np.ndarray, bad: np.ndarray, note: str = "") -> str:
    where = tuple(int(i) for i in np.argwhere(bad)[0])
    g, w = got[where], want[where]
    extra = ""
    if got.dtype.kind == "f" and g == 0 and w == 0:
        extra = " (sign of zero only)"
    return (
        f"{name} ({got.dtype}): {int(bad.sum())} of {bad.size} elements differ{note}, first at {where}: "
        f"got {g!r}, want {w!r}{extra}"
    )


def compare(names: list[str], got: list[np.ndarray], runs: list[list[np.ndarray]]) -> Verdict:
    """Judge a target's arrays ``got`` against the reference ``runs`` (exact first, then perturbed)."""
    ill_case = False
    problems = []
    for j, name in enumerate(names):
        want = runs[0][j]
        g = got[j]
        if g.shape != want.shape or g.dtype != want.dtype:
            problems.append(f"{name}: got {g.dtype}{g.shape}, want {want.dtype}{want.shape}")
            continue
        determined, spread, ill = _spread([r[j] for r in runs])
        ill_case |= ill
        same = _same_bits(g, want)
        if ill:
            bad = ~same & determined
        elif want.dtype.kind == "f":
            with np.errstate(all="ignore"):
                ulp = np.spacing(np.abs(want)).astype(np.float64)
                tol = SPREAD_FACTOR * spread + ULPS * np.nan_to_num(ulp, nan=0.0, posinf=0.0)
                close = np.abs(g.astype(np.float64) - want.astype(np.float64)) <= tol
            bad = ~same & (determined | ~close)
        else:
            bad = ~same
        if bad.any():
            note = "" if ill or not (bad & ~determined).any() else " (beyond the perturbation's tolerance)"
            problems.append(_describe(name, g, want, bad, note))
    if problems:
        return Verdict("wrong", "; ".join(problems))
    return Verdict("ill-conditioned" if ill_case else "right")
