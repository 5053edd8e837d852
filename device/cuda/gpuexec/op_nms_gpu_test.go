package gpuexec

import (
	"context"
	"testing"

	"github.com/kilnai/kiln/engine"
)

// TestNMSOnGPU runs every case of nmsCases on the GPU, in float32 and
// float16 engines, eagerly and replayed as a CUDA graph, and wants exactly
// the CPU kernel's selected indices (same rows in the same order). It
// skips without a GPU.
func TestNMSOnGPU(t *testing.T) {
	needGPU(t)
	for _, tc := range nmsCases() {
		for _, half := range []bool{false, true} {
			prec := map[bool]string{false: "fp32", true: "fp16"}[half]
			var sticky error
			t.Run(tc.name+"/"+prec, func(t *testing.T) {
				sticky = runNMSCase(t, tc, half)
			})
			if sticky != nil {
				t.Fatalf("STICKY CUDA ERROR in %s: %v", tc.name, sticky)
			}
		}
	}
}

func runNMSCase(t *testing.T, tc nmsCase, half bool) (sticky error) {
	g, in := tc.graph(t)
	ce, err := engine.New(g.Clone())
	if err != nil {
		t.Fatal(err)
	}
	want, err := ce.Run(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	check := func(err error) bool {
		if err == nil {
			return false
		}
		if stickyCUDA.MatchString(err.Error()) {
			sticky = err
		}
		t.Error(err)
		return true
	}
	e, err := NewEngine(g, Options{FP16: half, SyncEachLayer: true})
	if check(err) {
		return
	}
	defer e.Close()
	c, err := e.NewContext()
	if check(err) {
		return
	}
	defer c.Close()
	for run := range 3 { // eager, then captured, then replayed
		got, err := c.Run(context.Background(), in)
		if check(err) {
			return
		}
		g, w := got["selected"], want["selected"]
		if g == nil || g.DType != w.DType || len(g.Shape) != 2 || g.Shape[0] != w.Shape[0] || g.Shape[1] != 3 {
			t.Errorf("run %d: selected %v, want %v%v", run, g, w.DType, w.Shape)
			return
		}
		gv, wv := g.Int64s(), w.Int64s()
		for i := range wv {
			if gv[i] != wv[i] {
				t.Errorf("run %d: row %d is %v, want %v (of %d rows)", run, i/3, gv[i/3*3:i/3*3+3], wv[i/3*3:i/3*3+3], w.Shape[0])
				break
			}
		}
		if run == 0 {
			t.Logf("%d boxes selected", w.Shape[0])
		}
	}
	return
}
