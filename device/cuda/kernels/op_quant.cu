// INT8 quantization of the CUDA executor's INT8 convolutions (package
// gpuexec, int8.go): the half NHWC input of a quantized convolution becomes
// INT8 NHWC with its channels padded to CP (a multiple of 16; the padded
// channels are 0) before cuDNN's INT8 graph convolution reads it.

// x [rows, C] half -> y [rows, CP] int8 = clamp(round-to-nearest-even(x *
// inv), -127, 127). One thread per 4 output channels (one 32-bit store),
// grid-stride over rows * CP / 4.
extern "C" __global__ void quantize_nhwc_i8(int *y, const unsigned short *x, float inv, long long rows, int C, int CP) {
    int q4 = CP / 4;
    GRID_STRIDE(i, rows * q4) {
        long long r = i / q4;
        int c = (int)(i - r * q4) * 4;
        const unsigned short *src = x + r * C;
        unsigned int packed = 0;
#pragma unroll
        for (int k = 0; k < 4; k++) {
            int v = 0;
            if (c + k < C) {
                float f = rintf(h2f(src[c + k]) * inv);
                v = (int)fminf(fmaxf(f, -127.0f), 127.0f);
            }
            packed |= ((unsigned int)(v & 0xff)) << (8 * k);
        }
        y[i] = (int)packed;
    }
}

// f2e4m3 is the FP8 E4M3 (no infinities, 448 the largest) byte nearest f,
// ties to the even mantissa, saturated to ±448; NaN gives 0x7f. In
// software: NVRTC before 12 has no e4m3 conversion instruction.
__device__ __forceinline__ unsigned int f2e4m3(float f) {
    unsigned int sign = (__float_as_uint(f) >> 24) & 0x80u;
    float a = fabsf(f);
    if (!(a == a)) return 0x7fu;
    if (a >= 448.0f) return sign | 0x7eu;
    if (a < 0.015625f) return sign | (unsigned int)rintf(a * 512.0f); // subnormals (8 is 2^-6, byte 0x08)
    unsigned int u = __float_as_uint(a);
    unsigned int e = ((u >> 23) & 0xffu) - 120u; // 127 - 7
    unsigned int m = (u >> 20) & 7u, rest = u & 0xfffffu;
    if (rest > 0x80000u || (rest == 0x80000u && (m & 1u))) {
        if (++m == 8u) {
            m = 0;
            e++;
        }
    }
    unsigned int b = (e << 3) | m;
    return sign | (b > 0x7eu ? 0x7eu : b);
}

// x [rows, C] half -> y [rows, CP] FP8 E4M3 of x * inv (saturating), the
// channels past C zero. As quantize_nhwc_i8.
extern "C" __global__ void quantize_nhwc_f8(int *y, const unsigned short *x, float inv, long long rows, int C, int CP) {
    int q4 = CP / 4;
    GRID_STRIDE(i, rows * q4) {
        long long r = i / q4;
        int c = (int)(i - r * q4) * 4;
        const unsigned short *src = x + r * C;
        unsigned int packed = 0;
#pragma unroll
        for (int k = 0; k < 4; k++) {
            unsigned int v = c + k < C ? f2e4m3(h2f(src[c + k]) * inv) : 0u;
            packed |= v << (8 * k);
        }
        y[i] = (int)packed;
    }
}
