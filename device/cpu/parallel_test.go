package cpu

import (
	"os"
	"testing"

	"github.com/kilnai/kiln/internal/parallel"
)

// TestMain has the pool read GOMAXPROCS at every call: the allocation
// tests run under testing.AllocsPerRun, which sets it to 1, and expect
// Threads to see that at once (the pool's own tests, in device/cpu until
// the pool moved to internal/parallel, always set this).
func TestMain(m *testing.M) {
	parallel.ReadGOMAXPROCSEachCall()
	os.Exit(m.Run())
}

// fixThreads has every call split into n threads for the rest of the test
// (SetThreads), whether or not the pool finds the cores busy.
func fixThreads(t *testing.T, n int) {
	t.Helper()
	if err := SetThreads(n); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = SetThreads(0) })
}
