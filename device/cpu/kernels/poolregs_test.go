package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/ops"
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
// count_include_pad) as the registry prepares them on every window of
// poolGridWindows and plane of poolGridSizes, float32 (with the assembly
// and in Go), float64, float16 and bfloat16 (through the float16
// adapter, as the engine prepares them) and int8 MaxPool, into garbage
// outputs, against the reference kernel of ops/nn (its plain loop).
func TestPoolGrid(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 15))
	for wi, w := range poolGridWindows {
		for _, hw := range poolGridSizes {
			win := window{kernel: w.k[:], strides: w.s[:], dilations: w.d[:], pads: w.pads[:], ceil: w.ceil}
			if _, _, err := testPool(t, poolMax, false, win, hw[:]); err != nil {
				continue // the window does not fit this plane
			}
			xs := []int{1, 3, hw[0], hw[1]}
			for _, kind := range []string{"max", "avg", "avgpad"} {
				for _, dt := range []tensor.DType{tensor.Float32, tensor.Float64, tensor.Float16, tensor.BFloat16, tensor.Int8} {
					if dt == tensor.Int8 && kind != "max" {
						continue
					}
					modes := asmModes()
					if dt != tensor.Float32 {
						modes = modes[:1]
					}
					n := poolNode(kind, win, dt)
					fast, impl, err := Prepare(n, poolOpset)
					if err != nil {
						t.Fatal(err)
					}
					if want := map[string]string{"max": "cpu.MaxPool", "avg": "cpu.AveragePool", "avgpad": "cpu.AveragePool"}[kind]; impl != want {
						t.Fatalf("%s %v: kernel %q, want %q", kind, dt, impl, want)
					}
					ref, err := ops.Prepare(n, poolOpset)
					if err != nil {
						t.Fatal(err)
					}
					x := tensor.New(dt, xs...)
					for i := range x.Len() {
						if dt == tensor.Int8 {
							x.SetFloat(i, float64(r.IntN(200)-100))
						} else {
							x.SetFloat(i, r.Float64()*4-3)
						}
					}
					want, err := ref.Run(garbageEnv(), []*tensor.Tensor{x})
					if err != nil {
						t.Fatal(err)
					}
					for _, asm := range modes {
						name := fmt.Sprintf("window %d %v %s %v asm=%v", wi, hw, kind, dt, asm)
						setPoolAsm(t, asm)
						for round := range 2 { // the second with the plans cached
							got, err := fast.Run(garbageEnv(), []*tensor.Tensor{x})
							if err != nil {
								t.Fatalf("%s: %v", name, err)
							}
							if !slices.Equal(got[0].Shape, want[0].Shape) || got[0].DType != dt {
								t.Fatalf("%s: %v %v, reference %v %v", name, got[0].DType, got[0].Shape, want[0].DType, want[0].Shape)
							}
							for i := range got[0].Len() {
								g, w := got[0].Float(i), want[0].Float(i)
								// the sums' order differs; float16 outputs are rounded
								if d := math.Abs(g - w); !(d <= 1e-6*(1+math.Abs(w))) && !(dt.Size() == 2 && d <= 4e-3*(1+math.Abs(w))) {
									t.Fatalf("%s round %d: output %d = %g, reference %g", name, round, i, g, w)
								}
							}
						}
					}
				}
			}
		}
	}
}

// TestPoolRegs runs poolRegPlanes directly on the windows of poolGridWindows
// it takes, into outputs poisoned with NaN (every output must be written),
// against the reference kernel, and checks that it declines the others.
func TestPoolRegs(t *testing.T) {
	if !asmModes()[0] {
		t.Skip("no AVX-512")
	}
	r := rand.New(rand.NewPCG(9, 19))
	defer func(n, m int) { poolStripRows, poolStripPlane = n, m }(poolStripRows, poolStripPlane)
	for wi, w := range poolGridWindows {
		for _, hw := range poolGridSizes {
			for _, kind := range []string{"max", "avg", "avgpad"} {
				kd := poolMax
				if kind != "max" {
					kd = poolAvg
				}
				win := window{kernel: w.k[:], strides: w.s[:], dilations: w.d[:], pads: w.pads[:], ceil: w.ceil}
				k, g, err := testPool(t, kd, kind == "avgpad", win, hw[:])
				if err != nil {
					continue
				}
				planes := 5
				x := make([]float32, planes*hw[0]*hw[1])
				for i := range x {
					x[i] = r.Float32()*4 - 3
				}
				n := planes * g.Out[0] * g.Out[1]
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
					want := refPool(t, kind, win, x, planes, hw[:])
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
		k, g, err := testPool(t, poolMax, false, window{kernel: []int{3, 3}, strides: []int{2, 2}, ceil: true}, []int{c.h, c.w})
		if err != nil {
			t.Fatal(err)
		}
		x := make([]float32, c.planes*c.h*c.w)
		y := make([]float32, c.planes*g.Out[0]*g.Out[1])
		poolRegPlanes(k, g, c.planes, x, y)
		if n := testing.AllocsPerRun(20, func() { poolRegPlanes(k, g, c.planes, x, y) }); n != 0 {
			t.Errorf("%v: %v allocations per call", c, n)
		}
	}
}
