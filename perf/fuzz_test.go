package perf

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseRange: any text is a range or an error, never a panic, and a
// range's values lie within it.
func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"1", "1:8", "1:8:2", "0.5:2:0.25", "8:1", "1:1e9", "a:b", ":", "1::2", "-1", "NaN", "Inf"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRange(s)
		if err != nil {
			return
		}
		for _, v := range r.Values() {
			if v < r.Start || v > r.End*(1+1e-9) {
				t.Fatalf("%q: value %g outside %v", s, v, r)
			}
		}
	})
}

// FuzzJSONInputs: any JSON input file gives input sets of the model's
// inputs or an error, never a panic.
func FuzzJSONInputs(f *testing.F) {
	for _, s := range []string{
		`{"data": [{"x": [1,2,3,4]}]}`,
		`{"data": [{"x": {"content": [1,2,3,4,5,6,7,8], "shape": [2,4]}}]}`,
		`{"data": [{"x": {"content": [1], "shape": [-1,4]}}]}`,
		`{"data": [{"y": [1]}]}`, `{"data": []}`, `[]`, `{"data": [{"x": "s"}]}`,
	} {
		f.Add(s)
	}
	md := []inputMeta{{Name: "x", Datatype: "FP32", Shape: []int64{-1, 4}}}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, s string) {
		p := filepath.Join(dir, "in.json")
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		sets, err := makeInputs(md, InputOptions{BatchSize: 1, Data: p})
		if err != nil {
			return
		}
		for _, set := range sets {
			x := set["x"]
			if x == nil || len(x.Shape) != 2 || x.Shape[1] != 4 {
				t.Fatalf("%q: set %v", s, set)
			}
		}
	})
}
