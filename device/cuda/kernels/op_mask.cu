// mask_affine_i64_f16: y = (s0 + sign * x) * s1 over n elements, x int64,
// y half: an integer attention mask cast to float, subtracted from (or
// added to) a constant and scaled, as BERT's extended attention mask
// ((1 - mask) * -10000), in one launch instead of three. Computed in
// float32, rounded once.
extern "C" __global__ void mask_affine_i64_f16(kiln_half *y, const long long *x, long long n, float s0, float sign, float s1) {
    GRID_STRIDE(i, n) { y[i] = f2h((s0 + sign * (float)x[i]) * s1); }
}
