package quant

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/tensor"
)

func TestTableRoundTrip(t *testing.T) {
	tests := []*Table{
		{Method: Entropy, Graph: "sha256:abc", Entries: map[string]float32{
			"x": 1, "/blocks/blocks.0/Relu_output_0": 0.1, "with space": 3.4028235e38,
			"quote\"and\nnewline": math.SmallestNonzeroFloat32, "ünï": 0, "a # b": 6.5,
		}},
		{Method: Percentile, Percentile: 99.9, Entries: map[string]float32{"y": 2.75}},
		{Method: MinMax, Entries: map[string]float32{}},
	}
	for _, want := range tests {
		t.Run(want.Method.String(), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "model.calib")
			if err := WriteTable(path, want); err != nil {
				t.Fatal(err)
			}
			got, err := ReadTable(path)
			if err != nil {
				t.Fatal(err)
			}
			if got.Method != want.Method || got.Percentile != want.Percentile || got.Graph != want.Graph || got.Source != path {
				t.Errorf("header: got %v %v %q %q, want %v %v %q", got.Method, got.Percentile, got.Graph, got.Source, want.Method, want.Percentile, want.Graph)
			}
			if len(got.Entries) != len(want.Entries) {
				t.Fatalf("%d entries, want %d", len(got.Entries), len(want.Entries))
			}
			for name, a := range want.Entries {
				if b, ok := got.Entries[name]; !ok || math.Float32bits(a) != math.Float32bits(b) {
					t.Errorf("%q: %v (present %v), want %v bit for bit", name, b, ok, a)
				}
			}
		})
	}
}

func TestReadTableErrors(t *testing.T) {
	head := "kiln-calibration 1\nmethod entropy\n"
	tests := []struct {
		name, text, want string
	}{
		{"empty", "", "empty file"},
		{"not a cache", "hello world\n", "not a kiln calibration cache"},
		{"other version", "kiln-calibration 7\n", "version 7"},
		{"no method", "kiln-calibration 1\nentries 0\n", "no method"},
		{"bad method", "kiln-calibration 1\nmethod kmeans\nentries 0\n", "kmeans"},
		{"truncated", head + "entries 2\n3f800000 \"x\"\n", "says 2 entries but holds 1"},
		{"no entries line", head + "3f800000 \"x\"\n", "no entries line"},
		{"bad bits", head + "entries 1\n3f80000g \"x\"\n", "bad float32 bits"},
		{"unquoted name", head + "entries 1\n3f800000 x\n", "not a quoted string"},
		{"trailing junk", head + "entries 1\n3f800000 \"x\" y\n", "unexpected"},
		{"negative", head + "entries 1\nbf800000 \"x\"\n", "range of \"x\""},
		{"nan", head + "entries 1\n7fc00000 \"x\"\n", "range of \"x\""},
		{"duplicate", head + "entries 2\n3f800000 \"x\"\n3f800000 \"x\"\n", "twice"},
		{"percentile without value", "kiln-calibration 1\nmethod percentile\nentries 0\n", "percentile without"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c")
			if err := os.WriteFile(path, []byte(tc.text), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := ReadTable(path)
			if !errors.Is(err, ErrCache) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want ErrCache mentioning %q", err, tc.want)
			}
		})
	}
	if _, err := ReadTable(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, ErrCache) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestGraphHash(t *testing.T) {
	g := smallGraph(t)
	h := GraphHash(g)
	if !strings.HasPrefix(h, "sha256:") || len(h) != len("sha256:")+64 {
		t.Fatalf("hash %q", h)
	}
	// node order does not matter
	g2 := smallGraph(t)
	g2.Nodes[0], g2.Nodes[1] = g2.Nodes[1], g2.Nodes[0]
	if GraphHash(g2) != h {
		t.Error("hash depends on node order")
	}
	// weights, attributes and structure do
	g3 := smallGraph(t)
	g3.Initializers[0].Const = tensor.FromFloat32([]float32{4}, 1)
	g4 := smallGraph(t)
	g4.Nodes[0].Attrs["alpha"] = ir.FloatAttr("alpha", 1)
	g5 := smallGraph(t)
	g5.Outputs[0].Name = "z"
	for i, g := range []*ir.Graph{g3, g4, g5} {
		if GraphHash(g) == h {
			t.Errorf("change %d leaves the hash alone", i)
		}
	}
}

func TestCheckGraph(t *testing.T) {
	g := smallGraph(t)
	path := filepath.Join(t.TempDir(), "c")
	if err := WriteTable(path, &Table{Method: MinMax, Graph: GraphHash(g), Entries: map[string]float32{"x": 1}}); err != nil {
		t.Fatal(err)
	}
	tab, err := ReadTable(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := tab.CheckGraph(g); err != nil {
		t.Errorf("same graph: %v", err)
	}
	other := smallGraph(t)
	other.Initializers[0].Const = tensor.FromFloat32([]float32{5}, 1)
	err = tab.CheckGraph(other)
	if !errors.Is(err, ErrCache) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "another model") {
		t.Errorf("other graph: %v, want ErrCache naming the file", err)
	}
	if _, err := QuantizeINT8(other, tab, INT8Options{}); !errors.Is(err, ErrCache) {
		t.Errorf("QuantizeINT8 with another graph's table: %v, want ErrCache", err)
	}
	if err := (&Table{}).CheckGraph(other); err != nil {
		t.Errorf("a table without hash: %v", err)
	}
}

// TestGraphHashSurvivesONNXRoundTrip: the builder calibrates a copy of the
// graph made through kiln's ONNX writer and reader and quantizes the
// original, so both must hash the same.
func TestGraphHashSurvivesONNXRoundTrip(t *testing.T) {
	graphs := map[string]*ir.Graph{"convnet": convNet(t), "qdq": qdqNet(t)}
	dir := filepath.Join("..", "..", "shared", "models", "mobilenet_v2")
	if _, err := os.Stat(filepath.Join(dir, "model.onnx")); err == nil {
		graphs["mobilenet_v2"] = loadOptimized(t, dir)
	}
	for name, g := range graphs {
		t.Run(name, func(t *testing.T) {
			mp, err := onnx.FromGraph(g, "kiln")
			if err != nil {
				t.Fatal(err)
			}
			dec, err := onnx.DecodeModel(mp.Marshal())
			if err != nil {
				t.Fatal(err)
			}
			c, err := onnx.ToGraph(dec, nil)
			if err != nil {
				t.Fatal(err)
			}
			if GraphHash(c) != GraphHash(g) {
				t.Error("the hash changed through the ONNX writer and reader")
			}
		})
	}
}

// FuzzReadTable: any file is rejected with an error or read into a table
// that writes back to the same table.
func FuzzReadTable(f *testing.F) {
	f.Add([]byte("kiln-calibration 1\nmethod entropy\ngraph sha256:ab\nentries 1\n3f800000 \"x\"  # 1\n"))
	f.Add([]byte("kiln-calibration 1\nmethod percentile 99.9\nentries 0\n"))
	f.Add([]byte("kiln-calibration 1\nentries 1\n00000000 \"\\n\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tab, err := parseTable(data)
		if err != nil {
			return
		}
		path := filepath.Join(t.TempDir(), "c")
		if err := WriteTable(path, tab); err != nil {
			t.Fatal(err)
		}
		back, err := ReadTable(path)
		if err != nil {
			t.Fatalf("a table read from %q does not read back: %v", data, err)
		}
		if back.Method != tab.Method || back.Graph != tab.Graph || len(back.Entries) != len(tab.Entries) {
			t.Fatalf("round trip of %q changed the table", data)
		}
		for k, v := range tab.Entries {
			if math.Float32bits(back.Entries[k]) != math.Float32bits(v) {
				t.Fatalf("entry %q: %v, then %v", k, v, back.Entries[k])
			}
		}
	})
}
