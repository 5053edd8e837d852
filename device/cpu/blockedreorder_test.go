package cpu

import (
	"fmt"
	"testing"
)

// TestBlockedReorderShapes round-trips ToBlocked and FromBlocked over
// every kernel of this CPU on shapes that take the transposes, their
// edges and the parallel path: odd channel counts (pad lanes must be 0
// whatever y held), planes not a multiple of 16 pixels, batches, and
// planes past one segment of the parallel split.
func TestBlockedReorderShapes(t *testing.T) {
	saved := active
	defer func() { active = saved }()
	for _, k := range kernels() {
		active = k
		for _, s := range [][3]int{{1, 3, 5}, {2, 16, 4}, {1, 40, 9}, {3, 17, 1}, {1, 16, 16}, {2, 33, 37},
			{1, 3, 224 * 224}, {2, 64, 56 * 56}, {1, 1280, 49}, {1, 24, 2049}, {3, 5, 4099}, {1, 32, 17}} {
			n, c, hw := s[0], s[1], s[2]
			t.Run(fmt.Sprintf("%s/%v", k.name, s), func(t *testing.T) {
				x := make([]float32, n*c*hw)
				for i := range x {
					x[i] = float32(i + 1)
				}
				b := make([]float32, BlockedLen(n, c, hw))
				for i := range b {
					b[i] = -1
				}
				ToBlocked(n, c, hw, x, b)
				for i, v := range b {
					img, blk, pix, l := i/(Blocks(c)*hw*Block), (i/(hw*Block))%Blocks(c), (i/Block)%hw, i%Block
					want := float32(0)
					if ch := blk*Block + l; ch < c {
						want = x[(img*c+ch)*hw+pix]
					}
					if v != want {
						t.Fatalf("blocked element %d (image %d, block %d, pixel %d, lane %d) is %g, want %g", i, img, blk, pix, l, v, want)
					}
				}
				y := make([]float32, len(x)+1)
				y[len(x)] = 42
				FromBlocked(n, c, hw, b, y[:len(x)])
				for i := range x {
					if x[i] != y[i] {
						t.Fatalf("element %d: %g after the round trip, want %g", i, y[i], x[i])
					}
				}
				if y[len(x)] != 42 {
					t.Fatalf("FromBlocked wrote past y")
				}
			})
		}
	}
}
