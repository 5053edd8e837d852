package nn_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/device/cpu/kernels"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// BenchmarkBlockedPools times each blocked pool against the NCHW pool of
// the same layer (the CNNs' pools: resnet_mini's maxpool, squeezenet1_1's
// ceil-mode maxpools and classifier's global average, resnet_mini's
// global average), one kernel run per op (no engine), the kernel the
// engine runs (the CPU registry's where it has one).
func BenchmarkBlockedPools(b *testing.B) {
	ints := ir.IntsAttr
	k3s2 := []*ir.Attr{ints("kernel_shape", 3, 3), ints("strides", 2, 2)}
	for _, tc := range []struct {
		name  string
		op    string
		x     []int
		attrs []*ir.Attr
	}{
		{"resnet_mini maxpool 16x112", "MaxPool", []int{1, 16, 112, 112}, append(k3s2, ints("pads", 1, 1, 1, 1))},
		{"squeezenet maxpool 64x111", "MaxPool", []int{1, 64, 111, 111}, append(k3s2, ir.IntAttr("ceil_mode", 1))},
		{"squeezenet maxpool 128x55", "MaxPool", []int{1, 128, 55, 55}, append(k3s2, ir.IntAttr("ceil_mode", 1))},
		{"squeezenet maxpool 256x27", "MaxPool", []int{1, 256, 27, 27}, append(k3s2, ir.IntAttr("ceil_mode", 1))},
		{"avgpool 3x3 64x56", "AveragePool", []int{1, 64, 56, 56}, []*ir.Attr{ints("kernel_shape", 3, 3), ints("pads", 1, 1, 1, 1)}},
		{"squeezenet global average 1000x13", "GlobalAveragePool", []int{1, 1000, 13, 13}, nil},
		{"resnet_mini global average 128x7", "GlobalAveragePool", []int{1, 128, 7, 7}, nil},
	} {
		r := rand.New(rand.NewPCG(1, 2))
		x := blkRand(r, tc.x...)
		xb := tensor.New(tensor.Float32, tc.x[0], cpu.Blocks(tc.x[1]), tc.x[2], tc.x[3], cpu.Block)
		cpu.ToBlocked(tc.x[0], tc.x[1], tc.x[2]*tc.x[3], x.Float32s(), xb.Float32s())
		for _, blocked := range []bool{false, true} {
			node := &ir.Node{Name: "n", OpType: tc.op, Attrs: map[string]*ir.Attr{}, Outputs: []*ir.Value{{Name: "y"}},
				Inputs: []*ir.Value{{Name: "x", Type: ir.Type{DType: tensor.Float32}}}}
			in := x
			if blocked {
				node.Domain, node.OpType, in = "kiln", "Blocked"+tc.op, xb
			}
			for _, a := range tc.attrs {
				node.Attrs[a.Name] = a
			}
			k, _, err := kernels.Prepare(node, 17)
			if err != nil {
				b.Fatal(err)
			}
			b.Run(fmt.Sprintf("%s/blocked=%v", tc.name, blocked), func(b *testing.B) {
				for b.Loop() {
					if _, err := k.Run(nil, []*tensor.Tensor{in}); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
