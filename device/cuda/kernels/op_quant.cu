// Quantization of the CUDA executor's INT8 and FP8 convolutions (package
// gpuexec, int8.go): the half NHWC input of a quantized convolution becomes
// INT8 or FP8 E4M3 NHWC with its channels padded to CP (a multiple of 16;
// the padded channels are 0) before cuDNN's quantized graph convolution
// reads it.

__device__ __forceinline__ unsigned int f2i8(float f) {
    return (unsigned int)((int)fminf(fmaxf(rintf(f), -127.0f), 127.0f)) & 0xffu;
}

// quantize_nhwc_t: x [rows, C] half -> y [rows, CP] 8-bit, cvt(x * inv)
// per element, the channels past C zero. When C == CP, C % 8 == 0 and x is
// 16-byte aligned, 8 channels a thread: one 16-byte load, one 8-byte store;
// otherwise 4 channels a thread, one 32-bit store. Grid-stride (any grid
// is correct; the launch sizes it for the first case when it applies).
template <unsigned int (*cvt)(float)>
__device__ void quantize_nhwc_t(int *y, const unsigned short *x, float inv, long long rows, int C, int CP) {
    if (C == CP && C % 8 == 0 && ((unsigned long long)x & 15) == 0) {
        long long n = rows * (C / 8);
        const uint4 *x8 = (const uint4 *)x;
        uint2 *y8 = (uint2 *)y;
        GRID_STRIDE(i, n) {
            uint4 h = x8[i];
            unsigned int w[4] = {h.x, h.y, h.z, h.w}, lo = 0, hi = 0;
#pragma unroll
            for (int k = 0; k < 2; k++) {
                lo |= cvt(h2f((unsigned short)(w[k] & 0xffffu)) * inv) << (16 * k);
                lo |= cvt(h2f((unsigned short)(w[k] >> 16)) * inv) << (16 * k + 8);
                hi |= cvt(h2f((unsigned short)(w[k + 2] & 0xffffu)) * inv) << (16 * k);
                hi |= cvt(h2f((unsigned short)(w[k + 2] >> 16)) * inv) << (16 * k + 8);
            }
            y8[i] = make_uint2(lo, hi);
        }
        return;
    }
    int q4 = CP / 4;
    GRID_STRIDE(i, rows * q4) {
        long long r = i / q4;
        int c = (int)(i - r * q4) * 4;
        const unsigned short *src = x + r * C;
        unsigned int packed = 0;
#pragma unroll
        for (int k = 0; k < 4; k++) {
            unsigned int v = c + k < C ? cvt(h2f(src[c + k]) * inv) : 0u;
            packed |= v << (8 * k);
        }
        y[i] = (int)packed;
    }
}

// INT8: round to nearest even, saturated to ±127.
extern "C" __global__ void quantize_nhwc_i8(int *y, const unsigned short *x, float inv, long long rows, int C, int CP) {
    quantize_nhwc_t<f2i8>(y, x, inv, rows, C, CP);
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

// FP8 E4M3, saturated to ±448.
extern "C" __global__ void quantize_nhwc_f8(int *y, const unsigned short *x, float inv, long long rows, int C, int CP) {
    quantize_nhwc_t<f2e4m3>(y, x, inv, rows, C, CP);
}
