package gpuexec

import (
	"errors"
	"testing"
)

// TestTacticNameRoundTrip: every kind of Tactic tuning makes (tune.go,
// op_conv1x1.go, op_conv1x1_q.go, int8.go) has a name that ParseTactic
// reads back to the same tactic (Sig and NS aside: the plan's header keeps
// the signature beside the name), and names kiln does not make are errors
// wrapping ErrGraph.
func TestTacticNameRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		t    Tactic
		name string
	}{
		{Tactic{Impl: ImplKernel}, "kernel"},
		{Tactic{Impl: ImplCUDNN, Algo: 1, Math: 3}, "cudnn:algo=1,math=3"},
		{Tactic{Impl: ImplCUDNN, Algo: 0, Math: 0}, "cudnn:algo=0,math=0"},
		{Tactic{Impl: ImplCUDNN, Algo: 7, Math: 1, Fused: true}, "cudnn-fused:algo=7,math=1"},
		{Tactic{Impl: ImplCUDNN, Graph: "eng12_k3=1_k5=0"}, "cudnn-graph:eng12_k3=1_k5=0"},
		{Tactic{Impl: ImplCUDNN, Graph: "eng0", Quant: "int8"}, "cudnn-int8-graph:eng0"},
		{Tactic{Impl: ImplCUDNN, Graph: "eng3_k1=2", Quant: "fp8"}, "cudnn-fp8-graph:eng3_k1=2"},
		{Tactic{Impl: ImplCUDNN, Graph: "eng4", Quant: "int8-scaled"}, "cudnn-int8-scaled-graph:eng4"},
		{Tactic{Impl: ImplCUDNN, Graph: "eng5", Quant: "fp8-scaled"}, "cudnn-fp8-scaled-graph:eng5"},
		{Tactic{Impl: ImplCUBLASLt, Algo: 0}, "cublaslt:0"},
		{Tactic{Impl: ImplCUBLASLt, Algo: 2, Epi: true}, "cublaslt-epilogue:2"},
		{Tactic{Impl: ImplCUBLASLt, Cfg: "algo=66 tile=20 stages=8 swizzle=0 cluster=2"}, "cublaslt:cfg=algo=66 tile=20 stages=8 swizzle=0 cluster=2"},
		{Tactic{Impl: ImplCUBLASLt, Epi: true, Cfg: "algo=43 tile=15 stages=0 swizzle=1 cluster=0 splitk=4 reduction=1"}, "cublaslt-epilogue:cfg=algo=43 tile=15 stages=0 swizzle=1 cluster=0 splitk=4 reduction=1"},
		{Tactic{Impl: ImplCUBLASLt, Algo: 1, Epi: true, Quant: quantLtFP8}, "cublaslt-fp8-lt:1"},
		{Tactic{Impl: ImplCUBLASLt, Algo: 0, Epi: true, Quant: quantLtFP8Fast}, "cublaslt-fp8-lt-fast:0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.t.name(); got != tc.name {
				t.Fatalf("name %q, want %q", got, tc.name)
			}
			back, err := ParseTactic(tc.name)
			if err != nil {
				t.Fatal(err)
			}
			if back != tc.t {
				t.Errorf("ParseTactic(%q) = %+v, want %+v", tc.name, back, tc.t)
			}
			// Sig and NS are not part of the name.
			withSig := tc.t
			withSig.Sig, withSig.NS = "cuda gemm m=1", 42
			if withSig.name() != tc.name {
				t.Errorf("the signature or time changes the name: %q", withSig.name())
			}
		})
	}
	for _, bad := range []string{
		"", "kernels", "cudnn", "cudnn:algo=1", "cudnn:algo=1,math=", "cudnn:algo=-1,math=0", "cudnn:algo=01,math=1",
		"cudnn:math=1,algo=1", "cudnn-graph:", "cudnn--graph:eng1", "cudnn-int8-graph:", "cublaslt:", "cublaslt:-1",
		"cublaslt:x", "cublaslt:cfg=", "cublaslt-fp8-lt:", "cublaslt-fp8-lt:cfg=algo=1", "cublas:1", "cpu:gemm",
		"cudnn-fused-graph:eng1", "cudnn-int4-graph:eng1", "cublaslt-fp16:1",
	} {
		if got, err := ParseTactic(bad); !errors.Is(err, ErrGraph) {
			t.Errorf("ParseTactic(%q) = %+v, %v; want an error wrapping ErrGraph", bad, got, err)
		}
	}
}
