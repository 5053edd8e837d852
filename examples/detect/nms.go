package main

import (
	"errors"
	"fmt"
	"math"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/tensor"
)

// ErrModel is returned for a detector model AddNMS cannot extend.
var ErrModel = errors.New("detect: unsupported detector model")

// Params are the non-maximum suppression settings baked into the model.
type Params struct {
	// IoU is the overlap (intersection over union) above which the
	// lower-scored of two boxes of one class is dropped.
	IoU float32
	// Score is the confidence a box must exceed to be kept (>= 0).
	Score float32
	// MaxPerClass bounds the boxes kept per image and class.
	MaxPerClass int64
}

// DefaultParams are the usual YOLO settings.
var DefaultParams = Params{IoU: 0.45, Score: 0.25, MaxPerClass: 100}

// Output names of the model AddNMS makes.
const (
	OutBoxes   = "boxes"       // float32 [K, 4]: x1, y1, x2, y2
	OutScores  = "scores"      // float32 [K]
	OutClasses = "classes"     // int64 [K]
	OutBatch   = "batch_index" // int64 [K]: the image of the batch
)

// prefix marks the names of the nodes and values AddNMS adds.
const prefix = "nms/"

// AddNMS returns a copy of m, a YOLOv8-style detector whose one output is
// [batch, 4 + classes, anchors] (cx, cy, w, h, then per-class scores),
// extended with the post-processing that turns it into detections: widths
// and heights count by their size (|w|, |h|: x1 <= x2 and y1 <= y2 always), each
// anchor keeps only its best class (Triton users call it class-aware NMS on
// the max class), boxes become corners, and ONNX NonMaxSuppression selects
// per image and class the boxes scoring above p.Score that overlap no
// better box above p.IoU. The outputs are OutBoxes, OutScores, OutClasses
// and OutBatch, in NonMaxSuppression's order: by image, class, then
// decreasing score. The post-processing graph is written with ir.Builder
// and onnx.FromGraph, then joined to m's graph.
func AddNMS(m *onnx.ModelProto, p Params) (*onnx.ModelProto, error) {
	if m.Graph == nil || len(m.Graph.Output) != 1 {
		return nil, fmt.Errorf("%w: want a graph with one output", ErrModel)
	}
	if p.Score < 0 || p.IoU < 0 || p.IoU > 1 || p.MaxPerClass < 1 {
		return nil, fmt.Errorf("%w: bad NMS parameters %+v", ErrModel, p)
	}
	opset, ok := m.OpsetVersion("")
	if !ok || opset < 11 {
		return nil, fmt.Errorf("%w: opset %d: NonMaxSuppression with scores needs opset 11 or later", ErrModel, opset)
	}
	raw := m.Graph.Output[0].Name
	// Names the original graph uses, which the added ones must not reuse.
	used := map[string]bool{raw: true}
	for _, n := range m.Graph.Node {
		used[n.Name] = true
		for _, o := range n.Output {
			used[o] = true
		}
	}
	for _, t := range m.Graph.Initializer {
		used[t.Name] = true
	}
	for _, v := range m.Graph.Input {
		used[v.Name] = true
	}
	for _, o := range []string{OutBoxes, OutScores, OutClasses, OutBatch} {
		if used[o] {
			return nil, fmt.Errorf("%w: the model already has a value named %q", ErrModel, o)
		}
	}
	post, err := onnx.FromGraph(postGraph(raw, opset, p), "kiln examples/detect")
	if err != nil {
		return nil, err
	}
	rename := func(s string) (string, error) {
		switch s {
		case "", raw, OutBoxes, OutScores, OutClasses, OutBatch:
			return s, nil
		}
		if used[prefix+s] {
			return "", fmt.Errorf("%w: the model already has a value named %q", ErrModel, prefix+s)
		}
		return prefix + s, nil
	}
	g := *m.Graph
	g.Node = append([]*onnx.NodeProto{}, m.Graph.Node...)
	g.Initializer = append([]*onnx.TensorProto{}, m.Graph.Initializer...)
	for _, t := range post.Graph.Initializer {
		c := *t
		if c.Name, err = rename(t.Name); err != nil {
			return nil, err
		}
		g.Initializer = append(g.Initializer, &c)
	}
	for _, n := range post.Graph.Node {
		c := *n
		c.Input, c.Output = nil, nil
		if c.Name, err = rename(n.Name); err != nil {
			return nil, err
		}
		for _, s := range n.Input {
			r, err := rename(s)
			if err != nil {
				return nil, err
			}
			c.Input = append(c.Input, r)
		}
		for _, s := range n.Output {
			r, err := rename(s)
			if err != nil {
				return nil, err
			}
			c.Output = append(c.Output, r)
		}
		g.Node = append(g.Node, &c)
	}
	g.Output = post.Graph.Output
	out := *m
	out.Graph = &g
	out.ProducerName = m.ProducerName + "+kiln-nms"
	return &out, nil
}

// postGraph builds the post-processing of a raw detector output named raw.
func postGraph(raw string, opset int64, p Params) *ir.Graph {
	b := ir.NewBuilder("nms", opset)
	i64 := func(v ...int64) *ir.Value { return b.Const("", tensor.FromInt64(v, len(v))) }
	f32 := func(v float32) *ir.Value { return b.Const("", tensor.FromFloat32([]float32{v}, 1)) }
	slice := func(x *ir.Value, axis, start, end int64) *ir.Value {
		return b.Op("Slice", []*ir.Value{x, i64(start), i64(end), i64(axis)})
	}
	x := b.Input(raw, tensor.Float32, ir.S("batch"), ir.U(), ir.S("anchors"))
	xywh := b.Op("Transpose", []*ir.Value{slice(x, 1, 0, 4)}, ir.IntsAttr("perm", 0, 2, 1)) // [B, N, 4]
	scores := slice(x, 1, 4, math.MaxInt64)                                                 // [B, C, N]
	xy, wh := slice(xywh, 2, 0, 2), slice(xywh, 2, 2, 4)
	// a negative width or height (which an untrained detector, such as the
	// random-weight yolo_tiny, predicts) counts by its size, so that x1 <=
	// x2 and y1 <= y2 always; NonMaxSuppression orders each box's corners
	// anyway, so this changes no selection
	wh = b.Op("Abs", []*ir.Value{wh})
	half := b.Op("Mul", []*ir.Value{wh, f32(0.5)})
	corners := b.Op("Concat", []*ir.Value{b.Op("Sub", []*ir.Value{xy, half}), b.Op("Add", []*ir.Value{xy, half})},
		ir.IntAttr("axis", 2)) // [B, N, 4]: x1, y1, x2, y2
	var best *ir.Value
	if opset >= 18 {
		best = b.Op("ReduceMax", []*ir.Value{scores, i64(1)}, ir.IntAttr("keepdims", 1))
	} else {
		best = b.Op("ReduceMax", []*ir.Value{scores}, ir.IntsAttr("axes", 1), ir.IntAttr("keepdims", 1))
	}
	isBest := b.Op("Cast", []*ir.Value{b.Op("Equal", []*ir.Value{scores, best})}, ir.IntAttr("to", int64(tensor.Float32)))
	masked := b.Op("Mul", []*ir.Value{scores, isBest}) // each anchor scores only for its best class
	// NonMaxSuppression reads boxes as [y1, x1, y2, x2]; giving [x1, y1, x2,
	// y2] swaps both axes alike, which leaves every IoU unchanged.
	sel := b.Op("NonMaxSuppression", []*ir.Value{corners, masked, i64(p.MaxPerClass), f32(p.IoU), f32(p.Score)}) // [K, 3]
	col := func(c int64) *ir.Value {
		return b.Op("Gather", []*ir.Value{sel, b.Const("", tensor.FromInt64([]int64{c}))}, ir.IntAttr("axis", 1))
	}
	imageAnchor := b.Op("Gather", []*ir.Value{sel, i64(0, 2)}, ir.IntAttr("axis", 1)) // [K, 2]
	b.Output(b.Op("GatherND", []*ir.Value{corners, imageAnchor}), OutBoxes)
	b.Output(b.Op("GatherND", []*ir.Value{masked, sel}), OutScores)
	b.Output(col(1), OutClasses)
	b.Output(col(0), OutBatch)
	return b.Graph()
}
