// Kernels of the CUDA executor (package device/cuda/gpuexec), in float32
// (suffix _f32) and in half (suffix _f16: tensors of IEEE binary16 stored as
// unsigned short, arithmetic and reductions in float32). Each kernel is a
// template device function over the storage type, instantiated by KILN_BOTH.
// Tensors are dense and row-major; shapes and strides that do not fit in
// scalar arguments come in a "meta" array of long longs in device memory.
// GRID_STRIDE comes from elementwise.cu, compiled before this file.

#define KILN_INF __int_as_float(0x7f800000)

// Activation codes (executor.act*): 0 none, 1 relu, 2 sigmoid, 3 silu,
// 4 clip(p0, p1), 5 hardswish, 6 leakyrelu(p0), 7 hardsigmoid(p0, p1),
// 8 gelu (erf), 9 gelu (tanh), 10 tanh.
__device__ __forceinline__ float act_apply(float x, int act, float p0, float p1) {
    switch (act) {
    case 1: return x > 0.0f ? x : 0.0f;
    case 2: return 1.0f / (1.0f + expf(-x));
    case 3: return x / (1.0f + expf(-x));
    case 4: return fminf(fmaxf(x, p0), p1);
    case 5: return x * fmaxf(0.0f, fminf(1.0f, x / 6.0f + 0.5f));
    case 6: return x < 0.0f ? p0 * x : x;
    case 7: return fmaxf(0.0f, fminf(1.0f, p0 * x + p1));
    case 8: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case 9: return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
    case 10: return tanhf(x);
    default: return x;
    }
}


typedef unsigned short kiln_half;

// ldf reads element i as float; stf stores v at element i, rounding to
// half for half tensors.
__device__ __forceinline__ float ldf(const float *p, long long i) { return p[i]; }
__device__ __forceinline__ float ldf(const kiln_half *p, long long i) { return h2f(p[i]); }
__device__ __forceinline__ void stf(float *p, long long i, float v) { p[i] = v; }
__device__ __forceinline__ void stf(kiln_half *p, long long i, float v) { p[i] = f2h(v); }

// KILN_BOTH(name, P, A) defines the kernels name_f32 and name_f16, with
// parameters P(float) and P(kiln_half), calling name##_t A.
#define KILN_BOTH(name, P, A)                                         \
    extern "C" __global__ void name##_f32 P(float) { name##_t A; }    \
    extern "C" __global__ void name##_f16 P(kiln_half) { name##_t A; }

// Direct 2-D convolution, NCHW, with groups, bias, residual z and
// activation: y = act(conv(x, w) + bias + z). One thread per output.
template <typename T>
__device__ void conv2d_t(T *y, const T *x, const T *w, const T *bias, const T *z, int N, int C, int H, int W,
                         int M, int OH, int OW, int KH, int KW, int SH, int SW, int PH, int PW, int DH, int DW,
                         int G, int act, float p0, float p1) {
    long long total = (long long)N * M * OH * OW;
    int cpg = C / G, mpg = M / G;
    GRID_STRIDE(i, total) {
        int ow = (int)(i % OW);
        long long t = i / OW;
        int oh = (int)(t % OH);
        t /= OH;
        int m = (int)(t % M);
        int n = (int)(t / M);
        int g = m / mpg;
        float acc = bias ? ldf(bias, m) : 0.0f;
        const T *wm = w + (long long)m * cpg * KH * KW;
        for (int c = 0; c < cpg; c++) {
            const T *xc = x + ((long long)n * C + (long long)g * cpg + c) * H * W;
            const T *wc = wm + c * KH * KW;
            for (int kh = 0; kh < KH; kh++) {
                int ih = oh * SH - PH + kh * DH;
                if (ih < 0 || ih >= H) continue;
                for (int kw = 0; kw < KW; kw++) {
                    int iw = ow * SW - PW + kw * DW;
                    if (iw < 0 || iw >= W) continue;
                    acc += ldf(xc, (long long)ih * W + iw) * ldf(wc, kh * KW + kw);
                }
            }
        }
        if (z) acc += ldf(z, i);
        stf(y, i, act_apply(acc, act, p0, p1));
    }
}
#define CONV2D_P(T)                                                                                           \
    (T * y, const T *x, const T *w, const T *bias, const T *z, int N, int C, int H, int W, int M, int OH, int OW, \
     int KH, int KW, int SH, int SW, int PH, int PW, int DH, int DW, int G, int act, float p0, float p1)
KILN_BOTH(conv2d, CONV2D_P, (y, x, w, bias, z, N, C, H, W, M, OH, OW, KH, KW, SH, SW, PH, PW, DH, DW, G, act, p0, p1))

// In-place epilogue of an NCHW convolution: y = act(y + bias[c] + z).
template <typename T>
__device__ void chan_epilogue_t(T *y, const T *bias, const T *z, long long total, long long hw, int M, int act,
                                float p0, float p1) {
    GRID_STRIDE(i, total) {
        float v = ldf(y, i);
        if (bias) v += ldf(bias, (i / hw) % M);
        if (z) v += ldf(z, i);
        stf(y, i, act_apply(v, act, p0, p1));
    }
}
#define CHAN_EPILOGUE_P(T) \
    (T * y, const T *bias, const T *z, long long total, long long hw, int M, int act, float p0, float p1)
KILN_BOTH(chan_epilogue, CHAN_EPILOGUE_P, (y, bias, z, total, hw, M, act, p0, p1))

// In-place epilogue of a row-major matrix: y = act(y + bias[col]). The
// column advances by the grid's stride modulo cols each step (one modulo
// per thread, none per element).
template <typename T>
__device__ void row_epilogue_t(T *y, const T *bias, long long total, int cols, int act, float p0, float p1) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long G = (long long)blockDim.x * gridDim.x;
    if (i >= total) return;
    int col = (int)(i % cols);
    const int step = (int)(G % cols);
    for (; i < total; i += G) {
        float v = ldf(y, i);
        if (bias) v += ldf(bias, col);
        stf(y, i, act_apply(v, act, p0, p1));
        col += step;
        if (col >= cols) col -= cols;
    }
}
#define ROW_EPILOGUE_P(T) (T * y, const T *bias, long long total, int cols, int act, float p0, float p1)
KILN_BOTH(row_epilogue, ROW_EPILOGUE_P, (y, bias, total, cols, act, p0, p1))

// Batched GEMM, 16x16 tiles: Y[b] = act(alpha * A[b] B[b] + beta * C),
// element (m, k) of A[b] at A + b*sAb + m*sAm + k*sAk (any layout), C read
// at Cb + m*sCm + n*sCn (strides 0 broadcast). Y[b] is a dense M x N
// matrix at Y + b*M*N. grid: (ceil(N/16), ceil(M/16), batch), block 16x16.
// Accumulates in float32 for both storage types.
template <typename T>
__device__ void gemm_t(T *Y, const T *A, const T *B, const T *Cb, int M, int N, int K, long long sAb,
                       long long sAm, long long sAk, long long sBb, long long sBk, long long sBn, long long sCm,
                       long long sCn, float alpha, float beta, int act, float p0, float p1) {
    __shared__ float As[16][17];
    __shared__ float Bs[16][17];
    int tx = threadIdx.x, ty = threadIdx.y;
    int row = blockIdx.y * 16 + ty, col = blockIdx.x * 16 + tx;
    long long b = blockIdx.z;
    A += b * sAb;
    B += b * sBb;
    Y += b * (long long)M * N;
    float acc = 0.0f;
    for (int k0 = 0; k0 < K; k0 += 16) {
        int ka = k0 + tx, kb = k0 + ty;
        As[ty][tx] = (row < M && ka < K) ? ldf(A, row * sAm + ka * sAk) : 0.0f;
        Bs[ty][tx] = (kb < K && col < N) ? ldf(B, kb * sBk + col * sBn) : 0.0f;
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < 16; kk++) acc += As[ty][kk] * Bs[kk][tx];
        __syncthreads();
    }
    if (row < M && col < N) {
        float v = alpha * acc;
        if (Cb) v += beta * ldf(Cb, row * sCm + col * sCn);
        stf(Y, (long long)row * N + col, act_apply(v, act, p0, p1));
    }
}
#define GEMM_P(T)                                                                                              \
    (T * Y, const T *A, const T *B, const T *Cb, int M, int N, int K, long long sAb, long long sAm, long long sAk, \
     long long sBb, long long sBk, long long sBn, long long sCm, long long sCn, float alpha, float beta, int act,  \
     float p0, float p1)
KILN_BOTH(gemm, GEMM_P, (Y, A, B, Cb, M, N, K, sAb, sAm, sAk, sBb, sBk, sBn, sCm, sCn, alpha, beta, act, p0, p1))

// 2-D max (mode 0) or average pooling (mode 1: padding excluded from the
// count, mode 2: included, up to the explicit end pads PEH, PEW), NCHW.
template <typename T>
__device__ void pool2d_t(T *y, const T *x, long long NC, int H, int W, int OH, int OW, int KH, int KW, int SH,
                         int SW, int PH, int PW, int DH, int DW, int PEH, int PEW, int mode) {
    long long total = NC * OH * OW;
    GRID_STRIDE(i, total) {
        int ow = (int)(i % OW);
        int oh = (int)((i / OW) % OH);
        long long nc = i / ((long long)OW * OH);
        const T *xc = x + nc * H * W;
        float acc = mode == 0 ? -KILN_INF : 0.0f;
        int cnt = 0, cntPad = 0;
        for (int kh = 0; kh < KH; kh++) {
            int ih = oh * SH - PH + kh * DH;
            bool inH = ih >= -PH && ih < H + PEH;
            for (int kw = 0; kw < KW; kw++) {
                int iw = ow * SW - PW + kw * DW;
                if (inH && iw >= -PW && iw < W + PEW) cntPad++;
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                float v = ldf(xc, (long long)ih * W + iw);
                if (mode == 0) acc = fmaxf(acc, v);
                else acc += v;
                cnt++;
            }
        }
        if (mode == 1) acc = cnt ? acc / cnt : 0.0f;
        if (mode == 2) acc = cntPad ? acc / cntPad : 0.0f;
        stf(y, i, acc);
    }
}
#define POOL2D_P(T)                                                                                             \
    (T * y, const T *x, long long NC, int H, int W, int OH, int OW, int KH, int KW, int SH, int SW, int PH, int PW, \
     int DH, int DW, int PEH, int PEW, int mode)
KILN_BOTH(pool2d, POOL2D_P, (y, x, NC, H, W, OH, OW, KH, KW, SH, SW, PH, PW, DH, DW, PEH, PEW, mode))

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffff, v, o));
    return v;
}

// block_sum and block_max reduce over a block of at most 1024 threads;
// every thread gets the result. red is 32 floats of shared memory.
__device__ float block_sum(float v, float *red) {
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) red[wid] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : 0.0f;
    return warp_sum(v);
}

__device__ float block_max(float v, float *red) {
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) red[wid] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : -KILN_INF;
    return warp_max(v);
}

// Mean (mode 0) or max (mode 1) of each of rows contiguous runs of cols
// elements: global pooling. One block per row.
template <typename T>
__device__ void reduce_rows_t(T *y, const T *x, long long rows, int cols, int mode) {
    __shared__ float red[32];
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
        const T *xr = x + r * cols;
        float v = mode == 0 ? 0.0f : -KILN_INF;
        for (int c = threadIdx.x; c < cols; c += blockDim.x) v = mode == 0 ? v + ldf(xr, c) : fmaxf(v, ldf(xr, c));
        v = mode == 0 ? block_sum(v, red) : block_max(v, red);
        if (threadIdx.x == 0) stf(y, r, mode == 0 ? v / cols : v);
        __syncthreads();
    }
}
#define REDUCE_ROWS_P(T) (T * y, const T *x, long long rows, int cols, int mode)
KILN_BOTH(reduce_rows, REDUCE_ROWS_P, (y, x, rows, cols, mode))

// Layer normalization of each row of cols elements:
// y = (x - mean) / sqrt(var + eps) * gamma + beta (beta may be null).
template <typename T>
__device__ void layernorm_t(T *y, const T *x, const T *gamma, const T *beta, long long rows, int cols, float eps) {
    __shared__ float red[32];
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
        const T *xr = x + r * cols;
        float s = 0.0f;
        for (int c = threadIdx.x; c < cols; c += blockDim.x) s += ldf(xr, c);
        float mean = block_sum(s, red) / cols;
        float q = 0.0f;
        for (int c = threadIdx.x; c < cols; c += blockDim.x) {
            float d = ldf(xr, c) - mean;
            q += d * d;
        }
        float inv = rsqrtf(block_sum(q, red) / cols + eps);
        for (int c = threadIdx.x; c < cols; c += blockDim.x) {
            float v = (ldf(xr, c) - mean) * inv * ldf(gamma, c);
            stf(y, r * cols + c, beta ? v + ldf(beta, c) : v);
        }
        __syncthreads();
    }
}
#define LAYERNORM_P(T) (T * y, const T *x, const T *gamma, const T *beta, long long rows, int cols, float eps)
KILN_BOTH(layernorm, LAYERNORM_P, (y, x, gamma, beta, rows, cols, eps))

// Softmax of each row of cols elements.
template <typename T>
__device__ void softmax_t(T *y, const T *x, long long rows, int cols) {
    __shared__ float red[32];
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
        const T *xr = x + r * cols;
        float m = -KILN_INF;
        for (int c = threadIdx.x; c < cols; c += blockDim.x) m = fmaxf(m, ldf(xr, c));
        m = block_max(m, red);
        float s = 0.0f;
        for (int c = threadIdx.x; c < cols; c += blockDim.x) s += expf(ldf(xr, c) - m);
        s = block_sum(s, red);
        for (int c = threadIdx.x; c < cols; c += blockDim.x) stf(y, r * cols + c, expf(ldf(xr, c) - m) / s);
        __syncthreads();
    }
}
#define SOFTMAX_P(T) (T * y, const T *x, long long rows, int cols)
KILN_BOTH(softmax, SOFTMAX_P, (y, x, rows, cols))

// Attention for one query row per block: y[b, i, :] = softmax(q[b, i, :]
// kt[b] * scale + mask) v[b], with q [B, S, D], kt [B, D, T], v [B, T, Dv]
// (B the product of the leading dims). The mask element of (b, i, j) is at
// mask + (b's offset) + i*meta[1] + j*meta[2], b's offset from meta[0]
// leading dims: meta = {r, ms_i, ms_j, dims[r], strides[r]}. Dynamic
// shared memory: T floats (float32 scores for both storage types). grid: (S, B).
template <typename E>
__device__ void attention_t(E *y, const E *q, const E *kt, const E *v, const E *mask, const long long *meta, int S,
                            int T, int D, int Dv, float scale) {
    extern __shared__ float sc[];
    __shared__ float red[32];
    int i = blockIdx.x;
    long long b = blockIdx.y;
    const E *qr = q + (b * S + i) * D;
    const E *kb = kt + b * (long long)D * T;
    const E *vb = v + b * (long long)T * Dv;
    const E *mr = 0;
    if (mask) {
        int r = (int)meta[0];
        long long off = 0, rem = b;
        for (int d = r - 1; d >= 0; d--) {
            long long dim = meta[3 + d];
            off += (rem % dim) * meta[3 + r + d];
            rem /= dim;
        }
        mr = mask + off + i * meta[1];
    }
    float mx = -KILN_INF;
    for (int j = threadIdx.x; j < T; j += blockDim.x) {
        float s = 0.0f;
        for (int d = 0; d < D; d++) s += ldf(qr, d) * ldf(kb, (long long)d * T + j);
        s *= scale;
        if (mr) s += ldf(mr, j * meta[2]);
        sc[j] = s;
        mx = fmaxf(mx, s);
    }
    mx = block_max(mx, red);
    float sum = 0.0f;
    for (int j = threadIdx.x; j < T; j += blockDim.x) {
        float e = expf(sc[j] - mx);
        sc[j] = e;
        sum += e;
    }
    sum = block_sum(sum, red);
    __syncthreads();
    float inv = 1.0f / sum;
    for (int d = threadIdx.x; d < Dv; d += blockDim.x) {
        float acc = 0.0f;
        for (int j = 0; j < T; j++) acc += sc[j] * ldf(vb, (long long)j * Dv + d);
        stf(y, (b * S + i) * Dv + d, acc * inv);
    }
}
#define ATTENTION_P(E)                                                                                        \
    (E * y, const E *q, const E *kt, const E *v, const E *mask, const long long *meta, int S, int T, int D, int Dv, \
     float scale)
KILN_BOTH(attention, ATTENTION_P, (y, q, kt, v, mask, meta, S, T, D, Dv, scale))

// Attention for ATT_ROWS query rows per block, the same function as
// attention_t: the block reads its K and V once for all its rows (the row
// kernel reads them once per row). Dynamic shared memory: ATT_ROWS * (D + T)
// floats (the rows' queries, then their scores). grid: (ceil(S/ATT_ROWS), B).
#define ATT_ROWS 16
template <typename E>
__device__ void attention_rows_t(E *y, const E *q, const E *kt, const E *v, const E *mask, const long long *meta,
                                 int S, int T, int D, int Dv, float scale) {
    extern __shared__ float smem[];
    float *qs = smem, *sc = smem + ATT_ROWS * D;
    __shared__ float rowinv[ATT_ROWS];
    int i0 = blockIdx.x * ATT_ROWS;
    int rows = min(ATT_ROWS, S - i0);
    long long b = blockIdx.y;
    const E *kb = kt + b * (long long)D * T;
    const E *vb = v + b * (long long)T * Dv;
    for (int x = threadIdx.x; x < ATT_ROWS * D; x += blockDim.x) {
        int r = x / D;
        qs[x] = r < rows ? ldf(q, (b * S + i0 + r) * (long long)D + x % D) : 0.0f;
    }
    const E *mb = 0;
    if (mask) {
        int r = (int)meta[0];
        long long off = 0, rem = b;
        for (int d = r - 1; d >= 0; d--) {
            long long dim = meta[3 + d];
            off += (rem % dim) * meta[3 + r + d];
            rem /= dim;
        }
        mb = mask + off;
    }
    __syncthreads();
    for (int j = threadIdx.x; j < T; j += blockDim.x) {
        float acc[ATT_ROWS];
#pragma unroll
        for (int r = 0; r < ATT_ROWS; r++) acc[r] = 0.0f;
        for (int d = 0; d < D; d++) {
            float kv = ldf(kb, (long long)d * T + j);
#pragma unroll
            for (int r = 0; r < ATT_ROWS; r++) acc[r] += qs[r * D + d] * kv;
        }
#pragma unroll
        for (int r = 0; r < ATT_ROWS; r++) {
            float s = acc[r] * scale;
            if (mb && r < rows) s += ldf(mb, (long long)(i0 + r) * meta[1] + (long long)j * meta[2]);
            sc[r * T + j] = s;
        }
    }
    __syncthreads();
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (int r = warp; r < rows; r += nw) {
        float *sr = sc + r * T;
        float mx = -KILN_INF;
        for (int j = lane; j < T; j += 32) mx = fmaxf(mx, sr[j]);
        mx = warp_max(mx);
        float sum = 0.0f;
        for (int j = lane; j < T; j += 32) {
            float e = expf(sr[j] - mx);
            sr[j] = e;
            sum += e;
        }
        sum = warp_sum(sum);
        if (lane == 0) rowinv[r] = 1.0f / sum;
    }
    __syncthreads();
    for (int d = threadIdx.x; d < Dv; d += blockDim.x) {
        float acc[ATT_ROWS];
#pragma unroll
        for (int r = 0; r < ATT_ROWS; r++) acc[r] = 0.0f;
        for (int j = 0; j < T; j++) {
            float vv = ldf(vb, (long long)j * Dv + d);
#pragma unroll
            for (int r = 0; r < ATT_ROWS; r++) acc[r] += sc[r * T + j] * vv;
        }
#pragma unroll
        for (int r = 0; r < ATT_ROWS; r++)
            if (r < rows) stf(y, (b * S + i0 + r) * (long long)Dv + d, acc[r] * rowinv[r]);
    }
}
KILN_BOTH(attention_rows, ATTENTION_P, (y, q, kt, v, mask, meta, S, T, D, Dv, scale))

// Broadcasting binary operation, op: 0 add, 1 sub, 2 mul, 3 div, 4 max,
// 5 min, 6 pow. meta = {r, dims[r], a strides[r], b strides[r]}.
template <typename T>
__device__ void binary_t(T *y, const T *a, const T *b, const long long *meta, long long n, int op) {
    int r = (int)meta[0];
    GRID_STRIDE(i, n) {
        long long rem = i, ia = 0, ib = 0;
        for (int d = r - 1; d >= 0; d--) {
            long long dim = meta[1 + d];
            long long idx = rem % dim;
            rem /= dim;
            ia += idx * meta[1 + r + d];
            ib += idx * meta[1 + 2 * r + d];
        }
        float va = ldf(a, ia), vb = ldf(b, ib), o;
        switch (op) {
        case 0: o = va + vb; break;
        case 1: o = va - vb; break;
        case 2: o = va * vb; break;
        case 3: o = va / vb; break;
        case 4: o = fmaxf(va, vb); break;
        case 5: o = fminf(va, vb); break;
        default: o = powf(va, vb); break;
        }
        stf(y, i, o);
    }
}
#define BINARY_P(T) (T * y, const T *a, const T *b, const long long *meta, long long n, int op)
KILN_BOTH(binary, BINARY_P, (y, a, b, meta, n, op))

// Binary operation (op as in binary_t) where a has y's shape and b's
// elements repeat every bn elements of y (b of y's shape: bn = n; a
// trailing-dims vector such as a bias; a scalar: bn = 1).
template <typename T>
__device__ void binary_flat_t(T *y, const T *a, const T *b, long long n, long long bn, int op) {
    // b's index advances by the grid's stride modulo bn: no division per element
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long G = (long long)blockDim.x * gridDim.x;
    if (i >= n) return;
    long long j = i % bn;
    const long long step = G % bn;
    for (; i < n; i += G, j = j + step >= bn ? j + step - bn : j + step) {
        float va = ldf(a, i), vb = ldf(b, j), o;
        switch (op) {
        case 0: o = va + vb; break;
        case 1: o = va - vb; break;
        case 2: o = va * vb; break;
        case 3: o = va / vb; break;
        case 4: o = fmaxf(va, vb); break;
        case 5: o = fminf(va, vb); break;
        default: o = powf(va, vb); break;
        }
        stf(y, i, o);
    }
}
#define BINARY_FLAT_P(T) (T * y, const T *a, const T *b, long long n, long long bn, int op)
KILN_BOTH(binary_flat, BINARY_FLAT_P, (y, a, b, n, bn, op))

// y = act(x) elementwise.
template <typename T>
__device__ void unary_t(T *y, const T *x, long long n, int act, float p0, float p1) {
    GRID_STRIDE(i, n) stf(y, i, act_apply(ldf(x, i), act, p0, p1));
}
#define UNARY_P(T) (T * y, const T *x, long long n, int act, float p0, float p1)
KILN_BOTH(unary, UNARY_P, (y, x, n, act, p0, p1))

// Conversions to float32 or half (Cast of integers; the half executor's
// float32 graph inputs and outputs).
template <typename T>
__device__ void cast_i64_t(T *y, const long long *x, long long n) {
    GRID_STRIDE(i, n) stf(y, i, (float)x[i]);
}
#define CAST_I64_P(T) (T * y, const long long *x, long long n)
KILN_BOTH(cast_i64, CAST_I64_P, (y, x, n))

template <typename T>
__device__ void cast_i32_t(T *y, const int *x, long long n) {
    GRID_STRIDE(i, n) stf(y, i, (float)x[i]);
}
#define CAST_I32_P(T) (T * y, const int *x, long long n)
KILN_BOTH(cast_i32, CAST_I32_P, (y, x, n))

extern "C" __global__ void cast_f32_f16(kiln_half *y, const float *x, long long n) {
    GRID_STRIDE(i, n) y[i] = f2h(x[i]);
}

extern "C" __global__ void cast_f16_f32(float *y, const kiln_half *x, long long n) {
    GRID_STRIDE(i, n) y[i] = h2f(x[i]);
}

// Nearest-neighbour Resize of the last two dims of x [NC, H, W] to y [NC,
// OH, OW]: the source index of each output row and column is precomputed
// on the host (meta = {rows[OH], cols[OW]}), so every coordinate transform
// and rounding mode of ONNX Resize is handled there.
template <typename T>
__device__ void resize_nearest_t(T *y, const T *x, const long long *meta, long long NC, int H, int W, int OH,
                                 int OW) {
    long long total = NC * OH * OW;
    GRID_STRIDE(i, total) {
        int ow = (int)(i % OW);
        int oh = (int)((i / OW) % OH);
        long long nc = i / ((long long)OW * OH);
        y[i] = x[(nc * H + meta[oh]) * W + meta[OH + ow]];
    }
}
#define RESIZE_NEAREST_P(T) (T * y, const T *x, const long long *meta, long long NC, int H, int W, int OH, int OW)
KILN_BOTH(resize_nearest, RESIZE_NEAREST_P, (y, x, meta, NC, H, W, OH, OW))

// Permutation (Transpose) of 2-, 4- or 8-byte elements: output element i, of
// output dims meta[1..r], reads the input at sum idx[d]*meta[1+r+d].
#define PERMUTE(name, T)                                                                  \
    extern "C" __global__ void name(T *y, const T *x, const long long *meta, long long n) { \
        int r = (int)meta[0];                                                             \
        GRID_STRIDE(i, n) {                                                               \
            long long rem = i, ix = 0;                                                    \
            for (int d = r - 1; d >= 0; d--) {                                            \
                long long dim = meta[1 + d];                                              \
                ix += (rem % dim) * meta[1 + r + d];                                      \
                rem /= dim;                                                               \
            }                                                                             \
            y[i] = x[ix];                                                                 \
        }                                                                                 \
    }
PERMUTE(permute_b16, unsigned short)
PERMUTE(permute_b32, unsigned int)
PERMUTE(permute_b64, unsigned long long)

// Copy of rows x cols elements between strided row-major blocks:
// y[r*ys + yo + c] = x[r*xs + xo + c] (Concat, Split, Slice on one axis).
#define COPYROWS(name, T)                                                                          \
    extern "C" __global__ void name(T *y, const T *x, long long rows, long long cols, long long ys, \
                                    long long yo, long long xs, long long xo) {                     \
        long long n = rows * cols;                                                                 \
        GRID_STRIDE(i, n) {                                                                        \
            long long r = i / cols, c = i % cols;                                                  \
            y[r * ys + yo + c] = x[r * xs + xo + c];                                               \
        }                                                                                          \
    }
COPYROWS(copy_rows_b16, unsigned short)
COPYROWS(copy_rows_b32, unsigned int)
COPYROWS(copy_rows_b64, unsigned long long)

// Gather along an axis: y[o, j, k] = x[o, idx[j], k] with x [outer, len,
// inner] and idx int64 (negative counts from the end; out of range clamps).
#define GATHER(name, T)                                                                        \
    extern "C" __global__ void name(T *y, const T *x, const long long *idx, long long outer,   \
                                    long long len, long long nidx, long long inner) {          \
        long long n = outer * nidx * inner;                                                    \
        GRID_STRIDE(i, n) {                                                                    \
            long long k = i % inner, t = i / inner, j = t % nidx, o = t / nidx;                \
            long long s = idx[j];                                                              \
            if (s < 0) s += len;                                                               \
            s = s < 0 ? 0 : (s >= len ? len - 1 : s);                                          \
            y[i] = x[(o * len + s) * inner + k];                                               \
        }                                                                                      \
    }
GATHER(gather_b16, unsigned short)
GATHER(gather_b32, unsigned int)
GATHER(gather_b64, unsigned long long)

// Attention on tensor cores (half only; sm_80 and later: mma.sync
// m16n8k16, float32 accumulation), flash style: each warp owns 16 query
// rows and walks the keys in chunks of AM_KC with an online softmax, so the
// scores never leave registers. The block (4 warps, 64 query rows) stages
// each chunk of K and V in shared memory. Q, K, V and Y are read and
// written through strides, so that the head transposes around attention
// (and the split of a merged QKV projection) need no copy: st holds 16
// element strides, q (batch, head, row, col), k (batch, head, key, col),
// v (batch, head, key, col), y (batch, head, row, col); block y is
// batch*H + head. The mask is as for attention_t (meta over the flattened
// batch*H index). Probabilities are rounded to half for the P*V product.
// grid: (ceil(S/64), batch*H), block 128.
#define AM_KC 64
#define AM_LOG2E 1.4426950408889634f

__device__ __forceinline__ unsigned am_pack(float lo, float hi) {
    return (unsigned)f2h(lo) | ((unsigned)f2h(hi) << 16);
}

__device__ __forceinline__ unsigned am_pack_h(unsigned short lo, unsigned short hi) {
    return (unsigned)lo | ((unsigned)hi << 16);
}

__device__ __forceinline__ void am_mma(float *c, const unsigned *a, unsigned b0, unsigned b1) {
#if __CUDA_ARCH__ >= 800
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#else
    __trap();
#endif
}

template <int D>
__device__ void attention_mma_t(kiln_half *y, const kiln_half *q, const kiln_half *k, const kiln_half *v,
                                const kiln_half *mask, const long long *meta, const long long *st, int S, int T,
                                int H, float scale) {
    __shared__ __align__(16) kiln_half ks[AM_KC][D + 8];
    __shared__ __align__(16) kiln_half vs[AM_KC][D + 8];
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tg = lane & 3;
    long long bi = blockIdx.y, bo = bi / H, hh = bi % H;
    const kiln_half *qb = q + bo * st[0] + hh * st[1];
    const kiln_half *kb = k + bo * st[4] + hh * st[5];
    const kiln_half *vb = v + bo * st[8] + hh * st[9];
    kiln_half *yb = y + bo * st[12] + hh * st[13];
    long long qr = st[2], qc = st[3], kr = st[6], kc = st[7], vr = st[10], vc = st[11];
    int r0 = blockIdx.x * 64 + warp * 16;
    int ra = r0 + g, rb = r0 + g + 8;
    const kiln_half *mb = 0;
    long long mi = 0, mj = 0;
    if (mask) {
        int r = (int)meta[0];
        long long off = 0, rem = bi;
        for (int d = r - 1; d >= 0; d--) {
            long long dim = meta[3 + d];
            off += (rem % dim) * meta[3 + r + d];
            rem /= dim;
        }
        mb = mask + off;
        mi = meta[1];
        mj = meta[2];
    }
    unsigned qf[D / 16][4];
#pragma unroll
    for (int t = 0; t < D / 16; t++) {
        int c = t * 16 + 2 * tg;
        unsigned short z = 0;
        unsigned short a0 = ra < S ? qb[ra * qr + c * qc] : z, a1 = ra < S ? qb[ra * qr + (c + 1) * qc] : z;
        unsigned short b0 = rb < S ? qb[rb * qr + c * qc] : z, b1 = rb < S ? qb[rb * qr + (c + 1) * qc] : z;
        unsigned short a8 = ra < S ? qb[ra * qr + (c + 8) * qc] : z, a9 = ra < S ? qb[ra * qr + (c + 9) * qc] : z;
        unsigned short b8 = rb < S ? qb[rb * qr + (c + 8) * qc] : z, b9 = rb < S ? qb[rb * qr + (c + 9) * qc] : z;
        qf[t][0] = am_pack_h(a0, a1);
        qf[t][1] = am_pack_h(b0, b1);
        qf[t][2] = am_pack_h(a8, a9);
        qf[t][3] = am_pack_h(b8, b9);
    }
    float o[D / 8][4];
#pragma unroll
    for (int n = 0; n < D / 8; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    float m0 = -1e30f, m1 = -1e30f, l0 = 0.0f, l1 = 0.0f;
    float sc2 = scale * AM_LOG2E;
    // 16-byte loads of K and V rows when their columns are dense and aligned.
    bool vec = kc == 1 && vc == 1 && ((((unsigned long long)kb | (unsigned long long)vb) & 15) == 0) &&
               ((kr | vr) & 7) == 0;
    int ra_m = min(ra, S - 1), rb_m = min(rb, S - 1);
    for (int c0 = 0; c0 < T; c0 += AM_KC) {
        __syncthreads();
        if (vec) {
            for (int x = threadIdx.x; x < AM_KC * (D / 8); x += blockDim.x) {
                int t = x / (D / 8), d = (x % (D / 8)) * 8;
                uint4 kz = make_uint4(0, 0, 0, 0), vz = kz;
                if (c0 + t < T) {
                    kz = *(const uint4 *)(kb + (c0 + t) * kr + d);
                    vz = *(const uint4 *)(vb + (c0 + t) * vr + d);
                }
                *(uint4 *)&ks[t][d] = kz;
                *(uint4 *)&vs[t][d] = vz;
            }
        } else {
            for (int x = threadIdx.x; x < AM_KC * D; x += blockDim.x) {
                int t = x / D, d = x % D;
                bool in = c0 + t < T;
                ks[t][d] = in ? kb[(c0 + t) * kr + d * kc] : (kiln_half)0;
                vs[t][d] = in ? vb[(c0 + t) * vr + d * vc] : (kiln_half)0;
            }
        }
        __syncthreads();
        if (r0 >= S) continue;
        float s[AM_KC / 8][4];
#pragma unroll
        for (int n = 0; n < AM_KC / 8; n++) {
            s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
            for (int t = 0; t < D / 16; t++) {
                unsigned b0 = *(const unsigned *)&ks[n * 8 + g][t * 16 + 2 * tg];
                unsigned b1 = *(const unsigned *)&ks[n * 8 + g][t * 16 + 2 * tg + 8];
                am_mma(s[n], qf[t], b0, b1);
            }
        }
        float x0 = -1e30f, x1 = -1e30f;
#pragma unroll
        for (int n = 0; n < AM_KC / 8; n++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int key = c0 + n * 8 + 2 * tg + (e & 1);
                float val = s[n][e] * sc2;
                if (key >= T) {
                    val = -KILN_INF;
                } else if (mb) {
                    val += ldf(mb, (long long)(e < 2 ? ra_m : rb_m) * mi + (long long)key * mj) * AM_LOG2E;
                }
                s[n][e] = val;
            }
            x0 = fmaxf(x0, fmaxf(s[n][0], s[n][1]));
            x1 = fmaxf(x1, fmaxf(s[n][2], s[n][3]));
        }
        x0 = fmaxf(x0, __shfl_xor_sync(0xffffffff, x0, 1));
        x0 = fmaxf(x0, __shfl_xor_sync(0xffffffff, x0, 2));
        x1 = fmaxf(x1, __shfl_xor_sync(0xffffffff, x1, 1));
        x1 = fmaxf(x1, __shfl_xor_sync(0xffffffff, x1, 2));
        float n0 = fmaxf(m0, x0), n1 = fmaxf(m1, x1);
        float f0 = exp2f(m0 - n0), f1 = exp2f(m1 - n1);
        m0 = n0;
        m1 = n1;
        l0 *= f0;
        l1 *= f1;
#pragma unroll
        for (int n = 0; n < D / 8; n++) {
            o[n][0] *= f0;
            o[n][1] *= f0;
            o[n][2] *= f1;
            o[n][3] *= f1;
        }
#pragma unroll
        for (int n = 0; n < AM_KC / 8; n++) {
            s[n][0] = exp2f(s[n][0] - n0);
            s[n][1] = exp2f(s[n][1] - n0);
            s[n][2] = exp2f(s[n][2] - n1);
            s[n][3] = exp2f(s[n][3] - n1);
            l0 += s[n][0] + s[n][1];
            l1 += s[n][2] + s[n][3];
        }
#pragma unroll
        for (int t = 0; t < AM_KC / 16; t++) {
            unsigned a[4] = {am_pack(s[2 * t][0], s[2 * t][1]), am_pack(s[2 * t][2], s[2 * t][3]),
                             am_pack(s[2 * t + 1][0], s[2 * t + 1][1]), am_pack(s[2 * t + 1][2], s[2 * t + 1][3])};
            int j = t * 16 + 2 * tg;
#pragma unroll
            for (int n = 0; n < D / 8; n++) {
                int c = n * 8 + g;
                unsigned b0 = am_pack_h(vs[j][c], vs[j + 1][c]);
                unsigned b1 = am_pack_h(vs[j + 8][c], vs[j + 9][c]);
                am_mma(o[n], a, b0, b1);
            }
        }
    }
    if (r0 >= S) return;
    l0 += __shfl_xor_sync(0xffffffff, l0, 1);
    l0 += __shfl_xor_sync(0xffffffff, l0, 2);
    l1 += __shfl_xor_sync(0xffffffff, l1, 1);
    l1 += __shfl_xor_sync(0xffffffff, l1, 2);
    float i0 = 1.0f / l0, i1 = 1.0f / l1;
    long long yr = st[14], yc = st[15];
#pragma unroll
    for (int n = 0; n < D / 8; n++) {
        int c = n * 8 + 2 * tg;
        if (ra < S) {
            yb[ra * yr + c * yc] = f2h(o[n][0] * i0);
            yb[ra * yr + (c + 1) * yc] = f2h(o[n][1] * i0);
        }
        if (rb < S) {
            yb[rb * yr + c * yc] = f2h(o[n][2] * i1);
            yb[rb * yr + (c + 1) * yc] = f2h(o[n][3] * i1);
        }
    }
}
extern "C" __global__ void __launch_bounds__(128)
    attention_mma_d32_f16(kiln_half *y, const kiln_half *q, const kiln_half *k, const kiln_half *v,
                          const kiln_half *mask, const long long *meta, const long long *st, int S, int T, int H,
                          float scale) {
    attention_mma_t<32>(y, q, k, v, mask, meta, st, S, T, H, scale);
}
extern "C" __global__ void __launch_bounds__(128)
    attention_mma_d64_f16(kiln_half *y, const kiln_half *q, const kiln_half *k, const kiln_half *v,
                          const kiln_half *mask, const long long *meta, const long long *st, int S, int T, int H,
                          float scale) {
    attention_mma_t<64>(y, q, k, v, mask, meta, st, S, T, H, scale);
}
extern "C" __global__ void __launch_bounds__(128)
    attention_mma_d128_f16(kiln_half *y, const kiln_half *q, const kiln_half *k, const kiln_half *v,
                           const kiln_half *mask, const long long *meta, const long long *st, int S, int T, int H,
                           float scale) {
    attention_mma_t<128>(y, q, k, v, mask, meta, st, S, T, H, scale);
}

// Half kernels with 16-byte accesses, for rows of a multiple of 8 elements
// whose rows start 16-byte aligned (the executor checks).

__device__ __forceinline__ void vh_unpack(uint4 u, float *f) {
    const unsigned w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        f[2 * i] = h2f((unsigned short)(w[i] & 0xffff));
        f[2 * i + 1] = h2f((unsigned short)(w[i] >> 16));
    }
}

__device__ __forceinline__ uint4 vh_pack(const float *f) {
    return make_uint4(am_pack(f[0], f[1]), am_pack(f[2], f[3]), am_pack(f[4], f[5]), am_pack(f[6], f[7]));
}

// KILN_PDL_WAIT: a kernel that gpuexec may launch with programmatic
// dependent launch (pdl.go's pdlKernels) can start while the kernel before
// it still runs; it waits here, before it touches memory, until that work
// is complete and visible. Launched without the attribute (or below sm_90)
// it costs nothing.
#ifndef KILN_PDL_WAIT
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define KILN_PDL_WAIT() asm volatile("griddepcontrol.wait;" ::: "memory")
#else
#define KILN_PDL_WAIT()
#endif
#endif

// kiln_pdl_probe writes 1 to out where this image's KILN_PDL_WAIT waits
// (compiled for sm_90 and later), else 0: gpuexec launches kernels with
// programmatic dependent launch only where it does.
extern "C" __global__ void kiln_pdl_probe(int *out) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    *out = 1;
#else
    *out = 0;
#endif
}

// The one-warp-per-row LayerNorms of half rows (layernorm_vec_f16,
// layernorm_vec8_f16) are in op_layernorm.cu.

// row_epilogue in half, 8 elements per thread: y = act(y + bias[col])
// over total elements in rows of cols (cols % 8 == 0; bias optional).
extern "C" __global__ void row_epilogue_vec_f16(kiln_half *y, const kiln_half *bias, long long total, int cols,
                                                int act, float p0, float p1) {
    KILN_PDL_WAIT();
    GRID_STRIDE(i, total / 8) {
        float v[8];
        uint4 *p = (uint4 *)y + i;
        vh_unpack(*p, v);
        if (bias) {
            float b[8];
            vh_unpack(*(const uint4 *)(bias + (i * 8) % cols), b);
#pragma unroll
            for (int e = 0; e < 8; e++) v[e] += b[e];
        }
#pragma unroll
        for (int e = 0; e < 8; e++) v[e] = act_apply(v[e], act, p0, p1);
        *p = vh_pack(v);
    }
}
