package nn

import (
	"fmt"
	"testing"

	"github.com/kilnai/kiln/ops"
)

// TestGemmBroadcastsTo checks Gemm's in-place check of C's shape against
// ops.BroadcastShape's result being [m, n].
func TestGemmBroadcastsTo(t *testing.T) {
	for _, tc := range []struct {
		c    []int
		m, n int
		want bool
	}{
		{[]int{}, 3, 4, true},
		{[]int{4}, 3, 4, true},
		{[]int{1}, 3, 4, true},
		{[]int{3}, 3, 4, false},
		{[]int{3, 4}, 3, 4, true},
		{[]int{1, 4}, 3, 4, true},
		{[]int{3, 1}, 3, 4, true},
		{[]int{1, 1}, 3, 4, true},
		{[]int{4, 3}, 3, 4, false},
		{[]int{5, 4}, 1, 4, false}, // would broadcast m up: not allowed
		{[]int{1, 10}, 1, 10, true},
		{[]int{0, 4}, 0, 4, true},
		{[]int{1, 4}, 0, 4, true},
		{[]int{0}, 3, 1, false},
	} {
		t.Run(fmt.Sprint(tc.c, tc.m, tc.n), func(t *testing.T) {
			got := broadcastsTo(tc.c, tc.m, tc.n)
			s, err := ops.BroadcastShape(tc.c, []int{tc.m, tc.n})
			ref := err == nil && s[0] == tc.m && s[1] == tc.n
			if got != tc.want || got != ref {
				t.Errorf("broadcastsTo(%v, %d, %d) = %v, want %v (BroadcastShape: %v)", tc.c, tc.m, tc.n, got, tc.want, ref)
			}
		})
	}
}
