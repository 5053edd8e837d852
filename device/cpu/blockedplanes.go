package cpu

// FromBlockedBlock writes the first lanes channels of one channel block
// blk, [np][Block], into plain: channel l's np pixels at plain[l*np:]
// (the AVX-512 transposes of the reorders, for callers that move one block
// at a time through a scratch that stays in cache).
func FromBlockedBlock(blk, plain []float32, np, lanes int) {
	if np <= 0 || lanes <= 0 {
		return
	}
	_ = blk[np*Block-1]
	_ = plain[lanes*np-1]
	reorderFrom(blk, plain, np, np, lanes)
}

// ToBlockedBlock writes plain, lanes channels of np pixels (channel l's at
// plain[l*np:]), into one channel block blk, [np][Block], its lanes from
// lanes on zero.
func ToBlockedBlock(plain, blk []float32, np, lanes int) {
	if np <= 0 {
		return
	}
	_ = blk[np*Block-1]
	if lanes > 0 {
		_ = plain[lanes*np-1]
	}
	reorderTo(blk, plain, np, np, lanes)
}
