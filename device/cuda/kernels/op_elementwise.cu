// Elementwise kernels of every element type (package gpuexec,
// op_elementwise.go). Storage types are named by suffix: f32, f16 (IEEE
// binary16, computed in float32), f64, i8, i16, i32, i64, u8 (also bool),
// u16, u32, u64. Broadcasting comes in a meta array of long longs:
// {r, dims[r], strides of each operand[r]...} (strides 0 on broadcast
// dims); kiln_bcast, kh, kld and kst come from op.cu.

// Binary op codes (gpuexec ew*): 0 add, 1 sub, 2 mul, 3 div, 4 max, 5 min,
// 6 pow, 7 fmod (C remainder), 8 mod (the divisor's sign), 9 and, 10 or,
// 11 xor, 12 shift left, 13 shift right, 14 PRelu (floats). Integer
// division and remainder by zero give 0.
template <typename C> __device__ __forceinline__ C kiln_float_op(C a, C b, int op) {
    switch (op) {
    case 0: return a + b;
    case 1: return a - b;
    case 2: return a * b;
    case 3: return a / b;
    case 4: return (a > b || a != a) ? a : b;
    case 5: return (a < b || a != a) ? a : b;
    case 6: return pow(a, b);
    case 7: return fmod(a, b);
    case 8: {
        C r = fmod(a, b);
        if (r != 0 && ((r < 0) != (b < 0))) r += b;
        return r;
    }
    case 14: return a < 0 ? a * b : a; // PRelu (slope b)
    }
    return 0;
}

template <typename C> __device__ __forceinline__ C kiln_int_op(C a, C b, int op) {
    switch (op) {
    case 0: return a + b;
    case 1: return a - b;
    case 2: return a * b;
    case 3: return b == 0 ? (C)0 : (C)(a / b);
    case 4: return a > b ? a : b;
    case 5: return a < b ? a : b;
    case 6: return (C)pow((double)a, (double)b);
    case 7: return b == 0 ? (C)0 : (C)(a % b);
    case 8: {
        if (b == 0) return 0;
        C r = a % b;
        if (r != 0 && ((r < 0) != (b < 0))) r += b;
        return r;
    }
    case 9: return a & b;
    case 10: return a | b;
    case 11: return a ^ b;
    case 12: return b < 0 || b >= (C)(8 * sizeof(C)) ? (C)0 : (C)(a << b);
    case 13: return b < 0 || b >= (C)(8 * sizeof(C)) ? (C)0 : (C)(a >> b);
    }
    return 0;
}

// Compare codes: 0 equal, 1 less, 2 greater, 3 less or equal, 4 greater or
// equal; the result is a bool (0 or 1 byte).
template <typename C> __device__ __forceinline__ unsigned char kiln_cmp(C a, C b, int op) {
    switch (op) {
    case 0: return a == b;
    case 1: return a < b;
    case 2: return a > b;
    case 3: return a <= b;
    default: return a >= b;
    }
}

#define KILN_EW_BINARY(sfx, T, OPF)                                                                        \
    extern "C" __global__ void ew_binary_##sfx(T *y, const T *a, const T *b, const long long *meta,        \
                                               long long n, int op) {                                      \
        GRID_STRIDE(i, n) {                                                                                \
            long long off[3];                                                                              \
            kiln_bcast(meta, i, 2, off);                                                                   \
            kst(y, i, OPF<kct<T>::t>(kld(a, off[0]), kld(b, off[1]), op));                                 \
        }                                                                                                  \
    }                                                                                                      \
    extern "C" __global__ void ew_compare_##sfx(unsigned char *y, const T *a, const T *b,                  \
                                                const long long *meta, long long n, int op) {              \
        GRID_STRIDE(i, n) {                                                                                \
            long long off[3];                                                                              \
            kiln_bcast(meta, i, 2, off);                                                                   \
            y[i] = kiln_cmp<kct<T>::t>(kld(a, off[0]), kld(b, off[1]), op);                                \
        }                                                                                                  \
    }
KILN_EW_BINARY(f32, float, kiln_float_op)
KILN_EW_BINARY(f16, kh, kiln_float_op)
KILN_EW_BINARY(f64, double, kiln_float_op)
KILN_EW_BINARY(i8, signed char, kiln_int_op)
KILN_EW_BINARY(i16, short, kiln_int_op)
KILN_EW_BINARY(i32, int, kiln_int_op)
KILN_EW_BINARY(i64, long long, kiln_int_op)
KILN_EW_BINARY(u8, unsigned char, kiln_int_op)
KILN_EW_BINARY(u16, unsigned short, kiln_int_op)
KILN_EW_BINARY(u32, unsigned int, kiln_int_op)
KILN_EW_BINARY(u64, unsigned long long, kiln_int_op)

// Unary float op codes (gpuexec ewNeg...): see kiln_unary_float.
__device__ __forceinline__ float kiln_unary_float(float x, int op, float p0, float p1) {
    switch (op) {
    case 0: return -x;
    case 1: return fabsf(x);
    case 2: return sqrtf(x);
    case 3: return expf(x);
    case 4: return logf(x);
    case 5: return 1.0f / x;
    case 6: return floorf(x);
    case 7: return ceilf(x);
    case 8: return rintf(x); // half to even
    case 9: return sinf(x);
    case 10: return cosf(x);
    case 11: return tanf(x);
    case 12: return asinf(x);
    case 13: return acosf(x);
    case 14: return atanf(x);
    case 15: return sinhf(x);
    case 16: return coshf(x);
    case 17: return asinhf(x);
    case 18: return acoshf(x);
    case 19: return atanhf(x);
    case 20: return erff(x);
    case 21: return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : x);
    case 22: return x > 20.0f ? x : log1pf(expf(x)); // softplus
    case 23: return x / (1.0f + fabsf(x));           // softsign
    case 24: return x < 0.0f ? p0 * (expf(x) - 1.0f) : x; // elu(alpha)
    case 25: return x <= 0.0f ? p1 * (p0 * expf(x) - p0) : p1 * x; // selu(alpha, gamma)
    case 26: return fmaxf(0.0f, x) + fminf(0.0f, p0 * (expf(x / p0) - 1.0f)); // celu(alpha)
    case 27: return x > p0 ? x : 0.0f;                                        // thresholdedrelu(alpha)
    case 28: return x < -p1 ? x + p0 : (x > p1 ? x - p0 : 0.0f);              // shrink(bias, lambd)
    case 29: return x * tanhf(x > 20.0f ? x : log1pf(expf(x)));               // mish
    }
    return x;
}

// Unary integer op codes: 0 neg, 1 abs, 21 sign, 40 bitwise not, 41
// logical not (bools).
template <typename C> __device__ __forceinline__ C kiln_unary_int(C x, int op) {
    switch (op) {
    case 0: return (C)(-x);
    case 1: return x < 0 ? (C)(-x) : x;
    case 21: return x > 0 ? (C)1 : (x < 0 ? (C)(-1) : (C)0);
    case 40: return (C)~x;
    case 41: return (C)!x;
    }
    return x;
}

#define KILN_EW_UNARYF(sfx, T)                                                                              \
    extern "C" __global__ void ew_unary_##sfx(T *y, const T *x, long long n, int op, float p0, float p1) { \
        GRID_STRIDE(i, n) kst(y, i, kiln_unary_float((float)kld(x, i), op, p0, p1));                        \
    }
KILN_EW_UNARYF(f32, float)
KILN_EW_UNARYF(f16, kh)

#define KILN_EW_UNARYI(sfx, T)                                                                              \
    extern "C" __global__ void ew_unary_##sfx(T *y, const T *x, long long n, int op, float p0, float p1) { \
        GRID_STRIDE(i, n) y[i] = kiln_unary_int<T>(x[i], op);                                               \
    }
KILN_EW_UNARYI(i8, signed char)
KILN_EW_UNARYI(i16, short)
KILN_EW_UNARYI(i32, int)
KILN_EW_UNARYI(i64, long long)
KILN_EW_UNARYI(u8, unsigned char)

// IsNaN (mode 0) and IsInf (mode 1 both signs, 2 positive, 3 negative, 4
// neither) of floats into bools.
#define KILN_EW_ISCLASS(sfx, T)                                                                             \
    extern "C" __global__ void ew_isclass_##sfx(unsigned char *y, const T *x, long long n, int mode) {    \
        GRID_STRIDE(i, n) {                                                                                 \
            float v = (float)kld(x, i);                                                                     \
            bool inf = isinf(v);                                                                            \
            y[i] = mode == 0 ? isnan(v) : (mode == 1 ? inf : (mode == 2 ? inf && v > 0 : mode == 3 && inf && v < 0)); \
        }                                                                                                   \
    }
KILN_EW_ISCLASS(f32, float)
KILN_EW_ISCLASS(f16, kh)

// Where(cond, a, b) over elements of 1, 2, 4 or 8 bytes; meta has the
// strides of cond, a and b.
#define KILN_WHERE(sfx, T)                                                                                  \
    extern "C" __global__ void where_##sfx(T *y, const unsigned char *c, const T *a, const T *b,           \
                                           const long long *meta, long long n) {                            \
        GRID_STRIDE(i, n) {                                                                                 \
            long long off[3];                                                                               \
            kiln_bcast(meta, i, 3, off);                                                                    \
            y[i] = c[off[0]] ? a[off[1]] : b[off[2]];                                                       \
        }                                                                                                   \
    }
KILN_WHERE(b8, unsigned char)
KILN_WHERE(b16, unsigned short)
KILN_WHERE(b32, unsigned int)
KILN_WHERE(b64, unsigned long long)

// Cast between any two of the types above: type codes 0 f32, 1 f16, 2 f64,
// 3 i8, 4 i16, 5 i32, 6 i64, 7 u8, 8 u16, 9 u32, 10 u64, 11 bool. Integers
// go through long long (exact), floats through double; a float becomes an
// integer by truncation (ONNX leaves out-of-range values undefined).
__device__ __forceinline__ void kiln_cast_load(const void *x, long long i, int t, double *d, long long *l,
                                               bool *isint) {
    *isint = true;
    switch (t) {
    case 0: *d = ((const float *)x)[i]; *isint = false; break;
    case 1: *d = h2f(((const unsigned short *)x)[i]); *isint = false; break;
    case 2: *d = ((const double *)x)[i]; *isint = false; break;
    case 3: *l = ((const signed char *)x)[i]; break;
    case 4: *l = ((const short *)x)[i]; break;
    case 5: *l = ((const int *)x)[i]; break;
    case 6: *l = ((const long long *)x)[i]; break;
    case 7: case 11: *l = ((const unsigned char *)x)[i]; break;
    case 8: *l = ((const unsigned short *)x)[i]; break;
    case 9: *l = ((const unsigned int *)x)[i]; break;
    default: *l = (long long)((const unsigned long long *)x)[i]; break;
    }
    if (*isint) *d = t == 10 ? (double)((const unsigned long long *)x)[i] : (double)*l;
    else *l = (*d != *d) ? 0 : (long long)*d;
}

extern "C" __global__ void cast_any(void *y, const void *x, long long n, int from, int to) {
    GRID_STRIDE(i, n) {
        double d;
        long long l;
        bool isint;
        kiln_cast_load(x, i, from, &d, &l, &isint);
        switch (to) {
        case 0: ((float *)y)[i] = (float)d; break;
        case 1: ((unsigned short *)y)[i] = f2h((float)d); break;
        case 2: ((double *)y)[i] = d; break;
        case 3: ((signed char *)y)[i] = (signed char)l; break;
        case 4: ((short *)y)[i] = (short)l; break;
        case 5: ((int *)y)[i] = (int)l; break;
        case 6: ((long long *)y)[i] = l; break;
        case 7: ((unsigned char *)y)[i] = (unsigned char)l; break;
        case 8: ((unsigned short *)y)[i] = (unsigned short)l; break;
        case 9: ((unsigned int *)y)[i] = (unsigned int)l; break;
        case 10: ((unsigned long long *)y)[i] = isint ? (unsigned long long)l : (unsigned long long)d; break;
        default: ((unsigned char *)y)[i] = isint ? l != 0 : d != 0; break;
        }
    }
}

// Quantization (QuantizeLinear, DequantizeLinear) per tensor (axlen 1) or
// per slice along an axis: element i uses scale[(i / inner) % axlen] and
// the zero point at the same index (absent: 0). q is the quantized type:
// 3 int8, 4 int16, 7 uint8, 8 uint16 (cast_any's codes); quantizing rounds
// half to even and saturates.
__device__ __forceinline__ long long kiln_qload(const void *p, long long i, int q) {
    switch (q) {
    case 3: return ((const signed char *)p)[i];
    case 4: return ((const short *)p)[i];
    case 7: return ((const unsigned char *)p)[i];
    case 8: return ((const unsigned short *)p)[i];
    }
    return ((const int *)p)[i];
}

template <typename T>
__device__ void quantize_t(void *y, const T *x, const T *scale, const void *zp, long long n, long long axlen,
                           long long inner, int q) {
    GRID_STRIDE(i, n) {
        long long a = (i / inner) % axlen;
        float v = rintf((float)kld(x, i) / (float)kld(scale, a)) + (zp ? (float)kiln_qload(zp, a, q) : 0.0f);
        switch (q) {
        case 3: ((signed char *)y)[i] = (signed char)fminf(fmaxf(v, -128.0f), 127.0f); break;
        case 4: ((short *)y)[i] = (short)fminf(fmaxf(v, -32768.0f), 32767.0f); break;
        case 7: ((unsigned char *)y)[i] = (unsigned char)fminf(fmaxf(v, 0.0f), 255.0f); break;
        default: ((unsigned short *)y)[i] = (unsigned short)fminf(fmaxf(v, 0.0f), 65535.0f); break;
        }
    }
}

template <typename T>
__device__ void dequantize_t(T *y, const void *x, const T *scale, const void *zp, long long n, long long axlen,
                             long long inner, int q) {
    GRID_STRIDE(i, n) {
        long long a = (i / inner) % axlen;
        long long v = kiln_qload(x, i, q) - (zp ? kiln_qload(zp, a, q) : 0);
        kst(y, i, (float)v * (float)kld(scale, a));
    }
}

#define KILN_QUANT(sfx, T)                                                                                     \
    extern "C" __global__ void quantize_##sfx(void *y, const T *x, const T *scale, const void *zp, long long n, \
                                              long long axlen, long long inner, int q) {                       \
        quantize_t(y, x, scale, zp, n, axlen, inner, q);                                                       \
    }                                                                                                          \
    extern "C" __global__ void dequantize_##sfx(T *y, const void *x, const T *scale, const void *zp,           \
                                                long long n, long long axlen, long long inner, int q) {        \
        dequantize_t(y, x, scale, zp, n, axlen, inner, q);                                                     \
    }
KILN_QUANT(f32, float)
KILN_QUANT(f16, kh)
