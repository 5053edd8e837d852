package partition

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// ctxExec is fakeExec whose programs give out contexts (device.Contexts),
// counting those made and closed.
type ctxExec struct {
	*fakeExec
	made, closed atomic.Int32
}

func (x *ctxExec) Compile(g *ir.Graph, o device.ExecOptions) (device.Program, error) {
	p, err := x.fakeExec.Compile(g, o)
	if err != nil {
		return nil, err
	}
	return &ctxProgram{fakeProgram: p.(*fakeProgram), x: x}, nil
}

type ctxProgram struct {
	*fakeProgram
	x *ctxExec
}

func (p *ctxProgram) NewContext() (device.ProgramContext, error) {
	p.x.made.Add(1)
	return &fakeContext{c: p.e.NewContext(), x: p.x}, nil
}

type fakeContext struct {
	c      *engine.Context
	x      *ctxExec
	closed bool
}

func (c *fakeContext) Run(ctx context.Context, in map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	if c.closed {
		return nil, errors.New("fake: closed context")
	}
	return c.c.Run(ctx, in)
}

func (c *fakeContext) ArenaBytes() int64 { return int64(c.c.ArenaBytes()) }

func (c *fakeContext) Close() error {
	if !c.closed {
		c.closed = true
		c.x.closed.Add(1)
	}
	return nil
}

// TestContexts: a program's contexts (device.Contexts) run each segment in
// a context of its own where the segment's program gives them out (a
// device segment's, a CPU segment's engine context), else in the program;
// their outputs are the program's; Close closes every segment's context,
// and a closed context refuses to run.
func TestContexts(t *testing.T) {
	tests := []struct {
		name     string
		mid      string
		contexts bool  // the device's programs give out contexts
		made     int32 // device contexts per program context
	}{
		{"partitioned, device contexts", "CumSum", true, 2},
		{"partitioned, shared device program", "CumSum", false, 0},
		{"one segment, device contexts", "Relu", true, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := chain(t, tt.mid)
			fx := &fakeExec{name: "gpu", ops: gpuOps}
			cx := &ctxExec{fakeExec: fx}
			var x device.Executor = fx
			if tt.contexts {
				x = cx
			}
			prog, _, err := Compile(g, x, device.ExecOptions{}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer prog.Close()
			cs, ok := prog.(device.Contexts)
			if !ok {
				t.Fatalf("program %T gives out no contexts", prog)
			}
			var ctxs []device.ProgramContext
			for range 2 {
				c, err := cs.NewContext()
				if err != nil {
					t.Fatal(err)
				}
				ctxs = append(ctxs, c)
			}
			if got := cx.made.Load(); got != 2*tt.made {
				t.Errorf("%d device contexts made for 2 program contexts, want %d", got, 2*tt.made)
			}
			for i, c := range ctxs {
				for _, batch := range []int{1, 3, 2} {
					in := randomInput(batch, uint64(10*i+batch))
					out, err := c.Run(context.Background(), in)
					if err != nil {
						t.Fatal(err)
					}
					sameOutputs(t, out, reference(t, g, in))
				}
				if tt.contexts && c.ArenaBytes() <= 0 {
					t.Errorf("context %d holds %d arena bytes after runs", i, c.ArenaBytes())
				}
			}
			for _, c := range ctxs {
				if err := c.Close(); err != nil {
					t.Fatal(err)
				}
				if err := c.Close(); err != nil {
					t.Errorf("second Close: %v", err)
				}
			}
			if got := cx.closed.Load(); got != cx.made.Load() {
				t.Errorf("%d of %d device contexts closed", got, cx.made.Load())
			}
			if _, err := ctxs[0].Run(context.Background(), randomInput(1, 1)); err == nil {
				t.Error("a closed context ran")
			} else if tt.mid == "CumSum" && !errors.Is(err, ErrClosed) {
				t.Errorf("run after Close: %v, want ErrClosed", err)
			}
			// The program itself still runs.
			in := randomInput(2, 7)
			out, err := prog.Run(context.Background(), in)
			if err != nil {
				t.Fatal(err)
			}
			sameOutputs(t, out, reference(t, g, in))
		})
	}
}
