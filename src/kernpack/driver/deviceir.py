"""Device modules from LLVM IR that you bring: kernels for CUDA, OpenCL or Vulkan.

``device_module_from_ir(ir, target, functions)`` is to the device kinds what
:func:`~kernpack.driver.llvm.llvm_module` is to the host: IR text or bitcode in, a runnable,
serializable module out. What it does, in order:

1. parse and verify the IR here (llvmlite raises, it does not abort, on bad syntax and on
   verifier failures), and check that it fits the target: its triple, each kernel defined,
   externally visible, with the target's kernel calling convention, and its parameters
   those that kernpack's launcher passes (each array a pointer followed by its ``int64``
   extents);
2. run the target's stages from ``llir`` on, as ``kp.build`` does after lowering (the same
   options, compile cache and packaging): code generation runs in a child process
   (:mod:`.isolate`), since LLVM is built with assertions and its device backends abort the
   process on some IR that verifies (a null resource name in a Vulkan shader, ``frem fp128``
   for NVPTX, ``i128`` for SPIR-V); there, an abort is a :class:`CompileError` with LLVM's
   last words, and this interpreter lives. For CUDA, ptxas assembles a cubin where installed.

Signatures not given are read from the IR (:mod:`.irsig`); whether an array is written comes
from LLVM's own analysis, which runs in the child with the rest. Vulkan shaders say nothing
about their parameters (they are resource bindings), so Vulkan needs signatures.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from ..errors import CompileError
from ..runtime.abi import DESCRIPTOR_SET, EXTENTS_BINDING, SCALARS, parameter_binding
from ..runtime.device import DeviceModule, KernelEntry
from ..runtime.signature import Param, Signature
from .build import run_units
from .irsig import UnsupportedSignature, infer_signature, pointer_space
from .llvm import ensure_initialized, parse_ir
from .targets import Function, IRContract, Target, Unit, get_target
from .targets.vulkan import float64_atomic_refusal

__all__ = ["device_module_from_ir"]


_CALLING_CONVENTION = re.compile(r"\b(ptx_kernel|ptx_device|spir_kernel|spir_func|amdgpu_kernel|\w+cc|cc\s+\d+)\b")
_NUMTHREADS = re.compile(r'"hlsl\.numthreads"="\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*"')
_BINDING = re.compile(r"@llvm\.spv\.resource\.handlefrombinding\.[\w.]+\(\s*i32\s+(-?\d+)\s*,\s*i32\s+(-?\d+)")
_F64_ATOMIC = re.compile(r"atomicrmw\s+(?:volatile\s+)?fadd\s+ptr(?:\s+addrspace\(\d+\))?\s+\S+,\s*double\b")


def device_module_from_ir(
    ir: str | bytes | Any | Mapping[str, str | bytes | Any],
    target: str,
    functions: Iterable[Mapping[str, Any] | KernelEntry],
    *,
    name: str | None = None,
    cache: bool = True,
    **options: Any,
) -> DeviceModule:
    r"""Compile LLVM IR that you bring for a device; return the device module.

    Parameters
    ----------
    ir : str, bytes, llvmlite.ir.Module, or mapping of str to those
        LLVM IR text, bitcode, or an ``llvmlite.ir`` module. For ``"cuda"`` and ``"opencl"``,
        one module that defines every kernel. For ``"vulkan"``, one module per kernel,
        ``{kernel name: IR}`` (a single module when there is one kernel): a compute shader
        ``define void @main() #0`` with ``"hlsl.shader"="compute"`` and
        ``"hlsl.numthreads"="X,Y,Z"`` attributes, whose resources follow kernpack's layout
        (set 0; binding 0 the extents of every array parameter as ``i64``, in order;
        binding 1 + k parameter k).
    target : {"cuda", "opencl", "vulkan"}
        The device. CUDA kernels are ``ptx_kernel`` functions (triple ``nvptx64-nvidia-cuda``);
        OpenCL kernels are ``spir_kernel`` functions (``spirv64``; SPIR-V 1.2 by default).
        Kernels take each array as a pointer (CUDA: generic or ``addrspace(1)``; OpenCL:
        ``addrspace(1)`` or ``(2)``) followed by one ``i64`` extent per dimension (none for
        a parameter the signature writes C-style, ``float *x``), scalars by value, ``bool``
        as ``i8``. IR without a target triple gets the target's.
    functions : iterable of dict or KernelEntry
        One entry per kernel to export: ``{"name": ..., "grid": [...]}``, optionally with
        ``"signature"`` (e.g. ``"void scale(float a, const float x[:], float out[:])"``;
        required for Vulkan) and, for Vulkan, ``"workgroup"`` (it must match the shader's
        ``hlsl.numthreads``). ``grid`` gives the launch extents as expressions of the
        arguments (``"out.shape[0]"``), as for :func:`~kernpack.runtime.opencl_module`.
    name : str, optional
        The module's name in messages; the kernels' names joined by ``+`` by default.
    cache : bool, default True
        Use the compile cache, as ``kp.build`` does.
    **options
        The target's options, as for ``kp.build``: ``opt_level`` (0-3; cuda 3 and opencl 2 by
        default; vulkan has one pipeline), ``arch`` for cuda (``"sm_80"`` by default).

    Returns
    -------
    DeviceModule
        A ``cuda`` (PTX, plus a cubin where ptxas is installed), ``opencl`` (SPIR-V) or
        ``vulkan`` (one shader per kernel) module: BINARY_SERIALIZABLE | RUNNABLE.

    Raises
    ------
    CompileError
        If the IR does not parse or verify, does not fit the target (triple, calling
        convention, a kernel in ``functions`` it does not define, parameters that do not
        match the signature), a signature cannot be read from it, or LLVM fails or crashes
        generating code; the message names the module or kernel and carries LLVM's words.
    ValueError
        If ``target``, an option or ``functions`` is malformed.

    Notes
    -----
    When a signature is read from the IR, an array's rank is the number of ``i64``
    parameters after its pointer named ``<name>_shape0``, ``<name>_shape1``, ...; otherwise
    it is 1-D and the next parameter (an ``i64``) is its extent. Its dtype comes from how the
    kernel indexes it, and it is ``const`` where LLVM finds that the kernel never writes it.

    Examples
    --------
    >>> ir = '''
    ... declare spir_func i64 @_Z13get_global_idj(i32)
    ... define spir_kernel void @twice(ptr addrspace(1) %x, i64 %n) {
    ...   %i = call spir_func i64 @_Z13get_global_idj(i32 0)
    ...   %p = getelementptr float, ptr addrspace(1) %x, i64 %i
    ...   %v = load float, ptr addrspace(1) %p
    ...   %w = fmul float %v, 2.0
    ...   store float %w, ptr addrspace(1) %p
    ...   ret void
    ... }'''
    >>> m = device_module_from_ir(ir, "opencl", [{"name": "twice", "grid": ["x.shape[0]"]}])
    >>> print(m.signatures["twice"])
    void twice(float x[:])
    """
    spec, contract = _ir_target(target)
    options_ = spec.make_options(options)
    entries = [_Entry.of(f) for f in functions]
    names = [e.name for e in entries]
    if not names:
        raise ValueError("functions= must describe at least one kernel")
    if len(set(names)) != len(names):
        raise ValueError(f"functions= names a kernel twice: {names}")
    label = name or "+".join(names)
    ensure_initialized()
    if spec.per_kernel:
        return _per_kernel(spec, contract, ir, entries, label, options_, cache)
    if isinstance(ir, Mapping):
        raise TypeError(f"for {target}, one IR module defines every kernel; pass it, not a mapping")
    module = _parse_verified(ir, label)
    _fit_triple(module, contract, target, label)
    kernels = {e.name: _kernel_function(module, e.name, contract, target, label) for e in entries}
    signatures: dict[str, Signature] = {}
    pointers: dict[str, list[int]] = {}  # IR positions of the pointers of inferred signatures
    for e in entries:
        _check_pointer_spaces(kernels[e.name], contract, target, label)
        if e.signature is None:
            signatures[e.name], pointers[e.name] = _infer(kernels[e.name], contract, label)
        else:
            signatures[e.name] = e.signature
        _check_parameters(signatures[e.name], kernels[e.name], contract, target, label)
        KernelEntry(e.name, signatures[e.name], e.grid)  # a bad grid is refused before compiling
    unit = Unit(label, options_, [Function(e.name, signatures[e.name], e.grid) for e in entries])
    if pointers:
        unit.notes["readonly_of"] = list(pointers)  # LLVM's analysis says which arrays are const
    run_units(spec, [unit], sources=[str(module).encode()], cache=cache)
    readonly = unit.notes.get("readonly", {})
    unit.functions = [
        replace(f, signature=_with_const(f.signature, pointers[f.name], readonly.get(f.name, [])))
        if f.name in pointers
        else f
        for f in unit.functions
    ]
    return _packaged(spec, [unit], label)


def _ir_target(target: str) -> tuple[Target, IRContract]:
    """The target, and what IR for it must look like; only targets that say so take IR."""
    try:
        spec = get_target(target)
    except ValueError:
        spec = None
    if spec is None or spec.ir is None:
        raise ValueError(f"unknown device target {target!r} for LLVM IR; choose one of cuda, opencl, vulkan")
    return spec, spec.ir


def _packaged(spec: Target, units: list[Unit], label: str) -> DeviceModule:
    module = spec.package(units, label)
    assert isinstance(module, DeviceModule), module  # every target that takes IR is a device
    return module


@dataclass
class _Entry:
    name: str
    grid: tuple[str, ...]
    signature: Signature | None
    workgroup: tuple[int, ...] | None

    @classmethod
    def of(cls, f: Mapping[str, Any] | KernelEntry) -> _Entry:
        if isinstance(f, KernelEntry):
            workgroup = f.attrs.get("workgroup")
            return cls(f.name, f.grid, f.signature, tuple(workgroup) if workgroup else None)
        if not isinstance(f, Mapping) or "name" not in f or "grid" not in f:
            raise ValueError(
                f"each entry of functions= is a KernelEntry or a dict with 'name' and 'grid' "
                f"(and optionally 'signature'), not {f!r}"
            )
        signature = f.get("signature")
        if isinstance(signature, str):
            signature = Signature.parse(signature)
        if signature is not None and signature.name != f["name"]:
            raise ValueError(f"signature {signature} does not name kernel {f['name']!r}")
        workgroup = f.get("workgroup") or (f.get("attrs") or {}).get("workgroup")
        return cls(str(f["name"]), tuple(f["grid"]), signature, tuple(workgroup) if workgroup else None)


def _parse_verified(source: Any, label: str) -> Any:
    if not isinstance(source, (str, bytes, bytearray, memoryview)) and not type(source).__module__.startswith(
        "llvmlite.ir"
    ):
        raise TypeError(
            f"device IR is text, bitcode bytes or an llvmlite.ir.Module, not {type(source).__name__} ({label!r})"
        )
    module = parse_ir(source, label)
    try:
        module.verify()
    except RuntimeError as exc:
        raise CompileError(f"invalid LLVM IR in {label!r}: {str(exc).strip()}") from None
    return module


def _fit_triple(module: Any, spec: IRContract, target: str, label: str) -> None:
    triple = module.triple
    # llvmlite.ir writes "unknown-unknown-unknown" when no triple was chosen: that is no triple.
    if not triple or triple.startswith("unknown"):
        module.triple = spec.default_triple
    elif not re.fullmatch(spec.triples, triple):
        raise CompileError(
            f"{label!r} targets {triple!r}, which is not a triple for {target}; {target} code needs "
            f"{spec.triple_text} (or no triple: kernpack then sets {spec.default_triple})"
        )
    elif spec.canonical_triple:
        module.triple = spec.canonical_triple


def _kernel_function(module: Any, kname: str, spec: IRContract, target: str, label: str) -> Any:
    try:
        fn = module.get_function(kname)
    except NameError:
        defined = sorted(f.name for f in module.functions if not f.is_declaration and not f.name.startswith("llvm."))
        raise CompileError(
            f"functions= names {kname!r}, which {label!r} does not define "
            f"(it defines: {', '.join(defined) or 'nothing'})"
        ) from None
    if fn.is_declaration:
        raise CompileError(f"functions= names {kname!r}, which {label!r} declares but does not define")
    if fn.linkage.name not in ("external", "weak_odr", "weak"):
        # An internal kernel is no entry point, and the optimizer would delete it.
        raise CompileError(f"kernel {kname!r} in {label!r} has {fn.linkage.name} linkage; kernels must be external")
    cc = _calling_convention(fn)
    if cc != spec.calling_convention:
        raise CompileError(
            f"kernel {kname!r} in {label!r} uses {_describe_cc(cc)}, but {target} kernels are "
            f"'define {spec.calling_convention} void @{kname}(...)'"
        )
    return fn


def _calling_convention(fn: Any) -> str:
    header = next((line for line in str(fn).splitlines() if line.startswith("define")), "")
    found = _CALLING_CONVENTION.search(header.split("@", 1)[0])
    return found.group(1) if found else "ccc"


def _describe_cc(cc: str) -> str:
    return "the default C calling convention" if cc == "ccc" else f"calling convention {cc}"


def _spaces(spec: IRContract) -> str:
    return " or ".join(f"ptr addrspace({s})" if s else "ptr" for s in spec.pointer_spaces)


def _check_pointer_spaces(fn: Any, spec: IRContract, target: str, label: str) -> None:
    for index, arg in enumerate(fn.arguments):
        space = pointer_space(str(arg.type))
        if space is not None and space not in spec.pointer_spaces:
            raise CompileError(
                f"kernel {fn.name!r} in {label!r}: parameter {index} ({arg.name or '?'}) is a pointer in address "
                f"space {space}; {target} kernels take arrays as {_spaces(spec)}"
            )


def _infer(fn: Any, spec: IRContract, label: str) -> tuple[Signature, list[int]]:
    """The device signature of a kernel read from its IR, and the IR positions of its arrays."""
    kname = fn.name
    try:
        flat = infer_signature(fn, spec.pointer_spaces)
    except UnsupportedSignature as exc:
        raise CompileError(
            f"cannot read the signature of kernel {kname!r} in {label!r} from its IR: {exc}; "
            "give it in functions= ('signature': 'void k(const float x[:], int64_t n)')"
        ) from None
    params: list[Param] = []
    positions: list[int] = []
    flat_params = list(flat.params)
    i = 0
    while i < len(flat_params):
        p = flat_params[i]
        if not p.pointer:
            params.append(p)
            i += 1
            continue
        if p.ctype == "void":
            raise CompileError(
                f"kernel {kname!r} in {label!r}: the IR does not say which dtype array {p.name!r} holds "
                "(it is indexed as several types, or not at all); give a signature in functions="
            )
        rank = 0
        while (
            i + 1 + rank < len(flat_params)
            and flat_params[i + 1 + rank].name == f"{p.name}_shape{rank}"
            and flat_params[i + 1 + rank].ctype == "int64_t"
        ):
            rank += 1
        if rank == 0:
            following = flat_params[i + 1] if i + 1 < len(flat_params) else None
            if following is None or following.pointer or following.ctype != "int64_t":
                raise CompileError(
                    f"kernel {kname!r} in {label!r}: array {p.name!r} is not followed by its i64 extent; kernpack "
                    "passes each array as a pointer followed by one i64 per dimension "
                    f"(name them {p.name}_shape0, {p.name}_shape1, ... for more than one), or give a signature"
                )
            rank = 1
        params.append(Param(p.name, p.ctype, pointer=True, const=False, ndim=rank))
        positions.append(i)
        i += 1 + rank
    return Signature(kname, tuple(params), flat.restype), positions


def _check_parameters(sig: Signature, fn: Any, spec: IRContract, target: str, label: str) -> None:
    """Refuse a signature whose values are not what the kernel's IR takes, before any launch."""
    kname = sig.name
    restype = str(fn.global_value_type.get_function_return())
    if sig.restype != "void" or restype != "void":
        raise CompileError(f"kernel {kname!r} in {label!r} returns {restype}; kernels return void")
    expected: list[str] = []
    for p in sig.params:
        expected += ["ptr", *["i64"] * p.ndim] if p.pointer else [SCALARS[p.ctype].device_ir]
    actual = [str(a.type) for a in fn.arguments]
    fits = len(expected) == len(actual) and all(
        pointer_space(a) in spec.pointer_spaces if e == "ptr" else a == e for e, a in zip(expected, actual, strict=True)
    )
    if not fits:
        raise CompileError(
            f"kernel {kname!r} in {label!r}: signature {sig} is passed as ({', '.join(expected)}), but the IR "
            f"takes ({', '.join(actual)}); on {target} an array is a pointer ({_spaces(spec)}) followed by one i64 "
            "per dimension, a bool an i8"
        )


def _with_const(sig: Signature, positions: list[int], readonly: list[bool]) -> Signature:
    """Mark arrays const where LLVM found them read-only; with no answer, assume written (safe)."""
    arrays = iter(positions)
    params = []
    for p in sig.params:
        if p.pointer:
            at = next(arrays)
            p = replace(p, const=at < len(readonly) and readonly[at])
        params.append(p)
    return replace(sig, params=tuple(params))


# ---------------------------------------------------------------------------- Vulkan
def _per_kernel(
    spec: Target, contract: IRContract, ir: Any, entries: list[_Entry], label: str, options: Any, cache: bool
) -> DeviceModule:
    # A VulkanModule holds one shader per kernel, each entered at @main: so one IR module per
    # kernel, rather than splitting a module of many entry points here.
    if not isinstance(ir, Mapping):
        if len(entries) != 1:
            raise TypeError(
                f"for {spec.name}, each kernel is its own shader module: pass {{kernel name: IR}}, "
                f"one per entry of functions= ({', '.join(e.name for e in entries)})"
            )
        ir = {entries[0].name: ir}
    extra = sorted(set(ir) - {e.name for e in entries})
    if extra:
        raise CompileError(f"IR was given for {', '.join(extra)}, which functions= does not describe")
    units: list[Unit] = []
    sources: list[bytes] = []
    for e in entries:
        if e.name not in ir:
            raise CompileError(f"functions= describes kernel {e.name!r}, but no IR was given for it")
        if e.signature is None:
            raise CompileError(
                f"kernel {e.name!r}: a Vulkan shader's parameters are resource bindings, which its IR "
                f"does not describe; give its signature in functions= ('void {e.name}(const float x[:], ...)')"
            )
        module = _parse_verified(ir[e.name], e.name)
        _fit_triple(module, contract, spec.name, e.name)
        shader = _entry_point(module, e.name)
        workgroup = _check_shader(module, shader, e, len(e.signature.params))
        units.append(
            Unit(e.name, options, [Function(e.name, e.signature, e.grid)], notes={"workgroup": list(workgroup)})
        )
        sources.append(str(module).encode())
    run_units(spec, units, sources=sources, cache=cache)
    return _packaged(spec, units, label)


def _entry_point(module: Any, kname: str) -> Any:
    try:
        fn = module.get_function("main")
    except NameError:
        fn = None
    if fn is None or fn.is_declaration:
        raise CompileError(
            f"the shader of kernel {kname!r} does not define @main, which is where a Vulkan compute shader starts"
        )
    return fn


def _check_shader(module: Any, fn: Any, e: _Entry, nparams: int) -> tuple[int, ...]:
    """Check a shader's entry point and resources; return its workgroup size."""
    if len(list(fn.arguments)) or str(fn.global_value_type.get_function_return()) != "void":
        raise CompileError(f"kernel {e.name!r}: a Vulkan shader's entry point is 'define void @main()'")
    attrs = " ".join(a.decode() if isinstance(a, bytes) else str(a) for a in fn.attributes)
    numthreads = _NUMTHREADS.search(attrs)
    if '"hlsl.shader"="compute"' not in attrs or numthreads is None:
        raise CompileError(
            f'kernel {e.name!r}: @main needs the attributes "hlsl.shader"="compute" and "hlsl.numthreads"="X,Y,Z" '
            '(define void @main() #0 ... attributes #0 = { "hlsl.numthreads"="64,1,1" "hlsl.shader"="compute" })'
        )
    workgroup = tuple(int(n) for n in numthreads.groups())
    if e.workgroup is not None and tuple(e.workgroup) != workgroup:
        raise CompileError(
            f"kernel {e.name!r}: workgroup {list(e.workgroup)} differs from the shader's numthreads {list(workgroup)}"
        )
    text = str(module)
    bindings = {EXTENTS_BINDING, *(parameter_binding(k) for k in range(nparams))}
    for descriptor_set, binding in ((int(s), int(b)) for s, b in _BINDING.findall(text)):
        if descriptor_set != DESCRIPTOR_SET or binding not in bindings:
            raise CompileError(
                f"kernel {e.name!r}: the shader binds set {descriptor_set}, binding {binding}, but its signature "
                f"has {nparams} parameters: kernpack binds set {DESCRIPTOR_SET}, binding {EXTENTS_BINDING} (extents) "
                f"and {parameter_binding(0)} to {parameter_binding(nparams - 1)} (the parameters, in order)"
            )
    if _F64_ATOMIC.search(text):
        raise CompileError(float64_atomic_refusal(e.name))
    return workgroup
