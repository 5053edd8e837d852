package gpuexec

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"

	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// emulatePermute runs one launch of permute_b32 or permute_b64 on the CPU,
// line for line as kernels/nn.cu does, reading its meta array from the
// program's weights and its input from x (the graph input the launch reads,
// offset by the launch's pointer).
func emulatePermute(t *testing.T, p *program, l launch, x []byte, elem int) []byte {
	t.Helper()
	if l.kernel != "permute_b32" && l.kernel != "permute_b64" || len(l.args) != 4 {
		t.Fatalf("launch %s with %d arguments, want a permute", l.kernel, len(l.args))
	}
	metaAt := func(i int64) int64 {
		off := l.args[2].ref.off + 8*i
		return int64(binary.LittleEndian.Uint64(p.weights[off : off+8]))
	}
	base := l.args[1].ref.off / int64(elem)
	n := l.args[3].i
	y := make([]byte, n*int64(elem))
	r := metaAt(0)
	for i := int64(0); i < n; i++ {
		rem, ix := i, int64(0)
		for d := r - 1; d >= 0; d-- {
			dim := metaAt(1 + d)
			ix += (rem % dim) * metaAt(1+r+d)
			rem /= dim
		}
		src := (base + ix) * int64(elem)
		copy(y[i*int64(elem):], x[src:src+int64(elem)])
	}
	return y
}

// TestSliceAsPermute checks the Slice launches (computed on the CPU by
// emulating the permute kernel, which the GPU tests verify as Transpose)
// against the CPU engine.
func TestSliceAsPermute(t *testing.T) {
	i64 := func(v ...int64) *tensor.Tensor { return tensor.FromInt64(v, len(v)) }
	tests := []struct {
		name                      string
		opset                     int64
		dt                        tensor.DType
		starts, ends, axes, steps *tensor.Tensor
		attrs                     []*ir.Attr
	}{
		{name: "two axes", opset: 13, dt: tensor.Float32, starts: i64(1, -4), ends: i64(3, 100), axes: i64(0, 1)},
		{name: "negative step", opset: 13, dt: tensor.Float32, starts: i64(4), ends: i64(-6), axes: i64(-1), steps: i64(-2)},
		{name: "every axis stepped", opset: 13, dt: tensor.Int64, starts: i64(0, 5, 1), ends: i64(4, -100, 5), steps: i64(2, -1, 3)},
		{name: "empty", opset: 13, dt: tensor.Float32, starts: i64(3), ends: i64(1), axes: i64(0)},
		{name: "opset 9 attributes", opset: 9, dt: tensor.Float32, attrs: []*ir.Attr{ir.IntsAttr("starts", 1, 0), ir.IntsAttr("ends", 1000, -1), ir.IntsAttr("axes", 2, 1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := tensor.New(tt.dt, 4, 6, 5)
			for i := range x.Len() {
				x.SetFloat(i, float64(i*7%23)-11)
			}
			mk := func() *ir.Graph {
				b := ir.NewBuilder("g", tt.opset)
				in := []*ir.Value{b.Input("x", tt.dt, ir.D(4), ir.D(6), ir.D(5))}
				for i, a := range []*tensor.Tensor{tt.starts, tt.ends, tt.axes, tt.steps} {
					if a == nil {
						if i < 2 && tt.opset >= 10 {
							t.Fatal("starts and ends are required")
						}
						if tt.opset >= 10 && i < 4 {
							in = append(in, nil)
						}
						continue
					}
					in = append(in, b.Const([]string{"starts", "ends", "axes", "steps"}[i], a))
				}
				for len(in) > 1 && in[len(in)-1] == nil {
					in = in[:len(in)-1]
				}
				b.Output(b.Op("Slice", in, tt.attrs...), "y")
				g := b.Graph()
				if _, err := ops.InferGraph(g); err != nil {
					t.Fatal(err)
				}
				return g
			}
			ce, err := engine.New(mk())
			if err != nil {
				t.Fatal(err)
			}
			want, err := ce.Run(context.Background(), map[string]*tensor.Tensor{"x": x})
			if err != nil {
				t.Fatal(err)
			}
			p, err := compile(mk(), false, false)
			if err != nil {
				t.Fatal(err)
			}
			if len(p.steps) != 1 {
				t.Fatalf("%d steps", len(p.steps))
			}
			var got []byte
			switch l := p.steps[0].launches; len(l) {
			case 0:
				got = []byte{}
			case 1:
				got = emulatePermute(t, p, l[0], x.Data, tt.dt.Size())
			default:
				t.Fatalf("%d launches", len(l))
			}
			if w := want["y"]; !bytes.Equal(got, w.Data) {
				t.Errorf("slice of shape %v: got %v, want %v", w.Shape, got, w.Data)
			}
		})
	}
}
