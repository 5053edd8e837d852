package nn

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops/opstest"
	"github.com/kilnai/kiln/tensor"
)

// poolGridWindows are the 2-D windows of TestPoolGrid: the CNN pools the
// fast paths take (3x3/2, 2x2/2, 5x5/1, 3x3/1) with and without pads and
// ceil_mode, and the cases they leave to the generic path (dilations,
// stride 3, wide windows, uneven strides).
var poolGridWindows = []struct {
	k, s, d [2]int
	pads    [4]int // top, left, bottom, right
	ceil    bool
}{
	{[2]int{3, 3}, [2]int{2, 2}, [2]int{1, 1}, [4]int{}, true},
	{[2]int{3, 3}, [2]int{2, 2}, [2]int{1, 1}, [4]int{}, false},
	{[2]int{3, 3}, [2]int{2, 2}, [2]int{1, 1}, [4]int{1, 1, 1, 1}, false},
	{[2]int{3, 3}, [2]int{2, 2}, [2]int{1, 1}, [4]int{1, 1, 1, 1}, true},
	{[2]int{3, 3}, [2]int{2, 2}, [2]int{1, 1}, [4]int{0, 1, 2, 0}, true},
	{[2]int{3, 3}, [2]int{2, 2}, [2]int{1, 1}, [4]int{2, 2, 2, 2}, false},
	{[2]int{2, 2}, [2]int{2, 2}, [2]int{1, 1}, [4]int{}, false},
	{[2]int{2, 2}, [2]int{2, 2}, [2]int{1, 1}, [4]int{}, true},
	{[2]int{2, 2}, [2]int{2, 2}, [2]int{1, 1}, [4]int{1, 1, 1, 1}, false},
	{[2]int{1, 2}, [2]int{1, 2}, [2]int{1, 1}, [4]int{}, true},
	{[2]int{5, 3}, [2]int{1, 2}, [2]int{1, 1}, [4]int{2, 1, 2, 1}, false},
	{[2]int{2, 3}, [2]int{3, 2}, [2]int{1, 1}, [4]int{1, 0, 0, 2}, true},
	{[2]int{5, 5}, [2]int{1, 1}, [2]int{1, 1}, [4]int{2, 2, 2, 2}, false},
	{[2]int{3, 3}, [2]int{1, 1}, [2]int{1, 1}, [4]int{1, 1, 1, 1}, false},
	{[2]int{3, 3}, [2]int{1, 1}, [2]int{1, 1}, [4]int{}, false},
	{[2]int{3, 3}, [2]int{3, 3}, [2]int{1, 1}, [4]int{1, 1, 1, 1}, true},
	{[2]int{3, 3}, [2]int{2, 2}, [2]int{2, 2}, [4]int{1, 1, 1, 1}, false},
	{[2]int{2, 2}, [2]int{1, 2}, [2]int{2, 1}, [4]int{}, true},
	{[2]int{4, 7}, [2]int{2, 2}, [2]int{1, 1}, [4]int{1, 3, 2, 3}, true},
}

// poolGridSizes are the input planes of TestPoolGrid: widths around the
// vector width (16 floats) and its double, and the squeezenet planes.
var poolGridSizes = [][2]int{{1, 1}, {4, 5}, {7, 16}, {6, 17}, {5, 27}, {9, 31}, {8, 32}, {3, 33}, {5, 48}, {4, 65}, {13, 111}}

// TestPoolGrid runs MaxPool and AveragePool (with and without
// count_include_pad) through the op on every window of poolGridWindows and
// plane of poolGridSizes, float32 and float16 with the assembly and in Go
// and float64, against refPool, the naive oracle.
func TestPoolGrid(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 15))
	for wi, w := range poolGridWindows {
		for _, hw := range poolGridSizes {
			k := &poolOp{win: window{kernel: w.k[:], strides: w.s[:], dilations: w.d[:], pads: w.pads[:], ceil: w.ceil}}
			g, err := k.win.resolve(hw[:], nil)
			if err != nil {
				continue // the window does not fit this plane
			}
			out := []int{g.out[0], g.out[1]}
			xs := []int{1, 3, hw[0], hw[1]}
			for _, kind := range []string{"max", "avg", "avgpad"} {
				attrs := []*ir.Attr{opstest.Ints("kernel_shape", int64(w.k[0]), int64(w.k[1])), opstest.Ints("strides", int64(w.s[0]), int64(w.s[1])),
					opstest.Ints("pads", int64(w.pads[0]), int64(w.pads[1]), int64(w.pads[2]), int64(w.pads[3])),
					opstest.Ints("dilations", int64(w.d[0]), int64(w.d[1]))}
				if w.ceil {
					attrs = append(attrs, opstest.Int("ceil_mode", 1))
				}
				op := "MaxPool"
				if kind != "max" {
					op = "AveragePool"
					if kind == "avgpad" {
						attrs = append(attrs, opstest.Int("count_include_pad", 1))
					}
				}
				for _, dt := range []tensor.DType{tensor.Float32, tensor.Float64, tensor.Float16} {
					modes := asmModes()
					if dt == tensor.Float64 {
						modes = modes[:1]
					}
					tol := 1e-6
					if dt == tensor.Float16 {
						tol = 2e-3 // the output rounded to float16
					}
					x := randTensor(r, dt, xs...)
					want, _ := refPool(kind, floats(x), xs, w.k[:], w.s[:], w.d[:], w.pads[:2], w.pads[2:], out)
					for _, asm := range modes {
						name := fmt.Sprintf("window %d %v %s %v asm=%v", wi, hw, kind, dt, asm)
						setPoolAsm(t, asm)
						got := opstest.Run(t, opstest.Node(op, 1, 1, attrs...), 19, x)
						closeTo(t, name, got[0], append(xs[:2:2], out...), want, tol)
					}
				}
			}
		}
	}
}

// TestPoolRegs runs poolRegPlanes directly on the windows of poolGridWindows
// it takes, into outputs poisoned with NaN (every output must be written),
// against refPool, and checks that it declines the others.
func TestPoolRegs(t *testing.T) {
	if !asmModes()[0] {
		t.Skip("no AVX-512")
	}
	r := rand.New(rand.NewPCG(9, 19))
	defer func(n, m int) { poolStripRows, poolStripPlane = n, m }(poolStripRows, poolStripPlane)
	for wi, w := range poolGridWindows {
		for _, hw := range poolGridSizes {
			for _, kind := range []string{"max", "avg", "avgpad"} {
				k := &poolOp{kind: poolMax, includePad: kind == "avgpad",
					win: window{kernel: w.k[:], strides: w.s[:], dilations: w.d[:], pads: w.pads[:], ceil: w.ceil}}
				if kind != "max" {
					k.kind = poolAvg
				}
				g, err := k.win.resolve(hw[:], nil)
				if err != nil {
					continue
				}
				planes := 5
				x := make([]float32, planes*hw[0]*hw[1])
				xf := make([]float64, len(x))
				for i := range x {
					x[i] = r.Float32()*4 - 3
					xf[i] = float64(x[i])
				}
				n := planes * g.out[0] * g.out[1]
				for rep := 0; rep < 4; rep++ { // the later calls take the cached plan
					// strips of the column pass: one, then 1, 2 and 3 rows
					poolStripRows, poolStripPlane = []int{8, 1, 2, 3}[rep], []int{1 << 30, 0, 0, 0}[rep]
					y := make([]float32, n)
					for i := range y {
						y[i] = float32(math.NaN())
					}
					handled := poolRegPlanes(k, g, planes, x, y)
					wantHandled := ((w.s[1] == 2 && (w.k[1] == 2 || w.k[1] == 3)) || (w.s[1] == 1 && w.k[1] <= 17)) && w.d == [2]int{1, 1}
					if handled != wantHandled {
						t.Fatalf("window %d %v: handled %v, want %v", wi, hw, handled, wantHandled)
					}
					if !handled {
						continue
					}
					want, _ := refPool(kind, xf, []int{1, planes, hw[0], hw[1]}, w.k[:], w.s[:], w.d[:], w.pads[:2], w.pads[2:], g.out)
					for i := range y {
						if d := math.Abs(float64(y[i]) - want[i]); !(d <= 1e-6*(1+math.Abs(want[i]))) {
							t.Fatalf("window %d %v %s: output %d = %g, want %g", wi, hw, kind, i, y[i], want[i])
						}
					}
				}
			}
		}
	}
}

// TestPoolRegsAllocs: a call with the plan cached allocates nothing (on
// the caller: spread over the threads, cpu.DynamicFor allocates a job of its
// own when the workers of the last one are still behind, as on a loaded
// machine).
func TestPoolRegsAllocs(t *testing.T) {
	if !asmModes()[0] {
		t.Skip("no AVX-512")
	}
	if err := cpu.SetThreads(1); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cpu.SetThreads(0) }()
	for _, c := range []struct{ planes, h, w int }{{8, 32, 32}, {64, 111, 111}} {
		k := &poolOp{kind: poolMax, win: window{kernel: []int{3, 3}, strides: []int{2, 2}, ceil: true}}
		g, err := k.win.resolve([]int{c.h, c.w}, nil)
		if err != nil {
			t.Fatal(err)
		}
		x := make([]float32, c.planes*c.h*c.w)
		y := make([]float32, c.planes*g.out[0]*g.out[1])
		poolRegPlanes(k, g, c.planes, x, y)
		if n := testing.AllocsPerRun(20, func() { poolRegPlanes(k, g, c.planes, x, y) }); n != 0 {
			t.Errorf("%v: %v allocations per call", c, n)
		}
	}
}
