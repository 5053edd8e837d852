// TopK (package gpuexec, op_topk.go): the k largest (largest = 1) or
// smallest elements of each slice of x [outer, len, inner] along the middle
// axis, sorted, equal values in index order, NaNs last (as kiln's CPU
// kernel orders them); values to y and int64 indices to yi, both [outer, k,
// inner]. One block (256 threads) per slice: round r picks, by a block
// reduction, the first element in that order that comes after round r-1's
// pick, so no scratch memory and no sort. Uses op.cu's helpers.

// topk_before says whether (av, ai) comes before (bv, bi) in TopK's order.
template <typename CT>
__device__ __forceinline__ bool topk_before(CT av, long long ai, CT bv, long long bi, int largest) {
    bool an = av != av, bn = bv != bv;
    if (an != bn) {
        return bn;
    }
    if (!an && av != bv) {
        return largest ? av > bv : av < bv;
    }
    return ai < bi;
}

#define TOPK_THREADS 256

template <typename T, typename CT>
__device__ void topk_t(T *y, long long *yi, const T *x, long long outer, long long len, long long inner,
                       long long k, int largest) {
    __shared__ CT sv[TOPK_THREADS];
    __shared__ long long si[TOPK_THREADS];
    int t = threadIdx.x;
    for (long long slice = blockIdx.x; slice < outer * inner; slice += gridDim.x) {
        long long o = slice / inner, q = slice % inner;
        long long base = o * len * inner + q, obase = o * k * inner + q;
        CT pv = 0;
        long long pi = -1; // the previous round's pick (-1: none yet)
        for (long long r = 0; r < k; r++) {
            CT bv = 0;
            long long bi = -1;
            for (long long j = t; j < len; j += blockDim.x) {
                CT v = (CT)kld(x, base + j * inner);
                if (pi >= 0 && !topk_before(pv, pi, v, j, largest)) {
                    continue; // picked already
                }
                if (bi < 0 || topk_before(v, j, bv, bi, largest)) {
                    bv = v;
                    bi = j;
                }
            }
            sv[t] = bv;
            si[t] = bi;
            __syncthreads();
            for (int s = blockDim.x / 2; s > 0; s >>= 1) {
                if (t < s) {
                    long long oi = si[t + s];
                    if (oi >= 0 && (si[t] < 0 || topk_before(sv[t + s], oi, sv[t], si[t], largest))) {
                        sv[t] = sv[t + s];
                        si[t] = oi;
                    }
                }
                __syncthreads();
            }
            pv = sv[0];
            pi = si[0];
            if (t == 0) {
                y[obase + r * inner] = x[base + pi * inner];
                yi[obase + r * inner] = pi;
            }
            __syncthreads();
        }
    }
}

#define KILN_TOPK(sfx, T, CT)                                                                                 \
    extern "C" __global__ void topk_##sfx(T *y, long long *yi, const T *x, long long outer, long long len,     \
                                          long long inner, long long k, int largest) {                        \
        topk_t<T, CT>(y, yi, x, outer, len, inner, k, largest);                                               \
    }
KILN_TOPK(f32, float, float)
KILN_TOPK(f16, kh, float)
KILN_TOPK(f64, double, double)
KILN_TOPK(i32, int, long long)
KILN_TOPK(i64, long long, long long)
