package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// TestBlockedWindowPool: the registry's kiln::BlockedMaxPool and
// BlockedAveragePool (output rows in bands over the cores, cpu.BlockedPoolRow
// over each row's interior and edges) match the reference loop of ops/nn
// into garbage outputs: the max exactly, the mean within float32 rounding;
// windows with pads, ceil_mode, dilations, uneven strides, and widths whose
// edge pixels are cut by the pads; the second run at cached windows.
func TestBlockedWindowPool(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	windows := []window{
		{kernel: []int{3, 3}, strides: []int{2, 2}, pads: []int{1, 1, 1, 1}},
		{kernel: []int{3, 3}, strides: []int{2, 2}, ceil: true},
		{kernel: []int{2, 2}, strides: []int{2, 2}},
		{kernel: []int{3, 3}, strides: []int{1, 1}, pads: []int{1, 1, 1, 1}},
		{kernel: []int{5, 5}, strides: []int{1, 1}, pads: []int{2, 2, 2, 2}},
		{kernel: []int{3, 2}, strides: []int{1, 2}, pads: []int{0, 1, 2, 0}, ceil: true},
		{kernel: []int{3, 3}, strides: []int{1, 1}, dilations: []int{2, 2}, pads: []int{2, 2, 2, 2}},
		{kernel: []int{1, 1}, strides: []int{1, 1}},
	}
	for wi, w := range windows {
		for _, s := range [][4]int{{1, 1, 1, 1}, {1, 2, 7, 7}, {2, 3, 8, 13}, {1, 4, 14, 14}, {1, 1, 5, 40}} {
			for _, op := range []string{"BlockedMaxPool", "BlockedAveragePool", "BlockedAveragePool+pad"} {
				name := fmt.Sprint("window ", wi, " ", op, s)
				n := poolNode("max", w, tensor.Float32)
				n.Domain, n.OpType = "kiln", op
				if op == "BlockedAveragePool+pad" {
					n.OpType = "BlockedAveragePool"
					n.Attrs["count_include_pad"] = &ir.Attr{Name: "count_include_pad", Type: ir.AttrInt, I: 1}
				}
				fast, impl, err := Prepare(n, poolOpset)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if impl != "cpu."+n.OpType {
					t.Fatalf("%s: kernel %q, want the registry's", name, impl)
				}
				ref, err := ops.Prepare(n, poolOpset)
				if err != nil {
					t.Fatal(err)
				}
				x := tensor.New(tensor.Float32, s[0], s[1], s[2], s[3], 16)
				for i := range x.Float32s() {
					x.Float32s()[i] = float32(r.Float64()*4 - 2)
				}
				want, werr := ref.Run(garbageEnv(), []*tensor.Tensor{x})
				for round := range 2 {
					got, err := fast.Run(garbageEnv(), []*tensor.Tensor{x})
					if (err != nil) != (werr != nil) {
						t.Fatalf("%s: fast error %v, reference %v", name, err, werr)
					}
					if err != nil {
						continue // the window does not fit (both refuse)
					}
					if !slices.Equal(got[0].Shape, want[0].Shape) {
						t.Fatalf("%s: shape %v, reference %v", name, got[0].Shape, want[0].Shape)
					}
					tol := 0.0
					if op != "BlockedMaxPool" {
						tol = 1e-6
					}
					for i, g := range got[0].Float32s() {
						wv := float64(want[0].Float32s()[i])
						if d := math.Abs(float64(g) - wv); !(d <= tol*(1+math.Abs(wv))) {
							t.Fatalf("%s round %d: output %d = %v, reference %v", name, round, i, g, wv)
						}
					}
				}
			}
		}
	}
}
