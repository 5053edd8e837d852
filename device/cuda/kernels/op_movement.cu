// Data movement of elements of 1, 2, 4 or 8 bytes (package gpuexec,
// op_movement.go): suffix b8, b16, b32, b64. PERMUTE, COPYROWS and GATHER
// come from nn.cu (their 1-byte forms are made here).

PERMUTE(permute_b8, unsigned char)
COPYROWS(copy_rows_b8, unsigned char)
GATHER(gather_b8, unsigned char)

// Tile: y index i (dims meta[1..r]) reads x at sum (idx[d] % xdims[d]) *
// xstrides[d]; meta = {r, ydims[r], xdims[r], xstrides[r]}.
// Pad: y index i reads x at idx[d] - pads[d] per dim, outside x the
// constant (mode 0), the edge (1), the reflection (2) or the wrap (3);
// meta = {r, ydims[r], xdims[r], xstrides[r], begin pads[r]}.
// GatherElements: y[i] = x[i with axis replaced by idx[i]]; meta = {r,
// axis, ydims[r], xstrides[r], x axis length}.
// ScatterND (reduction none): y (a copy of the data) takes the rows of
// upd at the index tuples of idx [nrows, k]; meta = {k, xdims[k],
// xstrides[k]}, slice elements per row.
// fill: every element of y is the constant (the low bytes of cv).
// OneHot: y [outer, depth, inner] is values[1] where the index (of type
// itype, cast_any's codes; negative counts from depth) at [outer, inner]
// equals the depth coordinate, else values[0].
// EyeLike: ones (the bits of one) on the diagonal shifted by k of a rows x
// cols matrix.
// GatherND (batch_dims 0): row r of y is the slice of x at the index
// tuple idx[r] (meta as ScatterND's).
// ScatterElements (reduction none): y[upd index with axis replaced by
// idx] = upd; meta = {r, axis, upd dims[r], y strides[r], y axis length}.
// Trilu: keeps the upper (upper 1) or lower triangle of the last two dims
// (rows x cols), shifted by k (or *kp, read on the device), zeroing the
// rest.
#define KILN_MOVE(sfx, T)                                                                                      \
    extern "C" __global__ void tile_##sfx(T *y, const T *x, const long long *meta, long long n) {              \
        int r = (int)meta[0];                                                                                  \
        GRID_STRIDE(i, n) {                                                                                    \
            long long rem = i, ix = 0;                                                                         \
            for (int d = r - 1; d >= 0; d--) {                                                                 \
                long long idx = rem % meta[1 + d];                                                             \
                rem /= meta[1 + d];                                                                            \
                ix += (idx % meta[1 + r + d]) * meta[1 + 2 * r + d];                                           \
            }                                                                                                  \
            y[i] = x[ix];                                                                                      \
        }                                                                                                      \
    }                                                                                                          \
    extern "C" __global__ void pad_##sfx(T *y, const T *x, const long long *meta, long long n, int mode,       \
                                         unsigned long long cv) {                                              \
        int r = (int)meta[0];                                                                                  \
        T c = *(const T *)&cv;                                                                                 \
        GRID_STRIDE(i, n) {                                                                                    \
            long long rem = i, ix = 0;                                                                         \
            bool out = false;                                                                                  \
            for (int d = r - 1; d >= 0; d--) {                                                                 \
                long long idx = rem % meta[1 + d];                                                             \
                rem /= meta[1 + d];                                                                            \
                long long xd = meta[1 + r + d], s = idx - meta[1 + 3 * r + d];                                 \
                if (s < 0 || s >= xd) {                                                                        \
                    switch (mode) {                                                                            \
                    case 0: out = true; break;                                                                 \
                    case 1: s = s < 0 ? 0 : xd - 1; break;                                                     \
                    case 2:                                                                                    \
                        if (xd == 1) {                                                                         \
                            s = 0;                                                                             \
                        } else {                                                                               \
                            long long p = 2 * (xd - 1);                                                        \
                            s = ((s % p) + p) % p;                                                             \
                            if (s >= xd) s = p - s;                                                            \
                        }                                                                                      \
                        break;                                                                                 \
                    default: s = ((s % xd) + xd) % xd; break;                                                  \
                    }                                                                                          \
                }                                                                                              \
                ix += s * meta[1 + 2 * r + d];                                                                 \
            }                                                                                                  \
            y[i] = out ? c : x[ix];                                                                            \
        }                                                                                                      \
    }                                                                                                          \
    extern "C" __global__ void gather_elements_##sfx(T *y, const T *x, const long long *idx,                   \
                                                     const long long *meta, long long n) {                     \
        int r = (int)meta[0], axis = (int)meta[1];                                                             \
        long long len = meta[2 + 2 * r];                                                                       \
        GRID_STRIDE(i, n) {                                                                                    \
            long long rem = i, ix = 0;                                                                         \
            for (int d = r - 1; d >= 0; d--) {                                                                 \
                long long id = rem % meta[2 + d];                                                              \
                rem /= meta[2 + d];                                                                            \
                if (d == axis) {                                                                               \
                    id = idx[i];                                                                               \
                    if (id < 0) id += len;                                                                     \
                    id = id < 0 ? 0 : (id >= len ? len - 1 : id);                                              \
                }                                                                                              \
                ix += id * meta[2 + r + d];                                                                    \
            }                                                                                                  \
            y[i] = x[ix];                                                                                      \
        }                                                                                                      \
    }                                                                                                          \
    extern "C" __global__ void scatter_elements_##sfx(T *y, const T *upd, const long long *idx,                \
                                                      const long long *meta, long long n) {                    \
        int r = (int)meta[0], axis = (int)meta[1];                                                             \
        long long len = meta[2 + 2 * r];                                                                       \
        GRID_STRIDE(i, n) {                                                                                    \
            long long rem = i, iy = 0;                                                                         \
            for (int d = r - 1; d >= 0; d--) {                                                                 \
                long long id = rem % meta[2 + d];                                                              \
                rem /= meta[2 + d];                                                                            \
                if (d == axis) {                                                                               \
                    id = idx[i];                                                                               \
                    if (id < 0) id += len;                                                                     \
                    id = id < 0 ? 0 : (id >= len ? len - 1 : id);                                              \
                }                                                                                              \
                iy += id * meta[2 + r + d];                                                                    \
            }                                                                                                  \
            y[iy] = upd[i];                                                                                    \
        }                                                                                                      \
    }                                                                                                          \
    extern "C" __global__ void scatter_nd_##sfx(T *y, const T *upd, const long long *idx,                      \
                                                const long long *meta, long long rows, long long slice) {      \
        int k = (int)meta[0];                                                                                  \
        long long n = rows * slice;                                                                            \
        GRID_STRIDE(i, n) {                                                                                    \
            long long row = i / slice, e = i % slice, off = 0;                                                 \
            for (int d = 0; d < k; d++) {                                                                      \
                long long id = idx[row * k + d], dim = meta[1 + d];                                            \
                if (id < 0) id += dim;                                                                         \
                id = id < 0 ? 0 : (id >= dim ? dim - 1 : id);                                                  \
                off += id * meta[1 + k + d];                                                                   \
            }                                                                                                  \
            y[off + e] = upd[i];                                                                               \
        }                                                                                                      \
    }                                                                                                          \
    extern "C" __global__ void gather_nd_##sfx(T *y, const T *x, const long long *idx, const long long *meta,   \
                                               long long rows, long long slice) {                              \
        int k = (int)meta[0];                                                                                  \
        long long n = rows * slice;                                                                            \
        GRID_STRIDE(i, n) {                                                                                    \
            long long row = i / slice, e = i % slice, off = 0;                                                 \
            for (int d = 0; d < k; d++) {                                                                      \
                long long id = idx[row * k + d], dim = meta[1 + d];                                            \
                if (id < 0) id += dim;                                                                         \
                id = id < 0 ? 0 : (id >= dim ? dim - 1 : id);                                                  \
                off += id * meta[1 + k + d];                                                                   \
            }                                                                                                  \
            y[i] = x[off + e];                                                                                 \
        }                                                                                                      \
    }                                                                                                          \
    extern "C" __global__ void fill_##sfx(T *y, long long n, unsigned long long cv) {                          \
        T c = *(const T *)&cv;                                                                                 \
        GRID_STRIDE(i, n) y[i] = c;                                                                            \
    }                                                                                                          \
    extern "C" __global__ void one_hot_##sfx(T *y, const void *idx, int itype, const T *values, long long outer, \
                                             long long depth, long long inner) {                               \
        long long n = outer * depth * inner;                                                                   \
        GRID_STRIDE(i, n) {                                                                                    \
            long long k = i % inner, j = (i / inner) % depth, o = i / (inner * depth);                         \
            double d;                                                                                          \
            long long v;                                                                                       \
            bool isint;                                                                                        \
            kiln_cast_load(idx, o * inner + k, itype, &d, &v, &isint);                                         \
            if (v < 0) v += depth;                                                                             \
            y[i] = values[v == j ? 1 : 0];                                                                     \
        }                                                                                                      \
    }                                                                                                          \
    extern "C" __global__ void eye_##sfx(T *y, long long rows, long long cols, long long k,                    \
                                         unsigned long long one) {                                             \
        T c = *(const T *)&one;                                                                                \
        long long n = rows * cols;                                                                             \
        GRID_STRIDE(i, n) y[i] = (i % cols) - (i / cols) == k ? c : (T)0;                                     \
    }                                                                                                          \
    extern "C" __global__ void trilu_##sfx(T *y, const T *x, long long rows, long long cols, long long n,      \
                                           long long k, const long long *kp, int upper) {                      \
        if (kp) k = kp[0];                                                                                     \
        GRID_STRIDE(i, n) {                                                                                    \
            long long c = i % cols, rw = (i / cols) % rows;                                                    \
            bool keep = upper ? c - rw >= k : c - rw <= k;                                                     \
            y[i] = keep ? x[i] : (T)0;                                                                         \
        }                                                                                                      \
    }
KILN_MOVE(b8, unsigned char)
KILN_MOVE(b16, unsigned short)
KILN_MOVE(b32, unsigned int)
KILN_MOVE(b64, unsigned long long)
