// RNN, GRU and LSTM (package gpuexec, op_rnn.go), float32 and binary16
// storage, computed in float32: the input projections of every step at
// once (rnn_proj), then one launch per step (two for GRU) over every
// direction, batch item and hidden unit, the state in float32 ping-pong
// buffers [dirs, B, H]. layout 0: X [S, B, I], Y [S, dirs, B, H], states
// [dirs, B, H]; layout 1: X [B, S, I], Y [B, S, dirs, H], states [B, dirs,
// H]. Gate order as ONNX: RNN i; GRU z, r, h; LSTM i, o, f, c. Uses op.cu's
// helpers.

// kiln_rnn_act: 0 sigmoid, 1 tanh, 2 relu, 3 softsign, 4 softplus, 5
// affine, 6 leakyrelu, 7 thresholdedrelu, 8 scaledtanh, 9 hardsigmoid, 10
// elu, with their alpha al and beta be (op_rnn.go fills in ONNX's
// defaults); clip > 0 clips the argument first.
__device__ __forceinline__ float kiln_rnn_act(int id, float v, float clip, float al, float be) {
    if (clip > 0.0f) v = fmaxf(-clip, fminf(clip, v));
    switch (id) {
    case 0: return v >= 0.0f ? 1.0f / (1.0f + expf(-v)) : expf(v) / (1.0f + expf(v));
    case 1: return tanhf(v);
    case 2: return fmaxf(v, 0.0f);
    case 3: return v / (1.0f + fabsf(v));
    case 4: return log1pf(expf(v));
    case 5: return al * v + be;
    case 6: return v < 0.0f ? al * v : v;
    case 7: return v > al ? v : 0.0f;
    case 8: return al * tanhf(be * v);
    case 9: return fmaxf(0.0f, fminf(1.0f, al * v + be));
    case 10: return v < 0.0f ? al * expm1f(v) : v;
    }
    return v;
}

// kiln_rnn_actk applies activation k (0, 1 or 2) of a direction's nine
// meta values: ids[3], then the bits of alpha[3] and beta[3] (float32).
__device__ __forceinline__ float kiln_rnn_actk(const long long *a, int k, float v, float clip) {
    return kiln_rnn_act((int)a[k], v, clip, __int_as_float((int)a[3 + k]), __int_as_float((int)a[6 + k]));
}

__device__ __forceinline__ long long kiln_rnn_state(int layout, int d, long long b, int j, int dirs, long long B, int H) {
    return layout ? (b * dirs + d) * H + j : ((long long)d * B + b) * H + j;
}

__device__ __forceinline__ long long kiln_rnn_y(int layout, long long t, int d, long long b, int j, long long S, int dirs,
                                                long long B, int H) {
    return layout ? ((b * S + t) * dirs + d) * H + j : ((t * dirs + d) * B + b) * H + j;
}

// rnn_proj: xw[d, s, b, g] = X[s, b, :] . W[d, g, :] + Wb[d, g] + Rb[d, g]
// (GRU with linear_before_reset: no Rb for the h gate, g >= 2H), a warp
// per element (the launch covers 32 threads an element).
template <typename T>
__device__ void rnn_proj_t(float *xw, const T *x, const T *w, const T *bias, long long S, long long B, int I, int GH,
                           int dirs, int H, int lbr, int layout) {
    long long total = (long long)dirs * S * B * GH;
    GRID_STRIDE(wt, total * 32) { // a warp per element, its lanes along I
        long long i = wt / 32;
        int lane = (int)(wt % 32);
        int g = (int)(i % GH);
        long long r = i / GH;
        long long b = r % B;
        r /= B;
        long long s = r % S;
        int d = (int)(r / S);
        const long long xo = (layout ? b * S + s : s * B + b) * I, wo = ((long long)d * GH + g) * I;
        float acc = 0.0f;
        for (int k = lane; k < I; k += 32) acc += (float)kld(x, xo + k) * (float)kld(w, wo + k);
        for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffff, acc, o);
        if (lane != 0) continue;
        if (bias) {
            acc += (float)kld(bias, (long long)d * 2 * GH + g);
            if (!(lbr && g >= 2 * H)) acc += (float)kld(bias, (long long)d * 2 * GH + GH + g);
        }
        xw[i] = acc;
    }
}

// rnn_proj_tiled is rnn_proj as a tiled product, the same xw: block
// (32, 8) computes a 32 x 32 tile of rows (s, b) by gates g of direction
// blockIdx.z, four rows a thread, X's and W's 32-wide slices of I staged
// in shared memory (each element of X and W read once a tile instead of
// once an output). The grid is (ceil(GH / 32), ceil(S * B / 32), dirs).
template <typename T>
__device__ void rnn_proj_tiled_t(float *xw, const T *x, const T *w, const T *bias, long long S, long long B, int I,
                                 int GH, int dirs, int H, int lbr, int layout) {
    __shared__ float xs[32][33], ws[32][33];
    const long long M = S * B, r0 = (long long)blockIdx.y * 32;
    const int d = (int)blockIdx.z, g0 = (int)blockIdx.x * 32, tx = (int)threadIdx.x, ty = (int)threadIdx.y;
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int k0 = 0; k0 < I; k0 += 32) {
        const int k = k0 + tx;
        for (int i = ty; i < 32; i += 8) {
            const long long r = r0 + i;
            float v = 0.0f;
            if (r < M && k < I) {
                const long long s = r / B, b = r % B;
                v = (float)kld(x, (layout ? b * S + s : s * B + b) * I + k);
            }
            xs[i][tx] = v;
            const int g = g0 + i;
            ws[i][tx] = (g < GH && k < I) ? (float)kld(w, ((long long)d * GH + g) * I + k) : 0.0f;
        }
        __syncthreads();
#pragma unroll 8
        for (int kk = 0; kk < 32; kk++) {
            const float wv = ws[tx][kk];
#pragma unroll
            for (int q = 0; q < 4; q++) acc[q] += xs[ty + 8 * q][kk] * wv;
        }
        __syncthreads();
    }
    const int g = g0 + tx;
    if (g >= GH) return;
    float bs = 0.0f;
    if (bias) {
        bs = (float)kld(bias, (long long)d * 2 * GH + g);
        if (!(lbr && g >= 2 * H)) bs += (float)kld(bias, (long long)d * 2 * GH + GH + g);
    }
#pragma unroll
    for (int q = 0; q < 4; q++) {
        const long long r = r0 + ty + 8 * q;
        if (r < M) xw[((long long)d * M + r) * GH + g] = acc[q] + bs;
    }
}

// rnn_init: the states from initial_h and initial_c (zero when absent), Y
// zeroed (steps past a sequence's length stay zero).
template <typename T>
__device__ void rnn_init_t(float *h, float *c, const T *h0, const T *c0, T *y, long long ny, int dirs, long long B, int H,
                           int layout) {
    GRID_STRIDE(i, ny) kst(y, i, 0.0f);
    long long n = (long long)dirs * B * H;
    GRID_STRIDE(i, n) {
        int j = (int)(i % H);
        long long b = (i / H) % B;
        int d = (int)(i / ((long long)H * B));
        long long at = kiln_rnn_state(layout, d, b, j, dirs, B, H);
        h[i] = h0 ? (float)kld(h0, at) : 0.0f;
        if (c) c[i] = c0 ? (float)kld(c0, at) : 0.0f;
    }
}

// kiln_rnn_dot is v[vo : vo + H] . R[ro : ro + H], summed by the 32 lanes
// of a warp (each lane a stride of the row, so that reads coalesce) and
// returned to every lane.
template <typename T>
__device__ __forceinline__ float kiln_rnn_dot(const float *v, const T *R, long long vo, long long ro, int H, int lane) {
    float acc = 0.0f;
    for (int k = lane; k < H; k += 32) acc += v[vo + k] * (float)kld(R, ro + k);
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffff, acc, o);
    return acc;
}

// kiln_rnn_time is the time index of a step of direction d, and whether
// batch item b is still within its sequence at it.
__device__ __forceinline__ long long kiln_rnn_time(long long step, long long S, int d, int reverse, const void *lens,
                                                   int lens64, long long b, bool *active) {
    long long t = (reverse || d == 1) ? S - 1 - step : step;
    long long len = S;
    if (lens) len = lens64 ? ((const long long *)lens)[b] : ((const int *)lens)[b];
    *active = t < len;
    return t;
}

// rnn_step: one step of RNN (kind 0) or LSTM (kind 2) for every direction,
// batch item and hidden unit: hp, cp the previous states, hn, cn the new
// ones, a warp per unit (the launch covers 32 threads a unit). acts holds
// the cell's activation ids, three per direction.
template <typename T>
__device__ void rnn_step_t(T *y, float *hn, float *cn, const float *hp, const float *cp, const float *xw, const T *R,
                           const T *P, const void *lens, int lens64, long long step, long long S, long long B, int H,
                           int dirs, int reverse, int kind, const long long *acts, float clip, int input_forget,
                           int layout) {
    int G = kind == 2 ? 4 : 1;
    long long n = (long long)dirs * B * H;
    GRID_STRIDE(wt, n * 32) { // a warp per unit
        long long i = wt / 32;
        int lane = (int)(wt % 32);
        int j = (int)(i % H);
        long long b = (i / H) % B;
        int d = (int)(i / ((long long)H * B));
        bool active;
        long long t = kiln_rnn_time(step, S, d, reverse, lens, lens64, b, &active);
        if (!active) {
            if (lane == 0) {
                hn[i] = hp[i];
                if (cn) cn[i] = cp[i];
            }
            continue;
        }
        const float *x = xw + (((long long)d * S + t) * B + b) * G * H;
        const long long vo = ((long long)d * B + b) * H, ro = (long long)d * G * H * H;
        const long long *a = acts + 9 * d;
        float h;
        if (kind == 0) {
            h = kiln_rnn_actk(a, 0, x[j] + kiln_rnn_dot(hp, R, vo, ro + (long long)j * H, H, lane), clip);
        } else {
            float c = cp[i];
            float gi = x[j] + kiln_rnn_dot(hp, R, vo, ro + (long long)j * H, H, lane);
            float go = x[H + j] + kiln_rnn_dot(hp, R, vo, ro + (long long)(H + j) * H, H, lane);
            float gf = x[2 * H + j] + kiln_rnn_dot(hp, R, vo, ro + (long long)(2 * H + j) * H, H, lane);
            float gc = x[3 * H + j] + kiln_rnn_dot(hp, R, vo, ro + (long long)(3 * H + j) * H, H, lane);
            if (P) {
                gi += (float)kld(P, (long long)d * 3 * H + j) * c;
                gf += (float)kld(P, (long long)d * 3 * H + 2 * H + j) * c;
            }
            float it = kiln_rnn_actk(a, 0, gi, clip);
            float ft = input_forget ? 1.0f - it : kiln_rnn_actk(a, 0, gf, clip);
            float ct = kiln_rnn_actk(a, 1, gc, clip);
            c = ft * c + it * ct;
            if (P) go += (float)kld(P, (long long)d * 3 * H + H + j) * c;
            float ot = kiln_rnn_actk(a, 0, go, clip);
            h = ot * kiln_rnn_actk(a, 2, c, 0.0f);
            if (lane == 0) cn[i] = c;
        }
        if (lane == 0) {
            hn[i] = h;
            if (y) kst(y, kiln_rnn_y(layout, t, d, b, j, S, dirs, B, H), h);
        }
    }
}

// gru_gates: GRU's update gate z into zb and, into rh, r * h (r alone with
// linear_before_reset), for every direction, batch item and hidden unit, a
// warp each.
template <typename T>
__device__ void gru_gates_t(float *zb, float *rh, const float *hp, const float *xw, const T *R, long long step,
                            long long S, long long B, int H, int dirs, int reverse, const long long *acts, float clip,
                            int lbr) {
    long long n = (long long)dirs * B * H;
    GRID_STRIDE(wt, n * 32) { // a warp per unit
        long long i = wt / 32;
        int lane = (int)(wt % 32);
        int j = (int)(i % H);
        long long b = (i / H) % B;
        int d = (int)(i / ((long long)H * B));
        bool active;
        long long t = kiln_rnn_time(step, S, d, reverse, (const void *)0, 0, b, &active);
        const float *x = xw + (((long long)d * S + t) * B + b) * 3 * H;
        const long long vo = ((long long)d * B + b) * H, ro = (long long)d * 3 * H * H;
        const long long *a = acts + 9 * d;
        float z = kiln_rnn_actk(a, 0, x[j] + kiln_rnn_dot(hp, R, vo, ro + (long long)j * H, H, lane), clip);
        float r = kiln_rnn_actk(a, 0, x[H + j] + kiln_rnn_dot(hp, R, vo, ro + (long long)(H + j) * H, H, lane), clip);
        if (lane == 0) {
            zb[i] = z;
            rh[i] = lbr ? r : r * hp[i];
        }
    }
}

// gru_step: GRU's new state from gru_gates' z and rh: h~ = g(x_h + Rh .
// (r * h)) (linear_before_reset: g(x_h + r * (Rh . h + Rbh))), h = (1 - z)
// * h~ + z * h.
template <typename T>
__device__ void gru_step_t(T *y, float *hn, const float *hp, const float *zb, const float *rh, const float *xw,
                           const T *R, const T *bias, const void *lens, int lens64, long long step, long long S,
                           long long B, int H, int dirs, int reverse, const long long *acts, float clip, int lbr,
                           int layout) {
    long long n = (long long)dirs * B * H;
    GRID_STRIDE(wt, n * 32) { // a warp per unit
        long long i = wt / 32;
        int lane = (int)(wt % 32);
        int j = (int)(i % H);
        long long b = (i / H) % B;
        int d = (int)(i / ((long long)H * B));
        bool active;
        long long t = kiln_rnn_time(step, S, d, reverse, lens, lens64, b, &active);
        if (!active) {
            if (lane == 0) hn[i] = hp[i];
            continue;
        }
        const float *x = xw + (((long long)d * S + t) * B + b) * 3 * H;
        const long long vo = ((long long)d * B + b) * H, ro = (long long)d * 3 * H * H + (long long)(2 * H + j) * H;
        float v;
        if (lbr) {
            float rbh = bias ? (float)kld(bias, (long long)d * 6 * H + 3 * H + 2 * H + j) : 0.0f;
            v = x[2 * H + j] + rh[i] * (kiln_rnn_dot(hp, R, vo, ro, H, lane) + rbh);
        } else {
            v = x[2 * H + j] + kiln_rnn_dot(rh, R, vo, ro, H, lane);
        }
        float ht = kiln_rnn_actk(acts + 9 * d, 1, v, clip), z = zb[i];
        float h = (1.0f - z) * ht + z * hp[i];
        if (lane == 0) {
            hn[i] = h;
            if (y) kst(y, kiln_rnn_y(layout, t, d, b, j, S, dirs, B, H), h);
        }
    }
}

// Batch-tiled steps (the _bt kernels): a warp per direction, hidden unit
// and tile of up to 8 batch items, so that each row of R is read once a
// tile rather than once an item (the recurrent product of the tile's
// states by R, fused with the gates); lane q computes the gates of item
// q of the tile. Same arguments and results as the kernels above.

// kiln_rnn_dots_bt gives lane q (< nb) s[g] = v[vo + q*H : +H] . R[ro +
// g*gs : +H] for g < G (at most 4) and the tile's nb (at most 8) items,
// the warp's lanes striding the rows (coalesced).
template <typename T>
__device__ __forceinline__ void kiln_rnn_dots_bt(float *s, int G, const float *v, long long vo, int nb, const T *R,
                                                 long long ro, long long gs, int H, int lane) {
    float acc[4][8];
#pragma unroll
    for (int g = 0; g < 4; g++)
#pragma unroll
        for (int q = 0; q < 8; q++) acc[g][q] = 0.0f;
#pragma unroll 2 // two strides of the row in flight
    for (int k = lane; k < H; k += 32) {
        float hv[8];
#pragma unroll
        for (int q = 0; q < 8; q++) hv[q] = q < nb ? v[vo + (long long)q * H + k] : 0.0f;
#pragma unroll
        for (int g = 0; g < 4; g++) {
            if (g < G) {
                const float r = (float)kld(R, ro + g * gs + k);
#pragma unroll
                for (int q = 0; q < 8; q++) acc[g][q] += hv[q] * r;
            }
        }
    }
#pragma unroll
    for (int g = 0; g < 4; g++) {
        s[g] = 0.0f;
        if (g >= G) continue;
#pragma unroll
        for (int q = 0; q < 8; q++) {
            if (q >= nb) continue; // nb is the same in every lane of the warp
            float a = acc[g][q];
            for (int o = 16; o > 0; o >>= 1) a += __shfl_xor_sync(0xffffffff, a, o);
            if (lane == q) s[g] = a;
        }
    }
}

// rnn_step_bt is rnn_step (RNN kind 0, LSTM kind 2) batch-tiled.
template <typename T>
__device__ void rnn_step_bt_t(T *y, float *hn, float *cn, const float *hp, const float *cp, const float *xw, const T *R,
                              const T *P, const void *lens, int lens64, long long step, long long S, long long B, int H,
                              int dirs, int reverse, int kind, const long long *acts, float clip, int input_forget,
                              int layout) {
    const int G = kind == 2 ? 4 : 1;
    const long long nt = (B + 7) / 8, n = (long long)dirs * H * nt;
    GRID_STRIDE(wt, n * 32) { // a warp per (direction, unit, tile)
        const long long w = wt / 32;
        const int lane = (int)(wt % 32);
        const long long b0 = (w % nt) * 8;
        const int j = (int)((w / nt) % H);
        const int d = (int)(w / (nt * H));
        const int nb = (int)min(8LL, B - b0);
        float sum[4];
        kiln_rnn_dots_bt(sum, G, hp, ((long long)d * B + b0) * H, nb, R, (long long)d * G * H * H + (long long)j * H,
                         (long long)H * H, H, lane);
        if (lane < nb) {
            const long long b = b0 + lane, i = ((long long)d * B + b) * H + j;
            bool active;
            const long long t = kiln_rnn_time(step, S, d, reverse, lens, lens64, b, &active);
            if (!active) {
                hn[i] = hp[i];
                if (cn) cn[i] = cp[i];
            } else {
                const float *x = xw + (((long long)d * S + t) * B + b) * G * H;
                const long long *a = acts + 9 * d;
                float h;
                if (kind == 0) {
                    h = kiln_rnn_actk(a, 0, x[j] + sum[0], clip);
                } else {
                    float c = cp[i];
                    float gi = x[j] + sum[0], go = x[H + j] + sum[1], gf = x[2 * H + j] + sum[2];
                    const float gc = x[3 * H + j] + sum[3];
                    if (P) {
                        gi += (float)kld(P, (long long)d * 3 * H + j) * c;
                        gf += (float)kld(P, (long long)d * 3 * H + 2 * H + j) * c;
                    }
                    const float it = kiln_rnn_actk(a, 0, gi, clip);
                    const float ft = input_forget ? 1.0f - it : kiln_rnn_actk(a, 0, gf, clip);
                    const float ct = kiln_rnn_actk(a, 1, gc, clip);
                    c = ft * c + it * ct;
                    if (P) go += (float)kld(P, (long long)d * 3 * H + H + j) * c;
                    const float ot = kiln_rnn_actk(a, 0, go, clip);
                    h = ot * kiln_rnn_actk(a, 2, c, 0.0f);
                    cn[i] = c;
                }
                hn[i] = h;
                if (y) kst(y, kiln_rnn_y(layout, t, d, b, j, S, dirs, B, H), h);
            }
        }
    }
}

// gru_gates_bt is gru_gates batch-tiled.
template <typename T>
__device__ void gru_gates_bt_t(float *zb, float *rh, const float *hp, const float *xw, const T *R, long long step,
                               long long S, long long B, int H, int dirs, int reverse, const long long *acts, float clip,
                               int lbr) {
    const long long nt = (B + 7) / 8, n = (long long)dirs * H * nt;
    GRID_STRIDE(wt, n * 32) {
        const long long w = wt / 32;
        const int lane = (int)(wt % 32);
        const long long b0 = (w % nt) * 8;
        const int j = (int)((w / nt) % H);
        const int d = (int)(w / (nt * H));
        const int nb = (int)min(8LL, B - b0);
        float sum[4];
        kiln_rnn_dots_bt(sum, 2, hp, ((long long)d * B + b0) * H, nb, R, (long long)d * 3 * H * H + (long long)j * H,
                         (long long)H * H, H, lane);
        if (lane < nb) {
            const long long b = b0 + lane, i = ((long long)d * B + b) * H + j;
            bool active;
            const long long t = kiln_rnn_time(step, S, d, reverse, (const void *)0, 0, b, &active);
            const float *x = xw + (((long long)d * S + t) * B + b) * 3 * H;
            const long long *a = acts + 9 * d;
            const float z = kiln_rnn_actk(a, 0, x[j] + sum[0], clip);
            const float r = kiln_rnn_actk(a, 0, x[H + j] + sum[1], clip);
            zb[i] = z;
            rh[i] = lbr ? r : r * hp[i];
        }
    }
}

// gru_step_bt is gru_step batch-tiled.
template <typename T>
__device__ void gru_step_bt_t(T *y, float *hn, const float *hp, const float *zb, const float *rh, const float *xw,
                              const T *R, const T *bias, const void *lens, int lens64, long long step, long long S,
                              long long B, int H, int dirs, int reverse, const long long *acts, float clip, int lbr,
                              int layout) {
    const long long nt = (B + 7) / 8, n = (long long)dirs * H * nt;
    GRID_STRIDE(wt, n * 32) {
        const long long w = wt / 32;
        const int lane = (int)(wt % 32);
        const long long b0 = (w % nt) * 8;
        const int j = (int)((w / nt) % H);
        const int d = (int)(w / (nt * H));
        const int nb = (int)min(8LL, B - b0);
        float sum[4];
        kiln_rnn_dots_bt(sum, 1, lbr ? hp : rh, ((long long)d * B + b0) * H, nb, R,
                         (long long)d * 3 * H * H + (long long)(2 * H + j) * H, 0, H, lane);
        if (lane < nb) {
            const long long b = b0 + lane, i = ((long long)d * B + b) * H + j;
            bool active;
            const long long t = kiln_rnn_time(step, S, d, reverse, lens, lens64, b, &active);
            if (!active) {
                hn[i] = hp[i];
            } else {
                const float *x = xw + (((long long)d * S + t) * B + b) * 3 * H;
                float v;
                if (lbr) {
                    const float rbh = bias ? (float)kld(bias, (long long)d * 6 * H + 3 * H + 2 * H + j) : 0.0f;
                    v = x[2 * H + j] + rh[i] * (sum[0] + rbh);
                } else {
                    v = x[2 * H + j] + sum[0];
                }
                const float ht = kiln_rnn_actk(acts + 9 * d, 1, v, clip), z = zb[i];
                const float h = (1.0f - z) * ht + z * hp[i];
                hn[i] = h;
                if (y) kst(y, kiln_rnn_y(layout, t, d, b, j, S, dirs, B, H), h);
            }
        }
    }
}

// rnn_final: the last states to Y_h and Y_c (either may be absent).
template <typename T>
__device__ void rnn_final_t(T *yh, T *yc, const float *h, const float *c, int dirs, long long B, int H, int layout) {
    long long n = (long long)dirs * B * H;
    GRID_STRIDE(i, n) {
        int j = (int)(i % H);
        long long b = (i / H) % B;
        int d = (int)(i / ((long long)H * B));
        long long at = kiln_rnn_state(layout, d, b, j, dirs, B, H);
        if (yh) kst(yh, at, h[i]);
        if (yc) kst(yc, at, c[i]);
    }
}

#define KILN_RNN(sfx, T)                                                                                      \
    extern "C" __global__ void rnn_proj_##sfx(float *xw, const T *x, const T *w, const T *bias, long long S,    \
                                              long long B, int I, int GH, int dirs, int H, int lbr, int layout) { \
        rnn_proj_t(xw, x, w, bias, S, B, I, GH, dirs, H, lbr, layout);                                         \
    }                                                                                                         \
    extern "C" __global__ void rnn_proj_tiled_##sfx(float *xw, const T *x, const T *w, const T *bias, long long S, \
                                                    long long B, int I, int GH, int dirs, int H, int lbr,         \
                                                    int layout) {                                                 \
        rnn_proj_tiled_t(xw, x, w, bias, S, B, I, GH, dirs, H, lbr, layout);                                      \
    }                                                                                                         \
    extern "C" __global__ void rnn_init_##sfx(float *h, float *c, const T *h0, const T *c0, T *y, long long ny, \
                                              int dirs, long long B, int H, int layout) {                      \
        rnn_init_t(h, c, h0, c0, y, ny, dirs, B, H, layout);                                                   \
    }                                                                                                         \
    extern "C" __global__ void rnn_step_##sfx(T *y, float *hn, float *cn, const float *hp, const float *cp,     \
                                              const float *xw, const T *R, const T *P, const void *lens,       \
                                              int lens64, long long step, long long S, long long B, int H,     \
                                              int dirs, int reverse, int kind, const long long *acts, float clip, \
                                              int input_forget, int layout) {                                  \
        rnn_step_t(y, hn, cn, hp, cp, xw, R, P, lens, lens64, step, S, B, H, dirs, reverse, kind, acts, clip,  \
                   input_forget, layout);                                                                      \
    }                                                                                                         \
    extern "C" __global__ void gru_gates_##sfx(float *zb, float *rh, const float *hp, const float *xw,         \
                                               const T *R, long long step, long long S, long long B, int H,    \
                                               int dirs, int reverse, const long long *acts, float clip, int lbr) { \
        gru_gates_t(zb, rh, hp, xw, R, step, S, B, H, dirs, reverse, acts, clip, lbr);                         \
    }                                                                                                         \
    extern "C" __global__ void gru_step_##sfx(T *y, float *hn, const float *hp, const float *zb, const float *rh, \
                                              const float *xw, const T *R, const T *bias, const void *lens,    \
                                              int lens64, long long step, long long S, long long B, int H,     \
                                              int dirs, int reverse, const long long *acts, float clip, int lbr, \
                                              int layout) {                                                    \
        gru_step_t(y, hn, hp, zb, rh, xw, R, bias, lens, lens64, step, S, B, H, dirs, reverse, acts, clip, lbr, \
                   layout);                                                                                    \
    }                                                                                                         \
    extern "C" __global__ void rnn_step_bt_##sfx(T *y, float *hn, float *cn, const float *hp, const float *cp,  \
                                                 const float *xw, const T *R, const T *P, const void *lens,    \
                                                 int lens64, long long step, long long S, long long B, int H,  \
                                                 int dirs, int reverse, int kind, const long long *acts,       \
                                                 float clip, int input_forget, int layout) {                   \
        rnn_step_bt_t(y, hn, cn, hp, cp, xw, R, P, lens, lens64, step, S, B, H, dirs, reverse, kind, acts, clip, \
                      input_forget, layout);                                                                   \
    }                                                                                                         \
    extern "C" __global__ void gru_gates_bt_##sfx(float *zb, float *rh, const float *hp, const float *xw,      \
                                                  const T *R, long long step, long long S, long long B, int H, \
                                                  int dirs, int reverse, const long long *acts, float clip,    \
                                                  int lbr) {                                                   \
        gru_gates_bt_t(zb, rh, hp, xw, R, step, S, B, H, dirs, reverse, acts, clip, lbr);                      \
    }                                                                                                         \
    extern "C" __global__ void gru_step_bt_##sfx(T *y, float *hn, const float *hp, const float *zb,            \
                                                 const float *rh, const float *xw, const T *R, const T *bias,  \
                                                 const void *lens, int lens64, long long step, long long S,    \
                                                 long long B, int H, int dirs, int reverse,                    \
                                                 const long long *acts, float clip, int lbr, int layout) {     \
        gru_step_bt_t(y, hn, hp, zb, rh, xw, R, bias, lens, lens64, step, S, B, H, dirs, reverse, acts, clip,  \
                      lbr, layout);                                                                            \
    }                                                                                                         \
    extern "C" __global__ void rnn_final_##sfx(T *yh, T *yc, const float *h, const float *c, int dirs,         \
                                               long long B, int H, int layout) {                               \
        rnn_final_t(yh, yc, h, c, dirs, B, H, layout);                                                         \
    }
KILN_RNN(f32, float)
KILN_RNN(f16, kh)
