package kernels

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// mmActs are the fused activations with the parameters the tests give.
var mmActs = []struct {
	act    string
	params []float32
}{
	{"", nil}, {"Relu", nil}, {"Clip", []float32{0, 6}}, {"Sigmoid", nil}, {"SiLU", nil},
	{"HardSwish", nil}, {"LeakyRelu", []float32{0.1}}, {"HardSigmoid", []float32{0.2, 0.5}},
	{"Gelu", nil}, {"GeluTanh", nil},
}

// mmNode is a node of op (domain "kiln" for FusedMatMul) whose inputs are
// typed as in, those in consts holding their tensor as a graph constant.
func mmNode(op string, in []*tensor.Tensor, consts map[int]bool, act string, params []float32) *ir.Node {
	n := &ir.Node{Name: "mm", OpType: op, Attrs: map[string]*ir.Attr{}, Outputs: []*ir.Value{{Name: "y"}}}
	if op == "FusedMatMul" {
		n.Domain = "kiln"
		n.Attrs["activation"] = ir.StringAttr("activation", act)
		if params != nil {
			n.Attrs["activation_params"] = &ir.Attr{Name: "activation_params", Type: ir.AttrFloats, Floats: params}
		}
	}
	for i, x := range in {
		v := &ir.Value{Name: fmt.Sprintf("in%d", i), Type: ops.TypeOf(x)}
		if consts[i] {
			v.Const = x
		}
		n.Inputs = append(n.Inputs, v)
	}
	return n
}

func mmInputs(n *ir.Node) []*ir.Value { return n.Inputs }

// mmRand is a tensor of normal values.
func mmRand(r *rand.Rand, shape ...int) *tensor.Tensor { return attnRand(r, shape...) }

// mmClose checks got against the reference's want: equal up to float32
// rounding of the sums (another blocking sums K in another order),
// relative to their magnitude, every element written.
func mmClose(t *testing.T, name string, got, want *tensor.Tensor, tol float64) {
	t.Helper()
	if !slices.Equal(got.Shape, want.Shape) {
		t.Fatalf("%s: shape %v, reference %v", name, got.Shape, want.Shape)
	}
	g, w := got.Float32s(), want.Float32s()
	for i := range w {
		if d := math.Abs(float64(g[i]) - float64(w[i])); !(d <= tol*(1+math.Abs(float64(w[i])))) {
			t.Fatalf("%s: y[%d] = %g, reference %g", name, i, g[i], w[i])
		}
	}
}

// mmAllTactics is every FusedMatMul tactic.
func mmAllTactics() []string {
	all := []string{gemmTactic}
	for _, b := range cpu.Blockings()[1:] {
		all = append(all, blockingTactic(b))
	}
	return all
}

// TestFusedMatMulRegistry: the registry's kiln::FusedMatMul (the epilogue
// inside the GEMM's blocks, constant weights packed once, a tactic per
// blocking) is chosen for float32 nodes, offers its tactics where the
// product takes the packed GEMM path, and matches the op's reference
// kernel (ops/nn: the product, then the bias and the activation) with
// every tactic, every activation, with and without bias, B a runtime input
// or a constant (the second run reads the packed copy), into outputs full
// of garbage: one row (GEMV), small products, products split by rows or
// columns over the cores, folded, strided and broadcast batches, blocks
// crossing the default blocking, empty products and a vector.
func TestFusedMatMulRegistry(t *testing.T) {
	r := rand.New(rand.NewPCG(43, 44))
	all := mmAllTactics()
	for _, s := range []struct {
		a, b []int
		want []string
	}{
		{[]int{3, 5}, []int{5, 4}, all},
		{[]int{17, 20}, []int{20, 33}, all},
		{[]int{2, 37, 300}, []int{300, 41}, all},       // folded batch
		{[]int{2, 3, 17, 33}, []int{2, 3, 33, 9}, all}, // strided batch
		{[]int{2, 1, 17, 33}, []int{3, 33, 9}, all},    // broadcast batch
		{[]int{2, 150, 64}, []int{64, 96}, all},
		{[]int{128, 128}, []int{128, 512}, all},
		{[]int{700, 800}, []int{800, 130}, all}, // crosses the default blocks
		{[]int{1, 64}, []int{64, 32}, nil},      // GEMV
		{[]int{5, 3}, []int{3, 1}, nil},         // one column
		{[]int{5, 0}, []int{0, 7}, nil},         // empty K
		{[]int{0, 5}, []int{5, 3}, nil},         // no rows
		{[]int{2, 5}, []int{5, 0}, nil},         // no columns
		{[]int{64}, []int{64, 32}, nil},         // vector
	} {
		acts := mmActs
		if tensor.NumElements(s.a)*s.b[len(s.b)-1] > 1<<16 {
			acts = slices.Clip(mmActs[:1]) // the big products: no activation and Gelu
			acts = append(acts, mmActs[8])
		}
		for _, a := range acts {
			for _, bias := range []bool{false, true} {
				for _, constB := range []bool{false, true} {
					name := fmt.Sprintf("%v x %v %q bias %v const %v", s.a, s.b, a.act, bias, constB)
					x, w := mmRand(r, s.a...), mmRand(r, s.b...)
					in := []*tensor.Tensor{x, w}
					if bias {
						in = append(in, mmRand(r, s.b[len(s.b)-1]))
					}
					n := mmNode("FusedMatMul", in, map[int]bool{1: constB}, a.act, a.params)
					ref, err := ops.Prepare(n, 17)
					if err != nil {
						t.Fatal(err)
					}
					want, err := ref.Run(garbageEnv(), in)
					if err != nil {
						t.Fatalf("%s reference: %v", name, err)
					}
					for _, tac := range all { // the tactics not offered must compute it too
						k, impl, err := Prepare(n, 17)
						if err != nil || impl != "cpu.FusedMatMul" {
							t.Fatalf("%s: Prepare = %q, %v", name, impl, err)
						}
						if _, err := k.Infer(mmInputs(n)); err != nil {
							t.Fatal(err)
						}
						tk, ok := k.(ops.Tactical)
						if !ok {
							t.Fatalf("%s: %T is not ops.Tactical", name, k)
						}
						if got := tk.Tactics(mmInputs(n)); !slices.Equal(got, s.want) {
							t.Fatalf("%s: tactics %v, want %v", name, got, s.want)
						}
						if err := tk.SetTactic(tac); err != nil {
							t.Fatal(err)
						}
						for run := range 2 {
							got, err := k.Run(garbageEnv(), in)
							if err != nil {
								t.Fatalf("%s %s: %v", name, tac, err)
							}
							mmClose(t, fmt.Sprintf("%s %s run %d", name, tac, run), got[0], want[0], 1e-4)
						}
					}
				}
			}
		}
	}
}

// TestFusedMatMulRegistryFloat16: a float16 FusedMatMul (constant float16
// weights) is prepared as before the move: the float16 adapter around the
// registry kernel, still ops.Tactical (the tactic stage times it), equal to
// the adapter around the reference.
func TestFusedMatMulRegistryFloat16(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	half := func(x *tensor.Tensor) *tensor.Tensor {
		h := tensor.New(tensor.Float16, x.Shape...)
		for i, v := range x.Float32s() {
			h.SetFloat(i, float64(v))
		}
		return h
	}
	x, w, b := half(mmRand(r, 40, 64)), half(mmRand(r, 64, 48)), half(mmRand(r, 48))
	in := []*tensor.Tensor{x, w, b}
	n := mmNode("FusedMatMul", in, map[int]bool{1: true}, "Gelu", nil)
	k, impl, err := Prepare(n, 17)
	if err != nil || impl != "cpu.FusedMatMul" {
		t.Fatalf("Prepare = %q, %v", impl, err)
	}
	if _, err := k.Infer(mmInputs(n)); err != nil {
		t.Fatal(err)
	}
	tk, ok := k.(ops.Tactical)
	if !ok {
		t.Fatalf("%T is not ops.Tactical", k)
	}
	if got := tk.Tactics(mmInputs(n)); !slices.Equal(got, mmAllTactics()) {
		t.Fatalf("tactics %v, want %v", got, mmAllTactics())
	}
	ref, err := ops.Prepare(n, 17)
	if err != nil {
		t.Fatal(err)
	}
	want, err := ref.Run(nil, in)
	if err != nil {
		t.Fatal(err)
	}
	for _, tac := range mmAllTactics() {
		if err := tk.SetTactic(tac); err != nil {
			t.Fatal(err)
		}
		got, err := k.Run(garbageEnv(), in)
		if err != nil {
			t.Fatal(err)
		}
		if got[0].DType != tensor.Float16 {
			t.Fatalf("output %v, want float16", got[0].DType)
		}
		for i := range got[0].Len() {
			g, wv := got[0].Float(i), want[0].Float(i)
			// one float16 rounding apart at most
			if d := math.Abs(g - wv); d > 1e-3*(1+math.Abs(wv)) {
				t.Fatalf("%s: y[%d] = %v, reference %v", tac, i, g, wv)
			}
		}
	}
}

// TestFusedMatMulSetTacticErrors: names that are not tactics are refused
// with ops.ErrBadAttr; a symbolic shape offers none.
func TestFusedMatMulSetTacticErrors(t *testing.T) {
	x, w := tensor.New(tensor.Float32, 4, 8), tensor.New(tensor.Float32, 8, 6)
	n := mmNode("FusedMatMul", []*tensor.Tensor{x, w}, nil, "", nil)
	k, _, err := Prepare(n, 17)
	if err != nil {
		t.Fatal(err)
	}
	tk := k.(ops.Tactical)
	for _, tac := range []string{"", "im2col", "gemm-", "gemm-mc0-kc1-nc1", "gemm-mc1-kc1", "gemmx"} {
		if err := tk.SetTactic(tac); !errors.Is(err, ops.ErrBadAttr) {
			t.Errorf("SetTactic(%q): err = %v, want ErrBadAttr", tac, err)
		}
	}
	sym := []*ir.Value{
		{Type: ir.Type{DType: tensor.Float32, Shape: ir.Shape{ir.S("batch"), ir.D(8)}}},
		{Type: ir.Type{DType: tensor.Float32, Shape: ir.KnownShape(8, 6)}},
	}
	if got := tk.Tactics(sym); got != nil {
		t.Errorf("Tactics of a symbolic shape = %v, want nil", got)
	}
}

// TestFusedMatMulPackedConcurrent runs one FusedMatMul kernel with
// constant weights from several goroutines at once, as the contexts of one
// engine do: the weights are packed once, by whichever run comes first,
// and every run gets the reference's output (run it with -race).
func TestFusedMatMulPackedConcurrent(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	in := []*tensor.Tensor{mmRand(r, 64, 96), mmRand(r, 96, 80), mmRand(r, 80)}
	n := mmNode("FusedMatMul", in, map[int]bool{1: true}, "Gelu", nil)
	ref, err := ops.Prepare(n, 17)
	if err != nil {
		t.Fatal(err)
	}
	want, err := ref.Run(nil, in)
	if err != nil {
		t.Fatal(err)
	}
	k, _, err := Prepare(n, 17)
	if err != nil {
		t.Fatal(err)
	}
	const runs = 6
	outs := make([]*tensor.Tensor, runs)
	errs := make([]error, runs)
	var wg sync.WaitGroup
	for i := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o, err := k.Run(nil, in)
			if err == nil {
				outs[i] = o[0]
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i := range runs {
		if errs[i] != nil {
			t.Fatalf("run %d: %v", i, errs[i])
		}
		mmClose(t, fmt.Sprintf("run %d", i), outs[i], want[0], 1e-5)
	}
}

// TestMatMulRegistry: the registry's MatMul takes a node whose B is a
// float32 (or float16) constant matrix and matches the reference on the
// same values (B packed once, read packed from the second run on), on
// shapes with a batch folded into rows, a single row, and a B that
// broadcasts over a batch (the reference's path); a runtime B, a vector B
// and an integer B are refused, saying why.
func TestMatMulRegistry(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 8))
	for _, s := range []struct{ a, b []int }{
		{[]int{128, 128}, []int{128, 512}},
		{[]int{2, 64, 96}, []int{96, 80}},
		{[]int{1, 70}, []int{70, 33}},
		{[]int{3, 4, 6}, []int{3, 6, 5}},
		{[]int{6}, []int{6, 5}},
	} {
		name := fmt.Sprintf("%v x %v", s.a, s.b)
		in := []*tensor.Tensor{mmRand(r, s.a...), mmRand(r, s.b...)}
		n := mmNode("MatMul", in, map[int]bool{1: true}, "", nil)
		ref, err := ops.Prepare(mmNode("MatMul", in, nil, "", nil), 13)
		if err != nil {
			t.Fatal(err)
		}
		want, err := ref.Run(nil, in)
		if err != nil {
			t.Fatal(err)
		}
		k, impl, err := Prepare(n, 13)
		if err != nil || impl != "cpu.MatMul" {
			t.Fatalf("%s: Prepare = %q, %v", name, impl, err)
		}
		for run := range 2 {
			got, err := k.Run(garbageEnv(), in)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			mmClose(t, fmt.Sprintf("%s run %d", name, run), got[0], want[0], 1e-5)
		}
	}
	x := tensor.New(tensor.Float32, 3, 4)
	for _, tc := range []struct {
		name string
		n    *ir.Node
	}{
		{"runtime B", mmNode("MatMul", []*tensor.Tensor{x, tensor.New(tensor.Float32, 4, 2)}, nil, "", nil)},
		{"vector B", mmNode("MatMul", []*tensor.Tensor{x, tensor.New(tensor.Float32, 4)}, map[int]bool{1: true}, "", nil)},
		{"empty B", mmNode("MatMul", []*tensor.Tensor{tensor.New(tensor.Float32, 3, 0), tensor.New(tensor.Float32, 0, 2)}, map[int]bool{1: true}, "", nil)},
		{"int32", mmNode("MatMul", []*tensor.Tensor{tensor.New(tensor.Int32, 3, 4), tensor.New(tensor.Int32, 4, 2)}, map[int]bool{1: true}, "", nil)},
	} {
		if _, err := Default().Supports(tc.n, 13); !errors.Is(err, device.ErrUnsupported) {
			t.Errorf("%s: Supports err = %v, want ErrUnsupported", tc.name, err)
		}
		if _, impl, err := Prepare(tc.n, 13); err != nil || impl != Reference {
			t.Errorf("%s: Prepare = %q, %v; want the reference", tc.name, impl, err)
		}
	}
}

// TestMatMulPackedScratch: the packed constant weights are counted by the
// scratch meter the builder's workspace limit reads (ops.ScratchMeter),
// for FusedMatMul and MatMul alike.
func TestMatMulPackedScratch(t *testing.T) {
	if ops.ScratchMeter == nil {
		t.Skip("no scratch meter linked")
	}
	r := rand.New(rand.NewPCG(9, 9))
	const m, kk, nn = 64, 96, 80
	packed := cpu.PackB(kk, nn, make([]float32, kk*nn), nn).Bytes()
	for _, op := range []string{"FusedMatMul", "MatMul"} {
		in := []*tensor.Tensor{mmRand(r, m, kk), mmRand(r, kk, nn)}
		n := mmNode(op, in, map[int]bool{1: true}, "Relu", nil)
		k, _, err := Prepare(n, 13)
		if err != nil {
			t.Fatal(err)
		}
		var runErr error
		got := ops.ScratchMeter(func() { _, runErr = k.Run(nil, in) })
		if runErr != nil {
			t.Fatal(runErr)
		}
		if got < packed {
			t.Errorf("%s: scratch %d B, want at least the packed weights' %d B", op, got, packed)
		}
	}
}
