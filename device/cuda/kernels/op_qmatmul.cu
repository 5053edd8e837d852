// MatMulInteger and QLinearMatMul (package gpuexec, op_qmatmul.go): Y[b,
// row, col] = sum over k of (A[b, row, k] - az) (B[b, k, col] - bz) in
// int32, A [batch, M, K] and B [batch, K, N] at batch strides sAb and sBb
// (0: one matrix for all), the zero points scalars (n 1) or per row of A
// (row % mrow) and per column of B. ydt 0 stores the int32 sum;
// 1 (int8) and 2 (uint8) requantize it as QLinearMatMul: round half to
// even of sum * (as * bs / ys) in float32, plus yz, saturated. One thread
// per output element. ST is the scales' storage type (binary16 in half
// precision engines).

template <typename TA, typename TB, typename ST>
__device__ void qmatmul_t(void *y, const TA *a, const TB *b, const TA *az, const TB *bz, const ST *as, const ST *bs,
                          const ST *ys, const void *yz, int ydt, long long batch, int M, int N, int K, long long sAb,
                          long long sBb, int mrow, int azn, int bzn, int asn, int bsn) {
    long long total = batch * M * N;
    GRID_STRIDE(i, total) {
        int col = (int)(i % N), row = (int)((i / N) % M);
        long long bt = i / ((long long)M * N);
        int r = row % mrow;
        int za = az ? (int)az[azn > 1 ? r : 0] : 0, zb = bz ? (int)bz[bzn > 1 ? col : 0] : 0;
        const TA *ap = a + bt * sAb + (long long)row * K;
        const TB *bp = b + bt * sBb + col;
        int acc = 0;
        for (int k = 0; k < K; k++) acc += ((int)ap[k] - za) * ((int)bp[(long long)k * N] - zb);
        if (ydt == 0) {
            ((int *)y)[i] = acc;
            continue;
        }
        float mult = (float)kld(as, asn > 1 ? r : 0) * (float)kld(bs, bsn > 1 ? col : 0) / (float)kld(ys, 0);
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

#define KILN_QMATMUL(sfx, TA, TB, ST)                                                                         \
    extern "C" __global__ void qmatmul_##sfx(void *y, const TA *a, const TB *b, const TA *az, const TB *bz,   \
                                             const ST *as, const ST *bs, const ST *ys, const void *yz, int ydt, \
                                             long long batch, int M, int N, int K, long long sAb, long long sBb, \
                                             int mrow, int azn, int bzn, int asn, int bsn) {                  \
        qmatmul_t<TA, TB, ST>(y, a, b, az, bz, as, bs, ys, yz, ydt, batch, M, N, K, sAb, sBb, mrow, azn, bzn,  \
                              asn, bsn);                                                                      \
    }
KILN_QMATMUL(u8u8_f32, unsigned char, unsigned char, float)
KILN_QMATMUL(u8i8_f32, unsigned char, signed char, float)
KILN_QMATMUL(i8u8_f32, signed char, unsigned char, float)
KILN_QMATMUL(i8i8_f32, signed char, signed char, float)
KILN_QMATMUL(u8u8_f16, unsigned char, unsigned char, kh)
KILN_QMATMUL(u8i8_f16, unsigned char, signed char, kh)
KILN_QMATMUL(i8u8_f16, signed char, unsigned char, kh)
KILN_QMATMUL(i8i8_f16, signed char, signed char, kh)
