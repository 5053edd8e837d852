package main

import (
	"bytes"
	"context"
	"errors"
	"math"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/serve"
	"github.com/kilnai/kiln/serve/httpapi"
	"github.com/kilnai/kiln/tensor"
)

// referenceNMS is the post-processing of AddNMS written out in Go: best
// class per anchor, corners (of |w| and |h|), greedy NMS per image and
// class.
func referenceNMS(raw *tensor.Tensor, p Params) []Detection {
	nb, nf, na := raw.Shape[0], raw.Shape[1], raw.Shape[2]
	v := raw.Float32s()
	var out []Detection
	for b := range nb {
		at := func(f, a int) float32 { return v[(b*nf+f)*na+a] }
		corners := make([][4]float32, na)
		best := make([]float32, na)
		for a := range na {
			hw, hh := abs32(at(2, a))*0.5, abs32(at(3, a))*0.5
			corners[a] = [4]float32{at(0, a) - hw, at(1, a) - hh, at(0, a) + hw, at(1, a) + hh}
			best[a] = float32(math.Inf(-1))
			for c := 4; c < nf; c++ {
				best[a] = max(best[a], at(c, a))
			}
		}
		for c := range nf - 4 {
			var cand []int
			for a := range na {
				if s := at(4+c, a); s == best[a] && float64(s) > float64(p.Score) {
					cand = append(cand, a)
				}
			}
			sort.SliceStable(cand, func(i, j int) bool { return at(4+c, cand[i]) > at(4+c, cand[j]) })
			var kept []int
			for _, a := range cand {
				if int64(len(kept)) >= p.MaxPerClass {
					break
				}
				if !slicesAny(kept, func(k int) bool { return iou(corners[a], corners[k]) > float64(p.IoU) }) {
					kept = append(kept, a)
					out = append(out, Detection{Image: b, Class: c, Score: at(4+c, a), Box: corners[a]})
				}
			}
		}
	}
	return out
}

func abs32(v float32) float32 { return float32(math.Abs(float64(v))) }

func slicesAny(s []int, f func(int) bool) bool {
	for _, v := range s {
		if f(v) {
			return true
		}
	}
	return false
}

// iou is the intersection over union of two boxes given by two corners
// each, in any order.
func iou(a, b [4]float32) float64 {
	norm := func(c [4]float32) (x0, y0, x1, y1 float64) {
		return math.Min(float64(c[0]), float64(c[2])), math.Min(float64(c[1]), float64(c[3])),
			math.Max(float64(c[0]), float64(c[2])), math.Max(float64(c[1]), float64(c[3]))
	}
	ax0, ay0, ax1, ay1 := norm(a)
	bx0, by0, bx1, by1 := norm(b)
	iw, ih := math.Min(ax1, bx1)-math.Max(ax0, bx0), math.Min(ay1, by1)-math.Max(ay0, by0)
	if iw <= 0 || ih <= 0 {
		return 0
	}
	inter := iw * ih
	ua := (ax1-ax0)*(ay1-ay0) + (bx1-bx0)*(by1-by0) - inter
	if ua <= 0 {
		return 0
	}
	return inter / ua
}

// identityDetector is a "detector" whose raw output is its input, so that
// tests choose the raw output.
func identityDetector(t *testing.T, opset int64, outName string) *onnx.ModelProto {
	t.Helper()
	b := ir.NewBuilder("identity", opset)
	x := b.Input("x", tensor.Float32, ir.S("batch"), ir.S("features"), ir.S("anchors"))
	b.Output(b.Op("Identity", []*ir.Value{x}), outName)
	m, err := onnx.FromGraph(b.Graph(), "test")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// rawOutput makes a [len(images), 4+classes, anchors] raw output from
// per-image anchors given as cx, cy, w, h, then the class scores.
func rawOutput(images ...[][]float32) *tensor.Tensor {
	nf, na := len(images[0][0]), len(images[0])
	t := tensor.New(tensor.Float32, len(images), nf, na)
	for b, anchors := range images {
		for a, vals := range anchors {
			for f, v := range vals {
				t.Float32s()[(b*nf+f)*na+a] = v
			}
		}
	}
	return t
}

func runNMS(t *testing.T, m *onnx.ModelProto, raw *tensor.Tensor) []Detection {
	t.Helper()
	km, err := kiln.LoadBytes(m.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	defer km.Close()
	out, err := km.Run(context.Background(), map[string]*tensor.Tensor{"x": raw})
	if err != nil {
		t.Fatal(err)
	}
	ds, err := Detections(out)
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

func TestAddNMS(t *testing.T) {
	img0 := [][]float32{
		{10, 10, 4, 4, 0.9, 0.1, 0.2},  // class 0
		{11, 10, 4, 4, 0.8, 0.3, 0.1},  // class 0, IoU 0.6 with the first: suppressed
		{30, 30, 4, 4, 0.7, 0.75, 0},   // class 1: its class-0 score does not count
		{10, 10, 4, 4, 0.1, 0.2, 0.6},  // class 2 at the first's place: kept
		{50, 50, 2, 2, 0.2, 0.1, 0.24}, // below the score threshold
	}
	img1 := [][]float32{
		{0, 0, 2, 2, 0.3, 0.1, 0.1},
		{0.5, 0, 2, 2, 0.4, 0.1, 0.1}, // IoU 0.6 with the first: the first goes
		{0, 3, 2, 2, 0.2, 0.26, 0.1},
		{9, 9, 2, 2, 0.1, 0.1, 0.1},
		{9, 9, 2, 2, 0.1, 0.1, 0.1},
	}
	want := []Detection{
		{0, 0, 0.9, [4]float32{8, 8, 12, 12}},
		{0, 1, 0.75, [4]float32{28, 28, 32, 32}},
		{0, 2, 0.6, [4]float32{8, 8, 12, 12}},
		{1, 0, 0.4, [4]float32{-0.5, -1, 1.5, 1}},
		{1, 1, 0.26, [4]float32{-1, 2, 1, 4}},
	}
	raw := rawOutput(img0, img1)
	for _, opset := range []int64{13, 17, 18} {
		m, err := AddNMS(identityDetector(t, opset, "output0"), DefaultParams)
		if err != nil {
			t.Fatal(err)
		}
		if got := runNMS(t, m, raw); !reflect.DeepEqual(got, want) {
			t.Errorf("opset %d: detections\n%v\nwant\n%v", opset, got, want)
		}
	}
	if got := referenceNMS(raw, DefaultParams); !reflect.DeepEqual(got, want) {
		t.Errorf("reference detections\n%v\nwant\n%v", got, want)
	}
	// MaxPerClass bounds the boxes per class (the last two anchors tie in
	// every class: each class has a best box)
	m, _ := AddNMS(identityDetector(t, 17, "output0"), Params{IoU: 0.45, Score: 0.05, MaxPerClass: 1})
	raw2 := rawOutput(img1)
	if got, ref := runNMS(t, m, raw2), referenceNMS(raw2, Params{IoU: 0.45, Score: 0.05, MaxPerClass: 1}); !reflect.DeepEqual(got, ref) || len(got) != 3 {
		t.Errorf("max one per class: %v, reference %v", got, ref)
	}
}

// TestAddNMSNegativeSizes checks that a negative width or height counts by
// its size: corners in order (x1 <= x2, y1 <= y2) around the anchor's
// centre, as an untrained detector (yolo_tiny's random weights) needs.
func TestAddNMSNegativeSizes(t *testing.T) {
	img := [][]float32{
		{10, 20, -4, 6, 0.9, 0.1},
		{30, 30, 4, -2, 0.8, 0.1},
		{50, 50, -1, -1, 0.1, 0.7},
		{50, 50, -3, -3, 0.1, 0.6}, // IoU 1/9 with the one above: kept
		{10, 20, 4, -6, 0.85, 0.1}, // the first box again: suppressed
	}
	want := []Detection{
		{0, 0, 0.9, [4]float32{8, 17, 12, 23}},
		{0, 0, 0.8, [4]float32{28, 29, 32, 31}},
		{0, 1, 0.7, [4]float32{49.5, 49.5, 50.5, 50.5}},
		{0, 1, 0.6, [4]float32{48.5, 48.5, 51.5, 51.5}},
	}
	raw := rawOutput(img)
	m, err := AddNMS(identityDetector(t, 17, "output0"), DefaultParams)
	if err != nil {
		t.Fatal(err)
	}
	got := runNMS(t, m, raw)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("detections\n%v\nwant\n%v", got, want)
	}
	if ref := referenceNMS(raw, DefaultParams); !reflect.DeepEqual(ref, want) {
		t.Errorf("reference detections\n%v\nwant\n%v", ref, want)
	}
}

func TestAddNMSErrors(t *testing.T) {
	two := identityDetector(t, 17, "output0")
	two.Graph.Output = append(two.Graph.Output, two.Graph.Output[0])
	tests := []struct {
		name string
		m    *onnx.ModelProto
		p    Params
	}{
		{"two outputs", two, DefaultParams},
		{"opset 10", identityDetector(t, 10, "output0"), DefaultParams},
		{"name taken", identityDetector(t, 17, OutBoxes), DefaultParams},
		{"negative score", identityDetector(t, 17, "output0"), Params{IoU: 0.5, Score: -1, MaxPerClass: 1}},
		{"IoU above 1", identityDetector(t, 17, "output0"), Params{IoU: 2, MaxPerClass: 1}},
		{"no boxes", identityDetector(t, 17, "output0"), Params{IoU: 0.5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := AddNMS(tt.m, tt.p); !errors.Is(err, ErrModel) {
				t.Errorf("err = %v, want ErrModel", err)
			}
		})
	}
}

func TestDetectionsErrors(t *testing.T) {
	if _, err := Detections(map[string]*tensor.Tensor{}); !errors.Is(err, ErrModel) {
		t.Errorf("missing outputs: %v", err)
	}
	bad := map[string]*tensor.Tensor{OutBoxes: tensor.New(tensor.Float32, 2, 4), OutScores: tensor.New(tensor.Float32, 1),
		OutClasses: tensor.New(tensor.Int64, 1), OutBatch: tensor.New(tensor.Int64, 1)}
	if _, err := Detections(bad); !errors.Is(err, ErrModel) {
		t.Errorf("mismatched sizes: %v", err)
	}
}

// TestStreamYoloTiny serves yolo_tiny_nms on loopback, streams frames over
// the WebSocket stream, and checks every frame's boxes against yolo_tiny run
// directly followed by the Go reference NMS.
func TestStreamYoloTiny(t *testing.T) {
	src, err := filepath.Abs("../../../shared/models/yolo_tiny")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(src, "model.onnx")); err != nil {
		t.Skipf("needs yolo_tiny in ../shared/models: %v", err)
	}
	repo := t.TempDir()
	var out, errb bytes.Buffer
	if code := run([]string{"repo", "-model", filepath.Join(src, "model.onnx"), "-out", repo}, &out, &errb); code != 0 {
		t.Fatalf("detect repo: exit %d: %s", code, errb.String())
	}
	s := serve.New(serve.Options{Repository: repo})
	if err := s.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	if !s.Ready() {
		t.Fatal("server not ready after loading (and warming up) the model")
	}
	ts := httptest.NewServer(httpapi.New(s, httpapi.Options{}))
	defer ts.Close()

	direct, err := kiln.Load(filepath.Join(src, "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()

	frames := 3
	if testing.Short() {
		frames = 2
	}
	// the reference input first, then random frames
	fr, err := NewFrames(filepath.Join(src, "test_data_set_0"), 0)
	if err != nil {
		t.Fatal(err)
	}
	mixed := mixFrames{first: fr, rest: randomFrames{320}}
	var results []FrameResult
	err = Stream(context.Background(), ts.URL, ModelName, "", frames, mixed, func(f FrameResult) error {
		results = append(results, f)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != frames {
		t.Fatalf("%d answers for %d frames", len(results), frames)
	}
	for i, r := range results {
		img, _ := mixed.Frame(i)
		raw, err := direct.Run(context.Background(), map[string]*tensor.Tensor{"images": img})
		if err != nil {
			t.Fatal(err)
		}
		want := referenceNMS(raw["output0"], DefaultParams)
		if len(want) == 0 {
			t.Fatalf("frame %d: the reference finds no box: a weak test", i)
		}
		t.Logf("frame %d: %d boxes, %v", i, len(want), r.Latency)
		if !reflect.DeepEqual(r.Detections, want) {
			t.Errorf("frame %d: served boxes\n%v\nwant\n%v", i, r.Detections, want)
		}
	}

	// the command prints the boxes of each frame
	out.Reset()
	if code := run([]string{"stream", "-url", ts.URL, "-frames", "1"}, &out, &errb); code != 0 {
		t.Fatalf("detect stream: exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "frame 0: ") || !strings.Contains(out.String(), "class ") {
		t.Errorf("detect stream printed:\n%s", out.String())
	}
}

type mixFrames struct {
	first Frames
	rest  Frames
}

func (m mixFrames) Frame(i int) (*tensor.Tensor, error) {
	if i == 0 {
		return m.first.Frame(0)
	}
	return m.rest.Frame(i)
}
