package cuda

import (
	"strings"
	"testing"
)

// expandI8Source is a first kernel of kiln's own for the block's
// expanding 1x1 convolution in 8 bits, the layer no library streams fast
// (NOTES, "one bottleneck block with every tensor in 8 bits"):
//
//	y[p, n] = sat(round(relu(alpha[n] * sum_k x[p, k] w[n, k] + bias[n] + beta z[p, n])))
//
// x [P, K], w [N, K], z and y [P, N], all int8 (NHWC rows), alpha and bias
// float32 [N]; P a multiple of 64, N of 128, K of 32. A block of 8 warps
// computes 64 rows x 128 channels; each warp 16 x 64 with mma.sync m16n8k32
// (s8, s32 accumulators), its fragments read straight from global memory
// (x and w are the small operands), then the scaled accumulators go
// through shared memory so that the residual is read and the output
// written in 16-byte vectors, 64 contiguous bytes per row. With z null the
// residual is left out. Measured by TestInt8ExpandProbeOnGPU; not yet an
// executor tactic.
const expandI8Source = `
extern "C" __global__ void __launch_bounds__(256) expand_i8(
    signed char* __restrict__ y, const signed char* __restrict__ x, const signed char* __restrict__ w,
    const signed char* __restrict__ z, const float* __restrict__ alpha, const float* __restrict__ bias,
    float beta, int K, int N)
{
    __shared__ float tile[8][16][68];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int g = lane >> 2, t = lane & 3;
    const long long p0 = (long long)blockIdx.x * 64 + (warp & 3) * 16;
    const int n0 = blockIdx.y * 128 + (warp >> 2) * 64;
    int acc[8][4];
#pragma unroll
    for (int j = 0; j < 8; j++)
        acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0;
    const signed char* xa = x + (p0 + g) * K + t * 4;
    const signed char* xb = xa + 8LL * K;
    for (int k0 = 0; k0 < K; k0 += 32) {
        unsigned a0 = *(const unsigned*)(xa + k0);
        unsigned a1 = *(const unsigned*)(xb + k0);
        unsigned a2 = *(const unsigned*)(xa + k0 + 16);
        unsigned a3 = *(const unsigned*)(xb + k0 + 16);
#pragma unroll
        for (int j = 0; j < 8; j++) {
            const signed char* wn = w + (long long)(n0 + j * 8 + g) * K + k0 + t * 4;
            unsigned b0 = __ldg((const unsigned*)wn);
            unsigned b1 = __ldg((const unsigned*)(wn + 16));
            asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                         : "+r"(acc[j][0]), "+r"(acc[j][1]), "+r"(acc[j][2]), "+r"(acc[j][3])
                         : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
        }
    }
#pragma unroll
    for (int j = 0; j < 8; j++) {
        const int c = j * 8 + t * 2;
        const float al0 = alpha[n0 + c], al1 = alpha[n0 + c + 1], bi0 = bias[n0 + c], bi1 = bias[n0 + c + 1];
        tile[warp][g][c] = (float)acc[j][0] * al0 + bi0;
        tile[warp][g][c + 1] = (float)acc[j][1] * al1 + bi1;
        tile[warp][g + 8][c] = (float)acc[j][2] * al0 + bi0;
        tile[warp][g + 8][c + 1] = (float)acc[j][3] * al1 + bi1;
    }
    __syncwarp();
#pragma unroll
    for (int i = lane; i < 64; i += 32) {
        const int r = i >> 2, c = (i & 3) * 16;
        const long long off = (p0 + r) * N + n0 + c;
        int4 zv = make_int4(0, 0, 0, 0);
        if (z) zv = __ldg((const int4*)(z + off));
        const signed char* zb = (const signed char*)&zv;
        int4 out;
        signed char* ob = (signed char*)&out;
#pragma unroll
        for (int q = 0; q < 16; q++) {
            float v = fmaxf(tile[warp][r][c + q] + beta * (float)zb[q], 0.f);
            ob[q] = (signed char)(int)fminf(rintf(v), 127.f);
        }
        *(int4*)(y + off) = out;
    }
}
`

// TestExpandI8Compiles compiles expandI8Source with NVRTC for Ampere and
// Hopper (the mma.sync INT8 form both run). Without NVRTC it skips.
func TestExpandI8Compiles(t *testing.T) {
	n := openNVRTC(t)
	for _, arch := range []string{"sm_80", "sm_90"} {
		c, err := n.Compile("expand_i8.cu", expandI8Source, "--gpu-architecture="+arch)
		if err != nil {
			if strings.Contains(err.Error(), "invalid value for --gpu-architecture") {
				t.Logf("%s: %v", arch, err)
				continue
			}
			t.Fatalf("%s: %v", arch, err)
		}
		if len(c.CUBIN) == 0 {
			t.Errorf("%s: no cubin", arch)
		}
	}
}
