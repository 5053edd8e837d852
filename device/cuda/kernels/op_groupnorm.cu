// GroupNormalization, MeanVarianceNormalization and LpNormalization
// (package gpuexec, op_groupnorm.go), float32 and binary16 (computed in
// float32). Uses op.cu's helpers.

// groupnorm: one block per (batch item, group) row of x [rows, cols]
// (rows = N*G, cols = C/G*S): y = (x - mean) / sqrt(var + eps) * scale +
// bias, the scale and bias of channel g*cpg + j/S (per_group: of group g).
template <typename T>
__device__ void groupnorm_t(T *y, const T *x, const T *scale, const T *bias, long long rows, long long cols, int G,
                            int cpg, long long S, int per_group, float eps) {
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
        const long long base = r * cols;
        float s = 0.0f;
        for (long long j = threadIdx.x; j < cols; j += blockDim.x) s += (float)kld(x, base + j);
        float mean = kiln_block_reduce(s, 0) / (float)cols;
        float v = 0.0f;
        for (long long j = threadIdx.x; j < cols; j += blockDim.x) {
            float d = (float)kld(x, base + j) - mean;
            v += d * d;
        }
        float inv = rsqrtf(kiln_block_reduce(v, 0) / (float)cols + eps);
        int g = (int)(r % G);
        for (long long j = threadIdx.x; j < cols; j += blockDim.x) {
            int p = per_group ? g : g * cpg + (int)(j / S);
            kst(y, base + j, ((float)kld(x, base + j) - mean) * inv * (float)kld(scale, p) + (float)kld(bias, p));
        }
    }
}

// kiln_offset maps index i over dims meta[0..r) with strides meta[r..2r)
// to an element offset.
__device__ __forceinline__ long long kiln_offset(const long long *meta, int r, long long i) {
    long long off = 0;
    for (int d = r - 1; d >= 0; d--) {
        long long dim = meta[d];
        off += (i % dim) * meta[r + d];
        i /= dim;
    }
    return off;
}

// mvn: MeanVarianceNormalization, one block per kept index o (the dims not
// reduced, kept = {dims, strides} of rank kr) over the R reduced elements
// (red = {dims, strides} of rank rr): y = (x - mean) / (std + 1e-9).
template <typename T>
__device__ void mvn_t(T *y, const T *x, const long long *kept, int kr, const long long *red, int rr, long long K,
                      long long R) {
    for (long long o = blockIdx.x; o < K; o += gridDim.x) {
        const long long base = kiln_offset(kept, kr, o);
        float s = 0.0f;
        for (long long j = threadIdx.x; j < R; j += blockDim.x) s += (float)kld(x, base + kiln_offset(red, rr, j));
        float mean = kiln_block_reduce(s, 0) / (float)R;
        float v = 0.0f;
        for (long long j = threadIdx.x; j < R; j += blockDim.x) {
            float d = (float)kld(x, base + kiln_offset(red, rr, j)) - mean;
            v += d * d;
        }
        float den = sqrtf(kiln_block_reduce(v, 0) / (float)R) + 1e-9f;
        for (long long j = threadIdx.x; j < R; j += blockDim.x) {
            long long at = base + kiln_offset(red, rr, j);
            kst(y, at, ((float)kld(x, at) - mean) / den);
        }
    }
}

// lpnorm: LpNormalization of x [outer, len, inner] along the middle axis,
// one block per (outer, inner) slice: y = x / norm (p = 1: sum of |x|; 2:
// the square root of the sum of squares); a zero norm leaves x as it is.
template <typename T>
__device__ void lpnorm_t(T *y, const T *x, long long outer, long long len, long long inner, int p) {
    for (long long slice = blockIdx.x; slice < outer * inner; slice += gridDim.x) {
        long long base = (slice / inner) * len * inner + slice % inner;
        float s = 0.0f;
        for (long long j = threadIdx.x; j < len; j += blockDim.x) {
            float v = (float)kld(x, base + j * inner);
            s += p == 1 ? fabsf(v) : v * v;
        }
        float norm = kiln_block_reduce(s, 0);
        if (p != 1) norm = sqrtf(norm);
        for (long long j = threadIdx.x; j < len; j += blockDim.x) {
            float v = (float)kld(x, base + j * inner);
            kst(y, base + j * inner, norm != 0.0f ? v / norm : v);
        }
    }
}

#define KILN_GROUPNORM(sfx, T)                                                                                 \
    extern "C" __global__ void groupnorm_##sfx(T *y, const T *x, const T *scale, const T *bias, long long rows,  \
                                               long long cols, int G, int cpg, long long S, int per_group,      \
                                               float eps) {                                                     \
        groupnorm_t(y, x, scale, bias, rows, cols, G, cpg, S, per_group, eps);                                  \
    }                                                                                                          \
    extern "C" __global__ void mvn_##sfx(T *y, const T *x, const long long *kept, int kr, const long long *red,  \
                                         int rr, long long K, long long R) {                                    \
        mvn_t(y, x, kept, kr, red, rr, K, R);                                                                   \
    }                                                                                                          \
    extern "C" __global__ void lpnorm_##sfx(T *y, const T *x, long long outer, long long len, long long inner,   \
                                            int p) {                                                            \
        lpnorm_t(y, x, outer, len, inner, p);                                                                   \
    }
KILN_GROUPNORM(f32, float)
KILN_GROUPNORM(f16, kh)
