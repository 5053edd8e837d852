package cuda

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// expandI8sSource is the staged successor of expand_i8 for the block's
// expanding 1x1 convolution in 8 bits (NOTES, "expand_i8s"):
//
//	y[p, n] = sat(round(relu(alpha[n] * sum_k x[p, k] w[n, k] + bias[n] + beta z[p, n])))
//
// x [P, K], w [N, K], z and y [P, N], all int8 (NHWC rows), alpha and bias
// float32 [N]; z may be null (no residual). Requires P % 128 == 0,
// N % 128 == 0 (% 256 for the wide variant), K % 32 == 0 and 16-byte
// aligned pointers (expandI8sFits).
//
// One block of 8 warps computes a tile of 128 rows x 128 channels; the
// grid is one-dimensional, (P/128)*(N/128) blocks, the channel block
// fastest so that the blocks sharing a row tile of x run together (x from
// L2 after the first). Warp w computes rows (w&3)*32 + [0, 32) and
// channels (w>>2)*64 + [0, 64): 2 x 8 mma.sync m16n8k32 (s8, s32
// accumulators) per 32-wide K step, fragments by ldmatrix.x4 from shared
// memory. x and w go through a 3-stage cp.async pipeline of 32-wide K
// slices (4 KB each, rows of 32 bytes, the two 16-byte halves swapped on
// rows 4-7 of every 8 so that ldmatrix is conflict-free). The residual tile
// (128 x 128 bytes, 16 KB, its 16-byte chunks XOR-swizzled by row & 7) is
// fetched by cp.async right after the first two K slices, so its read
// overlaps the product; the epilogue reads z from shared memory in the
// accumulators' layout, does the float math, writes the int8 result over z
// in place, and the tile leaves in coalesced 16-byte streaming stores
// (st.global.cs). z is read with an L2 evict-first hint (read once). 40 KB
// of static shared memory, __launch_bounds__(256, 2): two blocks per SM.
const expandI8sSource = `
#define BM 128
#define BN 128
#define NT 256
#define MINB 2
#define BK 32
#define STAGES 3
#define ZQ (BM * BN / 16 / NT)
#define ZSH (BN == 256 ? 4 : 3) // log2(BN / 16)

__device__ __forceinline__ unsigned smem_u32(const void* p) {
    return (unsigned)__cvta_generic_to_shared(p);
}
__device__ __forceinline__ void cp16(unsigned dst, const void* src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" :: "r"(dst), "l"(src));
}
__device__ __forceinline__ void cp16_first(unsigned dst, const void* src, unsigned long long pol) {
    asm volatile("cp.async.cg.shared.global.L2::cache_hint [%0], [%1], 16, %2;\n" :: "r"(dst), "l"(src), "l"(pol));
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;\n" ::); }
// a streaming 16-byte load (evict-first), volatile so that the compiler keeps
// it where it is issued (ahead of the product it overlaps)
__device__ __forceinline__ int4 ld_stream(const void* p) {
    int4 v;
    asm volatile("ld.global.cs.v4.s32 {%0,%1,%2,%3}, [%4];\n" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
    return v;
}
template <int N> __device__ __forceinline__ void cp_wait() { asm volatile("cp.async.wait_group %0;\n" :: "n"(N)); }

__device__ __forceinline__ void ldsm4(unsigned addr, unsigned& r0, unsigned& r1, unsigned& r2, unsigned& r3) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3) : "r"(addr));
}

// byte offset of (row, 16-byte chunk c in 0..1) in a K slice: rows of 32 bytes,
// the halves swapped on rows 4-7 of every 8 (ldmatrix reads 8 rows of one chunk)
__device__ __forceinline__ int kslice_off(int row, int c) {
    return row * BK + ((c ^ ((row >> 2) & 1)) << 4);
}
// byte offset of (row, 16-byte chunk c) in the BM x BN residual/output tile
__device__ __forceinline__ int tile_off(int row, int c) {
    return row * BN + ((c ^ (row & 7)) << 4);
}

// dynamic shared memory: STAGES K slices of x, then of w, then the tile
extern __shared__ __align__(128) signed char smem[];
#define SM_X (smem)
#define SM_W (smem + STAGES * BM * BK)
#define SM_Z (smem + STAGES * (BM + BN) * BK)

// the product's per-thread state: the smem address of this thread's 16-byte
// chunk of a K slice of x (cp.async; of w: + STAGES * BM * BK) and of its
// warp's first ldmatrix rows of x and w (the others 16 rows, 512 bytes, on:
// the swizzle repeats every 8 rows)
struct Operands {
    unsigned ld, a, b;
};

__device__ __forceinline__ Operands operands(int tid, int warp, int lane) {
    Operands o;
    o.ld = smem_u32(SM_X) + kslice_off(tid >> 1, tid & 1);
    // A (x): matrices (rows 0-7 | 8-15) x (k 0-15 | 16-31);
    // B (w): (n 0-7, k 0-15), (n 0-7, k 16-31), (n 8-15, k 0-15), (n 8-15, k 16-31)
    const int wm = (warp & 3) * 32, wn = (warp >> 2) * 64;
    const int arow = (lane & 7) + ((lane >> 3) & 1) * 8, ac = lane >> 4;
    const int brow = (lane & 7) + (lane >> 4) * 8, bc = (lane >> 3) & 1;
    o.a = smem_u32(SM_X) + kslice_off(wm + arow, ac);
    o.b = smem_u32(SM_W) + kslice_off(wn + brow, bc);
    return o;
}

// issue K slice ks of the tile's x rows and w rows into stage buffer s
// (thread tid copies chunk tid of each, BM * 2 and BN * 2 chunks)
__device__ __forceinline__ void load_slice(const Operands& o, const signed char* xg, const signed char* wg, int s, int ks, int tid) {
    if (NT <= BM * 2 || tid < BM * 2)
        cp16(o.ld + s * (BM * BK), xg + ks * BK);
    if (NT <= BN * 2 || tid < BN * 2)
        cp16(o.ld + STAGES * BM * BK + s * (BN * BK), wg + ks * BK);
}

// 2 x 8 mma.sync m16n8k32 over the K slice in stage buffer s
__device__ __forceinline__ void mma_slice(int (&acc)[2][8][4], const Operands& o, int s) {
    unsigned a[2][4], b[8][2];
#pragma unroll
    for (int i = 0; i < 2; i++)
        ldsm4(o.a + i * (16 * BK) + s * (BM * BK), a[i][0], a[i][1], a[i][2], a[i][3]);
#pragma unroll
    for (int jj = 0; jj < 4; jj++)
        ldsm4(o.b + jj * (16 * BK) + s * (BN * BK), b[2 * jj][0], b[2 * jj][1], b[2 * jj + 1][0], b[2 * jj + 1][1]);
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 8; j++)
            asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                         : "+r"(acc[i][j][0]), "+r"(acc[i][j][1]), "+r"(acc[i][j][2]), "+r"(acc[i][j][3])
                         : "r"(a[i][0]), "r"(a[i][1]), "r"(a[i][2]), "r"(a[i][3]), "r"(b[j][0]), "r"(b[j][1]));
}

// the epilogue in the accumulators' layout, (row g, channels 2t, 2t+1) and
// row g + 8: reads z from the tile in shared memory, writes y over it
__device__ __forceinline__ void epilogue(int (&acc)[2][8][4], signed char* zs, const float* alpha, const float* bias,
                                         float beta, bool hasz, int n0, int warp, int lane) {
    const int wm = (warp & 3) * 32, wn = (warp >> 2) * 64;
    const int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int j = 0; j < 8; j++) {
        const int col = wn + j * 8 + t * 2;
        const float2 al = __ldg((const float2*)(alpha + n0 + col));
        const float2 bi = __ldg((const float2*)(bias + n0 + col));
#pragma unroll
        for (int i = 0; i < 2; i++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int row = wm + i * 16 + g + h * 8;
                short* zp = (short*)(zs + tile_off(row, col >> 4) + (col & 15));
                float z0 = 0.f, z1 = 0.f;
                if (hasz) {
                    const short zz = *zp;
                    z0 = (float)(signed char)(zz & 0xff);
                    z1 = (float)(signed char)(zz >> 8);
                }
                const float v0 = fmaxf((float)acc[i][j][2 * h] * al.x + bi.x + beta * z0, 0.f);
                const float v1 = fmaxf((float)acc[i][j][2 * h + 1] * al.y + bi.y + beta * z1, 0.f);
                const int q0 = (int)fminf(rintf(v0), 127.f), q1 = (int)fminf(rintf(v1), 127.f);
                *zp = (short)((q0 & 0xff) | (q1 << 8));
            }
    }
}

// the output tile from shared memory to y in coalesced 16-byte streaming stores
__device__ __forceinline__ void store_tile(signed char* y, const signed char* zs, long long p0, int n0, int N, int tid) {
#pragma unroll
    for (int q = 0; q < ZQ; q++) {
        const int i = tid + q * NT, row = i >> ZSH, c = i & (BN / 16 - 1);
        const int4 v = *(const int4*)(zs + tile_off(row, c));
        __stcs((int4*)(y + (p0 + row) * N + n0 + c * 16), v);
    }
}

__device__ __forceinline__ void zero(int (&acc)[2][8][4]) {
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 8; j++)
            acc[i][j][0] = acc[i][j][1] = acc[i][j][2] = acc[i][j][3] = 0;
}

// One tile per block; the grid (P/128)*(N/128), the channel block fastest.
extern "C" __global__ void __launch_bounds__(NT, MINB) expand_i8s(
    signed char* __restrict__ y, const signed char* __restrict__ x, const signed char* __restrict__ w,
    const signed char* __restrict__ z, const float* __restrict__ alpha, const float* __restrict__ bias,
    float beta, int K, int N)
{

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int nblk = N / BN;
    const int n0 = (blockIdx.x % nblk) * BN;
    const long long p0 = (long long)(blockIdx.x / nblk) * BM;
    const int KT = K / BK;
    const Operands o = operands(tid, warp, lane);
    signed char* const zs = SM_Z;
    const signed char* xg = x + (p0 + (tid >> 1)) * K + (tid & 1) * 16;
    const signed char* wg = w + (long long)(n0 + (tid >> 1)) * K + (tid & 1) * 16;

#pragma unroll
    for (int s = 0; s < STAGES - 1; s++) {
        if (s < KT)
            load_slice(o, xg, wg, s, s, tid);
        cp_commit();
    }
    // the residual tile, independent of the product: its own group, after the first slices
    if (z) {
        unsigned long long pol;
        asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(pol));
#pragma unroll
        for (int q = 0; q < ZQ; q++) {
            const int i = tid + q * NT, row = i >> ZSH, c = i & (BN / 16 - 1);
            cp16_first(smem_u32(zs) + tile_off(row, c), z + (p0 + row) * N + n0 + c * 16, pol);
        }
    }
    cp_commit();

    int acc[2][8][4];
    zero(acc);
    for (int kt = 0; kt < KT; kt++) {
        // groups committed so far: STAGES-1 slices, z, then one per earlier iteration
        if (kt < STAGES - 1)
            cp_wait<STAGES - 1>();
        else
            cp_wait<STAGES - 2>();
        __syncthreads();
        const int ld = kt + STAGES - 1;
        if (ld < KT)
            load_slice(o, xg, wg, ld % STAGES, ld, tid);
        cp_commit();
        mma_slice(acc, o, kt % STAGES);
    }
    cp_wait<0>();
    __syncthreads();
    epilogue(acc, zs, alpha, bias, beta, z != 0, n0, warp, lane);
    __syncthreads();
    store_tile(y, zs, p0, n0, N, tid);
}

// Persistent: block b computes tiles b, b + gridDim.x, ... of the
// (P/128)*(N/128) (the channel block fastest). The next tile's residual is
// read into registers (16 per thread, streaming loads) at the start of the
// current tile's product, so that its read overlaps the product, the
// epilogue and the output's stores, and is written to shared memory once
// the output tile has left; the next tile's first K slices are issued
// before that.
extern "C" __global__ void __launch_bounds__(NT, MINB) expand_i8p(
    signed char* __restrict__ y, const signed char* __restrict__ x, const signed char* __restrict__ w,
    const signed char* __restrict__ z, const float* __restrict__ alpha, const float* __restrict__ bias,
    float beta, int K, int N, int tiles)
{

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    int tile = blockIdx.x;
    if (tile >= tiles)
        return;
    const int nblk = N / BN;
    const int KT = K / BK;
    const bool hasz = z != 0;
    const Operands o = operands(tid, warp, lane);
    signed char* const zs = SM_Z;

    int n0 = (tile % nblk) * BN;
    long long p0 = (long long)(tile / nblk) * BM;
    const signed char* xg = x + (p0 + (tid >> 1)) * K + (tid & 1) * 16;
    const signed char* wg = w + (long long)(n0 + (tid >> 1)) * K + (tid & 1) * 16;
    int4 zr[ZQ];
    if (hasz) {
#pragma unroll
        for (int q = 0; q < ZQ; q++) {
            const int i = tid + q * NT, row = i >> ZSH, c = i & (BN / 16 - 1);
            zr[q] = ld_stream(z + (p0 + row) * N + n0 + c * 16);
        }
    }
#pragma unroll
    for (int s = 0; s < STAGES - 1; s++) {
        if (s < KT)
            load_slice(o, xg, wg, s, s, tid);
        cp_commit();
    }
    if (hasz) {
#pragma unroll
        for (int q = 0; q < ZQ; q++) {
            const int i = tid + q * NT, row = i >> ZSH, c = i & (BN / 16 - 1);
            *(int4*)(zs + tile_off(row, c)) = zr[q];
        }
    }
    for (;;) {
        const int next = tile + gridDim.x;
        const int nn0 = (next % nblk) * BN;
        const long long np0 = (long long)(next / nblk) * BM;
        if (hasz && next < tiles) {
#pragma unroll
            for (int q = 0; q < ZQ; q++) {
                const int i = tid + q * NT, row = i >> ZSH, c = i & (BN / 16 - 1);
                zr[q] = ld_stream(z + (np0 + row) * N + nn0 + c * 16);
            }
        }
        int acc[2][8][4];
        zero(acc);
        for (int kt = 0; kt < KT; kt++) {
            // groups committed for this tile: STAGES-1 slices, then one per earlier iteration
            cp_wait<STAGES - 2>();
            __syncthreads();
            const int ld = kt + STAGES - 1;
            if (ld < KT)
                load_slice(o, xg, wg, ld % STAGES, ld, tid);
            cp_commit();
            mma_slice(acc, o, kt % STAGES);
        }
        cp_wait<0>();
        __syncthreads();
        epilogue(acc, zs, alpha, bias, beta, hasz, n0, warp, lane);
        __syncthreads();
        store_tile(y, zs, p0, n0, N, tid);
        if (next >= tiles)
            break;
        tile = next, n0 = nn0, p0 = np0;
        xg = x + (p0 + (tid >> 1)) * K + (tid & 1) * 16;
        wg = w + (long long)(n0 + (tid >> 1)) * K + (tid & 1) * 16;
#pragma unroll
        for (int s = 0; s < STAGES - 1; s++) {
            if (s < KT)
                load_slice(o, xg, wg, s, s, tid);
            cp_commit();
        }
        __syncthreads(); // every thread's y stores have read the tile
        if (hasz) {
#pragma unroll
            for (int q = 0; q < ZQ; q++) {
                const int i = tid + q * NT, row = i >> ZSH, c = i & (BN / 16 - 1);
                *(int4*)(zs + tile_off(row, c)) = zr[q];
            }
        }
    }
}
`

// expandI8sVariant returns the source of expand_i8s and expand_i8p with
// bn-channel tiles (128: expandI8sSource itself, 8 warps, two blocks per
// SM; 256: kernels expand_i8s256 and expand_i8p256, 16 warps of the same
// 32 x 64 warp tiles, one block per SM, x's row tile read half as often) and
// the bytes of dynamic shared memory its blocks take.
func expandI8sVariant(bn int) (src string, smem int) {
	smem = 3*(128+bn)*32 + 128*bn // STAGES K slices of x and w, then the tile
	if bn == 128 {
		return expandI8sSource, smem
	}
	src = strings.Replace(expandI8sSource, "#define BN 128\n#define NT 256\n#define MINB 2\n",
		fmt.Sprintf("#define BN %d\n#define NT %d\n#define MINB 1\n", bn, bn*2), 1)
	for _, k := range []string{"expand_i8s", "expand_i8p"} {
		src = strings.Replace(src, k+"(", fmt.Sprintf("%s%d(", k, bn), 1)
	}
	return src, smem
}

// expandI8sFits reports whether expand_i8s and expand_i8p with bn-channel
// tiles compute a [P, K] x [N, K] product: P and N multiples of the
// 128 x bn tile, K of the 32-wide slice.
func expandI8sFits(p, k, n, bn int) bool {
	return p > 0 && k > 0 && n > 0 && p%128 == 0 && n%bn == 0 && k%32 == 0
}

// TestExpandI8sFits pins the shapes expand_i8s takes: the block's two
// expanding layers at batch 256 and not the shapes whose tiles would run
// past the tensors.
func TestExpandI8sFits(t *testing.T) {
	for _, c := range []struct {
		p, k, n, bn int
		want        bool
	}{
		{256 * 56 * 56, 64, 256, 128, true},
		{256 * 14 * 14, 256, 1024, 128, true},
		{256 * 56 * 56, 64, 256, 256, true},
		{256 * 14 * 14, 256, 1024, 256, true},
		{1 * 14 * 14, 256, 1024, 128, false}, // 196 rows
		{256 * 56 * 56, 48, 256, 128, false},
		{256 * 56 * 56, 64, 192, 128, false},
		{256 * 56 * 56, 64, 384, 256, false},
		{0, 64, 256, 128, false},
	} {
		if got := expandI8sFits(c.p, c.k, c.n, c.bn); got != c.want {
			t.Errorf("expandI8sFits(%d, %d, %d, %d) = %v, want %v", c.p, c.k, c.n, c.bn, got, c.want)
		}
	}
}

// compileExpand compiles one of the expanding kernels' sources for arch
// with ptxas's report and fails the test on an error, an empty cubin or
// spilled registers. Where this NVRTC does not know arch (11.8 and sm_90a)
// it logs that and returns nil.
func compileExpand(t *testing.T, n *NVRTC, file, src, arch string) *Compiled {
	t.Helper()
	c, err := n.Compile(file, src, "--gpu-architecture="+arch, "--ptxas-options=-v")
	if err != nil {
		if strings.Contains(err.Error(), "invalid value for --gpu-architecture") {
			t.Logf("%s, %s: NVRTC without it: %v", file, arch, err)
			return nil
		}
		t.Fatalf("%s, %s: %v", file, arch, err)
	}
	if len(c.CUBIN) == 0 {
		t.Errorf("%s, %s: no cubin", file, arch)
	}
	t.Logf("%s, %s: %s", file, arch, c.Log)
	if spill := regexp.MustCompile(`[1-9][0-9]* bytes spill`).FindString(c.Log); spill != "" {
		t.Errorf("%s, %s: %s:\n%s", file, arch, spill, c.Log)
	}
	return c
}

// TestExpandI8sCompiles compiles expandI8sSource (expand_i8s and
// expand_i8p) with NVRTC for Ampere and Hopper (cp.async, ldmatrix and the
// mma.sync INT8 form run on both) and fails if ptxas spills registers.
// Without NVRTC it skips.
func TestExpandI8sCompiles(t *testing.T) {
	n := openNVRTC(t)
	for _, bn := range []int{128, 256} {
		src, smem := expandI8sVariant(bn)
		if want := map[int]int{128: 40960, 256: 69632}[bn]; smem != want {
			t.Errorf("bn %d: %d bytes of shared memory, want %d", bn, smem, want)
		}
		for _, name := range []string{"expand_i8s", "expand_i8p"} {
			if bn != 128 {
				name += strconv.Itoa(bn)
			}
			if !strings.Contains(src, " "+name+"(") {
				t.Errorf("bn %d: no kernel %s", bn, name)
			}
		}
		for _, arch := range []string{"sm_80", "sm_90"} {
			compileExpand(t, n, fmt.Sprintf("expand_i8s%d.cu", bn), src, arch)
		}
	}
}
