package gpuexec

import (
	"bytes"
	"context"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/optimize"
	"github.com/kilnai/kiln/tensor"
)

// TestInt8ExpandK128Fake builds k128Graph (three 1x1s at 16x16: K = 64,
// 128, 128) as an untuned INT8 engine with the chains (the fake libraries,
// compute 9.0, their memory readable: KILN_FAKE_IPC_ALLOC), the 1x1s
// without a residual on (EnvInt8Reduce=1),
// with and without EnvInt8K128=1. The test's load hook stands in for the
// two modules as loadI8x builds them with the switch: expand_i8u2's
// function and, only when the switch is on, ExpandK128Kernel's (the fake
// driver's functions are one handle: the launches tell the kernels apart by
// their shared memory and maps). With the switch the layers whose
// K is whole 128-byte slices (the second and third) launch that function with expand_i8u2's threads and grid and
// ExpandK128SharedMem, their maps on the device exactly
// ExpandK128MapSpecs' encoding (x's and w's boxes in the 128-byte
// swizzle); the K = 64 layer keeps expand_i8u2's function, shared memory
// and maps; the engine runs eagerly and captured. Without the switch every layer
// launches expand_i8u2.
func TestInt8ExpandK128Fake(t *testing.T) {
	dir := fakeLibs(t)
	g := k128Graph(t)
	scales := map[string]float32{}
	for _, n := range g.Nodes {
		if strings.Contains(n.OpType, "Conv") {
			scales[n.Name] = 0.05
		}
		for _, v := range n.Outputs {
			scales[Int8ValueKey(v.Name)] = 0.05
		}
	}
	t.Setenv(EnvInt8All, "1")
	t.Setenv(EnvInt8Chain, "1")
	t.Setenv(EnvInt8Expand, "1")
	t.Setenv(EnvInt8Reduce, "1")
	t.Setenv("KILN_FAKE_IPC_ALLOC", "1")
	t.Cleanup(func() { i8xLoadHook = nil })
	for _, on := range []bool{true, false} {
		i8xLoadHook = func(e *Engine, st *i8xState) error {
			st.fn, st.dq, st.sms = e.int8.fns["int8"], e.int8.fns["int8"], 132
			if on {
				st.k128, st.k128On = e.int8.fns["fp8"], true
			}
			return nil
		}
		e, c := fakeEngine(t, dir, g, Options{LibDir: dir, FP16: true, Int8: scales})
		read := func(p cuda.DevicePtr, n int) []byte {
			b := make([]byte, n)
			if err := e.drv.MemcpyDtoH(b, p); err != nil {
				t.Fatal(err)
			}
			return b
		}
		k128s, u2s := 0, 0
		for i, q := range e.int8.use {
			if q == nil || q.x8 == nil || q.x8.c3 != nil {
				continue
			}
			x8, cc := q.x8, e.prog.steps[i].conv
			k128 := on && x8.k%128 == 0
			ks := stepCalls(c, i)
			if len(ks) == 0 {
				t.Fatalf("%s: no calls", q.name)
			}
			// the kernel is the layer's call with its threads (after any quantizing call)
			var k *call
			for _, kk := range ks {
				if kk.block.X == cuda.ExpandI8Threads {
					k = kk
				}
			}
			wantFn, wantSmem, specs := e.int8.fns["int8"], cuda.ExpandI8SharedMem(), cuda.ExpandI8MapSpecs
			if k128 {
				wantFn, wantSmem, specs = e.int8.fns["fp8"], cuda.ExpandK128SharedMem(), cuda.ExpandK128MapSpecs
				k128s++
			} else {
				u2s++
			}
			tiles := uint32(cuda.ExpandI8Tiles(x8.p, x8.n))
			if k == nil || k.fn != wantFn || k.shmem != uint32(wantSmem) || k.grid.X != min(tiles, uint32(cuda.ExpandI8BlocksPerSM*132)) {
				t.Errorf("switch %v, %s (K %d): launch %+v, want the %v kernel with %d bytes", on, q.name, x8.k, k, map[bool]string{true: "k128", false: "expand_i8u2"}[k128], wantSmem)
			}
			// the maps on the device: the kernel's specs at the layer's addresses
			xo, zo, yo, _ := q.i8xLayout()
			x, y := c.addr(cc.x), c.addr(cc.y)
			var z cuda.DevicePtr
			if cc.z != nil {
				z = c.addr(*cc.z)
			}
			if xo >= 0 {
				x = c.ws + cuda.DevicePtr(xo)
			}
			if zo >= 0 {
				z = c.ws + cuda.DevicePtr(zo)
			}
			if yo >= 0 {
				y = c.ws + cuda.DevicePtr(yo)
			}
			var want []byte
			for _, sp := range specs(x, q.w, z, y, x8.p, x8.k, x8.n) {
				m, err := e.drv.EncodeTensorMapTiled(sp)
				if err != nil {
					t.Fatal(err)
				}
				want = append(want, m[:]...)
			}
			if got := read(e.int8.x8.maps[c][i], len(want)); !bytes.Equal(got, want) {
				t.Errorf("switch %v, %s (K %d): the maps on the device are not the %v kernel's", on, q.name, x8.k, map[bool]string{true: "k128", false: "expand_i8u2"}[k128])
			}
		}
		if on && (k128s != 2 || u2s != 1) || !on && (k128s != 0 || u2s != 3) {
			t.Errorf("switch %v: %d layers on the k128 kernel, %d on expand_i8u2", on, k128s, u2s)
		}
		t.Logf("switch %v: %d layers on the k128 kernel, %d on expand_i8u2", on, k128s, u2s)
		in := map[string]*tensor.Tensor{"input": tensor.New(tensor.Float32, 1, 64, 16, 16)}
		for range 3 { // eagerly, captured, replayed
			if _, err := c.Run(context.Background(), in); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// k128Graph is three 1x1 convolutions with bias and ReLU at 16x16, batch 1
// (256 rows): 64 -> 128, 128 -> 128, 128 -> 256, then the global average
// pooling: expand_i8u2's shapes with K = 64 and K = 128.
func k128Graph(t *testing.T) *ir.Graph {
	t.Helper()
	r := rand.New(rand.NewPCG(9, 10))
	b := ir.NewBuilder("k128", 17)
	x := b.Input("input", tensor.Float32, ir.D(1), ir.D(64), ir.D(16), ir.D(16))
	for _, l := range []struct{ cin, cout int }{{64, 128}, {128, 128}, {128, 256}} {
		w := tensor.New(tensor.Float32, l.cout, l.cin, 1, 1)
		for i, v := 0, w.Float32s(); i < len(v); i++ {
			v[i] = float32(r.NormFloat64() * 0.1)
		}
		bias := tensor.New(tensor.Float32, l.cout)
		for i, v := 0, bias.Float32s(); i < len(v); i++ {
			v[i] = float32(r.NormFloat64() * 0.1)
		}
		x = b.Op("Relu", []*ir.Value{b.Op("Conv", []*ir.Value{x, b.Const("", w), b.Const("", bias)}, ir.IntsAttr("kernel_shape", 1, 1))})
	}
	b.Output(b.Op("GlobalAveragePool", []*ir.Value{x}), "pooled")
	g := b.Graph()
	if err := optimize.Run(g, 2, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ops.InferGraph(g); err != nil {
		t.Fatal(err)
	}
	return g
}
