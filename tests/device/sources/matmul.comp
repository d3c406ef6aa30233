// C = A @ B with M, N, K as specialization constants (their defaults are 1), 16 x 16
// invocations per workgroup, tiles of A and B in shared memory.
#version 450
layout(local_size_x = 16, local_size_y = 16) in;
layout(constant_id = 0) const uint M = 1;
layout(constant_id = 1) const uint N = 1;
layout(constant_id = 2) const uint K = 1;
layout(set = 0, binding = 0) readonly buffer A { float a[]; };
layout(set = 0, binding = 1) readonly buffer B { float b[]; };
layout(set = 0, binding = 2) writeonly buffer C { float c[]; };
shared float tileA[16][16];
shared float tileB[16][16];

void main() {
    uint row = gl_GlobalInvocationID.y, col = gl_GlobalInvocationID.x;
    uint ty = gl_LocalInvocationID.y, tx = gl_LocalInvocationID.x;
    float sum = 0.0;
    for (uint t = 0; t < (K + 15) / 16; ++t) {
        uint ka = t * 16 + tx, kb = t * 16 + ty;
        tileA[ty][tx] = (row < M && ka < K) ? a[row * K + ka] : 0.0;
        tileB[ty][tx] = (kb < K && col < N) ? b[kb * N + col] : 0.0;
        barrier();
        for (uint k = 0; k < 16; ++k) {
            sum += tileA[ty][k] * tileB[k][tx];
        }
        barrier();
    }
    if (row < M && col < N) {
        c[row * N + col] = sum;
    }
}
