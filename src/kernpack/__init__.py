"""kernpack: write a kernel once, run it at once on the CPU, ship it as one ``.so``.

The public API lives here. Names from the compile side (``llvm_module``, ``c_source_module``)
are imported on first use, so that ``import kernpack`` and ``import kernpack.runtime`` (what a
deployed library needs) never load llvmlite.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    ArgumentError,
    CacheWarning,
    CompileError,
    CompilerNotInstalledError,
    DeviceUnavailableError,
    ExportError,
    FormatError,
    FunctionNotFoundError,
    ImportCycleError,
    KernelIndexError,
    KernelSyntaxError,
    KernelTypeError,
    KernpackError,
    LinkError,
    LoadError,
    ModuleKindNotFoundError,
    ShadowingWarning,
    ToolError,
    ToolWarning,
    UnsupportedOperationError,
)
from .runtime import (
    CUDAModule,
    Device,
    DeviceArray,
    DeviceModule,
    KernelEntry,
    LaunchError,
    LazyModule,
    LibraryModule,
    Module,
    ModulePropertyMask,
    NativeFunction,
    OpenCLModule,
    Param,
    PipelineModule,
    PythonModule,
    Signature,
    VulkanModule,
    cuda_module,
    device,
    devices,
    load_from_bytes,
    load_module,
    opencl_module,
    pipeline_module,
    python_module,
    register_describer,
    register_file_loader,
    register_loader,
    register_provider,
    vulkan_module,
)
from .runtime.registry import import_compile_side

if TYPE_CHECKING:
    from .driver.build import build
    from .driver.cache import cache_info, clear_cache, configure_cache
    from .driver.csource import CSourceModule, c_source_module
    from .driver.deviceir import device_module_from_ir
    from .driver.kernel import GenericKernel, Kernel, kernel
    from .driver.lang import (
        ArrayType,
        ScalarType,
        TypeVar,
        atomic_add,
        bool_,
        f32,
        f64,
        grid,
        i8,
        i16,
        i32,
        i64,
        local,
        math,
        u8,
        u16,
        u32,
        u64,
    )
    from .driver.lang.functions import KernelFunction, func
    from .driver.llvm import LLVMModule, llvm_module

__version__ = "0.1.0"

# Compile-side names and the driver module that defines each.
_LAZY = {
    "LLVMModule": "kernpack.driver.llvm",
    "llvm_module": "kernpack.driver.llvm",
    "CSourceModule": "kernpack.driver.csource",
    "c_source_module": "kernpack.driver.csource",
    "device_module_from_ir": "kernpack.driver.deviceir",
    "build": "kernpack.driver.build",
    "cache_info": "kernpack.driver.cache",
    "clear_cache": "kernpack.driver.cache",
    "configure_cache": "kernpack.driver.cache",
    "Kernel": "kernpack.driver.kernel",
    "GenericKernel": "kernpack.driver.kernel",
    "kernel": "kernpack.driver.kernel",
    "KernelFunction": "kernpack.driver.lang.functions",
    "func": "kernpack.driver.lang.functions",
    **dict.fromkeys(
        [
            *("grid", "atomic_add", "local", "math", "ArrayType", "ScalarType", "TypeVar"),
            *("bool_", "f32", "f64", "i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64"),
        ],
        "kernpack.driver.lang",
    ),
}

# The loaders of the compile-side kinds and suffixes register when their driver module is
# imported; load_module() imports it the first time such a file is opened.
register_provider("kernpack.driver.llvm", suffixes=(".ll", ".bc"))
register_provider("kernpack.driver.csource", kinds=("c",), suffixes=(".c", ".cc", ".cpp", ".cxx"))
register_provider("kernpack.driver.link", exporter=True, suffixes=(".o", ".tar"))


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_compile_side(_LAZY[name], f"kernpack.{name}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kernpack' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "ArrayType",
    "GenericKernel",
    "Kernel",
    "KernelFunction",
    "KernelSyntaxError",
    "KernelTypeError",
    "ScalarType",
    "TypeVar",
    "atomic_add",
    "bool_",
    "build",
    "cache_info",
    "clear_cache",
    "configure_cache",
    "f32",
    "f64",
    "func",
    "grid",
    "i8",
    "i16",
    "i32",
    "i64",
    "kernel",
    "local",
    "math",
    "u8",
    "u16",
    "u32",
    "u64",
    "ArgumentError",
    "CSourceModule",
    "CacheWarning",
    "CompileError",
    "CompilerNotInstalledError",
    "DeviceUnavailableError",
    "ExportError",
    "FormatError",
    "FunctionNotFoundError",
    "ImportCycleError",
    "KernelIndexError",
    "KernpackError",
    "LLVMModule",
    "LazyModule",
    "LibraryModule",
    "LinkError",
    "LoadError",
    "ShadowingWarning",
    "ToolError",
    "ToolWarning",
    "Module",
    "ModulePropertyMask",
    "NativeFunction",
    "CUDAModule",
    "cuda_module",
    "OpenCLModule",
    "VulkanModule",
    "vulkan_module",
    "Device",
    "DeviceArray",
    "DeviceModule",
    "KernelEntry",
    "LaunchError",
    "ModuleKindNotFoundError",
    "opencl_module",
    "Param",
    "PipelineModule",
    "PythonModule",
    "Signature",
    "UnsupportedOperationError",
    "__version__",
    "c_source_module",
    "device",
    "device_module_from_ir",
    "devices",
    "llvm_module",
    "load_from_bytes",
    "load_module",
    "pipeline_module",
    "python_module",
    "register_describer",
    "register_file_loader",
    "register_loader",
    "register_provider",
]
