//go:build !amd64 || purego

package cpu

// BlockedPoolAsm says whether an assembly form of BlockedPoolRow runs.
const BlockedPoolAsm = false

// BlockedPoolRow is BlockedPoolRowGo (no assembly form on this machine).
func BlockedPoolRow(dst, src []float32, n, kh, kw, sx, rs, cs int, avg bool, scale float32) {
	BlockedPoolRowGo(dst, src, n, kh, kw, sx, rs, cs, avg, scale)
}
