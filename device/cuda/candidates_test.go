package cuda

import (
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"
)

// fakeLibraries builds the fake libcudnn and libcublasLt of testdata into
// a directory and returns it.
func fakeLibraries(t *testing.T) string {
	t.Helper()
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skipf("needs a C compiler (cc) to build the fake libraries: %v", err)
	}
	dir := t.TempDir()
	for src, lib := range map[string]string{"fakecudnn.c": "libcudnn.so.9", "fakecublaslt.c": "libcublasLt.so.13"} {
		out, err := exec.Command(cc, "-shared", "-fPIC", "-o", filepath.Join(dir, lib), filepath.Join("testdata", src)).CombinedOutput()
		if err != nil {
			t.Fatalf("building %s: %v\n%s", lib, err, out)
		}
	}
	return dir
}

// TestCandidatesFake checks that planning keeps every algorithm that fits
// (in the libraries' rank order) and that Use switches between them.
func TestCandidatesFake(t *testing.T) {
	dir := fakeLibraries(t)
	o := Options{LibDir: dir}
	d, err := OpenCUDNN(o)
	if err != nil {
		t.Fatal(err)
	}
	h, err := d.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Destroy(h)
	p := ConvParams{N: 1, C: 3, H: 8, W: 8, M: 4, KH: 3, KW: 3, PadH: 1, PadW: 1, StrideH: 1, StrideW: 1, DilH: 1, DilW: 1, Group: 1}
	for _, tt := range []struct {
		name  string
		half  bool
		limit int
		want  []ConvAlgo
	}{
		{"fp32", false, 1 << 20, []ConvAlgo{{1, 3, 4096}, {0, 3, 0}}},
		{"fp32 small workspace", false, 100, []ConvAlgo{{0, 3, 0}}},
		{"fp16", true, 1 << 20, []ConvAlgo{{6, 1, 0}, {1, 3, 4096}, {0, 3, 0}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p.Half = tt.half
			c, err := d.NewConv(h, p, 8, 8, tt.limit)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Destroy()
			if !reflect.DeepEqual(c.Candidates, tt.want) {
				t.Fatalf("candidates %v, want %v", c.Candidates, tt.want)
			}
			if c.Algo != tt.want[0].Algo || c.Workspace != tt.want[0].Workspace {
				t.Fatalf("chose algo %d (%d bytes), want the first", c.Algo, c.Workspace)
			}
			last := tt.want[len(tt.want)-1]
			if err := c.Use(last); err != nil {
				t.Fatal(err)
			}
			if c.Algo != last.Algo || c.Math != last.Math || c.Workspace != last.Workspace {
				t.Fatalf("after Use(%v): algo %d math %d ws %d", last, c.Algo, c.Math, c.Workspace)
			}
			if err := c.Forward(h, 1, 2, 3, 0, 0); err != nil {
				t.Fatalf("Forward with algo %d: %v", c.Algo, err)
			}
		})
	}

	b, err := OpenCUBLASLt(o)
	if err != nil {
		t.Fatal(err)
	}
	lh, err := b.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Destroy(lh)
	for _, tt := range []struct {
		name  string
		limit int
		want  []LtAlgo
	}{
		{"all", 1 << 20, []LtAlgo{{0, 8192, 42}, {1, 0, 43}, {2, 0, 44}}},
		{"small workspace", 100, []LtAlgo{{1, 0, 43}, {2, 0, 44}}},
	} {
		t.Run("lt "+tt.name, func(t *testing.T) {
			mm, err := b.NewMatmul(lh, 4, 5, 6, false, tt.limit)
			if err != nil {
				t.Fatal(err)
			}
			defer mm.Destroy()
			if !reflect.DeepEqual(mm.Candidates, tt.want) {
				t.Fatalf("candidates %v, want %v", mm.Candidates, tt.want)
			}
			for i, c := range mm.Candidates {
				if err := mm.UseCandidate(i); err != nil {
					t.Fatal(err)
				}
				if mm.Workspace != c.Workspace {
					t.Fatalf("candidate %d: workspace %d, want %d", i, mm.Workspace, c.Workspace)
				}
				// the fake accepts algorithms 43 and 44 with no workspace
				if err := mm.Run(lh, 1, 2, 3, 0, 0, Stream{}); (err == nil) != (c.Workspace == 0) {
					t.Fatalf("candidate %d: Run without workspace: %v", i, err)
				}
			}
			if err := mm.UseCandidate(len(mm.Candidates)); err == nil {
				t.Fatal("UseCandidate out of range: no error")
			}
		})
	}
}
