package kernels

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// nanArena is an Env whose Alloc hands out NaN-filled tensors, as an arena
// with stale contents would: a kernel that does not write every element
// leaves NaNs behind.
func nanArena() *ops.Env {
	return &ops.Env{Ctx: context.Background(), Alloc: func(dt tensor.DType, shape []int) (*tensor.Tensor, error) {
		t, err := tensor.Make(dt, shape)
		if err != nil {
			return nil, err
		}
		for i := range t.Float32s() {
			t.Float32s()[i] = float32(math.NaN())
		}
		return t, nil
	}}
}

// tacticKernel prepares n (its inputs given their types, and the constant
// ones their values) with the registry and returns its kernel, an
// ops.Tactical, with the tactics it lists.
func tacticKernel(t *testing.T, n *ir.Node, in []*tensor.Tensor, consts map[int]bool) (ops.Kernel, []string) {
	t.Helper()
	vals := make([]*ir.Value, len(in))
	for i, x := range in {
		if x == nil {
			continue
		}
		vals[i] = &ir.Value{Name: n.Inputs[i].Name, Type: ops.TypeOf(x)}
		if consts[i] {
			vals[i].Const = x
		}
		n.Inputs[i] = vals[i]
	}
	k, name, err := Default().Prepare(n, 13)
	if err != nil {
		t.Fatal(err)
	}
	if want := "cpu." + n.OpType; name != want {
		t.Fatalf("%s runs %s, want %s", n.OpType, name, want)
	}
	if _, err := k.Infer(vals); err != nil {
		t.Fatal(err)
	}
	tk, ok := k.(ops.Tactical)
	if !ok {
		t.Fatalf("%s is not ops.Tactical", n.OpType)
	}
	return k, tk.Tactics(vals)
}

// refRun runs n (prepared as tacticKernel does) with the op's reference
// kernel, ops/nn's (ops.Prepare), into a NaN-filled output.
func refRun(t *testing.T, n *ir.Node, in []*tensor.Tensor, consts map[int]bool) []*tensor.Tensor {
	t.Helper()
	tacticKernel(t, n, in, consts) // the inputs' values
	k, err := ops.Prepare(n, 13)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := k.(ops.Tactical); ok {
		t.Fatalf("the reference kernel of %s is tactical", n.OpType)
	}
	if _, err := k.Infer(n.Inputs); err != nil {
		t.Fatal(err)
	}
	out, err := k.Run(nanArena(), in)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// sameResult checks got against the reference's output: equal up to
// float32 rounding of the sums, relative to their magnitude.
func sameResult(t *testing.T, name string, got, want *tensor.Tensor) {
	t.Helper()
	if tensor.ShapeString(got.Shape) != tensor.ShapeString(want.Shape) {
		t.Fatalf("%s: shape %v, want %v", name, got.Shape, want.Shape)
	}
	g, w := got.Float32s(), want.Float32s()
	for i := range w {
		if math.IsNaN(float64(g[i])) || math.Abs(float64(g[i]-w[i])) > 1e-4*(1+math.Abs(float64(w[i]))) {
			t.Fatalf("%s: y[%d] = %g, reference %g", name, i, g[i], w[i])
		}
	}
}

func TestFusedConvTactics(t *testing.T) {
	r := rand.New(rand.NewPCG(41, 42))
	blocked := func(algos ...string) []string {
		for _, b := range cpu.Blockings()[1:] {
			algos = append(algos, im2colTactic(b))
		}
		return algos
	}
	// withDirect adds the direct convolution, offered where its assembly
	// runs.
	withDirect := func(algos []string) []string {
		if !directAsm {
			if len(algos) < 2 {
				return nil
			}
			return algos
		}
		return append(algos, directTactic)
	}
	// withWino adds the direct convolution and the Winograd one that runs
	// on its kernel (3x3 stride 1, one group), offered where their
	// assembly runs.
	withWino := func(algos []string) []string {
		if !directAsm {
			return withDirect(algos)
		}
		return append(withDirect(algos), winoTactic)
	}
	// withWinoCL adds the Winograd convolution on the channels-as-lanes
	// kernel too (32 or more output channels).
	withWinoCL := func(algos []string) []string {
		if !directAsm {
			return withDirect(algos)
		}
		return append(withWino(algos), winoClTactic)
	}
	// withCL adds the channels-as-lanes direct convolution (32 or more
	// output channels) after algos.
	withCL := func(algos []string) []string {
		if !directAsm {
			return algos
		}
		return append(algos, clTactic)
	}
	// withGemmT adds the transposed-GEMM convolution (one group, no
	// dilation, 16 or more taps and 32 or more output channels) after algos.
	withGemmT := func(algos []string) []string { return append(algos, gemmTTactic) }
	// The direct depthwise kernel is the default where its assembly runs.
	dwTactics := []string{"depthwise", "im2col", "depthwise-direct"}
	if cpu.ConvAlgoFor(cpu.Conv2DParams{N: 1, C: 4, H: 7, W: 7, M: 4, KH: 3, KW: 3, Group: 4, StrideH: 2, StrideW: 2,
		DilH: 1, DilW: 1, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1}) == cpu.ConvDepthwiseDirect {
		dwTactics = []string{"depthwise-direct", "im2col", "depthwise"}
	}
	geoms := []struct {
		name  string
		x, w  []int
		attrs []*ir.Attr
		want  []string // tactics, default first
	}{
		{"3x3 pad1 ragged", []int{2, 4, 7, 5}, []int{6, 4, 3, 3}, []*ir.Attr{ir.IntsAttr("pads", 1, 1, 1, 1)},
			withWino(blocked("im2col", "implicit", "winograd2x2", "winograd4x4"))},
		{"3x3 many channels", []int{1, 32, 9, 20}, []int{16, 32, 3, 3}, []*ir.Attr{ir.IntsAttr("pads", 1, 0, 2, 1)},
			withWino(blocked("implicit", "im2col", "winograd2x2", "winograd4x4"))},
		{"3x3 groups", []int{1, 6, 8, 8}, []int{9, 2, 3, 3}, []*ir.Attr{ir.IntAttr("group", 3), ir.IntsAttr("pads", 1, 1, 1, 1)},
			blocked("im2col", "implicit", "winograd2x2", "winograd4x4")},
		{"depthwise stride2", []int{1, 4, 7, 7}, []int{4, 1, 3, 3}, []*ir.Attr{ir.IntAttr("group", 4), ir.IntsAttr("strides", 2, 2), ir.IntsAttr("pads", 1, 1, 1, 1)},
			dwTactics},
		{"depthwise same", []int{2, 6, 9, 13}, []int{6, 1, 3, 3}, []*ir.Attr{ir.IntAttr("group", 6), ir.IntsAttr("pads", 1, 1, 1, 1)},
			dwTactics},
		{"depthwise multiplier 2", []int{1, 3, 8, 8}, []int{6, 1, 3, 3}, []*ir.Attr{ir.IntAttr("group", 3), ir.IntsAttr("pads", 1, 1, 1, 1)},
			[]string{"depthwise", "im2col"}},
		{"5x5 same", []int{1, 3, 9, 6}, []int{5, 3, 5, 5}, []*ir.Attr{ir.StringAttr("auto_pad", "SAME_UPPER")},
			withDirect(blocked("im2col", "implicit"))},
		{"3x3 stride 2", []int{1, 3, 9, 9}, []int{4, 3, 3, 3}, []*ir.Attr{ir.IntsAttr("strides", 2, 2)}, withDirect(blocked("im2col"))},
		{"3x3 no pads", []int{1, 6, 7, 9}, []int{10, 6, 3, 3}, nil, withWino(blocked("im2col", "implicit", "winograd2x2", "winograd4x4"))},
		{"3x3 stride 2 pad 1, 20 channels", []int{2, 5, 12, 11}, []int{20, 5, 3, 3}, []*ir.Attr{ir.IntsAttr("strides", 2, 2), ir.IntsAttr("pads", 1, 1, 1, 1)}, withDirect(blocked("im2col"))},
		{"3x3 stride 2 pad 1, 40 channels", []int{1, 5, 12, 11}, []int{40, 5, 3, 3}, []*ir.Attr{ir.IntsAttr("strides", 2, 2), ir.IntsAttr("pads", 1, 1, 1, 1)}, withGemmT(withCL(withDirect(blocked("im2col"))))},
		{"3x3 pad 1, 33 channels", []int{1, 4, 6, 7}, []int{33, 4, 3, 3}, []*ir.Attr{ir.IntsAttr("pads", 1, 1, 1, 1)}, withGemmT(withCL(withWinoCL(blocked("im2col", "implicit", "winograd2x2", "winograd4x4"))))},
		{"1x1", []int{1, 8, 4, 4}, []int{4, 8, 1, 1}, nil, withDirect(blocked("im2col"))},
		{"1x1 32 channels", []int{2, 16, 5, 6}, []int{32, 16, 1, 1}, nil, withGemmT(withCL(withDirect(blocked("im2col"))))},
		{"1x1 stride 2, 40 channels", []int{1, 20, 9, 7}, []int{40, 20, 1, 1}, []*ir.Attr{ir.IntsAttr("strides", 2, 2)}, withGemmT(withCL(withDirect(blocked("im2col"))))},
		{"1x1 one output channel", []int{1, 8, 4, 4}, []int{1, 8, 1, 1}, nil, withDirect([]string{"im2col"})},
		{"1-D", []int{2, 3, 9}, []int{5, 3, 3}, nil, nil},
	}
	for _, g := range geoms {
		for _, a := range fusedActs {
			for _, residual := range []bool{false, true} {
				x := randTensor(r, tensor.Float32, g.x...)
				w := randTensor(r, tensor.Float32, g.w...)
				b := randTensor(r, tensor.Float32, g.w[0])
				in := []*tensor.Tensor{x, w, b}
				n := fusedNode("FusedConv", 3, a.act, a.params, g.attrs...)
				def, tactics := tacticKernel(t, n, in, map[int]bool{1: true, 2: true})
				if !slices.Equal(tactics, g.want) {
					t.Fatalf("%s: tactics %v, want %v", g.name, tactics, g.want)
				}
				want := refRun(t, n, in, map[int]bool{1: true, 2: true})
				if residual {
					z := randTensor(r, tensor.Float32, want[0].Shape...)
					in = append(in, z)
					n = fusedNode("FusedConv", 4, a.act, a.params, g.attrs...)
					def, _ = tacticKernel(t, n, in, map[int]bool{1: true, 2: true})
					want = refRun(t, n, in, map[int]bool{1: true, 2: true})
				}
				// no tactic set: the kernel's own choice
				got, err := def.Run(nanArena(), in)
				if err != nil {
					t.Fatalf("%s %s default: %v", g.name, a.act, err)
				}
				sameResult(t, g.name+" "+a.act+" default", got[0], want[0])
				for _, tac := range tactics {
					k, _ := tacticKernel(t, n, in, map[int]bool{1: true, 2: true})
					if err := k.(ops.Tactical).SetTactic(tac); err != nil {
						t.Fatal(err)
					}
					for run := 0; run < 2; run++ { // the second reuses the cached Winograd filter
						got, err := k.Run(nanArena(), in)
						if err != nil {
							t.Fatalf("%s %s %s: %v", g.name, a.act, tac, err)
						}
						sameResult(t, g.name+" "+a.act+" "+tac, got[0], want[0])
					}
					// Weights that are not the node's constant: transformed on each run.
					w2 := w.Clone()
					got, err := k.Run(nanArena(), []*tensor.Tensor{x, w2, b, input(in, 3)}[:len(in)])
					if err != nil {
						t.Fatal(err)
					}
					sameResult(t, g.name+" "+tac+" fresh weights", got[0], want[0])
				}
			}
		}
	}
}

// float32Kernel prepares n, its inputs float32 of unknown shapes, with the
// registry, and checks that the registry's kernel of the op runs it.
func float32Kernel(t *testing.T, n *ir.Node) ops.Kernel {
	t.Helper()
	for _, v := range n.Inputs {
		if v != nil {
			v.Type.DType = tensor.Float32
		}
	}
	k, name, err := Default().Prepare(n, 13)
	if err != nil {
		t.Fatal(err)
	}
	if want := "cpu." + n.OpType; name != want {
		t.Fatalf("%s runs %s, want %s", n.OpType, name, want)
	}
	return k
}

func TestSetTacticErrors(t *testing.T) {
	for _, tc := range []struct {
		op, tactic string
	}{
		{"FusedConv", "gemm"}, {"FusedConv", ""}, {"FusedConv", "winograd8x8"}, {"FusedConv", "im2col-"},
		{"FusedConv", "implicit-mc1-kc1-nc1"}, {"FusedConv", "im2col-mc0-kc1-nc1"},
	} {
		k := float32Kernel(t, fusedNode(tc.op, 2, actNone, nil))
		if err := k.(ops.Tactical).SetTactic(tc.tactic); !errors.Is(err, ops.ErrBadAttr) {
			t.Errorf("%s SetTactic(%q): err = %v, want ErrBadAttr", tc.op, tc.tactic, err)
		}
	}
	// Unknown shapes: no choice to make.
	k := float32Kernel(t, fusedNode("FusedConv", 2, actNone, nil))
	sym := &ir.Value{Type: ir.Type{DType: tensor.Float32, Shape: ir.Shape{ir.S("batch"), ir.D(8), ir.D(10), ir.D(10)}}}
	w := &ir.Value{Type: ir.Type{DType: tensor.Float32, Shape: ir.KnownShape(8, 8, 3, 3)}}
	if got := k.(ops.Tactical).Tactics([]*ir.Value{sym, w}); got != nil {
		t.Errorf("Tactics of a symbolic shape = %v, want nil", got)
	}
}

// TestFusedConvTacticConcurrent runs one Winograd kernel from several
// goroutines at once (execution contexts share kernels): the filter it
// caches on first use must be made once and read safely.
func TestFusedConvTacticConcurrent(t *testing.T) {
	r := rand.New(rand.NewPCG(45, 46))
	x := randTensor(r, tensor.Float32, 1, 8, 12, 12)
	w := randTensor(r, tensor.Float32, 8, 8, 3, 3)
	in := []*tensor.Tensor{x, w}
	pads := ir.IntsAttr("pads", 1, 1, 1, 1)
	want := refRun(t, fusedNode("FusedConv", 2, actRelu, nil, pads), in, map[int]bool{1: true})
	k, _ := tacticKernel(t, fusedNode("FusedConv", 2, actRelu, nil, pads), in, map[int]bool{1: true})
	if err := k.(ops.Tactical).SetTactic(string(cpu.ConvWinograd4)); err != nil {
		t.Fatal(err)
	}
	type result struct {
		y   *tensor.Tensor
		err error
	}
	results := make(chan result, 8)
	for range 8 {
		go func() {
			got, err := k.Run(nanArena(), in)
			if err != nil {
				results <- result{err: err}
				return
			}
			results <- result{y: got[0]}
		}()
	}
	for range 8 {
		r := <-results
		if r.err != nil {
			t.Fatal(r.err)
		}
		sameResult(t, "concurrent winograd4x4", r.y, want[0])
	}
}
