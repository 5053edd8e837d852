package tempfile

import (
	"os"
	"strings"
	"syscall"
	"testing"
)

func TestCreate(t *testing.T) {
	dir := t.TempDir()
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	seen := map[string]bool{}
	for range 20 {
		f, err := Create(dir, ".x-")
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		if seen[f.Name()] || !strings.HasPrefix(f.Name(), dir+"/.x-") {
			t.Errorf("name %q reused or outside %s", f.Name(), dir)
		}
		seen[f.Name()] = true
		st, err := os.Stat(f.Name())
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o644 {
			t.Errorf("mode %v, want 0644", st.Mode().Perm())
		}
	}
	if _, err := Create(dir+"/missing", ".x-"); err == nil {
		t.Error("created a file in a missing folder")
	}
}
