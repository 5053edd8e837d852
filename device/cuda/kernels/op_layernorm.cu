// Layer normalization of half rows, one warp per row, the row held in
// registers: y = LN(x + z) * gamma + beta, with z (a residual added first)
// and beta optional. block 128 (4 rows), grid ceil(rows / 4).
//
// layernorm_vec_f16 takes rows of at most 1024 halves (cols % 8 == 0): at
// most 4 vectors of 8 a lane, and the row, the residual, gamma and beta all
// loaded before the first reduction, so that their memory latencies
// overlap. layernorm_vec8_f16 (below) takes rows up to 2048 and loads gamma
// and beta after the two reductions: a second round trip. Measured on an
// H100 (BERT-base FP16, device/cuda/NOTES.md): the first form took the
// network from 0.556 to 0.510 ms at batch 1 and 1.706 to 1.678 ms at batch
// 32, with the same outputs (the same arithmetic).
#ifndef KILN_PDL_WAIT
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define KILN_PDL_WAIT() asm volatile("griddepcontrol.wait;" ::: "memory")
#else
#define KILN_PDL_WAIT()
#endif
#endif
#define LNP_MAX 4
extern "C" __global__ void layernorm_vec_f16(kiln_half *y, const kiln_half *x, const kiln_half *z, const kiln_half *gamma,
                                             const kiln_half *beta, long long rows, int cols, float eps) {
    KILN_PDL_WAIT();
    long long r = (long long)blockIdx.x * 4 + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (r >= rows) return;
    int nv = cols / 8;
    const uint4 *xr = (const uint4 *)(x + r * cols);
    const uint4 *zr = z ? (const uint4 *)(z + r * cols) : 0;
    uint4 xv[LNP_MAX], zv[LNP_MAX], gv[LNP_MAX], bv[LNP_MAX];
#pragma unroll
    for (int i = 0; i < LNP_MAX; i++) {
        int c = lane + 32 * i;
        if (c < nv) {
            xv[i] = xr[c];
            if (zr) zv[i] = zr[c];
            gv[i] = ((const uint4 *)gamma)[c];
            if (beta) bv[i] = ((const uint4 *)beta)[c];
        }
    }
    float v[LNP_MAX][8];
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < LNP_MAX; i++) {
        if (lane + 32 * i < nv) {
            vh_unpack(xv[i], v[i]);
            if (zr) {
                float t[8];
                vh_unpack(zv[i], t);
#pragma unroll
                for (int e = 0; e < 8; e++) v[i][e] += t[e];
            }
#pragma unroll
            for (int e = 0; e < 8; e++) s += v[i][e];
        }
    }
    float mean = warp_sum(s) / cols;
    float q = 0.0f;
#pragma unroll
    for (int i = 0; i < LNP_MAX; i++) {
        if (lane + 32 * i < nv) {
#pragma unroll
            for (int e = 0; e < 8; e++) {
                float d = v[i][e] - mean;
                q += d * d;
            }
        }
    }
    float inv = rsqrtf(warp_sum(q) / cols + eps);
    uint4 *yr = (uint4 *)(y + r * cols);
#pragma unroll
    for (int i = 0; i < LNP_MAX; i++) {
        int c = lane + 32 * i;
        if (c < nv) {
            float g[8], b[8];
            vh_unpack(gv[i], g);
            if (beta) {
                vh_unpack(bv[i], b);
            } else {
#pragma unroll
                for (int e = 0; e < 8; e++) b[e] = 0.0f;
            }
#pragma unroll
            for (int e = 0; e < 8; e++) v[i][e] = (v[i][e] - mean) * inv * g[e] + b[e];
            yr[c] = vh_pack(v[i]);
        }
    }
}

// layernorm_vec8_f16: layer normalization of rows of cols elements (cols %
// 8 == 0, at most 32 * 8 * LNV_MAX = 2048), one warp per row, the row held
// in registers, gamma and beta loaded after the reductions (the kernel
// layernorm_vec_f16 was before it took the rows up to 1024):
// y = LN(x + z) * gamma + beta, with z (a residual added first) and beta
// optional. block 128 (4 rows), grid ceil(rows / 4).
#define LNV_MAX 8
extern "C" __global__ void layernorm_vec8_f16(kiln_half *y, const kiln_half *x, const kiln_half *z, const kiln_half *gamma,
                                              const kiln_half *beta, long long rows, int cols, float eps) {
    KILN_PDL_WAIT();
    long long r = (long long)blockIdx.x * 4 + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (r >= rows) return;
    int nv = cols / 8;
    const uint4 *xr = (const uint4 *)(x + r * cols);
    const uint4 *zr = z ? (const uint4 *)(z + r * cols) : 0;
    float v[LNV_MAX][8];
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < LNV_MAX; i++) {
        int c = lane + 32 * i;
        if (c < nv) {
            vh_unpack(xr[c], v[i]);
            if (zr) {
                float t[8];
                vh_unpack(zr[c], t);
#pragma unroll
                for (int e = 0; e < 8; e++) v[i][e] += t[e];
            }
#pragma unroll
            for (int e = 0; e < 8; e++) s += v[i][e];
        }
    }
    float mean = warp_sum(s) / cols;
    float q = 0.0f;
#pragma unroll
    for (int i = 0; i < LNV_MAX; i++) {
        if (lane + 32 * i < nv) {
#pragma unroll
            for (int e = 0; e < 8; e++) {
                float d = v[i][e] - mean;
                q += d * d;
            }
        }
    }
    float inv = rsqrtf(warp_sum(q) / cols + eps);
    uint4 *yr = (uint4 *)(y + r * cols);
#pragma unroll
    for (int i = 0; i < LNV_MAX; i++) {
        int c = lane + 32 * i;
        if (c < nv) {
            float g[8], b[8];
            vh_unpack(((const uint4 *)gamma)[c], g);
            if (beta) {
                vh_unpack(((const uint4 *)beta)[c], b);
            } else {
#pragma unroll
                for (int e = 0; e < 8; e++) b[e] = 0.0f;
            }
#pragma unroll
            for (int e = 0; e < 8; e++) v[i][e] = (v[i][e] - mean) * inv * g[e] + b[e];
            yr[c] = vh_pack(v[i]);
        }
    }
}

// layernorm_embed_f16 is layernorm_vec_f16 whose row is an embedding
// lookup and sum, as BERT's embeddings compute it: x = table[idx[r]] +
// a[r % aRows] + z[r % zRows] (z optional), then y = LN(x) * gamma + beta;
// the Gather and the Adds launch nothing. idx is int64 (negative counts
// from the end of the table's len rows; out of range clamps, as the
// gather kernels do). Rows of at most 1024 halves (cols % 8 == 0).
// block 128 (4 rows), grid ceil(rows / 4).
extern "C" __global__ void layernorm_embed_f16(kiln_half *y, const kiln_half *table, const long long *idx, long long len,
                                               const kiln_half *a, long long aRows, const kiln_half *z, long long zRows,
                                               const kiln_half *gamma, const kiln_half *beta, long long rows, int cols,
                                               float eps) {
    KILN_PDL_WAIT();
    long long r = (long long)blockIdx.x * 4 + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (r >= rows) return;
    int nv = cols / 8;
    long long s = idx[r];
    if (s < 0) s += len;
    s = s < 0 ? 0 : (s >= len ? len - 1 : s);
    const uint4 *tr = (const uint4 *)(table + s * cols);
    const uint4 *ar = (const uint4 *)(a + (r % aRows) * cols);
    const uint4 *zr = z ? (const uint4 *)(z + (r % zRows) * cols) : 0;
    uint4 tv[LNP_MAX], av[LNP_MAX], zv[LNP_MAX], gv[LNP_MAX], bv[LNP_MAX];
#pragma unroll
    for (int i = 0; i < LNP_MAX; i++) {
        int c = lane + 32 * i;
        if (c < nv) {
            tv[i] = tr[c];
            av[i] = ar[c];
            if (zr) zv[i] = zr[c];
            gv[i] = ((const uint4 *)gamma)[c];
            if (beta) bv[i] = ((const uint4 *)beta)[c];
        }
    }
    float v[LNP_MAX][8];
    float sum = 0.0f;
#pragma unroll
    for (int i = 0; i < LNP_MAX; i++) {
        if (lane + 32 * i < nv) {
            float t[8];
            vh_unpack(tv[i], v[i]);
            vh_unpack(av[i], t);
#pragma unroll
            for (int e = 0; e < 8; e++) v[i][e] += t[e];
            if (zr) {
                vh_unpack(zv[i], t);
#pragma unroll
                for (int e = 0; e < 8; e++) v[i][e] += t[e];
            }
#pragma unroll
            for (int e = 0; e < 8; e++) sum += v[i][e];
        }
    }
    float mean = warp_sum(sum) / cols;
    float q = 0.0f;
#pragma unroll
    for (int i = 0; i < LNP_MAX; i++) {
        if (lane + 32 * i < nv) {
#pragma unroll
            for (int e = 0; e < 8; e++) {
                float d = v[i][e] - mean;
                q += d * d;
            }
        }
    }
    float inv = rsqrtf(warp_sum(q) / cols + eps);
    uint4 *yr = (uint4 *)(y + r * cols);
#pragma unroll
    for (int i = 0; i < LNP_MAX; i++) {
        int c = lane + 32 * i;
        if (c < nv) {
            float g[8], b[8];
            vh_unpack(gv[i], g);
            if (beta) {
                vh_unpack(bv[i], b);
            } else {
#pragma unroll
                for (int e = 0; e < 8; e++) b[e] = 0.0f;
            }
#pragma unroll
            for (int e = 0; e < 8; e++) v[i][e] = (v[i][e] - mean) * inv * g[e] + b[e];
            yr[c] = vh_pack(v[i]);
        }
    }
}
