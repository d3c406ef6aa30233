// pts[i] = rotate(pts[i] * scale, frame.angle) + frame.origin for i < frame.count: a struct
// of settings in push constants, a vector in a uniform block.
#version 450
layout(local_size_x = 64) in;
layout(set = 0, binding = 0) buffer Points { vec2 pts[]; };
layout(set = 0, binding = 1) uniform Scale { vec2 scale; } s;
layout(push_constant) uniform Frame { vec2 origin; float angle; int count; } frame;

void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i < uint(frame.count)) {
        vec2 p = pts[i] * s.scale;
        float c = cos(frame.angle), sn = sin(frame.angle);
        pts[i] = vec2(c * p.x - sn * p.y, sn * p.x + c * p.y) + frame.origin;
    }
}
