package kernels

import "testing"

// TestGatherEven checks the stride-2 gather of the direct convolution's
// input copy, at lengths around the vector blocks, with the assembly and
// in Go.
func TestGatherEven(t *testing.T) {
	for _, asm := range asmModes() {
		setPoolAsm(t, asm)
		for _, n := range []int{0, 1, 15, 16, 17, 31, 32, 33, 100} {
			for _, extra := range []int{-1, 0, 1, 40} { // src of 2n-1, 2n, 2n+1, 2n+40 elements
				m := 2*n + extra
				if n == 0 {
					m = 0
				}
				src := make([]float32, m)
				for i := range src {
					src[i] = float32(i)
				}
				buf := make([]float32, n+16)
				for j := range buf {
					buf[j] = -1
				}
				dst := buf[:n]
				gatherEven(dst, src)
				for j, v := range dst {
					if v != float32(2*j) {
						t.Fatalf("asm=%v n=%d len(src)=%d: dst[%d] = %g, want %d", asm, n, m, j, v, 2*j)
					}
				}
				for j, v := range buf[n:] {
					if v != -1 {
						t.Fatalf("asm=%v n=%d len(src)=%d: wrote %g past dst at %d", asm, n, m, v, j)
					}
				}
			}
		}
	}
}

// TestAddClamp checks the residual-and-clip pass of the direct
// convolution at lengths around the vector width, with the assembly and in
// Go.
func TestAddClamp(t *testing.T) {
	for _, asm := range asmModes() {
		setPoolAsm(t, asm)
		for _, n := range []int{0, 1, 15, 16, 17, 40} {
			a := make([]float32, n)
			z := make([]float32, n)
			for i := range a {
				a[i], z[i] = float32(i)-7, float32(i%3)-1
			}
			for _, clamp := range []bool{false, true} {
				dst := make([]float32, n)
				addClamp(dst, a, z, -2, 9, clamp)
				for i := range dst {
					want := a[i] + z[i]
					if clamp {
						want = min(max(want, -2), 9)
					}
					if dst[i] != want {
						t.Fatalf("asm=%v n=%d clamp=%v: dst[%d] = %g, want %g", asm, n, clamp, i, dst[i], want)
					}
				}
			}
		}
	}
}
