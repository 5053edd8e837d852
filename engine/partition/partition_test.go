package partition

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	_ "github.com/kilnai/kiln/ops/all"
	"github.com/kilnai/kiln/tensor"
)

// fakeExec is an executor that supports only some op types. Its programs
// run on the CPU engine; it records the graphs it compiled and the options
// it got, and its programs' blobs name their nodes.
type fakeExec struct {
	name     string
	ops      map[string]bool // supported op types; nil: no Supporter answer (see noSupport)
	mu       sync.Mutex
	compiled []compiled
}

type compiled struct {
	g     *ir.Graph
	nodes []string
	o     device.ExecOptions
}

func (f *fakeExec) Name() string { return f.name }
func (f *fakeExec) Fingerprint() (device.Fingerprint, error) {
	return device.Fingerprint{"device": f.name}, nil
}

func (f *fakeExec) Supports(n *ir.Node, g *ir.Graph) error {
	if f.ops[n.OpType] {
		return nil
	}
	return fmt.Errorf("%w: op %s has no %s implementation", device.ErrUnsupported, n.OpType, f.name)
}

func (f *fakeExec) Compile(g *ir.Graph, o device.ExecOptions) (device.Program, error) {
	var nodes []string
	for _, n := range g.Nodes {
		if f.ops != nil && !f.ops[n.OpType] {
			return nil, fmt.Errorf("fake: compiled a graph with %s", n.OpType)
		}
		nodes = append(nodes, n.Name)
	}
	e, err := engine.New(g)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.compiled = append(f.compiled, compiled{g: g, nodes: nodes, o: o})
	f.mu.Unlock()
	return &fakeProgram{e: e, g: g, blobs: map[string][]byte{"fake.nodes": []byte(strings.Join(nodes, ","))}}, nil
}

// noSupport is an executor that does not implement device.Supporter.
type noSupport struct{ f *fakeExec }

func (n noSupport) Name() string                             { return n.f.Name() }
func (n noSupport) Fingerprint() (device.Fingerprint, error) { return n.f.Fingerprint() }
func (n noSupport) Compile(g *ir.Graph, o device.ExecOptions) (device.Program, error) {
	return n.f.Compile(g, o)
}

type fakeProgram struct {
	e      *engine.Engine
	g      *ir.Graph
	blobs  map[string][]byte
	closed bool
}

func (p *fakeProgram) Run(ctx context.Context, in map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	return p.e.Run(ctx, in)
}
func (p *fakeProgram) Close() error             { p.closed = true; return nil }
func (p *fakeProgram) Blobs() map[string][]byte { return p.blobs }

var gpuOps = map[string]bool{"Relu": true, "Mul": true, "Add": true, "Sigmoid": true, "Shape": true, "Reshape": true, "Gather": true, "Concat": true, "Unsqueeze": true}

// chain is x[batch,8] -> Relu -> Mul(w) -> CumSum -> Add(b) -> Sigmoid ->
// y, plus a Reshape of the last activation to x's shape computed at the
// start (Shape(x)), which the fake device needs as a constant: the middle
// op (CumSum) has no fake-device implementation.
func chain(t testing.TB, unsupported string) *ir.Graph {
	t.Helper()
	b := ir.NewBuilder("chain", 17)
	x := b.Input("x", tensor.Float32, ir.S("batch"), ir.D(8))
	shape := b.Op("Shape", []*ir.Value{x})
	r := b.Op("Relu", []*ir.Value{x})
	w := make([]float32, 8)
	for i := range w {
		w[i] = 0.25 * float32(i-3)
	}
	m := b.Op("Mul", []*ir.Value{r, b.Const("w", tensor.FromFloat32(w, 8))})
	var mid *ir.Value
	switch unsupported {
	case "CumSum":
		mid = b.Op("CumSum", []*ir.Value{m, b.Const("axis", tensor.FromInt64([]int64{1}, 1))})
	case "HardSigmoid":
		mid = b.Op("HardSigmoid", []*ir.Value{m})
	default:
		mid = b.Op("Relu", []*ir.Value{m})
	}
	a := b.Op("Add", []*ir.Value{mid, b.Const("bias", tensor.FromFloat32([]float32{0.5}, 1))})
	s := b.Op("Sigmoid", []*ir.Value{a})
	b.Output(b.Op("Reshape", []*ir.Value{s, shape}), "y")
	b.Output(m, "scaled") // a graph output also read by a later segment
	g := b.Graph()
	if _, err := ops.InferGraph(g); err != nil {
		t.Fatal(err)
	}
	return g
}

func randomInput(batch int, seed uint64) map[string]*tensor.Tensor {
	r := rand.New(rand.NewPCG(seed, 3))
	x := tensor.New(tensor.Float32, batch, 8)
	for i := range x.Float32s() {
		x.Float32s()[i] = float32(r.NormFloat64())
	}
	return map[string]*tensor.Tensor{"x": x}
}

// reference runs g on the CPU engine.
func reference(t testing.TB, g *ir.Graph, in map[string]*tensor.Tensor) map[string]*tensor.Tensor {
	t.Helper()
	e, err := engine.New(g.Clone())
	if err != nil {
		t.Fatal(err)
	}
	out, err := e.Run(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameOutputs(t testing.TB, got, want map[string]*tensor.Tensor) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("outputs %v, want %v", keys(got), keys(want))
	}
	for name, w := range want {
		g := got[name]
		if g == nil || !slices.Equal(g.Shape, w.Shape) {
			t.Fatalf("output %s: %v, want %v", name, g, w)
		}
		for i, v := range w.Float32s() {
			if d := math.Abs(float64(g.Float32s()[i] - v)); d > 1e-6 {
				t.Fatalf("output %s[%d] = %v, want %v", name, i, g.Float32s()[i], v)
			}
		}
	}
}

func keys(m map[string]*tensor.Tensor) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestCompileSegments partitions graphs with and without an op the device
// lacks and checks the segments, the report and the outputs against the
// CPU engine.
func TestCompileSegments(t *testing.T) {
	tests := []struct {
		name      string
		mid       string
		segments  []string // device of each segment
		fallbacks []string // ops
	}{
		{"cumsum in the middle", "CumSum", []string{"gpu", CPU, "gpu"}, []string{"CumSum"}},
		{"hardsigmoid in the middle", "HardSigmoid", []string{"gpu", CPU, "gpu"}, []string{"HardSigmoid"}},
		{"fully supported", "Relu", []string{"gpu"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := chain(t, tt.mid)
			x := &fakeExec{name: "gpu", ops: gpuOps}
			prog, r, err := Compile(g, x, device.ExecOptions{}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer prog.Close()
			var devs, fell []string
			for _, s := range r.Segments {
				devs = append(devs, s.Device)
			}
			for _, f := range r.Fallbacks {
				fell = append(fell, f.Op)
				if !errors.Is(f.Reason, device.ErrUnsupported) || !strings.Contains(f.Reason.Error(), f.Op) {
					t.Errorf("fallback %s: reason %v", f.Node, f.Reason)
				}
			}
			if !slices.Equal(devs, tt.segments) || !slices.Equal(fell, tt.fallbacks) {
				t.Fatalf("segments %v, fallbacks %v; want %v, %v", devs, fell, tt.segments, tt.fallbacks)
			}
			if r.Layers != len(g.Nodes) || r.OnDevice != r.Layers-len(tt.fallbacks) {
				t.Errorf("report: %d layers, %d on the device", r.Layers, r.OnDevice)
			}
			if len(tt.segments) == 1 {
				// One segment: the device's own program for g itself.
				fp, ok := prog.(*fakeProgram)
				if !ok || fp.g != g || len(x.compiled) != 1 {
					t.Fatalf("a fully supported graph compiled as %T (%d compilations)", prog, len(x.compiled))
				}
			} else {
				// Every node the device got, it supports; the CPU got the rest.
				if len(x.compiled) != 2 {
					t.Fatalf("%d device compilations, want 2", len(x.compiled))
				}
			}
			for _, batch := range []int{1, 3} {
				in := randomInput(batch, uint64(batch))
				out, err := prog.Run(context.Background(), in)
				if err != nil {
					t.Fatal(err)
				}
				sameOutputs(t, out, reference(t, g, in))
			}
		})
	}
}

// TestShapesRepeated checks that a device segment that reads a shape
// computed in an earlier segment computes it again itself (Shape of x),
// and gets max and opt shapes for its own inputs.
func TestShapesRepeated(t *testing.T) {
	g := chain(t, "CumSum")
	x := &fakeExec{name: "gpu", ops: gpuOps}
	o := device.ExecOptions{MaxShapes: map[string][]int{"x": {4, 8}}, OptShapes: map[string][]int{"x": {2, 8}}}
	prog, r, err := Compile(g, x, o, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	last := r.Segments[len(r.Segments)-1]
	if !slices.Contains(last.Nodes, "Shape_1") || !slices.Contains(last.Inputs, "x") || slices.Contains(last.Inputs, "Shape_1_out_1") {
		t.Errorf("last segment %+v does not compute Shape(x) itself", last)
	}
	if len(x.compiled) != 2 {
		t.Fatalf("%d compilations", len(x.compiled))
	}
	c := x.compiled[1]
	for _, in := range c.g.Inputs {
		if !slices.Equal(c.o.MaxShapes[in.Name], []int{4, 8}) || !slices.Equal(c.o.OptShapes[in.Name], []int{2, 8}) {
			t.Errorf("segment input %s: max %v opt %v", in.Name, c.o.MaxShapes[in.Name], c.o.OptShapes[in.Name])
		}
	}
	first := x.compiled[0]
	if !slices.Equal(first.o.MaxShapes["x"], []int{4, 8}) {
		t.Errorf("first segment max shapes %v", first.o.MaxShapes)
	}
}

// TestStrict checks that strict mode refuses a fallback, naming the node
// and the reason, before compiling anything, and accepts a graph the
// device runs entirely.
func TestStrict(t *testing.T) {
	tests := []struct {
		mid  string
		want string // "" for success
	}{
		{"CumSum", "CumSum_1 (CumSum): device: unsupported: op CumSum has no gpu implementation"},
		{"Relu", ""},
	}
	for _, tt := range tests {
		t.Run(tt.mid, func(t *testing.T) {
			x := &fakeExec{name: "gpu", ops: gpuOps}
			prog, _, err := Compile(chain(t, tt.mid), x, device.ExecOptions{}, Options{Strict: true})
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				prog.Close()
				return
			}
			if !errors.Is(err, ErrFallback) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "1 of 7 layers") {
				t.Fatalf("strict: %v, want ErrFallback saying %q", err, tt.want)
			}
			if len(x.compiled) != 0 {
				t.Errorf("strict compiled %d graphs before refusing", len(x.compiled))
			}
		})
	}
}

// TestBlobs checks that a program of several segments stores each device
// segment's sections under its prefix, that loading with them gives each
// segment its own sections back, and that one segment keeps its names.
func TestBlobs(t *testing.T) {
	x := &fakeExec{name: "gpu", ops: gpuOps}
	prog, _, err := Compile(chain(t, "CumSum"), x, device.ExecOptions{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	blobs := prog.(device.BlobProgram).Blobs()
	var names []string
	for name := range blobs {
		names = append(names, name)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"segment0/fake.nodes", "segment2/fake.nodes"}) {
		t.Fatalf("blobs %v", names)
	}
	// Loading: each device segment gets its sections without the prefix.
	y := &fakeExec{name: "gpu", ops: gpuOps}
	again, _, err := Compile(chain(t, "CumSum"), y, device.ExecOptions{Blobs: blobs}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	for i, c := range y.compiled {
		want := blobs[SegmentPrefix(2*i)+"fake.nodes"]
		if len(c.o.Blobs) != 1 || string(c.o.Blobs["fake.nodes"]) != string(want) {
			t.Errorf("segment %d loaded with blobs %q, want fake.nodes=%q", 2*i, c.o.Blobs, want)
		}
	}
	// One segment: the device's names, unprefixed.
	one, _, err := Compile(chain(t, "Relu"), x, device.ExecOptions{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	if b := one.(device.BlobProgram).Blobs(); len(b) != 1 || b["fake.nodes"] == nil {
		t.Errorf("one segment's blobs %q", b)
	}
}

// TestNoSupporter checks that an executor that cannot answer Supports is
// given the whole graph.
func TestNoSupporter(t *testing.T) {
	f := &fakeExec{name: "gpu"}
	g := chain(t, "CumSum")
	prog, r, err := Compile(g, noSupport{f}, device.ExecOptions{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	if len(r.Segments) != 1 || len(r.Fallbacks) != 0 || len(f.compiled) != 1 || f.compiled[0].g != g {
		t.Errorf("report %+v, %d compilations", r, len(f.compiled))
	}
}

// TestRunConcurrent runs a program of three segments from many goroutines
// (go test -race) and checks every result.
func TestRunConcurrent(t *testing.T) {
	g := chain(t, "CumSum")
	prog, _, err := Compile(g, &fakeExec{name: "gpu", ops: gpuOps}, device.ExecOptions{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	const workers, runs = 8, 5
	want := make([]map[string]*tensor.Tensor, workers)
	ins := make([]map[string]*tensor.Tensor, workers)
	for w := range workers {
		ins[w] = randomInput(1+w%3, uint64(100+w))
		want[w] = reference(t, g, ins[w])
	}
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range runs {
				out, err := prog.Run(context.Background(), ins[w])
				if err != nil {
					errs <- err
					return
				}
				for name, wt := range want[w] {
					if !slices.Equal(out[name].Float32s(), wt.Float32s()) {
						errs <- fmt.Errorf("worker %d: output %s differs", w, name)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestRunErrors checks the program's answers to bad inputs and a canceled
// context.
func TestRunErrors(t *testing.T) {
	prog, _, err := Compile(chain(t, "CumSum"), &fakeExec{name: "gpu", ops: gpuOps}, device.ExecOptions{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	in := randomInput(2, 1)
	bad := map[string]*tensor.Tensor{"x": in["x"], "z": in["x"]}
	if _, err := prog.Run(context.Background(), bad); !errors.Is(err, engine.ErrInput) {
		t.Errorf("unknown input: %v", err)
	}
	if _, err := prog.Run(context.Background(), map[string]*tensor.Tensor{}); !errors.Is(err, engine.ErrInput) {
		t.Errorf("missing input: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := prog.Run(ctx, in); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled: %v", err)
	}
}

// TestSummary checks the report's summary line and fallback lines.
func TestSummary(t *testing.T) {
	r := Assign(chain(t, "CumSum"), &fakeExec{name: "gpu", ops: gpuOps})
	if got, want := r.Summary(), "6 of 7 layers on gpu, 1 on the CPU (CumSum x1) in 3 segments"; got != want {
		t.Errorf("Summary = %q, want %q", got, want)
	}
	lines := r.Lines()
	if len(lines) != 1 || !strings.Contains(lines[0], "CumSum_1 (CumSum) runs on the CPU: device: unsupported") {
		t.Errorf("Lines = %q", lines)
	}
}

// TestMaskRepeated checks that a device segment recomputes a value made
// from shapes alone (ConstantOfShape of Shape(x), not itself a shape
// value) rather than reading it from an earlier segment, and that the
// program matches the CPU.
func TestMaskRepeated(t *testing.T) {
	b := ir.NewBuilder("mask", 17)
	x := b.Input("x", tensor.Float32, ir.S("batch"), ir.D(8))
	one := &ir.Attr{Name: "value", Type: ir.AttrTensor, T: tensor.FromFloat32([]float32{0.5}, 1)}
	mask := b.Op("ConstantOfShape", []*ir.Value{b.Op("Shape", []*ir.Value{x})}, one)
	c := b.Op("CumSum", []*ir.Value{b.Op("Relu", []*ir.Value{x}), b.Const("axis", tensor.FromInt64([]int64{1}, 1))})
	b.Output(b.Op("Mul", []*ir.Value{c, mask}), "y")
	g := b.Graph()
	if _, err := ops.InferGraph(g); err != nil {
		t.Fatal(err)
	}
	supported := map[string]bool{"ConstantOfShape": true}
	for op := range gpuOps {
		supported[op] = true
	}
	prog, r, err := Compile(g, &fakeExec{name: "gpu", ops: supported}, device.ExecOptions{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	last := r.Segments[len(r.Segments)-1]
	if len(r.Segments) != 3 || !slices.Equal(last.Nodes, []string{"Shape_1", "ConstantOfShape_1", "Mul_1"}) || !slices.Equal(last.Inputs, []string{"x", "CumSum_1_out_1"}) {
		t.Errorf("segments %+v", r.Segments)
	}
	in := randomInput(3, 9)
	out, err := prog.Run(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	sameOutputs(t, out, reference(t, g, in))
}

// TestSubgraphCaptures puts on the CPU an If whose branches read a value
// a device segment computes (a capture, not an input of the If node), and
// checks that the CPU segment gets it and the program matches the CPU.
func TestSubgraphCaptures(t *testing.T) {
	b := ir.NewBuilder("if", 17)
	g := b.Graph()
	x := b.Input("x", tensor.Float32, ir.S("batch"), ir.D(8))
	cond := b.Input("cond", tensor.Bool)
	r := b.Op("Relu", []*ir.Value{x})
	branch := func(name string, op string) *ir.Graph {
		sb := ir.NewBuilder(name, 17)
		sb.Graph().Parent = g
		sb.Output(sb.Op(op, []*ir.Value{sb.Graph().Capture(r)}), name+"_out")
		return sb.Graph()
	}
	y := b.Op("If", []*ir.Value{cond}, ir.GraphAttr("then_branch", branch("then", "Sigmoid")), ir.GraphAttr("else_branch", branch("else", "Neg")))
	b.Output(b.Op("Add", []*ir.Value{y, b.Const("one", tensor.FromFloat32([]float32{1}, 1))}), "y")
	if _, err := ops.InferGraph(g); err != nil {
		t.Fatal(err)
	}
	prog, rep, err := Compile(g, &fakeExec{name: "gpu", ops: gpuOps}, device.ExecOptions{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	if len(rep.Segments) != 3 || !slices.Equal(rep.Segments[1].Inputs, []string{"cond", r.Name}) {
		t.Fatalf("segments %+v", rep.Segments)
	}
	for _, c := range []bool{true, false} {
		cv := tensor.New(tensor.Bool)
		cv.Bools()[0] = c
		in := randomInput(2, 4)
		in["cond"] = cv
		out, err := prog.Run(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		sameOutputs(t, out, reference(t, g, in))
	}
}

// TestIdleSegmentDropped checks that a device segment made only of a
// shape computation that a later device segment repeats is left out.
func TestIdleSegmentDropped(t *testing.T) {
	b := ir.NewBuilder("idle", 17)
	x := b.Input("x", tensor.Float32, ir.S("batch"), ir.D(8))
	shape := b.Op("Shape", []*ir.Value{x})
	c := b.Op("CumSum", []*ir.Value{x, b.Const("axis", tensor.FromInt64([]int64{1}, 1))})
	b.Output(b.Op("Reshape", []*ir.Value{c, shape}), "y")
	g := b.Graph()
	if _, err := ops.InferGraph(g); err != nil {
		t.Fatal(err)
	}
	x2 := &fakeExec{name: "gpu", ops: gpuOps}
	prog, r, err := Compile(g, x2, device.ExecOptions{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	var devs []string
	for _, s := range r.Segments {
		devs = append(devs, s.Device)
	}
	if !slices.Equal(devs, []string{CPU, "gpu"}) || len(x2.compiled) != 1 || !slices.Equal(x2.compiled[0].nodes, []string{"Shape_1", "Reshape_1"}) {
		t.Errorf("segments %+v, device compilations %d", r.Segments, len(x2.compiled))
	}
	in := randomInput(2, 5)
	out, err := prog.Run(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	sameOutputs(t, out, reference(t, g, in))
}

// TestSegmentTimer checks that WithSegmentTimer reports every segment of a
// partitioned program in order, with its device and what it runs (the
// op of a short CPU segment), and that a program of one device segment,
// which is the device's own, reports nothing.
func TestSegmentTimer(t *testing.T) {
	tests := []struct {
		mid  string
		want []string // "device: ops" per segment
	}{
		{"CumSum", []string{"gpu: 4 layers", "cpu: CumSum x1", "gpu: 5 layers"}},
		{"Relu", nil},
	}
	for _, tt := range tests {
		t.Run(tt.mid, func(t *testing.T) {
			prog, _, err := Compile(chain(t, tt.mid), &fakeExec{name: "gpu", ops: gpuOps}, device.ExecOptions{}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer prog.Close()
			var got []string
			next := 0
			ctx := WithSegmentTimer(context.Background(), func(st SegmentTime) {
				if st.Index != next || st.Took <= 0 {
					t.Errorf("segment %d reported as %d, took %v", next, st.Index, st.Took)
				}
				next++
				got = append(got, st.Device+": "+st.Ops)
			})
			if _, err := prog.Run(ctx, randomInput(2, 7)); err != nil {
				t.Fatal(err)
			}
			if len(tt.want) > 0 {
				// the device segments' layer counts depend on the shape
				// computations they repeat: check the devices and the
				// CPU segment's op exactly, the rest by prefix
				if len(got) != len(tt.want) || got[1] != tt.want[1] ||
					!strings.HasPrefix(got[0], "gpu: ") || !strings.HasPrefix(got[2], "gpu: ") {
					t.Fatalf("segments %q, want %q", got, tt.want)
				}
			} else if len(got) != 0 {
				t.Fatalf("one device segment reported %q", got)
			}
		})
	}
}
