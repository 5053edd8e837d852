package cuda

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestTensorMapIm2colCheck pins the limits EncodeTensorMapIm2col enforces
// before it calls the driver.
func TestTensorMapIm2colCheck(t *testing.T) {
	ok := TensorMapIm2col{Addr: 0x1000, Dims: []uint64{64, 56, 56, 256}, Strides: []uint64{64, 56 * 64, 56 * 56 * 64},
		Lower: []int32{-1, -1}, Upper: []int32{-1, -1}, ChannelsPerPixel: 64, PixelsPerColumn: 128, Swizzle: Swizzle64B, L2Promotion: 2}
	for _, c := range []struct {
		name string
		edit func(*TensorMapIm2col)
		want string // "" valid, else a part of the error
	}{
		{"valid", func(*TensorMapIm2col) {}, ""},
		{"rank 3 (NWC)", func(m *TensorMapIm2col) {
			m.Dims, m.Strides, m.Lower, m.Upper = []uint64{64, 56, 256}, []uint64{64, 56 * 64}, []int32{-1}, []int32{-1}
		}, ""},
		{"rank 5 (NDHWC)", func(m *TensorMapIm2col) {
			m.Dims, m.Strides, m.Lower, m.Upper = []uint64{64, 8, 8, 8, 2}, []uint64{64, 512, 4096, 32768}, []int32{-1, -1, -1}, []int32{-1, -1, -1}
		}, ""},
		{"traversal stride 2", func(m *TensorMapIm2col) { m.ElementStrides = []uint32{1, 2, 2, 1} }, ""},
		{"rank 2", func(m *TensorMapIm2col) {
			m.Dims, m.Strides, m.Lower, m.Upper = []uint64{64, 56}, []uint64{64}, nil, nil
		}, "rank 2"},
		{"rank 6", func(m *TensorMapIm2col) {
			m.Dims, m.Strides = []uint64{64, 2, 2, 2, 2, 2}, []uint64{64, 128, 256, 512, 1024}
			m.Lower, m.Upper = []int32{0, 0, 0, 0}, []int32{0, 0, 0, 0}
		}, "rank 6"},
		{"strides", func(m *TensorMapIm2col) { m.Strides = m.Strides[:2] }, "strides"},
		{"corners", func(m *TensorMapIm2col) { m.Lower = m.Lower[:1] }, "corner coordinates"},
		{"element strides", func(m *TensorMapIm2col) { m.ElementStrides = []uint32{1, 1} }, "element strides"},
		{"element stride 9", func(m *TensorMapIm2col) { m.ElementStrides = []uint32{1, 9, 1, 1} }, "element stride 1"},
		{"misaligned address", func(m *TensorMapIm2col) { m.Addr = 0x1004 }, "aligned"},
		{"stride not of 16", func(m *TensorMapIm2col) { m.Strides[0] = 72 }, "multiple of 16"},
		{"no channels", func(m *TensorMapIm2col) { m.ChannelsPerPixel = 0 }, "channels a pixel"},
		{"channels over 256", func(m *TensorMapIm2col) { m.ChannelsPerPixel, m.Swizzle = 512, SwizzleNone }, "channels a pixel"},
		{"pixel of 8 bytes", func(m *TensorMapIm2col) { m.ChannelsPerPixel = 8 }, "multiple of 16"},
		{"pixels over 1024", func(m *TensorMapIm2col) { m.PixelsPerColumn = 1025 }, "pixels a column"},
		{"pixels wider than the swizzle", func(m *TensorMapIm2col) { m.Swizzle = Swizzle32B }, "wider than"},
		{"corner below -128 at rank 4", func(m *TensorMapIm2col) { m.Lower[0] = -129 }, "outside [-128, 127]"},
		{"corner 128 at rank 4", func(m *TensorMapIm2col) { m.Upper[1] = 128 }, "outside"},
		{"corner 20 at rank 5", func(m *TensorMapIm2col) {
			m.Dims, m.Strides, m.Lower, m.Upper = []uint64{64, 8, 8, 8, 2}, []uint64{64, 512, 4096, 32768}, []int32{-1, -1, -1}, []int32{-1, 20, -1}
		}, "outside [-16, 15]"},
		{"corner -1000 at rank 3", func(m *TensorMapIm2col) {
			m.Dims, m.Strides, m.Lower, m.Upper = []uint64{64, 4096, 256}, []uint64{64, 4096 * 64}, []int32{-1000}, []int32{-1}
		}, ""},
		{"empty bounding box", func(m *TensorMapIm2col) { m.Dims[1], m.Lower[0], m.Upper[0] = 2, 0, -2 }, "empty"},
		{"one-position bounding box", func(m *TensorMapIm2col) { m.Dims[1], m.Lower[0], m.Upper[0] = 3, 0, -2 }, ""},
		{"L2 promotion", func(m *TensorMapIm2col) { m.L2Promotion = 4 }, "L2 promotion"},
		{"swizzle", func(m *TensorMapIm2col) { m.Swizzle = 4 }, "swizzle"},
		{"empty dimension", func(m *TensorMapIm2col) { m.Dims[3] = 0 }, "dimension 3"},
	} {
		m := ok
		m.Dims, m.Strides = append([]uint64(nil), ok.Dims...), append([]uint64(nil), ok.Strides...)
		m.Lower, m.Upper = append([]int32(nil), ok.Lower...), append([]int32(nil), ok.Upper...)
		c.edit(&m)
		err := m.check()
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s: check() = %v, want %q", c.name, err, c.want)
		}
	}
}

// TestEncodeTensorMapIm2colFake checks EncodeTensorMapIm2col's call against
// the fake libcuda, which writes its arguments into the map (fakecuda.c):
// rank, address, dimensions, strides, corners, pixels and channels,
// element strides, swizzle and L2 promotion where the driver reads them,
// UINT8, no interleave, zero fill; and that a map check rejects reaches no
// driver.
func TestEncodeTensorMapIm2colFake(t *testing.T) {
	d, err := OpenDriver(Options{LibDir: fakeDriver(t)})
	if err != nil {
		t.Fatal(err)
	}
	xs, _ := Conv3I8MapSpecs(0x7f0000000000, 0x7f0010000000, 0, 0x7f0030000000, 256, 28, 28, 128, 128, 1)
	strided := xs
	strided.Lower, strided.Upper, strided.ElementStrides = []int32{-1, -2}, []int32{3, -1}, []uint32{1, 2, 2, 1}
	for _, c := range []TensorMapIm2col{xs, strided} {
		m, err := d.EncodeTensorMapIm2col(c)
		if err != nil {
			t.Fatal(err)
		}
		word := func(i int) uint64 { return binary.LittleEndian.Uint64(m[8*i:]) }
		r := len(c.Dims)
		want := uint64(r) | uint64(c.Swizzle)<<8 | uint64(c.L2Promotion)<<16 | uint64(c.PixelsPerColumn)<<40 | uint64(c.ChannelsPerPixel)<<52
		if word(0) != want {
			t.Errorf("%+v: word 0 %#x, want %#x", c, word(0), want)
		}
		if word(1) != uint64(c.Addr) {
			t.Errorf("%+v: address %#x", c, word(1))
		}
		for i := range r {
			e := uint64(1)
			if c.ElementStrides != nil {
				e = uint64(c.ElementStrides[i])
			}
			if i >= 1 && i <= r-2 {
				e |= uint64(uint16(c.Lower[i-1]))<<32 | uint64(uint16(c.Upper[i-1]))<<48
			}
			if word(2+i) != c.Dims[i] || i > 0 && word(6+i) != c.Strides[i-1] || word(11+i) != e {
				t.Errorf("%+v: dimension %d: %d, stride %d, element stride/corners %#x (want %#x)", c, i, word(2+i), word(6+i), word(11+i), e)
			}
		}
	}
	bad := xs
	bad.Addr = 8
	if _, err := d.EncodeTensorMapIm2col(bad); err == nil || !strings.Contains(err.Error(), "aligned") {
		t.Errorf("a misaligned address: %v", err)
	}
	// all four maps, as the probe and the executor encode them
	maps, err := d.EncodeConv3I8Maps(0x7f0000000000, 0x7f0010000000, 0, 0x7f0030000000, 256, 28, 28, 128, 128, 2)
	if err != nil || len(maps) != 4 {
		t.Fatalf("EncodeConv3I8Maps: %d maps, %v", len(maps), err)
	}
	if w := binary.LittleEndian.Uint64(maps[0][:]); w&0xff != 4 || w>>40&0x7ff != 128 || w>>52 != 64 {
		t.Errorf("x's map word 0 %#x: not rank 4, 128 pixels of 64 channels", w)
	}
	for i, want := range []uint64{1, 2, 2, 1} { // the traversal stride of stride 2, in the low words
		if got := binary.LittleEndian.Uint64(maps[0][8*(11+i):]) & 0xffffffff; got != want {
			t.Errorf("x's map: element stride %d = %d, want %d", i, got, want)
		}
	}
	if got := binary.LittleEndian.Uint64(maps[3][8*3:]); got != 256*14*14 { // y's rows: the output's
		t.Errorf("y's map of %d rows, want %d", got, 256*14*14)
	}
	for i, a := range []uint64{0x7f0010000000, 0x7f0030000000, 0x7f0030000000} {
		if got := binary.LittleEndian.Uint64(maps[1+i][8:]); got != a {
			t.Errorf("map %d at %#x, want %#x", 1+i, got, a)
		}
	}
}

// TestConv3I8Fits pins the shapes conv3_i8u2 takes: ResNet-50's 3x3s
// (layer1's 64 outputs by conv3_i8u2n64, the stride-2 ones by the s2
// builds), not stride 3, other paddings, channels or outputs off 64.
func TestConv3I8Fits(t *testing.T) {
	for _, c := range []struct {
		n, h, w, c, cout, stride, pad int
		want                          bool
	}{
		{256, 28, 28, 128, 128, 1, 1, true},
		{256, 14, 14, 256, 256, 1, 1, true},
		{256, 7, 7, 512, 512, 1, 1, true},
		{1, 7, 7, 512, 512, 1, 1, true}, // P = 49: one clipped tile
		{3, 5, 9, 64, 128, 1, 1, true},
		{256, 56, 56, 64, 64, 1, 1, true}, // layer1: 64 outputs, conv3_i8u2n64
		{256, 56, 56, 64, 96, 1, 1, false},
		{256, 56, 56, 128, 128, 2, 1, true},
		{256, 7, 7, 512, 512, 2, 1, true}, // odd: 4 x 4 out
		{256, 56, 56, 128, 128, 3, 1, false},
		{256, 56, 56, 128, 128, 0, 1, false},
		{256, 28, 28, 128, 128, 1, 0, false},
		{256, 28, 28, 96, 128, 1, 1, false},
		{256, 28, 28, 128, 192, 1, 1, true}, // 64-channel tiles
		{256, 28, 28, 128, 160, 1, 1, false},
		{0, 28, 28, 128, 128, 1, 1, false},
		{256, 0, 28, 128, 128, 1, 1, false},
		{-1, 28, 28, 128, 128, 1, 1, false},
		{1 << 20, 64, 64, 64, 128, 1, 1, false}, // P = 2^32
	} {
		if got := Conv3I8Fits(c.n, c.h, c.w, c.c, c.cout, c.stride, c.pad); got != c.want {
			t.Errorf("Conv3I8Fits(%+v) = %v", c, got)
		}
	}
	if got := Conv3I8Tiles(256*7*7, 512); got != 98*4 {
		t.Errorf("tiles at 7x7: %d", got)
	}
	if got := Conv3I8Tiles(49, 256); got != 2 {
		t.Errorf("tiles of 49 rows x 256: %d", got)
	}
	if got := Conv3I8Tiles(256*56*56, 64); got != 6272 {
		t.Errorf("tiles at 56x56 x 64: %d", got)
	}
	if got := Conv3I8Tiles(256*56*56, 192); got != 6272*3 {
		t.Errorf("tiles at 56x56 x 192 (64-channel tiles): %d", got)
	}
}

// TestConv3I8MapSpecs checks conv3_i8u2's maps against the driver's limits
// (stride 1, and stride 2 with its traversal stride and the output's rows)
// and that each copy moves the bytes the kernel expects on its barriers:
// x 128 pixels x 64 channels (8 KB, as expand_i8u2's slice), w a 64-byte
// slice of 128 rows of the [cout, 9c] weights, z and y 128 x 128 tiles
// (conv3_i8u2n64: 64 rows of w, 128 x 64 tiles in the 64-byte swizzle).
func TestConv3I8MapSpecs(t *testing.T) {
	for _, s := range [][6]int{{256, 28, 28, 128, 128, 1}, {256, 14, 14, 256, 256, 1}, {256, 7, 7, 512, 512, 1}, {1, 7, 7, 512, 512, 1}, {256, 56, 56, 64, 64, 1},
		{256, 56, 56, 128, 128, 2}, {256, 14, 14, 512, 512, 2}} {
		n, h, w, c, cout, stride := s[0], s[1], s[2], s[3], s[4], s[5]
		xs, rest := Conv3I8MapSpecs(0x7f0000000000, 0x7f0010000000, 0, 0x7f0030000000, n, h, w, c, cout, stride)
		if stride == 2 && (len(xs.ElementStrides) != 4 || xs.ElementStrides[1] != 2 || xs.ElementStrides[2] != 2) || stride == 1 && xs.ElementStrides != nil {
			t.Errorf("%v x: element strides %v", s, xs.ElementStrides)
		}
		oh := Conv3I8OutSize(h, stride)
		if err := xs.check(); err != nil {
			t.Errorf("%v x: %v", s, err)
		}
		if xs.ChannelsPerPixel*xs.PixelsPerColumn != 128*64 || xs.Swizzle != Swizzle64B {
			t.Errorf("%v x: %d x %d bytes a copy, swizzle %d", s, xs.PixelsPerColumn, xs.ChannelsPerPixel, xs.Swizzle)
		}
		if xs.Dims[0] != uint64(c) || xs.Dims[1] != uint64(w) || xs.Dims[2] != uint64(h) || xs.Dims[3] != uint64(n) || xs.Strides[2] != uint64(h*w*c) {
			t.Errorf("%v x: dims %v strides %v", s, xs.Dims, xs.Strides)
		}
		if len(rest) != 3 {
			t.Fatalf("%v: %d tiled maps", s, len(rest))
		}
		for i, m := range rest {
			if err := m.check(); err != nil {
				t.Errorf("%v map %d: %v", s, i+1, err)
			}
			box := int(m.Box[0]) * int(m.Box[1])
			bn := 128
			if cout%128 != 0 {
				bn = 64
			}
			if want := []int{bn * 64, 128 * bn, 128 * bn}[i]; box != want {
				t.Errorf("%v map %d: %d bytes a box, want %d", s, i+1, box, want)
			}
			if sw := map[int]TensorMapSwizzle{64: Swizzle64B, 128: Swizzle128B}[bn]; i > 0 && m.Swizzle != sw {
				t.Errorf("%v map %d: swizzle %d, want %d", s, i+1, m.Swizzle, sw)
			}
		}
		if rest[0].Dims[0] != uint64(9*c) || rest[0].Dims[1] != uint64(cout) || rest[2].Dims[1] != uint64(n*oh*oh) || rest[1].Addr != rest[2].Addr {
			t.Errorf("%v: w dims %v, y dims %v, z at %#x (want y's)", s, rest[0].Dims, rest[2].Dims, uint64(rest[1].Addr))
		}
	}
}

// TestConv3I8Source checks conv3_i8u2's two builds without a device: the
// im2col producer and the two extra arguments in them only (expand_i8u2
// unchanged: CONV3 0, BN 128, no H and W), the tile width, the shared
// memory (expand_i8u2's for 128-channel tiles; the 64-channel build's
// tiles half as large); and compiles them for sm_90a where NVRTC has it,
// else to compute_90 PTX, whose text must hold the 4-D im2col copy with
// its two 16-bit offsets and the wgmma of the tile's width.
func TestConv3I8Source(t *testing.T) {
	u2 := ExpandI8Source(true)
	if !strings.Contains(u2, "#define CONV3 0") || !strings.Contains(u2, "#define BN 128 ") || strings.Contains(u2, "int H, int W") {
		t.Error("expand_i8u2's source changed: CONV3 not 0, BN not 128, or H and W arguments")
	}
	builds := []struct {
		cout, stride, bn, smem int
		name                   string
	}{{128, 1, 128, ExpandI8SharedMem(), "conv3_i8u2"}, {64, 1, 64, ExpandI8SharedMem() - 3*128*64, "conv3_i8u2n64"},
		{256, 2, 128, ExpandI8SharedMem(), "conv3_i8u2s2"}}
	srcs := map[string]string{}
	for _, b := range builds {
		name, src, smem := Conv3I8Build(b.cout, b.stride)
		srcs[name] = src
		if name != b.name || smem != b.smem {
			t.Errorf("cout %d: %s with %d bytes, want %s with %d", b.cout, name, smem, b.name, b.smem)
		}
		if strings.Contains(src, "$") {
			t.Errorf("%s: unreplaced placeholder", name)
		}
		for _, want := range []string{"#define CONV3 1", " " + b.name + "(", "int tiles, int H, int W)", "#define BIGK 1", "#define FASTCVT 1", "#define STAGES 3",
			"tma_load4_im2col(sx + s * SLICE", fmt.Sprintf("#define BN %d ", b.bn), fmt.Sprintf("m64n%dk32", b.bn), fmt.Sprintf("%%%d, %%%d, p;", b.bn/2, b.bn/2+1),
			fmt.Sprintf("#define CSTRIDE %d ", b.stride)} {
			if !strings.Contains(src, want) {
				t.Errorf("%s: no %q", name, want)
			}
		}
		v := conv3I8Variant(b.cout, b.stride)
		if v.threads() != ExpandI8Threads || v.perSM != ExpandI8BlocksPerSM || v.perSM*(v.smem()+1024) > 228<<10 {
			t.Errorf("%s: %d threads, %d blocks an SM of %d bytes", name, v.threads(), v.perSM, v.smem())
		}
	}
	n := openNVRTC(t)
	if compileExpand(t, n, "conv3_i8u2.cu", srcs["conv3_i8u2"], "sm_90a") != nil {
		compileExpand(t, n, "conv3_i8u2n64.cu", srcs["conv3_i8u2n64"], "sm_90a")
		compileExpand(t, n, "conv3_i8u2s2.cu", srcs["conv3_i8u2s2"], "sm_90a")
		return
	}
	for _, c := range []struct {
		name, src string
		im2col    bool
		bn        int
	}{{"conv3_i8u2", srcs["conv3_i8u2"], true, 128}, {"conv3_i8u2n64", srcs["conv3_i8u2n64"], true, 64}, {"conv3_i8u2s2", srcs["conv3_i8u2s2"], true, 128},
		{"expand_i8u2", u2, false, 128}} {
		comp, err := n.Compile(c.name+".cu", c.src, "--gpu-architecture=compute_90")
		if err != nil {
			t.Fatalf("%s, compute_90: %v", c.name, err)
		}
		ptx := string(comp.PTX)
		has := strings.Contains(ptx, "cp.async.bulk.tensor.4d.shared::cluster.global.im2col.mbarrier::complete_tx::bytes")
		if has != c.im2col {
			t.Errorf("%s: the 4-D im2col copy in the PTX: %v", c.name, has)
		}
		if !strings.Contains(ptx, ".entry "+c.name+"(") {
			t.Errorf("%s: no entry", c.name)
		}
		if !strings.Contains(ptx, fmt.Sprintf("wgmma.mma_async.sync.aligned.m64n%dk32.s32.s8.s8", c.bn)) {
			t.Errorf("%s: no wgmma m64n%dk32", c.name, c.bn)
		}
		t.Logf("%s: PTX only (%d bytes)", c.name, len(ptx))
	}
}

// TestConv3I8ReorderWeights checks the [cout][c][3][3] -> [cout][3][3][c]
// reorder and that a wrong length gives nil.
func TestConv3I8ReorderWeights(t *testing.T) {
	const cout, c = 3, 5
	w := make([]int8, cout*c*9)
	for i := range w {
		w[i] = int8(i)
	}
	got := Conv3I8ReorderWeights(w, cout, c)
	for o := range cout {
		for ci := range c {
			for r := range 3 {
				for s := range 3 {
					if got[((o*3+r)*3+s)*c+ci] != w[((o*c+ci)*3+r)*3+s] {
						t.Fatalf("w[%d, %d, %d, %d] moved wrong", o, ci, r, s)
					}
				}
			}
		}
	}
	if Conv3I8ReorderWeights(w[1:], cout, c) != nil || Conv3I8ReorderWeights(w, 0, c) != nil {
		t.Error("a wrong length or count gave weights")
	}
}

// conv3I8Acc is the host's int32 accumulator of output pixel p, channel o
// of a 3x3 pad-1 convolution (the stride) of x [n, h, w, c] with weights
// wt [cout, 3, 3, c]: the GEMM row p of the im2col matrix times weight row
// o.
func conv3I8Acc(x, wt []byte, h, w, c, stride, p, o int) int32 {
	oh0, ow0 := Conv3I8OutSize(h, stride), Conv3I8OutSize(w, stride)
	img, pix := p/(oh0*ow0), p%(oh0*ow0)
	oh, ow := pix/ow0, pix%ow0
	var acc int32
	for r := range 3 {
		ih := stride*oh + r - 1
		if ih < 0 || ih >= h {
			continue
		}
		for s := range 3 {
			iw := stride*ow + s - 1
			if iw < 0 || iw >= w {
				continue
			}
			xr := x[((img*h+ih)*w+iw)*c:][:c]
			wr := wt[(o*9+r*3+s)*c:][:c]
			for ci := range c {
				acc += int32(int8(xr[ci])) * int32(int8(wr[ci]))
			}
		}
	}
	return acc
}

// conv3I8Out is the kernel's epilogue on the host: float32(acc) * alpha +
// bias by one fused multiply-add rounded to float32, rounded to the nearest
// integer (ties to even) and clamped to [0, 127] (relu) or [-128, 127].
func conv3I8Out(acc int32, alpha, bias float32, relu bool) int8 {
	v := float32(math.FMA(float64(float32(acc)), float64(alpha), float64(bias)))
	q := math.RoundToEven(float64(v))
	lo := -128.0
	if relu {
		lo = 0
	}
	return int8(max(lo, min(127, q)))
}

// TestConv3I8Reference checks the host reference the GPU probe trusts
// against a direct convolution in float64 on the NCHW-ordered weights
// (reordered by Conv3I8ReorderWeights), so that the probe's reference
// does not share a mistake with the kernel's K order: every output of a
// small case, the borders included, at stride 1 and 2 (odd and even
// extents).
func TestConv3I8Reference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const n, h, w, c, cout = 2, 5, 4, 64, 3
	x := make([]byte, n*h*w*c)
	for i := range x {
		x[i] = byte(int8(r.IntN(256) - 128))
	}
	wn := make([]int8, cout*c*9) // [cout][c][3][3]
	for i := range wn {
		wn[i] = int8(r.IntN(256) - 128)
	}
	wk := Conv3I8ReorderWeights(wn, cout, c)
	wb := make([]byte, len(wk))
	for i, v := range wk {
		wb[i] = byte(v)
	}
	for stride := 1; stride <= 2; stride++ {
		ohn, own := Conv3I8OutSize(h, stride), Conv3I8OutSize(w, stride)
		if stride == 2 && (ohn != 3 || own != 2) {
			t.Fatalf("stride 2 of 5 x 4: %d x %d", ohn, own)
		}
		for img := range n {
			for oh := range ohn {
				for ow := range own {
					for o := range cout {
						want := 0.0
						for ci := range c {
							for kr := range 3 {
								for ks := range 3 {
									ih, iw := stride*oh-1+kr, stride*ow-1+ks
									if ih < 0 || ih >= h || iw < 0 || iw >= w {
										continue
									}
									want += float64(int8(x[((img*h+ih)*w+iw)*c+ci])) * float64(wn[((o*c+ci)*3+kr)*3+ks])
								}
							}
						}
						if got := conv3I8Acc(x, wb, h, w, c, stride, (img*ohn+oh)*own+ow, o); float64(got) != want {
							t.Fatalf("stride %d: acc[%d, %d, %d, %d] = %d, want %v", stride, img, oh, ow, o, got, want)
						}
					}
				}
			}
		}
	}
	for _, c := range []struct {
		acc         int32
		alpha, bias float32
		relu        bool
		want        int8
	}{{1000, 0.01, 0.5, true, 10}, {-1000, 0.01, 0.5, true, 0}, {-1000, 0.01, 0.5, false, -10}, {250, 0.01, 0, true, 2}, {350, 0.01, 0, true, 4},
		{1 << 24, 1, 0, true, 127}, {-(1 << 24), 1, 0, false, -128}} {
		if got := conv3I8Out(c.acc, c.alpha, c.bias, c.relu); got != c.want {
			t.Errorf("conv3I8Out(%+v) = %d", c, got)
		}
	}
}

// TestConv3I8ProbeData checks the GPU probe's host side without a device:
// its data's outputs (host epilogue) spread over the 8 bits, neither
// saturated nor all zero after ReLU, on each ResNet-50 shape, so that the
// probe's exact check says something; and its check passes on the host's
// own outputs with no one-step differences.
func TestConv3I8ProbeData(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, s := range []conv3Shape{{1, 56, 64, 64, 1}, {1, 28, 128, 128, 1}, {1, 14, 256, 256, 1}, {1, 7, 512, 512, 1}, {1, 14, 512, 512, 2}} {
		d := newConv3Data(r, s)
		p := s.oh() * s.oh()
		y := make([]byte, p*s.cout)
		var rows []int
		zeros, sat, n := 0, 0, 0
		for q := 0; q < p; q += max(1, p/64) {
			rows = append(rows, q)
			for o := range s.cout {
				v := conv3I8Out(conv3I8Acc(d.x, d.w, s.h, s.h, s.c, s.stride, q, o), d.alpha[o], d.bias[o], true)
				y[q*s.cout+o] = byte(v)
				n++
				switch v {
				case 0:
					zeros++
				case 127:
					sat++
				}
			}
		}
		checked, ones, distinct := d.check(t, "host", true, y, rows, nil)
		if checked != n || ones != 0 || distinct < 100 || zeros > n*3/4 || sat > n/20 {
			t.Errorf("%s: %d checked (want %d), %d one step off, %d distinct, %d zero, %d saturated", s, checked, n, ones, distinct, zeros, sat)
		}
		t.Logf("%s: %d outputs, %d distinct, %.0f%% zero, %.1f%% saturated", s, n, distinct, 100*float64(zeros)/float64(n), 100*float64(sat)/float64(n))
	}
}
