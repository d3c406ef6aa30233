"""Kind ``vulkan`` (BINARY_SERIALIZABLE | RUNNABLE): SPIR-V compute shaders run through Vulkan.

Any Vulkan 1.3 device with a compute queue runs them; on a machine without a GPU, Mesa's
lavapipe (``apt-get install mesa-vulkan-drivers libvulkan1``) does, through the cffi-based
``vulkan`` package (``pip install kernpack[vulkan]``). One shader per kernel, laid end to end in
the module's binary (the function table says where each starts). Resources follow
:mod:`.abi` (binding 0 holds the array extents, binding 1 + k parameter k), as the shaders do.
A call copies the arguments into host-visible buffers, dispatches, waits, and copies back the
arrays the kernel writes.

The ``vulkan`` binding does not keep nested temporaries alive: every nested struct and array is
bound to a local variable before the call that uses it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

import numpy as np

from ..errors import DeviceUnavailableError, FormatError, LoadError
from .abi import DESCRIPTOR_SET, EXTENTS_BINDING, SCALARS, axis_extents, parameter_binding
from .device import DeviceModule, KernelEntry, is_spirv, runtime_once
from .registry import register_loader

__all__ = ["VulkanModule", "vulkan_module"]

_HOW = (
    "install a Vulkan driver and the binding: apt-get install mesa-vulkan-drivers libvulkan1 (lavapipe runs "
    "compute shaders on the CPU) and pip install 'kernpack[vulkan]'"
)


class _Device:
    """Instance, device, queue and command pool, created once per process."""

    def __init__(self, vk: Any) -> None:
        self.vk = vk
        app = vk.VkApplicationInfo(
            sType=vk.VK_STRUCTURE_TYPE_APPLICATION_INFO,
            pApplicationName="kernpack",
            applicationVersion=1,
            pEngineName="kernpack",
            engineVersion=1,
            apiVersion=vk.VK_MAKE_VERSION(1, 3, 0),
        )
        info = vk.VkInstanceCreateInfo(sType=vk.VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, pApplicationInfo=app)
        self.instance = vk.vkCreateInstance(info, None)
        chosen = None
        for physical in vk.vkEnumeratePhysicalDevices(self.instance):
            families = vk.vkGetPhysicalDeviceQueueFamilyProperties(physical)
            for index, family in enumerate(families):
                if family.queueFlags & vk.VK_QUEUE_COMPUTE_BIT:
                    chosen = (physical, index)
                    break
            if chosen:
                break
        if chosen is None:
            raise RuntimeError("no Vulkan device with a compute queue")
        self.physical, self.family = chosen
        self.name = vk.vkGetPhysicalDeviceProperties(self.physical).deviceName
        extensions = {e.extensionName for e in vk.vkEnumerateDeviceExtensionProperties(self.physical, None)}
        enabled = [e for e in ("VK_EXT_shader_atomic_float",) if e in extensions]
        # Enable every feature the device has (Int8/Int64/Float64, 8-bit storage, float atomics
        # where supported): query the feature chain and hand the same chain to vkCreateDevice.
        atomics = vk.VkPhysicalDeviceShaderAtomicFloatFeaturesEXT(
            sType=vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_ATOMIC_FLOAT_FEATURES_EXT
        )
        v12 = vk.VkPhysicalDeviceVulkan12Features(
            sType=vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES, pNext=atomics if enabled else None
        )
        features = vk.VkPhysicalDeviceFeatures2(sType=vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, pNext=v12)
        vk.vkGetPhysicalDeviceFeatures2(self.physical, features)
        priorities = vk.ffi.new("float[1]", [1.0])
        queue_info = vk.VkDeviceQueueCreateInfo(
            sType=vk.VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
            queueFamilyIndex=self.family,
            queueCount=1,
            pQueuePriorities=priorities,
        )
        device_info = vk.VkDeviceCreateInfo(
            sType=vk.VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
            pNext=features,
            queueCreateInfoCount=1,
            pQueueCreateInfos=[queue_info],
            enabledExtensionCount=len(enabled),
            ppEnabledExtensionNames=enabled,
        )
        self.device = vk.vkCreateDevice(self.physical, device_info, None)
        self.queue = vk.vkGetDeviceQueue(self.device, self.family, 0)
        pool_info = vk.VkCommandPoolCreateInfo(
            sType=vk.VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
            flags=vk.VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
            queueFamilyIndex=self.family,
        )
        self.pool = vk.vkCreateCommandPool(self.device, pool_info, None)
        memory = vk.vkGetPhysicalDeviceMemoryProperties(self.physical)
        wanted = vk.VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | vk.VK_MEMORY_PROPERTY_HOST_COHERENT_BIT
        self.memory_types = [
            i for i in range(memory.memoryTypeCount) if memory.memoryTypes[i].propertyFlags & wanted == wanted
        ]
        self.lock = threading.Lock()  # one queue: submissions are serialized

    def buffer(self, data: np.ndarray) -> tuple[Any, Any, int]:
        """A host-visible storage buffer holding a copy of ``data``; (buffer, memory, size)."""
        vk = self.vk
        size = max(data.nbytes, 16)
        info = vk.VkBufferCreateInfo(
            sType=vk.VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
            size=size,
            usage=vk.VK_BUFFER_USAGE_STORAGE_BUFFER_BIT,
            sharingMode=vk.VK_SHARING_MODE_EXCLUSIVE,
        )
        buffer = vk.vkCreateBuffer(self.device, info, None)
        needs = vk.vkGetBufferMemoryRequirements(self.device, buffer)
        kind = next(i for i in self.memory_types if needs.memoryTypeBits & (1 << i))
        alloc = vk.VkMemoryAllocateInfo(
            sType=vk.VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO, allocationSize=needs.size, memoryTypeIndex=kind
        )
        memory = vk.vkAllocateMemory(self.device, alloc, None)
        vk.vkBindBufferMemory(self.device, buffer, memory, 0)
        if data.nbytes:
            mapped = vk.vkMapMemory(self.device, memory, 0, data.nbytes, 0)
            vk.ffi.memmove(mapped, np.ascontiguousarray(data).view(np.uint8).ravel(), data.nbytes)
            vk.vkUnmapMemory(self.device, memory)
        return buffer, memory, size

    def read(self, memory: Any, out: np.ndarray) -> None:
        """Copy a buffer's memory back into ``out``."""
        vk = self.vk
        if out.nbytes:
            mapped = vk.vkMapMemory(self.device, memory, 0, out.nbytes, 0)
            vk.ffi.memmove(out.view(np.uint8).reshape(-1), mapped, out.nbytes)
            vk.vkUnmapMemory(self.device, memory)


@runtime_once
def _runtime() -> _Device:
    try:
        import vulkan as vk
    except (ImportError, OSError) as exc:
        raise DeviceUnavailableError(
            f"the Vulkan binding or loader is missing ({str(exc).splitlines()[0]}); {_HOW}"
        ) from None
    try:
        return _Device(vk)
    except (vk.VkError, RuntimeError, StopIteration) as exc:
        raise DeviceUnavailableError(f"no usable Vulkan compute device ({type(exc).__name__}: {exc}); {_HOW}") from None


class VulkanModule(DeviceModule):
    """SPIR-V compute shaders for Vulkan, one per kernel, with their function table."""

    kind = "vulkan"
    binary_format = "spirv-shaders"
    _runtime = staticmethod(_runtime)

    @classmethod
    def from_binary(cls, binary: bytes, functions: list[Any], path: str) -> VulkanModule:
        """A Vulkan module of one compute shader (a SPIR-V file holds one kernel's)."""
        if not is_spirv(binary):
            raise LoadError(f"cannot load {path!r}: not a SPIR-V module (no SPIR-V magic number and header)")
        if len(functions) != 1:
            raise LoadError(f"cannot load {path!r}: a Vulkan shader holds one kernel; describe exactly one")
        return vulkan_module({functions[0]["name"]: binary}, functions)

    def shader(self, name: str) -> bytes:
        """The SPIR-V shader of kernel ``name``."""
        attrs = self.functions[name].attrs
        return bytes(self.binary[attrs["offset"] : attrs["offset"] + attrs["size"]])

    def _inspect_source(self, fmt: str | None) -> str:
        from .tools import disassemble_spirv

        return "\n".join(f"; ---- {name}\n{disassemble_spirv(self.shader(name))}" for name in self.functions)

    @staticmethod
    def _release(loaded: dict[str, Any]) -> None:
        # Vulkan objects are not garbage-collected: destroy each kernel's pipeline and layouts.
        if loaded:
            dev = _runtime()
            vk = dev.vk
            for set_layout, pipeline_layout, shader, pipeline in loaded.values():
                vk.vkDestroyPipeline(dev.device, pipeline, None)
                vk.vkDestroyShaderModule(dev.device, shader, None)
                vk.vkDestroyPipelineLayout(dev.device, pipeline_layout, None)
                vk.vkDestroyDescriptorSetLayout(dev.device, set_layout, None)
            loaded.clear()

    def _pipeline(self, dev: _Device, entry: KernelEntry) -> tuple[Any, Any, Any, Any]:
        with self._lock:
            cached = self._loaded.get(entry.name)
            if cached is not None:
                return cached
            vk = dev.vk
            count = 1 + len(entry.signature.params)  # the extents, then one buffer per parameter
            bindings = [
                vk.VkDescriptorSetLayoutBinding(
                    binding=EXTENTS_BINDING if i == 0 else parameter_binding(i - 1),
                    descriptorType=vk.VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                    descriptorCount=1,
                    stageFlags=vk.VK_SHADER_STAGE_COMPUTE_BIT,
                )
                for i in range(count)
            ]
            layout_info = vk.VkDescriptorSetLayoutCreateInfo(
                sType=vk.VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO, bindingCount=count, pBindings=bindings
            )
            set_layout = vk.vkCreateDescriptorSetLayout(dev.device, layout_info, None)
            pipeline_layout_info = vk.VkPipelineLayoutCreateInfo(
                sType=vk.VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO, setLayoutCount=1, pSetLayouts=[set_layout]
            )
            pipeline_layout = vk.vkCreatePipelineLayout(dev.device, pipeline_layout_info, None)
            code = self.shader(entry.name)
            shader_info = vk.VkShaderModuleCreateInfo(
                sType=vk.VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO, codeSize=len(code), pCode=code
            )
            shader = vk.vkCreateShaderModule(dev.device, shader_info, None)
            name = vk.ffi.new("char[]", b"main")
            stage = vk.VkPipelineShaderStageCreateInfo(
                sType=vk.VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
                stage=vk.VK_SHADER_STAGE_COMPUTE_BIT,
                module=shader,
                pName=name,
            )
            pipeline_info = vk.VkComputePipelineCreateInfo(
                sType=vk.VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO, stage=stage, layout=pipeline_layout
            )
            try:
                pipeline = vk.vkCreateComputePipelines(dev.device, None, 1, [pipeline_info], None)[0]
            except vk.VkError as exc:
                raise DeviceUnavailableError(f"the Vulkan driver refused the shader of {entry.name}: {exc}") from None
            cached = (set_layout, pipeline_layout, shader, pipeline)
            self._loaded[entry.name] = cached
            return cached

    def _launch(self, entry: KernelEntry, args: list[Any], grid: tuple[int, ...]) -> None:
        dev = _runtime()
        vk = dev.vk
        set_layout, pipeline_layout, _, pipeline = self._pipeline(dev, entry)
        extents: list[int] = []
        host: list[np.ndarray] = []
        for param, value in zip(entry.signature.params, args, strict=True):
            if param.pointer:
                extents.extend(value.shape[: param.ndim])
                host.append(value)
            else:
                host.append(np.asarray(value, dtype=SCALARS[param.ctype].value_dtype).reshape(1))
        resources = [dev.buffer(np.asarray(extents or [0], dtype=np.int64))] + [dev.buffer(h) for h in host]
        count = len(resources)
        with dev.lock:
            pool_size = vk.VkDescriptorPoolSize(type=vk.VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, descriptorCount=count)
            pool_info = vk.VkDescriptorPoolCreateInfo(
                sType=vk.VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO,
                maxSets=1,
                poolSizeCount=1,
                pPoolSizes=[pool_size],
            )
            pool = vk.vkCreateDescriptorPool(dev.device, pool_info, None)
            alloc = vk.VkDescriptorSetAllocateInfo(
                sType=vk.VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
                descriptorPool=pool,
                descriptorSetCount=1,
                pSetLayouts=[set_layout],
            )
            descriptor_set = vk.vkAllocateDescriptorSets(dev.device, alloc)[0]
            infos = [vk.VkDescriptorBufferInfo(buffer=b, offset=0, range=size) for b, _, size in resources]
            writes = [
                vk.VkWriteDescriptorSet(
                    sType=vk.VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
                    dstSet=descriptor_set,
                    dstBinding=EXTENTS_BINDING if i == 0 else parameter_binding(i - 1),
                    descriptorCount=1,
                    descriptorType=vk.VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                    pBufferInfo=[infos[i]],
                )
                for i in range(count)
            ]
            vk.vkUpdateDescriptorSets(dev.device, count, writes, 0, None)
            command_alloc = vk.VkCommandBufferAllocateInfo(
                sType=vk.VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
                commandPool=dev.pool,
                level=vk.VK_COMMAND_BUFFER_LEVEL_PRIMARY,
                commandBufferCount=1,
            )
            command = vk.vkAllocateCommandBuffers(dev.device, command_alloc)[0]
            begin = vk.VkCommandBufferBeginInfo(
                sType=vk.VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                flags=vk.VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT,
            )
            vk.vkBeginCommandBuffer(command, begin)
            vk.vkCmdBindPipeline(command, vk.VK_PIPELINE_BIND_POINT_COMPUTE, pipeline)
            vk.vkCmdBindDescriptorSets(
                command,
                vk.VK_PIPELINE_BIND_POINT_COMPUTE,
                pipeline_layout,
                DESCRIPTOR_SET,
                1,
                [descriptor_set],
                0,
                None,
            )
            workgroup = entry.attrs["workgroup"]
            groups = [-(-n // w) for n, w in zip(axis_extents(grid), workgroup, strict=True)]
            vk.vkCmdDispatch(command, *groups)
            vk.vkEndCommandBuffer(command)
            fence_info = vk.VkFenceCreateInfo(sType=vk.VK_STRUCTURE_TYPE_FENCE_CREATE_INFO)
            fence = vk.vkCreateFence(dev.device, fence_info, None)
            submit = vk.VkSubmitInfo(
                sType=vk.VK_STRUCTURE_TYPE_SUBMIT_INFO, commandBufferCount=1, pCommandBuffers=[command]
            )
            try:
                vk.vkQueueSubmit(dev.queue, 1, [submit], fence)
                vk.vkWaitForFences(dev.device, 1, [fence], vk.VK_TRUE, 2**63 - 1)
            finally:
                vk.vkDestroyFence(dev.device, fence, None)
                vk.vkFreeCommandBuffers(dev.device, dev.pool, 1, [command])
                vk.vkDestroyDescriptorPool(dev.device, pool, None)
        for param, value, (_, memory, _) in zip(entry.signature.params, args, resources[1:], strict=True):
            if param.is_output:
                dev.read(memory, value)
        for buffer, memory, _ in resources:
            vk.vkDestroyBuffer(dev.device, buffer, None)
            vk.vkFreeMemory(dev.device, memory, None)


def vulkan_module(shaders: dict[str, bytes], functions: Iterable[dict[str, Any] | KernelEntry]) -> VulkanModule:
    """Wrap SPIR-V compute shaders that you bring, one per kernel (entry point ``main``).

    ``functions`` as for :func:`opencl_module`, plus ``"workgroup": [x, y, z]`` per kernel; the
    shaders' resources follow kernpack's Vulkan layout (binding 0 extents, 1 + k parameter k).
    """
    blob, entries = bytearray(), []
    for f in functions:
        entry = KernelEntry.of(f)
        code = shaders[entry.name]
        workgroup = entry.attrs.get("workgroup") or (f.get("workgroup") if isinstance(f, dict) else None)
        attrs = {"offset": len(blob), "size": len(code), "workgroup": list(workgroup or (64, 1, 1))}
        entries.append(KernelEntry(entry.name, entry.signature, entry.grid, attrs))
        blob += code + bytes(-len(code) % 16)
    return VulkanModule(bytes(blob), entries)


@register_loader("vulkan")
def _load(data: bytes | memoryview) -> VulkanModule:
    module = VulkanModule.from_bytes(data)
    # Where each shader lies and its workgroup come from the payload: check them here, so that
    # a damaged table is a FormatError now, not a bad slice handed to the driver at launch.
    for entry in module.functions.values():
        attrs = entry.attrs
        offset, size, workgroup = attrs.get("offset"), attrs.get("size"), attrs.get("workgroup")
        if not (
            isinstance(offset, int) and isinstance(size, int) and 0 <= offset <= offset + size <= len(module.binary)
        ):
            raise FormatError(f"vulkan module: kernel {entry.name!r}'s shader lies outside the payload")
        if not is_spirv(module.binary[offset : offset + size]):
            raise FormatError(f"vulkan module: kernel {entry.name!r}'s shader is not SPIR-V")
        if not (
            isinstance(workgroup, list)
            and len(workgroup) == 3
            and all(isinstance(w, int) and 1 <= w <= 1024 for w in workgroup)
        ):
            raise FormatError(f"vulkan module: kernel {entry.name!r} has a bad workgroup {workgroup!r}")
    return module
