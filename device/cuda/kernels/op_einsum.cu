// Einsum (package gpuexec, op_einsum.go): y[o] = the sum, over every
// index k of the contracted labels, of the product of the operands' (one
// to three) elements at o and k. meta = {nO, nK, nops, ext[nO + nK],
// strides[nops][nO + nK]}: the extents of the output labels, then of the
// contracted ones, and each operand's stride for each label (0 for a
// label it lacks or broadcasts; a repeated label's strides added, which
// reads diagonals). CT is the compute type (float for binary16).

// einsum_offsets adds to off[0..nops) the offsets of index i over the
// labels [from, from + n).
__device__ __forceinline__ void einsum_offsets(const long long *meta, long long i, int from, int n, long long *off) {
    int nl = (int)(meta[0] + meta[1]), nops = (int)meta[2];
    const long long *ext = meta + 3, *st = meta + 3 + nl;
    for (int d = from + n - 1; d >= from; d--) {
        long long c = i % ext[d];
        i /= ext[d];
        for (int k = 0; k < nops; k++) off[k] += c * st[k * nl + d];
    }
}

template <typename T, typename CT>
__device__ __forceinline__ CT einsum_term(const T *a, const T *b, const T *c, int nops, const long long *off) {
    CT v = (CT)kld(a, off[0]);
    if (nops > 1) v *= (CT)kld(b, off[1]);
    if (nops > 2) v *= (CT)kld(c, off[2]);
    return v;
}

// einsum: one thread per output element.
template <typename T, typename CT>
__device__ void einsum_t(T *y, const T *a, const T *b, const T *c, const long long *meta, long long total, long long K) {
    int nO = (int)meta[0], nK = (int)meta[1], nops = (int)meta[2];
    GRID_STRIDE(i, total) {
        long long base[3] = {0, 0, 0};
        einsum_offsets(meta, i, 0, nO, base);
        CT acc = 0;
        for (long long j = 0; j < K; j++) {
            long long off[3] = {base[0], base[1], base[2]};
            einsum_offsets(meta, j, nO, nK, off);
            acc += einsum_term<T, CT>(a, b, c, nops, off);
        }
        kst(y, i, acc);
    }
}

#define EINSUM_THREADS 256

// einsum_rows: one block (EINSUM_THREADS threads) per output element, for
// few outputs over long contractions.
template <typename T, typename CT>
__device__ void einsum_rows_t(T *y, const T *a, const T *b, const T *c, const long long *meta, long long total,
                              long long K) {
    __shared__ CT part[EINSUM_THREADS];
    int nO = (int)meta[0], nK = (int)meta[1], nops = (int)meta[2];
    for (long long i = blockIdx.x; i < total; i += gridDim.x) {
        long long base[3] = {0, 0, 0};
        einsum_offsets(meta, i, 0, nO, base);
        CT acc = 0;
        for (long long j = threadIdx.x; j < K; j += blockDim.x) {
            long long off[3] = {base[0], base[1], base[2]};
            einsum_offsets(meta, j, nO, nK, off);
            acc += einsum_term<T, CT>(a, b, c, nops, off);
        }
        part[threadIdx.x] = acc;
        __syncthreads();
        for (int s = blockDim.x / 2; s > 0; s >>= 1) {
            if (threadIdx.x < s) part[threadIdx.x] += part[threadIdx.x + s];
            __syncthreads();
        }
        if (threadIdx.x == 0) kst(y, i, part[0]);
        __syncthreads();
    }
}

#define KILN_EINSUM(sfx, T, CT)                                                                               \
    extern "C" __global__ void einsum_##sfx(T *y, const T *a, const T *b, const T *c, const long long *meta,   \
                                            long long total, long long K) {                                   \
        einsum_t<T, CT>(y, a, b, c, meta, total, K);                                                          \
    }                                                                                                         \
    extern "C" __global__ void einsum_rows_##sfx(T *y, const T *a, const T *b, const T *c,                    \
                                                 const long long *meta, long long total, long long K) {       \
        einsum_rows_t<T, CT>(y, a, b, c, meta, total, K);                                                     \
    }
KILN_EINSUM(f32, float, float)
KILN_EINSUM(f16, kh, float)
KILN_EINSUM(f64, double, double)
KILN_EINSUM(i32, int, int)
KILN_EINSUM(i64, long long, long long)
