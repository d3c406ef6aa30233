"""Kind ``vulkan`` (BINARY_SERIALIZABLE | RUNNABLE): SPIR-V compute shaders run through Vulkan.

Any Vulkan 1.3 device with a compute queue runs them; on a machine without a GPU, Mesa's
lavapipe (``apt-get install mesa-vulkan-drivers libvulkan1``) does, through the cffi-based
``vulkan`` package (``pip install kernpack[vulkan]``). One shader per kernel, laid end to end in
the module's binary (the function table says where each starts). Resources follow
:mod:`.abi` (binding 0 holds the array extents, binding 1 + k parameter k), as the shaders do.
Each kernel keeps its pipeline and a few launch slots (descriptor set, command buffer, fence,
buffers for the extents and scalars, staging buffers for numpy arrays), made once and reused.
A launch on device arrays (``kp.device("vulkan")``) returns at once; one with numpy arrays
copies them into the slot's staging buffers, waits, and copies back the arrays it writes.

The ``vulkan`` binding does not keep nested temporaries alive: every nested struct and array is
bound to a local variable before the call that uses it.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from typing import Any

import numpy as np

from ..errors import ArgumentError, DeviceUnavailableError, FormatError, LoadError
from .abi import DESCRIPTOR_SET, EXTENTS_BINDING, SCALARS, axis_extents, parameter_binding
from .device import DeviceModule, KernelEntry, is_spirv, runtime_once
from .devices import Device, DeviceArray, register_device_kind
from .registry import register_loader
from .spirv import buffer_bindings, compute_entry_points, local_size

__all__ = ["VulkanDevice", "VulkanModule", "vulkan_module"]

_HOW = (
    "install a Vulkan driver and the binding: apt-get install mesa-vulkan-drivers libvulkan1 (lavapipe runs "
    "compute shaders on the CPU) and pip install 'kernpack[vulkan]'"
)


class _Memory:
    """A host-visible, host-coherent storage buffer, mapped for as long as it lives.

    ``view`` is the mapping as bytes: arguments are written into it and results read from it
    without a map call per launch, and DLPack hands slices of it to other libraries. Vulkan
    frees nothing by itself: the buffer is destroyed when ``view`` and every view of it are
    gone (``release``, a finalizer on it), or at once by ``release()``, after the launches in
    flight.
    """

    __slots__ = ("__weakref__", "buffer", "release", "size", "view")

    def __init__(self, buffer: Any, size: int, view: np.ndarray, release: weakref.finalize) -> None:
        self.buffer, self.size, self.view, self.release = buffer, size, view, release


class VulkanDevice(Device):
    """Instance, device, queue and command pool, created once per process.

    Launches are submitted to one queue and run in submission order: every command buffer
    starts with a barrier on all earlier compute work. ``in_flight`` holds the fences of the
    submissions not yet known to be finished.
    """

    kind = "vulkan"

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
        memory = vk.vkGetPhysicalDeviceMemoryProperties(self.physical)
        heaps = [memory.memoryHeaps[i].size for i in range(memory.memoryHeapCount)]
        properties = vk.vkGetPhysicalDeviceProperties(self.physical)
        super().__init__(properties.deviceName, 0, max(heaps, default=0))
        # A dispatch may not exceed these workgroup counts (65535 on many devices, about 4 million
        # points of a 1-D grid): a larger grid is dispatched in pieces (vkCmdDispatchBase).
        self.max_groups = tuple(int(c) for c in properties.limits.maxComputeWorkGroupCount)
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
        wanted = vk.VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | vk.VK_MEMORY_PROPERTY_HOST_COHERENT_BIT
        self.memory_types = [
            i for i in range(memory.memoryTypeCount) if memory.memoryTypes[i].propertyFlags & wanted == wanted
        ]
        # One queue: submissions, and what they share, are serialized. Reentrant, because a
        # device array's finalizer may run (in a garbage collection) while the lock is held.
        self.lock = threading.RLock()
        self.in_flight: list[tuple[Any, _Slot]] = []
        self._unused: list[tuple[Any, Any]] = []  # freed while launches were in flight: destroyed after them

    # ------------------------------------------------------------------ memory
    def allocate(self, nbytes: int) -> _Memory:
        """A mapped storage buffer of at least ``nbytes`` (16 or more)."""
        vk = self.vk
        size = max(nbytes, 16)
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
        try:
            memory = vk.vkAllocateMemory(self.device, alloc, None)
        except vk.VkError:
            vk.vkDestroyBuffer(self.device, buffer, None)
            raise
        vk.vkBindBufferMemory(self.device, buffer, memory, 0)
        view = np.frombuffer(vk.vkMapMemory(self.device, memory, 0, size, 0), np.uint8)
        # The finalizer holds the handles, not the view: it runs when the last view is gone.
        release = weakref.finalize(view, self._free, buffer, memory)
        release.atexit = False  # the process's exit frees it all
        return _Memory(buffer, size, view, release)

    def _free(self, buffer: Any, memory: Any) -> None:
        """Destroy a buffer and its memory once no launch in flight can use them."""
        with self.lock:
            self._unused.append((buffer, memory))
            self._retire()

    def _destroy(self, buffer: Any, memory: Any) -> None:
        vk = self.vk
        vk.vkUnmapMemory(self.device, memory)
        vk.vkDestroyBuffer(self.device, buffer, None)
        vk.vkFreeMemory(self.device, memory, None)

    # ------------------------------------------------------------------ ordering
    def _retire(self, wait: bool = False) -> None:
        """Forget the finished submissions (all of them, waiting, with ``wait``); free what waited."""
        vk = self.vk
        if wait and self.in_flight:
            vk.vkQueueWaitIdle(self.queue)
            finished, self.in_flight = self.in_flight, []
        else:
            finished = []
            while self.in_flight:
                try:
                    vk.vkGetFenceStatus(self.device, self.in_flight[0][0])
                except vk.VkNotReady:
                    break
                finished.append(self.in_flight.pop(0))  # the queue finishes in order
        for _, slot in finished:
            slot.busy = False
        if not self.in_flight:
            unused, self._unused = self._unused, []
            for buffer, memory in unused:
                self._destroy(buffer, memory)

    # ------------------------------------------------------------------ Device
    def _allocate(self, nbytes: int) -> _Memory:
        with self.lock:
            memory = self.allocate(nbytes)
        return memory

    def _host_memory(self, buffer: _Memory) -> np.ndarray:
        return buffer.view  # host-visible and coherent: the host reads the device's memory

    def _write(self, buffer: _Memory, host: np.ndarray) -> None:
        buffer.view[: host.nbytes] = host.reshape(-1).view(np.uint8)  # after synchronize()

    def _read(self, buffer: _Memory, host: np.ndarray) -> None:
        host.reshape(-1).view(np.uint8)[:] = buffer.view[: host.nbytes]

    def _wait(self) -> None:
        with self.lock:
            self._retire(wait=True)


class _Slot:
    """What one launch of a kernel uses, made once and reused.

    A descriptor set, a command buffer and a fence; the extents and scalars in buffers of their
    own, and staging buffers for numpy arrays. A kernel has a few, so that launches in flight
    do not wait for each other. ``bound`` is the buffer each binding points at now, so only
    changes are written.
    """

    def __init__(self, dev: VulkanDevice, set_layout: Any, count: int) -> None:
        vk = dev.vk
        pool_size = vk.VkDescriptorPoolSize(type=vk.VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, descriptorCount=count)
        pool_info = vk.VkDescriptorPoolCreateInfo(
            sType=vk.VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO, maxSets=1, poolSizeCount=1, pPoolSizes=[pool_size]
        )
        self.pool = vk.vkCreateDescriptorPool(dev.device, pool_info, None)
        alloc = vk.VkDescriptorSetAllocateInfo(
            sType=vk.VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
            descriptorPool=self.pool,
            descriptorSetCount=1,
            pSetLayouts=[set_layout],
        )
        self.descriptor_set = vk.vkAllocateDescriptorSets(dev.device, alloc)[0]
        command_alloc = vk.VkCommandBufferAllocateInfo(
            sType=vk.VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
            commandPool=dev.pool,
            level=vk.VK_COMMAND_BUFFER_LEVEL_PRIMARY,
            commandBufferCount=1,
        )
        self.command = vk.vkAllocateCommandBuffers(dev.device, command_alloc)[0]
        self.fence = vk.vkCreateFence(
            dev.device, vk.VkFenceCreateInfo(sType=vk.VK_STRUCTURE_TYPE_FENCE_CREATE_INFO), None
        )
        self.memories: dict[int, _Memory] = {}  # binding -> extents, a scalar, or a staging buffer
        self.bound: list[Any] = [None] * count
        self.recorded: tuple[Any, ...] | None = None  # (bindings, groups) the command buffer holds
        self.busy = False

    def memory(self, dev: VulkanDevice, binding: int, nbytes: int) -> _Memory:
        """The buffer for ``binding`` in this slot, of ``nbytes`` or more (grown when too small)."""
        memory = self.memories.get(binding)
        if memory is None or memory.size < nbytes:
            if memory is not None:
                memory.release()
            memory = self.memories[binding] = dev.allocate(nbytes)
        return memory

    def destroy(self, dev: VulkanDevice) -> None:
        vk = dev.vk
        vk.vkDestroyFence(dev.device, self.fence, None)
        vk.vkFreeCommandBuffers(dev.device, dev.pool, 1, [self.command])
        vk.vkDestroyDescriptorPool(dev.device, self.pool, None)
        for memory in self.memories.values():
            memory.release()


# VK_PIPELINE_CREATE_DISPATCH_BASE_BIT (Vulkan 1.1), which the binding spells only as a KHR
# alias without a value: a pipeline dispatched from a base workgroup needs it.
_PIPELINE_CREATE_DISPATCH_BASE_BIT = 0x10
_SLOTS = 3  # launches of one kernel in flight at once before the next waits for the oldest


class _Kernel:
    """A kernel's pipeline and layouts, and its launch slots."""

    def __init__(self, dev: VulkanDevice, code: bytes, count: int, name: str, entry_point: str = "main") -> None:
        vk = dev.vk
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
        self.set_layout = vk.vkCreateDescriptorSetLayout(dev.device, layout_info, None)
        pipeline_layout_info = vk.VkPipelineLayoutCreateInfo(
            sType=vk.VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO, setLayoutCount=1, pSetLayouts=[self.set_layout]
        )
        self.pipeline_layout = vk.vkCreatePipelineLayout(dev.device, pipeline_layout_info, None)
        shader_info = vk.VkShaderModuleCreateInfo(
            sType=vk.VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO, codeSize=len(code), pCode=code
        )
        self.shader = vk.vkCreateShaderModule(dev.device, shader_info, None)
        stage = vk.VkPipelineShaderStageCreateInfo(
            sType=vk.VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
            stage=vk.VK_SHADER_STAGE_COMPUTE_BIT,
            module=self.shader,
            pName=vk.ffi.new("char[]", entry_point.encode()),
        )
        pipeline_info = vk.VkComputePipelineCreateInfo(
            sType=vk.VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
            flags=_PIPELINE_CREATE_DISPATCH_BASE_BIT,
            stage=stage,
            layout=self.pipeline_layout,
        )
        try:
            self.pipeline = vk.vkCreateComputePipelines(dev.device, None, 1, [pipeline_info], None)[0]
        except vk.VkError as exc:
            self.pipeline = None
            self.destroy(dev)
            raise DeviceUnavailableError(f"the Vulkan driver refused the shader of {name}: {exc}") from None
        self.count = count
        self.slots = [_Slot(dev, self.set_layout, count) for _ in range(_SLOTS)]
        self.next = 0

    def slot(self, dev: VulkanDevice) -> _Slot:
        """The next slot, once the launch that last used it has finished."""
        slot = self.slots[self.next]
        self.next = (self.next + 1) % len(self.slots)
        if slot.busy:
            dev.vk.vkWaitForFences(dev.device, 1, [slot.fence], dev.vk.VK_TRUE, 2**63 - 1)
            dev._retire()
        return slot

    def destroy(self, dev: VulkanDevice) -> None:
        vk = dev.vk
        for slot in getattr(self, "slots", ()):
            slot.destroy(dev)
        if self.pipeline is not None:
            vk.vkDestroyPipeline(dev.device, self.pipeline, None)
        vk.vkDestroyShaderModule(dev.device, self.shader, None)
        vk.vkDestroyPipelineLayout(dev.device, self.pipeline_layout, None)
        vk.vkDestroyDescriptorSetLayout(dev.device, self.set_layout, None)


@runtime_once
def _runtime() -> VulkanDevice:
    try:
        import vulkan as vk
    except (ImportError, OSError) as exc:
        raise DeviceUnavailableError(
            f"the Vulkan binding or loader is missing ({str(exc).splitlines()[0]}); {_HOW}"
        ) from None
    try:
        return VulkanDevice(vk)
    except (vk.VkError, RuntimeError, StopIteration) as exc:
        raise DeviceUnavailableError(f"no usable Vulkan compute device ({type(exc).__name__}: {exc}); {_HOW}") from None


register_device_kind("vulkan", lambda: [_runtime()])


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

    def _device(self) -> Device:
        return _runtime()

    def loop_limit(self) -> int | None:
        # llvmpipe (lavapipe) ends an invocation's loops after 65535 iterations in all.
        return 65535 if "llvmpipe" in _runtime().name else None

    @staticmethod
    def _release(loaded: dict[str, Any]) -> None:
        # Vulkan objects are not garbage-collected: destroy each kernel's pipeline, layouts and
        # launch slots, once the launches in flight are done with them.
        if loaded:
            dev = _runtime()
            with dev.lock:
                dev._retire(wait=True)
                for kernel in loaded.values():
                    kernel.destroy(dev)
            loaded.clear()

    def _kernel(self, dev: VulkanDevice, entry: KernelEntry) -> _Kernel:
        with self._lock:
            kernel = self._loaded.get(entry.name)
            if kernel is None:
                count = 1 + len(entry.signature.params)  # the extents, then one buffer per parameter
                kernel = self._loaded[entry.name] = _Kernel(
                    dev, self.shader(entry.name), count, entry.name, entry.attrs.get("entry", "main")
                )
            return kernel

    def _launch(self, entry: KernelEntry, args: list[Any], grid: tuple[int, ...]) -> None:
        dev = _runtime()
        vk = dev.vk
        kernel = self._kernel(dev, entry)
        params = entry.signature.params
        extents = [
            e for param, value in zip(params, args, strict=True) if param.pointer for e in value.shape[: param.ndim]
        ]
        with dev.lock:
            dev._retire()
            slot = kernel.slot(dev)
            ext = slot.memory(dev, EXTENTS_BINDING, 8 * max(len(extents), 1))
            ext.view[: 8 * len(extents)] = np.asarray(extents, np.int64).view(np.uint8)
            buffers, staged, host_arrays = [ext], [], False
            for index, (param, value) in enumerate(zip(params, args, strict=True)):
                binding = parameter_binding(index)
                if isinstance(value, DeviceArray):
                    buffers.append(value.buffer)  # on this device (DeviceFunction checked): no copy
                    continue
                host_arrays = host_arrays or param.pointer
                data = value if param.pointer else np.asarray(value, SCALARS[param.ctype].value_dtype).reshape(1)
                memory = slot.memory(dev, binding, data.nbytes)
                # Arrays the kernel writes are copied in too: it may read what it updates.
                memory.view[: data.nbytes] = data.reshape(-1).view(np.uint8)
                buffers.append(memory)
                if param.is_output:
                    staged.append((value, memory))
            rebound = self._bind(dev, slot, buffers)
            workgroup = entry.attrs["workgroup"]
            groups = tuple(-(-n // w) for n, w in zip(axis_extents(grid), workgroup, strict=True))
            # A command buffer is invalid once a descriptor set it binds is updated: record again.
            if rebound or slot.recorded != (kernel, groups):
                self._record(dev, kernel, slot, groups)
            vk.vkResetFences(dev.device, 1, [slot.fence])
            command = vk.ffi.new("VkCommandBuffer[1]", [slot.command])
            submit = vk.VkSubmitInfo(
                sType=vk.VK_STRUCTURE_TYPE_SUBMIT_INFO, commandBufferCount=1, pCommandBuffers=command
            )
            vk.vkQueueSubmit(dev.queue, 1, [submit], slot.fence)
            slot.busy = True
            dev.in_flight.append((slot.fence, slot))
            dev.launched(entry.name)
            if not host_arrays:
                return  # device arrays only: the launch runs while the caller goes on
            # numpy arrays: the results are in them, and the staging buffers free again, on return.
            dev._retire(wait=True)
            for host, memory in staged:
                host.reshape(-1).view(np.uint8)[:] = memory.view[: host.nbytes]

    @staticmethod
    def _bind(dev: VulkanDevice, slot: _Slot, buffers: list[_Memory]) -> bool:
        """Point the slot's descriptor set at ``buffers`` (binding 0 the extents); True if it changed."""
        vk = dev.vk
        writes = []
        for binding, memory in enumerate(buffers):
            if slot.bound[binding] is memory.buffer:
                continue
            slot.bound[binding] = memory.buffer
            info = vk.VkDescriptorBufferInfo(buffer=memory.buffer, offset=0, range=memory.size)
            writes.append(
                vk.VkWriteDescriptorSet(
                    sType=vk.VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
                    dstSet=slot.descriptor_set,
                    dstBinding=binding,
                    descriptorCount=1,
                    descriptorType=vk.VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                    pBufferInfo=[info],
                )
            )
        if writes:
            vk.vkUpdateDescriptorSets(dev.device, len(writes), writes, 0, None)
        return bool(writes)

    @staticmethod
    def _record(dev: VulkanDevice, kernel: _Kernel, slot: _Slot, groups: tuple[int, ...]) -> None:
        """Record the slot's command buffer: wait for earlier compute work, bind, dispatch."""
        vk = dev.vk
        command = slot.command
        vk.vkResetCommandBuffer(command, 0)
        vk.vkBeginCommandBuffer(
            command, vk.VkCommandBufferBeginInfo(sType=vk.VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO)
        )
        # Every submission earlier on the queue: its writes are seen, and it does not see ours.
        barrier = vk.VkMemoryBarrier(
            sType=vk.VK_STRUCTURE_TYPE_MEMORY_BARRIER,
            srcAccessMask=vk.VK_ACCESS_SHADER_WRITE_BIT | vk.VK_ACCESS_SHADER_READ_BIT,
            dstAccessMask=vk.VK_ACCESS_SHADER_READ_BIT | vk.VK_ACCESS_SHADER_WRITE_BIT,
        )
        stage = vk.VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT
        vk.vkCmdPipelineBarrier(command, stage, stage, 0, 1, [barrier], 0, None, 0, None)
        vk.vkCmdBindPipeline(command, vk.VK_PIPELINE_BIND_POINT_COMPUTE, kernel.pipeline)
        compute, layout = vk.VK_PIPELINE_BIND_POINT_COMPUTE, kernel.pipeline_layout
        vk.vkCmdBindDescriptorSets(command, compute, layout, DESCRIPTOR_SET, 1, [slot.descriptor_set], 0, None)
        # In pieces of at most the device's workgroup counts, each starting at its base
        # workgroup (which the shader's global invocation id includes).
        for bz, cz in _pieces(groups[2], dev.max_groups[2]):
            for by, cy in _pieces(groups[1], dev.max_groups[1]):
                for bx, cx in _pieces(groups[0], dev.max_groups[0]):
                    vk.vkCmdDispatchBase(command, bx, by, bz, cx, cy, cz)
        vk.vkEndCommandBuffer(command)
        slot.recorded = (kernel, groups)


def _pieces(count: int, limit: int) -> list[tuple[int, int]]:
    """(first, count) of each piece of ``count`` workgroups, pieces of at most ``limit``."""
    return [(first, min(limit, count - first)) for first in range(0, count, limit)]


def vulkan_module(shaders: dict[str, bytes], functions: Iterable[dict[str, Any] | KernelEntry]) -> VulkanModule:
    """Wrap SPIR-V compute shaders that you bring, one per kernel (entry point ``main``).

    ``functions`` as for :func:`opencl_module`; the shaders' resources follow kernpack's Vulkan
    layout (binding 0 extents, 1 + k parameter k). A shader is entered at ``main``, or at the
    ``"entry"`` a kernel names. Its workgroup is the one it declares (``LocalSize`` or
    ``LocalSizeId``); a ``"workgroup": [x, y, z]`` given for a kernel must be the same.

    Raises
    ------
    ArgumentError
        If a given workgroup is not the one the shader declares, or the shader declares none
        and none is given.
    """
    blob, entries = bytearray(), []
    for f in functions:
        entry = KernelEntry.of(f)
        code = shaders[entry.name]
        given = entry.attrs.get("workgroup") or (f.get("workgroup") if isinstance(f, dict) else None)
        name = entry.attrs.get("entry") or (f.get("entry") if isinstance(f, dict) else None) or "main"
        if name not in compute_entry_points(code):
            found = ", ".join(compute_entry_points(code)) or "none"
            raise ArgumentError(
                f"kernel {entry.name!r}: its shader has no compute entry point {name!r} (it has: {found}); "
                'name one with "entry"'
            )
        declared = local_size(code, name)
        if given is not None and declared is not None and tuple(given) != declared:
            raise ArgumentError(
                f"kernel {entry.name!r}: workgroup {list(given)} was given, but its shader declares "
                f"LocalSize {list(declared)}; give the shader's (or leave it out: it is read from the shader)"
            )
        workgroup = given or declared
        if workgroup is None:
            raise ArgumentError(
                f"kernel {entry.name!r}: its shader declares no LocalSize for entry point {name}; give "
                '"workgroup": [x, y, z]'
            )
        _check_bindings(entry, code)
        attrs = {**entry.attrs, "offset": len(blob), "size": len(code), "workgroup": list(workgroup)}
        if name != "main":
            attrs["entry"] = name
        entries.append(KernelEntry(entry.name, entry.signature, entry.grid, attrs))
        blob += code + bytes(-len(code) % 16)
    return VulkanModule(bytes(blob), entries)


def _check_bindings(entry: KernelEntry, code: bytes) -> None:
    """Refuse a shader whose buffers are not where kernpack's layout binds the arguments.

    Set 0: binding 0 the extents of the arrays (64-bit integers), binding 1 + k parameter k
    (its elements; a scalar in a buffer of one). A shader laid out otherwise (its first input
    at binding 0, the usual case) would read the wrong buffers and give zeros, not an error.
    """
    wanted: dict[tuple[int, int], tuple[str, str]] = {(DESCRIPTOR_SET, EXTENTS_BINDING): ("the arrays' extents", "i64")}
    for k, param in enumerate(entry.signature.params):
        dtype = SCALARS[param.ctype].dtype if param.ctype in SCALARS else None
        kind = "?" if dtype is None else f"{'f' if dtype.kind == 'f' else 'i'}{dtype.itemsize * 8}"
        wanted[DESCRIPTOR_SET, parameter_binding(k)] = (f"parameter {param.name!r} ({param})", kind)
    layout = "kernpack binds set 0: binding 0 the arrays' extents (int64), binding 1 + k parameter k"
    for (set_, binding), scalars in sorted(buffer_bindings(code).items()):
        if (set_, binding) not in wanted:
            raise ArgumentError(
                f"kernel {entry.name!r}: its shader declares a buffer at set {set_}, binding {binding}, where "
                f"nothing is bound ({layout}; its signature {entry.signature} has {len(entry.signature.params)} "
                "parameters)"
            )
        what, kind = wanted[set_, binding]
        # Several variables may share a binding (views of one buffer as different types): one
        # of them, or one whose type is not a plain scalar, must hold the argument's kind.
        words = binding != EXTENTS_BINDING  # a 64-bit integer parameter may be seen as 32-bit words
        if not any(_holds(scalar, kind, words) for scalar in scalars):
            held = ", ".join(sorted(s for s in scalars if s is not None))
            raise ArgumentError(
                f"kernel {entry.name!r}: its shader's buffer at set {set_}, binding {binding} holds {held}, "
                f"but there {layout}, so {what} ({kind}); declare the shader's buffers in that layout"
            )


def _holds(scalar: str | None, kind: str, words: bool) -> bool:
    """True if a buffer of ``scalar`` ("f32", "u64"; None: not read) can hold ``kind`` ("i64"), any signedness.

    With ``words``, a 32-bit integer view of a 64-bit integer buffer too (how kernpack's
    shaders do 64-bit atomic adds).
    """
    if scalar is None or kind == "?":
        return True
    if words and scalar[0] != "f" and kind[0] != "f" and scalar[1:] == "32" and kind[1:] == "64":
        return True
    return (scalar[0] == "f") == (kind[0] == "f") and scalar[1:] == kind[1:]


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
        if not isinstance(attrs.get("entry", "main"), str):
            raise FormatError(f"vulkan module: kernel {entry.name!r} has a bad entry point {attrs['entry']!r}")
        if not (
            isinstance(workgroup, list)
            and len(workgroup) == 3
            and all(isinstance(w, int) and 1 <= w <= 1024 for w in workgroup)
        ):
            raise FormatError(f"vulkan module: kernel {entry.name!r} has a bad workgroup {workgroup!r}")
    return module
