// Linear and cubic Resize of the last two dims (package gpuexec,
// op_resize.go), float32 and binary16 (computed in float32): x [NC, H, W]
// to y [NC, OH, OW]. The host computes, per output row and column, the
// input indices (clamped) and weights of its taps (TH per row, TW per
// column), with every coordinate transformation of ONNX Resize; the kernel
// sums the TH x TW products. idx = {rows[OH*TH], cols[OW*TW]}, wt likewise.
template <typename T>
__device__ void resize_taps_t(T *y, const T *x, const long long *idx, const float *wt, long long NC, int H, int W,
                              int OH, int OW, int TH, int TW) {
    long long total = NC * OH * OW;
    GRID_STRIDE(i, total) {
        int ow = (int)(i % OW);
        int oh = (int)((i / OW) % OH);
        long long nc = i / ((long long)OW * OH);
        const long long *ri = idx + (long long)oh * TH, *ci = idx + (long long)OH * TH + (long long)ow * TW;
        const float *rw = wt + (long long)oh * TH, *cw = wt + (long long)OH * TH + (long long)ow * TW;
        float acc = 0.0f;
        for (int a = 0; a < TH; a++) {
            float row = 0.0f;
            const long long base = (nc * H + ri[a]) * W;
            for (int b = 0; b < TW; b++) row += cw[b] * (float)kld(x, base + ci[b]);
            acc += rw[a] * row;
        }
        kst(y, i, acc);
    }
}
#define KILN_RESIZE(sfx, T)                                                                                    \
    extern "C" __global__ void resize_taps_##sfx(T *y, const T *x, const long long *idx, const float *wt,      \
                                                 long long NC, int H, int W, int OH, int OW, int TH, int TW) {  \
        resize_taps_t(y, x, idx, wt, NC, H, W, OH, OW, TH, TW);                                                \
    }
KILN_RESIZE(f32, float)
KILN_RESIZE(f16, kh)

// GridSample of 4-D x [N, C, H, W] at grid [N, OH, OW, 2] (x, then y, in
// [-1, 1]) into y [N, C, OH, OW]: mode 0 nearest, 1 linear, 2 cubic (a =
// -0.75); padding 0 zeros, 1 border, 2 reflection; align_corners.
__device__ float gs_reflect(float x, float lo, float hi) {
    float rng = hi - lo;
    if (rng <= 0.0f) return lo;
    if (x < lo) {
        float dx = lo - x, n = floorf(dx / rng), r = dx - n * rng;
        return fmodf(n, 2.0f) == 0.0f ? lo + r : hi - r;
    }
    if (x > hi) {
        float dx = x - hi, n = floorf(dx / rng), r = dx - n * rng;
        return fmodf(n, 2.0f) == 0.0f ? hi - r : lo + r;
    }
    return x;
}

__device__ int gs_pixel(int i, int size, float lo, float hi, int pad) {
    if (pad == 0) return (i < 0 || i >= size) ? -1 : i;
    if (pad == 1) return min(max(i, 0), size - 1);
    int j = (int)gs_reflect((float)i, lo, hi);
    return min(max(j, 0), size - 1);
}

__device__ float gs_cubic(float x) {
    const float a = -0.75f;
    x = fabsf(x);
    if (x <= 1.0f) return ((a + 2.0f) * x - (a + 3.0f)) * x * x + 1.0f;
    if (x < 2.0f) return ((a * x - 5.0f * a) * x + 8.0f * a) * x - 4.0f * a;
    return 0.0f;
}

// gs_taps writes the input indices (-1: a zero) and weights that sample
// normalized coordinate v along an axis of length size; returns their count.
__device__ int gs_taps(float v, int size, int mode, int pad, int align, int *idx, float *w) {
    float s = (float)size;
    float x = align ? (v + 1.0f) / 2.0f * (s - 1.0f) : ((v + 1.0f) * s - 1.0f) / 2.0f;
    float lo = align ? 0.0f : -0.5f, hi = align ? s - 1.0f : s - 0.5f;
    if (mode == 0) x = rintf(x);
    if (x < lo || x > hi) {
        if (pad == 1) x = fminf(fmaxf(x, 0.0f), s - 1.0f);
        else if (pad == 2) x = gs_reflect(x, lo, hi);
    }
    if (isnan(x) || isinf(x)) {
        idx[0] = -1;
        w[0] = 0.0f;
        return 1;
    }
    if (mode == 0) {
        idx[0] = gs_pixel((int)x, size, lo, hi, pad);
        w[0] = 1.0f;
        return 1;
    }
    float f = floorf(x), t = x - f;
    int i = (int)f;
    if (mode == 1) {
        idx[0] = gs_pixel(i, size, lo, hi, pad);
        w[0] = 1.0f - t;
        idx[1] = gs_pixel(i + 1, size, lo, hi, pad);
        w[1] = t;
        return 2;
    }
    for (int j = -1; j <= 2; j++) {
        idx[j + 1] = gs_pixel(i + j, size, lo, hi, pad);
        w[j + 1] = gs_cubic(t - (float)j);
    }
    return 4;
}

template <typename T>
__device__ void grid_sample_t(T *y, const T *x, const T *grid, int N, int C, int H, int W, int OH, int OW, int mode,
                              int pad, int align) {
    long long total = (long long)N * C * OH * OW;
    GRID_STRIDE(i, total) {
        int ow = (int)(i % OW);
        int oh = (int)((i / OW) % OH);
        int c = (int)((i / ((long long)OW * OH)) % C);
        int n = (int)(i / ((long long)OW * OH * C));
        long long g = (((long long)n * OH + oh) * OW + ow) * 2;
        int hi[4], wi[4];
        float hw[4], ww[4];
        int nh = gs_taps((float)kld(grid, g + 1), H, mode, pad, align, hi, hw);
        int nw = gs_taps((float)kld(grid, g), W, mode, pad, align, wi, ww);
        const long long base = ((long long)n * C + c) * H * W;
        float acc = 0.0f;
        for (int a = 0; a < nh; a++) {
            if (hi[a] < 0 || hw[a] == 0.0f) continue;
            for (int b = 0; b < nw; b++) {
                if (wi[b] < 0 || ww[b] == 0.0f) continue;
                acc += hw[a] * ww[b] * (float)kld(x, base + (long long)hi[a] * W + wi[b]);
            }
        }
        kst(y, i, acc);
    }
}
#define KILN_GRID_SAMPLE(sfx, T)                                                                               \
    extern "C" __global__ void grid_sample_##sfx(T *y, const T *x, const T *grid, int N, int C, int H, int W,   \
                                                 int OH, int OW, int mode, int pad, int align) {               \
        grid_sample_t(y, x, grid, N, C, H, W, OH, OW, mode, pad, align);                                       \
    }
KILN_GRID_SAMPLE(f32, float)
KILN_GRID_SAMPLE(f16, kh)
