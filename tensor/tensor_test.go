package tensor

import (
	"math"
	"testing"
	"unsafe"
)

func TestHalfRoundTrip(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		f := HalfToFloat32(uint16(h))
		if f != f {
			continue
		}
		if got := Float32ToHalf(f); got != uint16(h) {
			t.Fatalf("half %#04x -> %g -> %#04x", h, f, got)
		}
	}
}

func TestHalfRounding(t *testing.T) {
	tests := []struct {
		in   float32
		want uint16
	}{
		{1, 0x3c00}, {-2, 0xc000}, {65504, 0x7bff}, {65520, 0x7c00}, {1e-8, 0},
		{float32(math.Inf(1)), 0x7c00}, {5.960464477539063e-08, 0x0001}, {0.333333, 0x3555},
	}
	for _, tt := range tests {
		if got := Float32ToHalf(tt.in); got != tt.want {
			t.Errorf("Float32ToHalf(%g) = %#04x, want %#04x", tt.in, got, tt.want)
		}
	}
}

func TestBF16(t *testing.T) {
	if got := BF16ToFloat32(Float32ToBF16(1.5)); got != 1.5 {
		t.Fatalf("bf16 1.5 -> %g", got)
	}
	if got := Float32ToBF16(1.00390625); got != 0x3f80 { // halfway rounds to even
		t.Fatalf("got %#x", got)
	}
}

func TestAlignedAndViews(t *testing.T) {
	for _, n := range []int{1, 3, 64, 1000} {
		b := AlignedBytes(n)
		if len(b) != n || uintptr(unsafe.Pointer(&b[0]))%Alignment != 0 {
			t.Fatalf("AlignedBytes(%d) misaligned or wrong length", n)
		}
	}
	x := FromFloat32([]float32{1, 2, 3, 4, 5, 6}, 2, 3)
	if x.Len() != 6 || x.Float(4) != 5 {
		t.Fatalf("bad tensor %v", x)
	}
	y, err := x.Reshape([]int{3, 2})
	if err != nil || y.Float32s()[5] != 6 {
		t.Fatalf("reshape: %v %v", y, err)
	}
	if _, err := x.Reshape([]int{4}); err == nil {
		t.Fatal("reshape to wrong size succeeded")
	}
	if _, err := Make(Float32, []int{-1}); err == nil {
		t.Fatal("negative dim accepted")
	}
	if _, err := Make(Float32, []int{1 << 30, 1 << 30, 4}); err == nil {
		t.Fatal("huge shape accepted")
	}
}

func TestConversions(t *testing.T) {
	for _, dt := range []DType{Float32, Float64, Float16, BFloat16, Int8, Int16, Int32, Int64, Uint8, Uint16, Uint32, Uint64, Bool} {
		x := New(dt, 2)
		x.SetFloat(1, 1)
		if x.Float(1) != 1 || x.Int(1) != 1 {
			t.Errorf("%v: set/get 1 gave %g", dt, x.Float(1))
		}
	}
}
