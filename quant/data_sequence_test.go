package quant

import (
	"errors"
	"strings"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// TestRandomSequenceBatches: random batches for sequence and optional
// inputs hold values of their element types, a symbol shared with a
// tensor input taking the tensor's size; an element type the model leaves
// unknown is not measurable (the accuracy report is skipped), not a crash.
func TestRandomSequenceBatches(t *testing.T) {
	val := func(name string, typ ir.Type) *ir.Value { return &ir.Value{Name: name, Type: typ} }
	f32 := func(dims ...ir.Dim) ir.Type { return ir.Type{DType: tensor.Float32, Shape: ir.Shape(dims)} }
	tests := []struct {
		name   string
		inputs []*ir.Value
		shapes map[string][]int
		check  func(t *testing.T, b map[string]*tensor.Tensor)
		err    string // "": no error; else a word of it, with ErrNotMeasurable
	}{
		{"sequence sharing a symbol with a tensor",
			[]*ir.Value{val("s", ir.SequenceOf(f32(ir.S("n"), ir.D(2)))), val("x", f32(ir.S("n")))},
			map[string][]int{"x": {5}},
			func(t *testing.T, b map[string]*tensor.Tensor) {
				s := b["s"]
				if !s.IsSequence() || len(s.Elems) != RandomSequenceLen {
					t.Fatalf("s = %v, want a sequence of %d", s, RandomSequenceLen)
				}
				for _, e := range s.Elems {
					if e.DType != tensor.Float32 || dimsString(e.Shape) != "[5,2]" {
						t.Errorf("element %v, want float32 [5,2]", e)
					}
				}
				if string(s.Elems[0].Data) == string(s.Elems[1].Data) {
					t.Error("the two elements are equal")
				}
			}, ""},
		{"optional tensor with its elements' shape given",
			[]*ir.Value{val("o", ir.OptionalOf(f32(ir.S("k"))))},
			map[string][]int{"o": {3}},
			func(t *testing.T, b map[string]*tensor.Tensor) {
				if o := b["o"]; o.DType != tensor.Float32 || dimsString(o.Shape) != "[3]" {
					t.Errorf("o = %v, want a float32 [3] value", o)
				}
			}, ""},
		{"optional sequence of int64 scalars",
			[]*ir.Value{val("os", ir.OptionalOf(ir.SequenceOf(ir.Type{DType: tensor.Int64, Shape: ir.Shape{}})))},
			nil,
			func(t *testing.T, b map[string]*tensor.Tensor) {
				os := b["os"]
				if !os.IsSequence() || len(os.Elems) != RandomSequenceLen || os.Elems[0].DType != tensor.Int64 || os.Elems[0].Rank() != 0 {
					t.Errorf("os = %v, want a sequence of int64 scalars", os)
				}
			}, ""},
		{"element rank unknown", []*ir.Value{val("s", ir.SequenceOf(ir.Type{DType: tensor.Int64}))}, nil, nil, "rank is not known"},
		{"element type unknown", []*ir.Value{val("s", ir.Type{DType: tensor.Sequence})}, nil, nil, "rank is not known"},
		{"sequence of strings", []*ir.Value{val("s", ir.SequenceOf(ir.Type{DType: tensor.String, Shape: ir.Shape{}}))}, nil, nil, "cannot make random string data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bs, err := RandomBatches(tt.inputs, tt.shapes, 2, 3)
			if tt.err != "" {
				if err == nil || !errors.Is(err, ErrNotMeasurable) || !errors.Is(err, ErrData) || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want ErrNotMeasurable saying %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(bs) != 2 {
				t.Fatalf("%d batches, want 2", len(bs))
			}
			tt.check(t, bs[0])
		})
	}
}
