"""The Module base class: property masks, the import tree, function lookup, unsupported ops."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import kernpack as kp
from kernpack import ModulePropertyMask as M
from kernpack.runtime.module import mask_name
from tests.conftest import VADD_IR

S, R, D = M.BINARY_SERIALIZABLE, M.RUNNABLE, M.DSO_EXPORTABLE


def test_mask_values_are_tvms():
    assert (int(S), int(R), int(D)) == (0b001, 0b010, 0b100)
    assert issubclass(M, __import__("enum").IntFlag)
    assert mask_name(R | D) == "RUNNABLE|DSO_EXPORTABLE"
    assert mask_name(M(0)) == "0"


def _kinds():
    return {
        "llvm": kp.llvm_module(VADD_IR),
        "c": kp.c_source_module("void f(void) {}", ["f"]),
        "python": kp.python_module({"f": lambda: 1}),
    }


@pytest.mark.parametrize(
    ("kind", "mask", "serializable", "runnable", "dso"),
    [
        ("llvm", R | D, False, True, True),
        ("c", S | D, True, False, True),
        ("python", R, False, True, False),
    ],
)
def test_property_table(kind, mask, serializable, runnable, dso):
    mod = _kinds()[kind]
    assert mod.kind == kind
    assert mod.property_mask == mask
    assert isinstance(mod.property_mask, M)
    assert mod.is_binary_serializable is serializable
    assert mod.is_runnable is runnable
    assert mod.is_dso_exportable is dso


def test_numeric_masks_of_builtin_kinds():
    masks = {k: int(m.property_mask) for k, m in _kinds().items()}
    assert masks == {"llvm": 6, "c": 5, "python": 2}


@pytest.mark.parametrize(
    ("kind", "operation", "call"),
    [
        ("llvm", "save_to_bytes", lambda m, tmp: m.save_to_bytes()),
        ("python", "save_to_bytes", lambda m, tmp: m.save_to_bytes()),
        ("python", "write_to_file", lambda m, tmp: m.write_to_file(tmp / "x.o")),
    ],
)
def test_unsupported_operation_is_refused_at_once(kind, operation, call, tmp_path):
    mod = _kinds()[kind]
    with pytest.raises(kp.UnsupportedOperationError, match=rf"^Module\[{kind}\] does not support {operation}"):
        call(mod, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_c_module_is_not_runnable_and_says_how_to_run_it():
    mod = kp.c_source_module("int f(void) { return 1; }", ["f"])
    assert mod.implements_function("f")
    with pytest.raises(kp.UnsupportedOperationError, match="export it with export_library"):
        mod.get_function("f")


# --------------------------------------------------------------------- a user's own kind
class CounterModule(kp.Module):
    """A serializable, runnable kind defined in a test, with its loader registered."""

    kind = "test_counter"
    property_mask = S | R

    def __init__(self, start: int) -> None:
        super().__init__()
        self.start = start

    def _get_own_function(self, name):
        return (lambda: self.start) if name == "value" else None

    def _own_function_names(self):
        return ("value",)

    def _save_to_bytes(self):
        return self.start.to_bytes(8, "little")


@kp.register_loader("test_counter")
def _load_counter(data):
    return CounterModule(int.from_bytes(bytes(data), "little"))


def test_user_kind_round_trips_through_its_registered_loader():
    mod = CounterModule(41)
    again = kp.load_from_bytes("test_counter", mod.save_to_bytes())
    assert isinstance(again, CounterModule)
    assert again["value"]() == 41
    assert again.property_mask == S | R


def test_claiming_a_bit_without_its_operation_fails_at_class_definition():
    with pytest.raises(TypeError, match="claims BINARY_SERIALIZABLE but does not implement _save_to_bytes"):

        class Liar(kp.Module):
            kind = "liar"
            property_mask = S

    with pytest.raises(TypeError, match="claims RUNNABLE"):

        class Liar2(kp.Module):
            kind = "liar2"
            property_mask = R


def test_unknown_kind_lists_registered_ones():
    with pytest.raises(kp.LoadError, match=r"no loader is registered for module kind 'nope'.*c.*test_counter"):
        kp.load_from_bytes("nope", b"")


# --------------------------------------------------------------------- import tree and lookup
def _py(**fns):
    return kp.python_module(fns)


def test_imports_are_a_tuple_in_import_order():
    root, a, b = _py(r=lambda: "root"), _py(a=lambda: "a"), _py(b=lambda: "b")
    root.import_module(a)
    root.import_module(b)
    root.import_module(a)  # importing twice is a no-op
    assert root.imports == (a, b)
    assert isinstance(root.imports, tuple)


def test_lookup_is_self_first_then_depth_first_in_import_order():
    root = _py(f=lambda: "root")
    first = _py(g=lambda: "first", h=lambda: "first")
    deep = _py(h=lambda: "deep", k=lambda: "deep")
    second = _py(h=lambda: "second", k=lambda: "second", m=lambda: "second")
    first.import_module(deep)
    root.import_module(first)
    root.import_module(second)
    assert root["f"]() == "root"
    assert root["h"]() == "first"  # self before imports
    assert root["k"]() == "deep"  # depth-first: first's import before second
    assert root["m"]() == "second"
    assert root.get_function("f", query_imports=False)() == "root"
    with pytest.raises(kp.FunctionNotFoundError):
        root.get_function("m", query_imports=False)


def test_miss_lists_every_name_in_the_tree_and_is_a_key_error():
    root = _py(f=lambda: 0)
    child = _py(g=lambda: 0)
    root.import_module(child)
    root.import_module(kp.c_source_module("", ["from_c"]))
    with pytest.raises(KeyError) as info:
        root["nope"]
    err = info.value
    assert isinstance(err, kp.FunctionNotFoundError)
    assert err.name == "nope"
    assert err.available == ("f", "from_c", "g")
    assert "defined: f, from_c, g" in str(err)


def test_implements_function_and_function_names():
    root = _py(f=lambda: 0)
    child = kp.c_source_module("", ["g"])
    root.import_module(child)
    assert root.function_names() == ("f",)
    assert root.implements_function("f")
    assert not root.implements_function("g")
    assert root.implements_function("g", query_imports=True)
    assert "g" in root and "zz" not in root


def test_cycles_are_refused_with_the_path():
    a, b, c = _py(a=lambda: 0), _py(b=lambda: 0), _py(c=lambda: 0)
    a.import_module(b)
    b.import_module(c)
    with pytest.raises(kp.ImportCycleError, match="cyclic"):
        c.import_module(a)
    with pytest.raises(kp.ImportCycleError):
        a.import_module(a)
    assert c.imports == ()


def test_a_shared_import_is_not_a_cycle():
    root, a, b, shared = _py(), _py(), _py(), _py(s=lambda: "s")
    a.import_module(shared)
    b.import_module(shared)
    root.import_module(a)
    root.import_module(b)
    assert root["s"]() == "s"
    assert [p for p, _ in root.walk()] == [
        "root(python)",
        "root(python) -> imports[0](python)",
        "root(python) -> imports[0](python) -> imports[0](python)",
        "root(python) -> imports[1](python)",
    ]


def test_import_module_rejects_non_modules():
    with pytest.raises(TypeError, match="expects a kernpack Module"):
        _py().import_module(object())


def test_runnable_llvm_function_is_found_through_a_python_root():
    root = _py()
    root.import_module(kp.llvm_module(VADD_IR))
    a = np.arange(4, dtype=np.float32)
    out = np.empty_like(a)
    root["vadd"](a, a, out, 4)
    np.testing.assert_array_equal(out, 2 * a)


@pytest.mark.parametrize(
    "error",
    [
        kp.KernpackError("x"),
        kp.UnsupportedOperationError("Module[c] does not support y"),
        kp.FunctionNotFoundError("no f", name="f", available=("a", "b")),
        kp.LinkError("cc failed", command=("cc", "-shared"), returncode=1, stderr="boom"),
        kp.CompileError("bad"),
        kp.ArgumentError("bad arg"),
        kp.FormatError("bad blob"),
        kp.ImportCycleError("cycle"),
    ],
)
def test_errors_pickle_with_their_details(error):
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error)
    assert str(again) == str(error)
    assert again.__dict__ == error.__dict__
    assert isinstance(again, kp.KernpackError)
