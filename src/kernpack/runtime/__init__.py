"""The deploy side of kernpack: module tree, loaders, calling. Needs numpy and cffi only.

Nothing under ``kernpack.runtime`` imports llvmlite or ``kernpack.driver``: a deployed
library loads on a machine that has no compiler.
"""

from __future__ import annotations

from .calling import NativeFunction
from .cuda import CUDADevice, CUDAModule, cuda_module
from .device import DeviceFunction, DeviceModule, KernelEntry
from .devices import Device, DeviceArray, LaunchError, device, devices
from .library import LazyModule, LibraryModule, load_library
from .module import Module, ModulePropertyMask, mask_name
from .opencl import OpenCLDevice, OpenCLModule, opencl_module
from .pipeline import PipelineModule, pipeline_module
from .pymodule import PythonModule, python_module
from .registry import (
    file_loader_suffixes,
    load_from_bytes,
    load_module,
    loader_kinds,
    register_describer,
    register_file_loader,
    register_loader,
    register_provider,
)
from .signature import Param, Signature
from .vulkan import VulkanModule, vulkan_module

__all__ = [
    "VulkanModule",
    "vulkan_module",
    "CUDADevice",
    "CUDAModule",
    "cuda_module",
    "Device",
    "DeviceArray",
    "DeviceFunction",
    "DeviceModule",
    "KernelEntry",
    "LaunchError",
    "OpenCLDevice",
    "OpenCLModule",
    "opencl_module",
    "LazyModule",
    "LibraryModule",
    "PipelineModule",
    "load_library",
    "pipeline_module",
    "Module",
    "ModulePropertyMask",
    "NativeFunction",
    "Param",
    "PythonModule",
    "Signature",
    "file_loader_suffixes",
    "device",
    "devices",
    "load_from_bytes",
    "load_module",
    "loader_kinds",
    "mask_name",
    "python_module",
    "register_describer",
    "register_file_loader",
    "register_loader",
    "register_provider",
]
