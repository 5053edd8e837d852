package gpuexec

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// nmsCase is one NonMaxSuppression graph: boxes [batches, n, 4] and scores
// [batches, classes, n] as inputs, the other inputs constants or, with
// runtime, graph inputs too.
type nmsCase struct {
	name               string
	batches, classes   int
	boxes              int
	center             int64
	maxOut             int64 // < 0: no max_output_boxes_per_class input (nothing selected)
	iou, score         float32
	noScore            bool // no score_threshold input
	runtime            bool // max, iou and score threshold as graph inputs
	opset              int64
	spread, ties, size float64
	seed               uint64
}

// nmsCases are the fixed cases (ties, thresholds, center_point_box,
// several batches and classes, nothing kept, max 0, no boxes) and random
// ones. Coordinates, scores and thresholds are multiples of powers of two
// that binary16 holds exactly, so that half engines see the same values
// (a runtime threshold is stored in half there).
func nmsCases() []nmsCase {
	cases := []nmsCase{
		{name: "one class", batches: 1, classes: 1, boxes: 50, maxOut: 100, iou: 0.5, noScore: true, spread: 8, size: 3, seed: 1},
		{name: "ties", batches: 1, classes: 2, boxes: 200, maxOut: 1000, iou: 0.3125, noScore: true, spread: 4, size: 2, ties: 4, seed: 2},
		{name: "score threshold", batches: 2, classes: 3, boxes: 130, maxOut: 7, iou: 0.4375, score: 0.5, spread: 6, size: 2, seed: 3},
		{name: "center_point_box", batches: 2, classes: 2, boxes: 97, center: 1, maxOut: 50, iou: 0.375, score: 0.25, spread: 6, size: 2, ties: 8, seed: 4},
		{name: "runtime inputs", batches: 3, classes: 2, boxes: 70, maxOut: 9, iou: 0.5, score: 0.3125, runtime: true, spread: 5, size: 2, seed: 5},
		{name: "runtime, no score threshold", batches: 1, classes: 4, boxes: 64, maxOut: 64, iou: 0.625, noScore: true, runtime: true, spread: 5, size: 2, seed: 6},
		{name: "nothing above the score threshold", batches: 2, classes: 2, boxes: 40, maxOut: 10, iou: 0.5, score: 2, spread: 4, size: 2, seed: 7},
		{name: "max 0", batches: 1, classes: 2, boxes: 40, maxOut: 0, iou: 0.5, score: 0.125, spread: 4, size: 2, seed: 8},
		{name: "runtime max 0", batches: 1, classes: 2, boxes: 40, maxOut: 0, iou: 0.5, score: 0.125, runtime: true, spread: 4, size: 2, seed: 9},
		{name: "no max input", batches: 1, classes: 1, boxes: 10, maxOut: -1, iou: 0.5, spread: 4, size: 2, seed: 10},
		{name: "no boxes", batches: 2, classes: 3, boxes: 0, maxOut: 5, iou: 0.5, spread: 4, size: 2, seed: 11},
		{name: "opset 10, IoU 0 (any overlap)", opset: 10, batches: 1, classes: 1, boxes: 150, maxOut: 150, iou: 0, noScore: true, spread: 10, size: 1, seed: 12},
		{name: "many boxes over 64-bit words", batches: 1, classes: 2, boxes: 1000, maxOut: 2000, iou: 0.5, score: 0.0625, spread: 16, size: 2, ties: 16, seed: 13},
		{name: "dense overlap", batches: 1, classes: 1, boxes: 300, maxOut: 300, iou: 0.6875, noScore: true, spread: 1, size: 3, seed: 14},
	}
	r := rand.New(rand.NewPCG(10, 11))
	for i := range 24 {
		c := nmsCase{name: fmt.Sprintf("random %d", i), batches: 1 + r.IntN(3), classes: 1 + r.IntN(4), boxes: r.IntN(400),
			center: int64(r.IntN(2)), maxOut: int64(r.IntN(60)), iou: float32(r.IntN(15)) / 16, score: float32(r.IntN(9)) / 16,
			noScore: r.IntN(3) == 0, runtime: r.IntN(2) == 0, spread: float64(1 + r.IntN(16)), size: 0.5 + float64(r.IntN(8))/2,
			ties: float64(r.IntN(3) * 8), seed: uint64(100 + i)}
		if r.IntN(6) == 0 {
			c.maxOut = 1 << 40
		}
		cases = append(cases, c)
	}
	return cases
}

// graph builds the case's graph and inputs.
func (tc nmsCase) graph(t testing.TB) (*ir.Graph, map[string]*tensor.Tensor) {
	t.Helper()
	r := rand.New(rand.NewPCG(tc.seed, 77))
	q := func(v, step float64) float32 { return float32(float64(int(v/step)) * step) }
	boxes := tensor.New(tensor.Float32, tc.batches, tc.boxes, 4)
	bv := boxes.Float32s()
	for i := 0; i < len(bv); i += 4 {
		x, y := r.Float64()*tc.spread, r.Float64()*tc.spread
		w, h := r.Float64()*tc.size, r.Float64()*tc.size
		if tc.center == 1 {
			bv[i], bv[i+1], bv[i+2], bv[i+3] = q(x, 1.0/8), q(y, 1.0/8), q(w, 1.0/4), q(h, 1.0/4)
			continue
		}
		// corners in either order, as the operator allows
		y0, x0, y1, x1 := q(y, 1.0/8), q(x, 1.0/8), q(y+h, 1.0/8), q(x+w, 1.0/8)
		if r.IntN(4) == 0 {
			y0, y1 = y1, y0
		}
		if r.IntN(4) == 0 {
			x0, x1 = x1, x0
		}
		bv[i], bv[i+1], bv[i+2], bv[i+3] = y0, x0, y1, x1
	}
	scores := tensor.New(tensor.Float32, tc.batches, tc.classes, tc.boxes)
	for i := range scores.Float32s() {
		s := r.Float64()
		if tc.ties > 0 {
			s = float64(int(s*tc.ties)) / tc.ties // many equal scores
		} else {
			s = float64(int(s*1024)) / 1024
		}
		scores.Float32s()[i] = float32(s)
	}
	opset := tc.opset
	if opset == 0 {
		opset = 17
	}
	b := ir.NewBuilder("nms", opset)
	xb := b.Input("boxes", tensor.Float32, ir.D(int64(tc.batches)), ir.D(int64(tc.boxes)), ir.D(4))
	xs := b.Input("scores", tensor.Float32, ir.D(int64(tc.batches)), ir.D(int64(tc.classes)), ir.D(int64(tc.boxes)))
	in := map[string]*tensor.Tensor{"boxes": boxes, "scores": scores}
	scalarF := func(name string, v float32) *ir.Value {
		x := tensor.New(tensor.Float32, 1)
		x.Float32s()[0] = v
		if tc.runtime {
			in[name] = x
			return b.Input(name, tensor.Float32, ir.D(1))
		}
		return b.Const(name, x)
	}
	args := []*ir.Value{xb, xs}
	if tc.maxOut >= 0 || !tc.noScore || tc.iou != 0 {
		if tc.maxOut >= 0 {
			m := tensor.FromInt64([]int64{tc.maxOut}, 1)
			if tc.runtime {
				in["max"] = m
				args = append(args, b.Input("max", tensor.Int64, ir.D(1)))
			} else {
				args = append(args, b.Const("max", m))
			}
		} else {
			args = append(args, nil)
		}
		args = append(args, scalarF("iou", tc.iou))
		if !tc.noScore {
			args = append(args, scalarF("score", tc.score))
		}
	}
	var attrs []*ir.Attr
	if tc.center != 0 {
		attrs = append(attrs, ir.IntAttr("center_point_box", tc.center))
	}
	b.Output(b.Op("NonMaxSuppression", args, attrs...), "selected")
	g := b.Graph()
	if _, err := ops.InferGraph(g); err != nil {
		t.Fatal(err)
	}
	return g, in
}

// TestNMSCompile checks, without a GPU, what TestNMSOnGPU runs: the CPU
// engine runs each case, Supports accepts it, DataDependent says so, and
// the compiler makes a program of known kernels within their buffers whose
// output has a row count, in float32 and float16.
func TestNMSCompile(t *testing.T) {
	for _, tc := range nmsCases() {
		t.Run(tc.name, func(t *testing.T) {
			g, in := tc.graph(t)
			ce, err := engine.New(g.Clone())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ce.Run(context.Background(), in); err != nil {
				t.Fatal(err)
			}
			n := g.Nodes[0]
			if err := Supports(n, g); err != nil {
				t.Errorf("Supports: %v", err)
			}
			if !DataDependent(n, g) {
				t.Error("DataDependent is false")
			}
			for _, half := range []bool{false, true} {
				p, err := compile(g, false, half)
				if err != nil {
					t.Fatalf("half %v: %v", half, err)
				}
				checkProgram(t, p)
				if len(p.outputs) != 1 || p.outputs[0].rows == nil {
					t.Fatalf("outputs %+v: want one with a row count", p.outputs)
				}
				kcap := max(min(tc.maxOut, int64(tc.boxes)), 0)
				if tc.runtime && tc.maxOut >= 0 {
					kcap = int64(tc.boxes)
				}
				if o := p.outputs[0]; o.shape[0] != int(kcap)*tc.batches*tc.classes || o.shape[1] != 3 {
					t.Errorf("output holds %v rows, want %d", o.shape, kcap*int64(tc.batches*tc.classes))
				}
			}
		})
	}
}

// TestNMSRefusals: what the GPU's NonMaxSuppression does not run is
// refused with a reason (the partitioner leaves it to the CPU), and its
// output read by another node of the same engine is refused at compile.
func TestNMSRefusals(t *testing.T) {
	mk := func(boxType tensor.DType, n int, extra func(b *ir.Builder, sel *ir.Value)) *ir.Graph {
		b := ir.NewBuilder("nms", 17)
		xb := b.Input("boxes", boxType, ir.D(1), ir.D(int64(n)), ir.D(4))
		xs := b.Input("scores", tensor.Float32, ir.D(1), ir.D(1), ir.D(int64(n)))
		sel := b.Op("NonMaxSuppression", []*ir.Value{xb, xs, b.Const("max", tensor.FromInt64([]int64{5}, 1))})
		if extra != nil {
			extra(b, sel)
		} else {
			b.Output(sel, "selected")
		}
		return b.Graph()
	}
	for _, tc := range []struct {
		name string
		g    *ir.Graph
		want string
	}{
		{"float16 boxes, float32 scores", mk(tensor.Float16, 8, nil), "float16 boxes and float32 scores"},
		{"too many boxes", mk(tensor.Float32, nmsMaxBoxes+1, nil), "at most 32768"},
		{"read in the same engine", mk(tensor.Float32, 8, func(b *ir.Builder, sel *ir.Value) {
			b.Output(b.Op("Gather", []*ir.Value{sel, b.Const("i", tensor.FromInt64([]int64{2}, 1))}, ir.IntAttr("axis", 1)), "idx")
		}), "read in the same engine"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ops.InferGraph(tc.g); err != nil {
				t.Fatal(err)
			}
			err := Supports(tc.g.Nodes[0], tc.g)
			if err == nil {
				_, err = compile(tc.g, false, false)
			}
			if err == nil || !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want ErrUnsupported saying %q", err, tc.want)
			}
		})
	}
}
