package cuda

import (
	"errors"
	"strings"
	"testing"
	"unsafe"
)

// ltLastFP8 is what the fake cublasLtMatmul's FP8 attributes were last
// (fakeLtLastFP8).
type ltLastFP8 struct {
	types                   [4]int32  // A, B, C, D
	scale                   [4]uint64 // A, B, D scale pointers, AMAX_D pointer
	biasType, fast, transa  int32
	epilogue                int32
	bias                    uint64
	beta                    float32
	c, d                    uint64
	sameLayoutForCAndDOfFP8 bool
}

func fakeLtLastFP8(t *testing.T, b *CUBLASLt) ltLastFP8 {
	t.Helper()
	fn, err := b.lib.sym("fakeLtLastFP8")
	if err != nil {
		t.Fatal(err)
	}
	var l ltLastFP8
	call(fn, uintptr(unsafe.Pointer(&l.types[0])), uintptr(unsafe.Pointer(&l.scale[0])), uintptr(unsafe.Pointer(&l.biasType)),
		uintptr(unsafe.Pointer(&l.fast)), uintptr(unsafe.Pointer(&l.transa)))
	last := fakeLtLast(t, b)
	l.epilogue, l.bias, l.beta, l.c, l.d, l.sameLayoutForCAndDOfFP8 = last.epilogue, last.bias, last.beta, last.c, last.d, last.sameLayout
	return l
}

// TestLtFP8Fake checks, against the fake libcublasLt, the descriptor and
// layouts NewMatmulFP8 makes for each option: E4M3 A and B in the TN form
// (TRANSA set: cuBLASLt's A is the weights), a half C, D half or E4M3, the
// scale pointers on the right operands (cuBLASLt's A scale is W's, its B
// scale X's), the bias as half with the BIAS / RELU_BIAS / RELU epilogue,
// FAST_ACCUM, beta 1 with the residual through RunC, and a C layout of its
// own when D is FP8.
func TestLtFP8Fake(t *testing.T) {
	b, err := OpenCUBLASLt(Options{LibDir: fakeLibraries(t)})
	if err != nil {
		t.Fatal(err)
	}
	h, err := b.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Destroy(h)
	const xs, ws, ys, amax, bias = DevicePtr(0x5a), DevicePtr(0x5b), DevicePtr(0x5d), DevicePtr(0xa3), DevicePtr(0xb1a5)
	const e4m3, half = 28, 2
	tests := []struct {
		name     string
		o        FP8MatmulOptions
		epilogue int32
		dType    int32
	}{
		{"plain", FP8MatmulOptions{XScale: xs, WScale: ws}, 1, half},
		{"bias", FP8MatmulOptions{XScale: xs, WScale: ws, Bias: bias}, 4, half},
		{"bias relu", FP8MatmulOptions{XScale: xs, WScale: ws, Bias: bias, ReLU: true}, 6, half},
		{"relu", FP8MatmulOptions{ReLU: true}, 2, half},
		{"bias relu residual", FP8MatmulOptions{XScale: xs, WScale: ws, Bias: bias, ReLU: true, Residual: true}, 6, half},
		{"bias relu fp8 out", FP8MatmulOptions{XScale: xs, WScale: ws, Bias: bias, ReLU: true, OutFP8: true, YScale: ys, Amax: amax}, 6, e4m3},
		{"residual fp8 out fast", FP8MatmulOptions{XScale: xs, WScale: ws, Bias: bias, Residual: true, OutFP8: true, YScale: ys, FastAccum: true}, 4, e4m3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mm, err := b.NewMatmulFP8(h, 64, 256, 128, tt.o, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			defer mm.Destroy()
			if len(mm.Candidates) != 3 || mm.Candidates[0].ID != 42 {
				t.Errorf("candidates %+v, want the fake's 3 (42 first)", mm.Candidates)
			}
			const x, w, c, y, wsp = DevicePtr(0xa0), DevicePtr(0xb0), DevicePtr(0xc0), DevicePtr(0xd0), DevicePtr(0xe0)
			if tt.o.Residual {
				err = mm.RunC(h, x, w, c, y, wsp, mm.Workspace, Stream{})
			} else {
				err = mm.Run(h, x, w, y, wsp, mm.Workspace, Stream{})
			}
			if err != nil {
				t.Fatal(err)
			}
			got := fakeLtLastFP8(t, b)
			want := ltLastFP8{types: [4]int32{e4m3, e4m3, half, tt.dType},
				scale:    [4]uint64{uint64(tt.o.WScale), uint64(tt.o.XScale), uint64(tt.o.YScale), uint64(tt.o.Amax)},
				transa:   1,
				epilogue: tt.epilogue, bias: uint64(tt.o.Bias), c: uint64(y), d: uint64(y),
				sameLayoutForCAndDOfFP8: false, // C always has its own (half) layout
			}
			if tt.o.Bias != 0 {
				want.biasType = half
			}
			if tt.o.FastAccum {
				want.fast = 1
			}
			if tt.o.Residual {
				want.beta, want.c = 1, uint64(c)
			} else if tt.o.OutFP8 {
				want.c = 0 // no C: it would alias D in another type
			}
			if got != want {
				t.Errorf("cublasLtMatmul got\n%+v, want\n%+v", got, want)
			}
		})
	}
}

// TestLtFP8RefusedFake checks that the products cuBLASLt's FP8 rules do not
// allow are refused before the library is asked, with ErrFP8Unsupported
// and a message naming the rule.
func TestLtFP8RefusedFake(t *testing.T) {
	b, err := OpenCUBLASLt(Options{LibDir: fakeLibraries(t)})
	if err != nil {
		t.Fatal(err)
	}
	h, err := b.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Destroy(h)
	tests := []struct {
		name    string
		m, n, k int
		o       FP8MatmulOptions
		want    string
	}{
		{"K not a multiple of 16", 64, 64, 72, FP8MatmulOptions{}, "K must be a multiple of 16"},
		{"N not a multiple of 16", 64, 40, 64, FP8MatmulOptions{}, "N must be a multiple of 16"},
		{"empty", 0, 64, 64, FP8MatmulOptions{}, "positive"},
		{"D scale on a half D", 64, 64, 64, FP8MatmulOptions{YScale: 0x10}, "FP8 output only"},
		{"amax on a half D", 64, 64, 64, FP8MatmulOptions{Amax: 0x10}, "AMAX_D"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mm, err := b.NewMatmulFP8(h, tt.m, tt.n, tt.k, tt.o, 1<<20)
			if err == nil {
				mm.Destroy()
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrFP8Unsupported) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want ErrFP8Unsupported naming %q", err, tt.want)
			}
		})
	}
	for _, cc := range []struct {
		major, minor int
		want         bool
	}{{7, 5, false}, {8, 0, false}, {8, 6, false}, {8, 9, true}, {9, 0, true}, {10, 0, true}} {
		if got := FP8Capable(cc.major, cc.minor); got != cc.want {
			t.Errorf("FP8Capable(%d, %d) = %v, want %v", cc.major, cc.minor, got, cc.want)
		}
	}
}
