package shape

import (
	"fmt"
	"math/rand"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/ops/opstest"
	"github.com/kilnai/kiln/tensor"
)

var allOps = []string{"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Expand", "Tile", "Shape", "Size",
	"Concat", "Split", "Slice", "Gather", "GatherElements", "GatherND", "ScatterND", "ScatterElements", "Scatter",
	"Pad", "ConstantOfShape", "Range", "NonZero", "OneHot", "Compress", "Trilu", "ReverseSequence", "EyeLike",
	"Unique", "SpaceToDepth", "DepthToSpace"}

// randInput returns a small tensor of a random type, shape and contents,
// sometimes with index-like or absurd values.
func randInput(r *rand.Rand) *tensor.Tensor {
	if r.Intn(12) == 0 {
		return nil
	}
	rank := r.Intn(4)
	shape := make([]int, rank)
	for i := range shape {
		shape[i] = r.Intn(4)
	}
	dts := []tensor.DType{tensor.Float32, tensor.Int64, tensor.Int64, tensor.Int32, tensor.Bool, tensor.String, tensor.Float16, tensor.Uint8}
	dt := dts[r.Intn(len(dts))]
	t := tensor.New(dt, shape...)
	for i := 0; i < t.Len(); i++ {
		switch {
		case dt == tensor.String:
			t.Strings[i] = fmt.Sprint(r.Intn(3))
		case dt == tensor.Int64 && r.Intn(10) == 0:
			t.Int64s()[i] = []int64{1 << 62, -1 << 62, 1 << 45, -1 << 63}[r.Intn(4)]
		default:
			t.SetFloat(i, float64(r.Intn(9)-4))
		}
	}
	return t
}

func randAttrs(r *rand.Rand) []*ir.Attr {
	var as []*ir.Attr
	ints := func() []int64 {
		v := make([]int64, r.Intn(5))
		for i := range v {
			v[i] = int64(r.Intn(9) - 4)
		}
		return v
	}
	for _, name := range []string{"axis", "batch_dims", "allowzero", "k", "upper", "sorted", "start", "end", "blocksize", "batch_axis", "time_axis", "num_outputs"} {
		if r.Intn(4) == 0 {
			as = append(as, opstest.Int(name, int64(r.Intn(9)-4)))
		}
	}
	for _, name := range []string{"perm", "axes", "split", "pads", "starts", "ends", "shape"} {
		if r.Intn(4) == 0 {
			as = append(as, opstest.Ints(name, ints()...))
		}
	}
	if r.Intn(4) == 0 {
		as = append(as, opstest.String("mode", []string{"constant", "reflect", "edge", "wrap", "DCR", "CRD", "bad"}[r.Intn(7)]))
	}
	if r.Intn(4) == 0 {
		as = append(as, opstest.String("reduction", []string{"none", "add", "mul", "max", "min"}[r.Intn(5)]))
	}
	if r.Intn(6) == 0 {
		as = append(as, opstest.Tensor("value", randInput(r)))
	}
	return as
}

// TestNoPanics feeds every op random, mostly invalid, inputs and attributes:
// it may fail, never panic.
func TestNoPanics(t *testing.T) {
	r := rand.New(rand.NewSource(4))
	n := 10000
	if testing.Short() {
		n = 300
	}
	for i := 0; i < n; i++ {
		op := allOps[r.Intn(len(allOps))]
		nIn := r.Intn(6)
		in := make([]*tensor.Tensor, nIn)
		for j := range in {
			in[j] = randInput(r)
		}
		node := opstest.Node(op, nIn, 1+r.Intn(3), randAttrs(r)...)
		opset := []int64{1, 7, 9, 11, 13, 16, 18, 19, 21}[r.Intn(9)]
		what := fmt.Sprintf("%s opset %d attrs %v inputs %v", op, opset, node.Attrs, in)
		mustNotPanic(t, what, func() {
			k, err := ops.Prepare(node, opset)
			if err != nil {
				return
			}
			vals := make([]*ir.Value, nIn)
			for j, x := range in {
				if x != nil {
					vals[j] = &ir.Value{Type: ops.TypeOf(x)}
					if r.Intn(2) == 0 {
						vals[j].Const = x
					}
				}
			}
			k.Infer(vals)
			if sv, ok := k.(ops.ShapeValuer); ok {
				sv.ShapeValue(vals)
			}
			runKernel(node, opset, in...)
		})
	}
}

// TestInferAgreesRandom checks, on random valid-looking inputs, that when
// both inference and execution succeed they agree.
func TestInferAgreesRandom(t *testing.T) {
	r := rand.New(rand.NewSource(5))
	for i := 0; i < 10000; i++ {
		op := allOps[r.Intn(len(allOps))]
		nIn := 1 + r.Intn(4)
		in := make([]*tensor.Tensor, nIn)
		for j := range in {
			in[j] = randInput(r)
		}
		node := opstest.Node(op, nIn, 1+r.Intn(3), randAttrs(r)...)
		opset := []int64{11, 13, 18}[r.Intn(3)]
		k, err := ops.Prepare(node, opset)
		if err != nil {
			continue
		}
		outs, err := runKernel(node, opset, in...)
		if err != nil {
			continue
		}
		vals := make([]*ir.Value, nIn)
		for j, x := range in {
			if x != nil {
				vals[j] = &ir.Value{Type: ops.TypeOf(x), Const: x}
			}
		}
		types, err := k.Infer(vals)
		if err != nil {
			t.Errorf("%s %v %v: Run succeeded, Infer failed: %v", op, node.Attrs, in, err)
			continue
		}
		for j, o := range outs {
			if j < len(types) && o != nil && !types[j].Shape.Matches(o.Shape) {
				t.Errorf("%s opset %d %v %v: output %d inferred %v, computed %v", op, opset, attrString(node), in, j, types[j].Shape, o.Shape)
			}
		}
	}
}

func attrString(n *ir.Node) string {
	s := ""
	for k, a := range n.Attrs {
		s += fmt.Sprintf("%s=%v%v%q ", k, a.I, a.Ints, a.S)
	}
	return s
}
