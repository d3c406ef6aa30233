"""Vulkan: every kernel of the test set as a compute shader, validated and run on lavapipe.

Where ``KERNPACK_REQUIRE_DEVICES`` names vulkan (CI sets it; scripts/test installs Mesa's
lavapipe), a missing driver is a failure, not a skip.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import kernpack as kp
from tests.conftest import require_device, shader, spirv_val
from tests.device.cases import CASES, assert_same
from tests.export.conftest import run_fresh
from tests.lang import kernels_src as K

# lavapipe's own compiler aborts on float64 atomic adds, so kernpack refuses them for vulkan.
ON_VULKAN = [name for name in CASES if name != "weighted_bincount"]


@pytest.fixture(scope="module")
def device():
    module = kp.build([CASES[name][0] for name in ON_VULKAN], target="vulkan", name="lang_set")
    return require_device(module)


@pytest.mark.parametrize("name", ON_VULKAN)
def test_kernel_on_vulkan_matches_the_cpu(device, name):
    kernel, make = CASES[name]
    on_cpu, on_device = make(), make()
    kernel(*on_cpu)
    device[name](*on_device)
    assert_same(on_cpu, on_device)


@pytest.mark.parametrize("name", ON_VULKAN)
def test_shader_validates_for_vulkan_1_3(name, tmp_path):
    assert spirv_val(shader(CASES[name][0]), "vulkan1.3", tmp_path) == ""


def test_float32_atomics_run_and_float64_atomics_are_refused(device):
    @kp.kernel
    def spread(x: kp.f32[:], out: kp.f32[:]):
        for i in kp.grid(x.shape[0]):
            kp.atomic_add(out, i % 4, x[i])

    out = np.zeros(4, np.float32)
    kp.build([spread], target="vulkan")["spread"](np.ones(1000, np.float32), out)
    assert out.tolist() == [250.0] * 4
    with pytest.raises(kp.CompileError, match="atomic_add on a float64 array is not supported on vulkan"):
        kp.build([K.weighted_bincount], target="vulkan")


def test_vulkan_module_round_trips():
    module = kp.build([K.saxpy, K.softmax], target="vulkan")
    assert module.property_mask == kp.ModulePropertyMask.BINARY_SERIALIZABLE | kp.ModulePropertyMask.RUNNABLE
    again = kp.load_from_bytes("vulkan", module.save_to_bytes())
    assert again.shader("softmax") == module.shader("softmax")
    assert again.functions["saxpy"].attrs["workgroup"] == [256, 1, 1]
    assert again.save_to_bytes() == module.save_to_bytes()


def test_a_shader_file_loads_as_the_kind_its_side_file_names(device, tmp_path):
    # A .spv is OpenCL's unless its side file says otherwise; the kind is found by that name.
    (tmp_path / "s.spv").write_bytes(device.shader("saxpy"))
    entry = device.functions["saxpy"].to_json()
    (tmp_path / "s.json").write_text(json.dumps({"target": "vulkan", "functions": [entry]}))
    loaded = kp.load_module(tmp_path / "s.spv")
    assert loaded.kind == "vulkan" and loaded.functions["saxpy"].attrs == entry["attrs"]
    x, y, out = np.arange(5, dtype=np.float32), np.ones(5, np.float32), np.zeros(5, np.float32)
    loaded["saxpy"](np.float32(2.0), x, y, out)
    np.testing.assert_array_equal(out, 2 * x + 1)
    (tmp_path / "s.json").write_text(json.dumps({"target": "metal", "functions": [entry]}))
    with pytest.raises(kp.LoadError, match=r"names target 'metal'; device kinds: .*vulkan"):
        kp.load_module(tmp_path / "s.spv")


def test_one_library_with_all_four_targets_runs_every_kernel_on_cpu_opencl_and_vulkan(tmp_path, device):
    kernels = [kernel for kernel, _ in CASES.values()]
    host = kp.build(kernels, cpu="generic", devices=("opencl", "cuda"), name="all")
    host.import_module(kp.build([CASES[name][0] for name in ON_VULKAN], target="vulkan", name="all"))
    host.export_library(tmp_path / "four.so")
    got = run_fresh(
        f"""
        import json, sys
        from kernpack.runtime import load_module
        from tests.device.cases import CASES, assert_same
        lib = load_module({str(tmp_path / "four.so")!r})
        targets = {{m.kind: m for m in lib.imports}}
        ran = []
        for name, (kernel, make) in CASES.items():
            expected = make()
            lib[name](*expected)
            for kind in ("opencl", "vulkan"):
                if name in targets[kind].function_names():
                    args = make()
                    targets[kind][name](*args)
                    assert_same(expected, args)
                    ran.append(kind)
        print(json.dumps({{"kinds": sorted(targets), "opencl": ran.count("opencl"), "vulkan": ran.count("vulkan"),
                          "llvmlite": "llvmlite" in sys.modules}}))
        """
    )
    assert got == {
        "kinds": ["cuda", "opencl", "vulkan"],
        "opencl": len(CASES),
        "vulkan": len(ON_VULKAN),
        "llvmlite": False,
    }


def _with_local_size(code: bytes, size: tuple[int, int, int]) -> bytes:
    """The shader with its OpExecutionMode LocalSize changed to ``size`` (as another compiler would write it)."""
    import struct

    words = list(struct.unpack(f"<{len(code) // 4}I", code))
    position = 5
    while position < len(words):
        count, opcode = words[position] >> 16, words[position] & 0xFFFF
        if opcode == 16 and words[position + 2] == 17:  # OpExecutionMode ... LocalSize x y z
            words[position + 3 : position + 6] = size
        position += count
    return struct.pack(f"<{len(words)}I", *words)


def test_a_shaders_workgroup_is_read_from_it_and_a_given_one_checked(device):
    # A shader whose LocalSize is 32: with [64, 1, 1] assumed, half the workgroups were launched
    # and half the output stayed unset.
    built = kp.build([K.vadd_f32], target="vulkan")
    entry = {k: v for k, v in built.functions["vadd_f32"].to_json().items() if k != "attrs"}
    code = _with_local_size(bytes(built.shader("vadd_f32")), (32, 1, 1))
    module = kp.vulkan_module({"vadd_f32": code}, [entry])
    assert module.functions["vadd_f32"].attrs["workgroup"] == [32, 1, 1]
    a, b = np.arange(1000, dtype=np.float32), np.ones(1000, np.float32)
    out = np.zeros_like(a)
    module["vadd_f32"](a, b, out)
    assert np.array_equal(out, a + b)
    with pytest.raises(
        kp.ArgumentError, match=r"workgroup \[64, 1, 1\] was given, but its shader declares workgroup \[32, 1, 1\]"
    ):
        kp.vulkan_module({"vadd_f32": code}, [{**entry, "workgroup": [64, 1, 1]}])


def test_a_shader_whose_buffers_start_at_binding_0_is_refused_not_run_to_zeros():
    # The usual layout of a shader written elsewhere: its first input at binding 0, where kernpack
    # binds the extents. It ran and gave zeros; now its bindings are checked against the layout.
    import struct

    built = kp.build([K.vadd_f32], target="vulkan")
    entry = {k: v for k, v in built.functions["vadd_f32"].to_json().items() if k != "attrs"}
    words = list(struct.unpack(f"<{len(built.shader('vadd_f32')) // 4}I", bytes(built.shader("vadd_f32"))))
    position = 5
    while position < len(words):
        count, opcode = words[position] >> 16, words[position] & 0xFFFF
        if opcode == 71 and words[position + 2] == 33:  # OpDecorate ... Binding n
            words[position + 3] = words[position + 3] - 1 if words[position + 3] else 7
        position += count
    shifted = struct.pack(f"<{len(words)}I", *words)
    with pytest.raises(kp.ArgumentError, match=r"binding 0 holds f32, but the arrays' extents \(i64\) is bound there"):
        kp.vulkan_module({"vadd_f32": shifted}, [entry])
    assert kp.vulkan_module({"vadd_f32": bytes(built.shader("vadd_f32"))}, [entry])  # its own layout: taken
    # Described as it is, it runs: the extents where the shader reads them, the arrays from 0.
    layout = {"extents": {"binding": 7}, "a": 0, "b": 1, "out": 2}
    module = kp.vulkan_module({"vadd_f32": shifted}, [{**entry, "layout": layout}])
    a = np.arange(100, dtype=np.float32)
    out = np.zeros_like(a)
    module["vadd_f32"](a, a, out)
    assert np.array_equal(out, 2 * a)


def test_a_shader_is_entered_where_the_kernel_says(device, tmp_path):
    built = kp.build([K.vadd_f32], target="vulkan")
    entry = {k: v for k, v in built.functions["vadd_f32"].to_json().items() if k != "attrs"}
    code = bytes(built.shader("vadd_f32")).replace(b"main\0\0\0\0", b"add2\0\0\0\0")  # as glslang may name it
    with pytest.raises(kp.ArgumentError, match=r"no compute entry point 'main' \(it has: add2, main_vector\)"):
        kp.vulkan_module({"vadd_f32": code}, [entry])
    module = kp.vulkan_module({"vadd_f32": code}, [{**entry, "entry": "add2"}])
    a = np.arange(100, dtype=np.float32)
    out = np.zeros_like(a)
    module["vadd_f32"](a, a, out)
    assert np.array_equal(out, 2 * a)
    again = kp.load_from_bytes("vulkan", module.save_to_bytes())  # the entry point travels with it
    out[:] = 0
    again["vadd_f32"](a, a, out)
    assert np.array_equal(out, 2 * a)


@pytest.mark.parametrize("n", [1, 255, 1024, 1025, 4 * 256 * 3 + 7, 100_000])
def test_invocations_that_compute_several_points_give_each_its_own_start(n):
    # A 1-D loop-free kernel's invocation computes abi's tiles of points (attrs["tiles"]): each
    # point's locals start from the prologue's values, continue skips one point, and every
    # point of the grid is computed once, whatever n is.
    from tests.device import tiles_src as T

    module = require_device(kp.build([T.carried, T.strided], target="vulkan"))
    assert module.functions["carried"].attrs["tiles"] == 4
    x = np.random.default_rng(n).random(n, np.float32)
    want, got = np.zeros(n, np.float32), np.zeros(n, np.float32)
    T.carried(x, want)
    module["carried"](x, got)
    assert np.array_equal(got, want)
    for step in (1, 3):
        want, got = np.zeros(n, np.float32), np.zeros(n, np.float32)
        T.strided(x, want, step)
        module["strided"](x, got, step)
        assert np.array_equal(got, want)


def test_numpy_arrays_are_used_in_place_where_the_driver_can_import_them(monkeypatch):
    # On lavapipe a numpy array's pages are imported (VK_EXT_external_memory_host), not copied;
    # one that starts off the storage-descriptor alignment (here 4 bytes past numpy's) is copied.
    module = require_device(kp.build([K.saxpy], target="vulkan"))
    dev = kp.device("vulkan")
    imports = []
    real = type(dev).import_host
    monkeypatch.setattr(type(dev), "import_host", lambda self, a: imports.append(real(self, a)) or imports[-1])
    base = np.arange(4097, dtype=np.float32)
    for x, in_place in ((base[:4096], True), (base[1:], False)):
        imports.clear()
        y = x.copy()
        y.flags.writeable = False  # read by the kernel only: imported all the same
        out = np.zeros(4096, np.float32)
        module["saxpy"](np.float32(2.0), x, y, out)
        assert np.array_equal(out, 3 * x)
        assert len(imports) == 3 and (imports[0] is not None) == in_place  # x; y and out are aligned
        assert None not in imports[1:]


@pytest.mark.parametrize("n", [2, 1023, 1024, 1025, 4 * 1024 + 3, 100_001])
def test_the_vector_entry_point_gives_what_the_cpu_gives(n):
    # Kernels whose 4-byte arrays are only accessed at the grid point get a second entry point
    # (attrs["vector"]) that the runtime launches on whole workgroups: each array as one vector
    # per invocation, registers in between. Device arrays and numpy arrays, every size around
    # the 1024 points of a workgroup, against the same kernels on the CPU.
    from tests.device import vector_src as V

    module = require_device(kp.build([V.update, V.maybe, V.mixed], target="vulkan"))
    assert all(module.functions[k].attrs["vector"] == "main_vector" for k in ("update", "maybe", "mixed"))
    dev = kp.device("vulkan")
    rng = np.random.default_rng(n)
    x = rng.random(n, np.float32)
    cases = {
        "update": (rng.random(n, np.float32), x, np.float32(1.5)),
        "maybe": (x, np.full(n, -7, np.int32), rng.integers(0, 9, n).astype(np.uint32)),
        "mixed": (x, rng.random(n), np.zeros(n, np.float32), np.zeros(n)),
    }
    for name, args in cases.items():
        want = [a.copy() for a in args]
        getattr(V, name)(*want)
        on_numpy = [a.copy() for a in args]
        module[name](*on_numpy)
        on_device = [dev.asarray(a) if isinstance(a, np.ndarray) else a for a in args]
        module[name](*on_device)
        for k, expected in enumerate(want):
            if isinstance(expected, np.ndarray):
                assert np.array_equal(on_numpy[k], expected), (name, k)
                assert np.array_equal(on_device[k].numpy(), expected), (name, k)
        points = n - 1 if name == "maybe" else n
        # Made at the first launch with a whole workgroup (1024 points) for it, not before.
        assert (module._loaded[name, ()].vector is not None) == (points >= 1024)


def test_arrays_that_share_memory_are_left_to_the_scalar_entry_point():
    # The vector entry point keeps a point's elements in registers: where an array the kernel
    # writes is also another argument (the same device array, or overlapping numpy arrays), a
    # point must see the other array's stores as they happen, so the shader's main runs alone.
    from kernpack.runtime.vulkan import _shared
    from tests.device import vector_src as V

    module = require_device(kp.build([V.twice], target="vulkan"))
    params = module.functions["twice"].signature.params
    base = np.random.default_rng(0).random(5001, np.float32)
    want = base.copy()
    V.twice(want, want)
    assert np.array_equal(want, 2 * base + 2)
    shared = kp.device("vulkan").asarray(base)
    assert _shared(params, [shared, shared])
    module["twice"](shared, shared)
    assert np.array_equal(shared.numpy(), want)
    assert _shared(params, [base[1:], base[:-1]]) and _shared(params, [base, base])
    assert not _shared(params, [base[1:].copy(), base[1:]])


def test_which_arrays_the_vector_entry_point_takes():
    # 4-byte 1-D arrays accessed only at the grid point; loaded first unless every path stores
    # them and none reads them. No vector entry point where a store lands elsewhere, or with checks.
    import dataclasses

    from kernpack.driver.lang.frontend import parse_kernel
    from kernpack.driver.targets.vulkan import vector_arrays
    from tests.device import tiles_src as T
    from tests.device import vector_src as V

    def arrays(kernel, **changes):
        return vector_arrays(dataclasses.replace(parse_kernel(kernel.py_func), **changes))

    assert arrays(K.saxpy) == {"x": True, "y": True, "out": False}
    assert arrays(T.carried) == {"x": True, "out": True}  # continue may skip the store
    assert arrays(V.maybe) == {"x": True, "out": True, "count": True}
    assert arrays(V.mixed) == {"out": True}  # read back; s is also read at i - 1, w and wide are float64
    assert arrays(T.strided) is None
    assert arrays(K.saxpy, boundscheck=True) is None
