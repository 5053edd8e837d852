//go:build !amd64

package ops

// useF16C is false off amd64: the conversions run in Go.
var useF16C = false

func f16cWiden(dst *float32, src *uint16, n int)  { panic("ops: no F16C") }
func f16cNarrow(dst *uint16, src *float32, n int) { panic("ops: no F16C") }
