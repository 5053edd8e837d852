package ops

import (
	"math"
	"testing"

	"github.com/kilnai/kiln/tensor"
)

// TestFloat16ConversionsGo checks the Go conversions (the ones used
// without F16C, and for the tails) and the F16C ones against package
// tensor's (saturating finite overflow), on every float16 value and on
// float32 bit patterns spread over all 2^32.
func TestFloat16ConversionsGo(t *testing.T) {
	defer func(v bool) { useF16C = v }(useF16C)
	for _, f16c := range []bool{false, useF16C} {
		if f16c && !useF16C {
			continue
		}
		useF16C = f16c
		h := tensor.New(tensor.Float16, 1<<16)
		for i := range h.Halfs() {
			h.Halfs()[i] = uint16(i)
		}
		w := widenHalf(h)
		for i, f := range w.Float32s() {
			want := tensor.HalfToFloat32(uint16(i))
			if math.Float32bits(f) != math.Float32bits(want) && !(f != f && want != want) {
				t.Fatalf("F16C %v: half %#04x widened to %g, want %g", f16c, i, f, want)
			}
		}
		var vals []float32
		for u := uint64(0); u < 1<<32; u += 65521 {
			vals = append(vals, math.Float32frombits(uint32(u)))
		}
		n, err := narrowFloat32(nil, tensor.FromFloat32(vals, len(vals)))
		if err != nil {
			t.Fatal(err)
		}
		for i, f := range vals {
			want := tensor.Float32ToHalf(f)
			if f == f && !math.IsInf(float64(f), 0) && want&0x7fff == 0x7c00 {
				want = want&0x8000 | 0x7bff // saturated
			}
			got := n.Halfs()[i]
			if got != want && !(f != f && got&0x7c00 == 0x7c00 && got&0x3ff != 0) {
				t.Fatalf("F16C %v: %#08x narrowed to %#04x, want %#04x", f16c, math.Float32bits(f), got, want)
			}
		}
	}
}
