// y = alpha * x + y, in the style of the Vulkan compute samples: buffers from binding 0,
// sizes in push constants, 32 invocations per workgroup.
#version 450
layout(local_size_x = 32) in;
layout(set = 0, binding = 0) readonly buffer X { float x[]; };
layout(set = 0, binding = 1) buffer Y { float y[]; };
layout(push_constant) uniform Push { uint n; float alpha; } pc;

void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i < pc.n) {
        y[i] = pc.alpha * x[i] + y[i];
    }
}
