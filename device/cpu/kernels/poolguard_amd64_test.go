//go:build amd64 && !purego && linux

package kernels

import (
	"math"
	"math/rand/v2"
	"os"
	"syscall"
	"testing"
	"unsafe"
)

// guardBuf is n float32s in their own mapping, either ending exactly at a
// PROT_NONE page (end) or starting right after one (!end): a kernel that
// loads or stores one float past the end (or before the start) faults
// instead of reading a neighbour in the Go heap.
type guardBuf struct {
	mem []byte
	f   []float32
}

func newGuard(t testing.TB, n int, end bool) *guardBuf {
	t.Helper()
	page := os.Getpagesize()
	size := (n*4+page-1)/page*page + page
	mem, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	g := &guardBuf{mem: mem}
	if end {
		if err := syscall.Mprotect(mem[size-page:], syscall.PROT_NONE); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			g.f = unsafe.Slice((*float32)(unsafe.Pointer(&mem[size-page-4*n])), n)
		}
	} else {
		if err := syscall.Mprotect(mem[:page], syscall.PROT_NONE); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			g.f = unsafe.Slice((*float32)(unsafe.Pointer(&mem[page])), n)
		}
	}
	return g
}

func (g *guardBuf) free() { _ = syscall.Munmap(g.mem) }

// guards hands out guardBufs by size and edge, each mapped once per test
// (mapping one per call cost more than the kernels), unmapped at its end.
type guards map[[3]int]*guardBuf

func newGuards(t testing.TB) guards {
	gs := guards{}
	t.Cleanup(func() {
		for _, g := range gs {
			g.free()
		}
	})
	return gs
}

// get returns n floats ending at (end) or starting right after (!end) an
// unmapped page; buffers of different roles (input, output) never alias.
func (gs guards) get(t testing.TB, role, n int, end bool) []float32 {
	key := [3]int{role, n, 0}
	if end {
		key[2] = 1
	}
	g, ok := gs[key]
	if !ok {
		g = newGuard(t, n, end)
		gs[key] = g
	}
	return g.f
}

// guardLarge: KILN_GUARD_LARGE=1 runs the larger grids.
var guardLarge = os.Getenv("KILN_GUARD_LARGE") != ""

// TestGuardPoolRegs runs poolRegPlanes (poolS2AVX512, poolS1AVX512) with
// its input and its output each ending at, or starting right after, an
// unmapped page, on a grid of planes, windows, strides, pads and
// ceil_mode, against the reference kernel: a read or write outside x or y faults.
func TestGuardPoolRegs(t *testing.T) {
	if !asmModes()[0] {
		t.Skip("no AVX-512")
	}
	defer func(n, m int) { poolStripRows, poolStripPlane = n, m }(poolStripRows, poolStripPlane)
	r := rand.New(rand.NewPCG(21, 7))
	gs := newGuards(t)
	hs := []int{1, 2, 3, 5, 8, 13, 17, 33}
	ws := []int{1, 2, 3, 5, 7, 15, 16, 17, 31, 32, 33, 34, 35, 40, 47, 48, 49, 65}
	planesSet := []int{1, 3}
	if guardLarge {
		hs, ws = nil, nil
		for i := 1; i <= 40; i++ {
			hs, ws = append(hs, i), append(ws, i)
		}
		ws = append(ws, 47, 48, 49, 63, 64, 65, 66, 67, 97, 111, 113)
		planesSet = []int{1, 2, 5}
	}
	type win struct{ kh, kw, sh, sw int }
	var wins []win
	for kh := 1; kh <= 5; kh++ {
		for kw := 1; kw <= 5; kw++ {
			for sh := 1; sh <= 2; sh++ {
				for sw := 1; sw <= 2; sw++ {
					if sw == 2 && kw != 2 && kw != 3 {
						continue // not a poolRegPlanes window
					}
					if !guardLarge && kh != kw && kh != 1 && kh != 5 {
						continue
					}
					wins = append(wins, win{kh, kw, sh, sw})
				}
			}
		}
	}
	shapes := 0
	for _, wn := range wins {
		for _, h := range hs {
			for _, w := range ws {
				for pad := 0; pad <= 2; pad++ {
					for _, ceil := range []bool{false, true} {
						if !guardLarge && (pad == 1 && ceil || (h*7+w+pad+wn.kh+wn.kw)%3 == 0) {
							continue // a third of the grid, spread over every axis
						}
						pads := []int{pad, pad, pad, pad}
						if pad == 2 {
							pads = []int{2, 1, 0, 2} // uneven: top, left, bottom, right
						}
						if pads[0] >= wn.kh || pads[1] >= wn.kw || pads[2] >= wn.kh || pads[3] >= wn.kw {
							continue
						}
						kinds := []string{"max", "avg", "avgpad"}
						kinds = kinds[(h+w)%2 : (h+w)%2+2]
						for _, kind := range kinds {
							win := window{kernel: []int{wn.kh, wn.kw}, strides: []int{wn.sh, wn.sw}, dilations: []int{1, 1}, pads: pads, ceil: ceil}
							kd := poolMax
							if kind != "max" {
								kd = poolAvg
							}
							k, g, err := testPool(t, kd, kind == "avgpad", win, []int{h, w})
							if err != nil {
								continue
							}
							if !poolRegApplies(k, g) {
								t.Fatalf("%+v %dx%d pads %v: not a poolRegPlanes window", wn, h, w, pads)
							}
							planes := planesSet[shapes%len(planesSet)]
							xn, yn := planes*h*w, planes*g.Out[0]*g.Out[1]
							xf := make([]float64, xn)
							for i := range xf {
								xf[i] = float64(r.Float32()*4 - 3)
							}
							want := refPool(t, kind, win, f32s(xf), planes, []int{h, w})
							for v := 0; v < 4; v++ {
								xg, yg := gs.get(t, 0, xn, v&1 == 0), gs.get(t, 1, yn, v&2 == 0)
								for i := range xg {
									xg[i] = float32(xf[i])
								}
								for i := range yg {
									yg[i] = float32(math.NaN())
								}
								// strips of one row on odd variants
								poolStripRows, poolStripPlane = []int{8, 1}[v&1], []int{1 << 30, 0}[v&1]
								k.regs = poolRegCache{}
								if !poolRegPlanes(k, g, planes, xg, yg) {
									t.Fatalf("%+v %dx%d: poolRegPlanes declined", wn, h, w)
								}
								for i := range want {
									if d := math.Abs(float64(yg[i]) - want[i]); !(d <= 1e-6*(1+math.Abs(want[i]))) {
										t.Fatalf("%+v %dx%d pads %v ceil %v %s planes %d variant %d: output %d = %g, want %g",
											wn, h, w, pads, ceil, kind, planes, v, i, yg[i], want[i])
									}
								}
							}
							shapes++
						}
					}
				}
			}
		}
	}
	// the CNNs' planes (squeezenet, resnet, tinycnn), strips of the column
	// pass as poolRegPlanes picks them and of 3 rows
	for _, hw := range [][2]int{{111, 111}, {112, 112}, {55, 55}, {56, 56}, {27, 27}, {28, 28}, {32, 32}, {16, 16}, {13, 13}, {14, 14}, {7, 7}} {
		for _, wn := range []struct {
			k, s, pad int
			ceil      bool
		}{{3, 2, 0, true}, {3, 2, 0, false}, {3, 2, 1, false}, {2, 2, 0, false}, {2, 2, 0, true}, {3, 1, 1, false}, {5, 1, 2, false}} {
			for _, kind := range []string{"max", "avg", "avgpad"} {
				win := window{kernel: []int{wn.k, wn.k}, strides: []int{wn.s, wn.s}, dilations: []int{1, 1}, pads: []int{wn.pad, wn.pad, wn.pad, wn.pad}, ceil: wn.ceil}
				kd := poolMax
				if kind != "max" {
					kd = poolAvg
				}
				k, g, err := testPool(t, kd, kind == "avgpad", win, hw[:])
				if err != nil {
					continue
				}
				planes := 3
				xn, yn := planes*hw[0]*hw[1], planes*g.Out[0]*g.Out[1]
				xf := make([]float64, xn)
				for i := range xf {
					xf[i] = float64(r.Float32()*4 - 3)
				}
				want := refPool(t, kind, win, f32s(xf), planes, hw[:])
				for v := 0; v < 4; v++ {
					xg, yg := gs.get(t, 0, xn, v&1 == 0), gs.get(t, 1, yn, v&2 == 0)
					for i := range xg {
						xg[i] = float32(xf[i])
					}
					for i := range yg {
						yg[i] = float32(math.NaN())
					}
					poolStripRows, poolStripPlane = []int{8, 3}[v&1], []int{2048, 0}[v&1]
					k.regs = poolRegCache{}
					if !poolRegPlanes(k, g, planes, xg, yg) {
						t.Fatalf("%v %+v: poolRegPlanes declined", hw, wn)
					}
					for i := range want {
						if d := math.Abs(float64(yg[i]) - want[i]); !(d <= 1e-6*(1+math.Abs(want[i]))) {
							t.Fatalf("%v %+v %s variant %d: output %d = %g, want %g", hw, wn, kind, v, i, yg[i], want[i])
						}
					}
				}
				shapes++
			}
		}
	}
	// stride-1 windows 6 to 17 columns wide (poolS1AVX512's taps past the
	// fourth vector of indices)
	for kw := 6; kw <= 17; kw++ {
		for _, hw := range [][2]int{{1, 6}, {2, 16}, {3, 17}, {1, 31}, {4, 33}, {2, 40}, {3, 49}} {
			for pad := 0; pad <= min(2, kw-1); pad++ {
				for _, kind := range []string{"max", "avg", "avgpad"} {
					win := window{kernel: []int{2, kw}, strides: []int{1, 1}, dilations: []int{1, 1}, pads: []int{0, pad, 1, pad}, ceil: kw%2 == 0}
					kd := poolMax
					if kind != "max" {
						kd = poolAvg
					}
					k, g, err := testPool(t, kd, kind == "avgpad", win, hw[:])
					if err != nil {
						continue
					}
					planes := 2
					xn, yn := planes*hw[0]*hw[1], planes*g.Out[0]*g.Out[1]
					xf := make([]float64, xn)
					for i := range xf {
						xf[i] = float64(r.Float32()*4 - 3)
					}
					want := refPool(t, kind, win, f32s(xf), planes, hw[:])
					for v := 0; v < 4; v++ {
						xg, yg := gs.get(t, 0, xn, v&1 == 0), gs.get(t, 1, yn, v&2 == 0)
						for i := range xg {
							xg[i] = float32(xf[i])
						}
						for i := range yg {
							yg[i] = float32(math.NaN())
						}
						k.regs = poolRegCache{}
						if !poolRegPlanes(k, g, planes, xg, yg) {
							t.Fatalf("%v 2x%d: poolRegPlanes declined", hw, kw)
						}
						for i := range want {
							if d := math.Abs(float64(yg[i]) - want[i]); !(d <= 1e-6*(1+math.Abs(want[i]))) {
								t.Fatalf("%v 2x%d/1 pad %d %s variant %d: output %d = %g, want %g", hw, kw, pad, kind, v, i, yg[i], want[i])
							}
						}
					}
					shapes++
				}
			}
		}
	}
	t.Logf("%d pool shapes, each with x and y at both guard edges", shapes)
}

// TestGuardPlanePools runs planeMax and planeSums (GlobalMaxPool,
// GlobalAveragePool) with x and y at both guard edges against the Go loops.
func TestGuardPlanePools(t *testing.T) {
	if !poolAsm {
		t.Skip("no AVX-512")
	}
	gs := newGuards(t)
	r := rand.New(rand.NewPCG(8, 88))
	shapes := 0
	for planes := 1; planes <= 5; planes++ {
		for size := 1; size <= 70; size++ {
			x := make([]float32, planes*size)
			for i := range x {
				x[i] = r.Float32()*4 - 3
			}
			wantMax, wantSum := make([]float32, planes), make([]float32, planes)
			planeMaxGo(wantMax, x, size)
			planeSumsGo(wantSum, x, size)
			for v := 0; v < 4; v++ {
				xg, yg := gs.get(t, 0, len(x), v&1 == 0), gs.get(t, 1, planes, v&2 == 0)
				copy(xg, x)
				planeMax(yg, xg, size)
				for i := range wantMax {
					if yg[i] != wantMax[i] {
						t.Fatalf("planeMax %d planes of %d, variant %d: [%d] = %v, want %v", planes, size, v, i, yg[i], wantMax[i])
					}
				}
				planeSums(yg, xg, size)
				for i := range wantSum {
					if d := math.Abs(float64(yg[i] - wantSum[i])); !(d <= 1e-5*(1+math.Abs(float64(wantSum[i])))) {
						t.Fatalf("planeSums %d planes of %d, variant %d: [%d] = %v, want %v", planes, size, v, i, yg[i], wantSum[i])
					}
				}
			}
			shapes++
		}
	}
	t.Logf("%d plane shapes", shapes)
}
