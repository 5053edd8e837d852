package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// garbageEnv allocates outputs full of NaN-like garbage, as an arena may
// hand them out: a kernel must write every element (the pad lanes too).
func garbageEnv() *ops.Env {
	return &ops.Env{Alloc: func(dt tensor.DType, shape []int) (*tensor.Tensor, error) {
		t := tensor.New(dt, shape...)
		for i := range t.Data {
			t.Data[i] = 0xff
		}
		return t, nil
	}}
}

func kilnNode(op string, dt tensor.DType, attrs ...*ir.Attr) *ir.Node {
	n := node("kiln", op, dt)
	n.Attrs = map[string]*ir.Attr{}
	for _, a := range attrs {
		n.Attrs[a.Name] = a
	}
	return n
}

// TestBlockedReorder: the registry's ToBlocked and FromBlocked (cpu.ToBlocked,
// cpu.FromBlocked) are chosen for float32 nodes and give bit for bit the
// reference kernels' outputs (ops/nn's plain loops), pad lanes zero, on
// channel counts around the block size; float64 gets the reference.
func TestBlockedReorder(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, s := range [][4]int{{1, 1, 1, 1}, {1, 3, 5, 7}, {2, 16, 4, 4}, {1, 17, 3, 9}, {3, 40, 7, 5}, {1, 64, 28, 28}, {0, 5, 2, 2}} {
		t.Run(fmt.Sprint(s), func(t *testing.T) {
			x := tensor.New(tensor.Float32, s[:]...)
			for i := range x.Float32s() {
				x.Float32s()[i] = float32(r.NormFloat64())
			}
			to := kilnNode("ToBlocked", tensor.Float32)
			from := kilnNode("FromBlocked", tensor.Float32, &ir.Attr{Name: "channels", Type: ir.AttrInt, I: int64(s[1])})
			var blocked *tensor.Tensor
			for _, n := range []*ir.Node{to, from} {
				in := x
				if n == from {
					in = blocked
				}
				fast, impl, err := Prepare(n, 17)
				if err != nil || impl != "cpu."+n.OpType {
					t.Fatalf("Prepare(%s) = %q, %v; want the registry's kernel", n.OpType, impl, err)
				}
				ref, err := ops.Prepare(n, 17)
				if err != nil {
					t.Fatal(err)
				}
				for round := range 2 { // the second at cached shapes
					got, err := fast.Run(garbageEnv(), []*tensor.Tensor{in})
					if err != nil {
						t.Fatalf("%s fast: %v", n.OpType, err)
					}
					want, err := ref.Run(garbageEnv(), []*tensor.Tensor{in})
					if err != nil {
						t.Fatalf("%s reference: %v", n.OpType, err)
					}
					if !slices.Equal(got[0].Shape, want[0].Shape) || !slices.Equal(got[0].Data, want[0].Data) {
						t.Fatalf("%s round %d: fast %v differs from reference %v", n.OpType, round, got[0].Shape, want[0].Shape)
					}
					if n == to {
						blocked = got[0]
					}
				}
			}
			// the reference's layout itself: channel c of pixel p at lane c%16
			// of block c/16, pad lanes zero
			b, hw := blocked.Float32s(), s[2]*s[3]
			cb := cpu.Blocks(s[1])
			for img := range s[0] {
				for c := range cb * cpu.Block {
					for p := range hw {
						v := b[((img*cb+c/cpu.Block)*hw+p)*cpu.Block+c%cpu.Block]
						want := float32(0)
						if c < s[1] {
							want = x.Float32s()[(img*s[1]+c)*hw+p]
						}
						if v != want {
							t.Fatalf("blocked image %d channel %d pixel %d = %v, want %v", img, c, p, v, want)
						}
					}
				}
			}
		})
	}
	for _, op := range []string{"ToBlocked", "FromBlocked"} {
		if _, err := Default().Supports(kilnNode(op, tensor.Float64), 17); err == nil {
			t.Errorf("%s of float64 supported", op)
		}
	}
}

// TestBlockedFloat16: float16 nodes of the blocked ops (FP16 plans keep
// the blocked layout) get the registry's kernel inside the float16
// adapter, as the ops' own kernels ran, and give the reference's outputs
// (the adapter's float16 rounding of the same float32 results).
func TestBlockedFloat16(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	nchw := tensor.New(tensor.Float16, 1, 20, 6, 7)
	blocked := tensor.New(tensor.Float16, 1, 2, 6, 7, 16)
	for _, x := range []*tensor.Tensor{nchw, blocked} {
		for i := range x.Len() {
			x.SetFloat(i, r.Float64()*4-2)
		}
	}
	k3 := &ir.Attr{Name: "kernel_shape", Type: ir.AttrInts, Ints: []int64{3, 3}}
	for _, tc := range []struct {
		n  *ir.Node
		in *tensor.Tensor
	}{
		{kilnNode("ToBlocked", tensor.Float16), nchw},
		{kilnNode("FromBlocked", tensor.Float16, &ir.Attr{Name: "channels", Type: ir.AttrInt, I: 20}), blocked},
		{kilnNode("BlockedMaxPool", tensor.Float16, k3), blocked},
		{kilnNode("BlockedAveragePool", tensor.Float16, k3), blocked},
		{kilnNode("BlockedGlobalMaxPool", tensor.Float16), blocked},
		{kilnNode("BlockedGlobalAveragePool", tensor.Float16), blocked},
	} {
		fast, impl, err := Prepare(tc.n, 17)
		if err != nil || impl != "cpu."+tc.n.OpType {
			t.Fatalf("Prepare(%s of float16) = %q, %v; want the registry's kernel", tc.n.OpType, impl, err)
		}
		ref, err := ops.Prepare(tc.n, 17)
		if err != nil {
			t.Fatal(err)
		}
		got, err := fast.Run(garbageEnv(), []*tensor.Tensor{tc.in})
		if err != nil {
			t.Fatalf("%s fast: %v", tc.n.OpType, err)
		}
		want, err := ref.Run(garbageEnv(), []*tensor.Tensor{tc.in})
		if err != nil {
			t.Fatalf("%s reference: %v", tc.n.OpType, err)
		}
		if got[0].DType != tensor.Float16 || !slices.Equal(got[0].Shape, want[0].Shape) {
			t.Fatalf("%s: %v %v, reference %v %v", tc.n.OpType, got[0].DType, got[0].Shape, want[0].DType, want[0].Shape)
		}
		for i := range got[0].Len() {
			// the means' sums in another order may round to a neighbouring float16
			if g, w := got[0].Float(i), want[0].Float(i); g != w && !(strings.Contains(tc.n.OpType, "Average") && math.Abs(g-w) <= 2e-3*(1+math.Abs(w))) {
				t.Fatalf("%s: output %d = %v, reference %v", tc.n.OpType, i, g, w)
			}
		}
	}
}

// TestBlockedGlobalPool: the registry's blocked global pools (planes over
// the cores, cpu.BlockedPoolRow) match the serial reference of ops/nn
// (cpu.BlockedPoolRowGo): the max exactly, the mean within float32
// rounding of the sum's order; and the reference is the plane's max or
// mean lane by lane.
func TestBlockedGlobalPool(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, s := range [][5]int{{1, 1, 1, 1, 16}, {1, 2, 3, 5, 16}, {2, 3, 7, 7, 16}, {1, 40, 14, 14, 16}, {4, 1, 1, 300, 16}, {0, 3, 2, 2, 16}} {
		for _, op := range []string{"BlockedGlobalAveragePool", "BlockedGlobalMaxPool"} {
			t.Run(fmt.Sprint(op, s), func(t *testing.T) {
				x := tensor.New(tensor.Float32, s[:]...)
				for i := range x.Float32s() {
					x.Float32s()[i] = float32(r.Float64()*2 - 1)
				}
				n := kilnNode(op, tensor.Float32)
				fast, impl, err := Prepare(n, 17)
				if err != nil || impl != "cpu."+op {
					t.Fatalf("Prepare = %q, %v; want the registry's kernel", impl, err)
				}
				ref, err := ops.Prepare(n, 17)
				if err != nil {
					t.Fatal(err)
				}
				got, err := fast.Run(garbageEnv(), []*tensor.Tensor{x})
				if err != nil {
					t.Fatal(err)
				}
				want, err := ref.Run(garbageEnv(), []*tensor.Tensor{x})
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(got[0].Shape, []int{s[0], s[1], 1, 1, 16}) || !slices.Equal(got[0].Shape, want[0].Shape) {
					t.Fatalf("shapes %v and %v", got[0].Shape, want[0].Shape)
				}
				hw := s[2] * s[3]
				xv, g, w := x.Float32s(), got[0].Float32s(), want[0].Float32s()
				for p := range s[0] * s[1] {
					for l := range 16 {
						acc := float64(xv[p*hw*16+l])
						if op == "BlockedGlobalAveragePool" {
							acc = 0
						}
						for i := range hw {
							v := float64(xv[(p*hw+i)*16+l])
							if op == "BlockedGlobalAveragePool" {
								acc += v / float64(hw)
							} else {
								acc = max(acc, v)
							}
						}
						o := p*16 + l
						tol := 0.0
						if op == "BlockedGlobalAveragePool" {
							tol = 1e-6
						}
						if d := float64(g[o]) - float64(w[o]); d > tol || d < -tol {
							t.Fatalf("plane %d lane %d: fast %v, reference %v", p, l, g[o], w[o])
						}
						if d := float64(w[o]) - acc; d > 1e-6 || d < -1e-6 {
							t.Fatalf("plane %d lane %d: reference %v, want %v", p, l, w[o], acc)
						}
					}
				}
			})
		}
	}
}
