//go:build amd64

package ops

import "golang.org/x/sys/cpu"

// useF16C says whether the float16 conversions may use the F16C
// instructions (VCVTPH2PS, VCVTPS2PH).
var useF16C = cpu.X86.HasF16C && cpu.X86.HasAVX

// f16cWiden converts n float16 values at src to float32 at dst; n is a
// positive multiple of 8.
//
//go:noescape
func f16cWiden(dst *float32, src *uint16, n int)

// f16cNarrow converts n float32 values at src to float16 at dst, rounding
// to nearest even; n is a positive multiple of 8.
//
//go:noescape
func f16cNarrow(dst *uint16, src *float32, n int)
