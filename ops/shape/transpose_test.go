package shape

import (
	"fmt"
	"math/rand"
	"testing"

	"github.com/kilnai/kiln/ops/opstest"
	"github.com/kilnai/kiln/tensor"
)

// randTensor returns a tensor of type dt and shape with distinct-ish values.
func randTensor(r *rand.Rand, dt tensor.DType, shape ...int) *tensor.Tensor {
	t := tensor.New(dt, shape...)
	for i := 0; i < t.Len(); i++ {
		if dt == tensor.String {
			t.Strings[i] = fmt.Sprint(r.Intn(1000))
		} else {
			t.SetFloat(i, float64(r.Intn(100)))
		}
	}
	return t
}

// refTranspose transposes element by element.
func refTranspose(x *tensor.Tensor, perm []int) *tensor.Tensor {
	od := make([]int, len(perm))
	for i, p := range perm {
		od[i] = x.Shape[p]
	}
	y := tensor.New(x.DType, od...)
	is := tensor.Strides(x.Shape)
	coord := make([]int, len(od))
	for o := 0; o < y.Len(); o++ {
		rem := o
		for a := len(od) - 1; a >= 0; a-- {
			coord[a] = rem % od[a]
			rem /= od[a]
		}
		src := 0
		for a, p := range perm {
			src += coord[a] * is[p]
		}
		copyElems(y, o, x, src, 1)
	}
	return y
}

func TestTransposeRandom(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	dtypes := []tensor.DType{tensor.Float32, tensor.Int8, tensor.Float16, tensor.Int64, tensor.String, tensor.Bool}
	shapes := [][]int{{5}, {3, 4}, {33, 65}, {2, 3, 4}, {1, 7, 1, 5}, {2, 3, 4, 5}, {2, 40, 3, 37}, {2, 1, 3, 2, 3}, {0, 3}, {70, 1, 45}}
	for _, s := range shapes {
		for trial := 0; trial < 6; trial++ {
			perm := r.Perm(len(s))
			dt := dtypes[r.Intn(len(dtypes))]
			x := randTensor(r, dt, s...)
			p64 := make([]int64, len(perm))
			for i, p := range perm {
				p64[i] = int64(p)
			}
			out := opstest.Run(t, opstest.Node("Transpose", 1, 1, opstest.Ints("perm", p64...)), 13, x)
			if err := opstest.Close(out[0], refTranspose(x, perm), 0, 0); err != nil {
				t.Errorf("%v %v perm %v: %v", dt, s, perm, err)
			}
		}
	}
}

func TestTransposeCommon(t *testing.T) {
	r := rand.New(rand.NewSource(2))
	for _, c := range []struct {
		shape []int
		perm  []int
	}{
		{[]int{2, 16, 12, 64}, []int{0, 2, 1, 3}}, // BERT split heads
		{[]int{2, 12, 16, 64}, []int{0, 2, 1, 3}}, // merge heads
		{[]int{2, 12, 16, 64}, []int{0, 1, 3, 2}}, // K^T
		{[]int{2, 32, 17, 19}, []int{0, 2, 3, 1}}, // NCHW -> NHWC
		{[]int{2, 17, 19, 32}, []int{0, 3, 1, 2}}, // NHWC -> NCHW
		{[]int{300, 200}, []int{1, 0}},            // big 2-D, parallel tiles
		{[]int{4, 5, 6, 7}, []int{3, 2, 1, 0}},    // default
		{[]int{64, 3, 1024}, []int{1, 0, 2}},      // contiguous runs
		{[]int{3, 1, 4}, []int{1, 0, 2}},          // unit axes only: a view
	} {
		x := randTensor(r, tensor.Float32, c.shape...)
		p64 := make([]int64, len(c.perm))
		for i, p := range c.perm {
			p64[i] = int64(p)
		}
		out := opstest.Run(t, opstest.Node("Transpose", 1, 1, opstest.Ints("perm", p64...)), 13, x)
		opstest.AllClose(t, out[0], refTranspose(x, c.perm), 0, 0)
	}
	// no perm: reversed
	x := iotaF(2, 3)
	out := opstest.Run(t, opstest.Node("Transpose", 1, 1), 13, x)
	opstest.AllClose(t, out[0], f32(sh(3, 2), 0, 3, 1, 4, 2, 5), 0, 0)
	runCases(t, []opCase{
		{name: "bad perm", op: "Transpose", attrs: opAttrs(opstest.Ints("perm", 0, 0)), in: []*tensor.Tensor{x}, err: true},
		{name: "perm rank", op: "Transpose", attrs: opAttrs(opstest.Ints("perm", 0, 1, 2)), in: []*tensor.Tensor{x}, err: true},
	})
}

func TestCopyNDBroadcastAndReverse(t *testing.T) {
	x := iotaF(3, 4)
	// reversed rows and columns: strides negative
	y := tensor.New(tensor.Float32, 3, 4)
	copyND(y, 0, []int{4, 1}, x, 11, []int{-4, -1}, []int{3, 4})
	for i, v := range y.Float32s() {
		if v != float32(11-i) {
			t.Fatalf("reversed copy: %v", y.Float32s())
		}
	}
	// broadcast a row
	z := tensor.New(tensor.Float32, 5, 4)
	copyND(z, 0, []int{4, 1}, x, 4, []int{0, 1}, []int{5, 4})
	for i, v := range z.Float32s() {
		if v != float32(4+i%4) {
			t.Fatalf("broadcast copy: %v", z.Float32s())
		}
	}
	// broadcast a column
	copyND(z, 0, []int{4, 1}, x, 0, []int{1, 0}, []int{5, 4})
	for i, v := range z.Float32s() {
		if v != float32(i/4) {
			t.Fatalf("column broadcast copy: %v", z.Float32s())
		}
	}
}

func TestDepthSpace(t *testing.T) {
	x := iotaF(1, 8, 2, 3)
	b := 2
	// reference from the ONNX definitions
	ref := func(crd bool) *tensor.Tensor {
		y := tensor.New(tensor.Float32, 1, 2, 4, 6)
		for c := 0; c < 2; c++ {
			for h := 0; h < 4; h++ {
				for w := 0; w < 6; w++ {
					bh, bw := h%b, w%b
					var ic int
					if crd {
						ic = c*b*b + bh*b + bw
					} else {
						ic = (bh*b+bw)*2 + c
					}
					y.Float32s()[(c*4+h)*6+w] = x.Float32s()[(ic*2+h/b)*3+w/b]
				}
			}
		}
		return y
	}
	dcr := opstest.Run(t, opstest.Node("DepthToSpace", 1, 1, opstest.Int("blocksize", 2)), 13, x)
	opstest.AllClose(t, dcr[0], ref(false), 0, 0)
	crd := opstest.Run(t, opstest.Node("DepthToSpace", 1, 1, opstest.Int("blocksize", 2), opstest.String("mode", "CRD")), 13, x)
	opstest.AllClose(t, crd[0], ref(true), 0, 0)
	// SpaceToDepth inverts DCR DepthToSpace
	back := opstest.Run(t, opstest.Node("SpaceToDepth", 1, 1, opstest.Int("blocksize", 2)), 13, dcr[0])
	opstest.AllClose(t, back[0], x, 0, 0)
	runCases(t, []opCase{
		{name: "bad mode", op: "DepthToSpace", attrs: opAttrs(opstest.Int("blocksize", 2), opstest.String("mode", "XYZ")), in: []*tensor.Tensor{x}, err: true},
		{name: "no blocksize", op: "DepthToSpace", in: []*tensor.Tensor{x}, err: true},
		{name: "channels", op: "DepthToSpace", attrs: opAttrs(opstest.Int("blocksize", 3)), in: []*tensor.Tensor{x}, err: true},
		{name: "space", op: "SpaceToDepth", attrs: opAttrs(opstest.Int("blocksize", 2)), in: []*tensor.Tensor{x}, err: true},
		{name: "rank", op: "SpaceToDepth", attrs: opAttrs(opstest.Int("blocksize", 2)), in: []*tensor.Tensor{iotaF(4, 4)}, err: true},
	})
}
