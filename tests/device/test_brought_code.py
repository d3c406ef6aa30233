"""Device code written elsewhere: GLSL compute shaders, OpenCL C kernels and PTX as their authors wrote them.

The shaders and kernels in ``sources/`` are in the style of the public sample and benchmark
collections (buffers from binding 0, sizes in push constants and specialization constants,
uniform blocks, entry points not named main, ``__local`` memory, vectors and structs by
value). They are compiled here with the tools their authors use, from Debian's packages that
the test command installs: GLSL with glslang (``glslang-tools``), OpenCL C with clang and
``llvm-spirv-14``, and also handed to the OpenCL driver as source. Each runs on lavapipe or
Intel's CPU runtime against numpy, then from an exported library in a fresh process.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import kernpack as kp
from tests.conftest import require_device, require_tool
from tests.export.conftest import ROOT, run_fresh

SOURCES = Path(__file__).parent / "sources"
APT = "apt-get install glslang-tools clang llvm-spirv-14 (scripts/test does)"


def _tool(*names: str) -> str:
    found = next((shutil.which(n) for n in names if shutil.which(n)), None)
    return require_tool(found, names[0], APT)


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout}{result.stderr}"


@pytest.fixture(scope="module")
def spirv(tmp_path_factory):
    """The GLSL shaders compiled by glslang for Vulkan 1.3, by file stem, and the OpenCL C by clang."""
    out = tmp_path_factory.mktemp("spirv")
    glslang = _tool("glslangValidator", "glslang")
    built = {}
    ramp = ["-e", "ramp", "--source-entrypoint", "main"]
    for stem, extra in (("saxpy", []), ("matmul", []), ("place", []), ("image", []), ("ramp", ramp)):
        path = out / f"{stem}.spv"
        _run([glslang, "-V", "--target-env", "vulkan1.3", *extra, str(SOURCES / f"{stem}.comp"), "-o", str(path)])
        built[stem] = path.read_bytes()
    clang, translator = _tool("clang"), _tool("llvm-spirv-14", "llvm-spirv")
    bitcode = out / "kernels.bc"
    _run(
        [
            clang,
            "-c",
            "-target",
            "spir64",
            "-cl-std=CL2.0",
            "-O2",
            "-emit-llvm",
            "-o",
            str(bitcode),
            str(SOURCES / "kernels.cl"),
        ]
    )
    _run([translator, str(bitcode), "-o", str(out / "kernels.spv")])
    built["kernels"] = (out / "kernels.spv").read_bytes()
    return built


# ---------------------------------------------------------------------------------- Vulkan
SAXPY = {
    "name": "saxpy",
    "signature": "void saxpy(const float x[:], float y[:], uint32_t n, float alpha)",
    "grid": ["n"],
    "layout": {"x": 0, "y": 1, "n": "push", "alpha": "push"},
}
RAMP = {
    "name": "ramp",
    "signature": "void ramp(float out[:], const float params[:])",
    "grid": ["out.shape[0]"],
    "entry": "ramp",
    "layout": {"out": 0, "params": {"set": 1, "binding": 0, "kind": "uniform"}},
    "specialization": {"0": 256, "SCALE": 0.5, "COUNT": 1000},
}
MATMUL = {
    "name": "matmul",
    "signature": "void matmul(const float a[:, :], const float b[:, :], float c[:, :])",
    "grid": ["c.shape[0]", "c.shape[1]"],
    "layout": {"a": 0, "b": 1, "c": 2},
    "specialization": {"M": 40, "N": 24, "K": 33},
}


@pytest.fixture(scope="module")
def shaders(spirv):
    module = kp.vulkan_module({k: spirv[k] for k in ("saxpy", "ramp", "matmul")}, [SAXPY, RAMP, MATMUL])
    return require_device(module)


def check_vulkan(module) -> None:
    """Run the three shaders of ``module`` against numpy (here, and in the fresh process)."""
    x = np.arange(1000, dtype=np.float32)
    y = np.ones(1000, np.float32)
    module["saxpy"](x, y, 1000, 2.0)
    assert np.array_equal(y, 2 * x + 1)
    out = np.zeros(1000, np.float32)
    module["ramp"](out, np.array([3.0, 0.0], np.float32))
    assert np.array_equal(out, np.arange(1000) * 0.5 + 3)
    rng = np.random.default_rng(1)
    a, b = rng.random((40, 33), np.float32), rng.random((33, 24), np.float32)
    c = np.zeros((40, 24), np.float32)
    module["matmul"](a, b, c)
    np.testing.assert_allclose(c, a @ b, rtol=1e-5)


def test_glsl_shaders_run_on_vulkan_as_written(shaders):
    check_vulkan(shaders)
    # The workgroups are the shaders' own: 32, 256 (a specialization constant), 16 x 16.
    assert shaders["saxpy"].entry.attrs["workgroup"] == [32, 1, 1]
    assert shaders["ramp"].entry.attrs["workgroup"] == [256, 1, 1]
    assert shaders["matmul"].entry.attrs["workgroup"] == [16, 16, 1]


def test_specialization_per_call_gets_its_own_pipeline(shaders):
    ramp = shaders["ramp"]
    other = ramp.configure(specialization={"SCALE": 2.0, 0: 32, "COUNT": 10})
    assert other.entry.attrs["workgroup"] == [32, 1, 1]
    out = np.full(100, -1, np.float32)
    other(out, np.array([1.0, 0.0], np.float32))
    assert np.array_equal(out[:10], np.arange(10) * 2 + 1) and (out[10:] == -1).all()
    out[:] = 0
    ramp(out, np.array([0.0, 0.0], np.float32))  # the module's constants, unchanged
    assert np.array_equal(out, np.arange(100) * 0.5)
    with pytest.raises(kp.ArgumentError, match=r"specialization constant 'COUNT' is u32; -1 does not fit"):
        ramp.configure(specialization={"COUNT": -1})
    with pytest.raises(kp.ArgumentError, match=r"no specialization constant 'SIZE' \(it has: .*'SCALE'"):
        ramp.configure(specialization={"SIZE": 1})
    with pytest.raises(kp.ArgumentError, match=r"no launch option 'local'"):
        ramp.configure(local={"x": 4})


FRAME = [["origin", "float2"], ["angle", "float"], ["count", "int"]]
PLACE = {
    "name": "place",
    "signature": "void place(float pts[:, :], float2 scale, struct Frame frame)",
    "grid": ["pts.shape[0]"],
    "types": {"Frame": FRAME},
    "layout": {"pts": 0, "scale": {"binding": 1, "kind": "uniform"}, "frame": "push"},
}


def placed(start: np.ndarray, scale, origin, angle: float, count: int) -> np.ndarray:
    """What the ``place`` kernels compute, in numpy."""
    p, c, s = start * scale, math.cos(angle), math.sin(angle)
    want = np.stack([c * p[:, 0] - s * p[:, 1], s * p[:, 0] + c * p[:, 1]], 1) + np.asarray(origin)
    want[count:] = start[count:]
    return want


def test_a_struct_fills_the_push_constants_and_a_vector_a_uniform_block(spirv):
    module = require_device(kp.vulkan_module({"place": spirv["place"]}, [PLACE]))
    pts = np.random.default_rng(4).random((100, 2), np.float32)
    start = pts.copy()
    module["place"](pts, (2.0, 3.0), {"origin": (1.0, -1.0), "angle": 0.5, "count": 90})
    np.testing.assert_allclose(pts, placed(start, [2, 3], [1, -1], 0.5, 90), atol=1e-5)
    # Members where the shader's block does not have them (a vec3 is 16 bytes here) are refused.
    shifted = _with(PLACE, types={"Frame": [["origin", "float3"], ["angle", "float"], ["count", "int"]]})
    with pytest.raises(
        kp.ArgumentError, match=r"lays its members at offsets \[0, 16, 20\], but the shader's push-constant "
    ):
        kp.vulkan_module({"place": spirv["place"]}, [shifted])


def test_shaders_run_from_an_exported_library_in_a_fresh_process(shaders, tmp_path):
    host = kp.llvm_module("define void @nop() {\n  ret void\n}\n")
    host.import_module(shaders)
    path = tmp_path / "shaders.so"
    host.export_library(path)
    result = run_fresh(
        f"""
        import json, sys
        sys.path.insert(0, {str(ROOT)!r})
        import kernpack as kp
        from tests.device.test_brought_code import check_vulkan
        check_vulkan(kp.load_module({str(path)!r}))
        print(json.dumps({{"ok": True}}))
        """
    )
    assert result == {"ok": True}


def _with(description: dict, **changes) -> dict:
    return {**description, **changes}


def test_a_description_that_disagrees_with_its_shader_is_refused_naming_both(spirv):
    code = {"saxpy": spirv["saxpy"], "ramp": spirv["ramp"]}
    cases = [
        (
            _with(SAXPY, layout={"x": 0, "y": 2, "n": "push", "alpha": "push"}),
            r"parameter 'y' .* is bound at set 0, binding 2, where its shader declares nothing \(it declares "
            r"\(set, binding\): \(0, 0\) storage, \(0, 1\) storage\)",
        ),
        (
            _with(SAXPY, layout={"x": 0, "y": 1, "n": "push", "alpha": 0}),
            r"push constant 'alpha' is filled by no parameter",
        ),
        (
            _with(SAXPY, layout={"x": 0, "y": 1, "n": {"push": "alpha"}, "alpha": {"push": "n"}}),
            r"parameter 'n' \(i32\) fills push constant 'alpha', which holds f32",
        ),
        (
            _with(SAXPY, layout={"x": 0, "y": 1}),
            r"parameter 'n' has no place in its layout",
        ),
        (_with(SAXPY, layout={"x": 0, "y": 1, "n": "push", "alpha": "push", "z": 3}), r"names 'z', not parameters"),
        (
            _with(RAMP, layout={"out": 0, "params": {"set": 1, "binding": 0}}),
            r"bound at set 1, binding 0 as a storage buffer, but its shader declares a uniform buffer there; say "
            r'\{"binding": 0, "set": 1, "kind": "uniform"\}',
        ),
        (_with(RAMP, layout={"out": 0}), r"parameter 'params' has no place"),
        (
            _with(RAMP, signature="void ramp(int32_t out[:], const float params[:])"),
            r"buffer at set 0, binding 0 holds f32, but parameter 'out' \(int32_t out\[:\]\) \(i32\) is bound there",
        ),
        (_with(RAMP, entry="main"), r"no compute entry point 'main' \(it has: ramp\)"),
        (
            _with(SAXPY, workgroup=[64, 1, 1]),
            r"workgroup \[64, 1, 1\] was given, but its shader declares workgroup \[32, 1, 1\]",
        ),
        (_with(SAXPY, workgroups=[32, 1, 1]), r"has no key 'workgroups'"),
    ]
    for description, message in cases:
        with pytest.raises(kp.ArgumentError, match=message):
            kp.vulkan_module(code, [description])
    with pytest.raises(
        kp.ArgumentError, match=r"declares an image, sampler or texel buffer at set 0, binding 0, which"
    ):
        kp.vulkan_module(
            {"image": spirv["image"]},
            [{"name": "image", "signature": "void image(float out[:])", "grid": ["1"], "layout": {"out": 1}}],
        )
    # Without a layout, kernpack's own is assumed, and checked the same way.
    with pytest.raises(kp.ArgumentError, match=r"binding 0 holds f32, but the arrays' extents \(i64\) is bound there"):
        kp.vulkan_module(code, [{k: v for k, v in SAXPY.items() if k != "layout"}])


def test_an_opencl_spirv_module_handed_to_vulkan_says_so(spirv):
    with pytest.raises(
        kp.ArgumentError,
        match=r"an OpenCL SPIR-V module \(kernels: saxpy, .*\), not a Vulkan compute shader; load it with kp.opencl",
    ):
        kp.vulkan_module({"saxpy": spirv["kernels"]}, [SAXPY])


def test_the_validation_layer_is_clean_on_the_shaders_and_kernpacks_own(spirv, tmp_path):
    # VK_LAYER_KHRONOS_validation (Debian's vulkan-validationlayers) watches every call; it
    # flags, for one, a LocalSizeId shader on a device whose maintenance4 was not enabled.
    layers = Path("/usr/share/vulkan/explicit_layer.d/VkLayer_khronos_validation.json")
    require_tool(
        str(layers) if layers.exists() else None,
        "the Vulkan validation layer",
        "apt-get install vulkan-validationlayers",
    )
    for stem in ("saxpy", "ramp", "matmul"):
        (tmp_path / f"{stem}.spv").write_bytes(spirv[stem])
    (tmp_path / "functions.json").write_text(json.dumps([SAXPY, RAMP, MATMUL]))
    code = f"""
        import json, sys
        sys.path.insert(0, {str(ROOT)!r})
        import numpy as np, vulkan as vk
        import kernpack as kp
        from tests.device.test_brought_code import check_vulkan
        from tests.lang import kernels_src as K
        assert any(l.layerName == "VK_LAYER_KHRONOS_validation" for l in vk.vkEnumerateInstanceLayerProperties())
        functions = json.load(open({str(tmp_path / "functions.json")!r}))
        shaders = {{f["name"]: open({str(tmp_path)!r} + "/" + f["name"] + ".spv", "rb").read() for f in functions}}
        check_vulkan(kp.vulkan_module(shaders, functions))
        own = kp.build([K.saxpy, K.matmul], target="vulkan", cache=False)
        a = np.arange(64, dtype=np.float32)
        out = np.zeros_like(a)
        own["saxpy"](np.float32(2), a, a, out)
        assert np.array_equal(out, 3 * a)
        print(json.dumps({{"ok": True}}))
        """
    env = {**os.environ, "VK_INSTANCE_LAYERS": "VK_LAYER_KHRONOS_validation"}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr
    messages = [line for line in (result.stdout + result.stderr).splitlines() if "Validation" in line]
    assert messages == []


# ---------------------------------------------------------------------------------- OpenCL
KERNELS = [
    {"name": "saxpy", "signature": "void saxpy(const float *x, float *y, float alpha, int n)", "grid": ["n"]},
    {
        "name": "block_sum",
        "signature": "void block_sum(const float *x, float *scratch, float *sums, int n)",
        "grid": ["(n + 63) // 64 * 64"],
        "workgroup": [64],
        "local": {"scratch": 64 * 4},
    },
    {
        "name": "place",
        "signature": "void place(float *pts, float2 scale, struct Frame frame)",
        "grid": ["128"],
        "types": {"Frame": FRAME},
    },
    {
        "name": "transpose",
        "signature": "void transpose(const float *in, float *out, int rows, int cols)",
        "grid": ["(rows + 15) // 16 * 16", "(cols + 15) // 16 * 16"],
    },
]


@pytest.fixture(scope="module")
def opencl_pair(spirv):
    """The same kernels twice: SPIR-V from clang, and OpenCL C built by the driver."""
    from_spirv = require_device(kp.opencl_module(spirv["kernels"], KERNELS))
    from_source = kp.opencl_module(
        source=(SOURCES / "kernels.cl").read_text(), functions=KERNELS, options="-cl-std=CL2.0"
    )
    return from_spirv, from_source


def check_opencl(module) -> None:
    """Run the four kernels of ``module`` against numpy (here, and in the fresh process)."""
    x = np.arange(1000, dtype=np.float32)
    y = np.ones(1000, np.float32)
    module["saxpy"](x, y, 2.0, 1000)
    assert np.array_equal(y, 2 * x + 1)
    sums = np.zeros(16, np.float32)
    module["block_sum"](x, sums, 1000)  # 16 workgroups of 64, each with 256 bytes of __local memory
    np.testing.assert_allclose(sums, [x[i * 64 : (i + 1) * 64].sum() for i in range(16)])
    pts = np.random.default_rng(2).random((100, 2), np.float32)
    start = pts.copy()
    module["place"](pts, (2.0, 3.0), {"origin": (1.0, -1.0), "angle": 0.5, "count": 90})
    np.testing.assert_allclose(pts, placed(start, [2, 3], [1, -1], 0.5, 90), atol=1e-5)
    a = np.random.default_rng(3).random((37, 53), np.float32)
    out = np.zeros((53, 37), np.float32)
    module["transpose"](a, out, 37, 53)  # its required 16 x 16 workgroup, read from the kernel
    assert np.array_equal(out, a.T)


def test_opencl_c_kernels_run_from_spirv_and_from_source(opencl_pair):
    for module in opencl_pair:
        check_opencl(module)
    assert opencl_pair[1].save_to_bytes() != opencl_pair[0].save_to_bytes()
    assert "__kernel void saxpy" in opencl_pair[1].inspect_source()


def test_workgroup_and_local_memory_per_call(opencl_pair):
    x = np.arange(1000, dtype=np.float32)
    for module in opencl_pair:
        wide = module["block_sum"].configure(workgroup=[128], local={"scratch": 128 * 4})
        sums = np.zeros(8, np.float32)
        wide(x, sums, 1000)
        np.testing.assert_allclose(sums, [x[i * 128 : (i + 1) * 128].sum() for i in range(8)])
        with pytest.raises(
            kp.ArgumentError, match=r"workgroup \[8, 8\] was given, but the kernel requires \[16, 16, 1\]"
        ):
            module["transpose"].configure(workgroup=[8, 8])(x, x.copy(), 10, 10)
        with pytest.raises(kp.ArgumentError, match=r"no launch option 'specialization'"):
            module["saxpy"].configure(specialization={"N": 1})


def test_vectors_and_structs_by_value_take_tuples_dicts_structured_scalars_and_bytes(opencl_pair):
    module = opencl_pair[0]
    frame_type = module["place"].signature.params[2].layout
    assert frame_type.itemsize == 16 and frame_type.fields["angle"][1] == 8  # as OpenCL C lays it out
    packed = np.array([((1.0, -1.0), 0.5, 90)], frame_type)
    frames = [{"origin": (1.0, -1.0), "angle": 0.5, "count": 90}, ((1.0, -1.0), 0.5, 90), packed[0], packed.tobytes()]
    scales = [(2.0, 3.0), [2.0, 3.0], np.array([2.0, 3.0], np.float32), np.array([2.0, 3.0], np.float32).tobytes()]
    results = []
    for frame, scale in zip(frames, scales, strict=True):
        pts = np.ones((100, 2), np.float32)
        module["place"](pts, scale, frame)
        results.append(pts)
    assert all(np.array_equal(r, results[0]) for r in results) and results[0][0, 0] != 1
    with pytest.raises(kp.ArgumentError, match=r"argument 'scale' .*a vector of 2 lanes was expected, got \(3,\)"):
        module["place"](pts, (1.0, 2.0, 3.0), frames[0])
    with pytest.raises(kp.ArgumentError, match=r"argument 'frame' .*members are origin, angle, count; got origin"):
        module["place"](pts, (1.0, 2.0), {"origin": (0.0, 0.0)})
    with pytest.raises(kp.ArgumentError, match=r"argument 'frame' .*3 bytes were given; the type takes 16"):
        module["place"](pts, (1.0, 2.0), b"abc")


def test_opencl_kernels_run_from_an_exported_library_in_a_fresh_process(opencl_pair, tmp_path):
    host = kp.llvm_module("define void @nop() {\n  ret void\n}\n")
    host.import_module(opencl_pair[0])
    path = tmp_path / "kernels.so"
    host.export_library(path)
    source_path = tmp_path / "source.so"
    host = kp.llvm_module("define void @nop() {\n  ret void\n}\n")
    host.import_module(opencl_pair[1])
    host.export_library(source_path)
    result = run_fresh(
        f"""
        import json, sys
        sys.path.insert(0, {str(ROOT)!r})
        import kernpack as kp
        from tests.device.test_brought_code import check_opencl
        for path in ({str(path)!r}, {str(source_path)!r}):
            check_opencl(kp.load_module(path))
        print(json.dumps({{"ok": True}}))
        """
    )
    assert result == {"ok": True}


def test_an_opencl_c_file_loads_with_its_side_file(tmp_path, opencl_pair):
    shutil.copy(SOURCES / "kernels.cl", tmp_path / "kernels.cl")
    (tmp_path / "kernels.json").write_text(json.dumps({"functions": KERNELS, "options": "-cl-std=CL2.0"}))
    check_opencl(kp.load_module(tmp_path / "kernels.cl"))


def test_opencl_c_that_does_not_build_is_a_compile_error_with_the_log(opencl_pair):
    broken = "__kernel void k(__global float *x) { x[get_global_id(0)] = undefined_name; }"
    module = kp.opencl_module(source=broken, functions=[{"name": "k", "signature": "void k(float *x)", "grid": ["4"]}])
    with pytest.raises(kp.CompileError, match=r"(?s)the OpenCL C of k does not build on .*undefined_name"):
        module["k"](np.zeros(4, np.float32))


def test_malformed_opencl_descriptions_are_refused_by_name(spirv):
    def refused(description, message, **kwargs):
        with pytest.raises(kp.ArgumentError, match=message):
            kp.opencl_module(spirv["kernels"], [description], **kwargs)

    block_sum = KERNELS[1]
    refused(
        _with(
            block_sum,
            local={"sums": 4},
            signature="void block_sum(const float *x, float *scratch, float sums[:], int n)",
        ),
        r"__local parameter 'sums' must be a plain pointer",
    )
    refused(_with(block_sum, local={"scratch": 1.5}), r"__local 'scratch' has size 1.5")
    refused(_with(block_sum, workgroup=[0]), r"workgroup \[0\] is not 1 to 3 positive integers")
    refused(_with(KERNELS[2], types={"Frame": [["origin", "float2", "x"]]}), r"write each member as \[name, type\]")
    refused(_with(KERNELS[2], types={"Frame": [["origin", "vec2"]]}), r"member 'origin' has type 'vec2'")
    with pytest.raises(kp.ArgumentError, match=r"takes SPIR-V or OpenCL C source"):
        kp.opencl_module(functions=KERNELS)
    with pytest.raises(kp.ArgumentError, match=r"the binary is not SPIR-V"):
        kp.opencl_module(b"__kernel void k() {}", KERNELS)


def test_opencl_kernel_signature_with_another_argument_count_is_refused_at_first_call(spirv):
    wrong = _with(KERNELS[0], signature="void saxpy(const float x[:], float *y, float alpha, int n)")
    module = require_device(kp.opencl_module(spirv["kernels"], [wrong]))
    with pytest.raises(
        kp.ArgumentError, match=r"kernel 'saxpy' takes 4 OpenCL arguments, but its signature .* passes 5"
    ):
        module["saxpy"](np.zeros(4, np.float32), np.zeros(4, np.float32), 1.0, 4)


# ------------------------------------------------------------------------------------ CUDA
# Each block reverses its piece of x through dynamic shared memory (as nvcc writes
# ``extern __shared__ float tile[]``): the block size and the shared bytes are the launch's.
REVERSE_PTX = """
.version 7.0
.target sm_80
.address_size 64

.extern .shared .align 4 .b8 tile[];

.visible .entry reverse_blocks(.param .u64 x, .param .u64 out)
{
    .reg .b32 %r<12>;
    .reg .b64 %rd<8>;
    .reg .f32 %f<3>;

    ld.param.u64 %rd1, [x];
    ld.param.u64 %rd2, [out];
    cvta.to.global.u64 %rd1, %rd1;
    cvta.to.global.u64 %rd2, %rd2;
    mov.u32 %r1, %tid.x;
    mov.u32 %r2, %ntid.x;
    mov.u32 %r3, %ctaid.x;
    mad.lo.s32 %r4, %r3, %r2, %r1;
    mul.wide.s32 %rd3, %r4, 4;
    add.s64 %rd4, %rd1, %rd3;
    ld.global.f32 %f1, [%rd4];
    mov.u32 %r5, tile;
    shl.b32 %r6, %r1, 2;
    add.s32 %r7, %r5, %r6;
    st.shared.f32 [%r7], %f1;
    bar.sync 0;
    sub.s32 %r8, %r2, %r1;
    sub.s32 %r8, %r8, 1;
    shl.b32 %r9, %r8, 2;
    add.s32 %r10, %r5, %r9;
    ld.shared.f32 %f2, [%r10];
    add.s64 %rd5, %rd2, %rd3;
    st.global.f32 [%rd5], %f2;
    ret;
}
"""
REVERSE = {
    "name": "reverse_blocks",
    "signature": "void reverse_blocks(const float *x, float *out)",
    "grid": ["1024"],
    "workgroup": [128],
    "shared": "128 * 4",
}


def test_ptx_with_a_block_size_and_dynamic_shared_memory_is_assembled_and_packed(tmp_path):
    from kernpack.runtime.ptxas import find_ptxas

    require_tool(find_ptxas(), "ptxas", "pip install nvidia-cuda-nvcc")
    module = kp.cuda_module(REVERSE_PTX, [REVERSE])
    assert module.sections["cubin"][:4] == b"\x7fELF"
    again = kp.load_from_bytes("cuda", module.save_to_bytes())
    assert again.functions["reverse_blocks"].attrs == {"workgroup": [128], "shared": "128 * 4"}
    wider = again["reverse_blocks"].configure(workgroup=[256], shared=256 * 4)
    assert wider.entry.attrs == {"workgroup": [256], "shared": 1024}
    with pytest.raises(kp.ArgumentError, match=r"workgroup \[2048\] is not 1 to 3 positive integers of at most 1024"):
        again["reverse_blocks"].configure(workgroup=[2048])
    with pytest.raises(kp.ArgumentError, match=r"shared memory has size -1; give bytes"):
        kp.cuda_module(REVERSE_PTX, [_with(REVERSE, shared=-1)])
    with pytest.raises(kp.ArgumentError, match=r"parameter float4 v is a vector or struct by value"):
        kp.cuda_module(REVERSE_PTX, [_with(REVERSE, signature="void reverse_blocks(const float *x, float4 v)")])
    with pytest.raises(kp.CompileError, match=r"ptxas"):
        kp.cuda_module(REVERSE_PTX.replace("bar.sync 0", "bar.sink 0"), [REVERSE])


def test_ptx_with_dynamic_shared_memory_runs_where_a_gpu_is(tmp_path):
    module = require_device(kp.cuda_module(REVERSE_PTX, [REVERSE], assemble=False))
    x = np.arange(1024, dtype=np.float32)
    out = np.zeros_like(x)
    module["reverse_blocks"](x, out)
    assert np.array_equal(out, x.reshape(8, 128)[:, ::-1].reshape(-1))
    module["reverse_blocks"].configure(workgroup=[256], shared=1024)(x, out)
    assert np.array_equal(out, x.reshape(4, 256)[:, ::-1].reshape(-1))


# ------------------------------------------------------------------------------------ docs
GUIDE = ROOT / "docs" / "bring-your-own.md"
EXAMPLES = {
    heading: block
    for heading, body in (part.split("\n", 1) for part in GUIDE.read_text().split("\n## ")[1:])
    for block in re.findall(r"```python\n(.*?)```", body, re.S)
}


@pytest.mark.parametrize("heading", sorted(EXAMPLES))
def test_the_guides_examples_run(heading, tmp_path):
    _tool("glslangValidator")
    path = tmp_path / "example.py"
    path.write_text(EXAMPLES[heading])
    result = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
