// Normalizations (package gpuexec, op_norm.go), float32 and binary16
// (computed in float32). Uses op.cu's helpers.

// instnorm: one block per row of x [rows, cols] (rows = N*C); the channel
// of row r is r % C: y = (x - mean) / sqrt(var + eps) * scale[c] + bias[c].
template <typename T>
__device__ void instnorm_t(T *y, const T *x, const T *scale, const T *bias, long long rows, int cols, int C,
                           float eps) {
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
        const long long base = r * cols;
        float s = 0.0f;
        for (int j = threadIdx.x; j < cols; j += blockDim.x) s += (float)kld(x, base + j);
        float mean = kiln_block_reduce(s, 0) / (float)cols;
        float v = 0.0f;
        for (int j = threadIdx.x; j < cols; j += blockDim.x) {
            float d = (float)kld(x, base + j) - mean;
            v += d * d;
        }
        float inv = rsqrtf(kiln_block_reduce(v, 0) / (float)cols + eps);
        int c = (int)(r % C);
        float g = (float)kld(scale, c) * inv, b = (float)kld(bias, c);
        for (int j = threadIdx.x; j < cols; j += blockDim.x) kst(y, base + j, ((float)kld(x, base + j) - mean) * g + b);
    }
}

// batchnorm (inference): y = (x - mean[c]) / sqrt(var[c] + eps) * scale[c]
// + bias[c], c = (i / hw) % C.
template <typename T>
__device__ void batchnorm_t(T *y, const T *x, const T *scale, const T *bias, const T *mean, const T *var,
                            long long n, long long hw, int C, float eps) {
    GRID_STRIDE(i, n) {
        int c = (int)((i / hw) % C);
        float g = (float)kld(scale, c) * rsqrtf((float)kld(var, c) + eps);
        kst(y, i, ((float)kld(x, i) - (float)kld(mean, c)) * g + (float)kld(bias, c));
    }
}

#define KILN_NORM(sfx, T)                                                                                    \
    extern "C" __global__ void instnorm_##sfx(T *y, const T *x, const T *scale, const T *bias, long long rows, \
                                              int cols, int C, float eps) {                                  \
        instnorm_t(y, x, scale, bias, rows, cols, C, eps);                                                   \
    }                                                                                                        \
    extern "C" __global__ void batchnorm_##sfx(T *y, const T *x, const T *scale, const T *bias,              \
                                               const T *mean, const T *var, long long n, long long hw, int C,  \
                                               float eps) {                                                  \
        batchnorm_t(y, x, scale, bias, mean, var, n, hw, C, eps);                                            \
    }
KILN_NORM(f32, float)
KILN_NORM(f16, kh)
