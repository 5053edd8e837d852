package gpuexec

import (
	"context"
	"slices"
	"testing"
	"time"

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

// TestNMSTimeOnGPU runs detector-sized NonMaxSuppression (yolo_nms at
// 480x640: 6300 boxes of one class, no score threshold; a YOLO head of 80
// classes and 8400 boxes with a score threshold) against the CPU and logs
// the GPU's device time (median of 20 runs of the layers, CUDA events)
// beside the CPU kernel's wall time.
func TestNMSTimeOnGPU(t *testing.T) {
	needGPU(t)
	for _, tc := range []nmsCase{
		{name: "6300 boxes, 1 class", batches: 1, classes: 1, boxes: 6300, maxOut: 1 << 40, iou: 0.4375, noScore: true, spread: 320, size: 40, seed: 21},
		{name: "8400 boxes, 80 classes, score 0.25", batches: 1, classes: 80, boxes: 8400, maxOut: 100, iou: 0.4375, score: 0.25, spread: 640, size: 60, seed: 22},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, in := tc.graph(t)
			ce, err := engine.New(g.Clone())
			if err != nil {
				t.Fatal(err)
			}
			t0 := time.Now()
			want, err := ce.Run(context.Background(), in)
			if err != nil {
				t.Fatal(err)
			}
			cpu := time.Since(t0)
			e, err := NewEngine(g, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			c, err := e.NewContext()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			got, err := c.Run(context.Background(), in)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got["selected"].Int64s(), want["selected"].Int64s()) {
				t.Errorf("selected %v rows differ from the CPU's %v", got["selected"].Shape, want["selected"].Shape)
			}
			ms, err := c.DeviceTimes(20)
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(ms)
			t.Logf("%d rows selected: GPU %.3f ms (median device time), CPU kernel %.3f ms", want["selected"].Shape[0], ms[len(ms)/2], float64(cpu.Microseconds())/1000)
		})
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
