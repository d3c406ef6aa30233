"""Kind ``vulkan`` (BINARY_SERIALIZABLE | RUNNABLE): SPIR-V compute shaders run through Vulkan.

Any Vulkan 1.3 device with a compute queue runs them; on a machine without a GPU, Mesa's
lavapipe (``apt-get install mesa-vulkan-drivers libvulkan1``) does, through the cffi-based
``vulkan`` package (``pip install kernpack[vulkan]``). One shader per kernel, laid end to end in
the module's binary (the function table says where each starts). Where the arguments go is
the kernel's layout (:mod:`.vklayout`): kernpack's shaders follow :mod:`.abi` (binding 0 holds
the array extents, binding 1 + k parameter k); a shader written elsewhere has the storage and
uniform buffers, push constants and specialization constants its author describes. Each
kernel keeps a pipeline per specialization and a few launch slots (descriptor sets, command
buffer, fence, buffers for the extents and scalars, staging buffers for numpy arrays), made
once and reused.
A launch on device arrays (``kp.device("vulkan")``) returns at once; one with numpy arrays
waits. On a CPU device it uses them in place (their pages imported through
``VK_EXT_external_memory_host``); elsewhere, or for an array off the descriptor alignment, it
copies them into the slot's staging buffers and copies back the arrays it writes.

The ``vulkan`` binding does not keep nested temporaries alive: every nested struct and array is
bound to a local variable before the call that uses it.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ..errors import ArgumentError, DeviceUnavailableError, FormatError, LoadError
from .abi import DESCRIPTOR_SET, SCALARS, axis_extents
from .device import DeviceModule, KernelEntry, is_spirv, runtime_once
from .devices import Device, DeviceArray, register_device_kind
from .registry import register_loader
from .signature import Param
from .spirv import Shader
from .vklayout import describe, layout_of, specialization, specialization_data

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
    flight. A numpy array's own pages imported for one launch (:meth:`VulkanDevice.import_host`)
    have no ``view``; their ``release()`` destroys them, once that launch is done.
    """

    __slots__ = ("__weakref__", "buffer", "offset", "release", "size", "view")

    def __init__(self, buffer: Any, size: int, view: np.ndarray | None, release: Any, offset: int = 0) -> None:
        self.buffer, self.size, self.view, self.release = buffer, size, view, release
        self.offset = offset  # where the data starts in the buffer (host memory imported in place)


class VulkanDevice(Device):
    """Instance, device, queue and command pool, created once per process.

    Launches are submitted to one queue and run in submission order: every command buffer
    starts with a barrier on all earlier compute work. ``in_flight`` holds the fences of the
    submissions not yet known to be finished.
    """

    kind = "vulkan"

    def _driver(self, properties: Any) -> str:
        """The driver, in its own words (Vulkan 1.2's driver properties), and whether it is the CPU."""
        vk = self.vk
        on_cpu = ", on the CPU" if properties.deviceType == vk.VK_PHYSICAL_DEVICE_TYPE_CPU else ""
        version = properties.apiVersion
        if version < vk.VK_MAKE_VERSION(1, 2, 0):  # no driver properties before Vulkan 1.2
            return f"Vulkan {vk.VK_VERSION_MAJOR(version)}.{vk.VK_VERSION_MINOR(version)}{on_cpu}"
        driver = vk.VkPhysicalDeviceDriverProperties(sType=vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES)
        chain = vk.VkPhysicalDeviceProperties2(sType=vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, pNext=driver)
        vk.vkGetPhysicalDeviceProperties2(self.physical, chain)
        name, info = (vk.ffi.string(s).decode(errors="replace") for s in (driver.driverName, driver.driverInfo))
        return f"{name} ({info}){on_cpu}" if info else f"{name}{on_cpu}"

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
        super().__init__(properties.deviceName, 0, max(heaps, default=0), self._driver(properties))
        # A dispatch may not exceed these workgroup counts (65535 on many devices, about 4 million
        # points of a 1-D grid): a larger grid is dispatched in pieces (vkCmdDispatchBase).
        self.max_groups = tuple(int(c) for c in properties.limits.maxComputeWorkGroupCount)
        self.max_uniform_range = int(properties.limits.maxUniformBufferRange)
        extensions = {e.extensionName for e in vk.vkEnumerateDeviceExtensionProperties(self.physical, None)}
        enabled = [e for e in ("VK_EXT_shader_atomic_float",) if e in extensions]
        # On a CPU device (lavapipe) a launch uses numpy arrays in place: their memory is
        # imported (VK_EXT_external_memory_host), instead of being copied in and out (about
        # 1 ms for saxpy's three arrays of 10^6 floats). The import takes whole pages; the
        # array then starts at an offset in the buffer, which must suit a storage descriptor.
        self.host_import = 0  # the alignment of an imported host pointer (0: none)
        self.offset_alignment = int(properties.limits.minStorageBufferOffsetAlignment)
        if properties.deviceType == vk.VK_PHYSICAL_DEVICE_TYPE_CPU and "VK_EXT_external_memory_host" in extensions:
            host = vk.VkPhysicalDeviceExternalMemoryHostPropertiesEXT(
                sType=vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_EXTERNAL_MEMORY_HOST_PROPERTIES_EXT
            )
            chain = vk.VkPhysicalDeviceProperties2(sType=vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, pNext=host)
            vk.vkGetPhysicalDeviceProperties2(self.physical, chain)
            self.host_import = int(host.minImportedHostPointerAlignment)
            enabled.append("VK_EXT_external_memory_host")
        # Enable every feature the device has (Int8/Int64/Float64, 8-bit storage, float atomics
        # where supported, Vulkan 1.3's maintenance4 that LocalSizeId shaders need): query the
        # feature chain and hand the same chain to vkCreateDevice.
        atomics = vk.VkPhysicalDeviceShaderAtomicFloatFeaturesEXT(
            sType=vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_ATOMIC_FLOAT_FEATURES_EXT
        )
        tail = atomics if enabled else None
        v13 = vk.VkPhysicalDeviceVulkan13Features(
            sType=vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_3_FEATURES, pNext=tail
        )
        if properties.apiVersion >= vk.VK_MAKE_VERSION(1, 3, 0):  # a 1.2 device does not know the 1.3 struct
            tail = v13
        v12 = vk.VkPhysicalDeviceVulkan12Features(
            sType=vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES, pNext=tail
        )
        v11 = vk.VkPhysicalDeviceVulkan11Features(
            sType=vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES, pNext=v12
        )
        features = vk.VkPhysicalDeviceFeatures2(sType=vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, pNext=v11)
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
        if self.host_import:
            self._host_pointer_properties = vk.vkGetDeviceProcAddr(self.device, "vkGetMemoryHostPointerPropertiesEXT")
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
            usage=vk.VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | vk.VK_BUFFER_USAGE_UNIFORM_BUFFER_BIT,
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

    def import_host(self, array: np.ndarray) -> _Memory | None:
        """A storage buffer over ``array``'s own memory (its pages), or None where it cannot be made.

        Only on a device with ``host_import``; the caller destroys it (its ``release()``) once
        the launch that uses it has finished.
        """
        vk = self.vk
        address, align = array.ctypes.data, self.host_import
        start = address - address % align
        offset = address - start
        if not array.nbytes or offset % self.offset_alignment:
            return None
        size = -(-(offset + array.nbytes) // align) * align
        handle_type = vk.VK_EXTERNAL_MEMORY_HANDLE_TYPE_HOST_ALLOCATION_BIT_EXT
        external = vk.VkExternalMemoryBufferCreateInfo(
            sType=vk.VK_STRUCTURE_TYPE_EXTERNAL_MEMORY_BUFFER_CREATE_INFO, handleTypes=handle_type
        )
        info = vk.VkBufferCreateInfo(
            sType=vk.VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
            pNext=external,
            size=size,
            usage=vk.VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | vk.VK_BUFFER_USAGE_UNIFORM_BUFFER_BIT,
            sharingMode=vk.VK_SHARING_MODE_EXCLUSIVE,
        )
        buffer = vk.vkCreateBuffer(self.device, info, None)
        try:
            needs = vk.vkGetBufferMemoryRequirements(self.device, buffer)
            pointer = vk.ffi.cast("void *", start)
            found = vk.VkMemoryHostPointerPropertiesEXT(sType=vk.VK_STRUCTURE_TYPE_MEMORY_HOST_POINTER_PROPERTIES_EXT)
            self._host_pointer_properties(self.device, handle_type, pointer, found)
            kinds = needs.memoryTypeBits & found.memoryTypeBits
            if needs.size > size or not kinds:
                raise vk.VkError("no memory type imports this host memory")
            host = vk.VkImportMemoryHostPointerInfoEXT(
                sType=vk.VK_STRUCTURE_TYPE_IMPORT_MEMORY_HOST_POINTER_INFO_EXT,
                handleType=handle_type,
                pHostPointer=pointer,
            )
            alloc = vk.VkMemoryAllocateInfo(
                sType=vk.VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
                pNext=host,
                allocationSize=size,
                memoryTypeIndex=(kinds & -kinds).bit_length() - 1,
            )
            memory = vk.vkAllocateMemory(self.device, alloc, None)
        except vk.VkError:
            vk.vkDestroyBuffer(self.device, buffer, None)
            return None  # copied through a staging buffer instead
        vk.vkBindBufferMemory(self.device, buffer, memory, 0)
        return _Memory(buffer, array.nbytes, None, functools.partial(self._destroy_import, buffer, memory), offset)

    def _destroy_import(self, buffer: Any, memory: Any) -> None:
        self.vk.vkDestroyBuffer(self.device, buffer, None)
        self.vk.vkFreeMemory(self.device, memory, None)

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

    A descriptor set per set of the layout, a command buffer and a fence; the extents and
    scalars in buffers of their own, and staging buffers for numpy arrays. A kernel has a
    few, so that launches in flight do not wait for each other. ``bound`` is the buffer each
    (set, binding) points at now, so only changes are written.
    """

    def __init__(self, dev: VulkanDevice, kernel: _Kernel) -> None:
        vk = dev.vk
        counts: dict[int, int] = {}
        for buffer in kernel.layout.buffers:
            kind = kernel.descriptor_type[buffer.kind]
            counts[kind] = counts.get(kind, 0) + 1
        sizes = [vk.VkDescriptorPoolSize(type=t, descriptorCount=n) for t, n in counts.items()]
        pool_info = vk.VkDescriptorPoolCreateInfo(
            sType=vk.VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO,
            maxSets=len(kernel.set_layouts),
            poolSizeCount=len(sizes),
            pPoolSizes=sizes or None,
        )
        self.pool = vk.vkCreateDescriptorPool(dev.device, pool_info, None)
        alloc = vk.VkDescriptorSetAllocateInfo(
            sType=vk.VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
            descriptorPool=self.pool,
            descriptorSetCount=len(kernel.set_layouts),
            pSetLayouts=kernel.set_layouts,
        )
        self.descriptor_sets = list(vk.vkAllocateDescriptorSets(dev.device, alloc))
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
        self.memories: dict[tuple[int, int], _Memory] = {}  # (set, binding) -> extents, scalar or staging
        self.bound: dict[tuple[int, int], Any] = {}
        self.recorded: tuple[Any, ...] | None = None  # (groups, push constants) the command buffer holds
        self.busy = False

    def memory(self, dev: VulkanDevice, where: tuple[int, int], nbytes: int) -> _Memory:
        """The buffer for (set, binding) ``where`` in this slot, of ``nbytes`` or more (grown when too small)."""
        memory = self.memories.get(where)
        if memory is None or memory.size < nbytes:
            if memory is not None:
                memory.release()
            memory = self.memories[where] = dev.allocate(nbytes)
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
    """A kernel's pipeline and layouts (for one specialization), and its launch slots."""

    def __init__(self, dev: VulkanDevice, code: bytes, entry: KernelEntry) -> None:
        vk = dev.vk
        self.layout = layout = layout_of(entry)
        self.descriptor_type = {
            "storage": vk.VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
            "uniform": vk.VK_DESCRIPTOR_TYPE_UNIFORM_BUFFER,
        }
        self.set_layouts: list[Any] = []
        self.pipeline = self.vector = self.shader = self.pipeline_layout = None
        # The vector entry point's pipeline (generated kernels, attrs["vector"]): made at the
        # first launch that can use it, so that a launch that cannot does not compile it.
        self.name, self.vector_entry = entry.name, entry.attrs.get("vector")
        shader = Shader.read(code)
        if self.vector_entry not in (None, *shader.entry_points):  # a damaged table: the driver is not asked
            raise FormatError(f"kernel {entry.name!r}: its shader has no entry point {self.vector_entry!r}")
        self.slots: list[_Slot] = []
        try:
            for set_ in range(layout.sets):
                bindings = [
                    vk.VkDescriptorSetLayoutBinding(
                        binding=b.binding,
                        descriptorType=self.descriptor_type[b.kind],
                        descriptorCount=1,
                        stageFlags=vk.VK_SHADER_STAGE_COMPUTE_BIT,
                    )
                    for b in layout.buffers
                    if b.set == set_
                ]
                layout_info = vk.VkDescriptorSetLayoutCreateInfo(
                    sType=vk.VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
                    bindingCount=len(bindings),
                    pBindings=bindings or None,
                )
                self.set_layouts.append(vk.vkCreateDescriptorSetLayout(dev.device, layout_info, None))
            ranges = [
                vk.VkPushConstantRange(stageFlags=vk.VK_SHADER_STAGE_COMPUTE_BIT, offset=0, size=layout.push_size)
            ]
            pipeline_layout_info = vk.VkPipelineLayoutCreateInfo(
                sType=vk.VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
                setLayoutCount=len(self.set_layouts),
                pSetLayouts=self.set_layouts,
                pushConstantRangeCount=1 if layout.push_size else 0,
                pPushConstantRanges=ranges if layout.push_size else None,
            )
            self.pipeline_layout = vk.vkCreatePipelineLayout(dev.device, pipeline_layout_info, None)
            shader_info = vk.VkShaderModuleCreateInfo(
                sType=vk.VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO, codeSize=len(code), pCode=code
            )
            self.shader = vk.vkCreateShaderModule(dev.device, shader_info, None)
            values = entry.attrs.get("specialization") or {}
            spec_entries, spec_data = specialization_data(shader, values)
            map_entries = [vk.VkSpecializationMapEntry(constantID=i, offset=o, size=n) for i, o, n in spec_entries]
            data = vk.ffi.new("char[]", spec_data or b"\0")
            spec = vk.VkSpecializationInfo(
                mapEntryCount=len(map_entries),
                pMapEntries=map_entries or None,
                dataSize=len(spec_data),
                pData=data,
            )
            self.pipeline = self._pipeline(dev, entry.attrs.get("entry", "main"), spec if map_entries else None)
        except vk.VkError as exc:
            self.destroy(dev)
            raise DeviceUnavailableError(f"the Vulkan driver refused the shader of {entry.name}: {exc}") from None
        self.slots = [_Slot(dev, self) for _ in range(_SLOTS)]
        self.next = 0

    def _pipeline(self, dev: VulkanDevice, entry: str, spec: Any) -> Any:
        """The compute pipeline of the shader's entry point ``entry``."""
        vk = dev.vk
        name = vk.ffi.new("char[]", entry.encode())
        stage = vk.VkPipelineShaderStageCreateInfo(
            sType=vk.VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
            stage=vk.VK_SHADER_STAGE_COMPUTE_BIT,
            module=self.shader,
            pName=name,
            pSpecializationInfo=spec,
        )
        pipeline_info = vk.VkComputePipelineCreateInfo(
            sType=vk.VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
            flags=_PIPELINE_CREATE_DISPATCH_BASE_BIT,
            stage=stage,
            layout=self.pipeline_layout,
        )
        return vk.vkCreateComputePipelines(dev.device, None, 1, [pipeline_info], None)[0]

    def vector_pipeline(self, dev: VulkanDevice) -> Any:
        """The vector entry point's pipeline, made the first time."""
        if self.vector is None:
            try:
                self.vector = self._pipeline(dev, self.vector_entry, None)  # generated shaders have no constants
            except dev.vk.VkError as exc:
                raise DeviceUnavailableError(f"the Vulkan driver refused {self.name}'s vector shader: {exc}") from None
        return self.vector

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
        for slot in self.slots:
            slot.destroy(dev)
        for pipeline in (self.pipeline, self.vector):
            if pipeline is not None:
                vk.vkDestroyPipeline(dev.device, pipeline, None)
        if self.shader is not None:
            vk.vkDestroyShaderModule(dev.device, self.shader, None)
        if self.pipeline_layout is not None:
            vk.vkDestroyPipelineLayout(dev.device, self.pipeline_layout, None)
        for set_layout in self.set_layouts:
            vk.vkDestroyDescriptorSetLayout(dev.device, set_layout, None)


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
        # One pipeline per specialization: the constants are compiled into it.
        key = (entry.name, tuple(sorted((entry.attrs.get("specialization") or {}).items())))
        with self._lock:
            kernel = self._loaded.get(key)
            if kernel is None:
                kernel = self._loaded[key] = _Kernel(dev, self.shader(entry.name), entry)
            return kernel

    def _configure(self, entry: KernelEntry, options: dict[str, Any]) -> KernelEntry:
        given = options.pop("specialization", None)
        workgroup = options.pop("workgroup", None)
        super()._configure(entry, options)  # refuses what is left
        shader = Shader.read(self.shader(entry.name))
        attrs = dict(entry.attrs)
        if given:
            attrs["specialization"] = {**attrs.get("specialization", {}), **specialization(entry, shader, given)}
        attrs["workgroup"] = list(_workgroup(entry, shader, attrs, workgroup))
        return KernelEntry(entry.name, entry.signature, entry.grid, attrs)

    def _launch(self, entry: KernelEntry, args: list[Any], grid: tuple[int, ...]) -> None:
        dev = _runtime()
        kernel = self._kernel(dev, entry)
        with dev.lock:
            dev._retire()
            slot = kernel.slot(dev)
            imported: dict[tuple[int, int], _Memory] = {}  # numpy arrays used in place
            try:
                self._submit(dev, kernel, slot, entry, args, grid, imported)
            finally:
                if imported:  # once the launch is done, the arrays' pages are the host's alone again
                    dev._retire(wait=True)
                    for where, memory in imported.items():
                        slot.bound.pop(where, None)
                        memory.release()

    def _submit(
        self,
        dev: VulkanDevice,
        kernel: _Kernel,
        slot: _Slot,
        entry: KernelEntry,
        args: list[Any],
        grid: tuple[int, ...],
        imported: dict[tuple[int, int], _Memory],
    ) -> None:
        """Bind the arguments to the slot, submit it, and wait where numpy arrays are involved.

        Host memory imported in place goes into ``imported``, which the caller destroys.
        """
        vk = dev.vk
        layout = kernel.layout
        params = entry.signature.params
        buffers: dict[tuple[int, int], _Memory] = {}
        staged, host_arrays = [], False
        for b in layout.buffers:
            where = (b.set, b.binding)
            if b.param < 0:  # kernpack's extents buffer: every array's extents, in order
                extents = [e for p, v in zip(params, args, strict=True) if p.pointer for e in v.shape[: p.ndim]]
                memory = slot.memory(dev, where, 8 * max(len(extents), 1))
                memory.view[: 8 * len(extents)] = np.asarray(extents, np.int64).view(np.uint8)
                buffers[where] = memory
                continue
            param, value = params[b.param], args[b.param]
            if isinstance(value, DeviceArray):
                buffers[where] = value.buffer  # on this device (DeviceFunction checked): no copy
                continue
            host_arrays = host_arrays or param.pointer
            if param.pointer and dev.host_import and (value.flags.writeable or not param.is_output):
                memory = dev.import_host(value)
                if memory is not None:  # the kernel reads and writes the numpy array itself
                    buffers[where] = imported[where] = memory
                    continue
            data = value if param.pointer else _value_bytes(param, value)
            memory = slot.memory(dev, where, data.nbytes)
            # Arrays the kernel writes are copied in too: it may read what it updates.
            memory.view[: data.nbytes] = data.reshape(-1).view(np.uint8)
            buffers[where] = memory
            if param.is_output:
                staged.append((value, memory))
        push = bytearray(layout.push_size)
        for p in layout.push:
            value = _value_bytes(params[p.param], args[p.param])
            push[p.offset : p.offset + value.nbytes] = value.tobytes()
        rebound = self._bind(dev, kernel, slot, buffers)
        workgroup = entry.attrs["workgroup"]
        points = axis_extents(grid)  # along x, y, z
        groups = tuple(-(-n // w) for n, w in zip(points, workgroup, strict=True))
        tiles = entry.attrs.get("tiles", 1)  # rows of the grid each workgroup takes, along x
        groups = (-(-groups[0] // tiles), *groups[1:])
        # The vector entry point takes the whole workgroups, where no array the kernel writes
        # shares memory with another argument; the shader's main, the rest.
        vector = 0
        if kernel.vector_entry and not _shared(params, args):
            vector = points[0] // (workgroup[0] * tiles)
        # A command buffer is invalid once a descriptor set it binds is updated: record again.
        if rebound or slot.recorded != (kernel, groups, bytes(push), vector):
            self._record(dev, kernel, slot, groups, bytes(push), vector)
        vk.vkResetFences(dev.device, 1, [slot.fence])
        command = vk.ffi.new("VkCommandBuffer[1]", [slot.command])
        submit = vk.VkSubmitInfo(sType=vk.VK_STRUCTURE_TYPE_SUBMIT_INFO, commandBufferCount=1, pCommandBuffers=command)
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
    def _bind(dev: VulkanDevice, kernel: _Kernel, slot: _Slot, buffers: dict[tuple[int, int], _Memory]) -> bool:
        """Point the slot's descriptor sets at ``buffers``; True if that changed them."""
        vk = dev.vk
        writes = []
        for b in kernel.layout.buffers:
            memory = buffers[b.set, b.binding]
            if slot.bound.get((b.set, b.binding)) is memory.buffer:
                continue
            slot.bound[b.set, b.binding] = memory.buffer
            size = memory.size if b.kind == "storage" else min(memory.size, dev.max_uniform_range)
            info = vk.VkDescriptorBufferInfo(buffer=memory.buffer, offset=memory.offset, range=size)
            writes.append(
                vk.VkWriteDescriptorSet(
                    sType=vk.VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
                    dstSet=slot.descriptor_sets[b.set],
                    dstBinding=b.binding,
                    descriptorCount=1,
                    descriptorType=kernel.descriptor_type[b.kind],
                    pBufferInfo=[info],
                )
            )
        if writes:
            vk.vkUpdateDescriptorSets(dev.device, len(writes), writes, 0, None)
        return bool(writes)

    @staticmethod
    def _record(
        dev: VulkanDevice, kernel: _Kernel, slot: _Slot, groups: tuple[int, ...], push: bytes, vector: int
    ) -> None:
        """Record the slot's command buffer: wait for earlier compute work, bind, push, dispatch.

        The first ``vector`` workgroups along x go to the vector entry point's pipeline.
        """
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
            dstAccessMask=vk.VK_ACCESS_SHADER_READ_BIT | vk.VK_ACCESS_SHADER_WRITE_BIT | vk.VK_ACCESS_UNIFORM_READ_BIT,
        )
        stage = vk.VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT
        vk.vkCmdPipelineBarrier(command, stage, stage, 0, 1, [barrier], 0, None, 0, None)
        compute, layout = vk.VK_PIPELINE_BIND_POINT_COMPUTE, kernel.pipeline_layout
        sets = slot.descriptor_sets
        vk.vkCmdBindDescriptorSets(command, compute, layout, DESCRIPTOR_SET, len(sets), sets, 0, None)
        if push:
            data = vk.ffi.new("char[]", push)
            vk.vkCmdPushConstants(command, layout, vk.VK_SHADER_STAGE_COMPUTE_BIT, 0, len(push), data)
        # The two pipelines share the layout: the descriptor sets and push constants stay bound.
        # Their workgroups hold different points, so neither waits for the other.
        if vector:
            vk.vkCmdBindPipeline(command, compute, kernel.vector_pipeline(dev))
            _dispatch(vk, command, 0, (vector, *groups[1:]), dev.max_groups)
        if vector < groups[0]:
            vk.vkCmdBindPipeline(command, compute, kernel.pipeline)
            _dispatch(vk, command, vector, groups, dev.max_groups)
        vk.vkEndCommandBuffer(command)
        slot.recorded = (kernel, groups, push, vector)


def _dispatch(vk: Any, command: Any, first: int, groups: tuple[int, ...], limits: tuple[int, ...]) -> None:
    """Dispatch workgroups ``first`` to ``groups[0]`` along x (all of y and z).

    In pieces of at most the device's workgroup counts, each starting at its base workgroup
    (which the shader's global invocation id includes).
    """
    for bz, cz in _pieces(0, groups[2], limits[2]):
        for by, cy in _pieces(0, groups[1], limits[1]):
            for bx, cx in _pieces(first, groups[0], limits[0]):
                vk.vkCmdDispatchBase(command, bx, by, bz, cx, cy, cz)


def _shared(params: Sequence[Param], args: list[Any]) -> bool:
    """True if an array argument the kernel may write shares memory with another array argument."""
    arrays = [
        (p.is_output, v.buffer.view if isinstance(v, DeviceArray) else v)
        for p, v in zip(params, args, strict=True)
        if p.pointer
    ]
    return any(
        np.may_share_memory(mine, other)
        for k, (written, mine) in enumerate(arrays)
        if written
        for j, (_, other) in enumerate(arrays)
        if j != k
    )


def _value_bytes(param: Param, value: Any) -> np.ndarray:
    """A scalar, vector or struct argument as the bytes its buffer or push constant holds."""
    if param.layout is not None:
        return np.frombuffer(value.tobytes(), np.uint8)  # packed by the caller's DeviceFunction
    return np.asarray(value, SCALARS[param.ctype].value_dtype).reshape(1)


def _pieces(start: int, stop: int, limit: int) -> list[tuple[int, int]]:
    """(first, count) of each piece of workgroups ``start`` to ``stop``, pieces of at most ``limit``."""
    return [(first, min(limit, stop - first)) for first in range(start, stop, limit)]


def vulkan_module(shaders: dict[str, bytes], functions: Iterable[dict[str, Any] | KernelEntry]) -> VulkanModule:
    """Wrap SPIR-V compute shaders that you bring, one per kernel.

    Parameters
    ----------
    shaders : dict of str to bytes
        Each kernel's SPIR-V module.
    functions : iterable of dict or KernelEntry
        For each kernel, as for :func:`opencl_module` (``"name"``, ``"signature"``, ``"grid"``,
        the grid counting invocations), and optionally:

        - ``"layout"``: where each parameter goes, ``{"x": 0, "y": {"set": 1, "binding": 2},
          "params": {"binding": 3, "kind": "uniform"}, "n": "push"}`` (see
          :mod:`kernpack.runtime.vklayout`). Without it, the shader follows kernpack's layout
          (set 0: binding 0 the arrays' extents, binding 1 + k parameter k).
        - ``"specialization"``: values of the shader's specialization constants, by name or
          ``SpecId`` (``{"BLOCK": 16, "0": 256}``); a call may give others
          (``f.configure(specialization=...)``).
        - ``"entry"``: the entry point (default ``"main"``).
        - ``"workgroup"``: ``[x, y, z]``, checked against the shader's (``LocalSize``,
          ``LocalSizeId`` or the ``WorkgroupSize`` built-in, specialized), which is used
          when none is given.

    Raises
    ------
    ArgumentError
        If a kernel's description and its shader disagree: a binding, a type, a push
        constant, a specialization constant, the entry point or the workgroup; the message
        names both.
    """
    blob, entries = bytearray(), []
    for f in functions:
        entry = KernelEntry.of(f, ("layout", "specialization", "entry", "workgroup"))
        if entry.name not in shaders:
            raise ArgumentError(f"kernel {entry.name!r} has no shader (shaders: {', '.join(shaders) or 'none'})")
        code = shaders[entry.name]
        attrs = dict(entry.attrs)
        shader = Shader.read(code)
        name = attrs.get("entry", "main")
        if shader.kernels and not shader.entry_points:
            raise ArgumentError(
                f"kernel {entry.name!r}: its SPIR-V is an OpenCL SPIR-V module (kernels: {', '.join(shader.kernels)}), "
                "not a Vulkan compute shader; load it with kp.opencl_module"
            )
        if name not in shader.entry_points:
            found = ", ".join(shader.entry_points) or "none"
            raise ArgumentError(
                f"kernel {entry.name!r}: its shader has no compute entry point {name!r} (it has: {found}); "
                'name one with "entry"'
            )
        given = attrs.pop("layout", None)
        layout = describe(entry, shader, given)
        if given is not None:
            attrs["layout"] = layout.to_json()
        if attrs.get("specialization"):
            attrs["specialization"] = specialization(entry, shader, attrs["specialization"])
        attrs["workgroup"] = list(_workgroup(entry, shader, attrs, attrs.get("workgroup")))
        if name == "main":
            attrs.pop("entry", None)
        entries.append(
            KernelEntry(entry.name, entry.signature, entry.grid, {**attrs, "offset": len(blob), "size": len(code)})
        )
        blob += code + bytes(-len(code) % 16)
    return VulkanModule(bytes(blob), entries)


def _workgroup(entry: KernelEntry, shader: Shader, attrs: dict[str, Any], given: Any) -> tuple[int, int, int]:
    """The workgroup of a kernel: the shader's (specialized), a given one checked against it."""
    name = attrs.get("entry", "main")
    values = {int(k): v for k, v in (attrs.get("specialization") or {}).items()}
    declared = shader.local_size(name, values)
    if given is not None and declared is not None and tuple(given) != declared:
        raise ArgumentError(
            f"kernel {entry.name!r}: workgroup {list(given)} was given, but its shader declares "
            f"workgroup {list(declared)}; give the shader's (or leave it out: it is read from the shader), or set its "
            "size through the specialization constants it uses (local_size_x_id)"
        )
    workgroup = given or declared
    if workgroup is None:
        raise ArgumentError(
            f"kernel {entry.name!r}: its shader declares no LocalSize for entry point {name}; give "
            '"workgroup": [x, y, z]'
        )
    return tuple(workgroup)  # type: ignore[return-value]


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
        if not isinstance(attrs.get("entry", "main"), str) or not isinstance(attrs.get("vector", ""), str):
            bad = attrs.get("entry", attrs.get("vector"))
            raise FormatError(f"vulkan module: kernel {entry.name!r} has a bad entry point {bad!r}")
        spec = attrs.get("specialization", {})
        if not isinstance(spec, dict) or not all(
            k.isdigit() and isinstance(v, int | float) and not isinstance(v, bool) for k, v in spec.items()
        ):
            raise FormatError(f"vulkan module: kernel {entry.name!r} has bad specialization constants {spec!r}")
        layout_of(entry)  # a damaged layout is a FormatError
        if not (
            isinstance(workgroup, list)
            and len(workgroup) == 3
            and all(isinstance(w, int) and 1 <= w <= 1024 for w in workgroup)
        ):
            raise FormatError(f"vulkan module: kernel {entry.name!r} has a bad workgroup {workgroup!r}")
    return module
