package main

import (
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/quant"
	"github.com/kilnai/kiln/serve"
	"github.com/kilnai/kiln/tensor"
)

// trafficImage is one image of the "real traffic" of the calibration test:
// smooth patterns with values in [0, 1], as a camera's normalized pixels
// are, unlike the standard normal values of random calibration data.
func trafficImage(r *rand.Rand) []float32 {
	x := make([]float32, 3*32*32)
	fx, fy := r.Float64()*0.6, r.Float64()*0.6
	base := 0.3 + 0.4*r.Float64()
	for c := range 3 {
		phase := r.Float64() * 2 * math.Pi
		for i := range 32 * 32 {
			v := base + 0.25*math.Sin(fx*float64(i%32)+fy*float64(i/32)+phase) + 0.05*r.NormFloat64()
			x[c*1024+i] = float32(min(max(v, 0), 1))
		}
	}
	return x
}

// TestCalibrateFromRecordedTraffic (issue 14, item 7): kiln serve records
// the requests of a model whose config asks for it (record_requests) under
// --record-dir in the test_data_set_N layout; kiln build --int8
// --calib-data reads the recorded sets; on requests held back from the
// calibration, the INT8 engine calibrated on the recorded traffic agrees
// with FP32 better than one calibrated on random data (--calib-random).
func TestCalibrateFromRecordedTraffic(t *testing.T) {
	const total, calib = 72, 48
	repo := writeRepo(t, map[string]string{"cnn": "max_batch_size: 8\n" +
		`parameters { key: "record_requests" value: { string_value: "1" } }` + "\n" +
		`parameters { key: "record_max_sets" value: { string_value: "` + strconv.Itoa(total) + `" } }` + "\n"})
	rec := t.TempDir()
	s := startServed(t, "--model-repository", repo, "--no-build", "--record-dir", rec)
	base := "http://" + s.http
	if st := waitLoaded(t, base); st["cnn"] != "READY" {
		t.Fatalf("model cnn: %s", st["cnn"])
	}
	dir := serve.RecordDir(rec, "cnn", 1)
	set := func(n int) string { return filepath.Join(dir, "test_data_set_"+strconv.Itoa(n)) }
	r := rand.New(rand.NewPCG(14, 7))
	for n := range total {
		body, _ := json.Marshal(map[string]any{"inputs": []any{map[string]any{
			"name": "image", "shape": []int{1, 3, 32, 32}, "datatype": "FP32", "data": trafficImage(r)}}})
		if code, resp := call(t, nil, "POST", base+"/v2/models/cnn/infer", "", body); code != 200 {
			t.Fatalf("infer: %d %s", code, resp)
		}
		// one at a time: a request arriving while the writer is behind is
		// not recorded, and this test wants them all
		eventually(t, "the recorded request to be written", func() bool {
			_, err := os.Stat(filepath.Join(set(n), "input_0.pb"))
			return err == nil
		})
	}
	s.stop(t)

	// the first sets calibrate, the rest are held back
	calibDir, heldDir := t.TempDir(), t.TempDir()
	for n := range total {
		to := filepath.Join(calibDir, "test_data_set_"+strconv.Itoa(n))
		if n >= calib {
			to = filepath.Join(heldDir, "test_data_set_"+strconv.Itoa(n-calib))
		}
		if err := os.Rename(set(n), to); err != nil {
			t.Fatal(err)
		}
	}
	model := filepath.Join(repo, "cnn", "1", "model.onnx")
	plans := t.TempDir()
	build := func(name string, args ...string) *kiln.Model {
		t.Helper()
		out := filepath.Join(plans, name+".plan")
		if code := buildCmd(append([]string{model, "-o", out, "--no-timing", "--max-batch", "8"}, args...)); code != exitOK {
			t.Fatalf("kiln build %s %q: exit %d", name, args, code)
		}
		m, err := kiln.Load(out)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return m
	}
	fp32 := build("fp32")
	recorded := build("int8-recorded", "--int8", "--calib-data", calibDir)
	random := build("int8-random", "--int8", "--calib-random", strconv.Itoa(calib))

	graph := examples.TinyCNN()
	held, err := quant.LoadBatches(heldDir, []*ir.Value{graph.Inputs[0]})
	if err != nil {
		t.Fatal(err)
	}
	if len(held) != total-calib {
		t.Fatalf("%d held-back sets, want %d", len(held), total-calib)
	}
	for _, b := range held {
		if x := b["image"].Float32s(); len(x) != 3*32*32 || b["image"].DType != tensor.Float32 {
			t.Fatalf("a held-back set is not one image: %v", b["image"].Shape)
		}
	}
	ctx := context.Background()
	rep := func(m *kiln.Model) quant.OutputAccuracy {
		rpt, err := quant.Compare(ctx, fp32, m, held)
		if err != nil {
			t.Fatal(err)
		}
		return rpt.Outputs[0]
	}
	a, b := rep(recorded), rep(random)
	t.Logf("on %d held-back recorded requests, against FP32:", len(held))
	t.Logf("  int8 calibrated on %d recorded requests: cosine %.6f, top-1 %.3f, max abs error %.5f", calib, a.Cosine, a.Top1, a.MaxAbs)
	t.Logf("  int8 calibrated on %d random batches:    cosine %.6f, top-1 %.3f, max abs error %.5f", calib, b.Cosine, b.Top1, b.MaxAbs)
	if !(a.Cosine > b.Cosine) || a.Top1 < b.Top1 || !(a.MaxAbs < b.MaxAbs) {
		t.Fatalf("calibration on recorded traffic is not better than on random data: %+v against %+v", a, b)
	}
}
