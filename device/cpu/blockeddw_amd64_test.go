//go:build amd64 && !purego

package cpu

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// blockedDWVariantBench compares two settings of the blocked
// depthwise kernels (A: set(false), B: set(true)) on mobilenet_v2's
// depthwise layers at one thread, in alternating rounds.
func blockedDWVariantBench(t *testing.T, set func(bool)) {
	rounds := benchEnv(t)
	defer SetThreads(0)
	defer set(true)
	SetThreads(1)
	for _, l := range mobilenetDW {
		p := Conv2DParams{N: 1, C: l.c, H: l.hw, W: l.hw, M: l.c, KH: 3, KW: 3, Group: l.c, StrideH: l.s, StrideW: l.s,
			DilH: 1, DilW: 1, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1, Act: ActClip, ActMin: 0, ActMax: 6}
		r := rand.New(rand.NewPCG(1, 2))
		x, w, bias := randSlice(r, l.c*l.hw*l.hw), randSlice(r, 9*l.c), randSlice(r, l.c)
		xb := make([]float32, BlockedLen(1, l.c, l.hw*l.hw))
		ToBlocked(1, l.c, l.hw*l.hw, x, xb)
		yb := make([]float32, BlockedLen(1, l.c, p.OutH()*p.OutW()))
		f := PackBlockedFilter(p, false, w)
		abCompare(t, fmt.Sprintf("c%d %d s%d", l.c, l.hw, l.s), rounds, 150*time.Millisecond,
			func() { set(false); BlockedConv2D(f, xb, bias, nil, yb) },
			func() { set(true); BlockedConv2D(f, xb, bias, nil, yb) })
	}
}
