// 3-D convolution and pooling (package gpuexec, op_conv3d.go), direct
// kernels over NCDHW, one thread per output element, float32 accumulation
// (_f32, _f16 and _f64 with double). g is the geometry as int64:
// {N, C, D, H, W, M, OD, OH, OW, KD, KH, KW, SD, SH, SW, PD, PH, PW, DD, DH,
// DW, G} (pooling: M = C, G = C). Uses op.cu's helpers.

template <typename T>
__device__ void conv3d_t(T *y, const T *x, const T *w, const T *bias, const long long *g) {
    long long N = g[0], C = g[1], D = g[2], H = g[3], W = g[4], M = g[5], OD = g[6], OH = g[7], OW = g[8];
    long long KD = g[9], KH = g[10], KW = g[11], SD = g[12], SH = g[13], SW = g[14], PD = g[15], PH = g[16],
              PW = g[17], DD = g[18], DH = g[19], DW = g[20], G = g[21];
    long long cpg = C / G, mpg = M / G, total = N * M * OD * OH * OW;
    GRID_STRIDE(i, total) {
        long long t = i, ow = t % OW;
        t /= OW;
        long long oh = t % OH;
        t /= OH;
        long long od = t % OD;
        t /= OD;
        long long m = t % M, n = t / M, gi = m / mpg;
        typename kct<T>::t acc = bias ? kld(bias, m) : 0;
        for (long long c = 0; c < cpg; c++) {
            long long xc = (n * C + gi * cpg + c) * D * H * W, wc = (m * cpg + c) * KD * KH * KW;
            for (long long kd = 0; kd < KD; kd++) {
                long long id = od * SD - PD + kd * DD;
                if (id < 0 || id >= D) continue;
                for (long long kh = 0; kh < KH; kh++) {
                    long long ih = oh * SH - PH + kh * DH;
                    if (ih < 0 || ih >= H) continue;
                    for (long long kw = 0; kw < KW; kw++) {
                        long long iw = ow * SW - PW + kw * DW;
                        if (iw < 0 || iw >= W) continue;
                        acc += kld(x, xc + (id * H + ih) * W + iw) * kld(w, wc + (kd * KH + kh) * KW + kw);
                    }
                }
            }
        }
        kst(y, i, acc);
    }
}

// pool3d: mode 0 max, 1 average over the window's elements inside the
// input, 2 average over the whole window (count_include_pad), where the
// window is clipped to the padded input (end pads PE*).
template <typename T>
__device__ void pool3d_t(T *y, const T *x, const long long *g, long long PED, long long PEH, long long PEW,
                         int mode) {
    long long N = g[0], C = g[1], D = g[2], H = g[3], W = g[4], OD = g[6], OH = g[7], OW = g[8];
    long long KD = g[9], KH = g[10], KW = g[11], SD = g[12], SH = g[13], SW = g[14], PD = g[15], PH = g[16],
              PW = g[17], DD = g[18], DH = g[19], DW = g[20];
    long long total = N * C * OD * OH * OW;
    GRID_STRIDE(i, total) {
        long long t = i, ow = t % OW;
        t /= OW;
        long long oh = t % OH;
        t /= OH;
        long long od = t % OD;
        long long nc = t / OD, xc = nc * D * H * W;
        typename kct<T>::t acc = 0;
        bool any = false;
        long long cnt = 0, padded = 0;
        for (long long kd = 0; kd < KD; kd++) {
            long long id = od * SD - PD + kd * DD;
            bool okd = id >= 0 && id < D, ind = id >= -PD && id < D + PED;
            for (long long kh = 0; kh < KH; kh++) {
                long long ih = oh * SH - PH + kh * DH;
                bool okh = ih >= 0 && ih < H, inh = ih >= -PH && ih < H + PEH;
                for (long long kw = 0; kw < KW; kw++) {
                    long long iw = ow * SW - PW + kw * DW;
                    bool okw = iw >= 0 && iw < W, inw = iw >= -PW && iw < W + PEW;
                    if (ind && inh && inw) padded++;
                    if (!(okd && okh && okw)) continue;
                    typename kct<T>::t v = kld(x, xc + (id * H + ih) * W + iw);
                    if (mode == 0) {
                        acc = (!any || v > acc || v != v) ? v : acc;
                    } else {
                        acc += v;
                    }
                    any = true;
                    cnt++;
                }
            }
        }
        if (mode == 1) acc = cnt > 0 ? acc / (typename kct<T>::t)cnt : 0;
        if (mode == 2) acc = padded > 0 ? acc / (typename kct<T>::t)padded : 0;
        kst(y, i, acc);
    }
}

#define KILN_CONV3D(sfx, T)                                                                                   \
    extern "C" __global__ void conv3d_##sfx(T *y, const T *x, const T *w, const T *bias, const long long *g) { \
        conv3d_t(y, x, w, bias, g);                                                                           \
    }                                                                                                         \
    extern "C" __global__ void pool3d_##sfx(T *y, const T *x, const long long *g, long long PED, long long PEH, \
                                            long long PEW, int mode) {                                        \
        pool3d_t(y, x, g, PED, PEH, PEW, mode);                                                               \
    }
KILN_CONV3D(f32, float)
KILN_CONV3D(f16, kh)
KILN_CONV3D(f64, double)
