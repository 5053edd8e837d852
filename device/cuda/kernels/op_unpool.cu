// MaxUnpool (package gpuexec, op_unpool.go): y zeroed, then each element
// of x [n] written at its index, a flat position in the inferred output
// shape (meta = {r, dims[r], strides[r]}: those dims, and the strides of
// y, which output_shape may make larger). Elements are moved as they are
// (T: 2, 4 or 8 bytes). An index out of range is skipped.

template <typename T> __device__ void unpool_zero_t(T *y, long long n) {
    GRID_STRIDE(i, n) y[i] = (T)0;
}

template <typename T>
__device__ void unpool_scatter_t(T *y, const T *x, const long long *idx, const long long *meta, long long n,
                                 long long limit) {
    int r = (int)meta[0];
    GRID_STRIDE(i, n) {
        long long p = idx[i];
        if (p < 0 || p >= limit) continue;
        long long off = 0;
        for (int d = r - 1; d >= 0; d--) {
            off += (p % meta[1 + d]) * meta[1 + r + d];
            p /= meta[1 + d];
        }
        y[off] = x[i];
    }
}

#define KILN_UNPOOL(sfx, T)                                                                                   \
    extern "C" __global__ void unpool_zero_##sfx(T *y, long long n) { unpool_zero_t(y, n); }                   \
    extern "C" __global__ void unpool_scatter_##sfx(T *y, const T *x, const long long *idx,                    \
                                                    const long long *meta, long long n, long long limit) {     \
        unpool_scatter_t(y, x, idx, meta, n, limit);                                                          \
    }
KILN_UNPOOL(b16, unsigned short)
KILN_UNPOOL(b32, unsigned int)
KILN_UNPOOL(b64, unsigned long long)
