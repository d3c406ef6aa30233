// Reads an image: kernpack binds storage and uniform buffers only, and says so.
#version 450
layout(local_size_x = 1) in;
layout(set = 0, binding = 0, r32f) uniform readonly image2D picture;
layout(set = 0, binding = 1) buffer Out { float o[]; };

void main() {
    o[0] = imageLoad(picture, ivec2(0, 0)).x;
}
