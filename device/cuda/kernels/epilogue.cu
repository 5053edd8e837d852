// Bias + activation epilogue: out[r, c] = act(in[r, c] + bias[c]) over a
// row-major rows x cols matrix. act: 0 none, 1 relu, 2 sigmoid, 3 silu.
// The half conversions (h2f, f2h) come from elementwise.cu, which is
// compiled in the same unit before this file.

__device__ __forceinline__ float activate(float x, int act) {
    switch (act) {
    case 1: return x > 0.0f ? x : 0.0f;
    case 2: return 1.0f / (1.0f + __expf(-x));
    case 3: return x / (1.0f + __expf(-x));
    default: return x;
    }
}

extern "C" __global__ void bias_act_f32(float *out, const float *in, const float *bias,
                                        long long rows, int cols, int act) {
    long long n = rows * cols;
    GRID_STRIDE(i, n) out[i] = activate(in[i] + bias[i % cols], act);
}

extern "C" __global__ void bias_act_f16(unsigned short *out, const unsigned short *in,
                                        const unsigned short *bias, long long rows, int cols, int act) {
    long long n = rows * cols;
    GRID_STRIDE(i, n) out[i] = f2h(activate(h2f(in[i]) + h2f(bias[i % cols]), act));
}
