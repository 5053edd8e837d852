// Det (package gpuexec, op_det.go): the determinant of each m x m matrix
// of x [batch, m, m] (m at most DET_MAX), one thread a matrix: Gaussian
// elimination with partial pivoting in the compute type CT, as the CPU
// kernel does it.

#define DET_MAX 16

template <typename T, typename CT>
__device__ void det_t(T *y, const T *x, long long batch, int m) {
    GRID_STRIDE(i, batch) {
        CT a[DET_MAX * DET_MAX];
        const long long base = i * m * m;
        for (int k = 0; k < m * m; k++) a[k] = (CT)kld(x, base + k);
        CT d = 1;
        for (int c = 0; c < m; c++) {
            int p = c;
            for (int r = c + 1; r < m; r++)
                if (fabs((double)a[r * m + c]) > fabs((double)a[p * m + c])) p = r;
            if (a[p * m + c] == (CT)0) {
                d = 0;
                break;
            }
            if (p != c) {
                for (int j = 0; j < m; j++) {
                    CT t = a[p * m + j];
                    a[p * m + j] = a[c * m + j];
                    a[c * m + j] = t;
                }
                d = -d;
            }
            CT piv = a[c * m + c];
            d *= piv;
            for (int r = c + 1; r < m; r++) {
                CT f = a[r * m + c] / piv;
                if (f == (CT)0) continue;
                for (int j = c + 1; j < m; j++) a[r * m + j] -= f * a[c * m + j];
            }
        }
        kst(y, i, d);
    }
}

#define KILN_DET(sfx, T, CT)                                                                                  \
    extern "C" __global__ void det_##sfx(T *y, const T *x, long long batch, int m) { det_t<T, CT>(y, x, batch, m); }
KILN_DET(f32, float, float)
KILN_DET(f16, kh, float)
KILN_DET(f64, double, double)
