package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"github.com/kilnai/kiln/engine/arena"
	"github.com/kilnai/kiln/engine/arena/arenatest"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	_ "github.com/kilnai/kiln/ops/math"
	_ "github.com/kilnai/kiln/ops/shape"
	"github.com/kilnai/kiln/tensor"
)

// The test ops live in their own domain.
const testDomain = "kiln.enginetest"

// sneakyView returns a view of its input: an aliasing kernel the memory
// planner does not know about.
type sneakyView struct{}

func (sneakyView) Infer(in []*ir.Value) ([]ir.Type, error) { return []ir.Type{in[0].Type}, nil }
func (sneakyView) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	y, err := in[0].Reshape(in[0].Shape)
	return []*tensor.Tensor{y}, err
}

// tactical is a Relu with two named tactics.
type tactical struct{ tactic string }

func (k *tactical) Infer(in []*ir.Value) ([]ir.Type, error) { return []ir.Type{in[0].Type}, nil }
func (k *tactical) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	y, err := ops.NewOutput(env, in[0].DType, in[0].Shape)
	if err != nil {
		return nil, err
	}
	for i, v := range in[0].Float32s() {
		y.Float32s()[i] = max(v, 0)
	}
	return []*tensor.Tensor{y}, nil
}
func (k *tactical) Tactics([]*ir.Value) []string { return []string{"fast", "slow"} }
func (k *tactical) SetTactic(name string) error {
	if name != "fast" && name != "slow" {
		return fmt.Errorf("no tactic %q", name)
	}
	k.tactic = name
	return nil
}

func init() {
	ops.Register(ops.Def{Type: "SneakyView", Domain: testDomain, Prepare: func(*ir.Node, int64) (ops.Kernel, error) { return sneakyView{}, nil }})
	ops.Register(ops.Def{Type: "TacticRelu", Domain: testDomain, Prepare: func(*ir.Node, int64) (ops.Kernel, error) { return &tactical{}, nil }})
}

// withStrictAlias makes unplanned aliases errors for the test's duration.
func withStrictAlias(t *testing.T) {
	t.Helper()
	strictAlias.Store(true)
	t.Cleanup(func() { strictAlias.Store(false) })
}

// chain builds y = f(...f(x)) with n alternating unary ops on x [1, width].
func chain(t *testing.T, n, width int, o Options) *Engine {
	t.Helper()
	b := ir.NewBuilder("chain", 17)
	v := b.Input("x", tensor.Float32, ir.D(1), ir.D(int64(width)))
	c := b.Const("c", tensor.FromFloat32([]float32{0.5}, 1))
	for i := 0; i < n; i++ {
		switch i % 3 {
		case 0:
			v = b.Op("Add", []*ir.Value{v, c})
		case 1:
			v = b.Op("Neg", []*ir.Value{v})
		default:
			v = b.Op("Abs", []*ir.Value{v})
		}
	}
	b.Output(v, "y")
	e, err := NewWithOptions(b.Graph(), o)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func ramp(n int, scale float32, shape ...int) *tensor.Tensor {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(i%17)*scale - 3
	}
	return tensor.FromFloat32(v, shape...)
}

func equal(t *testing.T, what string, got, want *tensor.Tensor) {
	t.Helper()
	if got.DType != want.DType || tensor.ShapeString(got.Shape) != tensor.ShapeString(want.Shape) || string(got.Data) != string(want.Data) {
		t.Fatalf("%s: got %v %v, want %v %v (data differ)", what, got.DType, got.Shape, want.DType, want.Shape)
	}
}

// poison fills a context's arena with NaNs, so that a kernel that reads
// memory it did not write gives a different result.
func poison(c *Context) {
	for i := range c.arena {
		c.arena[i] = 0xff
	}
}

func TestArenaReuseOnChain(t *testing.T) {
	withStrictAlias(t)
	const width = 1000
	e := chain(t, 12, width, Options{})
	ref := chain(t, 12, width, Options{NoArena: true})
	m := e.Memory()
	// 11 intermediates of 4000 bytes; a chain needs two buffers at a time
	if m.Values != 11 || m.InArena != 11 || m.IntermediateBytes != 11*4*width {
		t.Fatalf("memory %+v, want 11 intermediates of %d bytes, all in the arena", m, 4*width)
	}
	if m.ArenaBytes != 2*alignUp(4*width) {
		t.Fatalf("arena of %d bytes, want two buffers of %d", m.ArenaBytes, alignUp(4*width))
	}
	if ref.Memory() != (MemoryStats{}) {
		t.Fatalf("NoArena engine has a memory plan %+v", ref.Memory())
	}
	x := ramp(width, 0.37, 1, width)
	want, err := ref.Run(context.Background(), map[string]*tensor.Tensor{"x": x})
	if err != nil {
		t.Fatal(err)
	}
	c := e.NewContext()
	inArena := 0
	for run := 0; run < 3; run++ {
		poison(c)
		got, err := c.RunObserved(context.Background(), map[string]*tensor.Tensor{"x": x}, func(v *ir.Value, t *tensor.Tensor) {
			if c.inArena(t) {
				inArena++
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		if c.inArena(got["y"]) {
			t.Fatal("output points into the arena")
		}
		equal(t, fmt.Sprintf("run %d", run), got["y"], want["y"])
	}
	if inArena != 3*11 {
		t.Fatalf("%d intermediates were in the arena over 3 runs, want 33", inArena)
	}
}

// aliasGraph builds a graph where views (Reshape, Flatten, Unsqueeze,
// Squeeze, Identity, a Transpose of a size-1 dimension) of early values
// are read late, after other values were computed: if the planner did not
// keep the viewed memory alive, they would be overwritten.
func aliasGraph(t *testing.T, o Options) *Engine {
	t.Helper()
	b := ir.NewBuilder("alias", 17)
	x := b.Input("x", tensor.Float32, ir.D(2), ir.D(3), ir.D(4))
	shape := b.Const("shape", tensor.FromInt64([]int64{6, 4}, 2))
	axes := b.Const("axes", tensor.FromInt64([]int64{0}, 1))
	a := b.Op("Neg", []*ir.Value{x})                                      // [2,3,4]
	r := b.Op("Reshape", []*ir.Value{a, shape})                           // [6,4] view of a
	f := b.Op("Flatten", []*ir.Value{r}, ir.IntAttr("axis", 1))           // [6,4] view of a
	u := b.Op("Unsqueeze", []*ir.Value{f, axes})                          // [1,6,4] view of a
	tr := b.Op("Transpose", []*ir.Value{u}, ir.IntsAttr("perm", 1, 0, 2)) // [6,1,4] may be a view of a
	id := b.Op("Identity", []*ir.Value{tr})                               // [6,1,4]
	p := b.Op("Abs", []*ir.Value{x})                                      // would reuse a's memory
	q := b.Op("Sqrt", []*ir.Value{p})                                     //
	s := b.Op("Reshape", []*ir.Value{q, b.Const("s2", tensor.FromInt64([]int64{6, 1, 4}, 3))})
	sum := b.Op("Add", []*ir.Value{id, s})                                                   // [6,1,4]
	sq := b.Op("Squeeze", []*ir.Value{sum, b.Const("ax1", tensor.FromInt64([]int64{1}, 1))}) // [6,4]
	out := b.Op("Mul", []*ir.Value{sq, r})                                                   // reads r, a view of a, last
	b.Output(out, "y")
	b.Output(b.Op("Reshape", []*ir.Value{q, shape}), "qview") // a graph output viewing q
	b.Output(b.Op("Transpose", []*ir.Value{b.Op("Neg", []*ir.Value{u})}, ir.IntsAttr("perm", 1, 0, 2)), "tview")
	// a graph output viewing a value that views the arena
	b.Output(b.Op("Reshape", []*ir.Value{b.Op("Transpose", []*ir.Value{b.Op("Abs", []*ir.Value{u})}, ir.IntsAttr("perm", 1, 0, 2)), shape}), "rtview")
	e, err := NewWithOptions(b.Graph(), o)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestAliasingViewsInChain(t *testing.T) {
	withStrictAlias(t)
	e := aliasGraph(t, Options{})
	ref := aliasGraph(t, Options{NoArena: true})
	if m := e.Memory(); m.ArenaBytes == 0 || m.ArenaBytes >= m.IntermediateBytes {
		t.Fatalf("memory %+v: want an arena smaller than the intermediates", m)
	}
	x := ramp(24, 0.5, 2, 3, 4)
	want, err := ref.Run(context.Background(), map[string]*tensor.Tensor{"x": x})
	if err != nil {
		t.Fatal(err)
	}
	c := e.NewContext()
	first := map[string]*tensor.Tensor{}
	for run := 0; run < 2; run++ {
		poison(c)
		got, err := c.Run(context.Background(), map[string]*tensor.Tensor{"x": x})
		if err != nil {
			t.Fatal(err)
		}
		for name, w := range want {
			if c.inArena(got[name]) {
				t.Fatalf("output %q points into the arena", name)
			}
			equal(t, name, got[name], w)
			if run == 0 {
				first[name] = got[name]
			}
		}
	}
	// a later run must not have changed what the first returned
	for name, w := range want {
		equal(t, "first run's "+name, first[name], w)
	}
}

func sneakyGraph(t *testing.T) *Engine {
	t.Helper()
	b := ir.NewBuilder("sneaky", 17)
	b.Graph().Opsets[testDomain] = 1
	x := b.Input("x", tensor.Float32, ir.D(1), ir.D(64))
	a := b.Op("Neg", []*ir.Value{x})
	v := b.Op("SneakyView", []*ir.Value{a})
	v.Producer.Domain = testDomain
	p := b.Op("Abs", []*ir.Value{x}) // reuses a's memory: a is dead for the planner
	q := b.Op("Sqrt", []*ir.Value{p})
	b.Output(b.Op("Add", []*ir.Value{v, q}), "y")
	e, err := New(b.Graph())
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestUnknownAliasGuard(t *testing.T) {
	e := sneakyGraph(t)
	if e.Memory().ArenaBytes == 0 {
		t.Fatal("no arena planned")
	}
	x := ramp(64, 0.25, 1, 64)
	want := make([]float32, 64)
	for i, v := range x.Float32s() {
		want[i] = -v + float32(math.Sqrt(abs(float64(v))))
	}
	// default: the alias is copied out of the arena and the result is right
	c := e.NewContext()
	for run := 0; run < 2; run++ {
		poison(c)
		got, err := c.Run(context.Background(), map[string]*tensor.Tensor{"x": x})
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range got["y"].Float32s() {
			if v != want[i] {
				t.Fatalf("y[%d] = %v, want %v", i, v, want[i])
			}
		}
	}
	// strict (tests): the alias is an error naming the node
	withStrictAlias(t)
	_, err := c.Run(context.Background(), map[string]*tensor.Tensor{"x": x})
	if !errors.Is(err, errAlias) || !strings.Contains(err.Error(), "SneakyView") {
		t.Fatalf("strict run: %v, want errAlias naming SneakyView", err)
	}
}

func abs(v float64) float64 {
	if v < 0 {
		return -v
	}
	return v
}

func TestConcurrentContexts(t *testing.T) {
	withStrictAlias(t)
	const width = 4096
	e := chain(t, 9, width, Options{})
	ref := chain(t, 9, width, Options{NoArena: true})
	var wg sync.WaitGroup
	for g := 0; g < 6; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			x := ramp(width, float32(g+1)*0.1, 1, width)
			want, err := ref.Run(context.Background(), map[string]*tensor.Tensor{"x": x})
			if err != nil {
				t.Error(err)
				return
			}
			c := e.NewContext()
			for i := 0; i < 10; i++ {
				in := map[string]*tensor.Tensor{"x": x}
				var got map[string]*tensor.Tensor
				if i%2 == 0 {
					got, err = c.Run(context.Background(), in)
				} else {
					got, err = e.Run(context.Background(), in) // the pooled contexts
				}
				if err != nil {
					t.Error(err)
					return
				}
				if string(got["y"].Data) != string(want["y"].Data) {
					t.Errorf("goroutine %d run %d: wrong result", g, i)
					return
				}
			}
		}(g)
	}
	wg.Wait()
}

func TestContextBusy(t *testing.T) {
	e := chain(t, 3, 8, Options{})
	c := e.NewContext()
	c.busy.Store(true)
	if _, err := c.Run(context.Background(), map[string]*tensor.Tensor{"x": ramp(8, 1, 1, 8)}); !errors.Is(err, ErrContextBusy) {
		t.Fatalf("run on a busy context: %v, want ErrContextBusy", err)
	}
	c.busy.Store(false)
	if c.Engine() != e {
		t.Fatal("Context.Engine is not the engine")
	}
	if _, err := c.Run(context.Background(), map[string]*tensor.Tensor{"x": ramp(8, 1, 1, 8)}); err != nil {
		t.Fatal(err)
	}
}

// symbolicChain is y = Neg(Abs(Neg(x))) with x [batch, 16].
func symbolicChain(t *testing.T, o Options) (*Engine, error) {
	t.Helper()
	b := ir.NewBuilder("sym", 17)
	x := b.Input("x", tensor.Float32, ir.S("batch"), ir.D(16))
	y := b.Op("Neg", []*ir.Value{b.Op("Abs", []*ir.Value{b.Op("Neg", []*ir.Value{x})})})
	b.Output(y, "y")
	return NewWithOptions(b.Graph(), o)
}

func TestMaxShapes(t *testing.T) {
	withStrictAlias(t)
	e, err := symbolicChain(t, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if m := e.Memory(); m.ArenaBytes != 0 {
		t.Fatalf("symbolic dims without max shapes planned an arena: %+v", m)
	}
	e, err = symbolicChain(t, Options{MaxShapes: map[string][]int{"x": {4, 16}}})
	if err != nil {
		t.Fatal(err)
	}
	if m := e.Memory(); m.IntermediateBytes != 2*4*16*4 || m.ArenaBytes != 2*alignUp(4*16*4) {
		t.Fatalf("memory %+v, want 2 intermediates of %d bytes", m, 4*16*4)
	}
	if e.Graph().Inputs[0].Type.String() != "float32[batch,16]" {
		t.Fatalf("planning changed the graph's types: %v", e.Graph().Inputs[0].Type)
	}
	// smaller than the max fits the slots; larger falls back to the heap
	c := e.NewContext()
	for _, batch := range []int{1, 4, 7, 2} {
		x := ramp(batch*16, 0.3, batch, 16)
		poison(c)
		got, err := c.Run(context.Background(), map[string]*tensor.Tensor{"x": x})
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range x.Float32s() {
			if got["y"].Float32s()[i] != -abs32(v) {
				t.Fatalf("batch %d: y[%d] = %v, want %v", batch, i, got["y"].Float32s()[i], -abs32(v))
			}
		}
	}
}

func abs32(v float32) float32 { return float32(abs(float64(v))) }

func TestOptionErrors(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want []string
	}{
		{"tactic for unknown node", Options{Tactics: map[string]string{"nope": "fast"}}, []string{`"nope"`, `"fast"`, "no node"}},
		{"node without tactics", Options{Tactics: map[string]string{"Neg_1": "fast"}}, []string{`"Neg_1"`, `"fast"`, "no tactics"}},
		{"bad tactic", Options{Tactics: map[string]string{"TacticRelu_1": "warp"}}, []string{`"TacticRelu_1"`, `"warp"`}},
		{"max shape of unknown input", Options{MaxShapes: map[string][]int{"z": {1, 16}}}, []string{`"z"`}},
		{"max shape of wrong rank", Options{MaxShapes: map[string][]int{"x": {16}}}, []string{`"x"`, "rank"}},
		{"max shape off a fixed dim", Options{MaxShapes: map[string][]int{"x": {2, 8}}}, []string{`"x"`, "fixed at 16"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tacticGraph(t, tt.o)
			if !errors.Is(err, ErrOption) {
				t.Fatalf("error %v, want ErrOption", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q does not contain %s", err, w)
				}
			}
		})
	}
	// a good tactic is applied to the node's kernel
	e, err := tacticGraph(t, Options{Tactics: map[string]string{"TacticRelu_1": "slow"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range e.plans[e.graph].steps {
		if k, ok := s.kernel.(*tactical); ok && k.tactic != "slow" {
			t.Fatalf("tactic %q, want slow", k.tactic)
		}
	}
}

func tacticGraph(t *testing.T, o Options) (*Engine, error) {
	t.Helper()
	b := ir.NewBuilder("tactic", 17)
	b.Graph().Opsets[testDomain] = 1
	x := b.Input("x", tensor.Float32, ir.S("batch"), ir.D(16))
	r := b.Op("TacticRelu", []*ir.Value{b.Op("Neg", []*ir.Value{x})})
	r.Producer.Domain = testDomain
	b.Output(r, "y")
	return NewWithOptions(b.Graph(), o)
}

func TestProfilesOption(t *testing.T) {
	p := Profile{Name: "p0", Inputs: []Range{{Input: "x", Min: []int{1, 16}, Opt: []int{2, 16}, Max: []int{3, 16}}}}
	e, err := symbolicChain(t, Options{Profiles: []Profile{p}})
	if err != nil {
		t.Fatal(err)
	}
	if m := e.Memory(); m.IntermediateBytes != 2*3*16*4 {
		t.Fatalf("memory %+v: want intermediates planned at the profile's max batch 3", m)
	}
	if _, err := e.Run(context.Background(), map[string]*tensor.Tensor{"x": ramp(48, 1, 3, 16)}); err != nil {
		t.Fatal(err)
	}
	_, err = e.Run(context.Background(), map[string]*tensor.Tensor{"x": ramp(64, 1, 4, 16)})
	if !errors.Is(err, ErrInput) || !errors.Is(err, ErrProfile) || !strings.Contains(err.Error(), "dimension 0 is 4") {
		t.Fatalf("input outside the profile: %v", err)
	}
	bad := Profile{Name: "bad", Inputs: []Range{{Input: "q", Min: []int{1}, Opt: []int{1}, Max: []int{1}}}}
	if _, err := symbolicChain(t, Options{Profiles: []Profile{bad}}); !errors.Is(err, ErrProfile) {
		t.Fatalf("profile for an unknown input: %v", err)
	}
}

// ifGraph: y = If(cond, a, Abs(a)) + Sqrt(Abs(x)) with a = Neg(x): the then
// branch returns a, a value of the enclosing graph in the arena, whose
// memory Abs(x) reuses once the If has run.
func ifGraph(t *testing.T, o Options) *Engine {
	t.Helper()
	b := ir.NewBuilder("if", 17)
	g := b.Graph()
	x := b.Input("x", tensor.Float32, ir.D(1), ir.D(64))
	cond := b.Input("cond", tensor.Bool)
	a := b.Op("Neg", []*ir.Value{x})
	tb := ir.NewBuilder("then", 17)
	tb.Graph().Parent = g
	tb.Output(tb.Op("Identity", []*ir.Value{tb.Graph().Capture(a)}), "then_out")
	eb := ir.NewBuilder("else", 17)
	eb.Graph().Parent = g
	eb.Output(eb.Op("Abs", []*ir.Value{eb.Graph().Capture(a)}), "else_out")
	y := b.Op("If", []*ir.Value{cond}, ir.GraphAttr("then_branch", tb.Graph()), ir.GraphAttr("else_branch", eb.Graph()))
	q := b.Op("Sqrt", []*ir.Value{b.Op("Abs", []*ir.Value{x})})
	b.Output(b.Op("Add", []*ir.Value{y, q}), "y")
	e, err := NewWithOptions(g, o)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestControlFlowOutputsLeaveTheArena(t *testing.T) {
	withStrictAlias(t)
	e := ifGraph(t, Options{})
	ref := ifGraph(t, Options{NoArena: true})
	if e.Memory().ArenaBytes == 0 {
		t.Fatal("no arena planned")
	}
	c := e.NewContext()
	for _, cond := range []bool{true, false} {
		ct := tensor.New(tensor.Bool)
		ct.Bools()[0] = cond
		in := map[string]*tensor.Tensor{"x": ramp(64, 0.3, 1, 64), "cond": ct}
		want, err := ref.Run(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		for run := 0; run < 2; run++ {
			got, err := c.Run(context.Background(), in)
			if err != nil {
				t.Fatal(err)
			}
			equal(t, fmt.Sprintf("cond %v run %d", cond, run), got["y"], want["y"])
			poison(c)
		}
	}
}

// TestModelsPackers compares, on the buffers the planner gives package
// arena for every shared model (as loaded and at O3, max shapes those of
// test_data_set_0), the arena of the one packer (arena.Place) with those
// of the two it replaced (arenatest: the CPU engine's best fits, the CUDA
// executor's first fit) and the peak of live bytes: Place is never larger
// than either, never below the peak. It logs a table row per graph
// (bench/results/memplan.md).
func TestModelsPackers(t *testing.T) {
	levels := []int{0, 3}
	if testing.Short() {
		levels = []int{3}
	}
	for _, name := range sharedModels(t) {
		for _, level := range levels {
			t.Run(fmt.Sprintf("%s/O%d", name, level), func(t *testing.T) {
				ref, err := New(loadModel(t, name, level))
				if err != nil {
					t.Fatal(err)
				}
				_, shapes := modelInputs(t, name, ref)
				e, err := NewWithOptions(loadModel(t, name, level), Options{MaxShapes: shapes})
				if err != nil {
					t.Fatal(err)
				}
				bufs := e.mem.buffers
				old := make([]arenatest.Buffer, len(bufs))
				for i, b := range bufs {
					old[i] = arenatest.Buffer(b)
				}
				_, place := arena.Place(bufs, arenaAlign)
				_, cpu := arenatest.CPU(old, arenaAlign)
				_, gpu := arenatest.GPU(old, arenaAlign)
				peak := arena.PeakLive(bufs, arenaAlign)
				if int(place) != e.mem.arenaBytes {
					t.Errorf("engine arena %d, Place %d", e.mem.arenaBytes, place)
				}
				if place > cpu || place > gpu || place < peak {
					t.Errorf("Place %d: above the former CPU %d or GPU %d packer, or below the peak %d", place, cpu, gpu, peak)
				}
				mib := func(n int64) string { return fmt.Sprintf("%d (%.2f MiB)", n, float64(n)/(1<<20)) }
				t.Logf("| %s | O%d | %d | %s | %s | %s | %s |", name, level, len(bufs), mib(peak), mib(cpu), mib(gpu), mib(place))
			})
		}
	}
}

// TestSetOutputs: with SetOutputs, a run writes the graph output into the
// memory given when it fits (and keeps it there: not copied out at the
// end), makes it as before when it does not fit or after SetOutputs(nil),
// and the values are the same in every case.
func TestSetOutputs(t *testing.T) {
	e := chain(t, 6, 32, Options{})
	in := map[string]*tensor.Tensor{"x": ramp(32, 0.25, 1, 32)}
	want, err := e.Run(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	buf := tensor.AlignedBytes(4096)
	inBuf := func(x *tensor.Tensor) bool {
		return uintptr(unsafe.Pointer(&x.Data[0])) >= uintptr(unsafe.Pointer(&buf[0])) &&
			uintptr(unsafe.Pointer(&x.Data[0])) < uintptr(unsafe.Pointer(&buf[0]))+uintptr(len(buf))
	}
	for _, tt := range []struct {
		name  string
		into  map[string][]byte
		there bool
	}{
		{"fits", map[string][]byte{"y": buf[1024:2048:2048]}, true},
		{"exactly", map[string][]byte{"y": buf[0:128:128]}, true},
		{"too small", map[string][]byte{"y": buf[0:64:64]}, false},
		{"another name", map[string][]byte{"x": buf}, false},
		{"none", nil, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := e.NewContext()
			c.SetOutputs(tt.into)
			for range 2 {
				got, err := c.Run(context.Background(), in)
				if err != nil {
					t.Fatal(err)
				}
				equal(t, "y", got["y"], want["y"])
				if inBuf(got["y"]) != tt.there {
					t.Errorf("output in the given memory: %v, want %v", inBuf(got["y"]), tt.there)
				}
			}
		})
	}
}
