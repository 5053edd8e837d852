package cuda

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// TestExpandK128Variants checks the k128 builds of expand_i8t
// (expandk128.go): each one's shared memory, threads, rings and wgmma
// depth, that its rings can run and fit an SM, the #defines its source
// carries (128-byte slices, the 128-byte swizzle's descriptor), and, where
// NVRTC has sm_90a, that it assembles without spills; else its compute_90
// PTX: four wgmma steps a slice (a multiple of 4 m64n128k32, where the
// 64-byte builds have 2), the descriptor's constant bits sw128Desc's
// (absent from expand_i8u2's), wait_group 2 exactly in the depth-2 builds,
// the early tile release exactly in the earlyZ ones.
func TestExpandK128Variants(t *testing.T) {
	want := map[string]struct {
		smem, threads, perSM, slices, tiles, depth, teams int
		earlyZ, ablate                                    bool
	}{
		"expand_k128d1":    {2*5*16384 + 3*16384 + 8*16 + 1024, 288, 1, 5, 3, 1, 1, false, false},
		"expand_k128":      {2*5*16384 + 3*16384 + 8*16 + 1024, 288, 1, 5, 3, 2, 1, false, false},
		"expand_k128u2":    {2*2*16384 + 2*16384 + 8*8 + 1024, 288, 2, 2, 2, 1, 1, true, false},
		"expand_k128w":     {2*4*16384 + 6*16384 + 8*22 + 1024, 544, 1, 4, 6, 2, 2, true, false},
		"expand_k128_prod": {2*5*16384 + 3*16384 + 8*16 + 1024, 288, 1, 5, 3, 2, 1, false, true},
	}
	if len(expandK128Variants) != len(want) {
		t.Errorf("%d k128 variants, want %d", len(expandK128Variants), len(want))
	}
	b := func(v bool) string { return map[bool]string{true: "1", false: "0"}[v] }
	for _, v := range expandK128Variants {
		w, ok := want[v.name]
		if !ok {
			t.Errorf("unexpected variant %s", v.name)
			continue
		}
		slices, tiles := v.stages()
		if v.smem() != w.smem || v.threads() != w.threads || v.perSM != w.perSM || slices != w.slices || tiles != w.tiles || max(v.wgDepth, 1) != w.depth ||
			v.teamCount() != w.teams || v.earlyZ != w.earlyZ || v.productOnly != w.ablate {
			t.Errorf("%s: smem %d, threads %d, %d an SM, rings %d+%d, depth %d, teams %d, early z %v, product only %v; want %+v",
				v.name, v.smem(), v.threads(), v.perSM, slices, tiles, max(v.wgDepth, 1), v.teamCount(), v.earlyZ, v.productOnly, w)
		}
		if !v.k128 || v.bk() != 128 || !v.late || !v.ringOK() || v.smem() > 227<<10 || v.perSM*(v.smem()+1024) > 228<<10 {
			t.Errorf("%s: k128 %v, bk %d, late %v, rings run %v, %d blocks of %d bytes", v.name, v.k128, v.bk(), v.late, v.ringOK(), v.perSM, v.smem())
		}
		// every slot the descriptors address is 1,024-aligned (the 128-byte
		// swizzle's period, base offset 0): x's and w's slots, warpgroup 1's
		// half of x, the tiles after the slices
		for s := range slices {
			for _, off := range []int{s * 128 * v.bk(), s*128*v.bk() + 64*v.bk(), (slices + s) * 128 * v.bk(), 2*slices*128*v.bk() + s%tiles*128*v.bn()} {
				if off%1024 != 0 {
					t.Errorf("%s: slot %d at %d, not 1,024-aligned", v.name, s, off)
				}
			}
		}
		src := expandI8tSource(v)
		if strings.Contains(src, "$") {
			t.Errorf("%s: unreplaced placeholder", v.name)
		}
		for _, def := range []string{"BK 128", "SWZ 1", "MC 0", "CONV3 0", "BN 128", "STAGES " + strconv.Itoa(w.slices), "ZS " + strconv.Itoa(w.tiles),
			"WGDEPTH " + strconv.Itoa(w.depth), "TEAMS " + strconv.Itoa(w.teams), "EARLYZ " + b(w.earlyZ), "ABLATE " + b(w.ablate), "FASTCVT 1", "BIGK 1"} {
			if !strings.Contains(src, "#define "+def+"\n") && !strings.Contains(src, "#define "+def+" ") {
				t.Errorf("%s: no #define %s", v.name, def)
			}
		}
		for _, frag := range []string{" " + v.name + "(", fmt.Sprintf("__launch_bounds__(NCONS + 32, %d)", w.perSM),
			"((unsigned long long)(1024 >> 4) << 32) | (1ull << 62)", "KT = (K + BK - 1) / BK", "mbar_expect_tx(FULL(s), SLICE + WSLICE)"} {
			if !strings.Contains(src, frag) {
				t.Errorf("%s: no %q", v.name, frag)
			}
		}
	}
	n := openNVRTC(t)
	// the descriptor's constant bits, as the PTX ORs them in (a decimal
	// int64: the layout type's bit 62 keeps it positive)
	sw128 := strconv.FormatUint(sw128Desc(0, 0), 10)
	for _, v := range append([]expandI8tVariant{expandI8U2}, expandK128Variants...) {
		src := expandI8tSource(v)
		if compileExpand(t, n, v.name+".cu", src, "sm_90a") != nil {
			continue
		}
		c, err := n.Compile(v.name+".cu", src, "--gpu-architecture=compute_90")
		if err != nil {
			t.Fatalf("%s, compute_90: %v", v.name, err)
		}
		ptx := string(c.PTX)
		steps := strings.Count(ptx, "wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.s8")
		if per := v.bk() / 32; steps == 0 || steps%per != 0 || v.k128 && steps%4 != 0 {
			t.Errorf("%s: %d wgmma in the PTX, want a multiple of %d", v.name, steps, per)
		}
		if got := strings.Contains(ptx, ", "+sw128+";"); got != v.k128 {
			t.Errorf("%s (k128 %v): the 128-byte swizzle's descriptor bits %s in the PTX: %v", v.name, v.k128, sw128, got)
		}
		if got := strings.Contains(ptx, "wgmma.wait_group.sync.aligned 2"); got != (v.wgDepth == 2) {
			t.Errorf("%s (depth %d): wait_group 2 in the PTX: %v", v.name, v.wgDepth, got)
		}
		if got := strings.Contains(ptx, "cp.async.bulk.wait_group.read 0"); got != v.earlyZ {
			t.Errorf("%s (early z %v): wait_group.read 0 in the PTX: %v", v.name, v.earlyZ, got)
		}
		if got := strings.Contains(ptx, "cvt.rni.f32.f32"); got {
			t.Errorf("%s: FRND in the PTX (bigK's epilogue has none)", v.name)
		}
		t.Logf("%s: PTX only (%d bytes, %d wgmma)", v.name, len(ptx), steps)
	}
}

// TestSW128Desc decodes the k128 builds' wgmma descriptor (sw128Desc, the
// Go copy of desc()'s 128-byte branch) field by field at the slots' base
// addresses and each k32 step: the start address / 16 in bits 0-13 (the
// step 32 bytes into the 128-byte row), leading byte offset 1 (unused),
// stride byte offset 1,024 / 16 (eight 128-byte rows), base offset 0,
// layout type 1 (the 128-byte swizzle), every other bit 0.
func TestSW128Desc(t *testing.T) {
	for _, addr := range []uint32{0, 1024, 0x4000, 0x6000, 227<<10 - 16384} {
		for kk := range 4 {
			d := sw128Desc(addr, kk)
			start, lbo, sbo := d&0x3FFF, d>>16&0x3FFF, d>>32&0x3FFF
			base, layout := d>>49&7, d>>62
			if start<<4 != uint64(addr)+uint64(32*kk) || lbo != 1 || sbo != 64 || base != 0 || layout != 1 {
				t.Errorf("desc(%#x, %d) = %#x: start %#x, lbo %d, sbo %d, base %d, layout %d", addr, kk, d, start<<4, lbo, sbo, base, layout)
			}
			if rest := d &^ (0x3FFF | 0x3FFF<<16 | 0x3FFF<<32 | 7<<49 | 3<<62); rest != 0 {
				t.Errorf("desc(%#x, %d): stray bits %#x", addr, kk, rest)
			}
		}
	}
}

// TestExpandK128Fits checks which shapes the k128 builds take: ResNet-50's
// 1x1s at batch 256 (K = 64 as one zero-filled half slice; N = 64 not:
// 128-channel tiles), not P or N off the tile or K off 64 bytes; and that
// a build whose rings cannot run (depth 2 on 2 slices), whose shared
// memory does not fit (two blocks of 5 + 3), or that multicasts or takes
// 64-channel tiles takes nothing.
func TestExpandK128Fits(t *testing.T) {
	for _, c := range []struct {
		p, k, n int
		fits    bool
	}{
		{256 * 56 * 56, 64, 256, true}, {256 * 56 * 56, 256, 128, true}, {256 * 56 * 56, 256, 64, false},
		{256 * 28 * 28, 128, 512, true}, {256 * 28 * 28, 512, 128, true}, {256 * 28 * 28, 512, 256, true},
		{256 * 14 * 14, 256, 1024, true}, {256 * 14 * 14, 1024, 256, true}, {256 * 14 * 14, 1024, 512, true},
		{256 * 7 * 7, 512, 2048, true}, {256 * 7 * 7, 2048, 512, true},
		{98, 256, 256, false}, {256, 32, 256, false}, {256, 96, 256, false}, {256, 192, 256, true},
	} {
		for _, v := range expandK128Variants {
			if got := v.fits(c.p, c.k, c.n); got != c.fits {
				t.Errorf("%s fits(%d, %d, %d) = %v, want %v", v.name, c.p, c.k, c.n, got, c.fits)
			}
		}
	}
	base := expandK128Variants[1]
	for _, c := range []struct {
		name string
		edit func(*expandI8tVariant)
	}{
		{"depth 2 on 2 slices", func(v *expandI8tVariant) { v.ring = [2]int{2, 3} }},
		{"one tile", func(v *expandI8tVariant) { v.ring = [2]int{5, 1} }},
		{"two blocks of 5 + 3", func(v *expandI8tVariant) { v.perSM = 2 }},
		{"6 + 3 in one block", func(v *expandI8tVariant) { v.ring = [2]int{6, 3} }},
		{"multicast", func(v *expandI8tVariant) { v.multicast = true }},
		{"n64", func(v *expandI8tVariant) { v.n64 = true }},
		{"not swizzled", func(v *expandI8tVariant) { v.swizzled = false }},
	} {
		v := base
		c.edit(&v)
		if v.fits(256*14*14, 256, 1024) {
			t.Errorf("%s: fits", c.name)
		}
	}
	if !base.fits(256*14*14, 256, 1024) {
		t.Errorf("%s does not take 14x14", base.name)
	}
}

// TestExpandK128MapSpecs checks the k128 builds' tensor maps: x's and w's
// boxes 128 bytes x 128 rows in the 128-byte swizzle (16 KB each: the
// slice's expect_tx, SLICE + WSLICE, is both), z's and y's as expand_i8u2's,
// all within the driver's limits; and, through the fake driver, that the
// swizzle reaches cuTensorMapEncodeTiled.
func TestExpandK128MapSpecs(t *testing.T) {
	const x, w, z, y = 0x7f0000000000, 0x7f0010000000, 0x7f0020000000, 0x7f0030000000
	d, err := OpenDriver(Options{LibDir: fakeDriver(t)})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ p, k, n int }{{256 * 56 * 56, 64, 256}, {256 * 14 * 14, 256, 1024}, {256 * 7 * 7, 2048, 512}} {
		for _, v := range expandK128Variants {
			specs := expandI8tMapSpecs(x, w, z, y, c.p, c.k, c.n, v)
			u2 := expandI8tMapSpecs(x, w, z, y, c.p, c.k, c.n, expandI8U2)
			tx := 0
			for i, sp := range specs {
				if err := sp.check(); err != nil {
					t.Errorf("%+v %s map %d: %v", c, v.name, i, err)
				}
				if i < 2 {
					if sp.Box[0] != 128 || sp.Box[1] != 128 || sp.Swizzle != Swizzle128B || sp.Dims[0] != uint64(c.k) || sp.Strides[0] != uint64(c.k) {
						t.Errorf("%+v %s map %d: box %v, swizzle %d, dims %v, strides %v", c, v.name, i, sp.Box, sp.Swizzle, sp.Dims, sp.Strides)
					}
					tx += int(sp.Box[0]) * int(sp.Box[1])
				} else if fmt.Sprint(sp) != fmt.Sprint(u2[i]) {
					t.Errorf("%+v %s map %d: %+v, expand_i8u2's %+v", c, v.name, i, sp, u2[i])
				}
				m, err := d.EncodeTensorMapTiled(sp)
				if err != nil {
					t.Fatal(err)
				}
				if got := binary.LittleEndian.Uint64(m[:]) >> 8 & 0xff; got != uint64(sp.Swizzle) {
					t.Errorf("%+v %s map %d: the driver got swizzle %d, want %d", c, v.name, i, got, sp.Swizzle)
				}
			}
			if want := 128*v.bk() + v.bn()*v.bk(); tx != want || tx != 32768 {
				t.Errorf("%+v %s: %d bytes a slice's copies, the barrier expects %d", c, v.name, tx, want)
			}
		}
	}
}

// TestConv3K128 checks the k128 builds of conv3_i8u2 (conv3K128Variant):
// names, shared memory and rings as expand_k128's and expand_k128u2's; the
// shapes they take (ResNet-50's 3x3s but layer1's 64-channel one); x's
// im2col map (128 pixels of 128 channels a copy in the 128-byte swizzle:
// one K slice, the traversal stride 2 for s2) and w's tiled map (128 x 128
// boxes of the [Cout, 9C] weights), within the driver's limits and moving
// the bytes the barrier expects; the slices of a tile whole taps (9C / 128
// = 9 x C / 128); and the source (CONV3, BK 128, CSTRIDE, the extra
// arguments) and, where NVRTC has sm_90a, its assembly without spills,
// else its compute_90 PTX (the 4-D im2col copy, the 128-byte swizzle's
// descriptor bits, wait_group 2 in the one-block build only).
func TestConv3K128(t *testing.T) {
	const x, wt, y = 0x7f0000000000, 0x7f0010000000, 0x7f0030000000
	for _, c := range []struct {
		stride int
		two    bool
		name   string
		like   expandI8tVariant
	}{
		{1, false, "conv3_k128", expandK128Variants[1]}, {2, false, "conv3_k128s2", expandK128Variants[1]},
		{1, true, "conv3_k128u2", expandK128Variants[2]}, {2, true, "conv3_k128u2s2", expandK128Variants[2]},
	} {
		v := conv3K128Variant(c.stride, c.two)
		s1, t1 := v.stages()
		s2, t2 := c.like.stages()
		if v.name != c.name || v.smem() != c.like.smem() || v.perSM != c.like.perSM || s1 != s2 || t1 != t2 || v.wgDepth != c.like.wgDepth || v.earlyZ != c.like.earlyZ ||
			!v.conv3 || !v.k128 || v.stride2 != (c.stride == 2) || !v.ringOK() {
			t.Errorf("conv3K128Variant(%d, %v) = %+v, want %s built as %s", c.stride, c.two, v, c.name, c.like.name)
		}
		src := expandI8tSource(v)
		for _, frag := range []string{"#define CONV3 1", "#define BK 128 ", fmt.Sprintf("#define CSTRIDE %d ", c.stride), " " + c.name + "(", "int tiles, int H, int W)",
			"tma_load4_im2col(sx + s * SLICE", "const int cb = K / (9 * BK);", "(1ull << 62)"} {
			if !strings.Contains(src, frag) {
				t.Errorf("%s: no %q", c.name, frag)
			}
		}
		if strings.Contains(src, "$") {
			t.Errorf("%s: unreplaced placeholder", c.name)
		}
		for _, s := range []struct {
			n, h, c, cout, stride int
			fits                  bool
		}{
			{256, 56, 64, 64, 1, false}, {256, 28, 128, 128, 1, true}, {256, 14, 256, 256, 1, true}, {256, 7, 512, 512, 1, true},
			{256, 56, 128, 128, 2, true}, {256, 28, 256, 256, 2, true}, {256, 14, 512, 512, 2, true}, {2, 7, 512, 512, 1, true},
			{256, 28, 192, 128, 1, false}, {256, 28, 128, 64, 1, false}, {256, 28, 128, 128, 3, false},
		} {
			if got := conv3K128Fits(s.n, s.h, s.h, s.c, s.cout, s.stride, 1); got != s.fits {
				t.Errorf("conv3K128Fits(%+v) = %v, want %v", s, got, s.fits)
			}
			if !s.fits || s.stride != c.stride {
				continue
			}
			xm, rest := conv3I8MapSpecsV(v, x, wt, 0, y, s.n, s.h, s.h, s.c, s.cout, s.stride)
			if err := xm.check(); err != nil {
				t.Errorf("%s %+v: x's map: %v", c.name, s, err)
			}
			if xm.ChannelsPerPixel != 128 || xm.PixelsPerColumn != 128 || xm.Swizzle != Swizzle128B || (s.stride == 2) != (len(xm.ElementStrides) == 4 && xm.ElementStrides[1] == 2) {
				t.Errorf("%s %+v: x's map %+v", c.name, s, xm)
			}
			wm := rest[0]
			if err := wm.check(); err != nil {
				t.Errorf("%s %+v: w's map: %v", c.name, s, err)
			}
			if wm.Box[0] != 128 || wm.Box[1] != 128 || wm.Swizzle != Swizzle128B || wm.Dims[0] != uint64(9*s.c) || wm.Dims[1] != uint64(s.cout) {
				t.Errorf("%s %+v: w's map %+v", c.name, s, wm)
			}
			// one copy of each a slice: the barrier's SLICE + WSLICE
			if got := int(xm.ChannelsPerPixel*xm.PixelsPerColumn) + int(wm.Box[0]*wm.Box[1]); got != 128*v.bk()+v.bn()*v.bk() {
				t.Errorf("%s %+v: %d bytes a slice's copies, the barrier expects %d", c.name, s, got, 128*v.bk()+v.bn()*v.bk())
			}
			// the slices of a tile are whole taps: KT = 9 cb, cb = C / 128
			if k := 9 * s.c; k%v.bk() != 0 || k/v.bk() != 9*(k/(9*v.bk())) {
				t.Errorf("%s %+v: K = %d is not 9 taps of whole 128-byte slices", c.name, s, k)
			}
			if y := rest[2]; y.Dims[1] != uint64(s.n*Conv3I8OutSize(s.h, s.stride)*Conv3I8OutSize(s.h, s.stride)) {
				t.Errorf("%s %+v: y's map rows %d", c.name, s, y.Dims[1])
			}
		}
	}
	n := openNVRTC(t)
	sw128 := strconv.FormatUint(sw128Desc(0, 0), 10)
	for _, two := range []bool{false, true} {
		v := conv3K128Variant(1, two)
		src := expandI8tSource(v)
		if compileExpand(t, n, v.name+".cu", src, "sm_90a") != nil {
			continue
		}
		c, err := n.Compile(v.name+".cu", src, "--gpu-architecture=compute_90")
		if err != nil {
			t.Fatalf("%s, compute_90: %v", v.name, err)
		}
		ptx := string(c.PTX)
		for ins, want := range map[string]bool{
			"cp.async.bulk.tensor.4d.shared::cluster.global.im2col.mbarrier::complete_tx::bytes": true,
			", " + sw128 + ";":                true,
			"wgmma.wait_group.sync.aligned 2": !two,
			"cp.async.bulk.wait_group.read 0": two,
			".entry " + v.name + "(":          true,
			"m64n128k32.s32.s8.s8":            true,
		} {
			if strings.Contains(ptx, ins) != want {
				t.Errorf("%s: %q in the PTX: %v", v.name, ins, !want)
			}
		}
		t.Logf("%s: PTX only (%d bytes)", v.name, len(ptx))
	}
}

// TestExpandK128Exported checks what the executor's switch uses:
// ExpandK128Kernel is expand_k128u2 with expand_i8u2's threads and blocks
// an SM (the launch differs only in the function and its shared memory),
// its source is that build's alone, its shapes those of ExpandI8Fits with K
// a multiple of 128, and its maps the build's.
func TestExpandK128Exported(t *testing.T) {
	v := expandK128Exec
	if v.name != ExpandK128Kernel || v.threads() != ExpandI8Threads || v.perSM != ExpandI8BlocksPerSM || ExpandK128SharedMem() != v.smem() || ExpandK128SharedMem() != 99392 {
		t.Errorf("%s: %d threads, %d an SM, %d bytes", v.name, v.threads(), v.perSM, ExpandK128SharedMem())
	}
	src := ExpandK128Source()
	if strings.Count(src, "extern \"C\" __global__") != 1 || !strings.Contains(src, " "+ExpandK128Kernel+"(") || !strings.Contains(src, "#define BK 128 ") {
		t.Error("ExpandK128Source is not expand_k128u2 alone")
	}
	for _, c := range []struct {
		p, k, n int
		fits    bool
	}{{256 * 56 * 56, 64, 256, false}, {256 * 56 * 56, 256, 128, true}, {256 * 14 * 14, 1024, 512, true}, {256 * 14 * 14, 192, 512, false}, {200, 256, 128, false}} {
		if got := ExpandK128Fits(c.p, c.k, c.n); got != c.fits || got && !ExpandI8Fits(c.p, c.k, c.n) {
			t.Errorf("ExpandK128Fits(%d, %d, %d) = %v, want %v", c.p, c.k, c.n, got, c.fits)
		}
	}
	specs := ExpandK128MapSpecs(0x7f0000000000, 0x7f0010000000, 0, 0x7f0030000000, 256*14*14, 256, 1024)
	if fmt.Sprint(specs) != fmt.Sprint(expandI8tMapSpecs(0x7f0000000000, 0x7f0010000000, 0, 0x7f0030000000, 256*14*14, 256, 1024, v)) || specs[0].Swizzle != Swizzle128B {
		t.Errorf("ExpandK128MapSpecs: %+v", specs)
	}
}
