//go:build !amd64 || purego

package nn

// blockedPoolAsm says whether an assembly kernel of the blocked pools runs.
const blockedPoolAsm = false

func blockedPoolRow(dst, src []float32, n, kh, kw, sx, rs, cs int, avg bool, scale float32) {
	blockedPoolRowGo(dst, src, n, kh, kw, sx, rs, cs, avg, scale)
}
