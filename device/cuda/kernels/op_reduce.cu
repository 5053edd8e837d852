// Reductions over any axes, ArgMax/ArgMin, CumSum and Softmax over any
// axis (package gpuexec, op_reduce.go and op_softmax.go), float32 (_f32)
// and binary16 (_f16, computed in float32). Uses op.cu's helpers.

// reduce_axes: one block per output element. meta = {rk, kept dims[rk],
// their x strides[rk], rr, reduced dims[rr], their x strides[rr]}; nred is
// the number of reduced elements per output.
template <typename T>
__device__ void reduce_axes_t(T *y, const T *x, const long long *meta, long long nout, long long nred, int mode) {
    int rk = (int)meta[0];
    const long long *kd = meta + 1, *ks = meta + 1 + rk;
    int rr = (int)meta[1 + 2 * rk];
    const long long *rd = meta + 2 + 2 * rk, *rs = meta + 2 + 2 * rk + rr;
    int base_mode = (mode == 1 || mode == 5 || mode == 6 || mode == 7 || mode == 8 || mode == 9) ? 0 : mode;
    for (long long o = blockIdx.x; o < nout; o += gridDim.x) {
        long long rem = o, xo = 0;
        for (int d = rk - 1; d >= 0; d--) {
            xo += (rem % kd[d]) * ks[d];
            rem /= kd[d];
        }
        float mx = 0.0f;
        if (mode == 7) { // log-sum-exp: the maximum first
            float m = -KILN_INF;
            for (long long j = threadIdx.x; j < nred; j += blockDim.x) {
                long long r2 = j, xi = xo;
                for (int d = rr - 1; d >= 0; d--) {
                    xi += (r2 % rd[d]) * rs[d];
                    r2 /= rd[d];
                }
                m = fmaxf(m, (float)kld(x, xi));
            }
            mx = kiln_block_reduce(m, 2);
            if (mx == -KILN_INF || mx != mx) mx = 0.0f;
        }
        float acc = kiln_red_init(base_mode);
        for (long long j = threadIdx.x; j < nred; j += blockDim.x) {
            long long r2 = j, xi = xo;
            for (int d = rr - 1; d >= 0; d--) {
                xi += (r2 % rd[d]) * rs[d];
                r2 /= rd[d];
            }
            float v = (float)kld(x, xi);
            switch (mode) {
            case 5: v = fabsf(v); break;
            case 6: case 8: v = v * v; break;
            case 7: v = expf(v - mx); break;
            }
            acc = kiln_red_join(acc, v, base_mode);
        }
        acc = kiln_block_reduce(acc, base_mode);
        if (threadIdx.x == 0) {
            switch (mode) {
            case 1: acc = acc / (float)nred; break;
            case 6: acc = sqrtf(acc); break;
            case 7: acc = logf(acc) + mx; break;
            case 9: acc = logf(acc); break;
            }
            kst(y, o, acc);
        }
    }
}

// argreduce: ArgMax (mode 0) or ArgMin (mode 1) over the middle axis of x
// [outer, len, inner]; last picks the last of equal extremes.
template <typename T>
__device__ void argreduce_t(long long *y, const T *x, long long outer, long long len, long long inner, int mode,
                            int last) {
    long long n = outer * inner;
    GRID_STRIDE(i, n) {
        long long o = i / inner, k = i % inner, base = o * len * inner + k, best = 0;
        float bv = (float)kld(x, base);
        for (long long j = 1; j < len; j++) {
            float v = (float)kld(x, base + j * inner);
            bool better = mode == 0 ? (last ? v >= bv : v > bv) : (last ? v <= bv : v < bv);
            if (better) {
                bv = v;
                best = j;
            }
        }
        y[i] = best;
    }
}

// cumsum over the middle axis of x [outer, len, inner], exclusive and/or
// reversed; the sum is kept in the compute type (float for binary16).
template <typename T>
__device__ void cumsum_t(T *y, const T *x, long long outer, long long len, long long inner, int exclusive,
                         int reverse) {
    long long n = outer * inner;
    GRID_STRIDE(i, n) {
        long long o = i / inner, k = i % inner, base = o * len * inner + k;
        typename kct<T>::t acc = 0;
        for (long long jj = 0; jj < len; jj++) {
            long long j = reverse ? len - 1 - jj : jj;
            typename kct<T>::t v = kld(x, base + j * inner);
            if (exclusive) {
                kst(y, base + j * inner, acc);
                acc += v;
            } else {
                acc += v;
                kst(y, base + j * inner, acc);
            }
        }
    }
}

// softmax_axis: Softmax (mode 0), LogSoftmax (1) or Hardmax (2) over the
// middle axis of x [outer, len, inner], one thread per (outer, inner).
template <typename T>
__device__ void softmax_axis_t(T *y, const T *x, long long outer, long long len, long long inner, int mode) {
    long long n = outer * inner;
    GRID_STRIDE(i, n) {
        long long o = i / inner, k = i % inner, base = o * len * inner + k, arg = 0;
        float m = -KILN_INF;
        for (long long j = 0; j < len; j++) {
            float v = (float)kld(x, base + j * inner);
            if (v > m) {
                m = v;
                arg = j;
            }
        }
        if (mode == 2) {
            for (long long j = 0; j < len; j++) kst(y, base + j * inner, j == arg ? 1.0f : 0.0f);
            continue;
        }
        float s = 0.0f;
        for (long long j = 0; j < len; j++) s += expf((float)kld(x, base + j * inner) - m);
        float ls = logf(s);
        for (long long j = 0; j < len; j++) {
            float v = (float)kld(x, base + j * inner) - m;
            kst(y, base + j * inner, mode == 1 ? v - ls : expf(v) / s);
        }
    }
}

#define KILN_REDUCE(sfx, T)                                                                                   \
    extern "C" __global__ void reduce_axes_##sfx(T *y, const T *x, const long long *meta, long long nout,      \
                                                 long long nred, int mode) {                                  \
        reduce_axes_t(y, x, meta, nout, nred, mode);                                                          \
    }                                                                                                         \
    extern "C" __global__ void argreduce_##sfx(long long *y, const T *x, long long outer, long long len,       \
                                               long long inner, int mode, int last) {                         \
        argreduce_t(y, x, outer, len, inner, mode, last);                                                     \
    }                                                                                                         \
    extern "C" __global__ void softmax_axis_##sfx(T *y, const T *x, long long outer, long long len,           \
                                                  long long inner, int mode) {                                \
        softmax_axis_t(y, x, outer, len, inner, mode);                                                        \
    }
KILN_REDUCE(f32, float)
KILN_REDUCE(f16, kh)
KILN_REDUCE(f64, double)

#define KILN_CUMSUM(sfx, T)                                                                                   \
    extern "C" __global__ void cumsum_##sfx(T *y, const T *x, long long outer, long long len, long long inner, \
                                            int exclusive, int reverse) {                                     \
        cumsum_t(y, x, outer, len, inner, exclusive, reverse);                                                \
    }
KILN_CUMSUM(f32, float)
KILN_CUMSUM(f16, kh)
KILN_CUMSUM(f64, double)
KILN_CUMSUM(i32, int)
KILN_CUMSUM(i64, long long)
