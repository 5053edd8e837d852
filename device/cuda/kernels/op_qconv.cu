// ConvInteger and QLinearConv (package gpuexec, op_qconv.go): 2-D (1-D as
// H = 1) direct convolutions of int8/uint8 x [N, C, H, W] and w [M, C/group,
// KH, KW] with zero points (x's per tensor, w's per tensor or per output
// channel; padding contributes nothing, as if it held x's zero point),
// accumulated in int32, one thread per output. ydt 0 stores the int32 sum;
// 1 (int8) and 2 (uint8) add the int32 bias and requantize as
// QLinearConv: round half to even of sum * (xs * ws / ys) in float32, plus
// yz, saturated. ST is the scales' storage type.

template <typename TX, typename TW, typename ST>
__device__ void qconv2d_t(void *y, const TX *x, const TW *w, const TX *xz, const TW *wz, const ST *xs, const ST *ws,
                          const ST *ys, const void *yz, const int *bias, int ydt, int N, int C, int H, int W, int M,
                          int OH, int OW, int KH, int KW, int SH, int SW, int PH, int PW, int DH, int DW, int group,
                          int wzn, int wsn) {
    long long total = (long long)N * M * OH * OW;
    int cpg = C / group, mpg = M / group;
    GRID_STRIDE(i, total) {
        int ow = (int)(i % OW), oh = (int)((i / OW) % OH), m = (int)((i / ((long long)OW * OH)) % M);
        long long n = i / ((long long)OW * OH * M);
        int g = m / mpg;
        int zx = xz ? (int)xz[0] : 0, zw = wz ? (int)wz[wzn > 1 ? m : 0] : 0;
        int acc = 0;
        for (int c = 0; c < cpg; c++) {
            const TX *xc = x + ((n * C) + (long long)g * cpg + c) * H * W;
            const TW *wc = w + ((long long)m * cpg + c) * KH * KW;
            for (int kh = 0; kh < KH; kh++) {
                int ih = oh * SH - PH + kh * DH;
                if (ih < 0 || ih >= H) continue;
                for (int kw = 0; kw < KW; kw++) {
                    int iw = ow * SW - PW + kw * DW;
                    if (iw < 0 || iw >= W) continue;
                    acc += ((int)xc[(long long)ih * W + iw] - zx) * ((int)wc[kh * KW + kw] - zw);
                }
            }
        }
        if (ydt == 0) {
            ((int *)y)[i] = acc;
            continue;
        }
        if (bias) acc += bias[m];
        float mult = (float)kld(xs, 0) * (float)kld(ws, wsn > 1 ? m : 0) / (float)kld(ys, 0);
        float q = rintf((float)acc * mult);
        if (ydt == 1) {
            q += yz ? (float)((const signed char *)yz)[0] : 0.0f;
            ((signed char *)y)[i] = (signed char)fminf(127.0f, fmaxf(-128.0f, q));
        } else {
            q += yz ? (float)((const unsigned char *)yz)[0] : 0.0f;
            ((unsigned char *)y)[i] = (unsigned char)fminf(255.0f, fmaxf(0.0f, q));
        }
    }
}

#define KILN_QCONV(sfx, TX, TW, ST)                                                                           \
    extern "C" __global__ void qconv2d_##sfx(void *y, const TX *x, const TW *w, const TX *xz, const TW *wz,   \
                                             const ST *xs, const ST *ws, const ST *ys, const void *yz,        \
                                             const int *bias, int ydt, int N, int C, int H, int W, int M, int OH, \
                                             int OW, int KH, int KW, int SH, int SW, int PH, int PW, int DH,  \
                                             int DW, int group, int wzn, int wsn) {                           \
        qconv2d_t<TX, TW, ST>(y, x, w, xz, wz, xs, ws, ys, yz, bias, ydt, N, C, H, W, M, OH, OW, KH, KW, SH, SW, \
                              PH, PW, DH, DW, group, wzn, wsn);                                               \
    }
KILN_QCONV(u8u8_f32, unsigned char, unsigned char, float)
KILN_QCONV(u8i8_f32, unsigned char, signed char, float)
KILN_QCONV(i8u8_f32, signed char, unsigned char, float)
KILN_QCONV(i8i8_f32, signed char, signed char, float)
KILN_QCONV(u8u8_f16, unsigned char, unsigned char, kh)
KILN_QCONV(u8i8_f16, unsigned char, signed char, kh)
KILN_QCONV(i8u8_f16, signed char, unsigned char, kh)
KILN_QCONV(i8i8_f16, signed char, signed char, kh)
