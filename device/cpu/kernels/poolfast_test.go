package kernels

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kilnai/kiln/device/cpu"
)

// TestPoolFast2D compares the fast 2-D pooling path with the generic one
// (poolSep) on the shapes of convolutional networks and their edge cases:
// pads, ceil_mode, count_include_pad, widths around the vector width, and
// the cases it must leave to the generic path (dilations, stride 3, LpPool).
func TestPoolFast2D(t *testing.T) {
	cases := []struct {
		name        string
		kind        poolKind
		h, w        int
		kernel      []int
		strides     []int
		pads        []int
		dils        []int
		ceil, incl  bool
		wantHandled bool
	}{
		{"resnet stem max 3x3/2 pad1", poolMax, 112, 112, []int{3, 3}, []int{2, 2}, []int{1, 1, 1, 1}, nil, false, false, true},
		{"squeezenet max 3x3/2 ceil", poolMax, 111, 111, []int{3, 3}, []int{2, 2}, nil, nil, true, false, true},
		{"squeezenet max 3x3/2 ceil 55", poolMax, 55, 55, []int{3, 3}, []int{2, 2}, nil, nil, true, false, true},
		{"max 2x2/2", poolMax, 40, 40, []int{2, 2}, []int{2, 2}, nil, nil, false, false, true},
		{"max 2x2/2 odd ceil", poolMax, 13, 17, []int{2, 2}, []int{2, 2}, nil, nil, true, false, true},
		{"max 5x5/1 pad2 (SPPF)", poolMax, 10, 10, []int{5, 5}, []int{1, 1}, []int{2, 2, 2, 2}, nil, false, false, true},
		{"max 3x3/1 pad1 wide", poolMax, 7, 50, []int{3, 3}, []int{1, 1}, []int{1, 1, 1, 1}, nil, false, false, true},
		{"max 2x3/2x1 asymmetric pads", poolMax, 9, 33, []int{2, 3}, []int{2, 1}, []int{1, 0, 0, 2}, nil, false, false, true},
		{"max 1x1 tiny", poolMax, 1, 1, []int{1, 1}, []int{1, 1}, nil, nil, false, false, true},
		{"max window beyond pads", poolMax, 4, 4, []int{3, 3}, []int{2, 2}, []int{2, 2, 2, 2}, nil, true, false, true},
		{"avg 3x3/1 pad1", poolAvg, 17, 17, []int{3, 3}, []int{1, 1}, []int{1, 1, 1, 1}, nil, false, false, true},
		{"avg 3x3/1 pad1 include pad", poolAvg, 17, 17, []int{3, 3}, []int{1, 1}, []int{1, 1, 1, 1}, nil, false, true, true},
		{"avg 2x2/2", poolAvg, 32, 48, []int{2, 2}, []int{2, 2}, nil, nil, false, false, true},
		{"avg 3x3/2 ceil include pad", poolAvg, 14, 14, []int{3, 3}, []int{2, 2}, []int{1, 1, 1, 1}, nil, true, true, true},
		{"avg 3x3/2 ceil", poolAvg, 15, 31, []int{3, 3}, []int{2, 2}, []int{0, 1, 1, 0}, nil, true, false, true},
		{"max dilated falls back", poolMax, 12, 12, []int{3, 3}, []int{1, 1}, nil, []int{2, 2}, false, false, false},
		{"max stride 3 falls back", poolMax, 12, 12, []int{3, 3}, []int{3, 3}, nil, nil, false, false, false},
		{"lp falls back", poolLp, 12, 12, []int{3, 3}, []int{1, 1}, nil, nil, false, false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			k, g, err := testPool(t, c.kind, c.incl, window{kernel: c.kernel, strides: c.strides, pads: c.pads, dilations: c.dils, ceil: c.ceil}, []int{c.h, c.w})
			if err != nil {
				t.Fatal(err)
			}
			planes := 3
			r := rand.New(rand.NewPCG(7, uint64(c.h*c.w)))
			x := make([]float32, planes*c.h*c.w)
			for i := range x {
				x[i] = r.Float32()*4 - 2
			}
			n := planes * g.Out[0] * g.Out[1]
			for _, asm := range asmModes() {
				setPoolAsm(t, asm)
				got := make([]float32, n)
				for i := range got {
					got[i] = float32(math.NaN()) // every output must be written
				}
				handled := poolFast2D(k, g, planes, x, got)
				if handled != c.wantHandled {
					t.Fatalf("asm=%v: poolFast2D handled = %v, want %v", asm, handled, c.wantHandled)
				}
				if !handled {
					continue
				}
				want := make([]float32, n)
				poolSep(k, g, planes, x, want)
				for i := range want {
					if d := math.Abs(float64(got[i] - want[i])); !(d <= 1e-6) && got[i] != want[i] {
						t.Fatalf("asm=%v: output %d (of %v planes x %v) = %g, generic path %g", asm, i, planes, g.Out, got[i], want[i])
					}
				}
			}
		})
	}
}

// BenchmarkPool2D times the generic separable path (poolSep) against the
// fast one on the pools of the shared models (run with -count 6 and compare
// the paths of the same run):
//
//	go test ./ops/nn -run '^$' -bench Pool2D -count 6
func BenchmarkPool2D(b *testing.B) {
	cases := []struct {
		name           string
		c, h, w        int
		kernel, stride int
		pad            int
		ceil           bool
	}{
		{"resnet_mini_stem_16x112x112_k3s2p1", 16, 112, 112, 3, 2, 1, false},
		{"squeezenet_64x111x111_k3s2_ceil", 64, 111, 111, 3, 2, 0, true},
		{"yolo_2x2s2_32x160x160", 32, 160, 160, 2, 2, 0, false},
		{"squeezenet_128x55x55_k3s2_ceil", 128, 55, 55, 3, 2, 0, true},
		{"squeezenet_256x27x27_k3s2_ceil", 256, 27, 27, 3, 2, 0, true},
		{"yolo_sppf_128x10x10_k5s1p2", 128, 10, 10, 5, 1, 2, false},
	}
	for _, c := range cases {
		k, g, err := testPool(b, poolMax, false, window{kernel: []int{c.kernel, c.kernel}, strides: []int{c.stride, c.stride},
			pads: []int{c.pad, c.pad, c.pad, c.pad}, ceil: c.ceil}, []int{c.h, c.w})
		if err != nil {
			b.Fatal(err)
		}
		x := make([]float32, c.c*c.h*c.w)
		for i := range x {
			x[i] = float32(i%97) - 40
		}
		y := make([]float32, c.c*g.Out[0]*g.Out[1])
		for _, path := range []string{"generic", "fast", "planes"} {
			b.Run(c.name+"/"+path, func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(4 * (len(x) + len(y))))
				for b.Loop() {
					switch path {
					case "generic":
						poolSep(k, g, c.c, x, y)
					case "planes":
						maxPoolPlanes(k, g, c.c, x, y)
					default:
						poolFast2D(k, g, c.c, x, y)
					}
				}
			})
		}
	}
}

// TestPoolFast2DAllocs: a steady-state poolFast2D call (the pooling path
// of CPUs without AVX-512) allocates nothing: its windows and divisors are
// the op's plan of the geometry, its call over the cores a pooled job.
func TestPoolFast2DAllocs(t *testing.T) {
	if err := cpu.SetThreads(1); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cpu.SetThreads(0) }()
	for _, c := range []struct {
		kind         poolKind
		planes, h, w int
		pads         []int
	}{{poolMax, 8, 32, 32, nil}, {poolMax, 64, 111, 111, []int{1, 1, 1, 1}}, {poolAvg, 8, 33, 35, []int{1, 1, 1, 1}}} {
		k, g, err := testPool(t, c.kind, false, window{kernel: []int{3, 3}, strides: []int{2, 2}, pads: c.pads, ceil: true}, []int{c.h, c.w})
		if err != nil {
			t.Fatal(err)
		}
		x := make([]float32, c.planes*c.h*c.w)
		y := make([]float32, c.planes*g.Out[0]*g.Out[1])
		if !poolFast2D(k, g, c.planes, x, y) {
			t.Fatalf("%+v: poolFast2D did not run it", c)
		}
		if n := testing.AllocsPerRun(20, func() { poolFast2D(k, g, c.planes, x, y) }); n != 0 {
			t.Errorf("%+v: %v allocations per call", c, n)
		}
	}
}
