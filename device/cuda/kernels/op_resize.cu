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
