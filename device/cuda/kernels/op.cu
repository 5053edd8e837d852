// Helpers of the op_*.cu kernels (package gpuexec, one file per op
// family): typed loads and stores, broadcasting offsets and block
// reductions. nn.cu, compiled before this file, defines GRID_STRIDE, h2f,
// f2h and KILN_INF.

// kh is a binary16 element, distinct from unsigned short (u16).
struct kh {
    unsigned short v;
};

// kld loads element i in the compute type (float for binary16); kst stores
// v converted to the storage type.
template <typename T> __device__ __forceinline__ T kld(const T *p, long long i) { return p[i]; }
__device__ __forceinline__ float kld(const kh *p, long long i) { return h2f(p[i].v); }
template <typename T, typename V> __device__ __forceinline__ void kst(T *p, long long i, V v) { p[i] = (T)v; }
template <typename V> __device__ __forceinline__ void kst(kh *p, long long i, V v) { p[i].v = f2h((float)v); }

// kct is the compute type of a storage type.
template <typename T> struct kct {
    typedef T t;
};
template <> struct kct<kh> {
    typedef float t;
};

// kiln_bcast returns the offsets of output element i in up to three
// broadcast operands, meta = {r, dims[r], strides0[r], strides1[r], ...}.
__device__ __forceinline__ void kiln_bcast(const long long *meta, long long i, int ops, long long *off) {
    int r = (int)meta[0];
    off[0] = off[1] = off[2] = 0;
    for (int d = r - 1; d >= 0; d--) {
        long long dim = meta[1 + d];
        long long idx = i % dim;
        i /= dim;
        for (int k = 0; k < ops; k++) off[k] += idx * meta[1 + (k + 1) * r + d];
    }
}

// Reduce modes (gpuexec red*): 0 sum, 1 mean, 2 max, 3 min, 4 prod, 5 L1,
// 6 L2, 7 log-sum-exp, 8 sum of squares, 9 log-sum.
__device__ __forceinline__ float kiln_red_init(int mode) {
    switch (mode) {
    case 2: return -KILN_INF;
    case 3: return KILN_INF;
    case 4: return 1.0f;
    }
    return 0.0f;
}

__device__ __forceinline__ float kiln_red_join(float a, float b, int mode) {
    switch (mode) {
    case 2: return (a > b || a != a) ? a : b;
    case 3: return (a < b || a != a) ? a : b;
    case 4: return a * b;
    }
    return a + b;
}

// kiln_block_reduce combines v over the block (blockDim.x a multiple of 32,
// at most 1024) and returns the result to every thread.
__device__ float kiln_block_reduce(float v, int mode) {
    __shared__ float part[32];
    __shared__ float total;
    for (int o = 16; o > 0; o >>= 1) v = kiln_red_join(v, __shfl_xor_sync(0xffffffff, v, o), mode);
    int w = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) part[w] = v;
    __syncthreads();
    if (w == 0) {
        int nw = blockDim.x / 32;
        v = lane < nw ? part[lane] : kiln_red_init(mode);
        for (int o = 16; o > 0; o >>= 1) v = kiln_red_join(v, __shfl_xor_sync(0xffffffff, v, o), mode);
        if (lane == 0) total = v;
    }
    __syncthreads();
    v = total;
    __syncthreads();
    return v;
}

