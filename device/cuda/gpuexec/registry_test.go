package gpuexec

import (
	"errors"
	"strings"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
)

// TestRegistry checks the kernel registry: every op it has a CUDA kernel
// for is an op kiln defines (no misspelt table entry), and a miss says why.
func TestRegistry(t *testing.T) {
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
