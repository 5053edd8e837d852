package cuda

import (
	"errors"
	"math"
	"strings"
	"testing"
	"unsafe"
)

// ltLastInt8 is what the fake cublasLtMatmul's INT8 attributes were last.
type ltLastInt8 struct {
	types         [4]int32 // A, B, C, D
	compute, mode int32
	alpha         uint64
	beta          float32
	transa, epi   int32
	bias, c, d    uint64
	biasType      int32 // must stay unset (0)
}

func fakeLtLastInt8(t *testing.T, b *CUBLASLt) ltLastInt8 {
	t.Helper()
	fn, err := b.lib.sym("fakeLtLastInt8")
	if err != nil {
		t.Fatal(err)
	}
	var l ltLastInt8
	call(fn, uintptr(unsafe.Pointer(&l.compute)), uintptr(unsafe.Pointer(&l.mode)), uintptr(unsafe.Pointer(&l.alpha)), uintptr(unsafe.Pointer(&l.beta)))
	f8 := fakeLtLastFP8(t, b)
	l.types, l.transa, l.epi, l.bias, l.c, l.d, l.biasType = f8.types, f8.transa, f8.epilogue, f8.bias, f8.c, f8.d, f8.biasType
	return l
}

// TestLtInt8Fake checks, against the fake libcublasLt, the descriptor,
// layouts and call NewMatmulInt8 and Run make for each option: compute type
// CUBLAS_COMPUTE_32I (72) with float32 scales, A, B, C and D CUDA_R_8I (3)
// in the TN form (TRANSA set: cuBLASLt's A is the weights), the pointer
// mode (4: ALPHA_DEVICE_VECTOR_BETA_HOST, 3: _BETA_ZERO, 0: HOST), the
// alpha vector's address passed as alpha, beta the residual's scale ratio
// with C the residual, the float32 bias (no BIAS_DATA_TYPE set) with the
// BIAS / RELU_BIAS / RELU epilogue.
func TestLtInt8Fake(t *testing.T) {
	b, err := OpenCUBLASLt(Options{LibDir: fakeLibraries(t)})
	if err != nil {
		t.Fatal(err)
	}
	h, err := b.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Destroy(h)
	const i8 = 3
	const alpha, bias = DevicePtr(0xa1fa), DevicePtr(0xb1a5)
	const x, w, c, y, wsp = DevicePtr(0xa0), DevicePtr(0xb0), DevicePtr(0xc0), DevicePtr(0xd0), DevicePtr(0xe0)
	tests := []struct {
		name     string
		o        Int8MatmulOptions
		epilogue int32
		mode     int32
		alpha    uint64
		beta     float32
		c        uint64
	}{
		{"vector alpha", Int8MatmulOptions{}, 1, 4, uint64(alpha), 0, uint64(y)},
		{"bias relu", Int8MatmulOptions{Bias: bias, ReLU: true}, 6, 4, uint64(alpha), 0, uint64(y)},
		{"bias relu beta zero", Int8MatmulOptions{Alpha: AlphaVectorBetaZero, Bias: bias, ReLU: true}, 6, 3, uint64(alpha), 0, uint64(y)},
		{"bias", Int8MatmulOptions{Bias: bias}, 4, 4, uint64(alpha), 0, uint64(y)},
		{"relu", Int8MatmulOptions{ReLU: true}, 2, 4, uint64(alpha), 0, uint64(y)},
		{"residual bias relu", Int8MatmulOptions{Bias: bias, ReLU: true, Residual: true, Beta: 0.75}, 6, 4, uint64(alpha), 0.75, uint64(c)},
		{"host alpha", Int8MatmulOptions{Alpha: AlphaHost, HostAlpha: 0.125}, 1, 0, uint64(math.Float32bits(0.125)), 0, uint64(y)},
		{"host alpha residual", Int8MatmulOptions{Alpha: AlphaHost, Residual: true, Beta: 2}, 1, 0, uint64(math.Float32bits(1)), 2, uint64(c)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mm, err := b.NewMatmulInt8(h, 64, 256, 128, tt.o, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			defer mm.Destroy()
			if len(mm.Candidates) != 3 || mm.Candidates[0].ID != 42 {
				t.Errorf("candidates %+v, want the fake's 3 (42 first)", mm.Candidates)
			}
			cc := DevicePtr(0)
			if tt.o.Residual {
				cc = c
			}
			if err := mm.Run(h, x, w, alpha, cc, y, wsp, mm.Workspace, Stream{}); err != nil {
				t.Fatal(err)
			}
			got := fakeLtLastInt8(t, b)
			want := ltLastInt8{types: [4]int32{i8, i8, i8, i8}, compute: 72, mode: tt.mode, alpha: tt.alpha, beta: tt.beta,
				transa: 1, epi: tt.epilogue, bias: uint64(tt.o.Bias), c: tt.c, d: uint64(y)}
			if got != want {
				t.Errorf("cublasLtMatmul got\n%+v, want\n%+v", got, want)
			}
			// the second candidate runs too
			if err := mm.UseCandidate(1); err != nil {
				t.Fatal(err)
			}
			if err := mm.Run(h, x, w, alpha, cc, y, wsp, mm.Workspace, Stream{}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestLtInt8RefusedFake checks that INT8 products cuBLASLt's rules do not
// allow are refused before the library is asked (ErrInt8Unsupported, the
// rule named), and that Run refuses a missing C, an unplanned C, a missing
// alpha vector and RunC.
func TestLtInt8RefusedFake(t *testing.T) {
	b, err := OpenCUBLASLt(Options{LibDir: fakeLibraries(t)})
	if err != nil {
		t.Fatal(err)
	}
	h, err := b.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Destroy(h)
	for _, tt := range []struct {
		name    string
		m, n, k int
		o       Int8MatmulOptions
		want    string
	}{
		{"K not a multiple of 4", 64, 64, 70, Int8MatmulOptions{}, "K must be a multiple of 4"},
		{"N not a multiple of 4", 64, 42, 64, Int8MatmulOptions{}, "N must be a multiple of 4"},
		{"empty", 64, 0, 64, Int8MatmulOptions{}, "positive"},
		{"residual without beta", 64, 64, 64, Int8MatmulOptions{Residual: true}, "beta 0"},
		{"residual with beta zero mode", 64, 64, 64, Int8MatmulOptions{Residual: true, Beta: 1, Alpha: AlphaVectorBetaZero}, "BETA_ZERO"},
		{"unknown mode", 64, 64, 64, Int8MatmulOptions{Alpha: 9}, "alpha mode 9"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			mm, err := b.NewMatmulInt8(h, tt.m, tt.n, tt.k, tt.o, 1<<20)
			if err == nil {
				mm.Destroy()
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrInt8Unsupported) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want ErrInt8Unsupported naming %q", err, tt.want)
			}
		})
	}
	mm, err := b.NewMatmulInt8(h, 64, 64, 64, Int8MatmulOptions{Residual: true, Beta: 1}, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer mm.Destroy()
	if err := mm.Run(h, 1, 2, 3, 0, 5, 6, mm.Workspace, Stream{}); err == nil || !strings.Contains(err.Error(), "needs C") {
		t.Errorf("Run without C: %v", err)
	}
	if err := mm.Run(h, 1, 2, 0, 4, 5, 6, mm.Workspace, Stream{}); err == nil || !strings.Contains(err.Error(), "no alpha vector") {
		t.Errorf("Run without alpha: %v", err)
	}
	if err := mm.RunC(h, 1, 2, 3, 4, 5, mm.Workspace, Stream{}); err == nil {
		t.Error("RunC of an INT8 product: no error")
	}
	plain, err := b.NewMatmulInt8(h, 64, 64, 64, Int8MatmulOptions{}, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Destroy()
	if err := plain.Run(h, 1, 2, 3, 4, 5, 6, plain.Workspace, Stream{}); err == nil || !strings.Contains(err.Error(), "without Residual") {
		t.Errorf("Run with an unplanned C: %v", err)
	}
}
