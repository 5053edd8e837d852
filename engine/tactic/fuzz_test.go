package tactic

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzCacheFile feeds arbitrary bytes to the timing cache reader: it must
// fail cleanly or read entries that survive a save and a second read.
func FuzzCacheFile(f *testing.F) {
	f.Add([]byte(`{"format":"kiln-timing-cache","version":1,"entries":[{"device":"d","layer":"l","tactic":"t","ns":5}]}`))
	f.Add([]byte(`{"format":"kiln-timing-cache","version":1,"entries":[]}`))
	f.Add([]byte(`{"format":"kiln-timing-cache","version":2}`))
	f.Add([]byte(`[]`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		c := New()
		if err := c.decode(b); err != nil {
			return
		}
		path := filepath.Join(t.TempDir(), "cache")
		c.path = path
		if err := c.Save(); err != nil {
			t.Fatal(err)
		}
		again, err := Open(path)
		if err != nil {
			t.Fatalf("reading back a saved cache: %v", err)
		}
		if again.Len() != c.Len() {
			t.Fatalf("%d entries read back, %d saved", again.Len(), c.Len())
		}
		for k, d := range c.entries {
			if again.entries[k] != d {
				t.Fatalf("entry %v: %v read back, %v saved", k, again.entries[k], d)
			}
		}
		if _, err := os.Stat(path); err != nil {
			t.Fatal(err)
		}
	})
}
