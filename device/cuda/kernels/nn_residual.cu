// row_epilogue_vec_f16 with a residual: y = act(y + bias[col] + z) over
// total elements in rows of cols (cols % 8 == 0; bias optional; z of y's
// shape), 8 halves a thread. It finishes a product whose residual Add is
// folded in (the product's output then holds the Add's sum) when cuBLASLt
// does not add the residual through its C matrix.
extern "C" __global__ void row_epilogue_res_vec_f16(kiln_half *y, const kiln_half *bias, const kiln_half *z,
                                                    long long total, int cols, int act, float p0, float p1) {
    KILN_PDL_WAIT();
    GRID_STRIDE(i, total / 8) {
        float v[8], r[8];
        uint4 *p = (uint4 *)y + i;
        vh_unpack(*p, v);
        vh_unpack(((const uint4 *)z)[i], r);
        if (bias) {
            float b[8];
            vh_unpack(*(const uint4 *)(bias + (i * 8) % cols), b);
#pragma unroll
            for (int e = 0; e < 8; e++) v[e] += b[e];
        }
#pragma unroll
        for (int e = 0; e < 8; e++) v[e] = act_apply(v[e] + r[e], act, p0, p1);
        *p = vh_pack(v);
    }
}
