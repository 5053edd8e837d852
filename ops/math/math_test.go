package math

import (
	"testing"

	"github.com/kilnai/kiln/ops/opstest"
	"github.com/kilnai/kiln/tensor"
)

func TestAddBroadcast(t *testing.T) {
	a := tensor.FromFloat32([]float32{1, 2, 3, 4, 5, 6}, 2, 3)
	b := tensor.FromFloat32([]float32{10, 20, 30}, 3)
	out := opstest.Run(t, opstest.Node("Add", 2, 1), 17, a, b)
	opstest.AllClose(t, out[0], tensor.FromFloat32([]float32{11, 22, 33, 14, 25, 36}, 2, 3), 0, 0)
}

func TestRelu(t *testing.T) {
	a := tensor.FromFloat32([]float32{-1, 2, -3, 0}, 4)
	out := opstest.Run(t, opstest.Node("Relu", 1, 1), 17, a)
	opstest.AllClose(t, out[0], tensor.FromFloat32([]float32{0, 2, 0, 0}, 4), 0, 0)
}
