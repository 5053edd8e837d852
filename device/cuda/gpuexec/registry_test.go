package gpuexec

import (
	"errors"
	"strings"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// TestRegistry checks the kernel registry: every op it has a CUDA kernel
// for is an op kiln defines (no misspelt table entry), and a miss says why.
func TestRegistry(t *testing.T) {
	WithoutKernel(t, "LpNormalization") // an op the GPU lacks
	n := 0
	for k, defs := range registry {
		if _, ok := ops.Lookup(k.domain, k.op); !ok {
			t.Errorf("registry has %s::%s, which package ops does not define", k.domain, k.op)
		}
		for _, d := range defs {
			if d.emit == nil {
				t.Errorf("%s has no emit", k.op)
			}
		}
		n++
	}
	t.Logf("%d op types have CUDA kernels", n)
	tests := []struct {
		node  *ir.Node
		opset int64
		want  string // "" when found
	}{
		{&ir.Node{OpType: "Conv"}, 17, ""},
		{&ir.Node{OpType: "ConvTranspose"}, 11, ""},
		{&ir.Node{OpType: "Scatter"}, 9, ""},
		{&ir.Node{OpType: "Scatter"}, 13, "op Scatter of opset 13 (CUDA kernels cover opsets up to 10)"},
		{&ir.Node{OpType: "LpNormalization"}, 17, "op LpNormalization has no CUDA implementation"},
		{&ir.Node{Domain: "kiln", OpType: "FusedConv"}, 17, ""},
		{&ir.Node{Domain: "kiln", OpType: "Conv"}, 17, "op kiln::Conv has no CUDA implementation"},
	}
	for _, tt := range tests {
		_, err := registry.lookup(tt.node, tt.opset)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s at opset %d: %v", opName(tt.node), tt.opset, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrUnsupported)):
			t.Errorf("%s at opset %d: %v, want %q", opName(tt.node), tt.opset, err, tt.want)
		}
	}
}

// TestRegistryOverlap checks that two kernels of one op over overlapping
// opsets are refused.
func TestRegistryOverlap(t *testing.T) {
	emit := func(*compiler, *step) error { return nil }
	defer func() {
		if recover() == nil {
			t.Error("overlapping opset ranges were accepted")
		}
	}()
	newRegistry([]kernelDef{{op: "X", until: 12, emit: emit}}, []kernelDef{{op: "X", since: 11, emit: emit}})
}

// TestSupportsShapeInputs checks that ops whose output shape comes from an
// input run on the GPU only when that input folds once shapes are bound:
// the same Expand and Tile with a constant and with a computed input.
func TestSupportsShapeInputs(t *testing.T) {
	for _, op := range []string{"Expand", "Tile"} {
		for _, computed := range []bool{false, true} {
			b := ir.NewBuilder("shape", 17)
			x := b.Input("x", tensor.Float32, ir.S("n"), ir.D(1))
			arg := b.Const("s", tensor.FromInt64([]int64{2, 3}, 2))
			if computed {
				arg = b.Op("Cast", []*ir.Value{b.Op("ArgMax", []*ir.Value{b.Input("v", tensor.Float32, ir.D(2), ir.D(4))}, ir.IntAttr("axis", 1), ir.IntAttr("keepdims", 0))}, ir.IntAttr("to", int64(tensor.Int64)))
			}
			y := b.Op(op, []*ir.Value{x, arg})
			b.Output(y, "y")
			g := b.Graph()
			if _, err := ops.InferGraph(g); err != nil {
				t.Fatal(err)
			}
			err := Supports(y.Producer, g)
			switch {
			case !computed && err != nil:
				t.Errorf("%s with a constant: %v", op, err)
			case computed && (err == nil || !strings.Contains(err.Error(), "computed at run time")):
				t.Errorf("%s with a computed input: %v, want a refusal", op, err)
			}
		}
	}
}
