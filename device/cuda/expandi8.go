package cuda

import (
	"fmt"
	"strings"
)

// expand_i8u2 and its family (the kernels the probe in int8expand_tma_test.go
// and int8block_probe_gpu_test.go measured, NOTES "expand_i8t" onwards): the
// source, the variants' parameters, the shapes they take and their tensor
// maps. Moved out of the probe's test file so that the executor (gpuexec,
// op_conv1x1_i8x.go) builds expand_i8u2 as a tactic; the probe uses them
// from here. The exported entry points are at the end.
// expandI8tSource returns expand_i8t, the persistent, warp-specialised
// successor of expand_i8s / expand_i8g for the block's expanding 1x1
// convolution in 8 bits (NOTES, "expand_i8t"):
//
//	y[p, n] = sat(round(relu(alpha[n] * sum_k x[p, k] w[n, k] + bias[n] + beta z[p, n])))
//
// x [P, K], w [N, K], z and y [P, N] int8 NHWC rows, alpha and bias float32
// [N]. Requires P % 128 == 0, N % 128 == 0, K % 64 == 0 (expandI8tFits),
// sm_90a.
//
// A grid of one block per SM (two for expand_i8t2, with shallower rings:
// expandI8tVariant) walks the (P/128)*(N/128) tiles of 128 rows x
// 128 channels (tiles b, b + grid, ..., the channel block fastest). Each
// block is 9 warps: warps 0-7 are two consumer warpgroups, warp 8 the
// producer. The producer's one thread issues every load by the bulk tensor
// copy engine (cp.async.bulk.tensor) onto mbarriers, running ahead of the
// consumers by as much as the rings allow: x and w in 64-byte K slices
// (8 KB each, a 6-stage ring; K = 64 is one slice) and the residual tile
// (16 KB, 128-byte rows in the 128-byte swizzle, a 4-buffer ring), so that
// the next tiles' loads overlap this tile's product, epilogue and store.
// Each consumer warpgroup computes 64 rows x 128 channels with two
// wgmma.mma_async m64n128k32 s8 per slice, reading x and w from shared
// memory through descriptors, then releases the slice; the epilogue reads
// z in the accumulators' layout from its buffer, writes y over it in place,
// and one thread stores the tile by the copy engine (the 128-byte swizzle
// again), releasing the buffer to the producer once the store has read it
// (a tile later, cp.async.bulk.wait_group.read 1). z is read with an L2
// evict-first policy (read once). Waits on a barrier give
// up after about 2^32 clocks (~2 s) with a trap, so that a wrong byte count
// or map ends the launch with an error rather than hanging the device.
//
// The slices' layout is the variant's: swizzled, x and w 2-D maps of
// 64-byte rows in the 64-byte swizzle (descriptor layout type 2, 512 bytes
// between 8-row groups, the k32 step +32 bytes inside the swizzle atom); or
// not (name expand_i8t_ns), four copies a slice of boxes 16 bytes wide, so
// that each 16-byte column of a slice is 128 rows x 16 bytes (the core matrices of
// wgmma's K-major layout without swizzle: leading byte offset 2048, the
// step along K; stride byte offset 128, the step between 8-row groups, the
// assignment the H100 confirmed for expand_i8g).
//
// Parameters: the four tensor maps (x, w, z, y) in device memory, alpha,
// bias, beta, hasz (bit 0: the residual; bit 1: no ReLU, the output
// clamped to [-128, 127], a downsample's), K, N, the tile count.
func expandI8tSource(v expandI8tVariant) string {
	// m64nBNk32: BN/2 accumulators a thread, then the descriptors and the scale-d flag
	var outs, regs []string
	acc := v.bn() / 2
	for i := range acc {
		outs = append(outs, fmt.Sprintf("\"+r\"(d[%d])", i))
		regs = append(regs, fmt.Sprintf("%%%d", i))
	}
	wgmma := fmt.Sprintf(`asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %%%d, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n%dk32.s32.s8.s8 {%s}, %%%d, %%%d, p;\n}\n"
        : %s
        : "l"(da), "l"(db), "r"(1));`, acc+2, v.bn(), strings.Join(regs, ","), acc, acc+1, strings.Join(outs, ", "))
	b := func(v bool) string {
		if v {
			return "1"
		}
		return "0"
	}
	slices, tiles := v.stages()
	xparams := ""
	if v.conv3 {
		xparams = ", int H, int W"
	}
	return strings.NewReplacer("$NAME", v.name, "$CONV3", b(v.conv3), "$CSTRIDE", map[bool]string{false: "1", true: "2"}[v.stride2], "$BN", fmt.Sprint(v.bn()), "$XPARAMS", xparams, "$SWZ", b(v.swizzled), "$FASTCVT", b(v.fastCvt), "$BIGK", b(v.bigK), "$MC", b(v.multicast),
		"$STAGES", fmt.Sprint(slices), "$ZS", fmt.Sprint(tiles), "$MINB", fmt.Sprint(v.perSM), "$TEAMS", fmt.Sprint(v.teamCount()),
		"$EARLYZ", b(v.earlyZ), "$WGDEPTH", fmt.Sprint(max(v.wgDepth, 1)), "$BK", fmt.Sprint(v.bk()), "$ABLATE", b(v.productOnly), "$WGMMA", wgmma).Replace(expandI8tTemplate)
}

// expandI8tVariant is one build of expand_i8t: its kernel's name, the
// slices' layout (swizzled or not), the blocks an SM runs (1: rings of
// 6 slices and 4 tiles, 165 KB of shared memory; 2: 3 and 3, 97 KB each,
// so that one block's epilogue overlaps the other's product), and whether
// the epilogue converts without the conversion unit (fastCvt: the
// expand_i8u builds, NOTES "expand_i8u"): the accumulator and z to float
// and the result to 8 bits by integer and float adds of 1.5 * 2^23
// (exact for accumulators within +-2^22, so for K <= 256; above that the
// kernel takes the I2F path), instead of four I2F/FRND/F2I an output,
// which run at 16 a clock on an SM against 64-128 for the adds. multicast
// (expand_i8m2, needs the swizzle): clusters of two CTAs take the two
// channel blocks of a row block together, and each loads half of x's K
// slice (64 rows) into both CTAs' shared memory by one multicast copy, so
// that x crosses from L2 to the SMs once a pair instead of twice.
//
// The 14x14 builds of 2026-12-07's third run (NOTES "expand_i8v2 and
// expand_i8w"): ring overrides the ring depths (slices, tiles); earlyZ
// releases a tile's buffer as soon as its store has read it (checked before
// the next epilogue) instead of after the next tile's store; teams 2 (the
// ping-pong build): one block an SM with two teams of two consumer
// warpgroups that take alternate tiles, a team's product starting only once
// the other's is issued, so that one team's product overlaps the other's
// epilogue. settled: timed only with KILN_INT8X_ALL=1; late: timed in the
// probe's second pass (the 14x14 shape first), after every other row.
type expandI8tVariant struct {
	name      string
	swizzled  bool
	perSM     int
	fastCvt   bool
	multicast bool
	ring      [2]int
	earlyZ    bool
	teams     int
	settled   bool
	late      bool
	// run 4's questions (NOTES "the product runs at ~40% of the tensor
	// peak"): wgDepth 2 keeps two wgmma groups in flight (a slice released
	// two slices late, wait_group 2) instead of one; productOnly replaces the
	// epilogue by packing the accumulators' low bytes (no residual, no float
	// math: an ablation that measures the mainloop, its output not checked)
	wgDepth     int
	productOnly bool
	// bigK (with fastCvt): for K > 256 the epilogue converts only the
	// accumulator (I2F) and keeps z's bytes and the rounding conversion-free
	// (one conversion an output instead of four; expand_i8u2 since the
	// reducing 1x1s run it, K = 512..2048); without it K > 256 takes the
	// I2F/FRND/F2I epilogue
	bigK bool
	// conv3 (conv3_i8u2, conv3i8.go): x is the NHWC input of a 3x3
	// convolution with padding 1 (stride 1, or 2 with stride2), loaded by
	// im2col copies (a 4-D map, maps[0]), K = 9 C in the weights' [N, 3, 3,
	// C] order, each K slice one tap (r, s) and 64 channels; the kernel
	// takes the output's height and width as two more arguments (int H, int
	// W) and the row count P = N H W need not be a multiple of 128 (the last
	// tile's rows past P read zeros and are not stored)
	conv3 bool
	// n64: tiles of 128 rows x 64 channels (wgmma m64n64k32, 32
	// accumulators a thread; w's slices 64 rows, z and y tiles of 64-byte
	// rows in the 64-byte swizzle), for N = 64 (ResNet's layer1); the
	// slices' ring keeps 8 KB slots
	n64 bool
	// stride2 (with conv3): stride 2, the im2col map's traversal stride 2;
	// the H and W arguments are the output's, the filter base of output
	// pixel (oh, ow) is the input's (2 ow - 1, 2 oh - 1)
	stride2 bool
	// k128 (expandk128.go; needs swizzled, not multicast or n64): x's and
	// w's K slices are 128 bytes (128 rows x 128 bytes, 16 KB, in the
	// 128-byte swizzle: tensor-map boxes of 128 x 128, descriptors of
	// layout type 1 with 1,024 bytes between 8-row groups), four k32 wgmma
	// steps a slice committed as one group; for conv3 a slice is one tap
	// and 128 channels (C % 128 == 0)
	k128 bool
}

// bk is the variant's K slice in bytes: 64, or 128 for k128.
func (v expandI8tVariant) bk() int {
	if v.k128 {
		return 128
	}
	return 64
}

// bn is the variant's tile width in channels: 64 or 128.
func (v expandI8tVariant) bn() int {
	if v.n64 {
		return 64
	}
	return 128
}

// teamCount is the teams of consumer warpgroup pairs (1 unless the ping-pong build).
func (v expandI8tVariant) teamCount() int {
	return max(v.teams, 1)
}

// threads is a block's threads: 256 consumers a team and the producer warp.
func (v expandI8tVariant) threads() int {
	return 256*v.teamCount() + 32
}

// xRows is the rows of x's box: 64 for the multicast build (each CTA of a
// pair loads half of the slice), else 128.
func (v expandI8tVariant) xRows() int {
	if v.multicast {
		return 64
	}
	return 128
}

// stages returns the depth of the K-slice ring and of the tile ring.
func (v expandI8tVariant) stages() (slices, tiles int) {
	if v.ring[0] > 0 {
		return v.ring[0], v.ring[1]
	}
	if v.perSM == 2 {
		return 3, 3
	}
	return 6, 4
}

// smem is the variant's dynamic shared memory: the K slices of x and of w
// (8 KB each, 16 KB for k128), the residual/output tiles (16 KB each), the
// barriers, and 1 KB to align the base to 1,024 bytes.
func (v expandI8tVariant) smem() int {
	slices, tiles := v.stages()
	return 2*slices*128*v.bk() + tiles*128*v.bn() + 8*(2*slices+2*tiles+2*(v.teamCount()-1)) + 1024
}

const expandI8tTemplate = `
#define SWZ $SWZ
#define FASTCVT $FASTCVT
#define BIGK $BIGK          // FASTCVT and K > 256: I2F for the accumulator, the rest conversion-free
#define MC $MC              // clusters of two CTAs sharing x's slices by multicast
#define CONV3 $CONV3        // x by im2col copies: a 3x3 convolution, padding 1 (conv3_i8u2)
#define CSTRIDE $CSTRIDE    // its stride (the im2col map's traversal stride): 1 or 2
#define BM 128
#define BN $BN             // the tile's channels: 128, or 64 (n64: wgmma m64n64k32)
#define BK $BK             // bytes of a K slice: 64 (the 64-byte swizzle) or 128 (k128: the 128-byte swizzle)
#define STAGES $STAGES
#define ZS $ZS
#define TEAMS $TEAMS        // 2: two teams of two consumer warpgroups take alternate tiles (ping-pong)
#define EARLYZ $EARLYZ      // a tile's buffer goes back once its store has read it, checked before the next epilogue
#define NCONS (256 * TEAMS)
#define WGDEPTH $WGDEPTH    // wgmma groups a warpgroup keeps in flight (a slice goes back WGDEPTH slices late)
#define ABLATE $ABLATE      // product only: the epilogue packs the accumulators' low bytes (not a correct output)
#define TEAMW 8             // warps of a team
#define SLICE (BM * BK)     // bytes of one K slice of x, and of a slot of w's ring
#define WSLICE (BN * BK)    // bytes of one K slice of w (BN rows)
#define ZTILE (BM * BN)

struct __align__(64) TMap { unsigned long long v[16]; };

__device__ __forceinline__ unsigned smem_u32(const void* p) {
    return (unsigned)__cvta_generic_to_shared(p);
}
__device__ __forceinline__ void mbar_init(unsigned bar, unsigned count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" :: "r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_expect_tx(unsigned bar, unsigned bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" :: "r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(unsigned bar) {
    asm volatile("{\n.reg .b64 st;\nmbarrier.arrive.shared::cta.b64 st, [%0];\n}\n" :: "r"(bar) : "memory");
}
__device__ __forceinline__ unsigned mbar_try(unsigned bar, unsigned parity) {
    unsigned ok;
    asm volatile("{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
                 : "=r"(ok) : "r"(bar), "r"(parity) : "memory");
    return ok;
}
// waits for the phase of the given parity to complete; traps after ~2^32
// clocks, so that a wrong map or byte count cannot hang the device
__device__ __forceinline__ void mbar_wait(unsigned bar, unsigned parity) {
    if (mbar_try(bar, parity))
        return;
    const long long t0 = clock64();
    while (!mbar_try(bar, parity))
        if (clock64() - t0 > (1ll << 32))
            __trap();
}
__device__ __forceinline__ void tma_load2(unsigned dst, const TMap* m, unsigned bar, int c0, int c1) {
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4}], [%2];\n"
                 :: "r"(dst), "l"(m), "r"(bar), "r"(c0), "r"(c1) : "memory");
}
// an im2col copy of a 4-D NHWC map: 128 pixels (the map's pixels a column)
// of 64 channels from channel c, the filter base at (w, h) of image n, each
// pixel read at its position + (ow, oh) (the tap), zeros outside the image
__device__ __forceinline__ void tma_load4_im2col(unsigned dst, const TMap* m, unsigned bar, int c, int w, int h, int n,
                                                 unsigned short ow, unsigned short oh) {
    asm volatile("cp.async.bulk.tensor.4d.shared::cluster.global.im2col.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4, %5, %6}], [%2], {%7, %8};\n"
                 :: "r"(dst), "l"(m), "r"(bar), "r"(c), "r"(w), "r"(h), "r"(n), "h"(ow), "h"(oh) : "memory");
}
// the same with an L2 cache policy (the residual: evict-first, read once)
__device__ __forceinline__ void tma_load2_hint(unsigned dst, const TMap* m, unsigned bar, int c0, int c1, unsigned long long pol) {
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint [%0], [%1, {%3, %4}], [%2], %5;\n"
                 :: "r"(dst), "l"(m), "r"(bar), "r"(c0), "r"(c1), "l"(pol) : "memory");
}
__device__ __forceinline__ void tma_store2(const TMap* m, unsigned src, int c0, int c1) {
    asm volatile("cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%2, %3}], [%1];\n"
                 :: "l"(m), "r"(src), "r"(c0), "r"(c1) : "memory");
}
// the multicast load into the same offset of the shared memory of every CTA
// in mask, each CTA's barrier at bar's offset taking the bytes
__device__ __forceinline__ void tma_load2_mc(unsigned dst, const TMap* m, unsigned bar, int c0, int c1, unsigned short mask) {
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster [%0], [%1, {%3, %4}], [%2], %5;\n"
                 :: "r"(dst), "l"(m), "r"(bar), "r"(c0), "r"(c1), "h"(mask) : "memory");
}
__device__ __forceinline__ unsigned cta_rank() {
    unsigned r;
    asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
    return r;
}
// every thread of both CTAs of the cluster (all threads of a warp together;
// the arrive releases, the wait acquires by default)
__device__ __forceinline__ void cluster_sync() {
    asm volatile("barrier.cluster.arrive.aligned;\nbarrier.cluster.wait.aligned;\n" ::: "memory");
}
// arrives on the barrier at bar's offset in CTA cta of the cluster (the
// consumers' release of a slot the other CTA's producer also fills)
__device__ __forceinline__ void mbar_arrive_cta(unsigned bar, unsigned cta) {
    asm volatile("{\n.reg .b32 ra;\nmapa.shared::cluster.u32 ra, %0, %1;\nmbarrier.arrive.shared::cluster.b64 _, [ra];\n}\n"
                 :: "r"(bar), "r"(cta) : "memory");
}
#if MC
#define CLUSTER_DIMS __cluster_dims__(2, 1, 1)
#else
#define CLUSTER_DIMS
#endif

// a K slice of x (rows row0..) or w at K offset k0 into dst, on bar
__device__ __forceinline__ void load_slice(unsigned dst, const TMap* m, unsigned bar, int k0, int row0) {
#if SWZ
    tma_load2(dst, m, bar, k0, row0);
#else
    // four boxes of 16 bytes x 128 rows, one per 16-byte column
#pragma unroll
    for (int c = 0; c < BK / 16; c++)
        tma_load2(dst + c * (BM * 16), m, bar, k0 + c * 16, row0);
#endif
}

// shared-memory matrix descriptors of the 64 (A) or 128 (B) rows at addr,
// the k32 step kk of a slice
__device__ __forceinline__ unsigned long long desc(unsigned addr, int kk) {
#if SWZ && BK == 128
    // 128-byte swizzle, K-major (layout type 1): 8-row groups 1024 bytes
    // apart, k32 steps 32 bytes into the 128-byte atom; the leading byte
    // offset is unused (1); slices 1024-aligned (base offset 0)
    addr += kk * 32;
    return (unsigned long long)((addr & 0x3FFFF) >> 4) | (1ull << 16) | ((unsigned long long)(1024 >> 4) << 32) | (1ull << 62);
#elif SWZ
    // 64-byte swizzle, K-major: 8-row groups 512 bytes apart, k32 steps 32
    // bytes into the atom; the leading byte offset is unused (1)
    addr += kk * 32;
    return (unsigned long long)((addr & 0x3FFFF) >> 4) | (1ull << 16) | ((unsigned long long)(512 >> 4) << 32) | (2ull << 62);
#else
    // no swizzle: 16-byte columns of 128 rows; core matrices 2048 bytes
    // apart along K (leading), 128 between 8-row groups (stride)
    addr += kk * 2 * (BM * 16);
    return (unsigned long long)((addr & 0x3FFFF) >> 4) | ((unsigned long long)((BM * 16) >> 4) << 16) |
           ((unsigned long long)(128 >> 4) << 32);
#endif
}
// the rows of warpgroup wgp's A operand within a slice
#if SWZ
#define A_WG (64 * BK)
#else
#define A_WG (64 * 16)
#endif

// byte offset of (row, 16-byte chunk c) in a 128 x 128 tile in the 128-byte swizzle
__device__ __forceinline__ int tile_off(int row, int c) {
#if BN == 128
    return row * BN + ((c ^ (row & 7)) << 4);
#else
    // 64-byte rows in the 64-byte swizzle: address bits 4-5 XOR bits 7-8,
    // i.e. chunk c of row r at c ^ ((r >> 1) & 3) (the tile 1024-aligned)
    return row * BN + ((c ^ ((row >> 1) & 3)) << 4);
#endif
}

// 1.5 * 2^23: a float in [2^23, 2^24) has a ulp of 1, so adding it to an
// integer i within +-2^22 gives the float whose low mantissa bits are i
// + 0x400000, and adding it to a float v rounds v to the nearest integer,
// ties to even (as rintf), in the same low bits
#define MAGIC 12582912.f
// the int32 accumulator a as a float without I2F (exact for |a| <= 2^22)
__device__ __forceinline__ float acc_float(int a) {
    return __int_as_float(a + 0x4B400000) - MAGIC;
}
// sat(rint(relu(v))) in the low byte of the result, without FRND or F2I:
// the add rounds (ties to even, as rintf), the clamps are relu and 127
__device__ __forceinline__ unsigned q_bits(float v) {
    return __float_as_uint(fminf(fmaxf(v + MAGIC, MAGIC), MAGIC + 127.f));
}
// the same without ReLU when lo is MAGIC - 128 (sat(rint(v)) to [-128, 127]:
// MAGIC + q for q in [-128, 0) has q's two's-complement low byte); lo MAGIC
// is q_bits
__device__ __forceinline__ unsigned q_bits_lo(float v, float lo) {
    return __float_as_uint(fminf(fmaxf(v + MAGIC, lo), MAGIC + 127.f));
}

// the epilogue of one tile, in the accumulators' layout: warp (warp & 3)
// of warpgroup wgp holds rows row0 = wgp*64 + (warp&3)*16 + g (+8),
// channels 8j + 2t, +1 in d[4j], d[4j+1] (row g) and d[4j+2], d[4j+3] (row
// g + 8); z is read from and y written over the tile at zs (128-byte
// swizzle). FAST: no conversion instructions (acc_float, q_bits; z's bytes
// become floats by a byte permute into 1.5 * 2^23 + 128 + z); else I2F,
// FRND and F2I, as expand_i8t was measured with. FAST and I2FACC (K >
// 256, where the accumulator may pass 2^22): the accumulator by I2F (one
// conversion an output), z and the rounding still without conversions.
template <bool FAST, bool I2FACC>
__device__ __forceinline__ void epilogue(const int (&d)[BN / 2], unsigned char* zs, const float* __restrict__ alpha,
                                         const float* __restrict__ bias, float beta, int hasz, int relu, int n0, int row0, int t) {
    // the clamp below: ReLU's 0, or -128 without it (a downsample's output)
    const float qlo = relu ? MAGIC : MAGIC - 128.f, vlo = relu ? 0.f : -128.f;
#pragma unroll
    for (int j = 0; j < BN / 8; j++) {
        const int col = j * 8 + t * 2;
        const float2 al = __ldg((const float2*)(alpha + n0 + col));
        const float2 bi = __ldg((const float2*)(bias + n0 + col));
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int row = row0 + h * 8;
            short* zp = (short*)(zs + tile_off(row, col >> 4) + (col & 15));
            if (FAST) {
                float z0 = 0.f, z1 = 0.f;
                if (hasz) {
                    // bytes as unsigned (z + 128) in the low mantissa of 1.5 * 2^23
                    const unsigned u = (unsigned)(unsigned short)*zp ^ 0x8080u;
                    z0 = __uint_as_float(__byte_perm(u, 0x4B400000u, 0x7640)) - (MAGIC + 128.f);
                    z1 = __uint_as_float(__byte_perm(u, 0x4B400000u, 0x7641)) - (MAGIC + 128.f);
                }
                const int a0 = d[4 * j + 2 * h], a1 = d[4 * j + 2 * h + 1];
                const float f0 = I2FACC ? (float)a0 : acc_float(a0), f1 = I2FACC ? (float)a1 : acc_float(a1);
                const float v0 = __fmaf_rn(beta, z0, __fmaf_rn(f0, al.x, bi.x));
                const float v1 = __fmaf_rn(beta, z1, __fmaf_rn(f1, al.y, bi.y));
                *zp = (short)__byte_perm(q_bits_lo(v0, qlo), q_bits_lo(v1, qlo), 0x0040);
            } else {
                float z0 = 0.f, z1 = 0.f;
                if (hasz) {
                    const short zz = *zp;
                    z0 = (float)(signed char)(zz & 0xff);
                    z1 = (float)(signed char)(zz >> 8);
                }
                const float v0 = fmaxf((float)d[4 * j + 2 * h] * al.x + bi.x + beta * z0, vlo);
                const float v1 = fmaxf((float)d[4 * j + 2 * h + 1] * al.y + bi.y + beta * z1, vlo);
                const int q0 = (int)fminf(rintf(v0), 127.f), q1 = (int)fminf(rintf(v1), 127.f);
                *zp = (short)((q0 & 0xff) | (q1 << 8));
            }
        }
    }
}

extern __shared__ __align__(1024) unsigned char smem_raw[];

extern "C" __global__ void CLUSTER_DIMS __launch_bounds__(NCONS + 32, $MINB) $NAME(
    const TMap* __restrict__ maps, const float* __restrict__ alpha, const float* __restrict__ bias,
    float beta, int hasz, int K, int N, int tiles$XPARAMS)
{
    // hasz: bit 0 the residual, bit 1 no ReLU (the output clamped to [-128, 127])
    const int relu = !(hasz & 2);
    hasz &= 1;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    // 1024-aligned base (the 128-byte swizzle repeats every 1024 bytes)
    const unsigned raw = smem_u32(smem_raw);
    const unsigned pad = ((raw + 1023) & ~1023u) - raw;
    unsigned char* const sm = smem_raw + pad;
    const unsigned sbase = raw + pad;
    // STAGES x slices, STAGES w slices, ZS residual/output tiles, then the barriers
    const unsigned sx = sbase, sw = sbase + STAGES * SLICE, sz = sbase + 2 * STAGES * SLICE;
    unsigned char* const zgen = sm + 2 * STAGES * SLICE;
    const unsigned bars = sz + ZS * ZTILE;
#define FULL(s) (bars + 8 * (s))
#define EMPTY(s) (bars + 8 * (STAGES + (s)))
#define ZFULL(b) (bars + 8 * (2 * STAGES + (b)))
#define ZEMPTY(b) (bars + 8 * (2 * STAGES + ZS + (b)))
#define ORD(t) (bars + 8 * (2 * STAGES + 2 * ZS + (t))) // TEAMS == 2: team t may start its product
    if (tid == 0) {
        for (int s = 0; s < STAGES; s++) {
            mbar_init(FULL(s), 1);
            mbar_init(EMPTY(s), (MC + 1) * TEAMW); // the team's warps (MC: both CTAs') release a slot
        }
        for (int b = 0; b < ZS; b++) {
            mbar_init(ZFULL(b), 1);
            mbar_init(ZEMPTY(b), 1);
        }
#if TEAMS == 2
        mbar_init(ORD(0), TEAMW);
        mbar_init(ORD(1), TEAMW);
#endif
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
#if MC
    // the other CTA's barriers are initialised before any multicast or remote arrival
    cluster_sync();
    // CTA rank of pair it takes tile 2 * it + rank: the two channel blocks of one row block (N / BN even)
    const unsigned rank = cta_rank();
    const int first = blockIdx.x >> 1, step = gridDim.x >> 1, count = tiles >> 1;
#define TILE_OF(it) (2 * (it) + (int)rank)
#else
    __syncthreads();
    const int first = blockIdx.x, step = gridDim.x, count = tiles;
#define TILE_OF(it) (it)
#endif
#if BK == 64
    const int nblk = N / BN, KT = K / BK;
#else
    // K % 128 == 64 (expand only): the last slice's second half lies past
    // x's and w's K extent, which the copy engine fills with zeros
    const int nblk = N / BN, KT = (K + BK - 1) / BK;
#endif

    if (warp == NCONS / 32) {
        // the producer: one thread issues every load
        if (lane == 0) {
            const TMap *mx = maps, *mw = maps + 1, *mz = maps + 2;
            unsigned long long pol;
            asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(pol));
            int s = 0, b = 0;
            unsigned ph = 0, zph = 0;
            for (int it = first; it < count; it += step) {
                const int tile = TILE_OF(it);
                const int n0 = (tile % nblk) * BN, p0 = (tile / nblk) * BM;
                mbar_wait(ZEMPTY(b), zph ^ 1);
                if (hasz) {
                    mbar_expect_tx(ZFULL(b), ZTILE);
                    tma_load2_hint(sz + b * ZTILE, mz, ZFULL(b), n0, p0, pol);
                } else {
                    mbar_arrive(ZFULL(b));
                }
                if (++b == ZS)
                    b = 0, zph ^= 1;
#if CONV3
                // the tile's first output pixel (image img, row oh, column
                // ow of the H x W output): the filter base of its copies is
                // (CSTRIDE ow - 1, CSTRIDE oh - 1) in the input, padding 1;
                // K = 9 C, cb channel blocks of 64 a tap
                const int img = p0 / (H * W), pix = p0 - img * (H * W), oh = pix / W, ow = pix - oh * W;
                const int cb = K / (9 * BK);
#endif
                for (int kt = 0; kt < KT; kt++) {
                    mbar_wait(EMPTY(s), ph ^ 1);
                    mbar_expect_tx(FULL(s), SLICE + WSLICE);
#if MC
                    // this CTA's half of the pair's x slice, into both CTAs (the other half comes from the other CTA)
                    tma_load2_mc(sx + s * SLICE + rank * (64 * BK), mx, FULL(s), kt * BK, p0 + 64 * (int)rank, (unsigned short)3);
#elif CONV3
                    {
                        // slice kt: tap (r, s) = (tap / 3, tap % 3), channels c0..c0+63;
                        // the weights' K index tap * C + c0 is kt * BK
                        const int tap = kt / cb, c0 = (kt - tap * cb) * BK;
                        tma_load4_im2col(sx + s * SLICE, mx, FULL(s), c0, CSTRIDE * ow - 1, CSTRIDE * oh - 1, img, (unsigned short)(tap % 3),
                                         (unsigned short)(tap / 3));
                    }
#else
                    load_slice(sx + s * SLICE, mx, FULL(s), kt * BK, p0);
#endif
                    load_slice(sw + s * SLICE, mw, FULL(s), kt * BK, n0);
                    if (++s == STAGES)
                        s = 0, ph ^= 1;
                }
            }
        }
#if MC
        __syncwarp();
        cluster_sync(); // the other CTA may still arrive on this one's barriers
#endif
        return;
    }

    // the consumers: warpgroup wgp of a team computes rows wgp*64 + [0, 64)
    // of each of the team's tiles; with TEAMS == 2, team 0 takes the
    // block's tiles 0, 2, 4, ... and team 1 tiles 1, 3, 5, ..., and the
    // slices' and tiles' ring positions of the other team's tiles are skipped
#if TEAMS == 2
    const int team = warp / TEAMW, wgp = (warp >> 2) & 1, ttid = tid & 255;
#else
    const int wgp = warp >> 2, ttid = tid;
#endif
    const int g = lane >> 2, t = lane & 3;
    int s = 0, b = 0, prev = -1;
    unsigned ph = 0, zph = 0;
#if TEAMS == 2
    unsigned oph = 0; // the parity of this team's next wait on ORD(team)
    if (team == 1) {
        for (int i = 0; i < KT; i++)
            if (++s == STAGES)
                s = 0, ph ^= 1;
        if (++b == ZS)
            b = 0, zph ^= 1;
    }
    for (int it = first + team * step; it < count; it += TEAMS * step) {
        // the other team's product of the tile before is issued (its 8 warps
        // arrived on ORD(team)): the tensor cores are this team's. An mbarrier,
        // not a named one, so that a mistake traps instead of hanging
        if (it != first) {
            mbar_wait(ORD(team), oph);
            oph ^= 1;
        }
#else
    for (int it = first; it < count; it += step) {
#endif
        const int tile = TILE_OF(it);
        const int n0 = (tile % nblk) * BN, p0 = (tile / nblk) * BM;
        int d[BN / 2];
#pragma unroll
        for (int i = 0; i < BN / 2; i++)
            d[i] = 0;
        // one slice's wgmma group in flight while the next is issued: a
        // slice goes back to the producer once the group after it is issued
        // (WGDEPTH 2: two groups, a slice back once the second after it is issued)
        int held = -1;
#if WGDEPTH == 2
        int held2 = -1; // the slice before held, its group possibly in flight too
#endif
        for (int kt = 0; kt < KT; kt++) {
            mbar_wait(FULL(s), ph);
            __syncwarp(); // wgmma is .sync.aligned: the warp converged after the wait
            asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#pragma unroll
            for (int kk = 0; kk < BK / 32; kk++) {
                const unsigned long long da = desc(sx + s * SLICE + wgp * A_WG, kk), db = desc(sw + s * SLICE, kk);
                $WGMMA
            }
            asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#if WGDEPTH == 2
            if (held2 >= 0) {
                asm volatile("wgmma.wait_group.sync.aligned 2;\n" ::: "memory");
                if (lane == 0)
                    mbar_arrive(EMPTY(held2));
            }
            held2 = held;
            held = s;
            if (++s == STAGES)
                s = 0, ph ^= 1;
            continue;
#endif
            if (held >= 0) {
                asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");
                if (lane == 0) {
                    mbar_arrive(EMPTY(held));
#if MC
                    mbar_arrive_cta(EMPTY(held), rank ^ 1);
#endif
                }
            }
            held = s;
            if (++s == STAGES)
                s = 0, ph ^= 1;
        }
#if TEAMS == 2
        // this product is issued: the other team's next tile (the block's next) may start its own
        if (it + step < count && lane == 0)
            mbar_arrive(ORD(team ^ 1));
#endif
        asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
#if WGDEPTH == 2
        if (lane == 0 && held2 >= 0)
            mbar_arrive(EMPTY(held2));
#endif
        if (lane == 0) {
            mbar_arrive(EMPTY(held));
#if MC
            mbar_arrive_cta(EMPTY(held), rank ^ 1);
#endif
        }
#if EARLYZ
        // every store this thread issued before has read its tile: the last one's buffer goes back
        if (ttid == 0 && prev >= 0) {
            asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory");
            mbar_arrive(ZEMPTY(prev));
        }
#endif
        // the epilogue (epilogue<FAST>: conversion-free for the expand_i8u
        // builds while K <= 256, where |accumulator| <= 256 * 128 * 128 = 2^22)
        mbar_wait(ZFULL(b), zph);
        unsigned char* const zs = zgen + b * ZTILE;
#if ABLATE
        {
            const int row0 = wgp * 64 + (warp & 3) * 16 + g;
#pragma unroll
            for (int j = 0; j < BN / 8; j++)
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    const int col = j * 8 + t * 2, row = row0 + h * 8;
                    *(short*)(zs + tile_off(row, col >> 4) + (col & 15)) = (short)__byte_perm(d[4 * j + 2 * h], d[4 * j + 2 * h + 1], 0x0040);
                }
        }
#else
#if FASTCVT
        if (K <= 256)
            epilogue<true, false>(d, zs, alpha, bias, beta, hasz, relu, n0, wgp * 64 + (warp & 3) * 16 + g, t);
        else
#endif
            epilogue<FASTCVT && BIGK, true>(d, zs, alpha, bias, beta, hasz, relu, n0, wgp * 64 + (warp & 3) * 16 + g, t);
#endif
        // y was written through the generic proxy; the copy engine reads it through the async one
        asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#if TEAMS == 2
        asm volatile("bar.sync %0, 256;\n" :: "r"(1 + team) : "memory"); // the team's 256 threads
#else
        asm volatile("bar.sync 1, %0;\n" :: "n"(NCONS) : "memory");
#endif
        if (ttid == 0) {
            tma_store2(maps + 3, sz + b * ZTILE, n0, p0);
            asm volatile("cp.async.bulk.commit_group;\n" ::: "memory");
#if !EARLYZ
            // the store before this one has read its tile: its buffer goes back to the producer
            asm volatile("cp.async.bulk.wait_group.read 1;\n" ::: "memory");
            if (prev >= 0)
                mbar_arrive(ZEMPTY(prev));
#endif
        }
        prev = b;
        if (++b == ZS)
            b = 0, zph ^= 1;
#if TEAMS == 2
        // the other team's tile: its slices and its buffer
        for (int i = 0; i < KT; i++)
            if (++s == STAGES)
                s = 0, ph ^= 1;
        if (++b == ZS)
            b = 0, zph ^= 1;
#endif
    }
    if (ttid == 0)
        asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory");
#if MC
    __syncwarp();
    cluster_sync(); // no remote arrival on this CTA's barriers after it exits
#endif
}
`

// expandI8tFits reports whether expand_i8t computes a [P, K] x [N, K]
// product: P and N multiples of the 128 x 128 tile, K of the 64-byte slice,
// and the tile count and row coordinates within int32.
func expandI8tFits(p, k, n int) bool {
	return p > 0 && k > 0 && n > 0 && p%128 == 0 && n%128 == 0 && k%64 == 0 && p < 1<<31 && (p/128)*(n/128) < 1<<31
}

// fits is expandI8tFits for variant v: the multicast build also needs an
// even number of channel blocks (a pair of CTAs takes two of one row block).
// The n64 build (swizzled, not multicast) takes N a multiple of 64.
func (v expandI8tVariant) fits(p, k, n int) bool {
	if v.k128 {
		return v.k128Fits(p, k, n)
	}
	if v.n64 {
		return v.swizzled && !v.multicast && n%128 != 0 && expandI8tFits(p, k, 2*n)
	}
	return expandI8tFits(p, k, n) && (!v.multicast || n%256 == 0)
}

// expandI8tMaps returns expand_i8t's four tensor maps (x, w, z, y, in
// that order, as the kernel reads them from device memory) for x [p, k],
// w [n, k], z and y [p, n] int8: x and w in 64-byte K slices of 128 rows
// (boxes of 64 bytes x 128 rows in the 64-byte swizzle, or of 16 bytes x
// 128 rows without, four a slice), z
// and y in 128 x 128 tiles with the 128-byte swizzle. z may be 0 (no
// residual): its map then points at y, which the kernel does not read
// through it.
func expandI8tMaps(d *Driver, x, w, z, y DevicePtr, p, k, n int, v expandI8tVariant) ([]TensorMap, error) {
	var maps []TensorMap
	for _, t := range expandI8tMapSpecs(x, w, z, y, p, k, n, v) {
		m, err := d.EncodeTensorMapTiled(t)
		if err != nil {
			return nil, err
		}
		maps = append(maps, m)
	}
	return maps, nil
}

// expandI8tMapSpecs describes expandI8tMaps' four maps for variant v
// (its slice layout, and x's box of 64 rows for the multicast build).
func expandI8tMapSpecs(x, w, z, y DevicePtr, p, k, n int, v expandI8tVariant) []TensorMapTiled {
	slice := func(a DevicePtr, rows, boxRows int) TensorMapTiled {
		if v.k128 {
			// 128-byte slices: one box of 128 bytes x the rows, the 128-byte swizzle
			return TensorMapTiled{Addr: a, Dims: []uint64{uint64(k), uint64(rows)}, Strides: []uint64{uint64(k)},
				Box: []uint32{128, uint32(boxRows)}, Swizzle: Swizzle128B, L2Promotion: 2}
		}
		if v.swizzled {
			return TensorMapTiled{Addr: a, Dims: []uint64{uint64(k), uint64(rows)}, Strides: []uint64{uint64(k)},
				Box: []uint32{64, uint32(boxRows)}, Swizzle: Swizzle64B, L2Promotion: 2}
		}
		return TensorMapTiled{Addr: a, Dims: []uint64{uint64(k), uint64(rows)}, Strides: []uint64{uint64(k)},
			Box: []uint32{16, uint32(boxRows)}, Swizzle: SwizzleNone, L2Promotion: 2}
	}
	tile := func(a DevicePtr) TensorMapTiled {
		if v.n64 {
			// 64-byte rows: the 64-byte swizzle (the epilogue's tile_off)
			return TensorMapTiled{Addr: a, Dims: []uint64{uint64(n), uint64(p)}, Strides: []uint64{uint64(n)},
				Box: []uint32{64, 128}, Swizzle: Swizzle64B, L2Promotion: 3}
		}
		return TensorMapTiled{Addr: a, Dims: []uint64{uint64(n), uint64(p)}, Strides: []uint64{uint64(n)},
			Box: []uint32{128, 128}, Swizzle: Swizzle128B, L2Promotion: 3}
	}
	if z == 0 {
		z = y
	}
	return []TensorMapTiled{slice(x, p, v.xRows()), slice(w, n, v.bn()), tile(z), tile(y)}
}

// expandI8U2 is the build the executor runs (NOTES "What integrating
// expand_i8u2 into the INT8 executor needs"): two blocks an SM, rings of 3
// slices and 3 tiles, the conversion-free epilogue for K <= 256.
var expandI8U2 = expandI8tVariant{name: "expand_i8u2", swizzled: true, perSM: 2, fastCvt: true, bigK: true}

// expandI8U2Checked is expandI8U2 as it ran on an H100 (device/cuda/NOTES.md,
// fifteenth session: ResNet-50's 16 expanding 1x1s, top-1 100%): for K >
// 256 the epilogue's I2F/FRND/F2I path. The bigK epilogue has not run on a
// GPU yet, so the executor builds it only when asked (ExpandI8Source).
var expandI8U2Checked = func() expandI8tVariant { v := expandI8U2; v.bigK = false; return v }()

// ExpandI8Kernel names the executor's expanding kernel in its module, and
// DequantI8Kernel the kernel beside it that widens 8-bit values to half
// (dequant_i8_f16(half* y, const int8* x, float scale, long long n), n a
// multiple of 8, 8 values a thread, grid-stride).
const (
	ExpandI8Kernel  = "expand_i8u2"
	DequantI8Kernel = "dequant_i8_f16"
)

// ExpandI8Threads is a block's threads of ExpandI8Kernel (two consumer
// warpgroups and the producer warp) and ExpandI8BlocksPerSM the blocks an
// SM runs at once (the grid is at most that many per SM: the kernel is
// persistent).
const (
	ExpandI8Threads     = 288
	ExpandI8BlocksPerSM = 2
)

// ExpandI8SharedMem is the dynamic shared memory of a block of
// ExpandI8Kernel (over 48 KB: the function's attribute must allow it).
func ExpandI8SharedMem() int { return expandI8U2.smem() }

// dequantI8Source is DequantI8Kernel.
const dequantI8Source = `
extern "C" __global__ void dequant_i8_f16(unsigned short* __restrict__ y, const signed char* __restrict__ x, float scale, long long n)
{
    for (long long i = 8 * ((long long)blockIdx.x * blockDim.x + threadIdx.x); i < n; i += 8ll * gridDim.x * blockDim.x) {
        const int2 v = *(const int2*)(x + i);
        unsigned short h[8];
#pragma unroll
        for (int k = 0; k < 8; k++) {
            const int b = (int)(signed char)(((k < 4 ? v.x : v.y) >> (8 * (k & 3))) & 0xff);
            asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h[k]) : "f"(scale * (float)b));
        }
        uint4 o;
        o.x = h[0] | ((unsigned)h[1] << 16);
        o.y = h[2] | ((unsigned)h[3] << 16);
        o.z = h[4] | ((unsigned)h[5] << 16);
        o.w = h[6] | ((unsigned)h[7] << 16);
        *(uint4*)(y + i) = o;
    }
}
`

// ExpandI8Source is the CUDA C++ of the executor's module: ExpandI8Kernel
// (expand_i8u2) and DequantI8Kernel, for sm_90a only (wgmma and the bulk
// tensor copies).
//
//	expand_i8u2(const TMap* maps, const float* alpha, const float* bias, float beta, int hasz, int K, int N, int tiles)
//
// computes y[p, n] = sat(round(relu(alpha[n] sum_k x[p, k] w[n, k] + bias[n]
// + beta z[p, n]))) over int8 NHWC rows, the maps (ExpandI8MapSpecs) in
// device memory, 64-byte aligned; hasz's bit 0 says there is a residual
// z (ExpandI8Residual), bit 1 leaves the ReLU out (ExpandI8NoReLU).
//
// bigK builds the K > 256 epilogue that converts only the accumulator
// (expandI8U2, not yet run on a GPU); without it, the build that ran on an
// H100 (expandI8U2Checked). Both have the same kernels, arguments, threads
// and shared memory.
func ExpandI8Source(bigK bool) string {
	if bigK {
		return expandI8tSource(expandI8U2) + dequantI8Source
	}
	return expandI8tSource(expandI8U2Checked) + dequantI8Source
}

// ExpandI8Residual and ExpandI8NoReLU are the bits of ExpandI8Kernel's
// hasz argument: a residual z is read; the output is not ReLU'd (clamped
// to [-128, 127] instead of [0, 127]).
const (
	ExpandI8Residual = 1
	ExpandI8NoReLU   = 2
)

// ExpandI8Fits reports whether ExpandI8Kernel takes x [p, k] times w [n,
// k]: p and n multiples of 128, k of 64.
func ExpandI8Fits(p, k, n int) bool { return expandI8tFits(p, k, n) }

// ExpandI8Tiles is the tile count of a [p, n] output (the kernel's last
// argument).
func ExpandI8Tiles(p, n int) int { return (p / 128) * (n / 128) }

// ExpandI8MapSpecs describes ExpandI8Kernel's four tensor maps (x, w, z, y,
// in the order the kernel reads them) for x [p, k], w [n, k], z and y [p,
// n] int8; z 0 means no residual (its map then points at y, unread).
func ExpandI8MapSpecs(x, w, z, y DevicePtr, p, k, n int) []TensorMapTiled {
	return expandI8tMapSpecs(x, w, z, y, p, k, n, expandI8U2)
}

// FuncSetMaxDynamicShared lets f's blocks take bytes of dynamic shared
// memory, over the 48 KB a launch gets without it (cuFuncSetAttribute,
// CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES).
func (d *Driver) FuncSetMaxDynamicShared(f Function, bytes int) error {
	p, err := d.lib.sym("cuFuncSetAttribute")
	if err != nil {
		return err
	}
	if r := call(p, uintptr(f.p), 8, uintptr(bytes)); r != 0 {
		return d.err("cuFuncSetAttribute", r)
	}
	return nil
}
