// Attention on tensor cores, second form (half only, sm_80 and later):
// attention_mma_t of nn.cu with the operands of both products loaded by
// ldmatrix (K as it lies, V transposed: one instruction gives the fragments
// of two mma.sync where nn.cu's kernel issues 4 to 8 shared loads and
// packs), the mask of the chunk staged in shared memory once per block when
// it does not depend on the query row (BERT's [batch, 1, 1, keys]), and
// the output stored two halves at a time when its columns are dense, and
// dense K and V rows copied with cp.async (all of a chunk in flight). The
// block has 1, 2 or 4 warps (blockDim.x / 32), each owning 16 query rows,
// so that a small batch still fills the GPU. Arguments, strides and mask as
// for attention_mma_t. grid: (ceil(S / (16 * warps)), batch*H), block
// 32 * warps.

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

__device__ __forceinline__ unsigned fa_smem(const void *p) {
    unsigned a;
    asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(a) : "l"(p));
    return a;
}

// fa_ldsm4 loads four 8x8 matrices of halves; lanes 8i..8i+7 give the rows
// of matrix i.
__device__ __forceinline__ void fa_ldsm4(unsigned *r, const void *p) {
#if __CUDA_ARCH__ >= 800
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(fa_smem(p)));
#else
    __trap();
#endif
}

// fa_ldsm4t is fa_ldsm4 with each matrix transposed.
__device__ __forceinline__ void fa_ldsm4t(unsigned *r, const void *p) {
#if __CUDA_ARCH__ >= 800
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(fa_smem(p)));
#else
    __trap();
#endif
}

// fa_cp16 copies 16 bytes from global to shared memory asynchronously
// (cp.async, sm_80): n = 0 fills the 16 bytes with zeros and reads nothing.
__device__ __forceinline__ void fa_cp16(void *dst, const void *src, int n) {
#if __CUDA_ARCH__ >= 800
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(fa_smem(dst)), "l"(src), "r"(n));
#else
    __trap();
#endif
}

// fa_cp_wait waits for this thread's cp.async copies.
__device__ __forceinline__ void fa_cp_wait() {
#if __CUDA_ARCH__ >= 800
    asm volatile("cp.async.commit_group;\ncp.async.wait_group 0;" ::: "memory");
#endif
}

template <int D, int KS>
__device__ void attention_fa_t(kiln_half *y, const kiln_half *q, const kiln_half *k, const kiln_half *v,
                               const kiln_half *mask, const long long *meta, const long long *st, int S, int T,
                               int H, float scale) {
    __shared__ __align__(16) kiln_half ks[KS][D + 8];
    __shared__ __align__(16) kiln_half vs[KS][D + 8];
    __shared__ float msk[KS];
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tg = lane & 3;
    int warps = blockDim.x >> 5;
    long long bi = blockIdx.y, bo = bi / H, hh = bi % H;
    const kiln_half *qb = q + bo * st[0] + hh * st[1];
    const kiln_half *kb = k + bo * st[4] + hh * st[5];
    const kiln_half *vb = v + bo * st[8] + hh * st[9];
    kiln_half *yb = y + bo * st[12] + hh * st[13];
    long long qr = st[2], qc = st[3], kr = st[6], kc = st[7], vr = st[10], vc = st[11];
    int r0 = (blockIdx.x * warps + warp) * 16;
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
    // the mask of a chunk is the same for every query row: staged once
    bool shared_mask = mb && mi == 0;
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
    bool vec = kc == 1 && vc == 1 && ((((unsigned long long)kb | (unsigned long long)vb) & 15) == 0) &&
               ((kr | vr) & 7) == 0;
    int ra_m = min(ra, S - 1), rb_m = min(rb, S - 1);
    // ldmatrix row addresses of this lane: K as [key][col] (matrices: keys
    // n*8.., cols t*16, t*16+8, t*16+16, t*16+24), V as [key][col]
    // transposed (keys j.., j+8.. at cols n*8, then (n+1)*8)
    int k_row = lane & 7, k_col = (lane >> 3) * 8;
    int v_row = (lane & 7) + ((lane >> 3) & 1) * 8, v_col = (lane >> 4) * 8;
    for (int c0 = 0; c0 < T; c0 += KS) {
        __syncthreads();
        if (vec) {
            // every copy of the chunk in flight at once, whatever the
            // block's size (keys past T are zeros)
            for (int x = threadIdx.x; x < KS * (D / 8); x += blockDim.x) {
                int t = x / (D / 8), d = (x % (D / 8)) * 8;
                bool in = c0 + t < T;
                fa_cp16(&ks[t][d], in ? kb + (c0 + t) * kr + d : kb, in ? 16 : 0);
                fa_cp16(&vs[t][d], in ? vb + (c0 + t) * vr + d : vb, in ? 16 : 0);
            }
            fa_cp_wait();
        } else {
            for (int x = threadIdx.x; x < KS * D; x += blockDim.x) {
                int t = x / D, d = x % D;
                bool in = c0 + t < T;
                ks[t][d] = in ? kb[(c0 + t) * kr + d * kc] : (kiln_half)0;
                vs[t][d] = in ? vb[(c0 + t) * vr + d * vc] : (kiln_half)0;
            }
        }
        if (shared_mask) {
            for (int x = threadIdx.x; x < KS; x += blockDim.x) {
                msk[x] = c0 + x < T ? ldf(mb, (long long)(c0 + x) * mj) * AM_LOG2E : 0.0f;
            }
        }
        __syncthreads();
        if (r0 >= S) continue;
        // the staged keys in sub-chunks of AM_KC (the scores of one in
        // registers at a time)
        for (int sub = 0; sub < KS && c0 + sub < T; sub += AM_KC) {
            float s[AM_KC / 8][4];
#pragma unroll
            for (int n = 0; n < AM_KC / 8; n++) {
                s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
                for (int t = 0; t < D / 16; t += 2) {
                    unsigned b[4];
                    fa_ldsm4(b, &ks[sub + n * 8 + k_row][t * 16 + k_col]);
                    am_mma(s[n], qf[t], b[0], b[1]);
                    am_mma(s[n], qf[t + 1], b[2], b[3]);
                }
            }
            float x0 = -1e30f, x1 = -1e30f;
#pragma unroll
            for (int n = 0; n < AM_KC / 8; n++) {
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    int kk = sub + n * 8 + 2 * tg + (e & 1), key = c0 + kk;
                    float val = s[n][e] * sc2;
                    if (key >= T) {
                        val = -KILN_INF;
                    } else if (shared_mask) {
                        val += msk[kk];
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
#pragma unroll
                for (int n = 0; n < D / 8; n += 2) {
                    unsigned b[4];
                    fa_ldsm4t(b, &vs[sub + t * 16 + v_row][n * 8 + v_col]);
                    am_mma(o[n], a, b[0], b[1]);
                    am_mma(o[n + 1], a, b[2], b[3]);
                }
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
    bool pair = yc == 1 && ((yr & 1) == 0) && (((unsigned long long)yb & 3) == 0);
#pragma unroll
    for (int n = 0; n < D / 8; n++) {
        int c = n * 8 + 2 * tg;
        if (pair) {
            if (ra < S) *(unsigned *)&yb[ra * yr + c] = am_pack(o[n][0] * i0, o[n][1] * i0);
            if (rb < S) *(unsigned *)&yb[rb * yr + c] = am_pack(o[n][2] * i1, o[n][3] * i1);
            continue;
        }
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
    attention_mma_fa_d32_f16(kiln_half *y, const kiln_half *q, const kiln_half *k, const kiln_half *v,
                         const kiln_half *mask, const long long *meta, const long long *st, int S, int T, int H,
                         float scale) {
    KILN_PDL_WAIT();
    attention_fa_t<32, AM_KC>(y, q, k, v, mask, meta, st, S, T, H, scale);
}
extern "C" __global__ void __launch_bounds__(128)
    attention_mma_fa_d64_f16(kiln_half *y, const kiln_half *q, const kiln_half *k, const kiln_half *v,
                         const kiln_half *mask, const long long *meta, const long long *st, int S, int T, int H,
                         float scale) {
    KILN_PDL_WAIT();
    attention_fa_t<64, AM_KC>(y, q, k, v, mask, meta, st, S, T, H, scale);
}
extern "C" __global__ void __launch_bounds__(128)
    attention_mma_fa_d128_f16(kiln_half *y, const kiln_half *q, const kiln_half *k, const kiln_half *v,
                          const kiln_half *mask, const long long *meta, const long long *st, int S, int T, int H,
                          float scale) {
    KILN_PDL_WAIT();
    attention_fa_t<128, AM_KC>(y, q, k, v, mask, meta, st, S, T, H, scale);
}

// The same with 128 keys staged at once (two sub-chunks computed from one
// wait): for head sizes up to 64, whose two K and V buffers then fit the
// 48 KB of static shared memory.
extern "C" __global__ void __launch_bounds__(128)
    attention_mma_fa128_d32_f16(kiln_half *y, const kiln_half *q, const kiln_half *k, const kiln_half *v,
                                const kiln_half *mask, const long long *meta, const long long *st, int S, int T,
                                int H, float scale) {
    KILN_PDL_WAIT();
    attention_fa_t<32, 2 * AM_KC>(y, q, k, v, mask, meta, st, S, T, H, scale);
}
extern "C" __global__ void __launch_bounds__(128)
    attention_mma_fa128_d64_f16(kiln_half *y, const kiln_half *q, const kiln_half *k, const kiln_half *v,
                                const kiln_half *mask, const long long *meta, const long long *st, int S, int T,
                                int H, float scale) {
    KILN_PDL_WAIT();
    attention_fa_t<64, 2 * AM_KC>(y, q, k, v, mask, meta, st, S, T, H, scale);
}

// Third form, for BERT-sized heads at batch 32 (attention_mma_fq, head
// sizes 32 and 64, 128 keys staged): attention_fa_t's arithmetic with the
// memory traffic of the block reorganized. The scalar 2-byte loads of Q
// (32 a thread for D = 64, each touching 8 rows of global memory) become
// 16-byte cp.async copies into shared memory issued together with the
// first chunk's K (one commit group), then one ldmatrix per 16 columns;
// V is a second commit group, waited for only before the first P*V
// product, so the copies of V overlap the first scores and softmax; the
// output is written through the warp's own rows of that shared buffer
// and stored 16 bytes at a time (where its rows are dense). Grid and
// block as attention_mma_fa (1, 2 or 4 warps, 16 query rows each).
template <int D, int KS>
__device__ void attention_fq_t(kiln_half *y, const kiln_half *q, const kiln_half *k, const kiln_half *v,
                               const kiln_half *mask, const long long *meta, const long long *st, int S, int T,
                               int H, float scale) {
    __shared__ __align__(16) kiln_half ks[KS][D + 8];
    __shared__ __align__(16) kiln_half vs[KS][D + 8];
    __shared__ __align__(16) kiln_half qs[64][D + 8];
    __shared__ float msk[KS];
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tg = lane & 3;
    int warps = blockDim.x >> 5;
    long long bi = blockIdx.y, bo = bi / H, hh = bi % H;
    const kiln_half *qb = q + bo * st[0] + hh * st[1];
    const kiln_half *kb = k + bo * st[4] + hh * st[5];
    const kiln_half *vb = v + bo * st[8] + hh * st[9];
    kiln_half *yb = y + bo * st[12] + hh * st[13];
    long long qr = st[2], qc = st[3], kr = st[6], kc = st[7], vr = st[10], vc = st[11];
    int rb0 = blockIdx.x * warps * 16;  // the block's first query row
    int r0 = rb0 + warp * 16;           // the warp's
    int ra = r0 + g, rb = r0 + g + 8;
    bool active = r0 < S;
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
    bool shared_mask = mb && mi == 0;
    bool vec = kc == 1 && vc == 1 && ((((unsigned long long)kb | (unsigned long long)vb) & 15) == 0) &&
               ((kr | vr) & 7) == 0;
    // Q's rows of the block into qs (rows past S are zeros): in flight
    // with the first chunk's K
    int qrows = warps * 16;
    if (qc == 1 && (((unsigned long long)qb & 15) == 0) && (qr & 7) == 0) {
        for (int x = threadIdx.x; x < qrows * (D / 8); x += blockDim.x) {
            int t = x / (D / 8), d = (x % (D / 8)) * 8;
            bool in = rb0 + t < S;
            fa_cp16(&qs[t][d], in ? qb + (long long)(rb0 + t) * qr + d : qb, in ? 16 : 0);
        }
    } else {
        for (int x = threadIdx.x; x < qrows * D; x += blockDim.x) {
            int t = x / D, d = x % D;
            qs[t][d] = rb0 + t < S ? qb[(long long)(rb0 + t) * qr + d * qc] : (kiln_half)0;
        }
    }
    unsigned qf[D / 16][4];
    float o[D / 8][4];
#pragma unroll
    for (int n = 0; n < D / 8; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    float m0 = -1e30f, m1 = -1e30f, l0 = 0.0f, l1 = 0.0f;
    float sc2 = scale * AM_LOG2E;
    int ra_m = min(ra, S - 1), rb_m = min(rb, S - 1);
    int k_row = lane & 7, k_col = (lane >> 3) * 8;
    int v_row = (lane & 7) + ((lane >> 3) & 1) * 8, v_col = (lane >> 4) * 8;
    for (int c0 = 0; c0 < T; c0 += KS) {
        __syncthreads();
        if (vec) {
            for (int x = threadIdx.x; x < KS * (D / 8); x += blockDim.x) {
                int t = x / (D / 8), d = (x % (D / 8)) * 8;
                bool in = c0 + t < T;
                fa_cp16(&ks[t][d], in ? kb + (long long)(c0 + t) * kr + d : kb, in ? 16 : 0);
            }
#if __CUDA_ARCH__ >= 800
            asm volatile("cp.async.commit_group;" ::: "memory");
#endif
            for (int x = threadIdx.x; x < KS * (D / 8); x += blockDim.x) {
                int t = x / (D / 8), d = (x % (D / 8)) * 8;
                bool in = c0 + t < T;
                fa_cp16(&vs[t][d], in ? vb + (long long)(c0 + t) * vr + d : vb, in ? 16 : 0);
            }
#if __CUDA_ARCH__ >= 800
            asm volatile("cp.async.commit_group;" ::: "memory");
#endif
        } else {
            for (int x = threadIdx.x; x < KS * D; x += blockDim.x) {
                int t = x / D, d = x % D;
                bool in = c0 + t < T;
                ks[t][d] = in ? kb[(long long)(c0 + t) * kr + d * kc] : (kiln_half)0;
                vs[t][d] = in ? vb[(long long)(c0 + t) * vr + d * vc] : (kiln_half)0;
            }
#if __CUDA_ARCH__ >= 800
            asm volatile("cp.async.commit_group;" ::: "memory");  // Q's copies, if any
#endif
        }
        if (shared_mask) {
            for (int x = threadIdx.x; x < KS; x += blockDim.x) {
                msk[x] = c0 + x < T ? ldf(mb, (long long)(c0 + x) * mj) * AM_LOG2E : 0.0f;
            }
        }
        // Q (first chunk) and K are here; V may still be in flight
#if __CUDA_ARCH__ >= 800
        if (vec) {
            asm volatile("cp.async.wait_group 1;" ::: "memory");
        } else {
            asm volatile("cp.async.wait_group 0;" ::: "memory");
        }
#endif
        __syncthreads();
        if (c0 == 0 && active) {
#pragma unroll
            for (int t = 0; t < D / 16; t++) fa_ldsm4(qf[t], &qs[warp * 16 + v_row][t * 16 + v_col]);
        }
        for (int sub = 0; sub < KS && c0 + sub < T; sub += AM_KC) {
            float s[AM_KC / 8][4];
            float f0 = 1.0f, f1 = 1.0f;
            if (active) {
#pragma unroll
                for (int n = 0; n < AM_KC / 8; n++) {
                    s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
                    for (int t = 0; t < D / 16; t += 2) {
                        unsigned b[4];
                        fa_ldsm4(b, &ks[sub + n * 8 + k_row][t * 16 + k_col]);
                        am_mma(s[n], qf[t], b[0], b[1]);
                        am_mma(s[n], qf[t + 1], b[2], b[3]);
                    }
                }
                float x0 = -1e30f, x1 = -1e30f;
#pragma unroll
                for (int n = 0; n < AM_KC / 8; n++) {
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        int kk = sub + n * 8 + 2 * tg + (e & 1), key = c0 + kk;
                        float val = s[n][e] * sc2;
                        if (key >= T) {
                            val = -KILN_INF;
                        } else if (shared_mask) {
                            val += msk[kk];
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
                f0 = exp2f(m0 - n0);
                f1 = exp2f(m1 - n1);
                m0 = n0;
                m1 = n1;
                l0 *= f0;
                l1 *= f1;
#pragma unroll
                for (int n = 0; n < AM_KC / 8; n++) {
                    s[n][0] = exp2f(s[n][0] - n0);
                    s[n][1] = exp2f(s[n][1] - n0);
                    s[n][2] = exp2f(s[n][2] - n1);
                    s[n][3] = exp2f(s[n][3] - n1);
                    l0 += s[n][0] + s[n][1];
                    l1 += s[n][2] + s[n][3];
                }
            }
            if (sub == 0) {
                // V of this chunk
#if __CUDA_ARCH__ >= 800
                asm volatile("cp.async.wait_group 0;" ::: "memory");
#endif
                __syncthreads();
            }
            if (!active) continue;
#pragma unroll
            for (int n = 0; n < D / 8; n++) {
                o[n][0] *= f0;
                o[n][1] *= f0;
                o[n][2] *= f1;
                o[n][3] *= f1;
            }
#pragma unroll
            for (int t = 0; t < AM_KC / 16; t++) {
                unsigned a[4] = {am_pack(s[2 * t][0], s[2 * t][1]), am_pack(s[2 * t][2], s[2 * t][3]),
                                 am_pack(s[2 * t + 1][0], s[2 * t + 1][1]), am_pack(s[2 * t + 1][2], s[2 * t + 1][3])};
#pragma unroll
                for (int n = 0; n < D / 8; n += 2) {
                    unsigned b[4];
                    fa_ldsm4t(b, &vs[sub + t * 16 + v_row][n * 8 + v_col]);
                    am_mma(o[n], a, b[0], b[1]);
                    am_mma(o[n + 1], a, b[2], b[3]);
                }
            }
        }
    }
    if (!active) return;
    l0 += __shfl_xor_sync(0xffffffff, l0, 1);
    l0 += __shfl_xor_sync(0xffffffff, l0, 2);
    l1 += __shfl_xor_sync(0xffffffff, l1, 1);
    l1 += __shfl_xor_sync(0xffffffff, l1, 2);
    float i0 = 1.0f / l0, i1 = 1.0f / l1;
    long long yr = st[14], yc = st[15];
    if (yc == 1 && (yr & 7) == 0 && (((unsigned long long)yb & 15) == 0)) {
        // through the warp's own rows of qs (its Q is in registers since
        // its ldmatrix), then 16 bytes a lane
        kiln_half(*ow)[D + 8] = qs + warp * 16;
#pragma unroll
        for (int n = 0; n < D / 8; n++) {
            int c = n * 8 + 2 * tg;
            *(unsigned *)&ow[g][c] = am_pack(o[n][0] * i0, o[n][1] * i0);
            *(unsigned *)&ow[g + 8][c] = am_pack(o[n][2] * i1, o[n][3] * i1);
        }
        __syncwarp();
#pragma unroll
        for (int x = lane; x < 16 * (D / 8); x += 32) {
            int t = x / (D / 8), d = (x % (D / 8)) * 8;
            if (r0 + t < S) *(uint4 *)&yb[(long long)(r0 + t) * yr + d] = *(const uint4 *)&ow[t][d];
        }
        return;
    }
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
extern "C" __global__ void __launch_bounds__(128, 4)
    attention_mma_fq_d32_f16(kiln_half *y, const kiln_half *q, const kiln_half *k, const kiln_half *v,
                             const kiln_half *mask, const long long *meta, const long long *st, int S, int T, int H,
                             float scale) {
    KILN_PDL_WAIT();
    attention_fq_t<32, 2 * AM_KC>(y, q, k, v, mask, meta, st, S, T, H, scale);
}
extern "C" __global__ void __launch_bounds__(128, 4)
    attention_mma_fq_d64_f16(kiln_half *y, const kiln_half *q, const kiln_half *k, const kiln_half *v,
                             const kiln_half *mask, const long long *meta, const long long *st, int S, int T, int H,
                             float scale) {
    KILN_PDL_WAIT();
    attention_fq_t<64, 2 * AM_KC>(y, q, k, v, mask, meta, st, S, T, H, scale);
}

// Fourth form, for many heads (BERT at batch 32): attention_mma_fw, each
// warp 32 query rows (two m16 tiles sharing every K and V fragment it
// loads, where attention_mma_fa's warps have one), 4 warps a block, so a
// block covers 128 query rows: at sequence 128 one block a head, whose K
// and V are staged once (attention_mma_fa stages them for each block of
// 64 rows). Keys in chunks of 128 (K in ks, V in vs) and in pieces of KP
// for the scores (their registers then fit 3 blocks an SM: BERT-base's
// 384 heads at batch 32 in one wave on 132 SMs). Q's 128 rows are copied
// into vs before the first chunk's V (cp.async with the first K), taken
// into registers by ldmatrix, and V's copy starts once every warp has its
// fragments; the output leaves through ks, 16 bytes a lane. Pieces of KP
// keys: 32 for heads of 32, 16 for 64 (ptxas, NVRTC 11.8: 161 registers,
// no spills, where 32 keys spilled 88 bytes inside the loop). Arguments,
// strides and mask as attention_mma_fa. grid: (ceil(S / 128), batch*H),
// block 128.
template <int D, int KP, bool PIPE>
__device__ void attention_fw_t(kiln_half *y, const kiln_half *q, const kiln_half *k, const kiln_half *v,
                               const kiln_half *mask, const long long *meta, const long long *st, int S, int T,
                               int H, float scale) {
    const int KS = 128, R = 128;
    const int KH = PIPE ? KS / 2 : KS;  // keys a commit group of K or V
    __shared__ __align__(16) kiln_half ks[KS][D + 8];
    __shared__ __align__(16) kiln_half vs[KS][D + 8];
    __shared__ float msk[KS];
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tg = lane & 3;
    long long bi = blockIdx.y, bo = bi / H, hh = bi % H;
    const kiln_half *qb = q + bo * st[0] + hh * st[1];
    const kiln_half *kb = k + bo * st[4] + hh * st[5];
    const kiln_half *vb = v + bo * st[8] + hh * st[9];
    kiln_half *yb = y + bo * st[12] + hh * st[13];
    long long qr = st[2], qc = st[3], kr = st[6], kc = st[7], vr = st[10], vc = st[11];
    int rb0 = blockIdx.x * R, r0 = rb0 + warp * 32;
    bool active = r0 < S;
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
    bool shared_mask = mb && mi == 0;
    bool vec = kc == 1 && vc == 1 && ((((unsigned long long)kb | (unsigned long long)vb) & 15) == 0) &&
               ((kr | vr) & 7) == 0;
    // Q's rows into vs, the first chunk's K into ks
    if (qc == 1 && (((unsigned long long)qb & 15) == 0) && (qr & 7) == 0) {
        for (int x = threadIdx.x; x < R * (D / 8); x += blockDim.x) {
            int t = x / (D / 8), d = (x % (D / 8)) * 8;
            bool in = rb0 + t < S;
            fa_cp16(&vs[t][d], in ? qb + (long long)(rb0 + t) * qr + d : qb, in ? 16 : 0);
        }
    } else {
        for (int x = threadIdx.x; x < R * D; x += blockDim.x) {
            int t = x / D, d = x % D;
            vs[t][d] = rb0 + t < S ? qb[(long long)(rb0 + t) * qr + d * qc] : (kiln_half)0;
        }
    }
    unsigned qf[2][D / 16][4];
    float o[2][D / 8][4];
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int n = 0; n < D / 8; n++) o[i][n][0] = o[i][n][1] = o[i][n][2] = o[i][n][3] = 0.0f;
    float m[2][2] = {{-1e30f, -1e30f}, {-1e30f, -1e30f}}, l[2][2] = {{0.0f, 0.0f}, {0.0f, 0.0f}};
    float sc2 = scale * AM_LOG2E;
    int k_row = lane & 7, k_col = (lane >> 3) * 8;
    int v_row = (lane & 7) + ((lane >> 3) & 1) * 8, v_col = (lane >> 4) * 8;
    for (int c0 = 0; c0 < T; c0 += KS) {
        if (c0 > 0) __syncthreads();  // every warp is done with the last chunk
        for (int h0 = 0; h0 < KS; h0 += KH) {
            if (vec) {
                for (int x = threadIdx.x; x < KH * (D / 8); x += blockDim.x) {
                    int t = h0 + x / (D / 8), d = (x % (D / 8)) * 8;
                    bool in = c0 + t < T;
                    fa_cp16(&ks[t][d], in ? kb + (long long)(c0 + t) * kr + d : kb, in ? 16 : 0);
                }
            } else {
                for (int x = threadIdx.x; x < KH * D; x += blockDim.x) {
                    int t = h0 + x / D, d = x % D;
                    ks[t][d] = c0 + t < T ? kb[(long long)(c0 + t) * kr + d * kc] : (kiln_half)0;
                }
            }
#if __CUDA_ARCH__ >= 800
            asm volatile("cp.async.commit_group;" ::: "memory");
#endif
        }
        if (shared_mask) {
            for (int x = threadIdx.x; x < KS; x += blockDim.x) {
                msk[x] = c0 + x < T ? ldf(mb, (long long)(c0 + x) * mj) * AM_LOG2E : 0.0f;
            }
        }
        if (c0 == 0) {
            // Q (in vs) and K (its first half, PIPE) are here: Q's
            // fragments, then vs is free for V
#if __CUDA_ARCH__ >= 800
            if (PIPE) {
                asm volatile("cp.async.wait_group 1;" ::: "memory");
            } else {
                asm volatile("cp.async.wait_group 0;" ::: "memory");
            }
#endif
            __syncthreads();
            if (active) {
#pragma unroll
                for (int i = 0; i < 2; i++)
#pragma unroll
                    for (int t = 0; t < D / 16; t++) fa_ldsm4(qf[i][t], &vs[warp * 32 + 16 * i + v_row][t * 16 + v_col]);
            }
            __syncthreads();
        }
        for (int h0 = 0; h0 < KS; h0 += KH) {
            if (vec) {
                for (int x = threadIdx.x; x < KH * (D / 8); x += blockDim.x) {
                    int t = h0 + x / (D / 8), d = (x % (D / 8)) * 8;
                    bool in = c0 + t < T;
                    fa_cp16(&vs[t][d], in ? vb + (long long)(c0 + t) * vr + d : vb, in ? 16 : 0);
                }
            } else {
                for (int x = threadIdx.x; x < KH * D; x += blockDim.x) {
                    int t = h0 + x / D, d = x % D;
                    vs[t][d] = c0 + t < T ? vb[(long long)(c0 + t) * vr + d * vc] : (kiln_half)0;
                }
            }
#if __CUDA_ARCH__ >= 800
            asm volatile("cp.async.commit_group;" ::: "memory");
#endif
        }
        // K (its first half, PIPE; and the mask's stores)
#if __CUDA_ARCH__ >= 800
        if (PIPE) {
            asm volatile("cp.async.wait_group 3;" ::: "memory");
        } else {
            asm volatile("cp.async.wait_group 1;" ::: "memory");
        }
#endif
        __syncthreads();
        for (int p = 0; p < KS && c0 + p < T; p += KP) {
            float s[2][KP / 8][4];
            float f[2][2] = {{1.0f, 1.0f}, {1.0f, 1.0f}};
            if (active) {
#pragma unroll
                for (int n = 0; n < KP / 8; n++) {
#pragma unroll
                    for (int i = 0; i < 2; i++) s[i][n][0] = s[i][n][1] = s[i][n][2] = s[i][n][3] = 0.0f;
#pragma unroll
                    for (int t = 0; t < D / 16; t += 2) {
                        unsigned b[4];
                        fa_ldsm4(b, &ks[p + n * 8 + k_row][t * 16 + k_col]);
#pragma unroll
                        for (int i = 0; i < 2; i++) {
                            am_mma(s[i][n], qf[i][t], b[0], b[1]);
                            am_mma(s[i][n], qf[i][t + 1], b[2], b[3]);
                        }
                    }
                }
#pragma unroll
                for (int i = 0; i < 2; i++) {
                    float x0 = -1e30f, x1 = -1e30f;
#pragma unroll
                    for (int n = 0; n < KP / 8; n++) {
#pragma unroll
                        for (int e = 0; e < 4; e++) {
                            int kk = p + n * 8 + 2 * tg + (e & 1), key = c0 + kk;
                            float val = s[i][n][e] * sc2;
                            if (key >= T) {
                                val = -KILN_INF;
                            } else if (shared_mask) {
                                val += msk[kk];
                            } else if (mb) {
                                // the thread's row of (m-tile i, half e >> 1)
                                int row = min(r0 + 16 * i + 8 * (e >> 1) + g, S - 1);
                                val += ldf(mb, (long long)row * mi + (long long)key * mj) * AM_LOG2E;
                            }
                            s[i][n][e] = val;
                        }
                        x0 = fmaxf(x0, fmaxf(s[i][n][0], s[i][n][1]));
                        x1 = fmaxf(x1, fmaxf(s[i][n][2], s[i][n][3]));
                    }
                    x0 = fmaxf(x0, __shfl_xor_sync(0xffffffff, x0, 1));
                    x0 = fmaxf(x0, __shfl_xor_sync(0xffffffff, x0, 2));
                    x1 = fmaxf(x1, __shfl_xor_sync(0xffffffff, x1, 1));
                    x1 = fmaxf(x1, __shfl_xor_sync(0xffffffff, x1, 2));
                    float n0 = fmaxf(m[i][0], x0), n1 = fmaxf(m[i][1], x1);
                    f[i][0] = exp2f(m[i][0] - n0);
                    f[i][1] = exp2f(m[i][1] - n1);
                    m[i][0] = n0;
                    m[i][1] = n1;
                    l[i][0] *= f[i][0];
                    l[i][1] *= f[i][1];
#pragma unroll
                    for (int n = 0; n < KP / 8; n++) {
                        s[i][n][0] = exp2f(s[i][n][0] - n0);
                        s[i][n][1] = exp2f(s[i][n][1] - n0);
                        s[i][n][2] = exp2f(s[i][n][2] - n1);
                        s[i][n][3] = exp2f(s[i][n][3] - n1);
                        l[i][0] += s[i][n][0] + s[i][n][1];
                        l[i][1] += s[i][n][2] + s[i][n][3];
                    }
                }
            }
            if (p == 0 || (PIPE && p == KS / 2)) {
                // V of this chunk (PIPE: its first half and all of K, then
                // the second half)
#if __CUDA_ARCH__ >= 800
                if (PIPE && p == 0) {
                    asm volatile("cp.async.wait_group 1;" ::: "memory");
                } else {
                    asm volatile("cp.async.wait_group 0;" ::: "memory");
                }
#endif
                __syncthreads();
            }
            if (!active) continue;
            // rescaled only when a row's maximum grew (pieces of 16 keys:
            // after the first few it rarely does)
            if (__any_sync(0xffffffff, f[0][0] != 1.0f || f[0][1] != 1.0f || f[1][0] != 1.0f || f[1][1] != 1.0f)) {
#pragma unroll
                for (int i = 0; i < 2; i++)
#pragma unroll
                    for (int n = 0; n < D / 8; n++) {
                        o[i][n][0] *= f[i][0];
                        o[i][n][1] *= f[i][0];
                        o[i][n][2] *= f[i][1];
                        o[i][n][3] *= f[i][1];
                    }
            }
#pragma unroll
            for (int t = 0; t < KP / 16; t++) {
                unsigned a[2][4];
#pragma unroll
                for (int i = 0; i < 2; i++) {
                    a[i][0] = am_pack(s[i][2 * t][0], s[i][2 * t][1]);
                    a[i][1] = am_pack(s[i][2 * t][2], s[i][2 * t][3]);
                    a[i][2] = am_pack(s[i][2 * t + 1][0], s[i][2 * t + 1][1]);
                    a[i][3] = am_pack(s[i][2 * t + 1][2], s[i][2 * t + 1][3]);
                }
#pragma unroll
                for (int n = 0; n < D / 8; n += 2) {
                    unsigned b[4];
                    fa_ldsm4t(b, &vs[p + t * 16 + v_row][n * 8 + v_col]);
#pragma unroll
                    for (int i = 0; i < 2; i++) {
                        am_mma(o[i][n], a[i], b[0], b[1]);
                        am_mma(o[i][n + 1], a[i], b[2], b[3]);
                    }
                }
            }
        }
    }
    long long yr = st[14], yc = st[15];
    bool dense = yc == 1 && (yr & 7) == 0 && (((unsigned long long)yb & 15) == 0);
#if __CUDA_ARCH__ >= 800
    // copies of keys past T (zeros) the loop did not wait for (PIPE)
    asm volatile("cp.async.wait_group 0;" ::: "memory");
#endif
    if (dense) __syncthreads();  // every warp is done with ks
    if (!active) return;
    float inv[2][2];
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            float x = l[i][h];
            x += __shfl_xor_sync(0xffffffff, x, 1);
            x += __shfl_xor_sync(0xffffffff, x, 2);
            inv[i][h] = 1.0f / x;
        }
    if (dense) {
        // through the warp's 32 rows of ks, then 16 bytes a lane
        kiln_half(*ow)[D + 8] = ks + warp * 32;
#pragma unroll
        for (int i = 0; i < 2; i++)
#pragma unroll
            for (int n = 0; n < D / 8; n++) {
                int c = n * 8 + 2 * tg;
                *(unsigned *)&ow[16 * i + g][c] = am_pack(o[i][n][0] * inv[i][0], o[i][n][1] * inv[i][0]);
                *(unsigned *)&ow[16 * i + 8 + g][c] = am_pack(o[i][n][2] * inv[i][1], o[i][n][3] * inv[i][1]);
            }
        __syncwarp();
#pragma unroll
        for (int x = lane; x < 32 * (D / 8); x += 32) {
            int t = x / (D / 8), d = (x % (D / 8)) * 8;
            if (r0 + t < S) *(uint4 *)&yb[(long long)(r0 + t) * yr + d] = *(const uint4 *)&ow[t][d];
        }
        return;
    }
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            int row = r0 + 16 * i + 8 * h + g;
            if (row >= S) continue;
#pragma unroll
            for (int n = 0; n < D / 8; n++) {
                int c = n * 8 + 2 * tg;
                yb[row * yr + c * yc] = f2h(o[i][n][2 * h] * inv[i][h]);
                yb[row * yr + (c + 1) * yc] = f2h(o[i][n][2 * h + 1] * inv[i][h]);
            }
        }
}
extern "C" __global__ void __launch_bounds__(128, 3)
    attention_mma_fw_d32_f16(kiln_half *y, const kiln_half *q, const kiln_half *k, const kiln_half *v,
                             const kiln_half *mask, const long long *meta, const long long *st, int S, int T, int H,
                             float scale) {
    KILN_PDL_WAIT();
    attention_fw_t<32, 32, false>(y, q, k, v, mask, meta, st, S, T, H, scale);
}
extern "C" __global__ void __launch_bounds__(128, 3)
    attention_mma_fw_d64_f16(kiln_half *y, const kiln_half *q, const kiln_half *k, const kiln_half *v,
                             const kiln_half *mask, const long long *meta, const long long *st, int S, int T, int H,
                             float scale) {
    KILN_PDL_WAIT();
    attention_fw_t<64, 16, false>(y, q, k, v, mask, meta, st, S, T, H, scale);
}

// attention_mma_fw with K and V each copied in two commit groups of 64
// keys (PIPE): a block waits for Q and the first 64 keys of K before its
// first product, for the first half of V before its first P*V, and for
// the second half only at key 64.
extern "C" __global__ void __launch_bounds__(128, 3)
    attention_mma_fw2_d32_f16(kiln_half *y, const kiln_half *q, const kiln_half *k, const kiln_half *v,
                              const kiln_half *mask, const long long *meta, const long long *st, int S, int T,
                              int H, float scale) {
    KILN_PDL_WAIT();
    attention_fw_t<32, 32, true>(y, q, k, v, mask, meta, st, S, T, H, scale);
}
extern "C" __global__ void __launch_bounds__(128, 3)
    attention_mma_fw2_d64_f16(kiln_half *y, const kiln_half *q, const kiln_half *k, const kiln_half *v,
                              const kiln_half *mask, const long long *meta, const long long *st, int S, int T,
                              int H, float scale) {
    KILN_PDL_WAIT();
    attention_fw_t<64, 16, true>(y, q, k, v, mask, meta, st, S, T, H, scale);
}
