package tactic

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/internal/version"
)

// TestKey: every timing is filed under the device's fingerprint with the
// kiln version, whoever stores it (the CPU's Select, a GPU's tuner), so
// that the file says which kiln measured it and another kiln measures
// again; a fingerprint that already names a kiln version is filed under
// this one's.
func TestKey(t *testing.T) {
	gpu := device.Fingerprint{"device": "cuda", "gpu": "Fake GPU", "compute": "9.0"}
	path := filepath.Join(t.TempDir(), "kiln.timing")
	c, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	c.Store(gpu, "Conv{}(float16[1 3 8 8])", "cudnn:1", 5*time.Microsecond)
	c.StoreScratch(gpu, "Conv{}(float16[1 3 8 8])", "cudnn:1", 4096)
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := `"device": "` + Key(gpu).String() + `"`; !strings.Contains(string(b), want) || !strings.Contains(want, "kiln="+version.Kiln) {
		t.Fatalf("cache file:\n%s\nwant an entry %s", b, want)
	}
	again, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, fp := range []device.Fingerprint{gpu, Key(gpu)} {
		if d, ok := again.Lookup(fp, "Conv{}(float16[1 3 8 8])", "cudnn:1"); !ok || d != 5*time.Microsecond {
			t.Errorf("Lookup(%v) = %v, %v", fp, d, ok)
		}
		if s, ok := again.LookupScratch(fp, "Conv{}(float16[1 3 8 8])", "cudnn:1"); !ok || s != 4096 {
			t.Errorf("LookupScratch(%v) = %v, %v", fp, s, ok)
		}
	}
	older := Key(gpu)
	older["kiln"] = "0.0.1"
	if _, ok := again.Lookup(older, "Conv{}(float16[1 3 8 8])", "cudnn:1"); !ok {
		t.Error("a fingerprint naming another kiln version is not filed under this one's")
	}
	// An entry another kiln filed (or one filed without a version, as GPU
	// timings were) is kept in the file but not used.
	old := `{"format":"kiln-timing-cache","version":1,"entries":[{"device":"` + gpu.String() + `","layer":"L","tactic":"t","ns":7}]}`
	if err := os.WriteFile(path, []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	stale, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := stale.Lookup(gpu, "L", "t"); ok || stale.Len() != 1 {
		t.Errorf("an entry without a kiln version was used (%d entries)", stale.Len())
	}
	if len(Key(nil)) != 1 || len(gpu) != 3 {
		t.Errorf("Key(nil) = %v; Key changed its argument: %v", Key(nil), gpu)
	}
}
