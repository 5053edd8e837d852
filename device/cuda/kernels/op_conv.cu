// ConvTranspose, 1-D and 2-D (package gpuexec, op_conv.go), float32 and
// binary16 (computed in float32): one thread per output element gathers
// the inputs that scatter into it. x [N, C, H, W], w [C, M/group, KH, KW],
// y [N, M, OH, OW]; output row oh is full-result row oh + ph, which input
// row ih reaches through kernel row kh when ih*sh + kh*dh = oh + ph.
template <typename T>
__device__ void conv_transpose2d_t(T *y, const T *x, const T *w, const T *bias, int N, int C, int H, int W, int M,
                                   int OH, int OW, int KH, int KW, int SH, int SW, int PH, int PW, int DH, int DW,
                                   int group) {
    long long total = (long long)N * M * OH * OW;
    int cg = C / group, mg = M / group;
    GRID_STRIDE(i, total) {
        int ow = (int)(i % OW);
        int oh = (int)((i / OW) % OH);
        int m = (int)((i / ((long long)OW * OH)) % M);
        int n = (int)(i / ((long long)OW * OH * M));
        int g = m / mg, mo = m % mg;
        float acc = bias ? (float)kld(bias, m) : 0.0f;
        for (int kh = 0; kh < KH; kh++) {
            int th = oh + PH - kh * DH;
            if (th < 0 || th % SH != 0) continue;
            int ih = th / SH;
            if (ih >= H) continue;
            for (int kw = 0; kw < KW; kw++) {
                int tw = ow + PW - kw * DW;
                if (tw < 0 || tw % SW != 0) continue;
                int iw = tw / SW;
                if (iw >= W) continue;
                for (int c = 0; c < cg; c++) {
                    int ci = g * cg + c;
                    acc += (float)kld(x, (((long long)n * C + ci) * H + ih) * W + iw) *
                           (float)kld(w, (((long long)ci * mg + mo) * KH + kh) * KW + kw);
                }
            }
        }
        kst(y, i, acc);
    }
}
#define KILN_CONVT(sfx, T)                                                                                    \
    extern "C" __global__ void conv_transpose2d_##sfx(T *y, const T *x, const T *w, const T *bias, int N, int C, \
                                                      int H, int W, int M, int OH, int OW, int KH, int KW, int SH, \
                                                      int SW, int PH, int PW, int DH, int DW, int group) {       \
        conv_transpose2d_t(y, x, w, bias, N, C, H, W, M, OH, OW, KH, KW, SH, SW, PH, PW, DH, DW, group);        \
    }
KILN_CONVT(f32, float)
KILN_CONVT(f16, kh)
