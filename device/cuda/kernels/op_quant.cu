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
