package nn_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// smallNet is a small CNN's layers, written in NCHW with ONNX ops or in
// the blocked layout with kiln's, as the "blocked" pass writes it: a 7x7/2
// stem reading the NCHW image, resnet's maxpool, a residual block (the
// residual through Z, and again through an ONNX Add on blocked tensors),
// a 1x1/2 projection, a depthwise 3x3 with HardSigmoid (pad lanes zeroed
// again), squeezenet's ceil-mode maxpool, an average pool and the global
// pools. Channels 20 and 40 leave pad lanes in every blocked tensor.
type smallNet struct {
	w   map[string]*tensor.Tensor
	hwS bool // symbolic H and W
}

func newSmallNet(r *rand.Rand) *smallNet {
	n := &smallNet{w: map[string]*tensor.Tensor{}}
	for name, s := range map[string][]int{
		"stem": {20, 3, 7, 7}, "b1": {20, 20, 3, 3}, "b2": {20, 20, 3, 3}, "proj": {40, 20, 1, 1}, "dw": {40, 1, 3, 3},
	} {
		n.w[name] = blkRand(r, s...)
		// scaled down so that activations stay near unit scale
		for i := range n.w[name].Float32s() {
			n.w[name].Float32s()[i] *= 0.3
		}
		n.w[name+".b"] = blkRand(r, s[0])
	}
	return n
}

// graph writes the network, blocked or not; batch (and H, W when hwS) are
// symbolic.
func (s *smallNet) graph(blocked bool) *ir.Graph {
	b := ir.NewBuilder("smallnet", 17)
	h, w := ir.D(29), ir.D(27)
	if s.hwS {
		h, w = ir.S("h"), ir.S("w")
	}
	x := b.Input("x", tensor.Float32, ir.S("n"), ir.D(3), h, w)
	ints := ir.IntsAttr
	consts := func(name string) []*ir.Value {
		return []*ir.Value{b.Const(name, s.w[name]), b.Const(name+".b", s.w[name+".b"])}
	}
	conv := func(x *ir.Value, name string, act string, z *ir.Value, attrs ...*ir.Attr) *ir.Value {
		in := append([]*ir.Value{x}, consts(name)...)
		if blocked {
			if z != nil {
				in = append(in, z)
			}
			if act != "" {
				attrs = append(attrs, ir.StringAttr("activation", act))
			}
			return kilnOp(b, "BlockedConv", in, attrs...)
		}
		y := b.Op("Conv", in, attrs...)
		if z != nil {
			y = b.Op("Add", []*ir.Value{y, z})
		}
		switch act {
		case "Relu":
			y = b.Op("Relu", []*ir.Value{y})
		case "HardSigmoid":
			y = b.Op("HardSigmoid", []*ir.Value{y})
		}
		return y
	}
	op := func(name string, x *ir.Value, attrs ...*ir.Attr) *ir.Value {
		if blocked {
			return kilnOp(b, "Blocked"+name, []*ir.Value{x}, attrs...)
		}
		return b.Op(name, []*ir.Value{x}, attrs...)
	}
	stemAttrs := []*ir.Attr{ints("strides", 2, 2), ints("pads", 3, 3, 3, 3)}
	if blocked {
		stemAttrs = append(stemAttrs, ir.IntAttr("input_nchw", 1))
	}
	y := conv(x, "stem", "Relu", nil, stemAttrs...)
	p := op("MaxPool", y, ints("kernel_shape", 3, 3), ints("strides", 2, 2), ints("pads", 1, 1, 1, 1))
	y = conv(p, "b1", "Relu", nil, ints("pads", 1, 1, 1, 1))
	y = conv(y, "b2", "Relu", p, ints("pads", 1, 1, 1, 1))
	y = b.Op("Relu", []*ir.Value{b.Op("Add", []*ir.Value{y, p})}) // ONNX ops on the blocked tensors as they are
	y = conv(y, "proj", "", nil, ints("strides", 2, 2))
	y = conv(y, "dw", "HardSigmoid", nil, ir.IntAttr("group", 40), ints("pads", 1, 1, 1, 1))
	m := op("MaxPool", y, ints("kernel_shape", 3, 3), ints("strides", 2, 2), ir.IntAttr("ceil_mode", 1))
	a := op("AveragePool", y, ints("kernel_shape", 2, 2), ints("pads", 1, 1, 1, 1), ir.IntAttr("count_include_pad", 1))
	ga, gm := op("GlobalAveragePool", a), op("GlobalMaxPool", m)
	if blocked {
		ga = kilnOp(b, "FromBlocked", []*ir.Value{ga}, ir.IntAttr("channels", 40))
		gm = kilnOp(b, "FromBlocked", []*ir.Value{gm}, ir.IntAttr("channels", 40))
	}
	b.Output(ga, "avg")
	b.Output(gm, "max")
	return b.Graph()
}

// TestBlockedNet: the small network in the blocked layout equals its NCHW
// form run after run of one engine context as the batch (and plane) size
// changes: the packed filters, cached once per node, serve every shape.
func TestBlockedNet(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 4))
	net := newSmallNet(r)
	for _, hwS := range []bool{false, true} {
		net.hwS = hwS
		be, err := engine.New(net.graph(true))
		if err != nil {
			t.Fatal(err)
		}
		re, err := engine.New(net.graph(false))
		if err != nil {
			t.Fatal(err)
		}
		bc, rc := be.NewContext(), re.NewContext()
		sizes := [][3]int{{1, 29, 27}, {2, 29, 27}, {1, 29, 27}, {3, 29, 27}}
		if hwS {
			sizes = append(sizes, [3]int{2, 40, 33}, [3]int{1, 17, 18}, [3]int{2, 29, 27})
		}
		for _, sz := range sizes {
			name := fmt.Sprintf("symbolic plane %v, input %v", hwS, sz)
			in := map[string]*tensor.Tensor{"x": blkRand(r, sz[0], 3, sz[1], sz[2])}
			got, err := bc.Run(context.Background(), in)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			want, err := rc.Run(context.Background(), in)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			for _, o := range []string{"avg", "max"} {
				compareClose(t, name+" "+o, got[o], want[o], blockedTol)
			}
		}
	}
}

// TestBlockedNetAllocs bounds the heap allocations of a steady-state run
// of the blocked network through an engine context (its arena and memory
// plan holding the rank-5 intermediates) at one and two threads: the
// result map and the two outputs (tensor and data) make 6; the blocked
// operators none (filters packed once, geometry cached per shape, parallel
// loops through pooled jobs) and the ONNX Relu 1. At two threads the
// count also moves with the cpu pool's jobs (a job released by the worker
// on the other P misses the caller's pool: TestRunAllocsShared's room).
// Past that, allocations are the kernels' (cpu.BlockedConv2D).
func TestBlockedNetAllocs(t *testing.T) {
	net := newSmallNet(rand.New(rand.NewPCG(15, 5)))
	e, err := engine.New(net.graph(true))
	if err != nil {
		t.Fatal(err)
	}
	c := e.NewContext()
	ctx := context.Background()
	in := map[string]*tensor.Tensor{"x": blkRand(rand.New(rand.NewPCG(1, 1)), 1, 3, 29, 27)}
	for i, procs := range []int{1, 2} {
		old := runtime.GOMAXPROCS(procs)
		_ = cpu.SetThreads(0) // re-reads GOMAXPROCS now (the pool reads it every 100 ms)
		for range 5 {
			if _, err := c.Run(ctx, in); err != nil {
				runtime.GOMAXPROCS(old)
				t.Fatal(err)
			}
		}
		var runErr error
		got := testing.AllocsPerRun(50, func() {
			if _, err := c.Run(ctx, in); err != nil {
				runErr = err
			}
		})
		runtime.GOMAXPROCS(old)
		_ = cpu.SetThreads(0)
		if runErr != nil {
			t.Fatal(runErr)
		}
		bound := []float64{8, 30}[i]
		if got > bound {
			t.Errorf("%d threads: %.1f allocations per run, want at most %.0f", procs, got, bound)
		}
		t.Logf("%d threads: %.1f allocations per run", procs, got)
	}
}

// TestRunAllocsBlocked bounds the heap allocations of a steady-state run
// of the shared CNNs built at optimizer level 3 (the "blocked" pass: the
// operators of blocked.go and blockedpool.go), default tactics, through a
// kiln.Context at one and two threads, as TestRunAllocsShared does for
// level 2 (which these bounds match: 5 per run at one thread, as level 2
// makes, when written; the cpu pool's jobs move the two-thread count).
// Skipped without ../shared.
func TestRunAllocsBlocked(t *testing.T) {
	bounds := map[string][2]float64{"resnet_mini": {15, 35}, "squeezenet1_1": {15, 35}, "mobilenet_v2": {15, 35}}
	for _, name := range []string{"mobilenet_v2", "resnet_mini", "squeezenet1_1"} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(sharedModelsDir, name)
			data, err := os.ReadFile(filepath.Join(dir, "model.onnx"))
			if err != nil {
				t.Skipf("needs the shared models: %v", err)
			}
			probe, err := engine.New(loadGraph(t, filepath.Join(dir, "model.onnx"), 0))
			if err != nil {
				t.Fatal(err)
			}
			in, shapes := dataSet(t, dir, probe)
			var prof engine.Profile
			for n, s := range shapes {
				prof.Inputs = append(prof.Inputs, engine.Range{Input: n, Min: s, Opt: s, Max: s})
			}
			ctx := context.Background()
			m, err := kiln.BuildBytes(ctx, name, data, kiln.BuildOptions{NoTiming: true, OptLevel: 3, Profiles: []engine.Profile{prof}})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			blocked := 0
			for _, n := range m.Engine().Graph().Nodes {
				if n.Domain == "kiln" && strings.HasPrefix(n.OpType, "Blocked") {
					blocked++
				}
			}
			if blocked == 0 {
				t.Fatalf("the level 3 plan has no blocked operator")
			}
			c := m.NewContext()
			for i, procs := range []int{1, 2} {
				old := runtime.GOMAXPROCS(procs)
				_ = cpu.SetThreads(0)
				for range 5 {
					if _, err := c.Run(ctx, in); err != nil {
						t.Fatal(err)
					}
				}
				// the least of three windows, as runAllocs takes (allocs_test.go)
				got := math.Inf(1)
				for range 3 {
					got = min(got, testing.AllocsPerRun(30, func() { _, _ = c.Run(ctx, in) }))
				}
				runtime.GOMAXPROCS(old)
				_ = cpu.SetThreads(0)
				if max := bounds[name][i]; got > max {
					t.Errorf("%d threads: %.1f allocations per run, want at most %.0f", procs, got, max)
				}
				t.Logf("%d blocked operators; %d threads: %.1f allocations per run", blocked, procs, got)
			}
		})
	}
}
