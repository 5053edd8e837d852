// DFT (package gpuexec, op_dft.go): every line of x [outer, L, inner, c]
// (c 1 for real, 2 for complex signals) along L transformed with a
// length-n DFT (truncated or zero-padded), the first keep bins written to
// y [outer, keep, inner, 2]; inverse conjugates the kernel and divides by
// n. One thread per output bin, a direct sum (the angle reduced modulo n
// before sincospi, so that long lines keep their precision). CT is the
// compute type (float for binary16).

template <typename CT> __device__ __forceinline__ void kiln_sincospi(CT a, CT *s, CT *c) { sincospi(a, s, c); }
template <> __device__ __forceinline__ void kiln_sincospi<float>(float a, float *s, float *c) { sincospif(a, s, c); }

template <typename T, typename CT>
__device__ void dft_t(T *y, const T *x, long long outer, long long L, long long inner, int c, long long n,
                      long long keep, int inverse) {
    long long total = outer * keep * inner;
    long long m = L < n ? L : n;
    GRID_STRIDE(i, total) {
        long long q = i % inner, k = (i / inner) % keep, o = i / (inner * keep);
        CT re = 0, im = 0;
        for (long long j = 0; j < m; j++) {
            long long e = ((o * L + j) * inner + q) * c;
            CT a = (CT)kld(x, e), b = c == 2 ? (CT)kld(x, e + 1) : (CT)0;
            CT sn, cs;
            kiln_sincospi<CT>((CT)2 * (CT)((j * k) % n) / (CT)n, &sn, &cs);
            if (inverse) sn = -sn; // e^{+i theta}
            // (a + ib)(cos - i sin)
            re += a * cs + b * sn;
            im += b * cs - a * sn;
        }
        if (inverse) {
            re /= (CT)n;
            im /= (CT)n;
        }
        kst(y, 2 * i, re);
        kst(y, 2 * i + 1, im);
    }
}

// stft: frames of x [batch, length, c] (frame f starts at f * step, fl
// samples, multiplied by window w when given) transformed as dft's lines:
// y [batch, frames, bins, 2].
template <typename T, typename CT>
__device__ void stft_t(T *y, const T *x, const T *w, long long batch, long long length, int c, long long frames,
                       long long step, long long fl, long long bins) {
    long long total = batch * frames * bins;
    GRID_STRIDE(i, total) {
        long long k = i % bins, f = (i / bins) % frames, b = i / (bins * frames);
        CT re = 0, im = 0;
        for (long long j = 0; j < fl; j++) {
            long long e = (b * length + f * step + j) * c;
            CT a = (CT)kld(x, e), bi = c == 2 ? (CT)kld(x, e + 1) : (CT)0;
            if (w) {
                CT wj = (CT)kld(w, j);
                a *= wj;
                bi *= wj;
            }
            CT sn, cs;
            kiln_sincospi<CT>((CT)2 * (CT)((j * k) % fl) / (CT)fl, &sn, &cs);
            re += a * cs + bi * sn;
            im += bi * cs - a * sn;
        }
        kst(y, 2 * i, re);
        kst(y, 2 * i + 1, im);
    }
}

#define KILN_DFT(sfx, T, CT)                                                                                  \
    extern "C" __global__ void dft_##sfx(T *y, const T *x, long long outer, long long L, long long inner, int c, \
                                         long long n, long long keep, int inverse) {                          \
        dft_t<T, CT>(y, x, outer, L, inner, c, n, keep, inverse);                                             \
    }                                                                                                         \
    extern "C" __global__ void stft_##sfx(T *y, const T *x, const T *w, long long batch, long long length, int c, \
                                          long long frames, long long step, long long fl, long long bins) {   \
        stft_t<T, CT>(y, x, w, batch, length, c, frames, step, fl, bins);                                     \
    }
KILN_DFT(f32, float, float)
KILN_DFT(f16, kh, float)
KILN_DFT(f64, double, double)
