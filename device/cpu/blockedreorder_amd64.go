//go:build amd64 && !purego

package cpu

//go:generate go run gen_blockedreorder_amd64.go

// reorderAsm runs the whole tiles of 16 pixels of a reorder (see
// reorderTo and reorderFrom) with the AVX-512 transposes of
// blockedreorder_amd64.s, and the last np%16 pixels in Go. It reports
// false, doing nothing, where the AVX-512 kernel is not active or np < 16.
func reorderAsm(blk, plain []float32, hw, np, lanes int, to bool) bool {
	nt := np / Block
	if active != avx512Kernel || nt == 0 || lanes < 1 {
		return false
	}
	// the last lane's row must hold the tiles' pixels
	_ = blk[np*Block-1]
	_ = plain[(lanes-1)*hw+np-1]
	if to {
		reorderToAVX512(&blk[0], &plain[0], 4*hw, nt, lanes)
	} else {
		reorderFromAVX512(&blk[0], &plain[0], 4*hw, nt, lanes)
	}
	if t := nt * Block; t < np {
		if to {
			reorderTo(blk[t*Block:], plain[t:], hw, np-t, lanes)
		} else {
			reorderFrom(blk[t*Block:], plain[t:], hw, np-t, lanes)
		}
	}
	return true
}

//go:noescape
func reorderToAVX512(blk, plain *float32, hw4, ntiles, lanes int)

//go:noescape
func reorderFromAVX512(blk, plain *float32, hw4, ntiles, lanes int)
