// out[i] = i * SCALE + params.offset for i < COUNT. The workgroup size, the scale and the
// count are specialization constants; the offset comes from a uniform block in set 1.
// Compiled with the entry point "ramp".
#version 450
layout(local_size_x_id = 0) in;
layout(constant_id = 1) const float SCALE = 1.0;
layout(constant_id = 2) const uint COUNT = 1;
layout(set = 1, binding = 0) uniform Params { float offset; float unused; } params;
layout(set = 0, binding = 0) writeonly buffer Out { float o[]; };

void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i < COUNT) {
        o[i] = float(i) * SCALE + params.offset;
    }
}
