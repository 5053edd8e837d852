// NHWC kernels of the CUDA executor's layout pass (package gpuexec,
// layout.go): half-precision convolutional networks keep the values between
// convolutions as [N, H, W, C] (cuDNN's tensor-core kernels read that
// without transposing), and these run the layers between them in that
// layout, plus the transposes at the boundaries. Half only (binary16 stored
// as unsigned short, arithmetic in float32).

// Batched transpose: y[b][s][r] = x[b][r][s] for B matrices of R x S
// (NCHW -> NHWC: R = C, S = H*W; NHWC -> NCHW: R = H*W, S = C). When R and
// S are both 32 or more, through a 32x32 tile of shared memory, grid
// (ceil(S/32), ceil(R/32), B), block (32, 8): reads and writes both
// coalesced. Otherwise (an image's 3 channels) one thread per output
// element, grid-stride: the writes coalesced, the reads nearly so.
template <typename TI, typename TO>
__device__ void transpose_tiles_t(TO *y, const TI *x, int B, int R, int S) {
    if (R < 32 || S < 32) {
        long long total = (long long)B * R * S;
        if (total < 0x7fffffffLL) { // 32-bit index arithmetic: several times cheaper
            unsigned int n = (unsigned int)total, uR = R, uS = S;
            for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
                unsigned int r = i % uR, t = i / uR, s = t % uS, b = t / uS;
                stf(y, (long long)i, ldf(x, ((long long)b * R + r) * S + s));
            }
            return;
        }
        GRID_STRIDE(i, total) {
            int r = (int)(i % R);
            long long t = i / R;
            int s = (int)(t % S);
            long long b = t / S;
            stf(y, i, ldf(x, (b * R + r) * S + s));
        }
        return;
    }
    __shared__ float tile[32][33];
    long long b = blockIdx.z;
    const TI *xb = x + b * (long long)R * S;
    TO *yb = y + b * (long long)R * S;
    int s0 = blockIdx.x * 32, r0 = blockIdx.y * 32;
    for (int j = threadIdx.y; j < 32; j += 8) {
        int r = r0 + j, s = s0 + threadIdx.x;
        if (r < R && s < S) tile[j][threadIdx.x] = ldf(xb, (long long)r * S + s);
    }
    __syncthreads();
    for (int j = threadIdx.y; j < 32; j += 8) {
        int s = s0 + j, r = r0 + threadIdx.x;
        if (s < S && r < R) stf(yb, (long long)s * R + r, tile[threadIdx.x][j]);
    }
}

extern "C" __global__ void transpose_tiles_b16(kiln_half *y, const kiln_half *x, int B, int R, int S) {
    transpose_tiles_t(y, x, B, R, S);
}

// The same transpose reading float32 and writing half: a float32 graph
// input converted and laid out NHWC in one pass.
extern "C" __global__ void cast_f32_f16_nhwc(kiln_half *y, const float *x, int B, int R, int S) {
    transpose_tiles_t(y, x, B, R, S);
}

// Direct 2-D convolution in NHWC (one group): x [N, H, W, C], w [M, KH, KW,
// C], y [N, OH, OW, M] = act(conv(x, w) + bias + z), z in y's layout. One
// thread per output; kiln's own tactic where cuDNN is missing or slower.
extern "C" __global__ void conv2d_nhwc_f16(kiln_half *y, const kiln_half *x, const kiln_half *w,
                                           const kiln_half *bias, const kiln_half *z, int N, int C, int H, int W,
                                           int M, int OH, int OW, int KH, int KW, int SH, int SW, int PH, int PW,
                                           int DH, int DW, int act, float p0, float p1) {
    long long total = (long long)N * OH * OW * M;
    GRID_STRIDE(i, total) {
        int m = (int)(i % M);
        long long t = i / M;
        int ow = (int)(t % OW);
        t /= OW;
        int oh = (int)(t % OH);
        int n = (int)(t / OH);
        float acc = bias ? ldf(bias, m) : 0.0f;
        const kiln_half *wm = w + (long long)m * KH * KW * C;
        for (int kh = 0; kh < KH; kh++) {
            int ih = oh * SH - PH + kh * DH;
            if (ih < 0 || ih >= H) continue;
            for (int kw = 0; kw < KW; kw++) {
                int iw = ow * SW - PW + kw * DW;
                if (iw < 0 || iw >= W) continue;
                const kiln_half *xp = x + (((long long)n * H + ih) * W + iw) * C;
                const kiln_half *wp = wm + (kh * KW + kw) * C;
                for (int c = 0; c < C; c++) acc += ldf(xp, c) * ldf(wp, c);
            }
        }
        if (z) acc += ldf(z, i);
        stf(y, i, act_apply(acc, act, p0, p1));
    }
}

// 2-D max (mode 0) or average pooling (mode 1: padding excluded from the
// count, mode 2: included, up to the end pads PEH, PEW) in NHWC: one thread
// per output, the channel fastest, so that neighbouring threads read
// neighbouring channels.
extern "C" __global__ void pool2d_nhwc_f16(kiln_half *y, const kiln_half *x, int N, int C, int H, int W, int OH,
                                           int OW, int KH, int KW, int SH, int SW, int PH, int PW, int DH, int DW,
                                           int PEH, int PEW, int mode) {
    long long total = (long long)N * OH * OW * C;
    GRID_STRIDE(i, total) {
        int c = (int)(i % C);
        long long t = i / C;
        int ow = (int)(t % OW);
        t /= OW;
        int oh = (int)(t % OH);
        long long n = t / OH;
        const kiln_half *xn = x + n * H * W * C + c;
        float acc = mode == 0 ? -KILN_INF : 0.0f;
        int cnt = 0, cntPad = 0;
        for (int kh = 0; kh < KH; kh++) {
            int ih = oh * SH - PH + kh * DH;
            bool inH = ih >= -PH && ih < H + PEH;
            for (int kw = 0; kw < KW; kw++) {
                int iw = ow * SW - PW + kw * DW;
                if (inH && iw >= -PW && iw < W + PEW) cntPad++;
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                float v = ldf(xn, ((long long)ih * W + iw) * C);
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

// pool2d_nhwc_f16 with C a multiple of 8: one thread per 8 channels of an
// output pixel, loading and storing 16 bytes at a time (the rows of an
// NHWC value are 16-byte aligned when C is a multiple of 8), so that the
// index arithmetic is paid once per 8 values.
__device__ __forceinline__ void pool8_one(kiln_half *y, const kiln_half *x, long long i, long long n, int oh, int ow,
                                          int c8, int C, int H, int W, int KH, int KW, int SH, int SW, int PH,
                                          int PW, int DH, int DW, int PEH, int PEW, int mode) {
    const kiln_half *xn = x + n * H * W * C + c8 * 8;
    float acc[8];
#pragma unroll
    for (int k = 0; k < 8; k++) acc[k] = mode == 0 ? -KILN_INF : 0.0f;
    int cnt = 0, cntPad = 0;
    for (int kh = 0; kh < KH; kh++) {
        int ih = oh * SH - PH + kh * DH;
        bool inH = ih >= -PH && ih < H + PEH;
        for (int kw = 0; kw < KW; kw++) {
            int iw = ow * SW - PW + kw * DW;
            if (inH && iw >= -PW && iw < W + PEW) cntPad++;
            if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
            uint4 v = *reinterpret_cast<const uint4 *>(xn + ((long long)ih * W + iw) * C);
            const kiln_half *h = reinterpret_cast<const kiln_half *>(&v);
#pragma unroll
            for (int k = 0; k < 8; k++) {
                float e = h2f(h[k]);
                acc[k] = mode == 0 ? fmaxf(acc[k], e) : acc[k] + e;
            }
            cnt++;
        }
    }
    float div = mode == 1 ? (float)cnt : mode == 2 ? (float)cntPad : 1.0f;
    uint4 out;
    kiln_half *o = reinterpret_cast<kiln_half *>(&out);
#pragma unroll
    for (int k = 0; k < 8; k++) o[k] = f2h(mode == 0 ? acc[k] : (div > 0.0f ? acc[k] / div : 0.0f));
    *reinterpret_cast<uint4 *>(y + i * 8) = out;
}

extern "C" __global__ void pool2d_nhwc8_f16(kiln_half *y, const kiln_half *x, int N, int C, int H, int W, int OH,
                                            int OW, int KH, int KW, int SH, int SW, int PH, int PW, int DH, int DW,
                                            int PEH, int PEW, int mode) {
    int C8 = C >> 3;
    long long total = (long long)N * OH * OW * C8;
    if (total < 0x7fffffffLL) { // 32-bit index arithmetic
        unsigned int tot = (unsigned int)total, uC8 = C8, uOW = OW, uOH = OH;
        for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < tot; i += blockDim.x * gridDim.x) {
            unsigned int c8 = i % uC8, t = i / uC8, ow = t % uOW;
            t /= uOW;
            pool8_one(y, x, i, t / uOH, (int)(t % uOH), (int)ow, (int)c8, C, H, W, KH, KW, SH, SW, PH, PW, DH, DW,
                      PEH, PEW, mode);
        }
        return;
    }
    GRID_STRIDE(i, total) {
        int c8 = (int)(i % C8);
        long long t = i / C8;
        int ow = (int)(t % OW);
        t /= OW;
        pool8_one(y, x, i, t / OH, (int)(t % OH), ow, c8, C, H, W, KH, KW, SH, SW, PH, PW, DH, DW, PEH, PEW, mode);
    }
}

// Global average (mode 0) or max (mode 1) pooling of x [N, HW, C] into y
// [N, C] (which is [N, C, 1, 1] in either layout): one thread per (n, c).
extern "C" __global__ void global_pool_nhwc_f16(kiln_half *y, const kiln_half *x, int N, int HW, int C, int mode) {
    long long total = (long long)N * C;
    GRID_STRIDE(i, total) {
        int c = (int)(i % C);
        long long n = i / C;
        const kiln_half *xn = x + n * HW * C + c;
        float v = mode == 0 ? 0.0f : -KILN_INF;
        for (int p = 0; p < HW; p++) {
            float e = ldf(xn, (long long)p * C);
            v = mode == 0 ? v + e : fmaxf(v, e);
        }
        stf(y, i, mode == 0 ? v / HW : v);
    }
}
