package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestMaxPoolPlanes compares the plane-at-a-time MaxPool kernel with the
// generic path (poolSep) on the pools of convolutional networks and their
// edge cases: pads, asymmetric pads, ceil_mode, windows past the pads,
// widths around the vector width, strides 1 and 2, and the cases it leaves
// to the other paths. Each case runs twice on the same op (the second call
// takes the cached plan) and then at another width (the plan is redone).
func TestMaxPoolPlanes(t *testing.T) {
	cases := []struct {
		name        string
		kind        poolKind
		h, w        int
		kernel      []int
		strides     []int
		pads        []int
		dils        []int
		ceil        bool
		wantHandled bool
	}{
		{"resnet stem 3x3/2 pad1", poolMax, 112, 112, []int{3, 3}, []int{2, 2}, []int{1, 1, 1, 1}, nil, false, true},
		{"squeezenet 3x3/2 ceil 111", poolMax, 111, 111, []int{3, 3}, []int{2, 2}, nil, nil, true, true},
		{"squeezenet 3x3/2 ceil 55", poolMax, 55, 55, []int{3, 3}, []int{2, 2}, nil, nil, true, true},
		{"squeezenet 3x3/2 ceil 27", poolMax, 27, 27, []int{3, 3}, []int{2, 2}, nil, nil, true, true},
		{"2x2/2", poolMax, 40, 40, []int{2, 2}, []int{2, 2}, nil, nil, false, true},
		{"2x2/2 odd ceil", poolMax, 13, 17, []int{2, 2}, []int{2, 2}, nil, nil, true, true},
		{"2x2/2 odd floor", poolMax, 13, 33, []int{2, 2}, []int{2, 2}, nil, nil, false, true},
		{"SPPF 5x5/1 pad2", poolMax, 10, 10, []int{5, 5}, []int{1, 1}, []int{2, 2, 2, 2}, nil, false, true},
		{"SPPF 5x5/1 pad2 at 20", poolMax, 20, 20, []int{5, 5}, []int{1, 1}, []int{2, 2, 2, 2}, nil, false, true},
		{"3x3/1 pad1 wide", poolMax, 7, 50, []int{3, 3}, []int{1, 1}, []int{1, 1, 1, 1}, nil, false, true},
		{"3x3/2 width 16", poolMax, 16, 16, []int{3, 3}, []int{2, 2}, []int{1, 1, 1, 1}, nil, false, true},
		{"3x3/2 width 31", poolMax, 5, 31, []int{3, 3}, []int{2, 2}, []int{0, 1, 1, 0}, nil, true, true},
		{"3x3/2 width 65", poolMax, 6, 65, []int{3, 3}, []int{2, 2}, []int{1, 1, 1, 1}, nil, true, true},
		{"2x3/2x1 asymmetric pads", poolMax, 9, 33, []int{2, 3}, []int{2, 1}, []int{1, 0, 0, 2}, nil, false, true},
		{"16x16/1 largest window", poolMax, 20, 40, []int{16, 16}, []int{1, 1}, []int{3, 7, 4, 8}, nil, false, true},
		{"1x1 tiny", poolMax, 1, 1, []int{1, 1}, []int{1, 1}, nil, nil, false, true},
		{"window beyond pads", poolMax, 4, 4, []int{3, 3}, []int{2, 2}, []int{2, 2, 2, 2}, nil, true, true},
		{"average is not taken", poolAvg, 17, 17, []int{3, 3}, []int{1, 1}, []int{1, 1, 1, 1}, nil, false, false},
		{"dilated is not taken", poolMax, 12, 12, []int{3, 3}, []int{1, 1}, nil, []int{2, 2}, false, false},
		{"stride 3 is not taken", poolMax, 12, 12, []int{3, 3}, []int{3, 3}, nil, nil, false, false},
		{"window 17 is not taken", poolMax, 20, 20, []int{17, 1}, []int{1, 1}, nil, nil, false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, asm := range asmModes() {
				setPoolAsm(t, asm)
				k, _, err := testPool(t, c.kind, false, window{kernel: c.kernel, strides: c.strides, pads: c.pads, dilations: c.dils, ceil: c.ceil}, []int{c.h, c.w})
				if err != nil {
					t.Fatal(err)
				}
				for _, w := range []int{c.w, c.w, c.w + 3} {
					g := k.windows(t, []int{c.h, w})
					planes := 5
					r := rand.New(rand.NewPCG(11, uint64(c.h*w)))
					x := make([]float32, planes*c.h*w)
					for i := range x {
						x[i] = r.Float32()*4 - 2
					}
					n := planes * g.Out[0] * g.Out[1]
					got := make([]float32, n)
					for i := range got {
						got[i] = float32(math.NaN()) // every output must be written
					}
					handled := maxPoolPlanes(k, g, planes, x, got)
					if !poolAsm {
						// the Go kernel is checked directly: maxPoolPlanes takes
						// the plane kernel only with the assembly
						if handled {
							t.Fatal("maxPoolPlanes handled a pool without the assembly")
						}
						if !c.wantHandled {
							continue
						}
						p := k.planes.maxPlaneFor(g)
						buf := make([]float32, 2*p.bufLen)
						for i := range buf {
							buf[i] = float32(math.Inf(-1))
						}
						per, oper := c.h*w, g.Out[0]*g.Out[1]
						for pl := 0; pl < planes; pl++ {
							maxPoolPlaneGo(got[pl*oper:(pl+1)*oper], x[pl*per:(pl+1)*per], buf, p.tab, w, p.k, p.stride, p.padL)
						}
					} else if handled != c.wantHandled {
						t.Fatalf("asm=%v: maxPoolPlanes handled = %v, want %v", asm, handled, c.wantHandled)
					}
					if !c.wantHandled {
						continue
					}
					want := make([]float32, n)
					poolSep(k, g, planes, x, want)
					for i := range want {
						if got[i] != want[i] {
							t.Fatalf("asm=%v width %d: output %d (of %v planes x %v) = %g, generic path %g", asm, w, i, planes, g.Out, got[i], want[i])
						}
					}
				}
			}
		})
	}
}

// TestMaxPoolPlaneChecks: a table that would make the kernel read outside
// the input panics in the check instead.
func TestMaxPoolPlaneChecks(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic for a row past the input")
		}
	}()
	buf := make([]float32, 2*poolHSrcLen(4, 3, 1))
	maxPoolPlane(make([]float32, 4), make([]float32, 16), buf, []int{12, 2}, 4, 3, 1, 1)
}
