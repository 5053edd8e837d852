// MaxPool writing INT8 (package gpuexec, op_pool_i8.go): the 8-bit chains'
// MaxPool after a half producer (ResNet's stem), whose readers all read its
// output in INT8 at one scale. Quantization (round to nearest even,
// saturated to ±127) is monotonic, so it commutes with the max: the bytes
// are those quantize_nhwc_i8 writes from pool2d_nhwc8_f16's half output
// (the max of half values is one of them, exact in half), with half the
// output traffic and no quantizing pass. f2i8 is op_quant.cu's.

// maxpool_nhwc8_f16_i8: x [N, H, W, C] half, C a multiple of 8 -> y [N, OH,
// OW, C] INT8, f2i8(max * inv) per output; one thread per 8 channels of an
// output pixel (a 16-byte load per window element, an 8-byte store). An
// empty window (padding only) gives -127, as -inf quantized does.
extern "C" __global__ void maxpool_nhwc8_f16_i8(unsigned char *y, const kiln_half *x, float inv, int N, int C, int H,
                                                int W, int OH, int OW, int KH, int KW, int SH, int SW, int PH, int PW,
                                                int DH, int DW) {
    int C8 = C >> 3;
    long long total = (long long)N * OH * OW * C8;
    GRID_STRIDE(i, total) {
        int c8 = (int)(i % C8);
        long long t = i / C8;
        int ow = (int)(t % OW);
        t /= OW;
        int oh = (int)(t % OH);
        long long n = t / OH;
        const kiln_half *xn = x + n * H * W * C + c8 * 8;
        float acc[8];
#pragma unroll
        for (int k = 0; k < 8; k++) acc[k] = -KILN_INF;
        for (int kh = 0; kh < KH; kh++) {
            int ih = oh * SH - PH + kh * DH;
            if (ih < 0 || ih >= H) continue;
            for (int kw = 0; kw < KW; kw++) {
                int iw = ow * SW - PW + kw * DW;
                if (iw < 0 || iw >= W) continue;
                uint4 v = *reinterpret_cast<const uint4 *>(xn + ((long long)ih * W + iw) * C);
                const kiln_half *h = reinterpret_cast<const kiln_half *>(&v);
#pragma unroll
                for (int k = 0; k < 8; k++) acc[k] = fmaxf(acc[k], h2f(h[k]));
            }
        }
        unsigned int lo = 0, hi = 0;
#pragma unroll
        for (int k = 0; k < 4; k++) {
            lo |= f2i8(acc[k] * inv) << (8 * k);
            hi |= f2i8(acc[k + 4] * inv) << (8 * k);
        }
        reinterpret_cast<uint2 *>(y)[i] = make_uint2(lo, hi);
    }
}

// global_avgpool_nhwc_i8: GlobalAveragePool of x [N, HW, C] INT8 (the
// 8-bit chains' last value, at scale s) into y [N, C] half: one thread per
// (n, c), the sum of the bytes in int (exact), then f2h((float)sum * s /
// HW). The half path widened every value to half first (a rounding each)
// and summed those: this is the same mean without those roundings.
extern "C" __global__ void global_avgpool_nhwc_i8(kiln_half *y, const signed char *x, float s, int N, int HW, int C) {
    long long total = (long long)N * C;
    GRID_STRIDE(i, total) {
        int c = (int)(i % C);
        long long n = i / C;
        const signed char *xn = x + n * HW * C + c;
        int sum = 0;
        for (int p = 0; p < HW; p++) sum += xn[(long long)p * C];
        float v = (float)sum * s;
        y[i] = f2h(v / (float)HW);
    }
}
