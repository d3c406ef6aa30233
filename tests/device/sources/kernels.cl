// OpenCL C kernels in the style of the public sample collections: plain global pointers,
// sizes as scalar arguments, __local scratch memory, vectors and a struct by value.
// Built both ways in the tests: by the OpenCL driver from this source, and by clang +
// llvm-spirv into SPIR-V.

__kernel void saxpy(__global const float *x, __global float *y, float alpha, int n) {
    int i = get_global_id(0);
    if (i < n) {
        y[i] = alpha * x[i] + y[i];
    }
}

// One partial sum per workgroup: a tree in __local memory.
__kernel void block_sum(__global const float *x, __local float *scratch, __global float *sums, int n) {
    int i = get_global_id(0), lid = get_local_id(0), size = get_local_size(0);
    scratch[lid] = i < n ? x[i] : 0.0f;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int step = size / 2; step > 0; step /= 2) {
        if (lid < step) {
            scratch[lid] += scratch[lid + step];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (lid == 0) {
        sums[get_group_id(0)] = scratch[0];
    }
}

typedef struct {
    float2 origin;
    float angle;
    int count;
} Frame;

// pts[i] = rotate(pts[i] * scale, frame.angle) + frame.origin, for i < frame.count.
__kernel void place(__global float2 *pts, float2 scale, Frame frame) {
    int i = get_global_id(0);
    if (i < frame.count) {
        float2 p = pts[i] * scale;
        float c = cos(frame.angle), s = sin(frame.angle);
        pts[i] = (float2)(c * p.x - s * p.y, s * p.x + c * p.y) + frame.origin;
    }
}

// out = in transposed, through a 16 x 16 tile in __local memory (a 2-D workgroup).
#define TILE 16
__kernel __attribute__((reqd_work_group_size(TILE, TILE, 1)))
void transpose(__global const float *in, __global float *out, int rows, int cols) {
    __local float tile[TILE][TILE + 1];
    int x = get_global_id(0), y = get_global_id(1);
    int lx = get_local_id(0), ly = get_local_id(1);
    if (x < cols && y < rows) {
        tile[ly][lx] = in[y * cols + x];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    int ox = get_group_id(1) * TILE + lx, oy = get_group_id(0) * TILE + ly;
    if (ox < rows && oy < cols) {
        out[oy * rows + ox] = tile[lx][ly];
    }
}
