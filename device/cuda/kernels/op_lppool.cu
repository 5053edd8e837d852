// LpPool and GlobalLpPool (package gpuexec, op_lppool.go), float32 and
// binary16 (computed in float32): y = (sum of |x|^p over the window)^(1/p),
// padding adding nothing. Uses op.cu's helpers.

__device__ __forceinline__ float kiln_lp_term(float v, float p) {
    v = fabsf(v);
    return p == 2.0f ? v * v : (p == 1.0f ? v : powf(v, p));
}

__device__ __forceinline__ float kiln_lp_root(float s, float p) {
    return p == 2.0f ? sqrtf(s) : (p == 1.0f ? s : powf(s, 1.0f / p));
}

// lppool2d: x [NC, H, W] to y [NC, OH, OW] (1-D pooling as H = 1), the
// window's pads, strides and dilations as pool2d's.
template <typename T>
__device__ void lppool2d_t(T *y, const T *x, long long NC, int H, int W, int OH, int OW, int KH, int KW, int SH,
                           int SW, int PH, int PW, int DH, int DW, float p) {
    long long total = NC * OH * OW;
    GRID_STRIDE(i, total) {
        int ow = (int)(i % OW);
        int oh = (int)((i / OW) % OH);
        long long nc = i / ((long long)OW * OH);
        float acc = 0.0f;
        for (int kh = 0; kh < KH; kh++) {
            int ih = oh * SH - PH + kh * DH;
            if (ih < 0 || ih >= H) continue;
            for (int kw = 0; kw < KW; kw++) {
                int iw = ow * SW - PW + kw * DW;
                if (iw < 0 || iw >= W) continue;
                acc += kiln_lp_term((float)kld(x, (nc * H + ih) * W + iw), p);
            }
        }
        kst(y, i, kiln_lp_root(acc, p));
    }
}

// global_lppool: one block per row of x [rows, cols].
template <typename T> __device__ void global_lppool_t(T *y, const T *x, long long rows, long long cols, float p) {
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
        float s = 0.0f;
        for (long long j = threadIdx.x; j < cols; j += blockDim.x) s += kiln_lp_term((float)kld(x, r * cols + j), p);
        s = kiln_block_reduce(s, 0);
        if (threadIdx.x == 0) kst(y, r, kiln_lp_root(s, p));
    }
}

#define KILN_LPPOOL(sfx, T)                                                                                   \
    extern "C" __global__ void lppool2d_##sfx(T *y, const T *x, long long NC, int H, int W, int OH, int OW,     \
                                              int KH, int KW, int SH, int SW, int PH, int PW, int DH, int DW,   \
                                              float p) {                                                       \
        lppool2d_t(y, x, NC, H, W, OH, OW, KH, KW, SH, SW, PH, PW, DH, DW, p);                                 \
    }                                                                                                         \
    extern "C" __global__ void global_lppool_##sfx(T *y, const T *x, long long rows, long long cols, float p) { \
        global_lppool_t(y, x, rows, cols, p);                                                                  \
    }
KILN_LPPOOL(f32, float)
KILN_LPPOOL(f16, kh)
