package gpuexec

import (
	"context"
	"fmt"
	"testing"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// convNet is image[b,3,8,8] -> Conv(8, 3x3, pad 1) -> Relu -> Conv(4,
// 1x1) -> "y" at the batch of shapes["image"]: a larger batch, a larger
// arena.
func convNet(shapes map[string][]int) (*ir.Graph, func(), error) {
	batch := 1
	if s, ok := shapes["image"]; ok {
		batch = s[0]
	}
	w := func(shape ...int) *tensor.Tensor {
		x := tensor.New(tensor.Float32, shape...)
		for i := range x.Float32s() {
			x.Float32s()[i] = float32(i%9)/9 - 0.45
		}
		return x
	}
	b := ir.NewBuilder("conv_net", 17)
	h := b.Input("image", tensor.Float32, ir.D(int64(batch)), ir.D(3), ir.D(8), ir.D(8))
	h = b.Op("Conv", []*ir.Value{h, b.Const("w0", w(8, 3, 3, 3))}, ir.IntsAttr("kernel_shape", 3, 3), ir.IntsAttr("pads", 1, 1, 1, 1))
	h = b.Op("Relu", []*ir.Value{h})
	h = b.Op("Conv", []*ir.Value{h, b.Const("w1", w(4, 8, 1, 1))}, ir.IntsAttr("kernel_shape", 1, 1))
	b.Output(h, "y")
	g := b.Graph()
	if _, err := ops.InferGraph(g); err != nil {
		return nil, nil, err
	}
	return g, nil, nil
}

func convInput(batch, seed int) map[string]*tensor.Tensor {
	x := tensor.New(tensor.Float32, batch, 3, 8, 8)
	for i := range x.Float32s() {
		x.Float32s()[i] = float32((i*7+seed)%13)/13 - 0.5
	}
	return map[string]*tensor.Tensor{"image": x}
}

// contextOf returns sc's Context for the engine of batch (nil if none).
func contextOf(sc *ShapesContext, batch int) *Context {
	for se, c := range sc.ctxs {
		if se.e.prog.inputs[0].shape[0] == batch {
			return c
		}
	}
	return nil
}

// sharingRun is one step of TestShareArena*: context a or b runs a batch.
type sharingRun struct {
	ctx   string // "a" or "b"
	batch int
	// grows: the shared allocation is made again (larger) by this run;
	// rebinds: a's Context of batch 1 has bound its calls again this
	// many times after it
	grows   bool
	rebinds int
}

// sharingRuns: a runs batch small (the allocation made), b batch large
// (made again, larger: a's Context binds again at its next run), a batch
// small (it does), b batch large and a batch large (a Context of a's of a
// second shape, which fits), a batch small (nothing to bind again).
func sharingRuns(small, large int) []sharingRun {
	return []sharingRun{
		{"a", small, true, 0},
		{"b", large, true, 0},
		{"a", small, false, 1},
		{"b", large, false, 1},
		{"a", large, false, 1},
		{"a", small, false, 1},
	}
}

// shareAB makes two ShapesContexts of s, b sharing a's arena.
func shareAB(t *testing.T, s *Shapes) (a, b *ShapesContext) {
	t.Helper()
	a, b = s.NewContext(), s.NewContext()
	if !b.ShareArena(a) {
		t.Fatal("b.ShareArena(a) refused")
	}
	if b.ShareArena(a) {
		t.Error("a second ShareArena accepted")
	}
	return a, b
}

// TestShareArenaFake: ShapesContexts that share an arena (as the device
// segments of one partitioned context do) take their Contexts' device
// memory from one allocation, the largest any needs, made again when one
// needs more, after which the Contexts bound to the old one bind again
// at their next run; ArenaBytes counts it in a, ArenaAlone what each
// would hold alone; Close frees it after the last Context; a context
// that has run, another kind of context or itself is refused. Against
// the fake libraries (no values: TestShareArenaOnGPU checks them).
func TestShareArenaFake(t *testing.T) {
	dir := fakeLibs(t)
	s := NewShapes(convNet, Options{LibDir: dir}, 0)
	defer s.Close()
	a, b := shareAB(t, s)
	shared := a.shared
	gen := 0
	for i, r := range sharingRuns(1, 4) {
		sc := map[string]*ShapesContext{"a": a, "b": b}[r.ctx]
		out, err := sc.Run(context.Background(), convInput(r.batch, i))
		if err != nil {
			t.Fatal(err)
		}
		if y := out["y"]; y == nil || y.Shape[0] != r.batch {
			t.Fatalf("run %d: y %v", i, y)
		}
		_, g := shared.current()
		if grew := g != gen; grew != r.grows {
			t.Errorf("run %d (%s, batch %d): allocation made again %v, want %v", i, r.ctx, r.batch, grew, r.grows)
		}
		gen = g
		if c := contextOf(a, 1); c.rebinds != r.rebinds {
			t.Errorf("run %d: a's batch-1 Context bound again %d times, want %d", i, c.rebinds, r.rebinds)
		}
	}
	var need, alone [2]int64
	for i, sc := range []*ShapesContext{a, b} {
		for se, c := range sc.ctxs {
			if c.shared != shared || c.gen != gen {
				t.Errorf("a Context outside the shared arena, or bound to an old one (gen %d of %d)", c.gen, gen)
			}
			need[i] = max(need[i], se.e.sharedNeed())
			alone[i] += se.e.prog.arena + int64(se.e.ws)
		}
	}
	if most := max(need[0], need[1]); a.ArenaBytes() != most || shared.bytes() != most || b.ArenaBytes() != 0 {
		t.Errorf("ArenaBytes a %d, b %d, allocation %d: want a the largest need %d, b 0", a.ArenaBytes(), b.ArenaBytes(), shared.bytes(), most)
	}
	if a.ArenaAlone() != alone[0] || b.ArenaAlone() != alone[1] || alone[0]+alone[1] <= a.ArenaBytes() {
		t.Errorf("ArenaAlone a %d, b %d, want %d, %d (more than the %d shared)", a.ArenaAlone(), b.ArenaAlone(), alone[0], alone[1], a.ArenaBytes())
	}
	t.Logf("two contexts, three Contexts: %d device bytes apart, %d shared", alone[0]+alone[1], a.ArenaBytes())

	c := s.NewContext()
	defer c.Close()
	if _, err := c.Run(context.Background(), convInput(1, 0)); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		sc   *ShapesContext
		with device.ProgramContext
	}{
		{"with a context that has run", s.NewContext(), a},
		{"a context that has run", c, s.NewContext()},
		{"with itself", b, b},
		{"with another kind of context", s.NewContext(), fakeProgramContext{}},
	} {
		if tt.sc.ShareArena(tt.with) {
			t.Errorf("%s: accepted", tt.name)
		}
	}

	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if shared.users != 1 || shared.bytes() == 0 {
		t.Errorf("a closed, b open: %d users, %d bytes; want 1 and the allocation", shared.users, shared.bytes())
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if shared.users != 0 || shared.ptr != 0 || shared.bytes() != 0 {
		t.Errorf("both closed: %d users, %d bytes at %#x; want none", shared.users, shared.bytes(), shared.ptr)
	}
}

type fakeProgramContext struct{ device.ProgramContext }

// TestShareArenaOnGPU is TestShareArenaFake's runs on a GPU: every
// output matches the CPU engine's (float32 tolerances), the runs after
// the shared allocation was made again included (a's Context bound
// again and its CUDA graph captured again).
func TestShareArenaOnGPU(t *testing.T) {
	needGPU(t)
	s := NewShapes(convNet, Options{}, 0)
	defer s.Close()
	// the batch whose engine needs less first (cuDNN's workspaces could
	// make batch 1 need more than batch 4)
	need := map[int]int64{}
	for _, batch := range []int{1, 4} {
		se, err := s.engine(convInput(batch, 0))
		if err != nil {
			t.Fatal(err)
		}
		need[batch] = se.e.sharedNeed()
		s.release(se)
	}
	small, large := 1, 4
	if need[1] > need[4] {
		small, large = 4, 1
	}
	t.Logf("shared arena needs: batch 1 %d bytes, batch 4 %d", need[1], need[4])
	a, b := shareAB(t, s)
	defer a.Close()
	defer b.Close()
	refs := map[int]*engine.Engine{}
	runs := sharingRuns(small, large)
	for i, r := range append(append([]sharingRun(nil), runs...), runs...) {
		sc := map[string]*ShapesContext{"a": a, "b": b}[r.ctx]
		in := convInput(r.batch, i)
		got, err := sc.Run(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		if refs[r.batch] == nil {
			g, _, err := convNet(map[string][]int{"image": {r.batch, 3, 8, 8}})
			if err != nil {
				t.Fatal(err)
			}
			if refs[r.batch], err = engine.New(g); err != nil {
				t.Fatal(err)
			}
		}
		want, err := refs[r.batch].Run(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		compareFloat32(t, fmt.Sprintf("run %d (%s, batch %d): y", i, r.ctx, r.batch), got["y"], want["y"], rtol, atol)
	}
	c := contextOf(a, small)
	t.Logf("shared arena %d bytes (%d apart); a's batch-%d Context bound again %d times, graphed %v", a.ArenaBytes(), a.ArenaAlone()+b.ArenaAlone(), small, c.rebinds, c.Graphed())
	if need[small] < need[large] && c.rebinds != 1 {
		t.Errorf("a's batch-%d Context bound again %d times, want once (after b's batch %d made the allocation again)", small, c.rebinds, large)
	}
	if !c.Graphed() {
		t.Errorf("a's batch-%d Context replays no CUDA graph after binding again", small)
	}
}
