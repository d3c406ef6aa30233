"""C prototypes as signatures."""

from __future__ import annotations

import numpy as np
import pytest

from kernpack import ArgumentError, Signature


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("void vadd(const float *a, const float *b, float *c, int64_t n)", None),
        (
            "double f(unsigned int, long long n, void *p, const double* restrict q);",
            "double f(uint32_t arg0, int64_t n, void *p, const double *q)",
        ),
        ("int g(void)", "int32_t g(void)"),
        ("_Bool h(bool x, size_t n)", "bool h(bool x, uint64_t n)"),
        ("  uint8_t  spaced ( uint8_t * restrict  buf )  ", "uint8_t spaced(uint8_t *buf)"),
    ],
)
def test_parse_and_print(text, canonical):
    sig = Signature.parse(text)
    assert str(sig) == (canonical or text)
    assert Signature.parse(str(sig)) == sig


def test_params_know_dtype_and_direction():
    sig = Signature.parse("void f(const float *x, double *y, int32_t n, void *any)")
    x, y, n, any_ = sig.params
    assert (x.dtype, x.is_output) == (np.float32, False)
    assert (y.dtype, y.is_output) == (np.float64, True)
    assert (n.dtype, n.pointer) == (np.int32, False)
    assert any_.dtype is None and any_.is_output
    assert sig.cffi_type == "void(*)(void *, void *, int32_t, void *)"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nonsense", "cannot read"),
        ("void f(float **x)", "pointer to a pointer"),
        ("void f(struct s x)", "unsupported type"),
        ("void f(int a, int a)", "repeats a parameter name"),
        ("void f(void x)", "unsupported type"),
        ("long double f(void)", "not supported"),
    ],
)
def test_bad_prototypes(text, message):
    with pytest.raises(ArgumentError, match=message):
        Signature.parse(text)
