// Elementwise kernels on float and half (stored as unsigned short), with no
// header: half conversions are done in PTX, so NVRTC needs no include path.
// Every kernel is a grid-stride loop over n elements.

__device__ __forceinline__ float h2f(unsigned short h) {
    float f;
    asm("{ .reg .f16 t; mov.b16 t, %1; cvt.f32.f16 %0, t; }" : "=f"(f) : "h"(h));
    return f;
}

__device__ __forceinline__ unsigned short f2h(float f) {
    unsigned short h;
    asm("{ .reg .f16 t; cvt.rn.f16.f32 t, %1; mov.b16 %0, t; }" : "=h"(h) : "f"(f));
    return h;
}

__device__ __forceinline__ float relu_(float x) { return x > 0.0f ? x : 0.0f; }
__device__ __forceinline__ float sigmoid_(float x) { return 1.0f / (1.0f + __expf(-x)); }
__device__ __forceinline__ float silu_(float x) { return x / (1.0f + __expf(-x)); }

#define GRID_STRIDE(i, n) \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
         i += (long long)blockDim.x * gridDim.x)

extern "C" __global__ void add_f32(float *out, const float *a, const float *b, long long n) {
    GRID_STRIDE(i, n) out[i] = a[i] + b[i];
}

extern "C" __global__ void add_f16(unsigned short *out, const unsigned short *a, const unsigned short *b, long long n) {
    GRID_STRIDE(i, n) out[i] = f2h(h2f(a[i]) + h2f(b[i]));
}

#define UNARY(name, f)                                                                         \
    extern "C" __global__ void name##_f32(float *out, const float *x, long long n) {           \
        GRID_STRIDE(i, n) out[i] = f(x[i]);                                                    \
    }                                                                                          \
    extern "C" __global__ void name##_f16(unsigned short *out, const unsigned short *x, long long n) { \
        GRID_STRIDE(i, n) out[i] = f2h(f(h2f(x[i])));                                          \
    }

UNARY(relu, relu_)
UNARY(sigmoid, sigmoid_)
UNARY(silu, silu_)
