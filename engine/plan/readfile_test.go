package plan

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/tensor"
)

// TestOpenOwnsItsMemory: a plan from Open is read into aligned memory of
// its own, its weights used in place from it; truncating and rewriting the
// file in place afterwards (as cp over it does) changes nothing, where a
// mapping would fault (SIGBUS, which would kill this test). OpenMapped
// maps the file and gives the same plan. The build key round-trips.
func TestOpenOwnsItsMemory(t *testing.T) {
	h := cpuHeader(t)
	h.BuildKey = "m-0123456789abcdef"
	for _, tt := range []struct {
		name string
		open func(string) (*Plan, error)
		// whether the file may be changed under the open plan
		change bool
	}{
		{"Open", Open, true},
		{"OpenMapped", OpenMapped, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "m.plan")
			if err := WriteFile(path, h, testGraph(), nil); err != nil {
				t.Fatal(err)
			}
			p, err := tt.open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			if p.Header.BuildKey != h.BuildKey {
				t.Fatalf("build key %q, want %q", p.Header.BuildKey, h.BuildKey)
			}
			if uintptr(unsafe.Pointer(&p.data[0]))%Align != 0 {
				t.Fatalf("plan memory not %d-aligned", Align)
			}
			g, err := p.Graph()
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range g.Initializers {
				start := uintptr(unsafe.Pointer(&p.data[0]))
				if at := uintptr(unsafe.Pointer(&v.Const.Data[0])); at < start || at >= start+uintptr(len(p.data)) {
					t.Errorf("weight %s was copied out of the plan", v.Name)
				}
			}
			if tt.change {
				if err := os.Truncate(path, 0); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte("KILNPLAN but not any more"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			e, err := engine.New(g)
			if err != nil {
				t.Fatal(err)
			}
			x := tensor.FromFloat32([]float32{1, 2, 3, 4}, 1, 4)
			out, err := e.Run(context.Background(), map[string]*tensor.Tensor{"x": x})
			if err != nil {
				t.Fatal(err)
			}
			want := []float32{0, 17.3, 5.3} // see TestRoundTrip
			for i, w := range want {
				if d := out["y"].Float32s()[i] - w; d > 1e-5 || d < -1e-5 {
					t.Fatalf("y = %v, want %v", out["y"].Float32s(), want)
				}
			}
		})
	}
}

func TestReadHeader(t *testing.T) {
	h := cpuHeader(t)
	h.BuildKey = "m-key"
	good := writePlan(t, h)
	otherFormat := append([]byte(nil), good...)
	otherFormat[8] = 9
	tests := []struct {
		name string
		data []byte
		err  error
	}{
		{"plan", good, nil},
		{"empty", nil, ErrNotPlan},
		{"onnx", []byte("\x08\x07\x12\x04onnx model bytes"), ErrNotPlan},
		{"prefix only", []byte(Magic + "\x01\x00"), ErrCorrupt},
		{"format", otherFormat, ErrFormat},
		{"cut in the header", good[:40], ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "p.plan")
			if err := os.WriteFile(path, tt.data, 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := ReadHeader(path)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("ReadHeader: %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.BuildKey != "m-key" || got.Device != "cpu" || len(got.Weights) != 2 {
				t.Fatalf("header %+v", got)
			}
		})
	}
	if _, err := ReadHeader(filepath.Join(t.TempDir(), "missing.plan")); err == nil {
		t.Fatal("ReadHeader of a missing file succeeded")
	}
}
