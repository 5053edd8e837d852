// Convolution epilogues and flat elementwise kernels with 16-byte accesses
// (8 halves or 4 floats a thread and iteration) and no 64-bit division in
// their loops: the fast forms of nn.cu's chan_epilogue, unary and
// binary_flat, which the executor (gpuexec) picks where their conditions
// hold and keeps the scalar kernels for the rest. Compiled after nn.cu
// (act_apply, vh_unpack, vh_pack, KILN_BOTH, KILN_PDL_WAIT).

// VecIO<T> moves one 16-byte vector of T (W elements) between memory and
// floats; p is 16-byte aligned.
template <typename T> struct VecIO;
template <> struct VecIO<kiln_half> {
    enum { W = 8 };
    static __device__ __forceinline__ void ld(const kiln_half *p, float *f) { vh_unpack(*(const uint4 *)p, f); }
    static __device__ __forceinline__ void st(kiln_half *p, const float *f) { *(uint4 *)p = vh_pack(f); }
};
template <> struct VecIO<float> {
    enum { W = 4 };
    static __device__ __forceinline__ void ld(const float *p, float *f) {
        float4 v = *(const float4 *)p;
        f[0] = v.x, f[1] = v.y, f[2] = v.z, f[3] = v.w;
    }
    static __device__ __forceinline__ void st(float *p, const float *f) { *(float4 *)p = make_float4(f[0], f[1], f[2], f[3]); }
};

// Channels-last epilogue, in place: y = act(y + bias[c] + z) over total
// elements whose channel c is the index modulo M (NHWC, or NCHW with one
// pixel), M a multiple of the vector width W, y and z 16-byte aligned.
// Each thread walks the vectors with the grid's stride G; its channel
// vector advances by G modulo M/W each step (computed once), so the loop
// divides nothing, and where the launch makes G a multiple of M/W the
// thread's bias stays in registers for the whole loop.
template <typename T>
__device__ void chan_epilogue_vec_t(T *y, const T *__restrict__ bias, const T *z, long long total,
                                    int M, int act, float p0, float p1) {
    KILN_PDL_WAIT();
    const int W = VecIO<T>::W;
    const long long nv = total / W;
    const int V = M / W;
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long G = (long long)blockDim.x * gridDim.x;
    if (i >= nv) return;
    int col = (int)(i % V), step = (int)(G % V), loaded = -1;
    float b[8];
#pragma unroll
    for (int e = 0; e < W; e++) b[e] = 0.0f;
    for (; i < nv; i += G) {
        if (bias && col != loaded) {
            VecIO<T>::ld(bias + (long long)col * W, b);
            loaded = col;
        }
        float v[8], r[8];
        VecIO<T>::ld(y + i * W, v);
#pragma unroll
        for (int e = 0; e < W; e++) v[e] += b[e]; // (y + bias) + z, as chan_epilogue
        if (z) {
            VecIO<T>::ld(z + i * W, r);
#pragma unroll
            for (int e = 0; e < W; e++) v[e] += r[e];
        }
#pragma unroll
        for (int e = 0; e < W; e++) v[e] = act_apply(v[e], act, p0, p1);
        VecIO<T>::st(y + i * W, v);
        col += step;
        if (col >= V) col -= V;
    }
}
#define CHAN_EPILOGUE_VEC_P(T) \
    (T * y, const T *bias, const T *z, long long total, int M, int act, float p0, float p1)
KILN_BOTH(chan_epilogue_vec, CHAN_EPILOGUE_VEC_P, (y, bias, z, total, M, act, p0, p1))

// NCHW epilogue, in place: y = act(y + bias[c] + z) over planes (n, c) of
// hw > 1 elements each. Block x takes whole planes (grid-stride over
// them), so the channel, and the bias, is fixed per plane: one modulo per
// plane. Its threads walk the plane in vectors of W where hw is a multiple
// of W and y and z are 16-byte aligned, else element by element.
template <typename T>
__device__ void chan_epilogue_plane_t(T *y, const T *__restrict__ bias, const T *z, long long planes,
                                      long long hw, int M, int act, float p0, float p1) {
    KILN_PDL_WAIT();
    const int W = VecIO<T>::W;
    const bool vec = hw % W == 0 && (((unsigned long long)y | (unsigned long long)z) & 15) == 0;
    for (long long p = blockIdx.x; p < planes; p += gridDim.x) {
        const float bv = bias ? ldf(bias, p % M) : 0.0f;
        T *yp = y + p * hw;
        const T *zp = z ? z + p * hw : z;
        if (vec) {
            for (long long j = (long long)threadIdx.x * W; j < hw; j += (long long)blockDim.x * W) {
                float v[8], r[8];
                VecIO<T>::ld(yp + j, v);
#pragma unroll
                for (int e = 0; e < W; e++) v[e] += bv;
                if (zp) {
                    VecIO<T>::ld(zp + j, r);
#pragma unroll
                    for (int e = 0; e < W; e++) v[e] += r[e];
                }
#pragma unroll
                for (int e = 0; e < W; e++) v[e] = act_apply(v[e], act, p0, p1);
                VecIO<T>::st(yp + j, v);
            }
        } else {
            for (long long j = threadIdx.x; j < hw; j += blockDim.x) {
                float v = ldf(yp, j) + bv;
                if (zp) v += ldf(zp, j);
                stf(yp, j, act_apply(v, act, p0, p1));
            }
        }
    }
}
#define CHAN_EPILOGUE_PLANE_P(T) \
    (T * y, const T *bias, const T *z, long long planes, long long hw, int M, int act, float p0, float p1)
KILN_BOTH(chan_epilogue_plane, CHAN_EPILOGUE_PLANE_P, (y, bias, z, planes, hw, M, act, p0, p1))

// unary in vectors: y = act(x) over n elements, n a multiple of W, x and y
// 16-byte aligned.
template <typename T>
__device__ void unary_vec_t(T *y, const T *x, long long n, int act, float p0, float p1) {
    const int W = VecIO<T>::W;
    GRID_STRIDE(i, n / W) {
        float v[8];
        VecIO<T>::ld(x + i * W, v);
#pragma unroll
        for (int e = 0; e < W; e++) v[e] = act_apply(v[e], act, p0, p1);
        VecIO<T>::st(y + i * W, v);
    }
}
#define UNARY_VEC_P(T) (T * y, const T *x, long long n, int act, float p0, float p1)
KILN_BOTH(unary_vec, UNARY_VEC_P, (y, x, n, act, p0, p1))

__device__ __forceinline__ float binop_apply(float va, float vb, int op) {
    switch (op) {
    case 0: return va + vb;
    case 1: return va - vb;
    case 2: return va * vb;
    case 3: return va / vb;
    case 4: return fmaxf(va, vb);
    case 5: return fminf(va, vb);
    default: return powf(va, vb);
    }
}

// binary_flat in vectors: y = a op b over n elements, a of y's shape, b's
// elements repeating every bn (bn = 1: a scalar; else n and bn multiples of
// W; a, b and y 16-byte aligned). b's vector advances by the grid's stride
// modulo bn/W, as in chan_epilogue_vec: no division in the loop.
template <typename T>
__device__ void binary_flat_vec_t(T *y, const T *a, const T *b, long long n, long long bn,
                                  int op) {
    const int W = VecIO<T>::W;
    const long long nv = n / W;
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long G = (long long)blockDim.x * gridDim.x;
    if (i >= nv) return;
    float vb[8];
    if (bn == 1) {
        float s = ldf(b, 0);
#pragma unroll
        for (int e = 0; e < W; e++) vb[e] = s;
        for (; i < nv; i += G) {
            float va[8];
            VecIO<T>::ld(a + i * W, va);
#pragma unroll
            for (int e = 0; e < W; e++) va[e] = binop_apply(va[e], vb[e], op);
            VecIO<T>::st(y + i * W, va);
        }
        return;
    }
    const long long V = bn / W;
    long long col = i % V, step = G % V;
    for (; i < nv; i += G) {
        float va[8];
        VecIO<T>::ld(a + i * W, va);
        VecIO<T>::ld(b + col * W, vb);
#pragma unroll
        for (int e = 0; e < W; e++) va[e] = binop_apply(va[e], vb[e], op);
        VecIO<T>::st(y + i * W, va);
        col += step;
        if (col >= V) col -= V;
    }
}
#define BINARY_FLAT_VEC_P(T) (T * y, const T *a, const T *b, long long n, long long bn, int op)
KILN_BOTH(binary_flat_vec, BINARY_FLAT_VEC_P, (y, a, b, n, bn, op))

// binary_flat's per-plane form: y = a op b, a of y's shape, b constant over
// each plane of hw elements of y, plane p reading b[p % bm] (an NCHW tensor
// times [N, C, 1, 1], as squeeze-and-excitation scales its channels, or
// plus [C, 1, 1]). One block per plane, as chan_epilogue_plane: vectors of W
// where hw is a multiple of W and y and a are 16-byte aligned.
template <typename T>
__device__ void binary_plane_t(T *y, const T *a, const T *b, long long planes, long long hw, long long bm, int op) {
    const int W = VecIO<T>::W;
    const bool vec = hw % W == 0 && (((unsigned long long)y | (unsigned long long)a) & 15) == 0;
    for (long long p = blockIdx.x; p < planes; p += gridDim.x) {
        const float vb = ldf(b, p % bm);
        T *yp = y + p * hw;
        const T *ap = a + p * hw;
        if (vec) {
            for (long long j = (long long)threadIdx.x * W; j < hw; j += (long long)blockDim.x * W) {
                float v[8];
                VecIO<T>::ld(ap + j, v);
#pragma unroll
                for (int e = 0; e < W; e++) v[e] = binop_apply(v[e], vb, op);
                VecIO<T>::st(yp + j, v);
            }
        } else {
            for (long long j = threadIdx.x; j < hw; j += blockDim.x) stf(yp, j, binop_apply(ldf(ap, j), vb, op));
        }
    }
}
#define BINARY_PLANE_P(T) (T * y, const T *a, const T *b, long long planes, long long hw, long long bm, int op)
KILN_BOTH(binary_plane, BINARY_PLANE_P, (y, a, b, planes, hw, bm, op))
