//go:build amd64 && !purego

package cpu

// prefetchPanel asks for lines consecutive 64-byte lines from p to be
// brought into L2 (PREFETCHT1: a hint, no fault, no result); nil where the
// architecture has none in assembly.
var prefetchPanel = prefetchL2

//go:noescape
func prefetchL2(p *float32, lines int)
