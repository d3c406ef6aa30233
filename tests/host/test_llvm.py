"""Kind llvm: parse, verify, optimize, JIT and call hand-written IR; write objects and IR."""

from __future__ import annotations

import subprocess
import threading

import llvmlite.ir as ir
import numpy as np
import pytest

import kernpack as kp
from tests.conftest import SCALARS_IR, SUM_IR, VADD_IR


@pytest.fixture(scope="module")
def vadd():
    return kp.llvm_module(VADD_IR, name="vadd_mod")


def test_vector_add(vadd):
    a = np.arange(1000, dtype=np.float32)
    b = np.linspace(0, 1, 1000, dtype=np.float32)
    out = np.empty_like(a)
    assert vadd["vadd"](a, b, out, a.size) is None
    np.testing.assert_array_equal(out, a + b)


def test_reduction_returns_a_python_float():
    mod = kp.llvm_module(SUM_IR)
    x = np.random.default_rng(0).random(10_001)
    result = mod["sum"](x, x.size)
    assert isinstance(result, float)
    assert result == pytest.approx(x.sum(), rel=1e-12)
    assert mod["sum"](x, 0) == 0.0


def test_scalar_parameters_and_results():
    mod = kp.llvm_module(SCALARS_IR)
    assert mod["axpb"](3, 0.5, 1.25) == pytest.approx(2.75)
    assert mod["axpb"](np.int64(2), np.float32(1.5), 1) == pytest.approx(4.0)
    assert mod["add_i32"](2**31 - 2, 1) == 2**31 - 1
    assert mod["is_positive"](1.0) is True
    assert mod["is_positive"](-1.0) is False
    # internal functions are not exported
    assert set(mod.function_names()) == {"axpb", "add_i32", "is_positive"}


def test_signatures_are_read_from_the_ir(vadd):
    assert str(vadd.signatures["vadd"]) == "void vadd(const float *a, const float *b, float *c, int64_t n)"
    assert str(kp.llvm_module(SUM_IR).signatures["sum"]) == "double sum(const double *x, int64_t n)"
    assert str(kp.llvm_module(SCALARS_IR).signatures["axpb"]) == "double axpb(int64_t k, double x, double b)"


def test_signature_inference_unnamed_atomics_and_conflicts():
    source = """
    define void @f(ptr %0, ptr %1, ptr %2, ptr %3, i64 %4) {
      %p = getelementptr inbounds float, ptr %0, i64 %4
      %v = load float, ptr %p
      %old = atomicrmw add ptr %1, i32 1 seq_cst
      store i64 7, ptr %2
      %q = getelementptr i8, ptr %3, i64 4
      %x = load i16, ptr %q
      %y = load double, ptr %3
      ret void
    }
    """
    sig = kp.llvm_module(source, opt_level=0).signatures["f"]
    assert str(sig) == "void f(const float *arg0, int32_t *arg1, int64_t *arg2, const void *arg3, int64_t arg4)"


def test_readonly_inference_holds_at_O0():
    mod = kp.llvm_module(VADD_IR, opt_level=0)
    assert str(mod.signatures["vadd"]) == "void vadd(const float *a, const float *b, float *c, int64_t n)"
    ro = np.ones(3, np.float32)
    ro.flags.writeable = False
    out = np.empty(3, np.float32)
    mod["vadd"](ro, ro, out, 3)
    np.testing.assert_array_equal(out, 2)


def test_explicit_signature_overrides_the_ir():
    bytes_ir = """
    define void @fill(ptr %p, i64 %n) {
      call void @llvm.memset.p0.i64(ptr %p, i8 7, i64 %n, i1 false)
      ret void
    }
    declare void @llvm.memset.p0.i64(ptr, i8, i64, i1)
    """
    untyped = kp.llvm_module(bytes_ir)
    assert str(untyped.signatures["fill"]) == "void fill(void *p, int64_t n)"
    buf = np.zeros(4, np.int32)  # void * accepts any dtype
    untyped["fill"](buf, buf.nbytes)
    assert (buf.view(np.uint8) == 7).all()
    typed = kp.llvm_module(bytes_ir, signatures=["void fill(uint8_t *p, uint64_t n)"])
    with pytest.raises(kp.ArgumentError, match="uint8 array, got an int32 array"):
        typed["fill"](buf, 4)
    with pytest.raises(kp.CompileError, match="does not define"):
        kp.llvm_module(bytes_ir, signatures=["void other(void)"])


def test_llvmlite_ir_module_and_bitcode_inputs(tmp_path):
    module = ir.Module(name="built")
    i64 = ir.IntType(64)
    fn = ir.Function(module, ir.FunctionType(i64, [i64, i64]), name="mul")
    builder = ir.IRBuilder(fn.append_basic_block())
    builder.ret(builder.mul(*fn.args))
    mod = kp.llvm_module(module)
    assert mod["mul"](6, 7) == 42
    bitcode = tmp_path / "m.bc"
    mod.write_to_file(bitcode)
    assert kp.llvm_module(bitcode.read_bytes())["mul"](3, 5) == 15


def test_jit_is_lazy_and_functions_are_cached(vadd):
    fresh = kp.llvm_module(VADD_IR)
    assert fresh._engine is None
    f = fresh["vadd"]
    assert fresh._engine is not None
    assert fresh["vadd"] is f
    assert f.address != 0


@pytest.mark.parametrize("fmt", ["o", "ll", "bc", "s"])
def test_write_to_file_formats(vadd, tmp_path, fmt):
    path = tmp_path / f"vadd.{fmt}"
    vadd.write_to_file(path)
    data = path.read_bytes()
    if fmt == "o":
        assert data[:4] == b"\x7fELF"
        symbols = subprocess.run(["nm", str(path)], capture_output=True, text=True, check=True).stdout
        assert " T vadd" in symbols
    elif fmt == "ll":
        assert b"define void @vadd" in data
    elif fmt == "bc":
        assert data[:4] == b"BC\xc0\xde"
    else:
        assert b"vadd:" in data
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left behind


def test_write_to_file_explicit_format_and_unknown_format(vadd, tmp_path):
    vadd.write_to_file(tmp_path / "noext", fmt="ll")
    assert "define void @vadd" in (tmp_path / "noext").read_text()
    with pytest.raises(kp.UnsupportedOperationError, match="formats: o, ll, bc, s"):
        vadd.write_to_file(tmp_path / "x.exe")
    assert not (tmp_path / "x.exe").exists()


def test_object_file_is_position_independent_and_links(vadd, tmp_path):
    obj = tmp_path / "vadd.o"
    vadd.write_to_file(obj)
    subprocess.run(["cc", "-shared", "-o", str(tmp_path / "libvadd.so"), str(obj)], check=True)


def test_inspect_source(vadd):
    assert "define void @vadd" in vadd.inspect_source()
    assert "vadd:" in vadd.inspect_source("s")
    with pytest.raises(kp.UnsupportedOperationError):
        vadd.inspect_source("ptx")


def test_cpu_generic_and_opt_levels():
    for level in (0, 1, 2, 3):
        mod = kp.llvm_module(VADD_IR, opt_level=level, cpu="generic")
        a = np.ones(17, np.float32)
        out = np.empty_like(a)
        mod["vadd"](a, a, out, 17)
        assert (out == 2).all()
    with pytest.raises(ValueError, match="opt_level"):
        kp.llvm_module(VADD_IR, opt_level=4)


def test_optimizer_vectorizes_the_loop():
    assert "<8 x float>" in kp.llvm_module(VADD_IR, cpu="x86-64-v3").inspect_source() or "x float>" in (
        kp.llvm_module(VADD_IR).inspect_source()
    )


# --------------------------------------------------------------------- error paths
@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("define i32 @f(i32 %x) {\n  ret i32 %y\n}", "use of undefined value '%y'"),
        ("this is not IR", "expected top-level entity"),
        ("define i32 @f() {\nentry:\n  br label %b\nb:\n  %z = add i32 %z, 1\n  ret i32 %z\n}", "PHI nodes"),
        (b"BC\xc0\xde garbage", "invalid LLVM bitcode"),
    ],
)
def test_invalid_ir_is_a_compile_error_with_llvms_message(source, message):
    with pytest.raises(kp.CompileError, match=message) as info:
        kp.llvm_module(source, name="broken")
    assert "broken" in str(info.value)


def test_foreign_triple_is_refused():
    nvptx = 'target triple = "nvptx64-nvidia-cuda"\ndefine void @k() {\n  ret void\n}'
    with pytest.raises(kp.CompileError, match="targets 'nvptx64-nvidia-cuda'"):
        kp.llvm_module(nvptx)


def test_wrong_type_of_source():
    with pytest.raises(TypeError, match=r"IR text, bitcode bytes or an llvmlite\.ir\.Module"):
        kp.llvm_module(42)


def test_function_with_unpassable_parameters_is_listed_but_refused():
    mod = kp.llvm_module("define <4 x float> @v(<4 x float> %x) {\n  ret <4 x float> %x\n}")
    assert mod.function_names() == ("v",)
    with pytest.raises(kp.UnsupportedOperationError, match="cannot be called from Python: it returns <4 x float>"):
        mod["v"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), r"takes 4 arguments \(a, b, c, n\) but 0 were given"),
        (("A", "B", "C", 1, 2), "but 5 were given"),
        (
            (np.ones(4), "b", "c", 4),
            r"argument 'a' \(parameter 1 of 4, const float \*a\): expected a C-contiguous "
            r"float32 array, got a float64 array",
        ),
        ((np.ones(4, np.float32), [1, 2], "c", 4), r"argument 'b'.*got list"),
        (
            (np.ones(4, np.float32), np.ones(4, np.float32), np.ones((4, 2), np.float32)[:, 0], 4),
            r"argument 'c'.*C-contiguous",
        ),
        (
            (np.ones(4, np.float32), np.ones(4, np.float32), np.ones(4, np.float32), 4.0),
            r"argument 'n'.*expected an integer",
        ),
        (
            (np.ones(4, np.float32), np.ones(4, np.float32), np.ones(4, np.float32), 2**64),
            r"argument 'n'.*does not fit in int64_t",
        ),
        ((np.ones(4, np.float32), np.ones(4, np.float32), np.ones(4, np.float32), True), r"argument 'n'.*bool"),
    ],
)
def test_bad_arguments_name_the_parameter(vadd, args, message):
    with pytest.raises(kp.ArgumentError, match=message) as info:
        vadd["vadd"](*args)
    assert isinstance(info.value, TypeError)


def test_a_strided_output_is_not_told_to_pass_a_copy(vadd):
    f32 = np.ones(4, np.float32)
    with pytest.raises(kp.ArgumentError) as info:
        vadd["vadd"](f32, f32, np.ones((4, 2), np.float32)[:, 0], 4)
    message = str(info.value)
    assert "writes through 'c'" in message and "copy the results back (c[...] = tmp)" in message
    assert "ascontiguousarray" not in message
    with pytest.raises(kp.ArgumentError, match=r"ascontiguousarray\(a\)"):
        vadd["vadd"](np.ones((4, 2), np.float32)[:, 0], f32, f32, 4)
    with pytest.raises(kp.ArgumentError, match="got an int64 array"):
        vadd["vadd"](np.ones(4, np.int64), f32, f32, 4)


def test_read_only_output_is_refused(vadd):
    a = np.ones(4, np.float32)
    out = np.ones(4, np.float32)
    out.flags.writeable = False
    with pytest.raises(kp.ArgumentError, match=r"argument 'c'.*read-only"):
        vadd["vadd"](a, a, out, 4)


def test_buffer_protocol_and_dlpack_arguments(vadd):
    import array

    a = array.array("f", [1.0, 2.0, 3.0])
    out = bytearray(12)
    vadd["vadd"](a, memoryview(a), memoryview(out).cast("f"), 3)
    np.testing.assert_array_equal(np.frombuffer(out, np.float32), [2, 4, 6])

    class Tensor:  # a minimal DLPack producer backed by numpy
        def __init__(self, arr):
            self.arr = arr

        def __dlpack__(self, **kwargs):
            return self.arr.__dlpack__(**kwargs)

        def __dlpack_device__(self):
            return self.arr.__dlpack_device__()

    x = np.arange(3, dtype=np.float32)
    res = np.zeros(3, np.float32)
    vadd["vadd"](Tensor(x), x, Tensor(res), 3)
    np.testing.assert_array_equal(res, 2 * x)


def test_calls_from_many_threads(vadd):
    fn = vadd["vadd"]
    errors = []

    def work(seed):
        rng = np.random.default_rng(seed)
        for _ in range(200):
            a, b = rng.random(257, dtype=np.float32), rng.random(257, dtype=np.float32)
            out = np.empty_like(a)
            fn(a, b, out, a.size)
            if not np.array_equal(out, a + b):
                errors.append(seed)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_close_and_context_manager():
    with kp.llvm_module(VADD_IR) as mod:
        fn = mod["vadd"]
    a = np.ones(2, np.float32)
    out = np.empty_like(a)
    fn(a, a, out, 2)  # a function obtained before close stays valid
    assert (out == 2).all()
    with pytest.raises(kp.UnsupportedOperationError, match="closed"):
        mod["vadd"]


def test_a_symbol_the_process_lacks_is_a_compile_error_not_a_crash():
    mod = kp.llvm_module(
        "declare double @kernpack_test_missing(double)\n"
        "define double @f(double %x) {\n"
        "  %y = call double @kernpack_test_missing(double %x)\n"
        "  ret double %y\n"
        "}"
    )
    with pytest.raises(kp.CompileError, match="needs kernpack_test_missing, which this process does not provide"):
        mod["f"]
    libm = kp.llvm_module(
        "declare double @cos(double)\ndefine double @g(double %x) {\n"
        "  %y = call double @cos(double %x)\n  ret double %y\n}"
    )
    assert libm["g"](0.0) == 1.0
