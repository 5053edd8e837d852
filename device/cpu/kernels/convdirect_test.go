package kernels

import (
	"math"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/kilnai/kiln/device/cpu"
)

// TestConvDirect compares the direct convolution with cpu.Conv2D (its
// default algorithm) on the layer shapes of the shared CNNs and edge cases:
// output channels that are not a multiple of 8, positions that are not a
// multiple of 48, pads on one side, strides 2 with odd sizes, 1x1
// convolutions read in place, ReLU and clip, no bias, batches.
func TestConvDirect(t *testing.T) {
	if !directAsm {
		t.Skip("the direct convolution needs AVX-512 (amd64 without purego); this CPU or build has none")
	}
	cases := []struct {
		name string
		p    cpu.Conv2DParams
	}{
		{"resnet stem 7x7/2", cpu.Conv2DParams{N: 1, C: 3, H: 224, W: 224, M: 16, KH: 7, KW: 7, PadTop: 3, PadLeft: 3, PadBottom: 3, PadRight: 3, StrideH: 2, StrideW: 2}},
		{"3x3 c16 56", cpu.Conv2DParams{N: 1, C: 16, H: 56, W: 56, M: 16, KH: 3, KW: 3, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1, StrideH: 1, StrideW: 1, Act: cpu.ActRelu}},
		{"3x3/2 c16 56 to 32", cpu.Conv2DParams{N: 1, C: 16, H: 56, W: 56, M: 32, KH: 3, KW: 3, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1, StrideH: 2, StrideW: 2}},
		{"1x1/2 downsample", cpu.Conv2DParams{N: 1, C: 16, H: 56, W: 56, M: 32, KH: 1, KW: 1, StrideH: 2, StrideW: 2}},
		{"1x1 in place, m 13", cpu.Conv2DParams{N: 2, C: 24, H: 9, W: 11, M: 13, KH: 1, KW: 1, StrideH: 1, StrideW: 1, Act: cpu.ActClip, ActMin: 0, ActMax: 6}},
		{"3x3 c128 7x7", cpu.Conv2DParams{N: 1, C: 128, H: 7, W: 7, M: 128, KH: 3, KW: 3, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1, StrideH: 1, StrideW: 1}},
		{"3x3/2 odd, asymmetric pads", cpu.Conv2DParams{N: 1, C: 5, H: 15, W: 13, M: 9, KH: 3, KW: 3, PadTop: 0, PadLeft: 1, PadBottom: 2, PadRight: 0, StrideH: 2, StrideW: 2}},
		{"2x5 stride 2x1", cpu.Conv2DParams{N: 1, C: 4, H: 10, W: 20, M: 8, KH: 2, KW: 5, PadTop: 1, PadLeft: 2, PadBottom: 0, PadRight: 2, StrideH: 2, StrideW: 1}},
		{"3x3 valid (no pads)", cpu.Conv2DParams{N: 2, C: 4, H: 9, W: 10, M: 8, KH: 3, KW: 3, StrideH: 1, StrideW: 1}},
		{"1x90 kernel, stride 2", cpu.Conv2DParams{N: 1, C: 2, H: 3, W: 100, M: 3, KH: 1, KW: 90, StrideH: 1, StrideW: 2, PadLeft: 1}},
		{"1x130 kernel", cpu.Conv2DParams{N: 1, C: 2, H: 2, W: 140, M: 3, KH: 1, KW: 130, StrideH: 1, StrideW: 1}},
		{"1x1 input", cpu.Conv2DParams{N: 1, C: 7, H: 1, W: 1, M: 17, KH: 1, KW: 1, StrideH: 1, StrideW: 1}},
		{"1x1 in place, input past 2 MiB (the prefetching kernel), batch 2", cpu.Conv2DParams{N: 2, C: 192, H: 56, W: 56, M: 20, KH: 1, KW: 1, StrideH: 1, StrideW: 1, Act: cpu.ActRelu}},
		{"3x3/2 c32 112 to 56, m 24 (two tiles a row, channel prefetch)", cpu.Conv2DParams{N: 2, C: 32, H: 112, W: 112, M: 24, KH: 3, KW: 3, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1, StrideH: 2, StrideW: 2, Act: cpu.ActRelu}},
		{"3x3/2 stem no pads, 111 wide", cpu.Conv2DParams{N: 1, C: 3, H: 224, W: 224, M: 20, KH: 3, KW: 3, StrideH: 2, StrideW: 2}},
		{"squeezenet expand 3x3", cpu.Conv2DParams{N: 1, C: 16, H: 55, W: 55, M: 64, KH: 3, KW: 3, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1, StrideH: 1, StrideW: 1, Act: cpu.ActRelu}},
		{"tinycnn conv 1", cpu.Conv2DParams{N: 1, C: 3, H: 32, W: 32, M: 8, KH: 3, KW: 3, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1, StrideH: 1, StrideW: 1, Act: cpu.ActRelu}},
		{"tinycnn conv 2 (vector tiles), batch 2", cpu.Conv2DParams{N: 2, C: 8, H: 16, W: 16, M: 16, KH: 3, KW: 3, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1, StrideH: 1, StrideW: 1, Act: cpu.ActRelu}},
		{"3x3 at 14x14, m 20", cpu.Conv2DParams{N: 1, C: 12, H: 14, W: 14, M: 20, KH: 3, KW: 3, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1, StrideH: 1, StrideW: 1}},
		{"5x5 at 9x21 (two vectors a row, the last of 5 lanes)", cpu.Conv2DParams{N: 1, C: 3, H: 9, W: 21, M: 11, KH: 5, KW: 5, PadTop: 2, PadLeft: 2, PadBottom: 2, PadRight: 2, StrideH: 1, StrideW: 1}},
		{"3x3/2 at 15x15 to 8x8", cpu.Conv2DParams{N: 1, C: 6, H: 15, W: 15, M: 8, KH: 3, KW: 3, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1, StrideH: 2, StrideW: 2}},
		{"3x3 at 20x64, rows of 48 + 16 (their last vectors three rows to a tile), m 13, batch 2", cpu.Conv2DParams{N: 2, C: 5, H: 20, W: 64, M: 13, KH: 3, KW: 3, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1, StrideH: 1, StrideW: 1, Act: cpu.ActRelu}},
		{"yolo 3x3/2 c16 160 to 80 (a tile of 48 and one of 32 a row, both with the channel prefetch)", cpu.Conv2DParams{N: 1, C: 16, H: 160, W: 160, M: 32, KH: 3, KW: 3, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1, StrideH: 2, StrideW: 2, Act: cpu.ActRelu}},
		{"yolo stem 3x3/2 320 to 160 (three tiles and a vector a row)", cpu.Conv2DParams{N: 1, C: 3, H: 320, W: 320, M: 16, KH: 3, KW: 3, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1, StrideH: 2, StrideW: 2}},
		{"3x3 at 5x5, one row a vector, m 3", cpu.Conv2DParams{N: 1, C: 2, H: 5, W: 5, M: 3, KH: 3, KW: 3, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1, StrideH: 1, StrideW: 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := c.p
			p.DilH, p.DilW, p.Group = 1, 1, 1
			if !directApplies(p) {
				t.Fatalf("directApplies(%+v) = false", p)
			}
			r := rand.New(rand.NewPCG(3, uint64(p.C*p.M)))
			x := make([]float32, p.N*p.C*p.H*p.W)
			w := make([]float32, p.M*p.C*p.KH*p.KW)
			bias := make([]float32, p.M)
			for _, s := range [][]float32{x, w, bias} {
				for i := range s {
					s[i] = r.Float32()*2 - 1
				}
			}
			n := p.N * p.M * p.OutH() * p.OutW()
			z := make([]float32, n)
			for i := range z {
				z[i] = r.Float32()*2 - 1
			}
			f := newDirectFilter(w, p.M, p.C, p.KH, p.KW)
			for i, layout := range []int{layoutAuto, layoutRows, layoutWide, layoutVecs} {
				old, oldOrder := directLayout, directOrder
				directLayout = layout
				// both visiting orders of the tiles and weight blocks
				// (directBlockOuter), alternating over the layouts
				directOrder = []int{orderTile, orderBlock, orderTile, orderBlock}[i]
				if c.name == "resnet stem 7x7/2" || c.name == "squeezenet expand 3x3" {
					directOrder = orderBlock + orderTile - directOrder
				}
				for _, b := range [][]float32{bias, nil} {
					// no epilogue, then the residual with SiLU (in Go after
					// the kernel), ReLU and clip (addClamp) and none
					for _, act := range []string{"", actSiLU, actRelu, actClip, actNone} {
						residual := act != ""
						want := make([]float32, n)
						cpu.Conv2D(p, x, w, b, want)
						var ep *epilogue
						var zz []float32
						if residual {
							ep, zz = &epilogue{act: act, p0: -0.5, p1: 0.7}, z
							pn := p
							pn.Act = cpu.ActNone
							cpu.Conv2D(pn, x, w, b, want)
							ep.applyAdd(want, z)
						}
						got := make([]float32, n)
						for i := range got {
							got[i] = float32(math.NaN())
						}
						convDirect(p, x, f, b, got, zz, ep)
						for i := range want {
							if d := math.Abs(float64(got[i] - want[i])); !(d <= 1e-4*(1+math.Abs(float64(want[i])))) {
								t.Fatalf("layout %d, order %d, bias %v, residual and %q: output %d = %g, cpu.Conv2D %g",
									layout, directOrder, b != nil, act, i, got[i], want[i])
							}
						}
						if act == actRelu || act == actNone {
							// the residual in the output's own memory (each
							// element read by the tile that writes it)
							copy(got, z)
							convDirect(p, x, f, b, got, got, ep)
							for i := range want {
								if d := math.Abs(float64(got[i] - want[i])); !(d <= 1e-4*(1+math.Abs(float64(want[i])))) {
									t.Fatalf("layout %d, order %d, bias %v, residual in place and %q: output %d = %g, cpu.Conv2D %g",
										layout, directOrder, b != nil, act, i, got[i], want[i])
								}
							}
						}
					}
				}
				directLayout, directOrder = old, oldOrder
			}
		})
	}
}

// TestDynamicFor checks that dynamicFor visits every item exactly once, in
// ranges of at most chunk items when it splits (with one thread, or on
// the caller alone while the cores are busy, it makes one call of them
// all: the thread count is fixed here so that a busy machine does not
// decide it).
func TestDynamicFor(t *testing.T) {
	if err := cpu.SetThreads(2); err != nil {
		t.Fatal(err)
	}
	defer cpu.SetThreads(0)
	split := cpu.Threads() > 1
	for _, c := range []struct{ n, chunk int }{{0, 1}, {1, 1}, {7, 1}, {7, 3}, {100, 8}, {100, 200}, {1000, 7}} {
		seen := make([]int32, c.n)
		var mu sync.Mutex
		dynamicFor(c.n, c.chunk, func(lo, hi int) {
			if split && hi-lo > c.chunk || lo >= hi {
				t.Errorf("n=%d chunk=%d: range [%d, %d)", c.n, c.chunk, lo, hi)
			}
			mu.Lock()
			for i := lo; i < hi; i++ {
				seen[i]++
			}
			mu.Unlock()
		})
		for i, s := range seen {
			if s != 1 {
				t.Fatalf("n=%d chunk=%d: item %d visited %d times", c.n, c.chunk, i, s)
			}
		}
	}
}

// TestDirectByRow pins the layout choice on the output widths of the
// shared models (see directByRow for the cost model).
func TestDirectByRow(t *testing.T) {
	for _, c := range []struct {
		ow, wq   int
		epilogue bool
		want     bool
	}{
		{112, 115, false, true}, // resnet stem 7x7/2
		{111, 113, false, true}, // squeezenet stem 3x3/2
		{56, 58, false, false},  // 3x3 pad 1 at 56: 58/56 beats 64/56 lanes
		{55, 57, false, false},
		{80, 82, false, true},  // 48 + 32 lanes, exact
		{80, 82, true, true},   // also with an epilogue
		{40, 42, false, false}, // one tile of 48 lanes for 40
		{160, 162, false, true},
		{28, 30, false, false},
	} {
		if got := directByRow(c.ow, c.wq, c.epilogue); got != c.want {
			t.Errorf("directByRow(%d, %d, %v) = %v, want %v", c.ow, c.wq, c.epilogue, got, c.want)
		}
	}
}

// TestDirectVecLayout pins where the tiles of three vectors
// (directVecLayout) replace directByRow's layouts: planes of 16 columns or
// fewer that the wide rows would waste more of (tinycnn's 16x16, 14x14),
// not the 7x7 planes (7 of 16 lanes a vector; 9-column wide rows waste
// less) nor the wider planes, where the row tiles are as cheap.
// TestDirectRowVecs checks which row layouts take their rows' last
// columns three rows to a tile: a last tile of 1-16 columns after at
// least one whole tile.
func TestDirectRowVecs(t *testing.T) {
	for _, c := range []struct {
		ow   int
		want bool
	}{{112, true}, {111, true}, {160, true}, {64, true}, {49, true}, {48, false}, {80, false}, {65, false}, {96, false}, {16, false}, {40, false}} {
		if got := directRowVecs(c.ow, (c.ow+directNR-1)/directNR); got != c.want {
			t.Errorf("directRowVecs(%d) = %v, want %v", c.ow, got, c.want)
		}
	}
}

func TestDirectVecLayout(t *testing.T) {
	for _, c := range []struct {
		oh, ow, wq int
		want       bool
	}{
		{16, 16, 18, true}, // tinycnn's second convolution
		{14, 14, 16, true},
		{8, 8, 10, false}, // wide rows: 8 of 10 lanes used, 8 of 16 in vectors
		{7, 7, 9, false},
		{32, 32, 34, false}, // tinycnn's first: tiles of one row of 32 as cheap
		{56, 56, 58, false},
		{28, 28, 30, false},
		{112, 112, 115, false}, // rows of whole tiles
		{40, 40, 42, false},
	} {
		if got := directVecLayout(c.oh, c.ow, c.wq, false); got != c.want {
			t.Errorf("directVecLayout(%d, %d, %d) = %v, want %v", c.oh, c.ow, c.wq, got, c.want)
		}
	}
}

// TestDirectBlockOuter pins the order of directRun's items on layers of
// the shared models (see directBlockOuter): the weight blocks outermost
// for large weights, and for outputs past 1 MiB over 4+ blocks whose input
// stays in L2, and with two threads where the weights outweigh the input.
func TestDirectBlockOuter(t *testing.T) {
	for _, c := range []struct {
		name                          string
		wBytes, inBytes, outBytes, mb int
		threads                       int
		want                          bool
	}{
		{"squeezenet classifier 512 -> 1000 1x1", 4 * 1000 * 512, 4 * 512 * 169, 4 * 1000 * 169, 125, 1, true},
		{"squeezenet stem 3 -> 64 3x3/2", 4 * 64 * 27, 4 * 3 * 4 * 112 * 112, 4 * 64 * 111 * 111, 8, 1, true},
		{"mobilenet_v2 16 -> 96 1x1 at 112", 4 * 96 * 16, 4 * 16 * 112 * 112, 4 * 96 * 112 * 112, 12, 1, true},
		{"mobilenet_v2 24 -> 144 1x1 at 56", 4 * 144 * 24, 4 * 24 * 56 * 56, 4 * 144 * 56 * 56, 18, 1, true},
		{"yolo_tiny 16 -> 32 3x3/2 at 160: input past L2", 4 * 32 * 144, 4 * 16 * 4 * 81 * 81, 4 * 32 * 80 * 80, 4, 1, false},
		{"yolo_tiny 3 -> 16 stem: 2 blocks", 4 * 16 * 27, 4 * 3 * 4 * 161 * 161, 4 * 16 * 160 * 160, 2, 1, false},
		{"squeezenet 16 -> 64 3x3 at 55: output in L2", 4 * 64 * 144, 4 * 16 * 57 * 57, 4 * 64 * 55 * 55, 8, 1, false},
		{"squeezenet 16 -> 64 3x3 at 55, 2 threads: input past the weights", 4 * 64 * 144, 4 * 16 * 57 * 57, 4 * 64 * 55 * 55, 8, 2, false},
		{"squeezenet 64 -> 256 3x3 at 13, 1 thread", 4 * 256 * 576, 4 * 64 * 15 * 15, 4 * 256 * 13 * 13, 32, 1, false},
		{"squeezenet 64 -> 256 3x3 at 13, 2 threads: weights past the input", 4 * 256 * 576, 4 * 64 * 15 * 15, 4 * 256 * 13 * 13, 32, 2, true},
		{"one block, 2 threads", 4 * 8 * 576, 4 * 64 * 3 * 3, 4 * 8 * 1, 1, 2, false},
		{"squeezenet 64 -> 256 1x1 at 13, 2 threads: weights 1.5x the input", 4 * 256 * 64, 4 * 64 * 169, 4 * 256 * 169, 32, 2, true},
		{"yolo_tiny 64 -> 64 3x3 at 20, 2 threads: weights 1.19x the input", 4 * 64 * 576, 4 * 64 * 22 * 22, 4 * 64 * 400, 8, 2, false},
	} {
		if got := directBlockOuter(c.wBytes, c.inBytes, c.outBytes, c.mb, c.threads); got != c.want {
			t.Errorf("%s: directBlockOuter = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestDirectScratchMeasured checks that the builder's workspace measurement
// (ops.ScratchMeter) sees the direct convolution's padded input, wide
// output and packed filter.
func TestDirectScratchMeasured(t *testing.T) {
	if !directAsm {
		t.Skip("the direct convolution needs AVX-512 (amd64 without purego); this CPU or build has none")
	}
	p := cpu.Conv2DParams{N: 1, C: 16, H: 20, W: 20, M: 24, KH: 3, KW: 3, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1,
		StrideH: 1, StrideW: 1, DilH: 1, DilW: 1, Group: 1}
	x := make([]float32, 16*20*20)
	w := make([]float32, 24*16*9)
	y := make([]float32, 24*20*20)
	f := newDirectFilter(w, p.M, p.C, p.KH, p.KW)
	got := measureScratch(func() { convDirect(p, x, f, nil, y, nil, nil) })
	// filter 24 rows (3 blocks of 8) x 144 taps, input 16 planes of 22x22,
	// wide output 24 x 20 rows of 22 columns
	want := int64(4 * (24*144 + 16*22*22 + 24*20*22))
	if got < want {
		t.Fatalf("measured %d bytes of scratch, want at least %d", got, want)
	}
	if again := measureScratch(func() {}); again != 0 {
		t.Fatalf("an empty measurement reads %d bytes", again)
	}
}

// TestDirectAppliesLimits checks what the direct convolution leaves to the
// other algorithms: groups, dilations, strides past 2, and images whose
// padded copy would not fit the kernel's int32 offsets.
func TestDirectAppliesLimits(t *testing.T) {
	if !directAsm {
		t.Skip("the direct convolution needs AVX-512 (amd64 without purego); this CPU or build has none")
	}
	base := cpu.Conv2DParams{N: 1, C: 8, H: 16, W: 16, M: 8, KH: 3, KW: 3, Group: 1,
		StrideH: 1, StrideW: 1, DilH: 1, DilW: 1, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1}
	for _, c := range []struct {
		name string
		edit func(p *cpu.Conv2DParams)
		want bool
	}{
		{"3x3", func(*cpu.Conv2DParams) {}, true},
		{"stride 2x1", func(p *cpu.Conv2DParams) { p.StrideH = 2 }, true},
		{"groups", func(p *cpu.Conv2DParams) { p.Group = 2 }, false},
		{"dilation", func(p *cpu.Conv2DParams) { p.DilW = 2 }, false},
		{"stride 3", func(p *cpu.Conv2DParams) { p.StrideH, p.StrideW = 3, 3 }, false},
		{"2^31 floats of padded input", func(p *cpu.Conv2DParams) { p.C, p.H, p.W = 1<<11, 1<<10, 1<<10 }, false},
		{"invalid", func(p *cpu.Conv2DParams) { p.KH = 0 }, false},
	} {
		p := base
		c.edit(&p)
		if got := directApplies(p); got != c.want {
			t.Errorf("%s: directApplies = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestDirectPrefetch pins which convolutions run the direct kernel that
// prefetches the next tile's input (directPrefetch): pointwise ones read in
// place with more than 2 MiB of input.
func TestDirectPrefetch(t *testing.T) {
	pw := func(c, h int) cpu.Conv2DParams {
		return cpu.Conv2DParams{N: 1, C: c, H: h, W: h, M: 64, KH: 1, KW: 1, StrideH: 1, StrideW: 1, DilH: 1, DilW: 1, Group: 1}
	}
	for _, c := range []struct {
		name string
		p    cpu.Conv2DParams
		want bool
	}{
		{"resnet50 256 -> 64 1x1 at 56x56 (3.2 MB)", pw(256, 56), true},
		{"resnet50 512 -> 128 1x1 at 28x28 (1.6 MB)", pw(512, 28), false},
		{"resnet50 64 -> 256 1x1 at 56x56 (0.8 MB)", pw(64, 56), false},
		{"3x3 at 56x56 of 256 channels", func() cpu.Conv2DParams { p := pw(256, 56); p.KH, p.KW = 3, 3; return p }(), false},
		{"1x1/2 at 56x56 of 256 channels", func() cpu.Conv2DParams { p := pw(256, 56); p.StrideH, p.StrideW = 2, 2; return p }(), false},
	} {
		if got := directPrefetch(c.p); got != c.want {
			t.Errorf("%s: directPrefetch = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestDirectPF pins which prefetching kernel directRun's whole tiles run
// (directPF): the next tile's input for large pointwise inputs, the next
// channel's taps for stride-2 3x3 layers of 16 channels or more, else none.
func TestDirectPF(t *testing.T) {
	conv := func(c, h, k, s int) cpu.Conv2DParams {
		pad := k / 2
		return cpu.Conv2DParams{N: 1, C: c, H: h, W: h, M: 64, KH: k, KW: k, StrideH: s, StrideW: s, DilH: 1, DilW: 1, Group: 1,
			PadTop: pad, PadLeft: pad, PadBottom: pad, PadRight: pad}
	}
	for _, c := range []struct {
		name string
		p    cpu.Conv2DParams
		want int
	}{
		{"resnet50 256 -> 64 1x1 at 56x56", conv(256, 56, 1, 1), pfNext},
		{"resnet50 128 3x3/2 at 56x56", conv(128, 56, 3, 2), pfChannel},
		{"resnet50 256 3x3/2 at 28x28", conv(256, 28, 3, 2), pfChannel},
		{"yolo_tiny 16 -> 32 3x3/2 at 160x160", conv(16, 160, 3, 2), pfChannel},
		{"stem 3 -> 64 3x3/2", conv(3, 224, 3, 2), pfNone},
		{"stem 3 -> 64 7x7/2", conv(3, 224, 7, 2), pfNone},
		{"128 3x3 at 28x28, stride 1", conv(128, 28, 3, 1), pfNone},
		{"1x1/2 at 56x56", conv(256, 56, 1, 2), pfNone},
		{"5x5/2 of 64 channels", conv(64, 56, 5, 2), pfNone},
	} {
		if got := directPF(c.p); got != c.want {
			t.Errorf("%s: directPF = %d, want %d", c.name, got, c.want)
		}
	}
}

// TestDirectTapOffsets checks directTapOffsets against the offset of each
// tap computed on its own (the phase plane of its row and column phase,
// its row and column in that plane), for strides 1 and 2 in either axis.
func TestDirectTapOffsets(t *testing.T) {
	cases := []cpu.Conv2DParams{
		{N: 1, C: 3, H: 224, W: 224, M: 64, KH: 7, KW: 7, StrideH: 2, StrideW: 2, PadTop: 3, PadLeft: 3, PadBottom: 3, PadRight: 3},
		{N: 1, C: 128, H: 7, W: 7, M: 128, KH: 3, KW: 3, StrideH: 1, StrideW: 1, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1},
		{N: 1, C: 5, H: 15, W: 13, M: 9, KH: 3, KW: 3, StrideH: 2, StrideW: 1, PadTop: 0, PadLeft: 1, PadBottom: 2, PadRight: 0},
		{N: 1, C: 4, H: 10, W: 20, M: 8, KH: 2, KW: 5, StrideH: 1, StrideW: 2, PadLeft: 2, PadRight: 2},
		{N: 1, C: 64, H: 56, W: 56, M: 32, KH: 1, KW: 1, StrideH: 2, StrideW: 2},
		{N: 1, C: 1, H: 3, W: 3, M: 1, KH: 1, KW: 1, StrideH: 1, StrideW: 1},
	}
	for _, p := range cases {
		p.Group, p.DilH, p.DilW = 1, 1, 1
		sh, sw := p.StrideH, p.StrideW
		hq := (p.H + p.PadTop + p.PadBottom + sh - 1) / sh
		wq := (p.W + p.PadLeft + p.PadRight + sw - 1) / sw
		ph, pw := min(sh, p.KH), min(sw, p.KW)
		plane := hq * wq
		chStride := ph * pw * plane
		k := p.C * p.KH * p.KW
		offs := make([]int32, k)
		maxOff := directTapOffsets(offs, p, chStride, plane, wq, pw)
		want := 0
		for c := 0; c < p.C; c++ {
			for kh := 0; kh < p.KH; kh++ {
				for kw := 0; kw < p.KW; kw++ {
					o := c*chStride + ((kh%sh)*pw+kw%sw)*plane + (kh/sh)*wq + kw/sw
					if got := offs[(c*p.KH+kh)*p.KW+kw]; int(got) != o {
						t.Fatalf("%+v: tap (%d, %d, %d) at %d, want %d", p, c, kh, kw, got, o)
					}
					want = max(want, o)
				}
			}
		}
		if maxOff != want {
			t.Errorf("%+v: largest offset %d, want %d", p, maxOff, want)
		}
	}
}

// TestDirectNoAllocs checks that the direct convolutions allocate nothing
// per call once their pools are warm, in both tile layouts, with and
// without a residual (issue 15: no allocation on the steady-state path):
// the padded input copy, the tiles and the copy out hand the worker pool
// functions made once per pooled call state. One thread, so that the
// worker pool runs the calls inline: with two, device/cpu's own job
// state (its sync.Pool of jobs) still allocates now and then, and
// epilogue.applyAdd (SiLU and the other activations after a residual)
// allocates once per call; neither is tested here.
func TestDirectNoAllocs(t *testing.T) {
	if !directAsm {
		t.Skip("the direct convolution needs AVX-512 (amd64 without purego); this CPU or build has none")
	}
	cases := []cpu.Conv2DParams{
		{N: 1, C: 16, H: 56, W: 56, M: 16, KH: 3, KW: 3, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1, StrideH: 1, StrideW: 1},
		{N: 1, C: 16, H: 56, W: 56, M: 32, KH: 3, KW: 3, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1, StrideH: 2, StrideW: 2},
		{N: 1, C: 64, H: 14, W: 14, M: 64, KH: 1, KW: 1, StrideH: 1, StrideW: 1},
	}
	if err := cpu.SetThreads(1); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cpu.SetThreads(0) }()
	for _, p := range cases {
		p.Group, p.DilH, p.DilW, p.Act = 1, 1, 1, cpu.ActRelu
		x := make([]float32, p.C*p.H*p.W)
		w := make([]float32, p.M*p.C*p.KH*p.KW)
		y := make([]float32, p.M*p.OutH()*p.OutW())
		z := make([]float32, len(y))
		f := newDirectFilter(w, p.M, p.C, p.KH, p.KW)
		cf := newCLFilter(w, p.M, p.C, p.KH, p.KW)
		relu, clip := &epilogue{act: actRelu}, &epilogue{act: actClip, p0: -1, p1: 1}
		for _, layout := range []int{layoutRows, layoutWide, layoutVecs} {
			directLayout = layout
			for _, c := range []struct {
				name string
				fn   func()
			}{
				{"direct", func() { convDirect(p, x, f, nil, y, nil, nil) }},
				{"direct, residual and ReLU", func() { convDirect(p, x, f, nil, y, z, relu) }},
				{"direct, residual and clip", func() { convDirect(p, x, f, nil, y, z, clip) }},
				{"direct-cl, residual and ReLU", func() { convCL(p, x, cf, nil, y, z, relu) }},
			} {
				if n := testing.AllocsPerRun(20, c.fn); n != 0 {
					t.Errorf("%dx%d/%d %d -> %d, layout %d, %s: %v allocations per call, want 0",
						p.KH, p.KW, p.StrideH, p.C, p.M, layout, c.name, n)
				}
			}
		}
		directLayout = layoutAuto
	}
}
