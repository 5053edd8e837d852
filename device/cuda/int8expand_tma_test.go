package cuda

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// expandI8tVariants are the builds the probe times, the one it trusts most
// first: a wrong one that ends the run leaves the rows before it.
// expand_i8t_ns settled its question (the 64-byte swizzle's descriptor is
// right, and faster at 14x14): the probe times it only with
// KILN_INT8X_ALL=1.
// expand_i8m2 (clusters, multicast, remote barrier arrivals: the most new
// instructions) comes last.
// expand_i8u2 is the executor's build (expandI8U2, bigK since the reducing
// 1x1s run it).
// After the third run's question (14x14): expand_i8t, expand_i8u and
// expand_i8m2 are settled too (NOTES "expand_i8u measured"); expand_i8t2 and
// expand_i8u2 stay as the baselines of the new builds. After run 3:
// expand_i8w is settled (no gain), expand_i8v2 is the baseline of
// expand_i8v3 (two wgmma groups in flight); the _prod builds are
// ablations (product only, output not checked), in the second pass.
var expandI8tVariants = []expandI8tVariant{
	{name: "expand_i8t", swizzled: true, perSM: 1, settled: true},
	{name: "expand_i8t2", swizzled: true, perSM: 2},
	{name: "expand_i8t_ns", perSM: 1, settled: true},
	{name: "expand_i8u2", swizzled: true, perSM: 2, fastCvt: true, bigK: true},
	// expand_i8u2 before the reducing 1x1s (K > 256: I2F, FRND and F2I an
	// output), timed beside it with KILN_INT8X_REDUCE=1 only
	{name: "expand_i8u2_i2f", swizzled: true, perSM: 2, fastCvt: true, settled: true},
	{name: "expand_i8u", swizzled: true, perSM: 1, fastCvt: true, settled: true},
	{name: "expand_i8m2", swizzled: true, perSM: 2, fastCvt: true, multicast: true, settled: true, late: true},
	{name: "expand_i8v2", swizzled: true, perSM: 2, fastCvt: true, ring: [2]int{4, 2}, earlyZ: true},
	{name: "expand_i8w", swizzled: true, perSM: 1, fastCvt: true, ring: [2]int{8, 6}, earlyZ: true, teams: 2, settled: true, late: true},
	{name: "expand_i8v3", swizzled: true, perSM: 2, fastCvt: true, ring: [2]int{4, 2}, earlyZ: true, wgDepth: 2, late: true},
	{name: "expand_i8u2_prod", swizzled: true, perSM: 2, fastCvt: true, productOnly: true, late: true},
	{name: "expand_i8v3_prod", swizzled: true, perSM: 2, fastCvt: true, ring: [2]int{4, 2}, earlyZ: true, wgDepth: 2, productOnly: true, late: true},
}

// TestExpandI8tMapSpecs checks expand_i8t's tensor maps against the
// driver's limits (TensorMapTiled.check) for both layers and every
// variant's slice layout, and that the boxes move the bytes the kernel
// expects on its barriers (8 KB a slice of x or w: one box, four 16-byte
// ones without the swizzle, or two halves of x from the two CTAs of a
// multicast pair; 16 KB a tile).
func TestExpandI8tMapSpecs(t *testing.T) {
	const x, w, z, y = 0x7f0000000000, 0x7f0010000000, 0x7f0020000000, 0x7f0030000000
	for _, c := range []struct{ p, k, n int }{{256 * 56 * 56, 64, 256}, {256 * 14 * 14, 256, 1024}} {
		for _, v := range expandI8tVariants {
			if !v.fits(c.p, c.k, c.n) {
				t.Errorf("%s does not take %+v", v.name, c)
			}
			for _, zz := range []DevicePtr{z, 0} {
				specs := expandI8tMapSpecs(x, w, zz, y, c.p, c.k, c.n, v)
				copies := map[bool]int{true: 1, false: 4}[v.swizzled] // boxes a slice
				for i, sp := range specs {
					if err := sp.check(); err != nil {
						t.Errorf("%+v %s map %d: %v", c, v.name, i, err)
					}
					box := 1
					for _, b := range sp.Box {
						box *= int(b)
					}
					n := copies
					if i == 0 && v.multicast {
						n *= 2
					}
					if want := []int{128 * 64, 128 * 64, 128 * 128, 128 * 128}[i]; i < 2 && box*n != want || i >= 2 && box != want {
						t.Errorf("%+v %s map %d: %d bytes a box (x%d), want %d", c, v.name, i, box, n, want)
					}
				}
				if zz == 0 && specs[2].Addr != y {
					t.Errorf("no residual: z's map at %#x, want y's %#x", uint64(specs[2].Addr), uint64(y))
				}
			}
		}
	}
}

// TestTensorMapTiledCheck pins the limits EncodeTensorMapTiled enforces
// before it calls the driver.
func TestTensorMapTiledCheck(t *testing.T) {
	ok := TensorMapTiled{Addr: 0x1000, Dims: []uint64{64, 1024}, Strides: []uint64{64}, Box: []uint32{64, 128}, Swizzle: Swizzle64B}
	for _, c := range []struct {
		name string
		edit func(*TensorMapTiled)
		want string // "" valid, else a part of the error
	}{
		{"valid", func(*TensorMapTiled) {}, ""},
		{"128-byte rows in the 128-byte swizzle", func(m *TensorMapTiled) { m.Dims[0], m.Strides[0], m.Box[0], m.Swizzle = 256, 256, 128, Swizzle128B }, ""},
		{"rank 0", func(m *TensorMapTiled) { m.Dims, m.Strides, m.Box = nil, nil, nil }, "rank 0"},
		{"box rank", func(m *TensorMapTiled) { m.Box = m.Box[:1] }, "box dimensions"},
		{"strides", func(m *TensorMapTiled) { m.Strides = nil }, "strides"},
		{"misaligned address", func(m *TensorMapTiled) { m.Addr = 0x1008 }, "aligned"},
		{"stride not of 16", func(m *TensorMapTiled) { m.Strides[0] = 72 }, "multiple of 16"},
		{"box over 256", func(m *TensorMapTiled) { m.Box[1] = 512 }, "box dimension 1"},
		{"inner box of 8 bytes", func(m *TensorMapTiled) { m.Box[0] = 8 }, "inner dimension"},
		{"box wider than the swizzle", func(m *TensorMapTiled) { m.Swizzle = Swizzle32B }, "wider than"},
		{"L2 promotion", func(m *TensorMapTiled) { m.L2Promotion = 4 }, "L2 promotion"},
		{"empty dimension", func(m *TensorMapTiled) { m.Dims[1] = 0 }, "dimension 1"},
	} {
		m := ok
		m.Dims, m.Strides, m.Box = append([]uint64(nil), ok.Dims...), append([]uint64(nil), ok.Strides...), append([]uint32(nil), ok.Box...)
		c.edit(&m)
		err := m.check()
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s: check() = %v, want %q", c.name, err, c.want)
		}
	}
}

// TestExpandI8tFits pins the shapes expand_i8t takes.
func TestExpandI8tFits(t *testing.T) {
	for _, c := range []struct {
		p, k, n int
		want    bool
	}{
		{256 * 56 * 56, 64, 256, true},
		{256 * 14 * 14, 256, 1024, true},
		{256 * 28 * 28, 128, 512, true},
		{256 * 56 * 56, 32, 256, false}, // half a slice
		{256 * 56 * 56, 96, 256, false},
		{1 * 14 * 14, 256, 1024, false}, // 196 rows
		{256 * 56 * 56, 64, 192, false},
		{0, 64, 256, false},
	} {
		if got := expandI8tFits(c.p, c.k, c.n); got != c.want {
			t.Errorf("expandI8tFits(%d, %d, %d) = %v, want %v", c.p, c.k, c.n, got, c.want)
		}
		// the multicast build: an even number of channel blocks besides
		mc := expandI8tVariant{name: "mc", swizzled: true, perSM: 2, fastCvt: true, multicast: true}
		if got, want := mc.fits(c.p, c.k, c.n), c.want && c.n%256 == 0; got != want {
			t.Errorf("multicast fits(%d, %d, %d) = %v, want %v", c.p, c.k, c.n, got, want)
		}
	}
}

// TestExpandI8tSource checks what the variants of expand_i8t are built
// from without a compiler: every placeholder replaced, the kernel named,
// the slice layout and ring depths chosen, the blocks of an SM within an
// H100's 228 KB of shared memory (227 KB a block, 1 KB of each reserved);
// and compiles them for sm_90a where NVRTC has it (12 or later; 11.8 stops
// at sm_90, which has no wgmma: there it compiles the C++ to PTX for
// compute_90 only, which checks the source but not the inline PTX).
func TestExpandI8tSource(t *testing.T) {
	want := map[string]struct {
		smem                                          int
		swz, fast, mc, stages, zs, minb, teams, early string
		threads                                       int
	}{
		"expand_i8t":       {2*6*8192 + 4*16384 + 160 + 1024, "1", "0", "0", "6", "4", "1", "1", "0", 288},
		"expand_i8t2":      {2*3*8192 + 3*16384 + 96 + 1024, "1", "0", "0", "3", "3", "2", "1", "0", 288},
		"expand_i8t_ns":    {2*6*8192 + 4*16384 + 160 + 1024, "0", "0", "0", "6", "4", "1", "1", "0", 288},
		"expand_i8u2":      {2*3*8192 + 3*16384 + 96 + 1024, "1", "1", "0", "3", "3", "2", "1", "0", 288},
		"expand_i8u2_i2f":  {2*3*8192 + 3*16384 + 96 + 1024, "1", "1", "0", "3", "3", "2", "1", "0", 288},
		"expand_i8u":       {2*6*8192 + 4*16384 + 160 + 1024, "1", "1", "0", "6", "4", "1", "1", "0", 288},
		"expand_i8m2":      {2*3*8192 + 3*16384 + 96 + 1024, "1", "1", "1", "3", "3", "2", "1", "0", 288},
		"expand_i8v2":      {2*4*8192 + 2*16384 + 96 + 1024, "1", "1", "0", "4", "2", "2", "1", "1", 288},
		"expand_i8w":       {2*8*8192 + 6*16384 + 240 + 1024, "1", "1", "0", "8", "6", "1", "2", "1", 544},
		"expand_i8v3":      {2*4*8192 + 2*16384 + 96 + 1024, "1", "1", "0", "4", "2", "2", "1", "1", 288},
		"expand_i8u2_prod": {2*3*8192 + 3*16384 + 96 + 1024, "1", "1", "0", "3", "3", "2", "1", "0", 288},
		"expand_i8v3_prod": {2*4*8192 + 2*16384 + 96 + 1024, "1", "1", "0", "4", "2", "2", "1", "1", 288},
	}
	if len(expandI8tVariants) != len(want) {
		t.Errorf("%d variants, want %d", len(expandI8tVariants), len(want))
	}
	for _, v := range expandI8tVariants {
		w, ok := want[v.name]
		if !ok {
			t.Errorf("unexpected variant %s", v.name)
			continue
		}
		if v.smem() != w.smem {
			t.Errorf("%s: %d bytes of shared memory, want %d", v.name, v.smem(), w.smem)
		}
		if v.perSM*(v.smem()+1024) > 228<<10 || v.smem() > 227<<10 {
			t.Errorf("%s: %d blocks of %d bytes do not fit an SM", v.name, v.perSM, v.smem())
		}
		src := expandI8tSource(v)
		if strings.Contains(src, "$") {
			t.Errorf("%s: unreplaced placeholder", v.name)
		}
		if !strings.Contains(src, " "+v.name+"(") {
			t.Errorf("%s: no kernel of that name", v.name)
		}
		if v.threads() != w.threads {
			t.Errorf("%s: %d threads, want %d", v.name, v.threads(), w.threads)
		}
		depth, ablate, bigK := "1", "0", "0"
		if v.name == "expand_i8u2" {
			bigK = "1"
			if v != expandI8U2 {
				t.Errorf("the probe's expand_i8u2 %+v is not the executor's %+v", v, expandI8U2)
			}
		}
		if strings.HasPrefix(v.name, "expand_i8v3") {
			depth = "2"
		}
		if strings.HasSuffix(v.name, "_prod") {
			ablate = "1"
		}
		for _, def := range []string{"SWZ " + w.swz, "FASTCVT " + w.fast, "MC " + w.mc, "STAGES " + w.stages, "ZS " + w.zs, "TEAMS " + w.teams, "EARLYZ " + w.early,
			"WGDEPTH " + depth, "ABLATE " + ablate, "BIGK " + bigK} {
			if !strings.Contains(src, "#define "+def+"\n") && !strings.Contains(src, "#define "+def+" ") {
				t.Errorf("%s: no #define %s", v.name, def)
			}
		}
		if !strings.Contains(src, "__launch_bounds__(NCONS + 32, "+w.minb+")") {
			t.Errorf("%s: not launch-bounded to %s blocks an SM", v.name, w.minb)
		}
	}
	n := openNVRTC(t)
	for _, v := range expandI8tVariants {
		src := expandI8tSource(v)
		if compileExpand(t, n, v.name+".cu", src, "sm_90a") != nil {
			continue
		}
		// NVRTC 11.8: the C++ to PTX only (ptxas would not know the instructions)
		c, err := n.Compile(v.name+".cu", src, "--gpu-architecture=compute_90")
		if err != nil {
			t.Fatalf("%s, compute_90: %v", v.name, err)
		}
		if !strings.Contains(string(c.PTX), "cp.async.bulk.tensor") || !strings.Contains(string(c.PTX), "wgmma.mma_async") {
			t.Errorf("%s: the PTX has no bulk tensor copy or no wgmma", v.name)
		}
		// the multicast build: clusters of two, multicast copies, remote
		// arrivals and the cluster barrier; the others none of them
		for _, ins := range []string{".reqnctapercluster 2", ".multicast::cluster", "mapa.shared::cluster", "barrier.cluster.wait"} {
			if strings.Contains(string(c.PTX), ins) != v.multicast {
				t.Errorf("%s (multicast %v): %q in the PTX: %v", v.name, v.multicast, ins, !v.multicast)
			}
		}
		// two wgmma groups in flight: wait_group 2 in exactly the depth-2 builds
		if strings.Contains(string(c.PTX), "wgmma.wait_group.sync.aligned 2") != (v.wgDepth == 2) {
			t.Errorf("%s (depth %d): wait_group 2 in the PTX: %v", v.name, v.wgDepth, v.wgDepth != 2)
		}
		// early z release: the wait for the store's read of its tile before the next epilogue
		if strings.Contains(string(c.PTX), "cp.async.bulk.wait_group.read 0") != v.earlyZ {
			t.Errorf("%s (early z %v): wait_group.read 0 in the PTX: %v", v.name, v.earlyZ, !v.earlyZ)
		}
		// K > 256 with bigK: the accumulator by I2F, no FRND or F2I (the
		// rounding by the magic add); without it (or fastCvt) both are there
		for _, ins := range []string{"cvt.rni.f32.f32", "cvt.rzi.s32.f32"} {
			if strings.Contains(string(c.PTX), ins) != !(v.fastCvt && v.bigK) && !v.productOnly {
				t.Errorf("%s (fast %v, bigK %v): %q in the PTX: %v", v.name, v.fastCvt, v.bigK, ins, v.fastCvt && v.bigK)
			}
		}
		t.Logf("%s: PTX only (%d bytes)", v.name, len(c.PTX))
	}
}

// TestEncodeTensorMapTiledFake checks EncodeTensorMapTiled's call against
// the fake libcuda, which writes its arguments into the map: rank, address,
// dimensions, strides, box, swizzle and L2 promotion where the driver reads
// them, element strides 1, UINT8, no interleave, zero fill; and that a map
// check rejects reaches no driver.
func TestEncodeTensorMapTiledFake(t *testing.T) {
	d, err := OpenDriver(Options{LibDir: fakeDriver(t)})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range expandI8tMapSpecs(0x7f0000000000, 0x7f0010000000, 0x7f0020000000, 0x7f0030000000, 256*14*14, 256, 1024, expandI8tVariants[0]) {
		m, err := d.EncodeTensorMapTiled(c)
		if err != nil {
			t.Fatal(err)
		}
		word := func(i int) uint64 { return binary.LittleEndian.Uint64(m[8*i:]) }
		r := len(c.Dims)
		if want := uint64(r) | uint64(c.Swizzle)<<8 | uint64(c.L2Promotion)<<16; word(0) != want {
			t.Errorf("%+v: word 0 %#x, want %#x", c, word(0), want)
		}
		if word(1) != uint64(c.Addr) {
			t.Errorf("%+v: address %#x", c, word(1))
		}
		for i := range r {
			if word(2+i) != c.Dims[i] || i > 0 && word(6+i) != c.Strides[i-1] || word(11+i) != uint64(c.Box[i])|1<<32 {
				t.Errorf("%+v: dimension %d: %d, stride %d, box/element stride %#x", c, i, word(2+i), word(6+i), word(11+i))
			}
		}
	}
	if _, err := d.EncodeTensorMapTiled(TensorMapTiled{Addr: 8, Dims: []uint64{64}, Box: []uint32{64}}); err == nil || !strings.Contains(err.Error(), "aligned") {
		t.Errorf("a misaligned address: %v", err)
	}
}

// bytePerm is PTX's prmt.b32 (CUDA's __byte_perm) in its default mode:
// byte i of the result is byte s's nibble i of the eight bytes of a (0-3)
// and b (4-7).
func bytePerm(a, b, s uint32) uint32 {
	x := uint64(a) | uint64(b)<<32
	var r uint32
	for i := range 4 {
		r |= uint32(x>>(8*((s>>(4*i))&7))&0xff) << (8 * i)
	}
	return r
}

// TestExpandI8uConversions checks, in float32 arithmetic as the GPU does
// it, the identities expand_i8u's epilogue (epilogue<true>) rests on:
// acc_float(a) == float(a) for every accumulator within +-2^22 (all K <=
// 256 can reach); z's byte permute and subtract give float(int8) for all
// 256 bytes of either half of the short; q_bits's (and without ReLU
// q_bits_lo's, to [-128, 127]) low byte is
// sat(rint(relu(v))) (rintf's ties to even, the clamps, NaN and the
// infinities) on a grid of quarters, every tie and random floats; and the
// output permute puts q0 and q1 in the short's low and high bytes.
func TestExpandI8uConversions(t *testing.T) {
	const magic = float32(12582912) // 1.5 * 2^23, MAGIC in the source
	accFloat := func(a int32) float32 { return math.Float32frombits(uint32(a+0x4B400000)) - magic }
	for a := int32(-1 << 22); a <= 1<<22; a++ {
		if got := accFloat(a); got != float32(a) {
			t.Fatalf("acc_float(%d) = %v", a, got)
		}
	}
	for _, c := range []struct {
		sel   uint32
		shift uint // the byte of the short it converts
	}{{0x7640, 0}, {0x7641, 8}} {
		for zz := range 1 << 16 {
			u := uint32(uint16(zz)) ^ 0x8080
			got := math.Float32frombits(bytePerm(u, 0x4B400000, c.sel)) - (magic + 128)
			if want := float32(int8(zz >> c.shift)); got != want {
				t.Fatalf("z of %#04x, selector %#x: %v, want %v", zz, c.sel, got, want)
			}
		}
	}
	qBits := func(v float32) uint32 {
		return math.Float32bits(min(max(v+magic, magic), magic+127)) // fmaxf/fminf: NaN gives the other operand
	}
	fmax := func(a, b float32) float32 { // fmaxf: a NaN operand gives the other
		if a != a {
			return b
		}
		return max(a, b)
	}
	want := func(v float32) uint32 {
		r := math.RoundToEven(float64(fmax(v, 0)))
		return uint32(min(r, 127))
	}
	r := rand.New(rand.NewPCG(1, 2))
	var vs []float32
	for i := -2000; i <= 2000; i++ {
		vs = append(vs, float32(i)/4, float32(i)+0.5, math.Nextafter32(float32(i)+0.5, 0), math.Nextafter32(float32(i)+0.5, 1000))
	}
	for range 100000 {
		vs = append(vs, float32(r.NormFloat64()*100), math.Float32frombits(r.Uint32()))
	}
	vs = append(vs, 1<<22, -(1 << 22), 1<<23, 1<<30, -(1 << 30), float32(math.Inf(1)), float32(math.Inf(-1)), 126.5, 127.5, -0.5, 0.5, 1.5)
	for _, v := range vs {
		if v != v {
			continue // NaN: below
		}
		if got := qBits(v) & 0xff; got != want(v) {
			t.Fatalf("q_bits(%v) = %d, want %d", v, got, want(v))
		}
		// q_bits_lo without ReLU (lo = MAGIC - 128): the low byte is
		// sat(rint(v)) to [-128, 127] in two's complement
		got := byte(math.Float32bits(min(max(v+magic, magic-128), magic+127)))
		if w := int8(max(min(math.RoundToEven(float64(v)), 127), -128)); int8(got) != w {
			t.Fatalf("q_bits_lo(%v, MAGIC - 128) = %d, want %d", v, int8(got), w)
		}
	}
	// NaN: fmaxf(NaN, MAGIC) is MAGIC, so 0, as fmaxf(NaN, 0) in expand_i8t
	nan := float32(math.NaN())
	if got := math.Float32bits(min(fmax(nan+magic, magic), magic+127)) & 0xff; got != 0 {
		t.Errorf("q_bits(NaN) = %d, want 0", got)
	}
	for _, c := range []struct{ q0, q1 uint32 }{{0, 0}, {127, 0}, {0, 127}, {5, 99}, {126, 1}} {
		b0, b1 := math.Float32bits(magic+float32(c.q0)), math.Float32bits(magic+float32(c.q1))
		if got := uint16(bytePerm(b0, b1, 0x0040)); got != uint16(c.q0|c.q1<<8) {
			t.Errorf("pack(%d, %d) = %#04x", c.q0, c.q1, got)
		}
	}
}
