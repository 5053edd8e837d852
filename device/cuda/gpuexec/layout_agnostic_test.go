package gpuexec

import (
	"slices"
	"sort"
	"testing"
)

// TestLayoutAgnosticKernels: the CUDA kernels that declare layoutAgnostic
// are exactly the ops of the list the layout pass kept before it was a
// property of the kernel registry's entries.
func TestLayoutAgnosticKernels(t *testing.T) {
	want := []string{"::Add", "::Clip", "::Div", "::Gelu", "::HardSigmoid", "::HardSwish", "::LeakyRelu", "::Max",
		"::Mean", "::Min", "::Mul", "::Relu", "::Sigmoid", "::Sub", "::Sum", "::Tanh", "kiln::Gelu"}
	var got []string
	for k, defs := range registry {
		for _, d := range defs {
			if d.layoutAgnostic {
				got = append(got, k.domain+"::"+k.op)
			}
		}
	}
	sort.Strings(got)
	if !slices.Equal(got, want) {
		t.Errorf("layout-agnostic CUDA kernels: %v, want %v", got, want)
	}
}
