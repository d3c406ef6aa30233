"""Kernel language: every error path names the class, the absolute line, and the source text.

Each offending line carries a ``# ERR:<tag>`` comment; :func:`check` finds the line by its tag,
so the expected line numbers follow the file when it is edited. Each kernel is defined inside
``pytest.raises`` and built there too: the error may come at decoration or at the first build.
"""

import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

import kernpack as kp

LINES = Path(__file__).read_text().splitlines()


def tagged(tag: str) -> int:
    pattern = re.compile(rf"#\s*ERR:{re.escape(tag)}\b")
    hits = [n for n, line in enumerate(LINES, 1) if pattern.search(line)]
    assert len(hits) == 1, f"tag {tag!r} is on lines {hits}"
    return hits[0]


def code_at(lineno: int) -> str:
    return LINES[lineno - 1].split("#")[0].strip()


def check(info: pytest.ExceptionInfo, tag: str, kind: str, *, other_lines: tuple[int, ...] = ()) -> None:
    """Assert the error's class (``syntax``, ``type`` or ``either``), position and message.

    ``other_lines`` are further acceptable offsets from the tagged line (for errors about a whole
    function, which may point at its decorator).
    """
    err = info.value
    classes = {
        "syntax": (kp.KernelSyntaxError,),
        "type": (kp.KernelTypeError,),
        "either": (kp.KernelSyntaxError, kp.KernelTypeError),
    }[kind]
    assert isinstance(err, classes), f"expected {kind} error, got {type(err).__name__}: {err}"
    if kind == "syntax":  # KernelTypeError may derive from KernelSyntaxError: not a type error
        assert not isinstance(err, kp.KernelTypeError), f"expected a syntax error, got {err}"
    assert isinstance(err, kp.CompileError) and isinstance(err, kp.KernpackError)
    line = tagged(tag)
    accepted = {line, *(line + d for d in other_lines)}
    assert err.lineno in accepted, f"error at line {err.lineno}, expected {sorted(accepted)}: {err}"
    assert os.path.samefile(err.filename, __file__), err.filename
    message = str(err)
    assert message.startswith(f"{err.filename}:{err.lineno}:{err.col}: "), message
    source = LINES[err.lineno - 1]
    assert isinstance(err.col, int) and 0 <= err.col <= len(source), err.col
    assert code_at(err.lineno) in message, message


def plain_python_function(v: float) -> float:
    return v + 1.0


def test_error_classes():
    assert issubclass(kp.KernelSyntaxError, kp.CompileError)
    assert issubclass(kp.KernelTypeError, kp.CompileError)
    assert issubclass(kp.CompileError, kp.KernpackError)
    assert not issubclass(kp.KernelSyntaxError, kp.KernelTypeError)


# --------------------------------------------------------------------- unsupported statements


def test_return_with_a_value():
    with pytest.raises(kp.CompileError) as info:

        @kp.kernel
        def k(x: kp.f32[:], out: kp.f32[:]):
            for i in kp.grid(out.shape[0]):
                out[i] = x[i]
                if i > 3:
                    return 1  # ERR:return

        kp.build([k])
    check(info, "return", "syntax")


def test_try():
    with pytest.raises(kp.CompileError) as info:

        @kp.kernel
        def k(x: kp.f32[:], out: kp.f32[:]):
            for i in kp.grid(out.shape[0]):
                try:  # ERR:try
                    out[i] = x[i]
                except IndexError:
                    out[i] = 0.0

        kp.build([k])
    check(info, "try", "syntax")


def test_with():
    with pytest.raises(kp.CompileError) as info:

        @kp.kernel
        def k(x: kp.f32[:], out: kp.f32[:]):
            for i in kp.grid(out.shape[0]):
                with x:  # ERR:with
                    out[i] = 1.0

        kp.build([k])
    check(info, "with", "syntax")


def test_lambda():
    with pytest.raises(kp.CompileError) as info:

        @kp.kernel
        def k(x: kp.f32[:], out: kp.f32[:]):
            for i in kp.grid(out.shape[0]):
                out[i] = (lambda v: v + 1.0)(x[i])  # ERR:lambda

        kp.build([k])
    check(info, "lambda", "syntax")


def test_nested_def():
    with pytest.raises(kp.CompileError) as info:

        @kp.kernel
        def k(x: kp.f32[:], out: kp.f32[:]):
            def helper(v):  # ERR:nested_def
                return v

            for i in kp.grid(out.shape[0]):
                out[i] = helper(x[i])

        kp.build([k])
    check(info, "nested_def", "syntax")


def test_global():
    with pytest.raises(kp.CompileError) as info:

        @kp.kernel
        def k(out: kp.f32[:]):
            global SOME_GLOBAL  # ERR:global
            SOME_GLOBAL = 1.0
            for i in kp.grid(out.shape[0]):
                out[i] = SOME_GLOBAL

        kp.build([k])
    check(info, "global", "syntax")


def test_print_in_the_prologue():
    with pytest.raises(kp.CompileError) as info:

        @kp.kernel
        def k(x: kp.f32[:], out: kp.f32[:]):
            print(x[0])  # ERR:print
            for i in kp.grid(out.shape[0]):
                out[i] = x[i]

        kp.build([k])
    check(info, "print", "syntax")
    assert "print in the grid loop or after it" in str(info.value)


def test_call_to_unknown_function():
    with pytest.raises(kp.CompileError) as info:

        @kp.kernel
        def k(x: kp.f32[:], out: kp.f32[:]):
            for i in kp.grid(out.shape[0]):
                out[i] = plain_python_function(x[i])  # ERR:unknown_call

        kp.build([k])
    check(info, "unknown_call", "either")


def test_call_to_unknown_kp_math_function():
    with pytest.raises(kp.CompileError) as info:

        @kp.kernel
        def k(x: kp.f32[:], out: kp.f32[:]):
            for i in kp.grid(out.shape[0]):
                out[i] = kp.math.arctan2(x[i], 1.0)  # ERR:unknown_math

        kp.build([k])
    check(info, "unknown_math", "either")


def test_list_literal():
    with pytest.raises(kp.CompileError) as info:

        @kp.kernel
        def k(out: kp.f32[:]):
            for i in kp.grid(out.shape[0]):
                t = [1.0, 2.0]  # ERR:list
                out[i] = t[0]

        kp.build([k])
    check(info, "list", "syntax")


def test_string_literal():
    with pytest.raises(kp.CompileError) as info:

        @kp.kernel
        def k(out: kp.f32[:]):
            for i in kp.grid(out.shape[0]):
                out[i] = "abc"  # ERR:string

        kp.build([k])
    check(info, "string", "either")


def test_slicing():
    with pytest.raises(kp.CompileError) as info:

        @kp.kernel
        def k(x: kp.f32[:], out: kp.f32[:]):
            for i in kp.grid(out.shape[0]):
                out[i] = x[1:3]  # ERR:slice

        kp.build([k])
    check(info, "slice", "either")


# --------------------------------------------------------------------- the grid loop


def test_two_grid_loops():
    with pytest.raises(kp.CompileError) as info:

        @kp.kernel
        def k(x: kp.f32[:], out: kp.f32[:]):
            for i in kp.grid(out.shape[0]):
                out[i] = x[i]
            for j in kp.grid(out.shape[0]):  # ERR:two_grids
                out[j] += 1.0

        kp.build([k])
    check(info, "two_grids", "syntax")


def test_grid_loop_nested_in_another_loop():
    with pytest.raises(kp.CompileError) as info:

        @kp.kernel
        def k(x: kp.f32[:], out: kp.f32[:]):
            for r in range(2):
                for i in kp.grid(out.shape[0]):  # ERR:nested_grid
                    out[i] = x[i] + kp.f32(r)

        kp.build([k])
    # The outer loop (a statement that is not the grid loop) is an acceptable place too.
    check(info, "nested_grid", "syntax", other_lines=(-1,))


def test_no_grid_loop():
    with pytest.raises(kp.CompileError) as info:

        @kp.kernel
        def k(x: kp.f32[:], out: kp.f32[:]):  # ERR:no_grid
            out[0] = x[0]

        kp.build([k])
    check(info, "no_grid", "syntax", other_lines=(-1,))


def test_a_range_loop_where_the_grid_goes_is_pointed_at_and_told_to_be_kp_grid():
    with pytest.raises(kp.CompileError) as info:

        @kp.kernel
        def k(x: kp.f32[:], out: kp.f32[:]):
            for i in range(out.shape[0]):  # ERR:range_not_grid
                out[i] = x[i]

        kp.build([k])
    check(info, "range_not_grid", "syntax")
    assert "write kp.grid(out.shape[0]) instead of range(out.shape[0])" in str(info.value)


def test_len_of_an_array_suggests_its_shape():
    with pytest.raises(kp.CompileError) as info:

        @kp.kernel
        def k(x: kp.f32[:], out: kp.f32[:]):
            for i in kp.grid(len(out)):  # ERR:len
                out[i] = x[i]

        kp.build([k])
    check(info, "len", "syntax")
    assert "write out.shape[0] for an array's length" in str(info.value)


def test_grid_with_four_arguments():
    with pytest.raises(kp.CompileError) as info:

        @kp.kernel
        def k(out: kp.f32[:, :, :]):
            for a, b, c, d in kp.grid(2, 2, 2, 2):  # ERR:grid4
                out[a, b, c] = kp.f32(d)

        kp.build([k])
    check(info, "grid4", "either")


def test_break_outside_a_loop():
    with pytest.raises(kp.CompileError) as info:

        @kp.kernel
        def k(out: kp.f32[:]):
            for i in kp.grid(out.shape[0]):
                out[i] = 1.0
                if i > 2:
                    break  # ERR:break

        kp.build([k])
    check(info, "break", "syntax")


# --------------------------------------------------------------------- parameters


def test_unannotated_parameter():
    with pytest.raises(kp.CompileError) as info:

        @kp.kernel
        def k(x, out: kp.f32[:]):  # ERR:unannotated
            for i in kp.grid(out.shape[0]):
                out[i] = x[i]

        kp.build([k])
    check(info, "unannotated", "either")


def test_annotation_that_is_not_a_kernpack_type():
    with pytest.raises(kp.CompileError) as info:

        @kp.kernel
        def k(x: np.ndarray, out: kp.f32[:]):  # ERR:annotation
            for i in kp.grid(out.shape[0]):
                out[i] = x[i]

        kp.build([k])
    check(info, "annotation", "either")


def test_rebinding_a_parameter_array():
    with pytest.raises(kp.CompileError) as info:

        @kp.kernel
        def k(x: kp.f32[:], out: kp.f32[:]):
            x = out  # ERR:rebind
            for i in kp.grid(out.shape[0]):
                out[i] = x[i]

        kp.build([k])
    check(info, "rebind", "either")


# --------------------------------------------------------------------- typing


def test_wrong_number_of_indices():
    with pytest.raises(kp.CompileError) as info:

        @kp.kernel
        def k(m: kp.f32[:, :], out: kp.f32[:]):
            for i in kp.grid(out.shape[0]):
                out[i] = m[i]  # ERR:nindex

        kp.build([k])
    check(info, "nindex", "either")


def test_too_many_indices_on_a_store():
    with pytest.raises(kp.CompileError) as info:

        @kp.kernel
        def k(out: kp.f32[:]):
            for i in kp.grid(out.shape[0]):
                out[i, i] = 1.0  # ERR:nindex_store

        kp.build([k])
    check(info, "nindex_store", "either")


def test_float_power_float():
    with pytest.raises(kp.CompileError) as info:

        @kp.kernel
        def k(x: kp.f32[:], out: kp.f32[:]):
            for i in kp.grid(out.shape[0]):
                out[i] = x[i] ** 2.5  # ERR:fpow

        kp.build([k])
    check(info, "fpow", "type")


def test_float_used_as_index():
    with pytest.raises(kp.CompileError) as info:

        @kp.kernel
        def k(x: kp.f32[:], out: kp.f32[:]):
            for i in kp.grid(out.shape[0]):
                out[i] = x[i * 1.0]  # ERR:findex

        kp.build([k])
    check(info, "findex", "type")


def test_non_bool_if_condition():
    with pytest.raises(kp.CompileError) as info:

        @kp.kernel
        def k(x: kp.f32[:], out: kp.f32[:]):
            for i in kp.grid(out.shape[0]):
                if x[i]:  # ERR:if_cond
                    out[i] = 1.0

        kp.build([k])
    check(info, "if_cond", "type")


def test_non_bool_elif_condition_deep_inside():
    with pytest.raises(kp.CompileError) as info:

        @kp.kernel
        def k(x: kp.f32[:], out: kp.f32[:]):
            n = x.shape[0]
            for i in kp.grid(n):
                for j in range(3):
                    while j < 2:
                        if x[i] > 0.0:
                            out[i] = 1.0
                        elif i + j:  # ERR:elif_cond
                            out[i] = 2.0
                        j += 1

        kp.build([k])
    check(info, "elif_cond", "type")


def test_non_bool_while_condition():
    with pytest.raises(kp.CompileError) as info:

        @kp.kernel
        def k(out: kp.f32[:]):
            for i in kp.grid(out.shape[0]):
                c = 3
                while c:  # ERR:while_cond
                    c -= 1
                out[i] = 1.0

        kp.build([k])
    check(info, "while_cond", "type")


def test_non_bool_and_operand():
    with pytest.raises(kp.CompileError) as info:

        @kp.kernel
        def k(x: kp.f32[:], out: kp.bool_[:]):
            for i in kp.grid(out.shape[0]):
                out[i] = x[i] > 0.0 and i  # ERR:and_operand

        kp.build([k])
    check(info, "and_operand", "type")


def test_non_bool_not_operand():
    with pytest.raises(kp.CompileError) as info:

        @kp.kernel
        def k(x: kp.f32[:], out: kp.bool_[:]):
            for i in kp.grid(out.shape[0]):
                out[i] = not x[i]  # ERR:not_operand

        kp.build([k])
    check(info, "not_operand", "type")


def test_non_bool_conditional_expression():
    with pytest.raises(kp.CompileError) as info:

        @kp.kernel
        def k(x: kp.f32[:], out: kp.f32[:]):
            for i in kp.grid(out.shape[0]):
                out[i] = 1.0 if x[i] else 0.0  # ERR:ifexp_cond

        kp.build([k])
    check(info, "ifexp_cond", "type")


def test_implicit_float_to_int_store():
    with pytest.raises(kp.CompileError) as info:

        @kp.kernel
        def k(x: kp.f32[:], out: kp.i32[:]):
            for i in kp.grid(out.shape[0]):
                out[i] = x[i]  # ERR:f2i_store

        kp.build([k])
    check(info, "f2i_store", "type")


def test_implicit_float_to_int_local():
    with pytest.raises(kp.CompileError) as info:

        @kp.kernel
        def k(x: kp.f32[:], out: kp.i64[:]):
            for i in kp.grid(out.shape[0]):
                c = 0
                c = x[i] * 2.0  # ERR:f2i_local
                out[i] = c

        kp.build([k])
    check(info, "f2i_local", "type")


def test_true_division_stored_to_int():
    with pytest.raises(kp.CompileError) as info:

        @kp.kernel
        def k(a: kp.i32[:], out: kp.i32[:]):
            for i in kp.grid(out.shape[0]):
                out[i] = a[i] / 2  # ERR:div_store

        kp.build([k])
    check(info, "div_store", "type")


def test_undefined_variable():
    with pytest.raises(kp.CompileError) as info:

        @kp.kernel
        def k(out: kp.f32[:]):
            for i in kp.grid(out.shape[0]):
                out[i] = undefined_name  # ERR:undefined  # noqa: F821

        kp.build([k])
    check(info, "undefined", "either")


def test_range_with_four_arguments():
    with pytest.raises(kp.CompileError) as info:

        @kp.kernel
        def k(out: kp.f32[:]):
            for i in kp.grid(out.shape[0]):
                for j in range(0, 4, 1, 1):  # ERR:range4
                    out[i] += kp.f32(j)

        kp.build([k])
    check(info, "range4", "either")


def test_shape_dimension_out_of_range():
    with pytest.raises(kp.CompileError) as info:

        @kp.kernel
        def k(out: kp.f32[:]):
            n = out.shape[1]  # ERR:shape_dim
            for i in kp.grid(n):
                out[i] = 1.0

        kp.build([k])
    check(info, "shape_dim", "either")


def test_math_function_with_wrong_arity():
    with pytest.raises(kp.CompileError) as info:

        @kp.kernel
        def k(x: kp.f32[:], out: kp.f32[:]):
            for i in kp.grid(out.shape[0]):
                out[i] = kp.math.sqrt(x[i], x[i])  # ERR:arity

        kp.build([k])
    check(info, "arity", "either")


def test_atomic_add_used_as_a_value():
    with pytest.raises(kp.CompileError) as info:

        @kp.kernel
        def k(counts: kp.i32[:], out: kp.i32[:]):
            for i in kp.grid(out.shape[0]):
                out[i] = kp.atomic_add(counts, 0, 1)  # ERR:atomic_value

        kp.build([k])
    check(info, "atomic_value", "either")


# --------------------------------------------------------------------- how errors surface


def test_error_surfaces_at_the_first_call_at_the_latest():
    with pytest.raises(kp.CompileError) as info:

        @kp.kernel
        def k(x: kp.f32[:], out: kp.i32[:]):
            for i in kp.grid(out.shape[0]):
                out[i] = x[i] + 1.0  # ERR:first_call

        k(np.zeros(3, np.float32), np.zeros(3, np.int32))
    check(info, "first_call", "type")


def test_errors_pickle_with_their_position():
    with pytest.raises(kp.CompileError) as info:

        @kp.kernel
        def k(x: kp.f32[:], out: kp.f32[:]):
            for i in kp.grid(out.shape[0]):
                out[i] = x[i] ** x[i]  # ERR:pickled

        kp.build([k])
    check(info, "pickled", "type")
    copy = pickle.loads(pickle.dumps(info.value))
    assert type(copy) is type(info.value)
    assert (copy.filename, copy.lineno, copy.col, str(copy)) == (
        info.value.filename,
        info.value.lineno,
        info.value.col,
        str(info.value),
    )


def test_a_good_kernel_still_compiles_after_errors():
    @kp.kernel
    def good(x: kp.f32[:], out: kp.f32[:]):
        for i in kp.grid(out.shape[0]):
            out[i] = x[i] + 1.0

    x = np.arange(3, dtype=np.float32)
    out = np.zeros(3, np.float32)
    good(x, out)
    assert out.tolist() == [1.0, 2.0, 3.0]
