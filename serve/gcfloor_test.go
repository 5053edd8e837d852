package serve

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

// gcPercent returns the current GC percent.
func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

// TestSetGCHeapFloor: with a floor far above the test process's live
// heap, the GC percent rises after a cycle to about floor/live (at most
// maxGCPercent) and the undo function restores it; a floor of 0, or GOGC
// set in the environment, leaves it alone.
func TestSetGCHeapFloor(t *testing.T) {
	for _, tc := range []struct {
		name  string
		floor int64
		gogc  string
		raise bool
	}{
		{"floor above the live heap", 1 << 30, "", true},
		{"floor 0: off", 0, "", false},
		{"GOGC set: the user's", 1 << 30, "100", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.gogc != "" {
				t.Setenv("GOGC", tc.gogc)
			}
			before := gcPercent()
			undo := SetGCHeapFloor(tc.floor)
			var got int
			deadline := time.Now().Add(5 * time.Second)
			for {
				runtime.GC()
				time.Sleep(10 * time.Millisecond) // the cleanup runs on its own goroutine
				got = gcPercent()
				if !tc.raise || got > before || time.Now().After(deadline) {
					break
				}
			}
			undo()
			if tc.raise && (got <= before || got > maxGCPercent) {
				t.Fatalf("GC percent %d with the floor, %d before; want above it, at most %d", got, before, maxGCPercent)
			}
			if !tc.raise && got != before {
				t.Fatalf("GC percent %d, want %d unchanged", got, before)
			}
			if after := gcPercent(); after != before {
				t.Fatalf("GC percent %d after undo, want %d", after, before)
			}
		})
	}
}
