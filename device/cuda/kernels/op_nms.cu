// NonMaxSuppression (package gpuexec, op_nms.go): boxes [batches, n, 4],
// scores [batches, classes, n]; per (batch, class) the candidates (score
// above the threshold, when there is one) in descending score order, equal
// scores in index order, and greedily the boxes that overlap no box kept
// before by more than the IoU threshold, at most max_output_boxes_per_class
// of them, as kiln's CPU kernel selects them (IoU in double precision, each
// product and sum rounded on its own, as Go computes it). The steps:
//
//   nms_setup    the parameters (constants or the runtime inputs) into p,
//                counters zeroed
//   nms_rank     each candidate's rank: how many candidates come before it
//                (one block per 128 candidates and slice of the others)
//   nms_scatter  sorted[rank] = index
//   nms_mask     for each pair i < j of sorted candidates, whether j
//                overlaps i by more than the threshold: bit j%64 of word
//                j/64 of row i (64 x 64 pairs a block)
//   nms_reduce   one block per (batch, class): 64 candidates at a time, those
//                not suppressed kept in order, their rows ORed into the
//                suppressed set
//   nms_compact  the kept boxes as rows [batch, class, index] of the int64
//                output, batches then classes in order, and their count
//
// p (int64 words): 0 max boxes per class, 1 the IoU threshold (double bits),
// 2 the score threshold (double bits), 3 whether there is one.

#define NMS_RANK_THREADS 128
#define NMS_RANK_SPLIT 2048 // candidates j each rank block compares with
#define NMS_MAX_WORDS 512   // words of a mask row: at most 32768 boxes
#define NMS_THREADS 256

// nms_scalar reads a threshold: the constant c (kind 0), or element 0 of a
// runtime float32 (1), binary16 (2) or float64 (3) tensor.
__device__ __forceinline__ double nms_scalar(const void *v, int kind, float c) {
    switch (kind) {
    case 1: return (double)((const float *)v)[0];
    case 2: return (double)h2f(((const kh *)v)[0].v);
    case 3: return ((const double *)v)[0];
    }
    return (double)c;
}

// nms_setup writes p and zeroes the counters: rank [bcn] and ncand, kcnt
// [bc] and the output's count.
extern "C" __global__ void nms_setup(long long *p, const long long *maxp, long long maxc, const void *iou, int iouk,
                                     float iouc, const void *st, int stk, float stc, int use_score, int *rank,
                                     long long bcn, int *ncand, int *kcnt, long long bc, long long *count) {
    long long i0 = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long step = (long long)gridDim.x * blockDim.x;
    if (i0 == 0) {
        long long m = maxp ? maxp[0] : maxc;
        p[0] = m > 0 ? m : 0;
        p[1] = __double_as_longlong(nms_scalar(iou, iouk, iouc));
        p[2] = __double_as_longlong(nms_scalar(st, stk, stc));
        p[3] = use_score;
        *count = 0;
    }
    for (long long i = i0; i < bcn; i += step) rank[i] = 0;
    for (long long i = i0; i < bc; i += step) {
        ncand[i] = 0;
        kcnt[i] = 0;
    }
}

// nms_key orders candidates: a larger key comes first; -0 is +0, so that
// equal scores keep index order. NaN is not a candidate of a threshold
// test; without one it sorts before every number.
__device__ __forceinline__ unsigned long long nms_key(double s) {
    s = s + 0.0;
    unsigned long long u = (unsigned long long)__double_as_longlong(s);
    return (u >> 63) ? ~u : (u | 0x8000000000000000ull);
}

// nms_cand is the key of score s, or 0 when it is no candidate (a real key
// is never 0: NaN and -inf included).
__device__ __forceinline__ unsigned long long nms_cand(double s, const long long *p) {
    if (p[3] && !(s > __longlong_as_double(p[2]))) {
        return 0;
    }
    return nms_key(s);
}

// nms_rank: grid (candidate blocks, classes, slices of NMS_RANK_SPLIT).
template <typename T>
__device__ void nms_rank_t(const T *scores, const long long *p, int *rank, int *ncand, long long n) {
    __shared__ unsigned long long sk[NMS_RANK_THREADS];
    long long bc = blockIdx.y;
    const T *s = scores + bc * n;
    long long i = (long long)blockIdx.x * NMS_RANK_THREADS + threadIdx.x;
    unsigned long long ki = i < n ? nms_cand((double)kld(s, i), p) : 0;
    if (blockIdx.z == 0 && ki != 0) {
        atomicAdd(&ncand[bc], 1);
    }
    long long j0 = (long long)blockIdx.z * NMS_RANK_SPLIT, j1 = min(j0 + NMS_RANK_SPLIT, n);
    int r = 0;
    for (long long t0 = j0; t0 < j1; t0 += NMS_RANK_THREADS) {
        long long j = t0 + threadIdx.x;
        sk[threadIdx.x] = j < j1 ? nms_cand((double)kld(s, j), p) : 0;
        __syncthreads();
        long long m = min((long long)NMS_RANK_THREADS, j1 - t0);
        if (ki != 0) {
            for (int q = 0; q < m; q++) {
                unsigned long long kj = sk[q];
                r += kj > ki || (kj == ki && t0 + q < i);
            }
        }
        __syncthreads();
    }
    if (ki != 0 && r > 0) {
        atomicAdd(&rank[bc * n + i], r);
    }
}

#define KILN_NMS(sfx, T)                                                                                       \
    extern "C" __global__ void nms_rank_##sfx(const T *scores, const long long *p, int *rank, int *ncand,      \
                                              long long n) {                                                   \
        nms_rank_t<T>(scores, p, rank, ncand, n);                                                              \
    }                                                                                                          \
    extern "C" __global__ void nms_scatter_##sfx(const T *scores, const long long *p, const int *rank,         \
                                                 int *sorted, long long n, long long bc) {                     \
        GRID_STRIDE(i, bc * n) {                                                                               \
            if (nms_cand((double)kld(scores, i), p) != 0) {                                                    \
                sorted[(i / n) * n + rank[i]] = (int)(i % n);                                                  \
            }                                                                                                  \
        }                                                                                                      \
    }                                                                                                          \
    extern "C" __global__ void nms_mask_##sfx(const T *boxes, const long long *p, const int *sorted,           \
                                              const int *ncand, unsigned long long *mask, long long n,         \
                                              long long classes, long long bc0, int center) {                  \
        nms_mask_t<T>(boxes, p, sorted, ncand, mask, n, classes, bc0, center);                                 \
    }

// nms_box is a box as the CPU kernel holds it: y0, x0, y1, x1.
struct nms_box {
    double y0, x0, y1, x1;
};

template <typename T> __device__ __forceinline__ nms_box nms_load(const T *b, long long i, int center) {
    double c0 = (double)kld(b, 4 * i), c1 = (double)kld(b, 4 * i + 1), c2 = (double)kld(b, 4 * i + 2),
           c3 = (double)kld(b, 4 * i + 3);
    nms_box r;
    if (center) {
        double hw = c2 / 2, hh = c3 / 2;
        r.y0 = __dsub_rn(c1, hh);
        r.x0 = __dsub_rn(c0, hw);
        r.y1 = __dadd_rn(c1, hh);
        r.x1 = __dadd_rn(c0, hw);
    } else {
        r.y0 = fmin(c0, c2);
        r.x0 = fmin(c1, c3);
        r.y1 = fmax(c0, c2);
        r.x1 = fmax(c1, c3);
    }
    return r;
}

__device__ __forceinline__ double nms_area(nms_box b) { return __dmul_rn(__dsub_rn(b.x1, b.x0), __dsub_rn(b.y1, b.y0)); }

// nms_suppresses is the CPU kernel's test: IoU of a and b above thr.
__device__ __forceinline__ bool nms_suppresses(nms_box a, nms_box b, double thr) {
    double ix0 = fmax(a.x0, b.x0), ix1 = fmin(a.x1, b.x1);
    if (ix1 <= ix0) {
        return false;
    }
    double iy0 = fmax(a.y0, b.y0), iy1 = fmin(a.y1, b.y1);
    if (iy1 <= iy0) {
        return false;
    }
    double inter = __dmul_rn(__dsub_rn(ix1, ix0), __dsub_rn(iy1, iy0));
    double a1 = nms_area(a), a2 = nms_area(b);
    double uni = __dsub_rn(__dadd_rn(a1, a2), inter);
    if (inter <= 0 || a1 <= 0 || a2 <= 0 || uni <= 0) {
        return false;
    }
    return __ddiv_rn(inter, uni) > thr;
}

// nms_mask: grid (column blocks, row blocks, classes of this group), 64
// threads; rows of class bc0 + z at mask + z * n * words.
template <typename T>
__device__ void nms_mask_t(const T *boxes, const long long *p, const int *sorted, const int *ncand,
                           unsigned long long *mask, long long n, long long classes, long long bc0, int center) {
    __shared__ nms_box cb[64];
    long long cblk = blockIdx.x, rblk = blockIdx.y, bc = bc0 + blockIdx.z;
    if (cblk < rblk) {
        return;
    }
    long long nc = ncand[bc];
    if (rblk * 64 >= nc) {
        return;
    }
    long long words = (n + 63) / 64;
    const T *b = boxes + (bc / classes) * n * 4;
    const int *srt = sorted + bc * n;
    int t = threadIdx.x;
    long long j = cblk * 64 + t;
    if (j < nc) {
        cb[t] = nms_load(b, srt[j], center);
    }
    __syncthreads();
    long long i = rblk * 64 + t;
    if (i >= nc) {
        return;
    }
    nms_box bi = nms_load(b, srt[i], center);
    double thr = __longlong_as_double(p[1]);
    unsigned long long bits = 0;
    long long m = min((long long)64, nc - cblk * 64);
    for (int q = 0; q < m; q++) {
        long long jj = cblk * 64 + q;
        // the CPU tests a later candidate against a kept one
        if (jj > i && nms_suppresses(cb[q], bi, thr)) {
            bits |= 1ull << q;
        }
    }
    mask[((long long)blockIdx.z * n + i) * words + cblk] = bits;
}

KILN_NMS(f32, float)
KILN_NMS(f16, kh)
KILN_NMS(f64, double)

// nms_reduce: one block (NMS_THREADS) per class of the group; the kept
// boxes' indices to sel [bc, kcap] and their count to kcnt.
extern "C" __global__ void nms_reduce(const long long *p, const int *sorted, const int *ncand,
                                      const unsigned long long *mask, int *sel, int *kcnt, long long n, long long kcap,
                                      long long bc0) {
    __shared__ unsigned long long removed[NMS_MAX_WORDS];
    __shared__ unsigned long long diag[64];
    long long bc = bc0 + blockIdx.x;
    const unsigned long long *rows = mask + (long long)blockIdx.x * n * ((n + 63) / 64);
    long long words = (n + 63) / 64;
    long long nc = ncand[bc];
    long long nw = (nc + 63) / 64;
    long long limit = min(p[0], kcap);
    int t = threadIdx.x;
    for (long long u = t; u < nw; u += blockDim.x) removed[u] = 0;
    if (t < 64) {
        diag[t] = t < nc ? rows[(long long)t * words] : 0;
    }
    __syncthreads();
    long long kept = 0;
    for (long long w = 0; w < nw && kept < limit; w++) {
        unsigned long long cur = removed[w];
        long long left = nc - w * 64;
        unsigned long long valid = left >= 64 ? ~0ull : ((1ull << left) - 1);
        unsigned long long keep = 0;
        long long before = kept;
        unsigned long long avail = ~cur & valid;
        while (avail != 0 && kept < limit) {
            int k = __ffsll((long long)avail) - 1;
            keep |= 1ull << k;
            kept++;
            cur |= diag[k];
            avail = k == 63 ? 0 : (~cur & valid & (~0ull << (k + 1)));
        }
        if (t < 64 && ((keep >> t) & 1)) {
            long long pos = before + __popcll(keep & ((1ull << t) - 1));
            sel[bc * kcap + pos] = sorted[bc * n + w * 64 + t];
        }
        __syncthreads();
        if (kept < limit) {
            for (long long u = w + 1 + t; u < nw; u += blockDim.x) {
                unsigned long long acc = removed[u];
                for (unsigned long long m = keep; m != 0; m &= m - 1) {
                    int k = __ffsll((long long)m) - 1;
                    acc |= rows[(w * 64 + k) * words + u];
                }
                removed[u] = acc;
            }
            if (t < 64 && w + 1 < nw) {
                long long r = (w + 1) * 64 + t;
                diag[t] = r < nc ? rows[r * words + w + 1] : 0;
            }
        }
        __syncthreads();
    }
    if (t == 0) {
        kcnt[bc] = (int)kept;
    }
}

// nms_compact: one block (NMS_THREADS) per class: the rows [batch, class,
// index] of its kept boxes after those of the classes before it; the last
// block writes the count of rows.
extern "C" __global__ void nms_compact(long long *y, long long *count, const int *sel, const int *kcnt,
                                       long long classes, long long bc, long long kcap) {
    __shared__ long long part[NMS_THREADS];
    for (long long k = blockIdx.x; k < bc; k += gridDim.x) {
        long long s = 0;
        for (long long q = threadIdx.x; q < k; q += blockDim.x) s += kcnt[q];
        part[threadIdx.x] = s;
        __syncthreads();
        for (int h = blockDim.x / 2; h > 0; h >>= 1) {
            if (threadIdx.x < h) {
                part[threadIdx.x] += part[threadIdx.x + h];
            }
            __syncthreads();
        }
        long long off = part[0];
        long long m = kcnt[k];
        for (long long q = threadIdx.x; q < m; q += blockDim.x) {
            long long r = (off + q) * 3;
            y[r] = k / classes;
            y[r + 1] = k % classes;
            y[r + 2] = sel[k * kcap + q];
        }
        if (k == bc - 1 && threadIdx.x == 0) {
            *count = off + m;
        }
        __syncthreads();
    }
}
