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

// row_stats: the mean and 1/sqrt(var + eps) of each row of x [rows, cols]
// (LayerNormalization's second and third outputs), one block per row;
// either output may be absent.
template <typename T>
__device__ void row_stats_t(T *mean, T *inv, const T *x, long long rows, int cols, float eps) {
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
        const long long base = r * cols;
        float s = 0.0f;
        for (int j = threadIdx.x; j < cols; j += blockDim.x) s += (float)kld(x, base + j);
        float m = kiln_block_reduce(s, 0) / (float)cols;
        float v = 0.0f;
        for (int j = threadIdx.x; j < cols; j += blockDim.x) {
            float d = (float)kld(x, base + j) - m;
            v += d * d;
        }
        v = kiln_block_reduce(v, 0) / (float)cols;
        if (threadIdx.x == 0) {
            if (mean) kst(mean, r, m);
            if (inv) kst(inv, r, rsqrtf(v + eps));
        }
    }
}

// nll_loss: NegativeLogLikelihoodLoss of x [N, C, D] (D the product of the
// trailing dims) at targets t [N, D] with optional class weights w [C]:
// loss = -x[n, t, d] * w[t], 0 where t is the ignored index. Reduction 0
// (none) writes every loss; 1 (sum) and 2 (mean, divided by the sum of the
// weights) run as one block.
template <typename T>
__device__ void nll_loss_t(T *y, const T *x, const long long *t, const T *w, long long N, long long C, long long D,
                           long long ignore, int has_ignore, int reduction) {
    long long n = N * D;
    if (reduction == 0) {
        GRID_STRIDE(i, n) {
            long long b = i / D, d = i % D, c = t[i];
            float l = 0.0f;
            if (!(has_ignore && c == ignore) && c >= 0 && c < C)
                l = -(float)kld(x, (b * C + c) * D + d) * (w ? (float)kld(w, c) : 1.0f);
            kst(y, i, l);
        }
        return;
    }
    float ls = 0.0f, ws = 0.0f;
    for (long long i = threadIdx.x; i < n; i += blockDim.x) {
        long long b = i / D, d = i % D, c = t[i];
        if ((has_ignore && c == ignore) || c < 0 || c >= C) continue;
        float wc = w ? (float)kld(w, c) : 1.0f;
        ls += -(float)kld(x, (b * C + c) * D + d) * wc;
        ws += wc;
    }
    ls = kiln_block_reduce(ls, 0);
    ws = kiln_block_reduce(ws, 0);
    if (threadIdx.x == 0) kst(y, 0, reduction == 2 ? ls / ws : ls);
}

// lrn: LRN over the channels of x [N, C, S]: the window of channel c is
// [c - lo, c + hi], lo = (size - 1) / 2; coef = alpha / size.
template <typename T>
__device__ void lrn_t(T *y, const T *x, long long N, int C, long long S, int size, float coef, float beta, float bias) {
    long long n = N * C * S;
    int lo = (size - 1) / 2, hi = size - 1 - lo;
    GRID_STRIDE(i, n) {
        long long s = i % S, b = i / (S * C);
        int c = (int)((i / S) % C);
        float acc = 0.0f;
        for (int j = max(0, c - lo); j <= min(C - 1, c + hi); j++) {
            float v = (float)kld(x, (b * C + j) * S + s);
            acc += v * v;
        }
        kst(y, i, (float)kld(x, i) / powf(bias + coef * acc, beta));
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
    }                                                                                                        \
    extern "C" __global__ void lrn_##sfx(T *y, const T *x, long long N, int C, long long S, int size, float coef, \
                                         float beta, float bias) {                                           \
        lrn_t(y, x, N, C, S, size, coef, beta, bias);                                                        \
    }                                                                                                        \
    extern "C" __global__ void row_stats_##sfx(T *mean, T *inv, const T *x, long long rows, int cols, float eps) { \
        row_stats_t(mean, inv, x, rows, cols, eps);                                                          \
    }                                                                                                        \
    extern "C" __global__ void nll_loss_##sfx(T *y, const T *x, const long long *t, const T *w, long long N,    \
                                              long long C, long long D, long long ignore, int has_ignore,      \
                                              int reduction) {                                                 \
        nll_loss_t(y, x, t, w, N, C, D, ignore, has_ignore, reduction);                                      \
    }
KILN_NORM(f32, float)
KILN_NORM(f16, kh)
KILN_NORM(f64, double)
