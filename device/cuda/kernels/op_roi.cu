// RoiAlign and MaxRoiPool (package gpuexec, op_roi.go), float32 and
// binary16 (computed in float32), one thread per output element of y [R,
// C, OH, OW]. Uses op.cu's helpers.

// kiln_roi_bilinear is x's plane (h, w) sampled at (y, x) as RoiAlign
// samples it (0 outside [-1, h] x [-1, w]); for max mode, the largest of
// the four weighted taps.
template <typename T>
__device__ __forceinline__ float kiln_roi_bilinear(const T *p, int h, int w, float y, float x, int maxmode) {
    if (y < -1.0f || y > (float)h || x < -1.0f || x > (float)w || y != y || x != x) return 0.0f;
    y = fmaxf(y, 0.0f);
    x = fmaxf(x, 0.0f);
    int yl = (int)y, xl = (int)x, yh, xh;
    if (yl >= h - 1) {
        yl = yh = h - 1;
        y = (float)yl;
    } else {
        yh = yl + 1;
    }
    if (xl >= w - 1) {
        xl = xh = w - 1;
        x = (float)xl;
    } else {
        xh = xl + 1;
    }
    float ly = y - yl, lx = x - xl, hy = 1.0f - ly, hx = 1.0f - lx;
    float a = hy * hx * (float)kld(p, (long long)yl * w + xl), b = hy * lx * (float)kld(p, (long long)yl * w + xh);
    float c = ly * hx * (float)kld(p, (long long)yh * w + xl), d = ly * lx * (float)kld(p, (long long)yh * w + xh);
    if (maxmode) return fmaxf(fmaxf(a, b), fmaxf(c, d));
    return a + b + c + d;
}

// roialign: rois [R, 4] (x1, y1, x2, y2), batch [R] int64; offset is 0.5
// for half_pixel (then regions may be smaller than a pixel), 0 for
// output_half_pixel; sampling 0 takes ceil(bin size) samples a bin.
template <typename T>
__device__ void roialign_t(T *y, const T *x, const T *rois, const long long *batch, long long R, int N, int C, int H,
                           int W, int OH, int OW, int sampling, float scale, float offset, int maxmode) {
    long long total = R * C * OH * OW;
    GRID_STRIDE(i, total) {
        int ow = (int)(i % OW), oh = (int)((i / OW) % OH), c = (int)((i / ((long long)OW * OH)) % C);
        long long r = i / ((long long)OW * OH * C);
        float x0 = (float)kld(rois, 4 * r) * scale - offset, y0 = (float)kld(rois, 4 * r + 1) * scale - offset;
        float x1 = (float)kld(rois, 4 * r + 2) * scale - offset, y1 = (float)kld(rois, 4 * r + 3) * scale - offset;
        float rw = x1 - x0, rh = y1 - y0;
        if (offset == 0.0f) {
            rw = fmaxf(rw, 1.0f);
            rh = fmaxf(rh, 1.0f);
        }
        float bh = rh / OH, bw = rw / OW;
        int gh = sampling, gw = sampling;
        if (sampling == 0) {
            gh = (int)fminf(fmaxf(ceilf(bh), 0.0f), 4096.0f);
            gw = (int)fminf(fmaxf(ceilf(bw), 0.0f), 4096.0f);
        }
        long long b = batch[r];
        if (b < 0 || b >= N) { // the CPU refuses such an index; never read outside x
            kst(y, i, 0.0f);
            continue;
        }
        const T *p = x + (b * C + c) * (long long)H * W;
        float acc = 0.0f;
        for (int iy = 0; iy < gh; iy++) {
            float yy = y0 + oh * bh + (iy + 0.5f) * bh / gh;
            for (int ix = 0; ix < gw; ix++) {
                float xx = x0 + ow * bw + (ix + 0.5f) * bw / gw;
                float v = kiln_roi_bilinear(p, H, W, yy, xx, maxmode);
                if (!maxmode) acc += v;
                else if ((iy == 0 && ix == 0) || v > acc) acc = v;
            }
        }
        if (!maxmode) acc /= (float)max(gh * gw, 1);
        kst(y, i, acc);
    }
}

// maxroipool: rois [R, 5] (batch index, x1, y1, x2, y2), corners rounded
// after scaling; an empty bin is 0.
template <typename T>
__device__ void maxroipool_t(T *y, const T *x, const T *rois, long long R, int N, int C, int H, int W, int PH, int PW,
                             float scale) {
    long long total = R * C * PH * PW;
    GRID_STRIDE(i, total) {
        int j = (int)(i % PW), k = (int)((i / PW) % PH), c = (int)((i / ((long long)PW * PH)) % C);
        long long r = i / ((long long)PW * PH * C);
        long long b = (long long)(float)kld(rois, 5 * r);
        int x1 = (int)roundf((float)kld(rois, 5 * r + 1) * scale), y1 = (int)roundf((float)kld(rois, 5 * r + 2) * scale);
        int x2 = (int)roundf((float)kld(rois, 5 * r + 3) * scale), y2 = (int)roundf((float)kld(rois, 5 * r + 4) * scale);
        int rh = max(y2 - y1 + 1, 1), rw = max(x2 - x1 + 1, 1);
        float bh = (float)rh / PH, bw = (float)rw / PW;
        int hs = min(max((int)floorf(k * bh) + y1, 0), H), he = min(max((int)ceilf((k + 1) * bh) + y1, 0), H);
        int ws = min(max((int)floorf(j * bw) + x1, 0), W), we = min(max((int)ceilf((j + 1) * bw) + x1, 0), W);
        float m = 0.0f;
        if (he > hs && we > ws && b >= 0 && b < N) { // (the CPU refuses a batch index out of range)
            const T *p = x + (b * C + c) * (long long)H * W;
            m = -KILN_INF;
            for (int yy = hs; yy < he; yy++)
                for (int xx = ws; xx < we; xx++) m = fmaxf(m, (float)kld(p, (long long)yy * W + xx));
        }
        kst(y, i, m);
    }
}

#define KILN_ROI(sfx, T)                                                                                      \
    extern "C" __global__ void roialign_##sfx(T *y, const T *x, const T *rois, const long long *batch, long long R, \
                                              int N, int C, int H, int W, int OH, int OW, int sampling,        \
                                              float scale, float offset, int maxmode) {                        \
        roialign_t(y, x, rois, batch, R, N, C, H, W, OH, OW, sampling, scale, offset, maxmode);                \
    }                                                                                                         \
    extern "C" __global__ void maxroipool_##sfx(T *y, const T *x, const T *rois, long long R, int N, int C, int H, \
                                                int W, int PH, int PW, float scale) {                          \
        maxroipool_t(y, x, rois, R, N, C, H, W, PH, PW, scale);                                                \
    }
KILN_ROI(f32, float)
KILN_ROI(f16, kh)
