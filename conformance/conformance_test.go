package conformance

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnai/kiln/tensor"
)

const suite = "/usr/share/libonnx-testdata/data"

// TestSuites runs the ONNX backend test folders shipped by Debian's
// libonnx-testdata and holds kiln to its pass counts. The floors are what
// kiln passes today; raise them as coverage grows.
func TestSuites(t *testing.T) {
	tests := []struct {
		dir       string
		minPassed int
	}{
		{"node", 911},
		{"pytorch-converted", 82},
		{"pytorch-operator", 35},
		{"simple", 21},
	}
	skips := Skips()
	for _, tt := range tests {
		t.Run(tt.dir, func(t *testing.T) {
			root := filepath.Join(suite, tt.dir)
			if _, err := os.Stat(root); err != nil {
				t.Skipf("needs the ONNX conformance suite at %s (apt-get install libonnx-testdata; scripts/test.sh does it): %v", root, err)
			}
			dirs, err := Find(root)
			if err != nil {
				t.Fatal(err)
			}
			var sum Summary
			for _, d := range dirs {
				r := Run(context.Background(), d, skips)
				sum.Add(r)
				if r.Status == Failed {
					t.Logf("FAIL %s: %s", r.Name, firstLine(r.Reason))
				}
			}
			t.Logf("%s: %v", tt.dir, sum)
			if sum.Passed < tt.minPassed {
				t.Fatalf("%s: %d passed, want at least %d", tt.dir, sum.Passed, tt.minPassed)
			}
		})
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// TestSkipListNamesRealTests keeps skips.txt honest: every entry has a
// known category and names a test that exists in the suite.
func TestSkipListNamesRealTests(t *testing.T) {
	if _, err := os.Stat(suite); err != nil {
		t.Skipf("needs %s: %v", suite, err)
	}
	categories := map[string]bool{"training": true, "random": true}
	for name, s := range Skips() {
		if !categories[s.Category] || s.Reason == "" {
			t.Errorf("%s: category %q reason %q", name, s.Category, s.Reason)
		}
		found := false
		for _, d := range []string{"node", "simple", "pytorch-converted", "pytorch-operator"} {
			if _, err := os.Stat(filepath.Join(suite, d, name)); err == nil {
				found = true
			}
		}
		if !found {
			t.Errorf("skip list names %s, which is not in the suite", name)
		}
	}
}

func TestCompare(t *testing.T) {
	a := tensor.FromFloat32([]float32{1, 2, 3}, 3)
	tests := []struct {
		name string
		got  *tensor.Tensor
		ok   bool
	}{
		{"equal", tensor.FromFloat32([]float32{1, 2, 3}, 3), true},
		{"within rtol", tensor.FromFloat32([]float32{1.0005, 2, 3}, 3), true},
		{"outside", tensor.FromFloat32([]float32{1.01, 2, 3}, 3), false},
		{"shape", tensor.FromFloat32([]float32{1, 2, 3}, 1, 3), false},
		{"dtype", tensor.FromInt64([]int64{1, 2, 3}, 3), false},
	}
	for _, tt := range tests {
		if c := Compare(tt.got, a, 1e-3, 1e-5); c.OK != tt.ok {
			t.Errorf("%s: ok=%v (%s)", tt.name, c.OK, c.Reason)
		}
	}
}
