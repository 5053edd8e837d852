package cuda

import (
	"strings"
	"testing"
	"unsafe"
)

// ltLast is what the fake cublasLtMatmul was last given (fakeLtLast).
type ltLast struct {
	epilogue   int32
	bias       uint64
	beta       float32
	c, d       uint64
	sameLayout bool
}

func fakeLtLast(t *testing.T, b *CUBLASLt) ltLast {
	t.Helper()
	fn, err := b.lib.sym("fakeLtLast")
	if err != nil {
		t.Fatal(err)
	}
	var l ltLast
	var same int32
	call(fn, uintptr(unsafe.Pointer(&l.epilogue)), uintptr(unsafe.Pointer(&l.bias)), uintptr(unsafe.Pointer(&l.beta)),
		uintptr(unsafe.Pointer(&l.c)), uintptr(unsafe.Pointer(&l.d)), uintptr(unsafe.Pointer(&same)))
	l.sameLayout = same != 0
	return l
}

// TestLtEpiloguesFake checks, against the fake libcublasLt, the epilogue
// each MatmulOptions sets on the descriptor (bias, bias+ReLU, bias+GELU),
// the bias pointer, and that Run passes beta 0 with C = D while RunC passes
// beta 1 with the residual as C in D's layout.
func TestLtEpiloguesFake(t *testing.T) {
	b, err := OpenCUBLASLt(Options{LibDir: fakeLibraries(t)})
	if err != nil {
		t.Fatal(err)
	}
	h, err := b.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Destroy(h)
	const bias = DevicePtr(0xb1a5)
	tests := []struct {
		name     string
		o        MatmulOptions
		epilogue int32
		bias     uint64
	}{
		{"no epilogue", MatmulOptions{Half: true}, 1, 0},
		{"bias", MatmulOptions{Half: true, Bias: bias}, 4, uint64(bias)},
		{"bias relu", MatmulOptions{Bias: bias, ReLU: true}, 6, uint64(bias)},
		{"bias gelu", MatmulOptions{Half: true, Bias: bias, GELU: true}, 36, uint64(bias)},
		{"bias gelu residual", MatmulOptions{Half: true, Bias: bias, GELU: true, Residual: true}, 36, uint64(bias)},
		{"bias residual transB", MatmulOptions{Half: true, TransB: true, Bias: bias, Residual: true}, 4, uint64(bias)},
		{"residual", MatmulOptions{Residual: true}, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mm, err := b.NewMatmulWith(h, 4, 8, 16, tt.o, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			defer mm.Destroy()
			const a, w, c, y, ws = DevicePtr(0xa0), DevicePtr(0xb0), DevicePtr(0xc0), DevicePtr(0xd0), DevicePtr(0xe0)
			if tt.o.Residual {
				if err := mm.Run(h, a, w, y, ws, mm.Workspace, Stream{}); err == nil || !strings.Contains(err.Error(), "RunC") {
					t.Errorf("Run of a residual product: %v, want an error naming RunC", err)
				}
				if err := mm.RunC(h, a, w, c, y, ws, mm.Workspace, Stream{}); err != nil {
					t.Fatal(err)
				}
			} else {
				if err := mm.RunC(h, a, w, c, y, ws, mm.Workspace, Stream{}); err == nil {
					t.Error("RunC of a product planned without Residual: no error")
				}
				if err := mm.Run(h, a, w, y, ws, mm.Workspace, Stream{}); err != nil {
					t.Fatal(err)
				}
			}
			got := fakeLtLast(t, b)
			want := ltLast{epilogue: tt.epilogue, bias: tt.bias, beta: 0, c: uint64(y), d: uint64(y), sameLayout: true}
			if tt.o.Residual {
				want.beta, want.c = 1, uint64(c)
			}
			if got != want {
				t.Errorf("cublasLtMatmul got %+v, want %+v", got, want)
			}
		})
	}
	if _, err := b.NewMatmulWith(h, 4, 8, 16, MatmulOptions{Bias: bias, ReLU: true, GELU: true}, 1<<20); err == nil {
		t.Error("ReLU and GELU together: no error")
	}
}

// TestLtResidualNoAllocsFake checks that RunC, like Run, does not allocate.
func TestLtResidualNoAllocsFake(t *testing.T) {
	b, err := OpenCUBLASLt(Options{LibDir: fakeLibraries(t)})
	if err != nil {
		t.Fatal(err)
	}
	h, err := b.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Destroy(h)
	mm, err := b.NewMatmulWith(h, 4, 8, 16, MatmulOptions{Half: true, Residual: true}, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer mm.Destroy()
	if n := testing.AllocsPerRun(100, func() { _ = mm.RunC(h, 1, 2, 3, 4, 5, mm.Workspace, Stream{}) }); n != 0 {
		t.Errorf("RunC allocates %v times per call, want 0", n)
	}
}
