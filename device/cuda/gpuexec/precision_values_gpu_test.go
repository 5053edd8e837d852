package gpuexec

import (
	"context"
	"math"
	"testing"

	"github.com/kilnai/kiln/tensor"
)

// TestPrecisionFP32LayersOnGPU runs mixedGraph on the GPU in FP16 with
// b and d kept in FP32 (three runs: eager, capture, replay): d = x * w,
// computed in float32 from the host's float32 x and the float32 upload of
// w, matches the float32 product to float32 rounding (a half layer would
// be off by about 1e-3); value b lies on the device in float32 and
// matches sigmoid(relu(x)) of the half-rounded relu within half
// precision; c = b + w (a half layer) within half precision. It skips
// without a GPU.
//
// There: .gpubin/gpuexec.test -test.run 'TestPrecisionFP32LayersOnGPU' -test.v
func TestPrecisionFP32LayersOnGPU(t *testing.T) {
	needGPU(t)
	g := mixedGraph(t)
	e, err := NewEngine(g, Options{FP16: true, KeepValues: true, LayerPrecision: map[string]string{"b": "fp32", "d": "fp32"}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	for _, l := range e.Layers() {
		want := map[string]string{"a": "fp16", "b": "fp32", "c": "fp16", "d": "fp32"}[l.Node]
		if want != "" && l.Precision != want {
			t.Errorf("layer %s reports %q, want %q", l.Node, l.Precision, want)
		}
	}
	c, err := e.NewContext()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	x := tensor.New(tensor.Float32, 2, 8)
	for i := range x.Float32s() {
		x.Float32s()[i] = float32(i)*0.37 - 2.1 + float32(i%3)*1e-4 // not representable in half
	}
	w := g.Initializers[0].Const
	if w == nil || w.Len() != 8 {
		t.Fatalf("the graph's constant is %v", g.Initializers)
	}
	for run := 0; run < 3; run++ {
		out, err := c.Run(context.Background(), map[string]*tensor.Tensor{"x": x})
		if err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		d, cc := out["d"], out["c"]
		for i, xv := range x.Float32s() {
			wv := w.Float32s()[i%8]
			if want := xv * wv; d.Float32s()[i] != want {
				t.Errorf("run %d: d[%d] = %g, want %g (float32 x*w)", run, i, d.Float32s()[i], want)
			}
			r := tensor.HalfToFloat32(tensor.Float32ToHalf(max(xv, 0)))
			b := float32(1 / (1 + math.Exp(-float64(r))))
			if want := b + wv; math.Abs(float64(cc.Float32s()[i]-want)) > 3e-3 {
				t.Errorf("run %d: c[%d] = %g, want %g", run, i, cc.Float32s()[i], want)
			}
		}
		bv, err := c.Value("b")
		if err != nil {
			t.Fatal(err)
		}
		if bv.DType != tensor.Float32 {
			t.Fatalf("value b lies on the device as %v, want float32", bv.DType)
		}
		for i, xv := range x.Float32s() {
			r := tensor.HalfToFloat32(tensor.Float32ToHalf(max(xv, 0)))
			want := float32(1 / (1 + math.Exp(-float64(r))))
			if math.Abs(float64(bv.Float32s()[i]-want)) > 1e-5 {
				t.Errorf("run %d: b[%d] = %g, want %g (float32 sigmoid of the half relu)", run, i, bv.Float32s()[i], want)
			}
		}
	}
	t.Logf("graph replay %v", c.Graphed())
}
