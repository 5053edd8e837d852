package plan

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/device/devices"
	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/ir"
	_ "github.com/kilnai/kiln/ops/all"
	"github.com/kilnai/kiln/tensor"
)

// testGraph is y = Relu(x @ W + b) with x [batch, 4].
func testGraph() *ir.Graph {
	b := ir.NewBuilder("t", 17)
	x := b.Input("x", tensor.Float32, ir.S("batch"), ir.D(4))
	w := tensor.New(tensor.Float32, 4, 3)
	for i, v := range []float32{1, -2, 3, 0.5, 0.25, -1, 2, 1, 0, -3, 4, 1} {
		w.Float32s()[i] = v
	}
	bias := tensor.FromFloat32([]float32{0.1, -0.2, 0.3}, 3)
	y := b.Op("Relu", []*ir.Value{b.Op("Add", []*ir.Value{b.Op("MatMul", []*ir.Value{x, b.Const("W", w)}), b.Const("b", bias)})})
	b.Output(y, "y")
	return b.Graph()
}

func cpuHeader(t *testing.T) Header {
	d, _, err := devices.Lookup("cpu")
	if err != nil {
		t.Fatal(err)
	}
	fp, err := d.Fingerprint()
	if err != nil {
		t.Fatal(err)
	}
	return Header{
		Device: "cpu", Fingerprint: fp, Precision: "fp32", OptLevel: 2,
		Profiles: []engine.Profile{{Name: "p0", Inputs: []engine.Range{{Input: "x", Min: []int{1, 4}, Opt: []int{2, 4}, Max: []int{8, 4}}}}},
		Tactics:  [][]Tactic{{{Layer: "n0", Tactic: "default"}}},
		Layers:   []Layer{{Name: "n0", Op: "MatMul"}},
	}
}

func writePlan(t *testing.T, h Header) []byte {
	var buf bytes.Buffer
	if err := Write(&buf, h, testGraph(), []Blob{{Name: "kernels", Data: []byte("cubin")}}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.plan")
	if err := WriteFile(path, cpuHeader(t), testGraph(), []Blob{{Name: "kernels", Data: []byte("cubin")}}); err != nil {
		t.Fatal(err)
	}
	p, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.CheckDevice(); err != nil {
		t.Fatal(err)
	}
	h := p.Header
	if h.Precision != "fp32" || len(h.Profiles) != 1 || h.Profiles[0].Inputs[0].Max[0] != 8 || h.Tactics[0][0].Layer != "n0" || len(h.Weights) != 2 {
		t.Fatalf("header did not round-trip: %+v", h)
	}
	if b, ok := p.Blob("kernels"); !ok || string(b) != "cubin" {
		t.Fatalf("blob = %q, %v", b, ok)
	}
	for _, w := range h.Weights {
		if w.Offset%Align != 0 {
			t.Errorf("weight %s at offset %d, not %d-aligned", w.Name, w.Offset, Align)
		}
	}
	g, err := p.Graph()
	if err != nil {
		t.Fatal(err)
	}
	// The weights are used in place: their data points into the plan.
	for _, v := range g.Initializers {
		start := uintptr(unsafe.Pointer(&p.data[0]))
		at := uintptr(unsafe.Pointer(&v.Const.Data[0]))
		if at < start || at >= start+uintptr(len(p.data)) {
			t.Errorf("weight %s was copied out of the plan", v.Name)
		}
	}
	e, err := engine.New(g)
	if err != nil {
		t.Fatal(err)
	}
	x := tensor.FromFloat32([]float32{1, 2, 3, 4, -1, -1, -1, -1}, 2, 4)
	out, err := e.Run(context.Background(), map[string]*tensor.Tensor{"x": x})
	if err != nil {
		t.Fatal(err)
	}
	// row 0: [1,2,3,4] @ W + b = [-4, 17.5, 5] + b; row 1 is negative.
	want := []float32{0, 17.3, 5.3, 0, 0, 0}
	got := out["y"].Float32s()
	for i := range want {
		if d := got[i] - want[i]; d > 1e-5 || d < -1e-5 {
			t.Fatalf("y = %v, want %v", got, want)
		}
	}
}

func TestBadPlans(t *testing.T) {
	good := writePlan(t, cpuHeader(t))
	mutate := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	otherVersion := func() []byte {
		old := writeVersion
		writeVersion = "0.0.1"
		defer func() { writeVersion = old }()
		return writePlan(t, cpuHeader(t))
	}()
	cases := []struct {
		name string
		data []byte
		err  error
		msg  string
	}{
		{"empty", nil, ErrNotPlan, "does not start with"},
		{"onnx", []byte("\x08\x07\x12\x04onnx"), ErrNotPlan, "does not start with"},
		{"prefix only", []byte(Magic + "\x01\x00"), ErrCorrupt, "truncated"},
		{"format", mutate(func(b []byte) []byte { b[8] = 9; return b }), ErrFormat, "format version 9"},
		{"truncated", good[:len(good)/2], ErrCorrupt, "truncated"},
		{"truncated end", good[:len(good)-64], ErrCorrupt, "checksum mismatch"},
		{"cut header", good[:40], ErrCorrupt, "truncated"},
		{"tampered weight", mutate(func(b []byte) []byte { b[len(b)-100] ^= 1; return b }), ErrCorrupt, "checksum mismatch"},
		{"tampered checksum", mutate(func(b []byte) []byte { b[len(b)-1] ^= 1; return b }), ErrCorrupt, "checksum mismatch"},
		{"kiln version", otherVersion, ErrVersion, "built by kiln 0.0.1"},
	}
	for _, c := range cases {
		_, err := Decode(c.data)
		if !errors.Is(err, c.err) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: error %v, want %v containing %q", c.name, err, c.err, c.msg)
		}
	}
}

func TestOtherDevice(t *testing.T) {
	h := cpuHeader(t)
	fp := device.Fingerprint{}
	for k, v := range h.Fingerprint {
		fp[k] = v
	}
	fp["isa"] = "some-future-isa"
	h.Fingerprint = fp
	p, err := Decode(writePlan(t, h))
	if err != nil {
		t.Fatal(err)
	}
	err = p.CheckDevice()
	if !errors.Is(err, ErrDevice) || !strings.Contains(err.Error(), `isa: plan "some-future-isa", this machine`) || !strings.Contains(err.Error(), "kiln build") {
		t.Fatalf("CheckDevice: %v", err)
	}
	h.Device = "tpu"
	p, err = Decode(writePlan(t, h))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.CheckDevice(); !errors.Is(err, ErrDevice) || !strings.Contains(err.Error(), `"tpu"`) {
		t.Fatalf("CheckDevice(tpu): %v", err)
	}
}

func TestOpenMissing(t *testing.T) {
	if _, err := Open(filepath.Join(t.TempDir(), "none.plan")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Open(missing) = %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	var buf bytes.Buffer
	if err := Write(&buf, Header{Device: "cpu", Precision: "fp32"}, testGraph(), nil); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add([]byte(Magic))
	f.Fuzz(func(t *testing.T, b []byte) {
		decodeAll(b)
		// Also with a valid checksum, so that the fuzzer reaches the header,
		// section and graph checks behind it.
		if len(b) > prefixLen+checksumLen {
			fixed := append([]byte(nil), b...)
			sum := sha256.Sum256(fixed[:len(fixed)-checksumLen])
			copy(fixed[len(fixed)-checksumLen:], sum[:])
			decodeAll(fixed)
		}
	})
}

func decodeAll(b []byte) {
	p, err := Decode(b)
	if err != nil {
		return
	}
	_ = p.CheckDevice()
	if g, err := p.Graph(); err == nil {
		_ = g.Validate()
	}
}
