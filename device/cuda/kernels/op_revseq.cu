// ReverseSequence (package gpuexec, op_revseq.go): x [D0, D1, inner], the
// batch axis batch_axis (0 or 1) and the time axis the other; the first
// lens[b] time steps of batch entry b reversed, the rest copied. Elements
// are moved as they are (T of 1, 2, 4 or 8 bytes).

template <typename T>
__device__ void revseq_t(T *y, const T *x, const void *lens, int lens64, long long D0, long long D1, long long inner,
                         int batch_axis) {
    long long total = D0 * D1 * inner;
    GRID_STRIDE(i, total) {
        long long q = i % inner, a1 = (i / inner) % D1, a0 = i / (inner * D1);
        long long b = batch_axis == 0 ? a0 : a1, t = batch_axis == 0 ? a1 : a0;
        long long len = lens64 ? ((const long long *)lens)[b] : ((const int *)lens)[b];
        long long T = batch_axis == 0 ? D1 : D0;
        len = len < 0 ? 0 : (len > T ? T : len); // the CPU refuses lengths out of range; never read outside x
        if (t < len) t = len - 1 - t;
        long long s0 = batch_axis == 0 ? a0 : t, s1 = batch_axis == 0 ? t : a1;
        y[i] = x[(s0 * D1 + s1) * inner + q];
    }
}

#define KILN_REVSEQ(sfx, T)                                                                                   \
    extern "C" __global__ void revseq_##sfx(T *y, const T *x, const void *lens, int lens64, long long D0,     \
                                            long long D1, long long inner, int batch_axis) {                  \
        revseq_t(y, x, lens, lens64, D0, D1, inner, batch_axis);                                              \
    }
KILN_REVSEQ(b8, unsigned char)
KILN_REVSEQ(b16, unsigned short)
KILN_REVSEQ(b32, unsigned int)
KILN_REVSEQ(b64, unsigned long long)
