package ops_test

import (
	"errors"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	_ "github.com/kilnai/kiln/ops/all"
)

// TestParseAttrs: an op's typed attributes come from its definition
// (Def.Attrs), with the opset's defaults, for every device to read; ops
// not typed yet give nil, unknown ops and mistyped attributes an error.
func TestParseAttrs(t *testing.T) {
	node := func(op string, attrs map[string]*ir.Attr) *ir.Node {
		return &ir.Node{Name: "n", OpType: op, Attrs: attrs}
	}
	axis := func(v int64) map[string]*ir.Attr { return map[string]*ir.Attr{"axis": {Type: ir.AttrInt, I: v}} }
	tests := []struct {
		name  string
		n     *ir.Node
		opset int64
		want  any
		err   error
	}{
		{"softmax opset 11 default", node("Softmax", nil), 11, ops.SoftmaxAttrs{Axis: 1, Legacy: true}, nil},
		{"softmax opset 13 default", node("Softmax", nil), 13, ops.SoftmaxAttrs{Axis: -1}, nil},
		{"softmax axis 0", node("Softmax", axis(0)), 13, ops.SoftmaxAttrs{Axis: 0}, nil},
		{"logsoftmax opset 12 axis -1", node("LogSoftmax", axis(-1)), 12, ops.SoftmaxAttrs{Axis: -1, Legacy: true}, nil},
		{"hardmax opset 13 axis 2", node("Hardmax", axis(2)), 13, ops.SoftmaxAttrs{Axis: 2}, nil},
		{"mistyped axis", node("Softmax", map[string]*ir.Attr{"axis": {Type: ir.AttrFloat, F: 1}}), 13, nil, ops.ErrBadAttr},
		{"not typed yet", node("Relu", nil), 13, nil, nil},
		{"unknown op", node("NoSuchOp", nil), 13, nil, ops.ErrUnsupportedOp},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ops.ParseAttrs(tt.n, tt.opset)
			if !errors.Is(err, tt.err) || (tt.err == nil) != (err == nil) {
				t.Fatalf("ParseAttrs: %v, want %v", err, tt.err)
			}
			if err == nil && got != tt.want {
				t.Errorf("ParseAttrs = %#v, want %#v", got, tt.want)
			}
		})
	}
}
