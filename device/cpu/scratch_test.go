package cpu

import "testing"

// TestScratchAdd checks that MeasureScratch reports the peak of what
// ScratchAdd counted during f, and nothing counted outside a measurement.
func TestScratchAdd(t *testing.T) {
	cases := []struct {
		name string
		adds []int64
		want int64
	}{
		{"none", nil, 0},
		{"one", []int64{100}, 100},
		{"given back", []int64{100, -100, 50}, 100},
		{"grows", []int64{100, -40, 90}, 150},
	}
	for _, tc := range cases {
		ScratchAdd(1 << 20) // outside a measurement: not counted
		got := MeasureScratch(func() {
			for _, n := range tc.adds {
				ScratchAdd(n)
			}
		})
		if got != tc.want {
			t.Errorf("%s: peak %d, want %d", tc.name, got, tc.want)
		}
	}
}
