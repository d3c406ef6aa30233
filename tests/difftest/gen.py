"""A seeded generator of random *valid* kernels covering the whole documented kernel language.

``generate(seed)`` returns a :class:`Case`: the source of a complete module defining one
``@kp.kernel def kern_<seed>(...)`` and the recipe of its arguments. The generator tracks types
with the rules of ``docs/kernel-language.md`` so that the front end accepts what it writes, and
it only writes kernels whose behaviour the language defines: every index is provably inside its
array (``e % a.shape[d]`` or a clamp), a grid point writes only elements whose leading indices
are its own grid variables, arrays given to ``kp.atomic_add`` are touched only by it (with small
integers, so float sums are exact in any order), and every loop stops after a few iterations.
Transcendental results mostly flow into float outputs, not into conditions or integer casts, so
few kernels are ill-conditioned (their result flipping with the last bit of ``exp``).
"""

from __future__ import annotations

import importlib.util
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import kernpack as kp

INTS = ("i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64")
FLOATS = ("f32", "f64")
ALL = ("bool", *INTS, *FLOATS)
DTYPES = {
    "bool": np.bool_,
    **{t: np.dtype(f"{'int' if t[0] == 'i' else 'uint'}{t[1:]}").type for t in INTS},
    "f32": np.float32,
    "f64": np.float64,
}
TRANSCENDENTAL = ("exp", "log", "sin", "cos", "tanh")

# Literals at and beyond the limits of every integer type, in several spellings.
INT_LITERALS = [
    (0, "0"), (1, "1"), (-1, "(-1)"), (2, "2"), (3, "3"), (5, "5"), (7, "7"), (10, "10"), (100, "100"),
    (127, "127"), (128, "128"), (-128, "(-128)"), (-129, "(-129)"), (255, "0xFF"), (256, "256"),
    (32767, "32767"), (32768, "32768"), (-32769, "(-32769)"), (65535, "65535"), (65536, "65536"),
    (2**31 - 1, "(2**31 - 1)"), (2**31, "(2**31)"), (-(2**31), "(-2**31)"), (-(2**31) - 1, "(-2147483649)"),
    (2**32 - 1, "4294967295"), (2**32, "(2**32)"), (2**63 - 1, "(2**63 - 1)"), (-(2**63), "(-2**63)"),
    (2**64 - 1, "(2**64 - 1)"),
]  # fmt: skip
SMALL_INTS = [(v, s) for v, s in INT_LITERALS if -2 <= v <= 10]
FLOAT_LITERALS = [
    "0.0", "(-0.0)", "0.5", "1.5", "0.1", "3.0", "(-2.25)", "1e20", "(-1e20)", "3.4e38", "1e-30", "1e-45",
    "5e-324", "1e308", "2.5e-08", "16777217.0", "9007199254740993.0", "0.3333333333333333", "2.0", "(-1.0)",
]  # fmt: skip
# Ranges with bounds near the ends of i64 (few iterations; some spans overflow i64).
EDGE_RANGES = [
    "(2**63 - 10), (2**63 - 1), 3", "(-2**63), (-2**63 + 5)", "(2**63 - 1), (2**63 - 8), (-2)",
    "(-2**63 + 3), (-2**63), (-1)", "(G_BIG - 4), G_BIG", "0, (2**63 - 1), (2**62)",
    "(-2**63), (2**63 - 1), (2**62)", "(2**63 - 1), (-2**63), (-2**62)", "(-5), 5, (2**63 - 1)",
    "(2**63 - 1), (-2**63), (-2**63)", "(-2**63), (2**63 - 1), (2**63 - 1)", "(2**63 - 3), (2**63 - 1)",
]  # fmt: skip
SMALL_FLOATS = ["0.0", "0.5", "1.5", "0.1", "3.0", "(-2.25)", "2.0", "(-1.0)", "0.25"]
GLOBALS = (
    "INF = math.inf\nNAN = math.nan\nG_PI = math.pi\nG_TINY = 1e-310\nG_INT = 12345\n"
    "G_BIG = 2**63 - 1\nG_NEG = -7\nFLAG = True\n"
)
FLOAT_GLOBALS = ["G_PI", "G_TINY", "INF", "(-INF)", "NAN"]


def _helpers() -> str:
    """A ``@kp.func`` per scalar type that passes its value through a local: right sides of stores
    and locals are sometimes wrapped in one, so device functions are compared on every target."""
    out = []
    for t in ("i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64", "f32", "f64", "bool"):
        k = "bool_" if t == "bool" else t
        out.append(f"@kp.func\ndef via_{t}(v: kp.{k}) -> kp.{k}:\n    w = v\n    return w\n")
    return "\n\n".join(out)


HELPERS = _helpers()
INT_GLOBALS = [(12345, "G_INT"), (2**63 - 1, "G_BIG"), (-7, "G_NEG")]


def fits(value: int, t: str) -> bool:
    """Whether an int literal converts to ``t`` without numpy overflowing (floats take any)."""
    if t not in INTS:
        return True
    info = np.iinfo(DTYPES[t])
    return int(info.min) <= value <= int(info.max)


def promote(a: str, b: str) -> str:
    """The promotion rule of the docs (rules 2-4), on type names."""
    if a == b:
        return a
    if a in FLOATS or b in FLOATS:
        if a in FLOATS and b in FLOATS:
            return "f64"
        return a if a in FLOATS else b
    ba, bb = int(a[1:]), int(b[1:])
    if a[0] == b[0]:
        return a if ba >= bb else b
    signed, unsigned = (a, b) if a[0] == "i" else (b, a)
    if int(unsigned[1:]) < int(signed[1:]):
        return signed
    return {8: "i16", 16: "i32", 32: "i64"}.get(int(unsigned[1:]), "i64")


def kp_type(t: str) -> str:
    return "kp.bool_" if t == "bool" else f"kp.{t}"


def kind_of(t: str) -> str:
    return "bool" if t == "bool" else "int" if t in INTS else "float"


@dataclass
class Ex:
    """A generated expression: its source, its kernel type, and whether it is a weak literal."""

    src: str
    t: str
    weak: bool = False
    value: Any = None  # an int literal's value, to check it fits where it meets a type
    taint: bool = False  # depends on a transcendental function

    def __str__(self) -> str:
        return self.src


@dataclass
class Var:
    name: str
    t: str
    mutable: bool
    taint: bool = False
    extent_ok: bool = False  # a straight-line integer the device host can compute the grid from


@dataclass
class ArgSpec:
    """One kernel argument: a scalar (``value``) or an array (``shape``, filled from ``profile``)."""

    name: str
    t: str
    role: str  # "scalar", "in", "out", "atomic", "shape-only", "result" (of a reduction), "local" (kp.local)
    shape: tuple[int, ...] | None = None
    value: Any = None
    profile: str = "plain"


@dataclass
class Case:
    """A generated kernel: module source, its kernel's name, and how to make its arguments."""

    seed: int
    name: str
    source: str
    args: list[ArgSpec]
    flags: set[str] = field(default_factory=set)
    generic: str | None = None  # a generic kernel: the type its T is specialised to

    @property
    def kernel_name(self) -> str:
        """The kernel's name in built modules (a specialisation's carries its type)."""
        return f"{self.name}__{self.generic}" if self.generic else self.name

    def make_args(self) -> list[Any]:
        """Fresh arguments, the same on every call (numpy scalars and C-contiguous arrays)."""
        rng = np.random.default_rng(self.seed)
        return [_scalar(a) if a.role == "scalar" else _array(a, rng) for a in self.args]


def _scalar(a: ArgSpec) -> Any:
    return DTYPES[a.t](a.value)


def _array(a: ArgSpec, rng: np.random.Generator) -> np.ndarray:
    assert a.shape is not None
    n = int(np.prod(a.shape))
    dtype = DTYPES[a.t]
    if a.role == "atomic":
        return (rng.integers(-3, 4, n) if a.t[0] != "u" else rng.integers(0, 6, n)).astype(dtype).reshape(a.shape)
    if a.t == "bool":
        return (rng.random(n) < 0.5).reshape(a.shape)
    if a.t in FLOATS:
        values = np.round(rng.uniform(-4, 4, n), 3) if a.profile != "ints" else rng.integers(-6, 7, n) * 1.0
        values = values.astype(dtype)
        if a.profile == "special":
            specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e30, 1e-30, 1e-40, 0.1, 3e38], dtype=dtype)
            pick = rng.random(n) < 0.3
            values[pick] = specials[rng.integers(0, len(specials), int(pick.sum()))]
        return values.reshape(a.shape)
    info = np.iinfo(dtype)
    values = rng.integers(max(int(info.min), -20), 21, n).astype(dtype)
    if a.profile == "special":
        extremes = np.array(
            [int(info.min), int(info.max), 0, 1, int(info.max) - 1, int(info.min) + 1]
            + ([-1] if a.t[0] == "i" else []),
            dtype=object,
        ).astype(dtype)
        pick = rng.random(n) < 0.3
        values[pick] = extremes[rng.integers(0, len(extremes), int(pick.sum()))]
    return values.reshape(a.shape)


class _Gen:
    """One kernel's generation state: parameters, scopes of visible names, the lines written."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.r = random.Random(seed)
        self.wide = 0  # a 1-D grid's length when it spans several workgroups (kernel())
        self.elementwise = False
        self.flags: set[str] = set()
        self.n = 0
        self.args: list[ArgSpec] = []
        self.scopes: list[dict[str, Var]] = [{}]
        self.in_grid = False
        self.grid_vars: list[str] = []
        self.loops = 0
        self.budget = 0
        self.mutable_prologue = False
        self.index_depth = 0  # indices inside indices: bounded, or loads would nest forever
        self.reductions: list[tuple[str, str, str, ArgSpec]] = []  # (local, type, op, result array)
        self.private: list[ArgSpec] = []  # kp.local arrays of the grid body (role "local")
        self.generic: str | None = None  # the parameters' type written as the type variable T

    # ------------------------------------------------------------------ names
    def fresh(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    def visible(self) -> list[Var]:
        out: dict[str, Var] = {}
        for scope in self.scopes:
            out.update(scope)
        return list(out.values())

    def arrays(self, *roles: str) -> list[ArgSpec]:
        return [a for a in self.args if a.role in roles]

    def chance(self, p: float) -> bool:
        return self.r.random() < p

    # ------------------------------------------------------------------ literals
    def int_lit(self, fit: str | None = "i64", small: bool = False) -> Ex:
        pool = SMALL_INTS if small else INT_LITERALS
        if self.chance(0.1) and not small:
            pool = INT_GLOBALS
        ok = [(v, s) for v, s in pool if fits(v, fit or "i64")]
        if fit is not None and fit in INTS and self.chance(0.02):
            ok = [(v, s) for v, s in INT_LITERALS if not fits(v, fit)] or ok  # the known literal-overflow path
            self.flags.add("literal-overflow")
        v, s = self.r.choice(ok or SMALL_INTS)
        return Ex(s, "i64", weak=True, value=v)

    def float_lit(self, small: bool = False) -> Ex:
        if not small and self.chance(0.1):
            return Ex(self.r.choice(FLOAT_GLOBALS), "f64", weak=True)
        return Ex(self.r.choice(SMALL_FLOATS if small or self.chance(0.6) else FLOAT_LITERALS), "f64", weak=True)

    def fit(self, e: Ex, t: str) -> Ex:
        """A weak int literal meeting ``t``: replace it by one that fits (numpy would overflow)."""
        if e.weak and e.value is not None and not fits(e.value, t):
            return self.int_lit(t, small=True)
        return e

    def strong(self, e: Ex) -> Ex:
        """A weak literal made strong with a cast (two weak literals would fold in Python)."""
        if not e.weak:
            return e
        if e.t == "f64":
            t = self.r.choice(FLOATS)
            return Ex(f"{kp_type(t)}({e})", t)
        t = self.r.choice([t for t in INTS if t != "i64"] + ["i64"] * fits(e.value, "i64"))
        return Ex(f"{kp_type(t)}({e})", t)

    # ------------------------------------------------------------------ typing helpers
    def combine(self, a: Ex, b: Ex) -> tuple[Ex, Ex, str]:
        """Two operands as the front end unifies them: (a, b, common type)."""
        if a.weak and b.weak:
            b = self.strong(b)
        if a.weak:
            a = self.fit(a, b.t)
            t = b.t if (b.t in FLOATS or a.t == "i64") else "f64"
        elif b.weak:
            b = self.fit(b, a.t)
            t = a.t if (a.t in FLOATS or b.t == "i64") else "f64"
        else:
            t = promote(a.t, b.t)
        return a, b, t

    def cast(self, v: Ex, t: str) -> Ex:
        """``kp.t(v)``; float to int casts are guarded against NaN (unspecified on vulkan)."""
        if v.weak and v.value is not None and t == "i64" and not fits(v.value, "i64"):
            v = self.int_lit("i64")
        src = str(v)
        spelled = "T" if t == self.generic and self.chance(0.5) else kp_type(t)  # T(v) in a generic kernel
        if v.t in FLOATS and t in INTS:
            if self.chance(0.9):
                src = f"({v} if {v} == {v} else 0.0)"
            else:
                self.flags.add("nan-int-cast")
        return Ex(f"{spelled}({src})", t, taint=v.taint)

    def to_type(self, v: Ex, t: str) -> Ex:
        return v if (v.t == t and not v.weak) else self.cast(v, t)

    # ------------------------------------------------------------------ expressions
    def expr(self, kind: str, depth: int, notaint: bool = False) -> Ex:
        depth = min(depth, 1) if self.elementwise else depth  # a body small enough to be tiled
        if kind == "num":
            kind = self.r.choice(["int", "float"])
        if depth <= 0 or self.chance(0.3):
            return self.leaf(kind, notaint)
        return {"int": self.int_node, "float": self.float_node, "bool": self.bool_node}[kind](depth - 1, notaint)

    def readable(self, kind: str) -> list[ArgSpec]:
        ok = [a for a in self.arrays("in") if kind_of(a.t) == kind]
        if self.in_grid:
            ok += [a for a in self.arrays("out") + self.private if kind_of(a.t) == kind]
        return ok

    def load(self, a: ArgSpec) -> Ex:
        if a.role == "out":
            return Ex(f"{a.name}[{self.own_index(a)}]", a.t, taint=a.value == "taint")
        assert a.shape is not None
        return Ex(f"{a.name}[{', '.join(self.index(a, d) for d in range(len(a.shape)))}]", a.t)

    def leaf(self, kind: str, notaint: bool) -> Ex:
        options: list[Any] = []
        vars_ = [v for v in self.visible() if kind_of(v.t) == kind and not (notaint and v.taint)]
        if vars_:
            options += [lambda: self.var(self.r.choice(vars_))] * 3
        arrays = [a for a in self.readable(kind) if not (notaint and a.value == "taint")]
        if arrays and self.index_depth < 2:
            options += [lambda: self.load(self.r.choice(arrays))] * 3
        if kind == "int":
            options.append(lambda: self.shape_ref(self.r.choice(self.arrays("in", "out", "atomic", "shape-only"))))
            options.append(lambda: self.int_lit())
        elif kind == "float":
            options.append(self.float_lit)
        else:
            options.append(lambda: Ex(self.r.choice(["True", "False", "FLAG"]), "bool"))
        return self.r.choice(options)()

    def var(self, v: Var) -> Ex:
        return Ex(v.name, v.t, taint=v.taint)

    def shape_ref(self, a: ArgSpec) -> Ex:
        assert a.shape is not None
        return Ex(f"{a.name}.shape[{self.r.randrange(len(a.shape))}]", "i64")

    def int_node(self, depth: int, notaint: bool) -> Ex:
        op = self.r.choice(
            ["+", "-", "*", "//", "%", "+", "-", "*", "**", "min", "max", "neg", "abs", "cast", "select"]
        )
        if op in ("+", "-", "*", "//", "%"):
            a, b, t = self.combine(self.expr("int", depth, notaint), self.expr("int", depth, notaint))
            return Ex(f"({a} {op} {b})", t, taint=a.taint or b.taint)
        if op == "**":
            base = self.strong(self.expr("int", depth, notaint))
            if self.chance(0.6):
                e = self.int_lit(base.t, small=True) if self.chance(0.8) else self.int_lit(base.t)
                e = self.fit(e, base.t)
                if e.value is not None and abs(e.value) > 64:
                    e = Ex("63", "i64", weak=True, value=63)
            else:
                e = self.expr("int", 1, True)
                e = Ex(f"({self.strong(e)} % 5)", self.strong(e).t if e.weak else e.t)
            base, e, t = self.combine(base, e)
            return Ex(f"({base} ** {e})", t, taint=base.taint)
        if op in ("min", "max"):
            return self.minmax(op, "int", depth, notaint)
        if op == "neg":
            a = self.strong(self.expr("int", depth, notaint))
            return Ex(f"(-{a})", a.t, taint=a.taint)
        if op == "abs":
            a = self.fit(self.expr("int", depth, notaint), "i64")
            return Ex(f"abs({a})", "i64" if a.weak else a.t, taint=a.taint)
        if op == "cast":
            kind = self.r.choice(["int", "int", "float", "bool"])
            v = self.expr(kind, min(depth, 1), notaint=True if kind == "float" and self.chance(0.95) else notaint)
            return self.cast(v, self.r.choice(INTS))
        return self.select("int", depth, notaint)

    def minmax(self, op: str, kind: str, depth: int, notaint: bool) -> Ex:
        spell = self.r.choice([op, op, f"kp.math.{op}"])
        args = [self.expr(kind if i == 0 else ("num" if kind == "float" else kind), depth, notaint) for i in range(2)]
        if self.chance(0.2):
            args.append(self.expr(kind, depth, notaint))
        a, b, t = self.combine(args[0], args[1])
        out = [a, b]
        for c in args[2:]:
            _, c, t = self.combine(Ex("", t), c)
            out.append(c)
        return Ex(f"{spell}({', '.join(map(str, out))})", t, taint=any(x.taint for x in out))

    def select(self, kind: str, depth: int, notaint: bool) -> Ex:
        c = self.cond(depth, notaint)
        a, b, t = self.combine(self.expr(kind, depth, notaint), self.expr(kind, depth, notaint))
        if a.weak and b.weak:
            t = "f64" if kind == "float" else "i64"
        return Ex(f"({a} if {c} else {b})", t, taint=a.taint or b.taint or c.taint)

    def cond(self, depth: int, notaint: bool = False) -> Ex:
        return self.expr("bool", depth, notaint or self.chance(0.95))

    def float_node(self, depth: int, notaint: bool) -> Ex:
        ops = ["+", "-", "*", "/", "+", "-", "*", "/", "//", "%", "**", "call", "call", "call", "fma", "min", "max"]
        op = self.r.choice([*ops, "neg", "abs", "cast", "select"])
        if not notaint and self.chance(0.3):
            op = "transcendental"
        if op == "transcendental":
            return self.transcendental(depth)
        if op in ("+", "-", "*", "/", "//", "%"):
            quiet = notaint or (op in ("//", "%") and self.chance(0.95))
            if op == "/" and self.chance(0.25):
                a, b = self.expr("int", depth, quiet), self.expr("int", depth, quiet)
            else:
                a, b = self.expr("float", depth, quiet), self.expr("num", depth, quiet)
                if self.chance(0.5):
                    a, b = b, a
            a, b, t = self.combine(a, b)
            t = t if t in FLOATS else "f64"
            return Ex(f"({a} {op} {b})", t, taint=a.taint or b.taint)
        if op == "**":
            base = self.expr("float", depth, notaint)
            if self.chance(0.7):
                e = (
                    self.int_lit(small=True)
                    if self.chance(0.85)
                    else self.r.choice([self.int_lit(), Ex("(-40)", "i64")])
                )
                if base.weak:
                    e = self.strong(e)
                if e.value is not None and abs(e.value) > 200:
                    e = Ex("31", "i64", weak=True, value=31)
            else:
                e = Ex(f"({self.expr('int', 1, True)} % 5 - 2)", "i64")
            return Ex(f"({base} ** {e})", "f64" if base.weak else base.t, taint=base.taint)
        if op == "call":
            funcs = ["sqrt", "floor", "ceil", "abs"] + ([] if notaint else list(TRANSCENDENTAL) * 2)
            fn = self.r.choice(funcs)
            arg = self.expr(
                "float" if self.chance(0.8) or fn == "abs" else "int", depth, notaint or fn in ("floor", "ceil")
            )
            if fn == "abs":
                spell = self.r.choice(["abs", "kp.math.abs", "math.fabs"])
                arg = self.strong(arg)
                if arg.t not in FLOATS:
                    arg = self.cast(arg, self.r.choice(FLOATS))
                return Ex(f"{spell}({arg})", arg.t, taint=arg.taint)
            spell = self.r.choice([f"kp.math.{fn}", f"math.{fn}"])
            t = arg.t if (arg.t in FLOATS and not arg.weak) else "f64"
            if fn in TRANSCENDENTAL:
                self.flags.add("transcendental")
            return Ex(f"{spell}({arg})", t, taint=arg.taint or fn in TRANSCENDENTAL)
        if op == "fma":
            args = [self.expr("float" if i == 0 else "num", depth, notaint) for i in range(3)]
            self.r.shuffle(args)
            strong = [a.t for a in args if not a.weak]
            t = strong[0] if strong else "f64"
            for s in strong[1:]:
                t = promote(t, s)
            return Ex(f"kp.math.fma({', '.join(map(str, args))})", t if t in FLOATS else "f64",
                      taint=any(a.taint for a in args))  # fmt: skip
        if op in ("min", "max"):
            e = self.minmax(op, "float", depth, notaint)
            return e if e.t in FLOATS else self.cast(e, "f64")
        if op in ("neg", "abs"):
            a = self.expr("float", depth, notaint)
            if a.weak:
                return Ex(f"(-{a})" if op == "neg" else f"abs({a})", "f64", weak=op == "neg")
            return Ex(f"(-{a})" if op == "neg" else f"abs({a})", a.t, taint=a.taint)
        if op == "cast":
            v = self.expr(self.r.choice(["int", "float", "float", "bool"]), depth, notaint)
            return self.cast(v, self.r.choice(FLOATS))
        e = self.select("float", depth, notaint)
        return e if e.t in FLOATS else self.cast(e, "f64")

    def transcendental(self, depth: int) -> Ex:
        """``exp log sin cos tanh`` of a float (or int) expression: a tainted float."""
        fn = self.r.choice(TRANSCENDENTAL)
        arg = self.expr("float" if self.chance(0.85) else "int", depth, False)
        t = arg.t if (arg.t in FLOATS and not arg.weak) else "f64"
        self.flags.add("transcendental")
        return Ex(f"{self.r.choice(['kp.math', 'math'])}.{fn}({arg})", t, taint=True)

    def bool_node(self, depth: int, notaint: bool) -> Ex:
        op = self.r.choice(["cmp", "cmp", "cmp", "chain", "and", "or", "not", "cast", "eq"])
        if self.chance(0.07):
            c, a, b = (self.expr("bool", depth, notaint) for _ in range(3))
            return Ex(f"({a} if {c} else {b})", "bool", taint=a.taint or b.taint or c.taint)
        cmps = ["<", "<=", ">", ">=", "==", "!="]
        if op == "cmp":
            a, b, _ = self.combine(self.expr("num", depth, notaint), self.expr("num", depth, notaint))
            return Ex(f"({a} {self.r.choice(cmps)} {b})", "bool", taint=a.taint or b.taint)
        if op == "chain":
            b = self.strong(self.expr("num", depth, notaint))
            a, _, _ = self.combine(self.expr("num", depth - 1, notaint), b)
            _, c, _ = self.combine(b, self.expr("num", depth - 1, notaint))
            return Ex(f"({a} {self.r.choice(cmps[:4])} {b} {self.r.choice(cmps)} {c})", "bool",
                      taint=a.taint or b.taint or c.taint)  # fmt: skip
        if op in ("and", "or"):
            parts = [self.expr("bool", depth, notaint) for _ in range(self.r.choice([2, 2, 3]))]
            return Ex(f"({f' {op} '.join(map(str, parts))})", "bool", taint=any(p.taint for p in parts))
        if op == "not":
            c = self.expr("bool", depth, notaint)
            return Ex(f"(not {c})", "bool", taint=c.taint)
        if op == "cast":
            v = self.expr("num", depth, notaint)
            return Ex(f"kp.bool_({v})", "bool", taint=v.taint)
        a, b = self.expr("bool", depth, notaint), self.expr("bool", depth, notaint)
        return Ex(f"({a} {self.r.choice(['==', '!='])} {b})", "bool", taint=a.taint or b.taint)

    # ------------------------------------------------------------------ indices
    def index(self, a: ArgSpec, d: int) -> str:
        """An index into dimension ``d`` of ``a`` that is in range whatever the values."""
        shape = f"{a.name}.shape[{d}]"
        if self.elementwise and self.in_grid and a.shape == (self.wide,) and self.chance(0.7):
            return self.grid_vars[0]  # as long as the grid: in range
        loop_vars = [v for v in self.visible() if v.t == "i64" and not v.mutable and v.name[0] in "ikw"]
        pick = self.r.random()
        if pick < 0.35 and loop_vars:
            return f"{self.r.choice(loop_vars).name} % {shape}"
        if pick < 0.45:
            return "0"
        self.index_depth += 1
        e = self.fit(self.expr("int", self.r.choice([0, 1, 1, 2]), notaint=True), "i64")
        self.index_depth -= 1
        if pick < 0.75 or e.t == "u64":
            return f"({e}) % {shape}"
        return f"min(max({e}, 0), {shape} - 1)"

    def own_index(self, a: ArgSpec) -> str:
        assert a.shape is not None
        parts = list(self.grid_vars) + [self.index(a, d) for d in range(len(self.grid_vars), len(a.shape))]
        return ", ".join(parts)

    # ------------------------------------------------------------------ statements
    def value_for(self, t: str, depth: int, notaint: bool) -> Ex:
        """A value that stores into type ``t`` (int to float implicit, float to int cast)."""
        kind = kind_of(t)
        if kind == "bool":
            return self.expr("bool", depth, notaint)
        if kind == "int":
            v = self.expr("int", depth, notaint) if self.chance(0.85) else self.cast(self.expr("num", 1, True), t)
            return self.fit(v, t)
        if not notaint and self.chance(0.35):
            return self.transcendental(max(depth - 1, 0))
        return self.expr("float" if self.chance(0.75) else "int", depth, notaint)

    def store(self, pad: str) -> list[str]:
        outs = self.arrays("out")
        atomics = self.arrays("atomic")
        if atomics and self.chance(0.25):
            return [pad + self.atomic(self.r.choice(atomics))]
        a = self.r.choice(outs + self.private)
        notaint = a.value != "taint"
        own = self.own_index(a) if a.role == "out" else ", ".join(self.index(a, d) for d in range(len(a.shape or ())))
        target = f"{a.name}[{own}]"
        if self.chance(0.2) and a.t != "bool":
            return [pad + self.augassign(target, a.t, notaint)]
        return [f"{pad}{target} = {self.via(self.value_for(a.t, self.r.choice([1, 2, 3]), notaint))}"]

    def via(self, v: Ex) -> Ex:
        """Sometimes ``v`` through its type's ``via_<t>`` device function (the same value)."""
        if v.weak or not self.chance(0.15):
            return v
        self.flags.add("kp-func")
        return Ex(f"via_{v.t}({v})", v.t, taint=v.taint)

    def augassign(self, target: str, t: str, notaint: bool) -> str:
        if t in FLOATS:
            op = self.r.choice(["+=", "-=", "*=", "/=", "//=", "%=", "**="])
        else:
            op = self.r.choice(["+=", "-=", "*=", "//=", "%=", "**=", "+="])
        if op == "**=":
            e = self.int_lit(t if t in INTS else "i64", small=True)
            return f"{target} **= {self.fit(e, t)}"
        v = self.value_for(t, 2, notaint or op in ("//=", "%="))
        if v.t in FLOATS and t in INTS:
            v = self.cast(v, t)
        return f"{target} {op} {self.fit(v, t)}"

    def atomic(self, a: ArgSpec) -> str:
        assert a.shape is not None
        idx = [self.index(a, d) for d in range(len(a.shape))]
        index = idx[0] if len(idx) == 1 else f"({', '.join(idx)})"
        if a.t in FLOATS:
            value = f"kp.i32(({self.expr('int', 1, True)}) % 7) - 3"
        else:
            value = str(self.fit(self.expr("int", 2, True), a.t))
        return f"kp.atomic_add({a.name}, {index}, {value})"

    def new_local(self, pad: str, prologue: bool = False) -> list[str]:
        t = self.r.choice(ALL)
        taint_ok = self.chance(0.5)
        if t in FLOATS and taint_ok and self.chance(0.3):
            v = self.transcendental(self.r.choice([1, 2]))
        else:
            v = self.expr(kind_of(t), self.r.choice([1, 2, 3]), notaint=not taint_ok)
        if (v.t != t or v.weak) and self.chance(0.7):
            v = self.cast(v, t)
        t = v.t if not v.weak else ("i64" if v.t in INTS else "f64")
        name = self.fresh("t")
        mutable = not prologue or self.mutable_prologue
        self.scopes[-1][name] = Var(name, t, mutable=mutable, taint=v.taint)
        return [f"{pad}{name} = {self.via(v)}"]

    def reassign(self, pad: str) -> list[str]:
        vars_ = [v for v in self.visible() if v.mutable]
        if not vars_:
            return self.new_local(pad)
        v = self.r.choice(vars_)
        if v.t != "bool" and self.chance(0.5):
            return [pad + self.augassign(v.name, v.t, not v.taint)]
        return [f"{pad}{v.name} = {self.value_for(v.t, 2, not v.taint)}"]

    def block(self, depth: int, pad: str, first_store: bool = True) -> list[str]:
        self.scopes.append({})
        lines = self.store(pad) if first_store and self.in_grid else []
        for _ in range(self.r.randint(0 if lines else 1, 3)):
            if self.budget <= 0:
                break
            lines += self.statement(depth, pad)
        self.scopes.pop()
        return lines or [pad + "pass"]

    def statement(self, depth: int, pad: str) -> list[str]:
        self.budget -= 1
        choices = ["store", "store", "local", "local", "reassign"] if self.in_grid else ["local", "local", "reassign"]
        if self.in_grid and self.reductions:
            choices += ["reduce", "reduce"]
        if depth < 3:
            choices += ["if", "if", "for"] + (["while"] if self.loops < 2 else [])
            if self.loops >= 2:
                choices.remove("for")
            if self.elementwise:
                choices = [c for c in choices if c not in ("for", "while")]
        if self.loops:
            choices += ["break", "continue"]
        elif self.in_grid:
            choices += ["continue"] if self.chance(0.3) else []
        what = self.r.choice(choices)
        if self.chance(0.03):
            what = "maybe-local"
        if what == "maybe-local":
            return self.maybe_local(depth, pad)
        if what == "store":
            return self.store(pad)
        if what == "reduce":
            return self.reduce(pad, self.r.choice(self.reductions))
        if what == "local":
            return self.new_local(pad, prologue=not self.in_grid)
        if what == "reassign":
            return self.reassign(pad)
        if what in ("break", "continue"):
            return [f"{pad}if {self.cond(2)}:", f"{pad}    {what}"]
        if what == "if":
            lines = [f"{pad}if {self.cond(2)}:", *self.block(depth + 1, pad + "    ")]
            for _ in range(self.r.choice([0, 0, 1, 2])):
                lines += [f"{pad}elif {self.cond(2)}:", *self.block(depth + 1, pad + "    ")]
            if self.chance(0.6):
                lines += [f"{pad}else:", *self.block(depth + 1, pad + "    ")]
            return lines
        if what == "for":
            return self.for_loop(depth, pad)
        return self.while_loop(depth, pad)

    def maybe_local(self, depth: int, pad: str) -> list[str]:
        """A local assigned in one arm of an ``if`` only, then visible after it: on the other path it
        reads as the grid point started with it (0, or what the prologue left)."""
        self.flags.add("maybe-unassigned-local")
        head = [f"{pad}if {self.cond(2)}:"]
        if self.chance(0.5):  # the name is declared where it is first written: reads must come after that
            assign = self.new_local(pad + "    ", prologue=not self.in_grid)
            return head + assign + ([f"{pad}else:", *self.block(depth + 1, pad + "    ")] if self.chance(0.4) else [])
        arm = self.block(depth + 1, pad + "    ")
        return head + arm + [f"{pad}else:", *self.new_local(pad + "    ", prologue=not self.in_grid)]

    def small(self, lo: int, hi: int) -> str:
        """A small integer expression in [lo, hi]: a literal, a clamp of a value, or ``e % n``."""
        pick = self.r.random()
        if pick < 0.5:
            return str(self.r.randint(lo, hi)) if self.r.randint(lo, hi) >= 0 else f"({self.r.randint(lo, -1)})"
        e = self.fit(self.expr("int", 1, True), "i64")
        if e.t == "u64" or pick < 0.8:
            return f"(kp.i64(({e}) % {hi - lo + 1}) + ({lo}))"
        return f"min(max({e}, {lo}), {hi})"

    def for_loop(self, depth: int, pad: str) -> list[str]:
        name = self.fresh("k")
        form = self.r.randrange(4)
        if self.chance(0.15):
            args = self.runtime_step_range()
        elif self.chance(0.08):
            args = self.r.choice(EDGE_RANGES)
            self.flags.add("i64-edge-range")
        elif form == 0:
            args = self.small(0, 4)
        elif form == 1:
            args = f"{self.small(-2, 2)}, {self.small(0, 4)}"
        elif form == 2:
            step = self.r.choice(["1", "2", "3", f"(kp.i64({self.expr('int', 1, True)}) % 2 + 1)"])
            args = f"{self.small(-2, 2)}, {self.small(0, 5)}, {step}"
        else:
            step = self.r.choice(["(-1)", "(-2)", "-1", f"(-(kp.i64({self.expr('int', 1, True)}) % 2 + 1))"])
            args = f"{self.small(0, 4)}, {self.small(-3, 1)}, {step}"
        self.loops += 1
        self.scopes.append({name: Var(name, "i64", mutable=False)})
        body = self.block(depth + 1, pad + "    ", first_store=self.chance(0.5))
        self.scopes.pop()
        self.loops -= 1
        return [f"{pad}for {name} in range({args}):", *body]

    def runtime_step_range(self) -> str:
        """Small bounds and a step only known at run time: any integer, possibly 0 (no iterations)."""
        ints = [v for v in self.visible() if v.t in INTS and not v.taint and v.name[0] in "ptnk"]
        pick = self.r.random()
        if ints and pick < 0.6:
            step = self.r.choice(ints).name
        elif pick < 0.8:
            step = f"(kp.i64({self.expr('int', 1, True)}) % 5 - 2)"
        else:
            step = f"(kp.i64({self.expr('int', 1, True)}) % 3 - 1)"
        self.flags.add("runtime-step")
        return f"{self.small(-6, 6)}, {self.small(-6, 6)}, {step}"

    def while_loop(self, depth: int, pad: str) -> list[str]:
        name = self.fresh("w")
        self.scopes[-1][name] = Var(name, "i64", mutable=False)
        head = [f"{pad}{name} = 0", f"{pad}while {name} < {self.r.randint(1, 3)} and {self.cond(2)}:"]
        self.loops += 1
        body = [f"{pad}    {name} += 1", *self.block(depth + 1, pad + "    ", first_store=self.chance(0.5))]
        self.loops -= 1
        return head + body

    # ------------------------------------------------------------------ local arrays
    def private_arrays(self, pad: str) -> list[str]:
        """Sometimes kp.local arrays at the top of the grid body, then read and written in it."""
        if self.elementwise or not self.chance(0.25):
            return []
        self.flags.add("local-array")
        lines = []
        for _ in range(self.r.choice([1, 1, 2])):
            shape = tuple(self.r.randint(1, 4) for _ in range(self.r.choice([1, 1, 2, 3])))
            spec = ArgSpec(self.fresh("l"), self.r.choice(ALL), "local", shape)
            spec.value = "taint" if self.chance(0.5) else "exact"
            self.private.append(spec)
            extents = str(shape[0]) if len(shape) == 1 and self.chance(0.5) else f"({', '.join(map(str, shape))},)"
            lines.append(f"{pad}{spec.name} = kp.local({kp_type(spec.t)}, {extents})")
        return lines

    # ------------------------------------------------------------------ reductions
    def plan_reductions(self) -> None:
        """Sometimes one or two reductions, each with a result array the epilogue writes."""
        if self.elementwise or not self.chance(0.3):
            return
        self.flags.add("reduction")
        for _ in range(self.r.choice([1, 1, 2])):
            t = self.r.choice(INTS + FLOATS)
            op = self.r.choice(["add", "add", "min", "max"])
            result = ArgSpec(self.fresh("s"), t, "result", (2,))
            self.args.append(result)
            self.reductions.append((self.fresh("r"), t, op, result))

    def reduction_starts(self, pad: str) -> list[str]:
        """The reductions' starting values (not visible to the grid: it may not read them)."""
        lines = []
        for name, t, op, _ in self.reductions:
            if op == "add" and t in FLOATS:
                # Float sums get terms with few significant bits, so any order gives the same sum.
                start = f"kp.{t}({self.r.choice(['0.0', '0.5', '1.5', '(-2.25)', '3.0', '0.25'])})"
            else:
                start = str(self.to_type(self.fit(self.value_for(t, 1, True), t), t))
            lines.append(f"{pad}{name} = {start}")
        return lines

    def reduce(self, pad: str, reduction: tuple[str, str, str, ArgSpec]) -> list[str]:
        """One point's contribution: ``r += v``, ``r = r + v``, ``r = min(r, v)``, ..."""
        name, t, op, _ = reduction
        if op == "add":
            if t in FLOATS:
                v = f"kp.i32(({self.expr('int', 1, True)}) % 7) - 3"  # small integers: exact sums
            else:
                v = str(self.fit(self.expr("int", 2, True), t))
            return [pad + self.r.choice([f"{name} += {v}", f"{name} = {name} + ({v})", f"{name} = ({v}) + {name}"])]
        v = str(self.to_type(self.fit(self.value_for(t, 2, True), t), t))  # min/max compute in the local's type
        return [pad + self.r.choice([f"{name} = {op}({name}, {v})", f"{name} = {op}({v}, {name})"])]

    def epilogue(self, pad: str) -> list[str]:
        """After the grid: each reduction into its result, and a value computed from it."""
        self.in_grid = False
        saved = self.scopes
        # Readable here: the prologue's locals the grid leaves alone, and the reductions.
        self.scopes = [{n: v for n, v in scope.items() if not v.mutable} for scope in saved]
        self.scopes.append({name: Var(name, t, mutable=False) for name, t, _, _ in self.reductions})
        lines = []
        for name, t, _, result in self.reductions:
            lines.append(f"{pad}{result.name}[0] = {name}")
            value = self.value_for(t, 2, True)
            if t in INTS and value.t in FLOATS:
                value = self.cast(value, t)
            if self.chance(0.5):
                lines += [f"{pad}if {self.cond(1)}:", f"{pad}    {result.name}[1] = {self.fit(value, t)}"]
                lines += [f"{pad}else:", f"{pad}    {result.name}[1] = {name}"]
            else:
                lines.append(f"{pad}{result.name}[1] = {self.fit(value, t)}")
        self.scopes = saved
        return lines

    # ------------------------------------------------------------------ the kernel
    def params(self) -> None:
        r = self.r
        for _ in range(r.randint(0, 3)):
            t = r.choice(ALL + INTS)
            if t == "bool":
                value: Any = r.random() < 0.5
            elif t in INTS:
                info = np.iinfo(DTYPES[t])
                value = r.choice(
                    [r.randint(0 if t[0] == "u" else -3, 12)] * 3 + [int(info.min), int(info.max), r.randint(0, 30)]
                )
            else:
                value = float(r.choice([0.5, -1.25, 3.0, 0.0, -0.0, 1e30, float("inf"), float("nan"), 2.75, 1e-40]))
            self.args.append(ArgSpec(self.fresh("p"), t, "scalar", value=value))
        for _ in range(r.randint(1, 3)):
            rank = r.randint(1, 3)
            shape = tuple(r.randint(1, [12, 8, 5][rank - 1]) for _ in range(rank))
            shape = (self.wide,) if self.elementwise and rank == 1 else shape
            profile = r.choice(["plain", "plain", "special", "ints"])
            self.args.append(ArgSpec(self.fresh("x"), self.array_type(), "in", shape, profile=profile))
        if r.random() < 0.04:
            self.args.append(ArgSpec(self.fresh("z"), r.choice(ALL), "shape-only", (0,) * r.randint(1, 2)))
            self.flags.add("zero-size")
        for _ in range(r.choice([0, 0, 1, 1, 2]) if r.random() < 0.4 and not self.elementwise else 0):
            rank = r.randint(1, 3)
            shape = tuple(r.randint(1, 5) for _ in range(rank))
            self.args.append(ArgSpec(self.fresh("a"), r.choice(INTS + FLOATS), "atomic", shape))

    def array_type(self) -> str:
        """An array's element type: any, and in elementwise kernels mostly a 4-byte one."""
        t = self.r.choice(ALL)
        return self.r.choice(["f32", "i32", "u32"]) if self.elementwise and self.chance(0.6) else t

    def outputs(self, g: int) -> None:
        r = self.r
        lead = tuple(r.randint(1, [24, 8, 5][g - 1]) for _ in range(g))
        if r.random() < 0.03:
            lead = (0, *lead[1:])
            self.flags.add("zero-size")
        wide = self.wide and lead[0] > 0
        if wide:
            lead = (self.wide,)
            self.flags.add("wide")
        for _ in range(r.choice([1, 1, 2])):
            rank = r.randint(g, 3)
            shape = lead + tuple(r.randint(1, 4) for _ in range(rank - g))
            shape = lead if wide else shape  # 1-D: the arrays the vector entry point takes
            spec = ArgSpec(self.fresh("o"), self.array_type(), "out", shape, profile=r.choice(["plain", "special"]))
            spec.value = "taint" if r.random() < 0.5 else "exact"
            self.args.append(spec)

    def extent_expr(self, depth: int) -> Ex:
        """An integer expression the device host can evaluate from the arguments."""
        r = self.r
        if depth <= 0 or r.random() < 0.35:
            pick = r.random()
            ints = [a for a in self.args if a.role == "scalar" and a.t in INTS]
            locals_ = [v for v in self.visible() if v.extent_ok]
            if pick < 0.35:
                return self.shape_ref(r.choice(self.arrays("in", "out", "atomic", "shape-only")))
            if pick < 0.55 and ints:
                a = r.choice(ints)
                return Ex(a.name, a.t)
            if pick < 0.7 and locals_:
                v = r.choice(locals_)
                return Ex(v.name, v.t)
            v = r.randint(-3, 20)
            return Ex(str(v) if v >= 0 else f"({v})", "i64", weak=True, value=v)
        op = r.choice(["+", "-", "*", "//", "%", "min", "max", "cast", "+"])
        if op == "cast":
            return self.cast(self.extent_expr(depth - 1), r.choice(INTS))
        a, b, t = self.combine(self.extent_expr(depth - 1), self.extent_expr(depth - 1))
        if op in ("min", "max"):
            return Ex(f"{op}({a}, {b})", t)
        return Ex(f"({a} {op} {b})", t)

    def extents(self, g: int) -> list[str]:
        out = self.arrays("out")[0]
        extents = []
        for d in range(g):
            shape = f"{out.name}.shape[{d}]"
            pick = self.r.random()
            if pick < 0.35:
                extents.append(shape)
            elif pick < 0.45:
                extents.append(self.r.choice([f"{shape} - 1", f"({shape} // 2)", f"kp.i32({shape})", f"{shape} - 0"]))
            else:
                extents.append(f"min({self.fit(self.extent_expr(2), 'i64')}, {shape})")
            if self.elementwise:
                extents[-1] = shape  # the inputs read at the grid point are as long as the output
        return extents

    def prologue(self, pad: str) -> list[str]:
        lines: list[str] = []
        self.mutable_prologue = self.chance(0.1)
        if self.mutable_prologue:
            self.flags.add("prologue-local-written-in-grid")
        for _ in range(self.r.choice([0, 1, 1, 2, 3])):
            if self.chance(0.5):
                name = self.fresh("n")
                e = self.fit(self.extent_expr(2), "i64")
                t = "i64" if e.weak else e.t
                self.scopes[-1][name] = Var(name, t, mutable=False, extent_ok=True)
                lines.append(f"{pad}{name} = {e}")
            else:
                lines += self.new_local(pad, prologue=True)
        if self.chance(0.06):
            saved, self.budget = self.budget, 2
            lines += self.maybe_local(1, pad)
            self.budget = saved
        if self.chance(0.25):
            saved, self.budget = self.budget, 3
            prior = self.mutable_prologue
            self.mutable_prologue = True
            for v in self.visible():
                if not v.extent_ok and v.name.startswith("t"):
                    v.mutable = True
            lines += self.statement(1, pad)
            for v in self.visible():
                if not v.extent_ok and v.name.startswith("t"):
                    v.mutable = prior
            self.mutable_prologue, self.budget = prior, saved
        ints = [a for a in self.args if a.role == "scalar" and a.t in INTS]
        if ints and self.chance(0.05):
            p = self.r.choice(ints)
            lines += [f"{pad}if {self.cond(1)}:", f"{pad}    {p.name} = {p.name} + 1"]
            self.flags.add("param-reassigned")
        return lines

    def kernel(self) -> Case:
        r = self.r
        g = r.choice([1, 1, 1, 2, 2, 3])
        # Some 1-D grids span several workgroups of a device's tiles (1024 points on Vulkan) and
        # a ragged rest, so that code for whole workgroups runs; most of them are elementwise
        # (no loops or local arrays, inputs of the grid's length read at the grid point), the
        # kernels Vulkan's vector entry point takes. Drawn from a stream of its own: the kernels
        # of other seeds stay as they were.
        sizes = random.Random(f"{self.seed}-sizes")
        self.wide = sizes.choice([1024, 1027, 2048, 2050, 3075]) if g == 1 and sizes.random() < 0.3 else 0
        self.elementwise = bool(self.wide) and sizes.random() < 0.7
        if self.elementwise:
            self.flags.add("elementwise")
        self.params()
        self.outputs(g)
        self.plan_reductions()
        r.shuffle(self.args)
        for a in self.args:
            if a.role == "scalar":
                self.scopes[0][a.name] = Var(a.name, a.t, mutable=False)
        name = f"kern_{self.seed}"
        if self.chance(0.15):
            # A generic kernel: one type of its parameters written as T, specialised to it.
            self.generic = r.choice([a.t for a in self.args])
            self.flags.add("generic")
        params = ", ".join(f"{a.name}: {'T' if a.t == self.generic else kp_type(a.t)}{_dims(a)}" for a in self.args)
        pad = "    "
        self.budget = r.randint(4, 18)
        if self.elementwise:
            self.budget = min(self.budget, 2)
        lines = self.prologue(pad)
        lines += self.reduction_starts(pad)
        extents = self.extents(g)
        self.grid_vars = [f"i{d}" for d in range(g)]
        grid = f"{pad}for {', '.join(self.grid_vars)} in kp.grid({', '.join(extents)}):"
        self.in_grid = True
        self.scopes.append({v: Var(v, "i64", mutable=False) for v in self.grid_vars})
        body = self.private_arrays(pad * 2)
        body += self.block(0, pad * 2)
        for out in self.arrays("out"):
            target = f"{out.name}[{self.own_index(out)}]"
            body.append(f"{pad * 2}{target} = {self.value_for(out.t, 2, out.value != 'taint')}")
        for reduction in self.reductions:  # every reduction gets at least one contribution
            body += self.reduce(pad * 2, reduction)
        self.scopes.pop()
        epilogue = self.epilogue(pad) if self.reductions else []
        head = f"import math\n\nimport kernpack as kp\n\n{GLOBALS}\nT = kp.TypeVar('T')\n\n{HELPERS}\n\n"
        source = head + f"@kp.kernel\ndef {name}({params}):\n"
        source += "\n".join([*lines, grid, *body, *epilogue]) + "\n"
        return Case(self.seed, name, source, self.args, self.flags, self.generic)


def _dims(a: ArgSpec) -> str:
    return "" if a.shape is None else "[" + ", ".join(":" * len(a.shape)) + "]"


def generate(seed: int) -> Case:
    """The kernel and arguments of ``seed`` (the same on every machine and run)."""
    return _Gen(seed).kernel()


def load_kernel(case: Case, directory: str | Path) -> Any:
    """Write the case's module to ``directory`` and import it: the front end reads kernels from files."""
    path = Path(directory) / f"{case.name}.py"
    path.write_text(case.source)
    module_name = f"difftest_{case.name}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(module_name, None)
    kernel = getattr(module, case.name)
    if case.generic:
        kernel = kernel.specialize(T=getattr(kp, "bool_" if case.generic == "bool" else case.generic))
    return kernel
