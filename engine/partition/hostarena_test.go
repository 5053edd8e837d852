package partition

import (
	"context"
	"slices"
	"testing"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/engine/arena"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// twoCPUSegments is x[batch,8] -> Relu -> Tanh -> Neg -> Mul -> Abs ->
// Neg -> Tanh -> Sigmoid -> y: two CPU segments (Tanh, Neg and Abs have no
// fake-device implementation) between three device ones, the first CPU
// segment with one intermediate, the second with two live at once.
func twoCPUSegments(t testing.TB) *ir.Graph {
	t.Helper()
	b := ir.NewBuilder("two_cpu", 17)
	x := b.Input("x", tensor.Float32, ir.S("batch"), ir.D(8))
	v := b.Op("Relu", []*ir.Value{x})
	for _, op := range []string{"Tanh", "Neg"} {
		v = b.Op(op, []*ir.Value{v})
	}
	w := make([]float32, 8)
	for i := range w {
		w[i] = 0.125 * float32(i-4)
	}
	v = b.Op("Mul", []*ir.Value{v, b.Const("w", tensor.FromFloat32(w, 8))})
	for _, op := range []string{"Abs", "Neg", "Tanh"} {
		v = b.Op(op, []*ir.Value{v})
	}
	b.Output(b.Op("Sigmoid", []*ir.Value{v}), "y")
	g := b.Graph()
	if _, err := ops.InferGraph(g); err != nil {
		t.Fatal(err)
	}
	return g
}

// TestHostArena: a partitioned program's context keeps its CPU segments'
// activations and the tensors they pass to later segments in one host
// arena, each where package arena places it by lifetime: a segment's
// arena lives while it runs, a tensor passed on from the segment that
// computes it to the last that reads it. After a run the arena is the
// most those take at once (here max(first CPU segment's arena + its
// output, second's + its output)), not the sum they took apart, and the
// CPU segments write the tensors they pass on into it; a larger batch
// moves them all again. The outputs equal the CPU engine's on every run,
// with and without max shapes, with and without device contexts.
func TestHostArena(t *testing.T) {
	for _, tt := range []struct {
		name      string
		maxShapes map[string][]int
		contexts  bool
	}{
		{"no max shapes, shared device programs", nil, false},
		{"max shapes, device contexts", map[string][]int{"x": {16, 8}}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g := twoCPUSegments(t)
			fx := &fakeExec{name: "gpu", ops: gpuOps}
			var x device.Executor = fx
			if tt.contexts {
				x = &ctxExec{fakeExec: fx}
			}
			prog, r, err := Compile(g, x, device.ExecOptions{MaxShapes: tt.maxShapes}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer prog.Close()
			if len(r.Segments) != 5 {
				t.Fatalf("%d segments, want 5 (device, CPU, device, CPU, device)", len(r.Segments))
			}
			c, err := prog.(device.Contexts).NewContext()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			pc := c.(*programContext)
			prevHost := int64(-1)
			for _, batch := range []int{2, 2, 1, 8, 16, 3} {
				in := randomInput(batch, uint64(batch))
				out, err := c.Run(context.Background(), in)
				if err != nil {
					t.Fatal(err)
				}
				sameOutputs(t, out, reference(t, g, in))
				var device int64
				var peak int
				for i, s := range pc.segs {
					cc, ok := s.(cpuContext)
					if !ok {
						device += s.ArenaBytes()
						continue
					}
					n := cc.c.ArenaBytes()
					if n == 0 || !cc.c.ArenaIn(pc.host.buf) {
						t.Fatalf("batch %d: segment %d's arena (%d bytes) outside the host arena", batch, i, n)
					}
					passed := pc.p.segs[i].outputs
					if len(passed) != 1 || pc.host.slots[passed[0]] == [2]int{} {
						t.Fatalf("batch %d: segment %d passes on %v, slots %v: want one, in the host arena", batch, i, passed, pc.host.slots)
					}
					peak = max(peak, n+alignUp(pc.host.sizes[passed[0]]))
				}
				shared, apart, ok := HostArena(c)
				if !ok || shared != int64(len(pc.host.buf)) {
					t.Fatalf("HostArena: %d, %d, %v", shared, apart, ok)
				}
				if shared != int64(peak) || shared >= apart {
					t.Errorf("batch %d: host arena %d bytes for %d apart: want the peak, %d", batch, shared, apart, peak)
				}
				if got := c.ArenaBytes(); got != shared+device {
					t.Errorf("batch %d: ArenaBytes %d, want the host arena %d + the device contexts' %d", batch, got, shared, device)
				}
				if shared != prevHost {
					t.Logf("batch %d: CPU arenas and tensors passed on %d bytes apart, %d in one host arena", batch, apart, shared)
					prevHost = shared
				}
			}
			// segment by segment: each CPU segment writes the tensor it
			// passes on in its slot
			vals := runBySegment(t, pc, randomInput(4, 9), true)
			sameOutputs(t, map[string]*tensor.Tensor{"y": vals["y"]}, reference(t, g, randomInput(4, 9)))
		})
	}
}

func alignUp(n int) int { return (n + tensor.Alignment - 1) / tensor.Alignment * tensor.Alignment }

// runBySegment runs pc's segments one by one as its Run does and returns
// every value. No output of a segment lies in the host arena outside its
// own slot; with inSlot, every tensor a segment that takes memory for its
// outputs (a CPU segment, device.OutputsInto) passes on lies in its slot.
func runBySegment(t *testing.T, pc *programContext, in map[string]*tensor.Tensor, inSlot bool) map[string]*tensor.Tensor {
	t.Helper()
	vals := map[string]*tensor.Tensor{}
	for name, v := range in {
		vals[name] = v
	}
	for i, s := range pc.p.segs {
		in := map[string]*tensor.Tensor{}
		for _, name := range s.inputs {
			in[name] = vals[name]
		}
		out, err := pc.host.runner(pc, i).Run(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		for name, v := range out {
			vals[name] = v
			lo, hi, there := within(pc.host.buf, v.Data)
			slot, planned := pc.host.slots[name]
			if there && (!planned || lo < slot[0] || hi > slot[1]) {
				t.Errorf("segment %d output %s at host bytes [%d, %d), outside its slot (%v %v)", i, name, lo, hi, slot, planned)
			}
			if _, into := pc.segs[i].(device.OutputsInto); inSlot && into && pc.p.passedOn(i, name) >= 0 && (!there || lo != slot[0]) {
				t.Errorf("segment %d passes on %s at host bytes [%d, %d) (in the arena: %v), want its slot %v", i, name, lo, hi, there, slot)
			}
		}
	}
	return vals
}

// TestHostArenaViews: a CPU segment whose output is a view of a tensor in
// the host arena (Flatten of a tensor the same segment passes on) gets a
// copy of it instead, outside the arena, so that the bytes of the tensor
// it views can be reused once that tensor is dead, and its slot is given
// back (it will never be written there); the outputs equal the CPU
// engine's.
func TestHostArenaViews(t *testing.T) {
	b := ir.NewBuilder("views", 17)
	x := b.Input("x", tensor.Float32, ir.S("batch"), ir.D(8))
	r := b.Op("Relu", []*ir.Value{x})
	th := b.Op("Tanh", []*ir.Value{r})
	m := b.Op("Mul", []*ir.Value{th, b.Const("w", tensor.FromFloat32([]float32{0.5, -1, 2, 0.25, 1, -0.5, 3, 1}, 8))})
	f := b.Op("Flatten", []*ir.Value{th}, ir.IntAttr("axis", 1))
	n := b.Op("Neg", []*ir.Value{m})
	a := b.Op("Add", []*ir.Value{f, n})
	b.Output(b.Op("Sigmoid", []*ir.Value{a}), "y")
	g := b.Graph()
	if _, err := ops.InferGraph(g); err != nil {
		t.Fatal(err)
	}
	prog, r2, err := Compile(g, &fakeExec{name: "gpu", ops: gpuOps}, device.ExecOptions{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	t.Log(r2.Summary())
	c, err := prog.(device.Contexts).NewContext()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pc := c.(*programContext)
	for _, batch := range []int{3, 3, 5} {
		in := randomInput(batch, uint64(batch))
		out, err := c.Run(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		sameOutputs(t, out, reference(t, g, in))
		vals := runBySegment(t, pc, in, false)
		sameOutputs(t, map[string]*tensor.Tensor{"y": vals["y"]}, reference(t, g, in))
	}
	// Tanh's and Neg's outputs keep their slots; Flatten's, a view, gives
	// its slot back
	if len(pc.host.slots) != 2 || len(pc.host.refused) != 1 {
		t.Errorf("slots %v, refused %v: want two slots, one refused", pc.host.slots, pc.host.refused)
	}
	for name := range pc.host.refused {
		if _, ok := pc.host.slots[name]; ok {
			t.Errorf("%s was made outside its slot, and keeps it", name)
		}
	}
}

// TestHostArenaBuffers: the lifetimes replan gives package arena, from the
// segments' inputs as package arena's liveness model reads them: a CPU
// segment's arena at its segment only, a tensor passed on from the segment
// that computes it to the last that reads it (however many read it, and
// whether or not the segments between do).
func TestHostArenaBuffers(t *testing.T) {
	seg := func(inputs ...string) *runSegment { return &runSegment{inputs: inputs} }
	ctx := &engine.Context{}
	tests := []struct {
		name  string
		segs  []*runSegment
		items []placed
		want  []arena.Buffer
	}{
		{"arenas only", []*runSegment{seg(), seg(), seg()},
			[]placed{{ctx: ctx, seg: 0, size: 100}, {ctx: ctx, seg: 2, size: 50}},
			[]arena.Buffer{{Size: 100, First: 0, Last: 0}, {Size: 50, First: 2, Last: 2}}},
		{"passed to the next", []*runSegment{seg(), seg("a")},
			[]placed{{ctx: ctx, seg: 0, size: 64}, {name: "a", seg: 0, size: 32}},
			[]arena.Buffer{{Size: 64, First: 0, Last: 0}, {Size: 32, First: 0, Last: 1}}},
		{"read by two, the last counts", []*runSegment{seg(), seg("a"), seg(), seg("b", "a")},
			[]placed{{name: "a", seg: 0, size: 8}, {name: "b", seg: 2, size: 16}, {ctx: ctx, seg: 3, size: 24}},
			[]arena.Buffer{{Size: 8, First: 0, Last: 3}, {Size: 16, First: 2, Last: 3}, {Size: 24, First: 3, Last: 3}}},
		{"an input of a name not placed", []*runSegment{seg("x"), seg("y", "a")},
			[]placed{{name: "a", seg: 0, size: 4}},
			[]arena.Buffer{{Size: 4, First: 0, Last: 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := buffers(&program{segs: tt.segs}, tt.items)
			if !slices.Equal(got, tt.want) {
				t.Errorf("buffers = %v, want %v", got, tt.want)
			}
		})
	}
}
