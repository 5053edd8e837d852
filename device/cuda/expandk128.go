package cuda

// The k128 builds of expand_i8t and conv3_i8u2 (issue 11; NOTES "the
// product runs at ~40% of the tensor peak", its list of next measurements,
// item 2): the same kernels (expandI8tSource, the variant field k128) with
// x's and w's K slices 128 bytes wide instead of 64: a slice is 128 rows x
// 128 bytes (16 KB each of x and w) in the 128-byte swizzle (tensor-map
// boxes of 128 x 128, Swizzle128B; wgmma descriptors of layout type 1,
// 1,024 bytes between 8-row groups, the k32 steps 32 bytes into the
// 128-byte atom), each warpgroup's four m64nBNk32 steps a slice committed as
// one group. With wgDepth 2 a warpgroup keeps two groups in flight: after
// committing slice k it waits until two are pending (wait_group 2) and
// releases slice k - 2, one slice later than the depth-1 builds, which
// release k - 1 after wait_group 1.
//
// Not yet run on a GPU: TestInt8ExpandProbeOnGPU and TestConv3I8ProbeOnGPU
// time them beside expand_i8u2 / conv3_i8u2 and the libraries,
// host-checked; the executor builds one (ExpandK128Kernel) only behind its
// switch, gpuexec's KILN_CUDA_INT8_K128=1.

// expandK128Variants are the probe's k128 builds of expand_i8t, timed in
// its second pass (late: not yet run on a device), in this order (the one
// closest to expand_i8u2 first, so that a trap in a later one leaves its
// rows):
//
//   - expand_k128d1: one block an SM (two consumer warpgroups and the
//     producer warp), rings of 5 slices (32 KB each: x and w) and 3
//     tiles, one wgmma group in flight as expand_i8u2 (wait_group 1): the
//     slice width alone;
//   - expand_k128: the same with two groups in flight (wait_group 2, a
//     slice released two slices late): NOTES' item 2 as written;
//   - expand_k128u2: two blocks an SM as expand_i8u2 (one block's epilogue
//     beside the other's product), rings of 2 slices and 2 tiles with the
//     early tile release (expand_i8v2's), depth 1 (depth 2 needs 3 slices,
//     which two blocks cannot hold);
//   - expand_k128w: expand_i8w's ping-pong teams (one block, two teams of
//     two consumer warpgroups on alternate tiles), rings of 4 slices and 6
//     tiles, depth 2 (NOTES' item 2: "expand_i8w's one block with two teams
//     does, 4 stages and 6 tiles, 225 KB");
//   - expand_k128_prod: expand_k128 with the product-only epilogue (the
//     accumulators' low bytes packed, no residual, not checked), NOTES'
//     item 1 for the new mainloop: its time a tile against expand_i8u2_prod's
//     splits the gain between mainloop and epilogue.
//
// All take K a multiple of 64: where K % 128 == 64 (K = 64: ResNet-50's
// layer1 expanding 1x1) the last slice's second half lies past x's and w's
// K extent and the copy engine fills it with zeros (the slice's full 16 KB
// still arrive on the barrier), so K = 64 is one slice of which half is
// zeros: twice expand_i8u2's tensor work, a row that tests the zero fill.
var expandK128Variants = []expandI8tVariant{
	{name: "expand_k128d1", swizzled: true, perSM: 1, fastCvt: true, bigK: true, k128: true, ring: [2]int{5, 3}, late: true},
	{name: "expand_k128", swizzled: true, perSM: 1, fastCvt: true, bigK: true, k128: true, ring: [2]int{5, 3}, wgDepth: 2, late: true},
	{name: "expand_k128u2", swizzled: true, perSM: 2, fastCvt: true, bigK: true, k128: true, ring: [2]int{2, 2}, earlyZ: true, late: true},
	{name: "expand_k128w", swizzled: true, perSM: 1, fastCvt: true, bigK: true, k128: true, ring: [2]int{4, 6}, earlyZ: true, teams: 2, wgDepth: 2, late: true},
	{name: "expand_k128_prod", swizzled: true, perSM: 1, fastCvt: true, bigK: true, k128: true, ring: [2]int{5, 3}, wgDepth: 2, productOnly: true, late: true},
}

// smemPerSM is the shared memory an SM of compute 9.0 offers its blocks
// (228 KB, of which the runtime reserves 1 KB a block) and smemPerBlock the
// most one block may take (227 KB).
const (
	smemPerSM    = 228 << 10
	smemPerBlock = 227 << 10
)

// ringOK reports whether v's rings can run: a slice goes back to the
// producer wgDepth slices after it (1 or 2), so the slice ring needs at
// least wgDepth + 1 slots or the consumers wait on a slot they still hold
// (a trap after ~2 s); the tile ring at least 2 slots (the producer waits
// for a tile's buffer before it loads the tile's slices, and the buffer
// before goes back after the next product at the earliest); and perSM
// blocks of v's shared memory fit an SM.
func (v expandI8tVariant) ringOK() bool {
	slices, tiles := v.stages()
	return slices >= max(v.wgDepth, 1)+1 && tiles >= 2 && v.smem() <= smemPerBlock && v.perSM*(v.smem()+1024) <= smemPerSM
}

// k128Fits is fits for a k128 build of expand_i8t: the swizzled layout, no
// multicast, 128-channel tiles, rings that run, and expandI8tFits' shapes
// (P and N multiples of 128, K of 64: a last half-slice is zero-filled).
func (v expandI8tVariant) k128Fits(p, k, n int) bool {
	return v.k128 && v.swizzled && !v.multicast && !v.n64 && !v.conv3 && v.ringOK() && expandI8tFits(p, k, n)
}

// conv3K128Variant is the k128 build of conv3_i8u2 for the stride, in one
// of two forms: twoPerSM false, conv3_k128 (expand_k128's: one block an
// SM, rings of 5 slices and 3 tiles, two wgmma groups in flight); true,
// conv3_k128u2 (expand_k128u2's: two blocks an SM, rings of 2 and 2, the
// early tile release, one group in flight). Suffix s2 for stride 2. A K
// slice is one tap and 128 channels: x's im2col copy moves 128 pixels of
// 128 channels in the 128-byte swizzle (conv3I8MapSpecsV), so C and Cout
// must be multiples of 128 (conv3K128Fits; C = 64, ResNet-50's layer1,
// keeps conv3_i8u2n64).
func conv3K128Variant(stride int, twoPerSM bool) expandI8tVariant {
	v := expandI8tVariant{name: "conv3_k128", swizzled: true, perSM: 1, fastCvt: true, bigK: true, conv3: true, k128: true, ring: [2]int{5, 3}, wgDepth: 2}
	if twoPerSM {
		v.name, v.perSM, v.ring, v.earlyZ, v.wgDepth = "conv3_k128u2", 2, [2]int{2, 2}, true, 0
	}
	if stride == 2 {
		v.name, v.stride2 = v.name+"s2", true
	}
	return v
}

// conv3K128Fits reports whether the k128 builds of conv3_i8u2 take the
// convolution: Conv3I8Fits with C and Cout multiples of 128 (whole
// 128-byte slices of one tap, 128-channel tiles).
func conv3K128Fits(n, h, w, c, cout, stride, pad int) bool {
	return Conv3I8Fits(n, h, w, c, cout, stride, pad) && c%128 == 0 && cout%128 == 0
}

// sw128Desc is the wgmma shared-memory matrix descriptor the k128 builds'
// desc() computes for the operand at shared address addr, k32 step kk
// (0..3) of a 128-byte K slice: bits 0-13 the start address / 16 (addr +
// 32 kk), 16-29 the leading byte offset / 16 (unused in a swizzled K-major
// layout: 1), 32-45 the stride byte offset / 16 (1,024: eight 128-byte
// rows), 49-51 the base offset (0: slices 1,024-aligned), 62-63 the layout
// type (1: the 128-byte swizzle). The Go copy of the kernel's expression,
// so that the host tests check its fields.
func sw128Desc(addr uint32, kk int) uint64 {
	addr += uint32(kk) * 32
	return uint64((addr&0x3FFFF)>>4) | 1<<16 | uint64(1024>>4)<<32 | 1<<62
}

// ExpandK128Kernel names the k128 build the executor runs where its switch
// (gpuexec's KILN_CUDA_INT8_K128=1) asks for it: expand_k128u2, whose
// threads and blocks an SM are ExpandI8Kernel's (ExpandI8Threads,
// ExpandI8BlocksPerSM) and whose arguments are the same. Not yet run on a
// GPU.
const ExpandK128Kernel = "expand_k128u2"

// expandK128Exec is ExpandK128Kernel's build.
var expandK128Exec = func() expandI8tVariant {
	for _, v := range expandK128Variants {
		if v.name == ExpandK128Kernel {
			return v
		}
	}
	panic("cuda: no k128 build " + ExpandK128Kernel)
}()

// ExpandK128Source is the CUDA C++ of ExpandK128Kernel alone (a module of
// its own: the template's helpers would clash with expand_i8u2's), sm_90a
// only.
func ExpandK128Source() string { return expandI8tSource(expandK128Exec) }

// ExpandK128SharedMem is a block's dynamic shared memory of
// ExpandK128Kernel (over 48 KB: the function's attribute must allow it).
func ExpandK128SharedMem() int { return expandK128Exec.smem() }

// ExpandK128Fits reports whether the executor runs ExpandK128Kernel for x
// [p, k] times w [n, k]: ExpandI8Fits with k a multiple of 128 (K = 64
// keeps expand_i8u2: one zero-padded 128-byte slice would double its
// tensor work).
func ExpandK128Fits(p, k, n int) bool { return k%128 == 0 && expandK128Exec.fits(p, k, n) }

// ExpandK128MapSpecs is ExpandI8MapSpecs for ExpandK128Kernel: x's and w's
// boxes 128 bytes x 128 rows in the 128-byte swizzle, z and y as
// expand_i8u2's.
func ExpandK128MapSpecs(x, w, z, y DevicePtr, p, k, n int) []TensorMapTiled {
	return expandI8tMapSpecs(x, w, z, y, p, k, n, expandK128Exec)
}
