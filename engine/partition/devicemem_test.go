package partition

import (
	"context"
	"testing"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/engine/arena"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// memExec is ctxExec whose contexts take memory for their outputs
// (device.OutputsInto: the engine's SetOutputs) and share a device arena
// (device.SharedArena, modelled: context k made needs 1000*(k+1) bytes).
type memExec struct{ *ctxExec }

func (x memExec) Compile(g *ir.Graph, o device.ExecOptions) (device.Program, error) {
	p, err := x.ctxExec.Compile(g, o)
	if err != nil {
		return nil, err
	}
	return memProgram{p.(*ctxProgram)}, nil
}

type memProgram struct{ *ctxProgram }

func (p memProgram) NewContext() (device.ProgramContext, error) {
	c, err := p.ctxProgram.NewContext()
	if err != nil {
		return nil, err
	}
	return &memContext{fakeContext: c.(*fakeContext), need: 1000 * int64(p.x.made.Load())}, nil
}

type memContext struct {
	*fakeContext
	need   int64
	kind   string      // contexts of another kind refuse to share
	group  *memContext // the context whose arena c shares (itself when others share it)
	shares int         // contexts that took this one's arena (when group == c)
	got    map[string][]byte
}

func (c *memContext) SetOutputs(bufs map[string][]byte) { c.got = bufs; c.c.SetOutputs(bufs) }

func (c *memContext) ShareArena(with device.ProgramContext) bool {
	w, ok := with.(*memContext)
	if !ok || w.kind != c.kind || c.group != nil {
		return false
	}
	if w.group == nil {
		w.group = w
	}
	c.group = w.group
	w.group.shares++
	return true
}

func (c *memContext) ArenaAlone() int64 { return c.need }

// ArenaBytes: the largest need of the contexts sharing the arena, in the
// one that holds it.
func (c *memContext) ArenaBytes() int64 {
	switch c.group {
	case nil:
		return c.need
	case c:
		return c.need + 1000*int64(c.shares) // the last to join needs the most here
	}
	return 0
}

// TestDeviceSegmentsMemory: a partitioned program's device segments whose
// contexts take memory for their outputs write the tensors they pass on
// into slots of the context's host arena, placed with the CPU segments'
// arenas and tensors (the arena at the peak of live bytes, every tensor
// passed on in its slot, batch after batch), and their contexts share one
// device arena (DeviceArena: the largest need, for the sum apart). The
// outputs equal the CPU engine's.
func TestDeviceSegmentsMemory(t *testing.T) {
	g := twoCPUSegments(t)
	x := memExec{&ctxExec{fakeExec: &fakeExec{name: "gpu", ops: gpuOps}}}
	prog, r, err := Compile(g, x, device.ExecOptions{MaxShapes: map[string][]int{"x": {16, 8}}}, Options{})
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
	for _, batch := range []int{2, 2, 1, 8, 16, 3} {
		in := randomInput(batch, uint64(batch))
		out, err := c.Run(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		sameOutputs(t, out, reference(t, g, in))
		// the peak of live bytes: segment i's engine arena at i, each
		// tensor passed on from its segment to the last reader
		var bufs []arena.Buffer
		var slots int64
		for i, s := range pc.segs {
			if cc, ok := s.(cpuContext); ok {
				bufs = append(bufs, arena.Buffer{Size: int64(cc.c.ArenaBytes()), First: i, Last: i})
			}
			for _, name := range pc.p.segs[i].outputs {
				last := pc.p.passedOn(i, name)
				if last < 0 {
					continue
				}
				if _, ok := pc.host.slots[name]; !ok {
					t.Fatalf("batch %d: segment %d (%s) passes on %s, which has no slot (%v)", batch, i, pc.p.segs[i].device, name, pc.host.slots)
				}
				n := int64(alignUp(pc.host.sizes[name]))
				slots += n
				bufs = append(bufs, arena.Buffer{Size: n, First: i, Last: last})
			}
		}
		if len(pc.host.slots) != 4 {
			t.Errorf("batch %d: slots %v, want 4 (each segment but the last passes one tensor on)", batch, pc.host.slots)
		}
		shared, apart, _ := HostArena(c)
		if peak := arena.PeakLive(bufs, tensor.Alignment); shared != peak || shared >= apart {
			t.Errorf("batch %d: host arena %d bytes for %d apart, want the peak %d", batch, shared, apart, peak)
		}
		vals := runBySegment(t, pc, in, true)
		sameOutputs(t, map[string]*tensor.Tensor{"y": vals["y"]}, reference(t, g, in))
	}
	dshared, dapart, ok := DeviceArena(c)
	if !ok || dshared != 3000 || dapart != 6000 {
		t.Errorf("DeviceArena: %d shared for %d apart (%v), want 3000 for 6000", dshared, dapart, ok)
	}
	if got, host := c.ArenaBytes(), int64(len(pc.host.buf)); got != host+dshared {
		t.Errorf("ArenaBytes %d, want the host arena %d + the shared device arena %d", got, host, dshared)
	}
}

// TestShareArenas: each device context that can share its arena shares
// the first earlier one's that accepts; CPU contexts and those that
// cannot share are left as they are.
func TestShareArenas(t *testing.T) {
	a, b, d := &memContext{kind: "a"}, &memContext{kind: "b"}, &memContext{kind: "a"}
	e := &memContext{kind: "b"}
	cpu := cpuContext{}
	plain := &fakeContext{}
	shareArenas([]device.ProgramContext{a, cpu, b, plain, d, e})
	for _, tt := range []struct {
		name  string
		c     *memContext
		group *memContext
	}{
		{"first of its kind", a, a},
		{"another kind: holds its own", b, b},
		{"shares the first of its kind", d, a},
		{"shares the first of its kind, not the first", e, b},
	} {
		if tt.c.group != tt.group {
			t.Errorf("%s: shares %p's arena, want %p's", tt.name, tt.c.group, tt.group)
		}
	}
	if a.shares != 1 || b.shares != 1 {
		t.Errorf("shares: %d, %d, want 1, 1", a.shares, b.shares)
	}
	single := &memContext{kind: "a"}
	shareArenas([]device.ProgramContext{single, cpu})
	if single.group != nil {
		t.Errorf("a context alone shares an arena")
	}
}
