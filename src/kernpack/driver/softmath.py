"""Float math in software for targets without it (Vulkan): float64 exp, log, sin, cos, tanh; fma.

GLSL.std.450 has these functions for 16- and 32-bit floats only, so a Vulkan shader computes
them from float64 arithmetic and integer operations on the bits. The algorithms are those of
Sun's fdlibm (also in musl): a reduction to a small interval, a minimax polynomial there, and a
reconstruction; their published coefficients are used, and their accuracy (under 1 ulp).

Written for LLVM's SPIR-V backend and Mesa's lavapipe:

* straight-line code: every case is computed and the answer picked with ``select`` (no branches,
  so no structured-control-flow trouble), and no tables in memory;
* everything that touches subnormals or scales by a power of two is done on the integer bits,
  not by float multiplication, so the result is right even where a driver flushes subnormal
  float operands to zero;
* sin and cos reduce every argument above pi/4 with Payne and Hanek's method in 32-bit limbs of
  integer arithmetic (the bits of 2/pi are computed here, exactly, from Machin's formula), so
  the reduction is exact to about 2**-120 for every double up to 1.8e308.

The multiply-add (:func:`fma`) uses no float instruction at all: an exact 106-bit product of
the mantissas and one rounding, in 64-bit integer pairs.

Each function is emitted once per module as an internal function (``kp.f64.exp`` ...,
``kp.soft.fma.f32``) and called: see :func:`call` and :func:`fma`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import llvmlite.ir as ir

__all__ = ["FUNCTIONS", "call", "fma"]

_F64 = ir.DoubleType()
_I1, _I32, _I64 = ir.IntType(1), ir.IntType(32), ir.IntType(64)
_MASK32 = 0xFFFFFFFF


def _bits(value: int) -> float:
    """The double whose IEEE bits are ``value`` (the coefficients are given as bits: exact)."""
    return struct.unpack("<d", struct.pack("<Q", value))[0]


def _two_over_pi_bits(count: int) -> int:
    """floor(2/pi * 2**count), exactly: pi from Machin's formula in integers, with guard bits."""
    scale = 1 << (count + 64)

    def arctan_inverse(n: int) -> int:  # arctan(1/n) * scale, to a few units
        total, term, k, n2 = 0, scale // n, 1, n * n
        while term:
            total += term // k if (k // 2) % 2 == 0 else -(term // k)
            term //= n2
            k += 2
        return total

    pi = 16 * arctan_inverse(5) - 4 * arctan_inverse(239)  # pi * scale, error < 100 units
    return (2 * scale * (1 << (count + 64))) // pi >> 64


# Bits of 2/pi after the point, enough for x * 2/pi mod 4 to 190 fraction bits for every double
# (exponent up to 1023): see _reduce.
_TWO_OVER_PI_BITS = 1161
_TWO_OVER_PI = _two_over_pi_bits(_TWO_OVER_PI_BITS)
assert _TWO_OVER_PI >> (_TWO_OVER_PI_BITS - 48) == 0xA2F9836E4E44  # the known first digits
_TWO_OVER_PI_WORDS = [(_TWO_OVER_PI >> (64 * k)) & ((1 << 64) - 1) for k in range(20)]  # low word first


def _pi_over_two_fixed() -> int:
    """floor(pi/2 * 2**126), from the same 2/pi bits: (2**126 * 2**1161) // floor(2/pi * 2**1161)."""
    return (1 << (126 + _TWO_OVER_PI_BITS)) // _TWO_OVER_PI


_PIO2_FIXED = _pi_over_two_fixed()

# exp (fdlibm e_exp.c): ln2 split in a high part with 32 trailing zero bits (k * LN2_HI is exact
# for |k| < 2**20) and the rest.
_LN2_HI = _bits(0x3FE62E42FEE00000)
_LN2_LO = _bits(0x3DEA39EF35793C76)
_INV_LN2 = _bits(0x3FF71547652B82FE)
_EXP_P = [_bits(b) for b in (0x3FC555555555553E, 0xBF66C16C16BEBD93, 0x3F11566AAF25DE2C, 0xBEBBBD41C5D26BF1,
                             0x3E66376972BEA4D0)]  # fmt: skip
_EXP_OVERFLOW = _bits(0x40862E42FEFA39EF)  # 709.782712893384: above, exp(x) is inf
_EXP_UNDERFLOW = -745.13321910194110842  # below, exp(x) rounds to 0
# log (fdlibm e_log.c): log(1 + f) = f - hfsq + s * (hfsq + R(s*s)), s = f / (2 + f).
_LOG_LG = [_bits(b) for b in (0x3FE5555555555593, 0x3FD999999997FA04, 0x3FD2492494229359, 0x3FCC71C51D8E78AF,
                              0x3FC7466496CB03DE, 0x3FC39A09D078C69F, 0x3FC2F112DF3E5244)]  # fmt: skip
# expm1 (fdlibm s_expm1.c), for tanh.
_EXPM1_Q = [_bits(b) for b in (0xBFA11111111110F4, 0x3F5A01A019FE5585, 0xBF14CE199EAADBB7, 0x3ED0CFCA86E65239,
                               0xBE8AFDB76E09C32D)]  # fmt: skip
# sin and cos on [-pi/4, pi/4] (fdlibm k_sin.c, k_cos.c).
_SIN_S = [_bits(b) for b in (0xBFC5555555555549, 0x3F8111111110F8A6, 0xBF2A01A019C161D5, 0x3EC71DE357B1FE7D,
                             0xBE5AE5E68A2B9CEB, 0x3DE5D93A5ACFD57C)]  # fmt: skip
_COS_C = [_bits(b) for b in (0x3FA555555555554C, 0xBF56C16C16C15177, 0x3EFA01A019CB1590, 0xBE927E4F809C52AD,
                             0x3E21EE9EBDB4B1C4, 0xBDA8FAE9BE8838D4)]  # fmt: skip
_PI_OVER_4_BITS = 0x3FE921FB54442D18


class _Emit:
    """Shorthands over an IRBuilder for float64 and 64-bit integer code."""

    def __init__(self, b: ir.IRBuilder) -> None:
        self.b = b

    # float64
    def f(self, v: float) -> ir.Constant:
        return ir.Constant(_F64, v)

    def add(self, x: ir.Value, y: ir.Value) -> ir.Value:
        return self.b.fadd(x, y)

    def sub(self, x: ir.Value, y: ir.Value) -> ir.Value:
        return self.b.fsub(x, y)

    def mul(self, x: ir.Value, y: ir.Value) -> ir.Value:
        return self.b.fmul(x, y)

    def div(self, x: ir.Value, y: ir.Value) -> ir.Value:
        return self.b.fdiv(x, y)

    def poly(self, x: ir.Value, coefficients: list[float]) -> ir.Value:
        """c0 + x * (c1 + x * (...)), by Horner's rule."""
        acc = self.f(coefficients[-1])
        for c in reversed(coefficients[:-1]):
            acc = self.add(self.f(c), self.mul(x, acc))
        return acc

    def fcmp(self, op: str, x: ir.Value, y: ir.Value) -> ir.Value:
        return self.b.fcmp_ordered(op, x, y)

    def sel(self, cond: ir.Value, x: ir.Value, y: ir.Value) -> ir.Value:
        return self.b.select(cond, x, y)

    def as_int(self, x: ir.Value) -> ir.Value:
        return self.b.bitcast(x, _I64)

    def as_float(self, x: ir.Value) -> ir.Value:
        return self.b.bitcast(x, _F64)

    # 64-bit integers
    def i(self, v: int) -> ir.Constant:
        return ir.Constant(_I64, v & ((1 << 64) - 1))

    def _int(self, y: ir.Value | int) -> ir.Value:
        return self.i(y) if isinstance(y, int) else y

    def and_(self, x: ir.Value, y: ir.Value | int) -> ir.Value:
        return self.b.and_(x, self._int(y))

    def or_(self, x: ir.Value, y: ir.Value | int) -> ir.Value:
        return self.b.or_(x, self._int(y))

    def iadd(self, x: ir.Value, y: ir.Value | int) -> ir.Value:
        return self.b.add(x, self._int(y))

    def isub(self, x: ir.Value, y: ir.Value | int) -> ir.Value:
        return self.b.sub(x, self._int(y))

    def imul(self, x: ir.Value, y: ir.Value | int) -> ir.Value:
        return self.b.mul(x, self._int(y))

    def shl(self, x: ir.Value, y: ir.Value | int) -> ir.Value:
        return self.b.shl(x, self._int(y))

    def shr(self, x: ir.Value, y: ir.Value | int) -> ir.Value:
        return self.b.lshr(x, self._int(y))

    def icmp(self, op: str, x: ir.Value, y: ir.Value | int) -> ir.Value:
        return self.b.icmp_unsigned(op, x, self._int(y))

    def scmp(self, op: str, x: ir.Value, y: ir.Value | int) -> ir.Value:
        return self.b.icmp_signed(op, x, self._int(y))

    def pow2(self, k: ir.Value) -> ir.Value:
        """2**k as a double, for a normal power (-1022 <= k <= 1023), made from the bits."""
        return self.as_float(self.shl(self.iadd(k, 1023), 52))

    def magnitude(self, x: ir.Value) -> ir.Value:
        """The bits of |x|."""
        return self.and_(self.as_int(x), (1 << 63) - 1)


# ----------------------------------------------------------------------------------- exp
def _exp(e: _Emit, x: ir.Value) -> ir.Value:
    """exp(x): fdlibm's e_exp.c without branches, the scaling by 2**k done on the bits.

    x = k ln2 + r with |r| <= ln2/2, k the nearest integer to x/ln2; exp(r) from a degree-5
    minimax rational form; exp(x) = 2**k exp(r). For results below the normal range the
    mantissa is shifted right and rounded to nearest even in integers (a float multiplication
    by 2**-1000 would flush to zero where the driver flushes subnormals).
    """
    mag = e.magnitude(x)
    xc = e.sel(e.fcmp("<", x, e.f(-746.0)), e.f(-746.0), e.sel(e.fcmp(">", x, e.f(710.0)), e.f(710.0), x))
    half = e.sel(e.fcmp("<", xc, e.f(0.0)), e.f(-0.5), e.f(0.5))
    k = e.b.fptosi(e.add(e.mul(xc, e.f(_INV_LN2)), half), _I64)  # (i32 and sext: lavapipe got k wrong)
    t = e.b.sitofp(k, _F64)
    hi = e.sub(xc, e.mul(t, e.f(_LN2_HI)))
    lo = e.mul(t, e.f(_LN2_LO))
    r = e.sub(hi, lo)
    r2 = e.mul(r, r)
    c = e.sub(r, e.mul(r2, e.poly(r2, _EXP_P)))
    y = e.sub(e.f(1.0), e.sub(e.sub(lo, e.div(e.mul(r, c), e.sub(e.f(2.0), c))), hi))  # exp(r), in [0.7, 1.5]
    ybits = e.as_int(y)
    normal = e.as_float(e.iadd(ybits, e.shl(k, 52)))  # k >= -1021: add k to the exponent
    # k < -1021: result mantissa = round(M * 2**-shift), M = y's 53-bit integer mantissa.
    ey = e.isub(e.shr(ybits, 52), 1023)  # -1 or 0
    shift = e.isub(e.isub(e.i(-1022), ey), k)  # >= 0 there
    shift = e.sel(e.scmp(">", shift, 63), e.i(63), e.sel(e.scmp("<", shift, 0), e.i(0), shift))
    m = e.or_(e.and_(ybits, (1 << 52) - 1), 1 << 52)
    # Round half to even: g = m >> (shift - 1) holds the round bit, the bits below it are sticky.
    # (Shifts of a variable only: lavapipe got 1 << shift wrong, a constant shifted by a variable.)
    at_least_1 = e.sel(e.icmp("==", shift, 0), e.i(1), shift)
    q = e.shr(m, at_least_1)
    g = e.shr(m, e.isub(at_least_1, 1))
    sticky = e.icmp("!=", m, e.shl(g, e.isub(at_least_1, 1)))
    up = e.b.and_(e.icmp("!=", e.and_(g, 1), 0), e.b.or_(sticky, e.icmp("!=", e.and_(q, 1), 0)))
    q = e.iadd(q, e.b.zext(up, _I64))
    tiny = e.as_float(e.sel(e.icmp("==", shift, 0), m, q))
    result = e.sel(e.scmp(">=", k, -1021), normal, tiny)
    result = e.sel(e.fcmp(">", x, e.f(_EXP_OVERFLOW)), e.f(float("inf")), result)
    result = e.sel(e.fcmp("<", x, e.f(_EXP_UNDERFLOW)), e.f(0.0), result)
    result = e.sel(e.icmp("<", mag, 0x3C90000000000000), e.f(1.0), result)  # |x| < 2**-54 (subnormal too)
    return e.sel(e.icmp(">", mag, 0x7FF0000000000000), x, result)  # NaN


# ----------------------------------------------------------------------------------- log
def _log(e: _Emit, x: ir.Value) -> ir.Value:
    """log(x): fdlibm's e_log.c without branches.

    x = 2**k (1 + f) with sqrt(2)/2 <= 1 + f < sqrt(2); with s = f / (2 + f),
    log(1 + f) = f - f*f/2 + s (f*f/2 + R(s*s)), R a degree-14 minimax polynomial, and
    log(x) = k ln2_hi + (log(1 + f) + k ln2_lo). A subnormal x = m * 2**-1074 is normalized by
    converting its integer mantissa m to a double (exact) rather than by a float multiplication.
    """
    bits = e.as_int(x)
    subnormal = e.icmp("<", bits, 1 << 52)  # also +0 (handled below); negatives are >= 2**63
    normalized = e.as_int(e.b.uitofp(bits, _F64))  # m exactly, for a subnormal
    bits = e.sel(subnormal, normalized, bits)
    k = e.isub(e.shr(bits, 52), e.sel(subnormal, e.i(1023 + 1074), e.i(1023)))
    hx = e.and_(e.shr(bits, 32), 0x000FFFFF)  # high word of the mantissa
    i = e.and_(e.iadd(hx, 0x95F64), 0x100000)  # 0x100000 where the mantissa exceeds sqrt(2)
    xr = e.as_float(e.or_(e.shl(e.or_(hx, e.b.xor(i, e.i(0x3FF00000))), 32), e.and_(bits, _MASK32)))
    k = e.iadd(k, e.shr(i, 20))
    f = e.sub(xr, e.f(1.0))
    dk = e.b.sitofp(k, _F64)
    s = e.div(f, e.add(e.f(2.0), f))
    z = e.mul(s, s)
    w = e.mul(z, z)
    t1 = e.mul(w, e.add(e.f(_LOG_LG[1]), e.mul(w, e.add(e.f(_LOG_LG[3]), e.mul(w, e.f(_LOG_LG[5]))))))
    t2 = e.mul(z, e.add(e.f(_LOG_LG[0]), e.mul(w, e.poly(w, [_LOG_LG[2], _LOG_LG[4], _LOG_LG[6]]))))
    r = e.add(t2, t1)
    big = e.b.or_(e.scmp(">", e.isub(hx, 0x6147A), 0), e.scmp(">", e.isub(e.i(0x6B851), hx), 0))
    hfsq = e.mul(e.mul(e.f(0.5), f), f)
    with_hfsq = e.sub(e.sub(hfsq, e.add(e.mul(s, e.add(hfsq, r)), e.mul(dk, e.f(_LN2_LO)))), f)
    without = e.sub(e.sub(e.mul(s, e.sub(f, r)), e.mul(dk, e.f(_LN2_LO))), f)
    result = e.sub(e.mul(dk, e.f(_LN2_HI)), e.sel(big, with_hfsq, without))
    raw = e.as_int(x)
    result = e.sel(e.icmp("==", raw, 0x7FF0000000000000), x, result)  # +inf
    result = e.sel(e.icmp("==", e.magnitude(x), 0), e.f(float("-inf")), result)  # +-0
    nan = e.b.or_(e.icmp(">", e.magnitude(x), 0x7FF0000000000000), e.b.and_(
        e.icmp(">=", raw, 1 << 63), e.icmp("!=", e.magnitude(x), 0)))  # fmt: skip
    return e.sel(nan, e.f(float("nan")), result)


# ----------------------------------------------------------------------------------- tanh
def _expm1(e: _Emit, x: ir.Value) -> ir.Value:
    """exp(x) - 1 for -2 <= x <= 44: fdlibm's s_expm1.c without branches (tanh's helper).

    x = k ln2 + r (hi - lo, with c the rounding error of hi - lo), expm1(r) from a rational
    form in r*r/2, then the reconstructions of fdlibm for each k, picked by select.
    """
    half = e.as_float(e.or_(e.and_(e.as_int(x), 1 << 63), 0x3FE0000000000000))  # +-0.5, x's sign
    k = e.b.fptosi(e.add(e.mul(x, e.f(_INV_LN2)), half), _I64)  # (i32 and sext: lavapipe got k wrong)
    t = e.b.sitofp(k, _F64)
    hi = e.sub(x, e.mul(t, e.f(_LN2_HI)))
    lo = e.mul(t, e.f(_LN2_LO))
    r = e.sub(hi, lo)
    c = e.sub(e.sub(hi, r), lo)
    hfx = e.mul(e.f(0.5), r)
    hxs = e.mul(r, hfx)
    r1 = e.add(e.f(1.0), e.mul(hxs, e.poly(hxs, _EXPM1_Q)))
    t3 = e.sub(e.f(3.0), e.mul(r1, hfx))
    ee = e.mul(hxs, e.div(e.sub(r1, t3), e.sub(e.f(6.0), e.mul(r, t3))))
    k0 = e.sub(r, e.sub(e.mul(r, ee), hxs))
    ee = e.sub(e.sub(e.mul(r, e.sub(ee, c)), c), hxs)
    km1 = e.sub(e.mul(e.f(0.5), e.sub(r, ee)), e.f(0.5))
    k1 = e.sel(e.fcmp("<", r, e.f(-0.25)), e.mul(e.f(-2.0), e.sub(ee, e.add(r, e.f(0.5)))),
               e.add(e.f(1.0), e.mul(e.f(2.0), e.sub(r, ee))))  # fmt: skip
    twopk = e.pow2(k)
    large = e.sub(e.mul(e.sub(e.f(1.0), e.sub(ee, r)), twopk), e.f(1.0))  # k <= -2 or k > 56
    two_mk = e.pow2(e.isub(e.i(0), k))  # 2**-k, exact
    below20 = e.mul(e.sub(e.sub(e.f(1.0), two_mk), e.sub(ee, r)), twopk)  # k < 20: (1 - 2**-k) exact
    above20 = e.mul(e.add(e.sub(r, e.add(ee, two_mk)), e.f(1.0)), twopk)
    result = e.sel(e.scmp("<", k, 20), below20, above20)
    result = e.sel(e.b.or_(e.scmp("<=", k, -2), e.scmp(">", k, 56)), large, result)
    result = e.sel(e.icmp("==", k, 1), k1, result)
    result = e.sel(e.icmp("==", k, -1), km1, result)
    return e.sel(e.icmp("==", k, 0), k0, result)


def _tanh(e: _Emit, x: ir.Value) -> ir.Value:
    """tanh(x): fdlibm's s_tanh.c without branches.

    |x| >= 1: 1 - 2 / (expm1(2|x|) + 2); |x| < 1: -t / (t + 2) with t = expm1(-2|x|), which
    keeps the relative accuracy near 0; |x| >= 22: +-1; |x| < 2**-55: x itself (so -0.0, and
    subnormals even where a driver flushes them).
    """
    mag = e.magnitude(x)
    ax = e.as_float(e.sel(e.icmp(">", mag, 0x4040000000000000), e.i(0x4040000000000000), mag))  # min(|x|, 32)
    tb = _expm1(e, e.mul(e.f(2.0), ax))
    big = e.sub(e.f(1.0), e.div(e.f(2.0), e.add(tb, e.f(2.0))))
    ax1 = e.as_float(e.sel(e.icmp(">", mag, 0x3FF0000000000000), e.i(0x3FF0000000000000), mag))  # min(|x|, 1)
    ts = _expm1(e, e.mul(e.f(-2.0), ax1))
    small = e.div(e.b.fneg(ts), e.add(ts, e.f(2.0)))
    z = e.sel(e.icmp(">=", mag, 0x3FF0000000000000), big, small)
    z = e.sel(e.icmp(">=", mag, 0x4036000000000000), e.f(1.0), z)
    signed = e.as_float(e.or_(e.as_int(z), e.and_(e.as_int(x), 1 << 63)))
    signed = e.sel(e.icmp("<", mag, 0x3C80000000000000), x, signed)
    return e.sel(e.icmp(">", mag, 0x7FF0000000000000), x, signed)  # NaN


# ----------------------------------------------------------------------------------- sin, cos
def _mul_limbs(e: _Emit, a: list[ir.Value], b: list[ir.Value]) -> list[ir.Value]:
    """The product of two little-endian numbers in 32-bit limbs (each an i64 below 2**32)."""
    r: list[ir.Value] = [e.i(0)] * (len(a) + len(b))
    for i, ai in enumerate(a):
        carry = e.i(0)
        for j, bj in enumerate(b):
            t = e.iadd(e.iadd(e.imul(ai, bj), r[i + j]), carry)  # < 2**64: no overflow
            r[i + j] = e.and_(t, _MASK32)
            carry = e.shr(t, 32)
        r[i + len(b)] = carry
    return r


def _limbs(e: _Emit, words: list[ir.Value]) -> list[ir.Value]:
    """64-bit words (low first) as 32-bit limbs (low first)."""
    out: list[ir.Value] = []
    for w in words:
        out += [e.and_(w, _MASK32), e.shr(w, 32)]
    return out


def _reduce(e: _Emit, mag: ir.Value) -> tuple[ir.Value, ir.Value, ir.Value]:
    """|x| = n pi/2 + y, |y| <= pi/4: (n mod 4 as i64, y_hi, y_lo) for pi/4 < |x| < inf.

    Payne and Hanek: with |x| = m 2**s (m the 53-bit integer mantissa), only the bits of 2/pi
    from 2**-(s-1) to 2**-(s+190) matter for |x| 2/pi mod 4 to 190 fraction bits (the higher
    ones give multiples of 4). That 192-bit window W is cut from the 1161 bits of 2/pi with
    shifts and selects (no memory); m W is a 245-bit integer: its bits 190-191 are n, the 128
    bits below them the fraction f, rounded to the nearest quadrant (|f| <= 1/2). Then
    y = f pi/2 is formed, still in integers (128-bit pi/2), normalized by a branchless
    leading-zero count and cut into two doubles. The error is below 2**-120 absolute, while
    the smallest |y| of any double is about 2**-61: y is exact to far more than 53 bits.
    """
    exponent = e.shr(mag, 52)  # biased; >= 1022 here
    m = e.or_(e.and_(mag, (1 << 52) - 1), 1 << 52)
    # s = exponent - 1075; the window is bits [shift, shift + 192) of _TWO_OVER_PI, shift = 971 - s.
    shift = e.isub(e.i(971 + 1075), exponent)
    word, bit = e.shr(shift, 6), e.and_(shift, 63)
    picked: list[ir.Value] = []
    for offset in range(4):
        v = e.i(0)
        for j in range(17):
            v = e.sel(e.icmp("==", word, j), e.i(_TWO_OVER_PI_WORDS[j + offset]), v)
        picked.append(v)
    back = e.isub(e.i(63), bit)
    window = [e.or_(e.shr(picked[n], bit), e.shl(e.shl(picked[n + 1], 1), back)) for n in range(3)]
    r = _mul_limbs(e, [e.and_(m, _MASK32), e.shr(m, 32)], _limbs(e, window))
    n = e.and_(e.shr(r[5], 30), 3)
    f_hi = e.or_(e.or_(e.shl(e.and_(r[5], 0x3FFFFFFF), 34), e.shl(r[4], 2)), e.shr(r[3], 30))
    f_lo = e.or_(e.or_(e.shl(e.and_(r[3], 0x3FFFFFFF), 34), e.shl(r[2], 2)), e.shr(r[1], 30))
    # f >= 1/2: the nearest quadrant is n + 1, and |f - 1| = 2**128 - F.
    up = e.icmp("!=", e.shr(f_hi, 63), 0)
    n = e.and_(e.sel(up, e.iadd(n, 1), n), 3)
    neg_lo = e.isub(e.i(0), f_lo)
    neg_hi = e.iadd(e.b.xor(f_hi, e.i(-1)), e.b.zext(e.icmp("==", f_lo, 0), _I64))
    f_hi, f_lo = e.sel(up, neg_hi, f_hi), e.sel(up, neg_lo, f_lo)
    negative = up
    # y = |f| pi/2 as a 128-bit fixed-point number Y / 2**126.
    p = [e.i((_PIO2_FIXED >> (32 * k)) & _MASK32) for k in range(4)]
    prod = _mul_limbs(e, _limbs(e, [f_lo, f_hi]), p)
    y_hi = e.or_(e.shl(prod[7], 32), prod[6])
    y_lo = e.or_(e.shl(prod[5], 32), prod[4])
    zeros = e.i(0)
    for step in (64, 32, 16, 8, 4, 2, 1):
        move = e.icmp("==", e.shr(y_hi, 64 - step), 0) if step < 64 else e.icmp("==", y_hi, 0)
        if step == 64:
            new_hi, new_lo = y_lo, e.i(0)
        else:
            new_hi, new_lo = e.or_(e.shl(y_hi, step), e.shr(y_lo, 64 - step)), e.shl(y_lo, step)
        y_hi, y_lo = e.sel(move, new_hi, y_hi), e.sel(move, new_lo, y_lo)
        zeros = e.sel(move, e.iadd(zeros, step), zeros)
    # Now y = (Y_hi:Y_lo / 2**127) 2**(1 - zeros), the top bit of y_hi set.
    power = e.isub(e.i(1), zeros)
    head = e.as_float(e.or_(e.shl(e.iadd(power, 1023), 52), e.and_(e.shr(y_hi, 11), (1 << 52) - 1)))
    rest = e.or_(e.shl(e.and_(y_hi, 0x7FF), 53), e.shr(y_lo, 11))  # the next 64 bits
    tail = e.mul(e.b.uitofp(rest, _F64), e.pow2(e.isub(power, 116)))
    head = e.sel(negative, e.b.fneg(head), head)
    tail = e.sel(negative, e.b.fneg(tail), tail)
    return n, head, tail


def _kernel_sin(e: _Emit, x: ir.Value, y: ir.Value) -> ir.Value:
    """sin(x + y) for |x| <= pi/4, y the tail of x (fdlibm k_sin.c): x + x**3 S(x*x)."""
    z = e.mul(x, x)
    v = e.mul(z, x)
    r = e.poly(z, _SIN_S[1:])
    inner = e.sub(e.sub(e.mul(z, e.sub(e.mul(e.f(0.5), y), e.mul(v, r))), y), e.mul(v, e.f(_SIN_S[0])))
    return e.sub(x, inner)


def _kernel_cos(e: _Emit, x: ir.Value, y: ir.Value) -> ir.Value:
    """cos(x + y) for |x| <= pi/4 (fdlibm k_cos.c): 1 - x*x/2 + x**4 C(x*x).

    The 1 - x*x/2 is split as (1 - qx) - (x*x/2 - qx), qx about x*x/4 for |x| >= 0.3, to keep
    the rounding error of the subtraction small.
    """
    mag = e.magnitude(x)
    z = e.mul(x, x)
    r = e.mul(z, e.poly(z, _COS_C))
    qx = e.as_float(e.shl(e.shr(e.isub(mag, 0x0020000000000000), 32), 32))  # x/4, high word only
    qx = e.sel(e.icmp(">", mag, 0x3FE9000000000000), e.f(0.28125), qx)
    qx = e.sel(e.icmp("<", mag, 0x3FD3333300000000), e.f(0.0), qx)
    hz = e.sub(e.mul(e.f(0.5), z), qx)
    a = e.sub(e.f(1.0), qx)
    return e.sub(a, e.sub(hz, e.sub(e.mul(z, r), e.mul(x, y))))


def _sincos(e: _Emit, x: ir.Value, cosine: bool) -> ir.Value:
    """sin(x) or cos(x): |x| reduced above pi/4 (:func:`_reduce`), then the quadrant's kernel.

    sin is odd (its sign is x's); tiny arguments give x and 1 exactly (signed zeros, and
    subnormals even where a driver flushes them).
    """
    mag = e.magnitude(x)
    small = e.icmp("<=", mag, _PI_OVER_4_BITS)
    n, y_hi, y_lo = _reduce(e, e.sel(small, e.i(0x3FF0000000000000), mag))
    n = e.sel(small, e.i(0), n)
    y_hi = e.sel(small, e.as_float(mag), y_hi)
    y_lo = e.sel(small, e.f(0.0), y_lo)
    s = _kernel_sin(e, y_hi, y_lo)
    c = _kernel_cos(e, y_hi, y_lo)
    if cosine:
        n = e.and_(e.iadd(n, 1), 3)  # cos(x) = sin(x + pi/2)
    value = e.sel(e.icmp("==", e.and_(n, 1), 0), s, c)
    value = e.sel(e.icmp("==", e.and_(n, 2), 0), value, e.b.fneg(value))
    if cosine:
        value = e.sel(e.icmp("<", mag, 0x3E40000000000000), e.f(1.0), value)  # |x| < 2**-27
    else:
        value = e.as_float(e.b.xor(e.as_int(value), e.and_(e.as_int(x), 1 << 63)))
        value = e.sel(e.icmp("<", mag, 0x3E40000000000000), x, value)  # |x| < 2**-27: x, signed zero kept
    return e.sel(e.icmp(">=", mag, 0x7FF0000000000000), e.f(float("nan")), value)  # inf, NaN


FUNCTIONS: dict[str, Callable[[_Emit, ir.Value], ir.Value]] = {
    "exp": _exp,
    "log": _log,
    "sin": lambda e, x: _sincos(e, x, cosine=False),
    "cos": lambda e, x: _sincos(e, x, cosine=True),
    "tanh": _tanh,
}


def call(b: ir.IRBuilder, module: ir.Module, name: str, x: ir.Value) -> ir.Value:
    """``name``(x) for a float64 x: a call of the module's internal function ``kp.f64.<name>``.

    The function is emitted on first use: one copy per shader however often the kernel calls
    it, which keeps the shader (and its compile time) small.
    """
    symbol = f"kp.f64.{name}"
    fn = module.globals.get(symbol)
    if fn is None:
        fn = ir.Function(module, ir.FunctionType(_F64, [_F64]), name=symbol)
        fn.linkage = "internal"
        body = ir.IRBuilder(fn.append_basic_block("entry"))
        body.ret(FUNCTIONS[name](_Emit(body), fn.args[0]))
    return b.call(fn, [x])


# ----------------------------------------------------------------------------------- fma
# A fused multiply-add done wholly on the integer bits: Vulkan's Fma "may round twice" (and
# lavapipe's float64 one does), and a float-based emulation (Dekker's product, rounding to odd)
# would need scaling around overflow and underflow and subnormal operands kept by the driver.
# Here a*b is an exact 106-bit product and the sum is rounded once, ties to even, with no
# float instruction at all. 128-bit values are (hi, lo) pairs of i64.
_TOP = 125  # operands are normalized so their leading bit is bit 125: a carry fits, and 2 guard bits


def _shl128(e: _Emit, hi: ir.Value, lo: ir.Value, n: ir.Value) -> tuple[ir.Value, ir.Value]:
    """(hi, lo) << n for 0 <= n <= 127 (every shift amount kept within 0..63: LLVM's are poison past)."""
    m = e.and_(n, 63)
    spill = e.shr(e.shr(lo, 1), e.isub(e.i(63), m))  # lo >> (64 - m), 0 for m == 0
    small = e.icmp("<", n, 64)
    return (e.sel(small, e.or_(e.shl(hi, m), spill), e.shl(lo, m)), e.sel(small, e.shl(lo, m), e.i(0)))


def _shr128(e: _Emit, hi: ir.Value, lo: ir.Value, n: ir.Value) -> tuple[ir.Value, ir.Value]:
    """(hi, lo) >> n (logical) for 0 <= n <= 127."""
    m = e.and_(n, 63)
    spill = e.shl(e.shl(hi, 1), e.isub(e.i(63), m))  # hi << (64 - m), 0 for m == 0
    small = e.icmp("<", n, 64)
    return (e.sel(small, e.shr(hi, m), e.i(0)), e.sel(small, e.or_(e.shr(lo, m), spill), e.shr(hi, m)))


def _msb128(e: _Emit, hi: ir.Value, lo: ir.Value) -> ir.Value:
    """The index of the highest set bit of a nonzero (hi, lo), by binary search."""
    upper = e.icmp("!=", hi, 0)
    v, k = e.sel(upper, hi, lo), e.sel(upper, e.i(64), e.i(0))
    for step in (32, 16, 8, 4, 2, 1):
        above = e.icmp("!=", e.shr(v, step), 0)
        v, k = e.sel(above, e.shr(v, step), v), e.sel(above, e.iadd(k, step), k)
    return k


def _normalize(e: _Emit, hi: ir.Value, lo: ir.Value, exp: ir.Value) -> tuple[ir.Value, ir.Value, ir.Value]:
    """(hi, lo) * 2**exp with the leading bit moved to bit _TOP (the value unchanged)."""
    shift = e.isub(e.i(_TOP), _msb128(e, hi, lo))
    hi, lo = _shl128(e, hi, lo, shift)
    return hi, lo, e.isub(exp, shift)


def _fma_bits(e: _Emit, bits: list[ir.Value], precision: int, bias: int, width: int) -> ir.Value:
    """The bits of fma(a, b, c), from theirs (i64, zero-extended), for an IEEE binary format.

    ``precision`` counts the implicit bit (53 or 24); ``width`` is the format's (64 or 32).
    """
    frac_bits, top_exp = precision - 1, (1 << (width - precision)) - 1  # exponent field of inf/NaN
    inf_bits = top_exp << frac_bits
    fields = []
    for x in bits:
        field = e.and_(e.shr(x, frac_bits), top_exp)
        fraction = e.and_(x, (1 << frac_bits) - 1)
        normal = e.icmp("!=", field, 0)
        mantissa = e.sel(normal, e.or_(fraction, 1 << frac_bits), fraction)
        exp = e.isub(e.sel(normal, field, e.i(1)), bias + frac_bits)  # x = mantissa * 2**exp
        fields.append((e.shr(x, width - 1), field, fraction, mantissa, exp))
    (sa, fa, ra, ma, ea), (sb, fb, rb, mb, eb), (sc, fc, rc, mc, ec) = fields
    sp = e.b.xor(sa, sb)

    # Special operands, on the bits (a driver may flush a subnormal float operand to zero).
    def is_nan(f: ir.Value, r: ir.Value) -> ir.Value:
        return e.b.and_(e.icmp("==", f, top_exp), e.icmp("!=", r, 0))

    def is_inf(f: ir.Value, r: ir.Value) -> ir.Value:
        return e.b.and_(e.icmp("==", f, top_exp), e.icmp("==", r, 0))

    a_zero, b_zero, c_zero = (e.icmp("==", m, 0) for m in (ma, mb, mc))
    product_inf = e.b.or_(is_inf(fa, ra), is_inf(fb, rb))
    c_inf = is_inf(fc, rc)
    nan = e.b.or_(e.b.or_(is_nan(fa, ra), is_nan(fb, rb)), is_nan(fc, rc))
    nan = e.b.or_(nan, e.b.and_(product_inf, e.b.or_(a_zero, b_zero)))  # inf * 0
    nan = e.b.or_(nan, e.b.and_(e.b.and_(product_inf, c_inf), e.icmp("!=", sp, sc)))  # inf - inf
    special = e.sel(product_inf, e.or_(e.shl(sp, width - 1), inf_bits), bits[2])  # an inf product, else c (inf)
    special = e.sel(nan, e.i(inf_bits | (1 << (frac_bits - 1))), special)
    is_special = e.b.or_(nan, e.b.or_(product_inf, c_inf))
    # A zero product: c, or a zero that is -0 only when both the product and c are -0.
    zero_product = e.sel(c_zero, e.shl(e.b.and_(sp, sc), width - 1), bits[2])

    # The exact product, 106 bits at most, from 32-bit limbs.
    limbs = _mul_limbs(e, _limbs(e, [ma]), _limbs(e, [mb]))
    p_hi, p_lo = e.or_(e.shl(limbs[3], 32), limbs[2]), e.or_(e.shl(limbs[1], 32), limbs[0])
    p_hi, p_lo, p_exp = _normalize(e, p_hi, p_lo, e.iadd(ea, eb))
    c_hi, c_lo, c_exp = _normalize(e, e.i(0), mc, ec)
    c_exp = e.sel(c_zero, e.i(-(1 << 40)), c_exp)  # a zero c lines up below everything: adds nothing
    c_hi, c_lo = e.sel(c_zero, e.i(0), c_hi), e.sel(c_zero, e.i(0), c_lo)

    # Line the smaller-exponent operand up with the other; what it loses is kept as a sticky bit
    # (bit 0), which is exact enough: bits are lost only when the exponents are 21 or more apart,
    # and then the sum loses at most one leading bit, its rounding position far above bit 0.
    swap = e.scmp("<", p_exp, c_exp)
    pairs = ((p_hi, c_hi), (p_lo, c_lo), (p_exp, c_exp), (sp, sc))
    big_hi, big_lo, big_exp, big_sign = (e.sel(swap, y, x) for x, y in pairs)
    sm_hi, sm_lo, sm_sign = (e.sel(swap, x, y) for x, y in (pairs[0], pairs[1], pairs[3]))
    distance = e.isub(big_exp, e.sel(swap, p_exp, c_exp))
    distance = e.sel(e.icmp(">", distance, 127), e.i(127), distance)
    lined_hi, lined_lo = _shr128(e, sm_hi, sm_lo, distance)
    back_hi, back_lo = _shl128(e, lined_hi, lined_lo, distance)
    lost = e.b.or_(e.icmp("!=", back_hi, sm_hi), e.icmp("!=", back_lo, sm_lo))
    sm_hi, sm_lo = lined_hi, e.or_(lined_lo, e.b.zext(lost, _I64))

    # Add, or subtract the smaller magnitude from the larger.
    carry = e.b.zext(e.icmp("<", e.iadd(big_lo, sm_lo), big_lo), _I64)
    sum_hi, sum_lo = e.iadd(e.iadd(big_hi, sm_hi), carry), e.iadd(big_lo, sm_lo)
    less = e.b.or_(e.icmp("<", big_hi, sm_hi), e.b.and_(e.icmp("==", big_hi, sm_hi), e.icmp("<", big_lo, sm_lo)))
    x_hi, x_lo = e.sel(less, sm_hi, big_hi), e.sel(less, sm_lo, big_lo)
    y_hi, y_lo = e.sel(less, big_hi, sm_hi), e.sel(less, big_lo, sm_lo)
    borrow = e.b.zext(e.icmp("<", x_lo, y_lo), _I64)
    diff_hi, diff_lo = e.isub(e.isub(x_hi, y_hi), borrow), e.isub(x_lo, y_lo)
    same = e.icmp("==", big_sign, sm_sign)
    s_hi, s_lo = e.sel(same, sum_hi, diff_hi), e.sel(same, sum_lo, diff_lo)
    sign = e.sel(same, big_sign, e.sel(less, sm_sign, big_sign))
    cancelled = e.b.and_(e.icmp("==", s_hi, 0), e.icmp("==", s_lo, 0))  # exactly 0: +0 (ties to even)

    # Round s * 2**big_exp to `precision` bits, or to the subnormal grid, whichever is coarser.
    msb = _msb128(e, s_hi, s_lo)
    result_exp = e.iadd(msb, big_exp)  # s * 2**big_exp lies in [2**result_exp, 2**(result_exp+1))
    drop = e.isub(msb, frac_bits)
    floor = e.isub(e.i(1 - bias - frac_bits), big_exp)  # the drop that puts the last bit at 2**(1-bias-frac_bits)
    drop = e.sel(e.scmp("<", drop, floor), floor, drop)
    exact = e.scmp("<=", drop, 0)  # no bits to drop: s < 2**precision, shifted up (exactly)
    up_lo = e.shl(s_lo, e.sel(exact, e.isub(e.i(0), drop), e.i(0)))
    keep = e.isub(drop, 1)  # keep one bit more than the result: the rounding bit
    keep = e.sel(e.scmp("<", keep, 0), e.i(0), e.sel(e.scmp(">", keep, 127), e.i(127), keep))
    kept_hi, kept_lo = _shr128(e, s_hi, s_lo, keep)
    back_hi, back_lo = _shl128(e, kept_hi, kept_lo, keep)
    sticky = e.b.or_(e.icmp("!=", back_hi, s_hi), e.icmp("!=", back_lo, s_lo))
    past = e.scmp(">", drop, 128)  # everything is below the rounding bit: it is 0
    kept_lo = e.sel(past, e.i(0), kept_lo)
    sticky = e.b.or_(sticky, past)
    mantissa = e.shr(kept_lo, 1)
    round_bit = e.icmp("!=", e.and_(kept_lo, 1), 0)
    odd = e.icmp("!=", e.and_(mantissa, 1), 0)
    mantissa = e.iadd(mantissa, e.b.zext(e.b.and_(round_bit, e.b.or_(sticky, odd)), _I64))
    mantissa = e.sel(exact, up_lo, mantissa)
    # A normal result carries its exponent above the mantissa's leading bit (a rounding carry
    # into 2**precision moves it up by one, to inf at the top); a subnormal one is the mantissa.
    normal = e.scmp(">=", result_exp, 1 - bias)
    biased = e.iadd(result_exp, bias - 1)
    overflow = e.scmp(">=", biased, top_exp - 1)  # result_exp above the largest exponent
    magnitude = e.sel(normal, e.iadd(e.shl(e.sel(overflow, e.i(0), biased), frac_bits), mantissa), mantissa)
    magnitude = e.sel(overflow, e.i(inf_bits), magnitude)
    result = e.or_(e.shl(sign, width - 1), magnitude)
    result = e.sel(cancelled, e.i(0), result)
    result = e.sel(e.b.or_(a_zero, b_zero), zero_product, result)
    return e.sel(is_special, special, result)


def fma(b: ir.IRBuilder, module: ir.Module, x: ir.Value, y: ir.Value, z: ir.Value) -> ir.Value:
    """``x * y + z`` rounded once, for float32 or float64 operands: a call of ``kp.soft.fma.f<bits>``."""
    t = x.type
    width = 64 if isinstance(t, ir.DoubleType) else 32
    symbol = f"kp.soft.fma.f{width}"
    fn = module.globals.get(symbol)
    if fn is None:
        fn = ir.Function(module, ir.FunctionType(t, [t, t, t]), name=symbol)
        fn.linkage = "internal"
        body = ir.IRBuilder(fn.append_basic_block("entry"))
        e = _Emit(body)
        int_type = ir.IntType(width)
        bits = [body.bitcast(a, int_type) for a in fn.args]
        bits = bits if width == 64 else [body.zext(x, _I64) for x in bits]
        precision, bias = (53, 1023) if width == 64 else (24, 127)
        result = _fma_bits(e, bits, precision, bias, width)
        body.ret(body.bitcast(result if width == 64 else body.trunc(result, int_type), t))
    return b.call(fn, [x, y, z])
