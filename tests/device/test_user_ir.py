"""LLVM IR that users bring, compiled for devices with ``kp.device_module_from_ir``.

Valid IR runs on OpenCL (Intel's CPU runtime) and Vulkan (lavapipe) against numpy; CUDA PTX is
checked by ptxas and launched only where a GPU is. Invalid IR is a ``CompileError`` that says
what is wrong, and IR that verifies but makes LLVM's device backends kill the process is a
``CompileError`` too, while this interpreter lives on. Where ``KERNPACK_REQUIRE_DEVICES``
names a device (CI), a missing runtime or tool is a failure, not a skip.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import llvmlite.binding as llvm
import numpy as np
import pytest

import kernpack as kp
from kernpack.driver.targets.cuda import find_ptxas
from tests.conftest import REQUIRED_DEVICES, require_device, require_tool

# ---------------------------------------------------------------------------- OpenCL IR
# Arrays are a pointer followed by their extents, named <array>_shape<d> for rank > 1: the
# signatures below are read from this IR, and the dtypes from how it indexes the arrays.
OPENCL_IR = r"""
declare spir_func i64 @_Z13get_global_idj(i32)

define spir_kernel void @saxpy(float %a, ptr addrspace(1) %x, i64 %x_n, ptr addrspace(1) %y, i64 %y_n,
                               ptr addrspace(1) %out, i64 %out_n) {
entry:
  %i = call spir_func i64 @_Z13get_global_idj(i32 0)
  %inside = icmp slt i64 %i, %out_n
  br i1 %inside, label %body, label %exit
body:
  %px = getelementptr inbounds float, ptr addrspace(1) %x, i64 %i
  %py = getelementptr inbounds float, ptr addrspace(1) %y, i64 %i
  %po = getelementptr inbounds float, ptr addrspace(1) %out, i64 %i
  %vx = load float, ptr addrspace(1) %px
  %vy = load float, ptr addrspace(1) %py
  %ax = fmul float %a, %vx
  %r = fadd float %ax, %vy
  store float %r, ptr addrspace(1) %po
  br label %exit
exit:
  ret void
}

define spir_kernel void @transpose(ptr addrspace(1) %m, i64 %m_shape0, i64 %m_shape1,
                                   ptr addrspace(1) %t, i64 %t_shape0, i64 %t_shape1) {
entry:
  ; grid ["m.shape[0]", "m.shape[1]"]: its last dimension runs along axis 0 (kernpack.runtime.abi)
  %i = call spir_func i64 @_Z13get_global_idj(i32 1)
  %j = call spir_func i64 @_Z13get_global_idj(i32 0)
  %row = mul i64 %i, %m_shape1
  %src = add i64 %row, %j
  %col = mul i64 %j, %t_shape1
  %dst = add i64 %col, %i
  %pm = getelementptr inbounds double, ptr addrspace(1) %m, i64 %src
  %pt = getelementptr inbounds double, ptr addrspace(1) %t, i64 %dst
  %v = load double, ptr addrspace(1) %pm
  store double %v, ptr addrspace(1) %pt
  ret void
}

; The IR cannot tell an unsigned parameter: this one is given a signature.
define spir_kernel void @fill(i32 %value, ptr addrspace(1) %out, i64 %n) {
entry:
  %i = call spir_func i64 @_Z13get_global_idj(i32 0)
  %p = getelementptr inbounds i32, ptr addrspace(1) %out, i64 %i
  store i32 %value, ptr addrspace(1) %p
  ret void
}
"""
OPENCL_FUNCTIONS = [
    {"name": "saxpy", "grid": ["out.shape[0]"]},
    {"name": "transpose", "grid": ["m.shape[0]", "m.shape[1]"]},
    {"name": "fill", "grid": ["out.shape[0]"], "signature": "void fill(uint32_t value, uint32_t out[:])"},
]

# ---------------------------------------------------------------------------- CUDA IR
CUDA_IR = r"""
declare i32 @llvm.nvvm.read.ptx.sreg.tid.x()
declare i32 @llvm.nvvm.read.ptx.sreg.ctaid.x()
declare i32 @llvm.nvvm.read.ptx.sreg.ntid.x()
declare float @__nv_expf(float)

define ptx_kernel void @expm(ptr addrspace(1) %x, i64 %x_n, ptr addrspace(1) %out, i64 %out_n) {
entry:
  %tid = call i32 @llvm.nvvm.read.ptx.sreg.tid.x()
  %ctaid = call i32 @llvm.nvvm.read.ptx.sreg.ctaid.x()
  %ntid = call i32 @llvm.nvvm.read.ptx.sreg.ntid.x()
  %block = mul i32 %ctaid, %ntid
  %i32 = add i32 %block, %tid
  %i = zext i32 %i32 to i64
  %inside = icmp slt i64 %i, %out_n
  br i1 %inside, label %body, label %exit
body:
  %px = getelementptr inbounds float, ptr addrspace(1) %x, i64 %i
  %v = load float, ptr addrspace(1) %px
  %e = call float @__nv_expf(float %v)
  %po = getelementptr inbounds float, ptr addrspace(1) %out, i64 %i
  store float %e, ptr addrspace(1) %po
  br label %exit
exit:
  ret void
}
"""


# ---------------------------------------------------------------------------- Vulkan IR
def vulkan_scale_ir(x_name: str = "ptr @.x") -> str:
    """A compute shader: out[i] = a * x[i], with kernpack's bindings (0 extents, 1 a, 2 x, 3 out)."""
    buf = {t: f'target("spirv.VulkanBuffer", [0 x {t}], 12, 1)' for t in ("i64", "float")}
    mangled = {"i64": "a0i64", "float": "a0f32"}

    def handle(t: str, binding: int, name: str) -> str:
        return (
            f"call {buf[t]} @llvm.spv.resource.handlefrombinding.tspirv.VulkanBuffer_{mangled[t]}_12_1t"
            f"(i32 0, i32 {binding}, i32 1, i32 0, {name})"
        )

    def pointer(t: str, h: str, index: str) -> str:
        return (
            f"call ptr addrspace(11) @llvm.spv.resource.getpointer.p11.tspirv.VulkanBuffer_{mangled[t]}_12_1t"
            f"({buf[t]} {h}, i32 {index})"
        )

    declarations = "\n".join(
        f"declare {buf[t]} @llvm.spv.resource.handlefrombinding.tspirv.VulkanBuffer_{mangled[t]}_12_1t"
        f"(i32, i32, i32, i32, ptr)\n"
        f"declare ptr addrspace(11) @llvm.spv.resource.getpointer.p11.tspirv.VulkanBuffer_{mangled[t]}_12_1t"
        f"({buf[t]}, i32)"
        for t in ("i64", "float")
    )
    return f"""
target triple = "spirv1.6-unknown-vulkan1.3-compute"

@.extents = private unnamed_addr constant [8 x i8] c"extents\\00"
@.a = private unnamed_addr constant [2 x i8] c"a\\00"
@.x = private unnamed_addr constant [2 x i8] c"x\\00"
@.out = private unnamed_addr constant [4 x i8] c"out\\00"

{declarations}
declare i32 @llvm.spv.thread.id.i32(i32)

define void @main() #0 {{
entry:
  %extents = {handle("i64", 0, "ptr @.extents")}
  %ha = {handle("float", 1, "ptr @.a")}
  %hx = {handle("float", 2, x_name)}
  %ho = {handle("float", 3, "ptr @.out")}
  %pn = {pointer("i64", "%extents", "1")}
  %n = load i64, ptr addrspace(11) %pn
  %tid = call i32 @llvm.spv.thread.id.i32(i32 0)
  %i = zext i32 %tid to i64
  %inside = icmp slt i64 %i, %n
  br i1 %inside, label %body, label %exit
body:
  %pa = {pointer("float", "%ha", "0")}
  %a = load float, ptr addrspace(11) %pa
  %px = {pointer("float", "%hx", "%tid")}
  %vx = load float, ptr addrspace(11) %px
  %r = fmul float %a, %vx
  %po = {pointer("float", "%ho", "%tid")}
  store float %r, ptr addrspace(11) %po
  br label %exit
exit:
  ret void
}}

attributes #0 = {{ "hlsl.numthreads"="64,1,1" "hlsl.shader"="compute" }}
"""


SCALE = {"name": "scale", "grid": ["out.shape[0]"], "signature": "void scale(float a, const float x[:], float out[:])"}

# ---------------------------------------------------------------------------- IR that aborts LLVM
# Each verifies, then kills a process that generates code for it in process (checked below):
# - vulkan: a null resource name for handlefrombinding (spirv-kernels.md, A6): assertion in
#   SPIRVUtils.cpp getStringValueFromReg, SIGABRT;
# - cuda: frem on fp128: "LLVM ERROR: unsupported library call operation", SIGABRT;
# - opencl: an i128 value: "LLVM ERROR: OpTypeInt type with a width other than 8, 16, 32 or 64
#   bits requires ... SPV_ALTERA_arbitrary_precision_integers", exit(1) from inside LLVM.
CUDA_ABORT_IR = r"""
define ptx_kernel void @quad(ptr addrspace(1) %x, i64 %x_n) {
  %v = load fp128, ptr addrspace(1) %x
  %r = frem fp128 %v, %v
  store fp128 %r, ptr addrspace(1) %x
  ret void
}
"""
OPENCL_ABORT_IR = r"""
define spir_kernel void @wide(ptr addrspace(1) %x, i64 %x_n) {
  %v = load i128, ptr addrspace(1) %x
  %r = sdiv i128 %v, 7
  store i128 %r, ptr addrspace(1) %x
  ret void
}
"""
ABORTS = {
    "vulkan": (vulkan_scale_ir("ptr null"), "spirv1.6-unknown-vulkan1.3-compute", SCALE),
    # numpy has no fp128 or int128: the IR cannot give a dtype, so the signature passes bytes.
    "cuda": (
        CUDA_ABORT_IR,
        "nvptx64-nvidia-cuda",
        {"name": "quad", "grid": ["1"], "signature": "void quad(uint8_t x[:])"},
    ),
    "opencl": (
        OPENCL_ABORT_IR,
        "spirv64v1.2-unknown-unknown",
        {"name": "wide", "grid": ["1"], "signature": "void wide(uint8_t x[:])"},
    ),
}


# ---------------------------------------------------------------------------- OpenCL
@pytest.fixture(scope="module")
def opencl():
    return kp.device_module_from_ir(OPENCL_IR, "opencl", OPENCL_FUNCTIONS, name="user_ocl")


def test_opencl_signatures_are_read_from_the_ir(opencl):
    assert opencl.kind == "opencl"
    assert {name: str(sig) for name, sig in opencl.signatures.items()} == {
        "saxpy": "void saxpy(float a, const float x[:], const float y[:], float out[:])",
        "transpose": "void transpose(const double m[:, :], double t[:, :])",
        "fill": "void fill(uint32_t value, uint32_t out[:])",
    }
    again = kp.load_from_bytes("opencl", opencl.save_to_bytes())
    assert bytes(again.binary) == bytes(opencl.binary)
    assert again.signatures == opencl.signatures
    # Bitcode reads the same as text.
    bitcode = llvm.parse_assembly(OPENCL_IR).as_bitcode()
    assert kp.device_module_from_ir(bitcode, "opencl", OPENCL_FUNCTIONS).signatures == opencl.signatures


def test_opencl_kernels_from_ir_match_numpy(opencl):
    device = require_device(opencl)
    rng = np.random.default_rng(7)
    x, y = rng.random(1000, dtype=np.float32), rng.random(1000, dtype=np.float32)
    x.flags.writeable = False  # const in the inferred signature: read-only arrays are accepted
    out = np.zeros_like(x)
    device["saxpy"](np.float32(2.5), x, y, out)
    np.testing.assert_allclose(out, np.float32(2.5) * x + y, rtol=1e-6)

    m = rng.random((37, 53))
    t = np.zeros((53, 37))
    device["transpose"](m, t)
    np.testing.assert_array_equal(t, m.T)

    filled = np.zeros(100, np.uint32)
    device["fill"](2**32 - 1, filled)
    assert (filled == 2**32 - 1).all()


# ---------------------------------------------------------------------------- CUDA
def test_a_plain_pointer_takes_no_extents():
    # 'T *out' then the count as its own argument, C style: the launcher passes no extents.
    flat = {"name": "fill", "grid": ["n"], "signature": "void fill(uint32_t value, uint32_t *out, int64_t n)"}
    device = require_device(kp.device_module_from_ir(OPENCL_IR, "opencl", [flat]))
    out = np.zeros(50, np.uint32)
    device["fill"](9, out, 40)
    assert (out[:40] == 9).all() and (out[40:] == 0).all()


@pytest.fixture(scope="module")
def cuda():
    return kp.device_module_from_ir(CUDA_IR, "cuda", [{"name": "expm", "grid": ["out.shape[0]"]}])


def test_cuda_ptx_from_ir_links_libdevice_and_passes_ptxas(cuda, tmp_path):
    ptxas = require_tool(find_ptxas(), "ptxas", "pip install nvidia-cuda-nvcc")
    assert str(cuda.signatures["expm"]) == "void expm(const float x[:], float out[:])"
    ptx = cuda.inspect_source()
    assert ".target sm_80" in ptx and ".entry expm(" in ptx
    assert "__nv_" not in ptx  # libdevice linked in and inlined
    assert bytes(cuda.sections["cubin"][:4]) == b"\x7fELF"  # what device_module_from_ir's ptxas made
    path = tmp_path / "expm.ptx"
    path.write_text(ptx)
    result = subprocess.run([ptxas, "-arch=sm_80", str(path), "-o", str(tmp_path / "expm.cubin")], capture_output=True)
    assert result.returncode == 0, result.stderr.decode()
    sm90 = kp.device_module_from_ir(CUDA_IR, "cuda", [{"name": "expm", "grid": ["out.shape[0]"]}], arch="sm_90")
    assert ".target sm_90" in sm90.inspect_source()


def test_cuda_kernel_from_ir_matches_numpy(cuda):
    reason = cuda.unavailable_reason()
    if reason is not None:
        if "cuda" in REQUIRED_DEVICES:
            pytest.fail(f"CUDA is required here but unavailable: {reason}")
        with pytest.raises(kp.DeviceUnavailableError, match="cannot run expm on cuda"):
            cuda["expm"](np.zeros(3, np.float32), np.zeros(3, np.float32))
        pytest.skip(reason)
    x = np.linspace(-3, 3, 1000, dtype=np.float32)
    out = np.zeros_like(x)
    cuda["expm"](x, out)
    np.testing.assert_allclose(out, np.exp(x), rtol=1e-6)


# ---------------------------------------------------------------------------- Vulkan
def test_vulkan_shader_from_ir_matches_numpy():
    module = kp.device_module_from_ir(vulkan_scale_ir(), "vulkan", [SCALE])
    assert module.kind == "vulkan"
    assert module.functions["scale"].attrs["workgroup"] == [64, 1, 1]  # from hlsl.numthreads
    assert module.shader("scale")[:4] == b"\x03\x02\x23\x07"  # the SPIR-V magic
    device = require_device(module)
    x = np.arange(1000, dtype=np.float32)
    out = np.zeros_like(x)
    device["scale"](np.float32(0.5), x, out)
    np.testing.assert_array_equal(out, np.float32(0.5) * x)


def test_vulkan_takes_one_shader_per_kernel_and_needs_signatures():
    shader = vulkan_scale_ir()
    two = [SCALE, {**SCALE, "name": "other", "signature": SCALE["signature"].replace("scale", "other")}]
    with pytest.raises(TypeError, match=r"each kernel is its own shader module: pass \{kernel name: IR\}"):
        kp.device_module_from_ir(shader, "vulkan", two)
    module = kp.device_module_from_ir({"scale": shader, "other": shader}, "vulkan", two)
    assert sorted(module.functions) == ["other", "scale"]
    with pytest.raises(kp.CompileError, match=r"parameters are resource bindings.*give its signature"):
        kp.device_module_from_ir(shader, "vulkan", [{"name": "scale", "grid": ["out.shape[0]"]}])
    with pytest.raises(kp.CompileError, match="binds set 0, binding 3, but its signature has 2 parameters"):
        kp.device_module_from_ir(shader, "vulkan", [{**SCALE, "signature": "void scale(float a, float out[:])"}])
    no_stage = shader.replace('"hlsl.shader"="compute"', "")
    with pytest.raises(kp.CompileError, match=r'@main needs the attributes "hlsl\.shader"="compute"'):
        kp.device_module_from_ir(no_stage, "vulkan", [SCALE])
    with pytest.raises(kp.CompileError, match=r"workgroup \[8, 8, 1\] differs from the shader's numthreads"):
        kp.device_module_from_ir(shader, "vulkan", [{**SCALE, "workgroup": [8, 8, 1]}])


# ---------------------------------------------------------------------------- invalid IR
def test_syntax_errors_name_the_module_and_carry_llvms_message():
    with pytest.raises(kp.CompileError, match=r"(?s)invalid LLVM IR in 'broken': .*error: expected type") as info:
        kp.device_module_from_ir(
            "define spir_kernel void @k( {", "opencl", [{"name": "k", "grid": ["1"]}], name="broken"
        )
    assert "<string>:1" in str(info.value)  # LLVM's own location


def test_verifier_errors_are_compile_errors_before_any_codegen():
    # %v is used before it is defined: it parses, and the verifier refuses it.
    ir = """
    define spir_kernel void @k(ptr addrspace(1) %x, i64 %n) {
    entry:
      store float %v, ptr addrspace(1) %x
      %v = load float, ptr addrspace(1) %x
      ret void
    }"""
    with pytest.raises(kp.CompileError, match=r"invalid LLVM IR in 'k': .*Instruction does not dominate all uses"):
        kp.device_module_from_ir(ir, "opencl", [{"name": "k", "grid": ["x.shape[0]"]}])


def test_a_kernel_the_ir_does_not_define_is_named():
    functions = [*OPENCL_FUNCTIONS, {"name": "vadd", "grid": ["out.shape[0]"]}]
    with pytest.raises(kp.CompileError, match=r"names 'vadd', which 'm' does not define \(it defines: fill, saxpy"):
        kp.device_module_from_ir(OPENCL_IR, "opencl", functions, name="m")
    with pytest.raises(kp.CompileError, match="names '_Z13get_global_idj', which 'm' declares but does not define"):
        kp.device_module_from_ir(OPENCL_IR, "opencl", [{"name": "_Z13get_global_idj", "grid": ["1"]}], name="m")


def test_the_calling_convention_and_triple_must_fit_the_target():
    saxpy = [OPENCL_FUNCTIONS[0]]
    with pytest.raises(kp.CompileError, match=r"'saxpy' .* uses calling convention spir_kernel, but cuda kernels are"):
        kp.device_module_from_ir(OPENCL_IR, "cuda", saxpy)
    plain = OPENCL_IR.replace("define spir_kernel void @saxpy", "define void @saxpy")
    with pytest.raises(kp.CompileError, match="uses the default C calling convention, but opencl kernels are"):
        kp.device_module_from_ir(plain, "opencl", saxpy)
    host = 'target triple = "x86_64-unknown-linux-gnu"\n' + OPENCL_IR
    with pytest.raises(kp.CompileError, match="targets 'x86_64-unknown-linux-gnu', which is not a triple for opencl"):
        kp.device_module_from_ir(host, "opencl", saxpy)
    internal = OPENCL_IR.replace("define spir_kernel void @saxpy", "define internal spir_kernel void @saxpy")
    with pytest.raises(kp.CompileError, match="has internal linkage; kernels must be external"):
        kp.device_module_from_ir(internal, "opencl", saxpy)


def test_parameters_must_be_what_the_launcher_passes():
    # An array with no extent after it: the launcher would pass one the kernel does not take.
    ir = OPENCL_IR.replace("ptr addrspace(1) %out, i64 %n)", "i64 %n, ptr addrspace(1) %out)")
    with pytest.raises(kp.CompileError, match="array 'out' is not followed by its i64 extent"):
        kp.device_module_from_ir(ir, "opencl", [{"name": "fill", "grid": ["n"]}])
    wrong = {**OPENCL_FUNCTIONS[2], "signature": "void fill(uint32_t value, uint32_t out[:, :])"}
    with pytest.raises(kp.CompileError, match=r"is passed as \(i32, ptr, i64, i64\), but the IR takes"):
        kp.device_module_from_ir(OPENCL_IR, "opencl", [wrong])
    # Private (addrspace 0) memory is no OpenCL buffer.
    generic = OPENCL_IR.replace("ptr addrspace(1)", "ptr")
    with pytest.raises(
        kp.CompileError,
        match=r"\(x\) is a pointer in address space 0; opencl kernels take arrays as ptr addrspace\(1\)",
    ):
        kp.device_module_from_ir(generic, "opencl", [OPENCL_FUNCTIONS[0]])


def test_bad_arguments_are_refused_before_compiling():
    with pytest.raises(ValueError, match="unknown device target 'metal'"):
        kp.device_module_from_ir(OPENCL_IR, "metal", OPENCL_FUNCTIONS)
    with pytest.raises(ValueError, match=r"target 'opencl' takes the options opt_level; not arch"):
        kp.device_module_from_ir(OPENCL_IR, "opencl", OPENCL_FUNCTIONS, arch="sm_80")
    with pytest.raises(ValueError, match=r"not cpu \(the GPU architecture is arch=, e.g. arch='sm_90'\)"):
        kp.device_module_from_ir(CUDA_IR, "cuda", [{"name": "expm", "grid": ["out.shape[0]"]}], cpu="sm_90")
    with pytest.raises(ValueError, match="with 'name' and 'grid'"):
        kp.device_module_from_ir(OPENCL_IR, "opencl", [{"name": "saxpy"}])
    with pytest.raises(ValueError, match="not a name like 'sm_80'"):
        kp.device_module_from_ir(CUDA_IR, "cuda", [{"name": "expm", "grid": ["out.shape[0]"]}], arch="ampere")


# ---------------------------------------------------------------------------- IR that aborts LLVM
@pytest.mark.parametrize("target", sorted(ABORTS))
def test_ir_that_kills_llvm_in_process_really_does(target):
    # The premise of the next test: generating code for this IR in process ends the process.
    ir, triple, _ = ABORTS[target]
    script = textwrap.dedent(f"""
        import sys
        import llvmlite.binding as llvm
        llvm.initialize_all_targets(); llvm.initialize_all_asmprinters()
        module = llvm.parse_assembly(sys.stdin.read())
        module.verify()
        machine = llvm.Target.from_triple({triple!r}).create_target_machine(cpu={"sm_80" if target == "cuda" else ""!r})
        module.triple, module.data_layout = {triple!r}, str(machine.target_data)
        machine.emit_assembly(module)
        print("survived")
    """)
    result = subprocess.run([sys.executable, "-c", script], input=ir, capture_output=True, text=True)
    assert "survived" not in result.stdout
    assert result.returncode != 0, result.stderr
    assert "LLVM ERROR" in result.stderr or "Assertion" in result.stderr


@pytest.mark.parametrize("target", sorted(ABORTS))
def test_ir_that_kills_llvm_is_a_compile_error_and_this_process_lives(target):
    ir, _, entry = ABORTS[target]
    with pytest.raises(kp.CompileError, match=r"LLVM (crashed \(SIGABRT\)|could not generate)") as info:
        kp.device_module_from_ir(ir, target, [entry])
    message = str(info.value)
    assert entry["name"] in message
    if target == "vulkan":
        assert "Expected G_GLOBAL_VALUE" in message  # LLVM's last words, from the child
    # Still here, and LLVM still works in this process.
    assert kp.device_module_from_ir(vulkan_scale_ir(), "vulkan", [SCALE]).shader("scale")


def test_a_crash_among_several_shaders_names_the_kernel_at_fault():
    good, bad = vulkan_scale_ir(), vulkan_scale_ir("ptr null")
    functions = [SCALE, {**SCALE, "name": "bad", "signature": SCALE["signature"].replace("scale", "bad")}]
    with pytest.raises(kp.CompileError, match=r"LLVM crashed \(SIGABRT\) generating .* code for 'bad'"):
        kp.device_module_from_ir({"scale": good, "bad": bad}, "vulkan", functions)
