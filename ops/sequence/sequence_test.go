package sequence_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/ops/opstest"
	_ "github.com/kilnai/kiln/ops/sequence"
	"github.com/kilnai/kiln/tensor"
)

func f32(v []float32, shape ...int) *tensor.Tensor { return tensor.FromFloat32(v, shape...) }
func i64(v ...int64) *tensor.Tensor                { return tensor.FromInt64(v) } // a scalar for one value
func vec64(v ...int64) *tensor.Tensor              { return tensor.FromInt64(v, len(v)) }
func seq(elems ...*tensor.Tensor) *tensor.Tensor {
	return tensor.NewSequence(elems)
}

// iota32 returns n float32s 0, 1, ..., n-1 in the given shape.
func iota32(shape ...int) *tensor.Tensor {
	n := tensor.NumElements(shape)
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(i)
	}
	return f32(v, shape...)
}

// same checks got against want: tensors element by element, sequences
// element by element, empty optionals by kind.
func same(got, want *tensor.Tensor) error {
	switch {
	case got == nil || want == nil:
		if got != want {
			return fmt.Errorf("got %v, want %v", got, want)
		}
		return nil
	case want.IsSequence():
		if !got.IsSequence() || len(got.Elems) != len(want.Elems) {
			return fmt.Errorf("got %v, want %v", got, want)
		}
		for i := range want.Elems {
			if err := same(got.Elems[i], want.Elems[i]); err != nil {
				return fmt.Errorf("element %d: %w", i, err)
			}
		}
		return nil
	case want.IsNone():
		if !got.IsNone() {
			return fmt.Errorf("got %v, want an empty optional", got)
		}
		return nil
	case got.IsSequence() || got.IsNone():
		return fmt.Errorf("got %v, want %v", got, want)
	}
	return opstest.Close(got, want, 0, 0)
}

// exec prepares n (opset 18), infers its output types from the inputs'
// and runs it, checking that each output has the inferred kind and
// element type (an optional holding a value is that value itself).
func exec(n *ir.Node, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	k, err := ops.Prepare(n, 18)
	if err != nil {
		return nil, err
	}
	vals := make([]*ir.Value, len(in))
	for i, t := range in {
		if t != nil {
			vals[i] = &ir.Value{Name: fmt.Sprintf("in%d", i), Type: ops.TypeOf(t)}
		}
	}
	types, err := k.Infer(vals)
	if err != nil {
		return nil, fmt.Errorf("infer: %w", err)
	}
	outs, err := k.Run(&ops.Env{Ctx: context.Background()}, in)
	if err != nil {
		return nil, err
	}
	for i, o := range outs {
		want := types[i]
		if want.DType == tensor.Optional && !o.IsNone() {
			want = want.ElemType()
		}
		if want.DType != tensor.Undefined && want.DType != o.DType {
			return nil, fmt.Errorf("output %d: inferred %v, computed %v", i, want, o)
		}
		if want.IsTensor() && !want.Shape.Matches(o.Shape) {
			return nil, fmt.Errorf("output %d: inferred %v, computed %v", i, want, o.Shape)
		}
	}
	return outs, nil
}

func typeAttr(name string, t ir.Type) *ir.Attr {
	return &ir.Attr{Name: name, Type: ir.AttrType1, Types: []ir.Type{t}}
}

func TestOps(t *testing.T) {
	a, b := iota32(2, 3), iota32(1, 3)
	s3 := seq(f32([]float32{1}, 1), f32([]float32{2, 3}, 2), f32([]float32{4, 5, 6}, 3))
	tests := []struct {
		name  string
		op    string
		nOut  int
		attrs []*ir.Attr
		in    []*tensor.Tensor
		want  []*tensor.Tensor
		err   string // a phrase of the error; "" for success
		index bool   // the error is an ops.ErrIndex (the data's fault)
	}{
		// SequenceConstruct
		{name: "construct", op: "SequenceConstruct", in: []*tensor.Tensor{a, b}, want: []*tensor.Tensor{seq(a, b)}},
		{name: "construct mixed types", op: "SequenceConstruct", in: []*tensor.Tensor{a, i64(1)}, err: "element types float32 and int64 differ"},
		{name: "construct of a sequence", op: "SequenceConstruct", in: []*tensor.Tensor{s3}, err: "input 0 is sequence(float32[?]), want a tensor"},
		// SequenceEmpty
		{name: "empty", op: "SequenceEmpty", want: []*tensor.Tensor{seq()}},
		{name: "empty int64", op: "SequenceEmpty", attrs: []*ir.Attr{opstest.Int("dtype", int64(tensor.Int64))}, want: []*tensor.Tensor{seq()}},
		{name: "empty bad dtype", op: "SequenceEmpty", attrs: []*ir.Attr{opstest.Int("dtype", 99)}, err: "not a tensor element type"},
		// SequenceAt
		{name: "at 1", op: "SequenceAt", in: []*tensor.Tensor{s3, i64(1)}, want: []*tensor.Tensor{s3.Elems[1]}},
		{name: "at -1", op: "SequenceAt", in: []*tensor.Tensor{s3, i64(-1)}, want: []*tensor.Tensor{s3.Elems[2]}},
		{name: "at -3", op: "SequenceAt", in: []*tensor.Tensor{s3, i64(-3)}, want: []*tensor.Tensor{s3.Elems[0]}},
		{name: "at int32", op: "SequenceAt", in: []*tensor.Tensor{s3, tensor.Scalar(tensor.Int32, 2)}, want: []*tensor.Tensor{s3.Elems[2]}},
		{name: "at 3 out of range", op: "SequenceAt", in: []*tensor.Tensor{s3, i64(3)}, err: "position 3 is out of range [-3, 2] for a sequence of 3", index: true},
		{name: "at -4 out of range", op: "SequenceAt", in: []*tensor.Tensor{s3, i64(-4)}, err: "position -4 is out of range", index: true},
		{name: "at on empty", op: "SequenceAt", in: []*tensor.Tensor{seq(), i64(0)}, err: "position 0 is out of range [0, -1] for a sequence of 0", index: true},
		{name: "at float position", op: "SequenceAt", in: []*tensor.Tensor{s3, tensor.Scalar(tensor.Float32, 1)}, err: "position is float32[], want int32 or int64"},
		{name: "at two positions", op: "SequenceAt", in: []*tensor.Tensor{s3, vec64(0, 1)}, err: "position must be one int32 or int64"},
		{name: "at of a tensor", op: "SequenceAt", in: []*tensor.Tensor{a, i64(0)}, err: "want a sequence"},
		// SequenceInsert
		{name: "insert at back", op: "SequenceInsert", in: []*tensor.Tensor{seq(a), b}, want: []*tensor.Tensor{seq(a, b)}},
		{name: "insert at front", op: "SequenceInsert", in: []*tensor.Tensor{seq(a), b, i64(0)}, want: []*tensor.Tensor{seq(b, a)}},
		{name: "insert at len", op: "SequenceInsert", in: []*tensor.Tensor{seq(a), b, i64(1)}, want: []*tensor.Tensor{seq(a, b)}},
		{name: "insert at -1", op: "SequenceInsert", in: []*tensor.Tensor{seq(a, a), b, i64(-1)}, want: []*tensor.Tensor{seq(a, b, a)}},
		{name: "insert into empty", op: "SequenceInsert", in: []*tensor.Tensor{seq(), b}, want: []*tensor.Tensor{seq(b)}},
		{name: "insert out of range", op: "SequenceInsert", in: []*tensor.Tensor{seq(a), b, i64(2)}, err: "position 2 is out of range [-1, 1]", index: true},
		{name: "insert mixed types", op: "SequenceInsert", in: []*tensor.Tensor{seq(a), i64(7)}, err: "element types float32 and int64 differ"},
		// SequenceErase
		{name: "erase last", op: "SequenceErase", in: []*tensor.Tensor{s3}, want: []*tensor.Tensor{seq(s3.Elems[0], s3.Elems[1])}},
		{name: "erase 0", op: "SequenceErase", in: []*tensor.Tensor{s3, i64(0)}, want: []*tensor.Tensor{seq(s3.Elems[1], s3.Elems[2])}},
		{name: "erase -2", op: "SequenceErase", in: []*tensor.Tensor{s3, i64(-2)}, want: []*tensor.Tensor{seq(s3.Elems[0], s3.Elems[2])}},
		{name: "erase out of range", op: "SequenceErase", in: []*tensor.Tensor{s3, i64(3)}, err: "position 3 is out of range", index: true},
		{name: "erase from empty", op: "SequenceErase", in: []*tensor.Tensor{seq()}, err: "the sequence is empty", index: true},
		// SequenceLength
		{name: "length", op: "SequenceLength", in: []*tensor.Tensor{s3}, want: []*tensor.Tensor{i64(3)}},
		{name: "length of empty", op: "SequenceLength", in: []*tensor.Tensor{seq()}, want: []*tensor.Tensor{i64(0)}},
		{name: "length of a tensor", op: "SequenceLength", in: []*tensor.Tensor{a}, err: "want a sequence"},
		// SplitToSequence
		{name: "split default", op: "SplitToSequence", in: []*tensor.Tensor{a},
			want: []*tensor.Tensor{seq(f32([]float32{0, 1, 2}, 1, 3), f32([]float32{3, 4, 5}, 1, 3))}},
		{name: "split default no keepdims", op: "SplitToSequence", attrs: []*ir.Attr{opstest.Int("keepdims", 0)}, in: []*tensor.Tensor{a},
			want: []*tensor.Tensor{seq(f32([]float32{0, 1, 2}, 3), f32([]float32{3, 4, 5}, 3))}},
		{name: "split axis -1 no keepdims", op: "SplitToSequence", attrs: []*ir.Attr{opstest.Int("axis", -1), opstest.Int("keepdims", 0)}, in: []*tensor.Tensor{a},
			want: []*tensor.Tensor{seq(f32([]float32{0, 3}, 2), f32([]float32{1, 4}, 2), f32([]float32{2, 5}, 2))}},
		{name: "split scalar 2 of 5", op: "SplitToSequence", in: []*tensor.Tensor{iota32(5), i64(2)},
			want: []*tensor.Tensor{seq(f32([]float32{0, 1}, 2), f32([]float32{2, 3}, 2), f32([]float32{4}, 1))}},
		{name: "split lengths keep the axis", op: "SplitToSequence", attrs: []*ir.Attr{opstest.Int("axis", 1), opstest.Int("keepdims", 0)}, in: []*tensor.Tensor{a, vec64(1, 2)},
			want: []*tensor.Tensor{seq(f32([]float32{0, 3}, 2, 1), f32([]float32{1, 2, 4, 5}, 2, 2))}},
		{name: "split with a zero length", op: "SplitToSequence", in: []*tensor.Tensor{iota32(3), vec64(0, 3)},
			want: []*tensor.Tensor{seq(f32(nil, 0), iota32(3))}},
		{name: "split sum mismatch", op: "SplitToSequence", in: []*tensor.Tensor{iota32(5), vec64(2, 2)}, err: "split [2 2] sums to 4, axis 0 has length 5"},
		{name: "split zero scalar", op: "SplitToSequence", in: []*tensor.Tensor{iota32(5), i64(0)}, err: "split is 0, want a positive length"},
		{name: "split axis out of range", op: "SplitToSequence", attrs: []*ir.Attr{opstest.Int("axis", 2)}, in: []*tensor.Tensor{a}, err: "axis 2 is out of range for rank 2"},
		{name: "split a scalar", op: "SplitToSequence", in: []*tensor.Tensor{i64(3)}, err: "axis 0 is out of range for rank 0"},
		// ConcatFromSequence
		{name: "concat axis 0", op: "ConcatFromSequence", attrs: []*ir.Attr{opstest.Int("axis", 0)}, in: []*tensor.Tensor{seq(a, b)},
			want: []*tensor.Tensor{f32([]float32{0, 1, 2, 3, 4, 5, 0, 1, 2}, 3, 3)}},
		{name: "concat axis -1", op: "ConcatFromSequence", attrs: []*ir.Attr{opstest.Int("axis", -1)}, in: []*tensor.Tensor{seq(iota32(2, 1), iota32(2, 2))},
			want: []*tensor.Tensor{f32([]float32{0, 0, 1, 1, 2, 3}, 2, 3)}},
		{name: "stack new axis 0", op: "ConcatFromSequence", attrs: []*ir.Attr{opstest.Int("axis", 0), opstest.Int("new_axis", 1)}, in: []*tensor.Tensor{seq(iota32(2), f32([]float32{5, 6}, 2))},
			want: []*tensor.Tensor{f32([]float32{0, 1, 5, 6}, 2, 2)}},
		{name: "stack new axis -1", op: "ConcatFromSequence", attrs: []*ir.Attr{opstest.Int("axis", -1), opstest.Int("new_axis", 1)}, in: []*tensor.Tensor{seq(iota32(2), f32([]float32{5, 6}, 2))},
			want: []*tensor.Tensor{f32([]float32{0, 5, 1, 6}, 2, 2)}},
		{name: "stack scalars", op: "ConcatFromSequence", attrs: []*ir.Attr{opstest.Int("axis", 0), opstest.Int("new_axis", 1)}, in: []*tensor.Tensor{seq(i64(1), i64(2))},
			want: []*tensor.Tensor{vec64(1, 2)}},
		{name: "concat empty sequence", op: "ConcatFromSequence", attrs: []*ir.Attr{opstest.Int("axis", 0)}, in: []*tensor.Tensor{seq()}, err: "the sequence is empty (nothing to concatenate)"},
		{name: "concat shapes differ", op: "ConcatFromSequence", attrs: []*ir.Attr{opstest.Int("axis", 0)}, in: []*tensor.Tensor{seq(iota32(2, 3), iota32(2, 2))}, err: "element 1 has shape [2 2], element 0 has [2 3]"},
		{name: "concat ranks differ", op: "ConcatFromSequence", attrs: []*ir.Attr{opstest.Int("axis", 0)}, in: []*tensor.Tensor{seq(iota32(2, 3), iota32(6))}, err: "ranks differ"},
		{name: "stack shapes differ", op: "ConcatFromSequence", attrs: []*ir.Attr{opstest.Int("axis", 0), opstest.Int("new_axis", 1)}, in: []*tensor.Tensor{seq(iota32(2), iota32(3))}, err: "element 1 has shape [3], element 0 has [2]"},
		{name: "concat scalars", op: "ConcatFromSequence", attrs: []*ir.Attr{opstest.Int("axis", 0)}, in: []*tensor.Tensor{seq(i64(1), i64(2))}, err: "axis 0 is out of range for rank 0"},
		{name: "concat axis out of range", op: "ConcatFromSequence", attrs: []*ir.Attr{opstest.Int("axis", 2)}, in: []*tensor.Tensor{seq(a)}, err: "axis 2 is out of range for rank 2"},
		{name: "concat without axis", op: "ConcatFromSequence", in: []*tensor.Tensor{seq(a)}, err: `"axis": required attribute is missing`},
		{name: "concat bad new_axis", op: "ConcatFromSequence", attrs: []*ir.Attr{opstest.Int("axis", 0), opstest.Int("new_axis", 2)}, in: []*tensor.Tensor{seq(a)}, err: "is 2, want 0 or 1"},
		// Optional, OptionalHasElement, OptionalGetElement
		{name: "optional of a tensor", op: "Optional", in: []*tensor.Tensor{a}, want: []*tensor.Tensor{a}},
		{name: "optional of a sequence", op: "Optional", in: []*tensor.Tensor{s3}, want: []*tensor.Tensor{s3}},
		{name: "optional none", op: "Optional", attrs: []*ir.Attr{typeAttr("type", ir.Type{DType: tensor.Float32})}, in: []*tensor.Tensor{nil}, want: []*tensor.Tensor{tensor.NoneOptional()}},
		{name: "optional none without type", op: "Optional", in: []*tensor.Tensor{nil}, err: "needs the type attribute"},
		{name: "has element", op: "OptionalHasElement", in: []*tensor.Tensor{a}, want: []*tensor.Tensor{tensor.Scalar(tensor.Bool, 1)}},
		{name: "has element none", op: "OptionalHasElement", in: []*tensor.Tensor{tensor.NoneOptional()}, want: []*tensor.Tensor{tensor.Scalar(tensor.Bool, 0)}},
		{name: "has element absent", op: "OptionalHasElement", in: []*tensor.Tensor{nil}, want: []*tensor.Tensor{tensor.Scalar(tensor.Bool, 0)}},
		{name: "get element", op: "OptionalGetElement", in: []*tensor.Tensor{s3}, want: []*tensor.Tensor{s3}},
		{name: "get element of none", op: "OptionalGetElement", in: []*tensor.Tensor{tensor.NoneOptional()}, err: "the optional is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nOut := max(tt.nOut, 1)
			n := opstest.Node(tt.op, len(tt.in), nOut, tt.attrs...)
			for i, v := range tt.in {
				if v == nil {
					n.Inputs[i] = nil
				}
			}
			outs, err := exec(n, tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one saying %q", err, tt.err)
				}
				if !errors.Is(err, ops.ErrBadInput) && !errors.Is(err, ops.ErrBadAttr) {
					t.Errorf("error %v wraps neither ops.ErrBadInput nor ops.ErrBadAttr", err)
				}
				if tt.index != errors.Is(err, ops.ErrIndex) {
					t.Errorf("error %v: errors.Is(ops.ErrIndex) = %v, want %v", err, !tt.index, tt.index)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(outs) != len(tt.want) {
				t.Fatalf("%d outputs, want %d", len(outs), len(tt.want))
			}
			for i := range outs {
				if err := same(outs[i], tt.want[i]); err != nil {
					t.Errorf("output %d: %v", i, err)
				}
			}
		})
	}
}
