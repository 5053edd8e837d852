package quant

import (
	"context"
	"fmt"
	"math"
	"strings"

	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// LayerAccuracy compares one value computed by the reduced-precision engine
// with the value of the same name in the FP32 engine.
type LayerAccuracy struct {
	// Value is the value's name.
	Value string `json:"value"`
	// Node and Op name the node of the test graph that computes it.
	Node string `json:"node"`
	Op   string `json:"op"`
	// Elements is the number of elements compared over all batches.
	Elements int `json:"elements"`
	// MaxAbs is the largest |test - ref|.
	MaxAbs float64 `json:"max_abs_error"`
	// Cosine is the cosine similarity over all batches (1 when both are
	// zero).
	Cosine float64 `json:"cosine"`
}

// LayerReport is the result of CompareLayers, in the test graph's order.
type LayerReport struct {
	Layers []LayerAccuracy `json:"layers"`
}

// String formats the report as a table, one value a line.
func (r *LayerReport) String() string {
	var b strings.Builder
	w, ow := 4, 2
	for _, l := range r.Layers {
		w, ow = max(w, len(l.Node)), max(ow, len(l.Op))
	}
	fmt.Fprintf(&b, "%-*s  %-*s  %10s  %12s\n", w, "node", ow, "op", "cosine", "max abs err")
	for _, l := range r.Layers {
		fmt.Fprintf(&b, "%-*s  %-*s  %10.6f  %12.4g\n", w, l.Node, ow, l.Op, l.Cosine, l.MaxAbs)
	}
	return b.String()
}

// Worst returns the entry of least cosine similarity (the zero value when
// the report is empty).
func (r *LayerReport) Worst() LayerAccuracy {
	var w LayerAccuracy
	for i, l := range r.Layers {
		if i == 0 || l.Cosine < w.Cosine {
			w = l
		}
	}
	return w
}

// CompareLayers runs ref (FP32) and test (its quantized copy, whose value
// names QuantizeINT8 keeps) on the batches and compares every float32 value
// both compute with the same shape: where the error of an INT8 build comes
// from. It holds one batch's FP32 values in memory at a time.
func CompareLayers(ctx context.Context, ref, test *engine.Engine, batches []map[string]*tensor.Tensor) (*LayerReport, error) {
	if len(batches) == 0 {
		return nil, fmt.Errorf("%w: no batches", ErrCompare)
	}
	type acc struct {
		LayerAccuracy
		dot, rr, tt float64
	}
	var order []*acc
	accs := map[string]*acc{}
	for bi, b := range batches {
		refVals := map[string]*tensor.Tensor{}
		if _, err := ref.RunObserved(ctx, b, func(v *ir.Value, t *tensor.Tensor) {
			if t.DType == tensor.Float32 {
				refVals[v.Name] = t.Clone()
			}
		}); err != nil {
			return nil, fmt.Errorf("%w: reference run, batch %d: %w", ErrCompare, bi, err)
		}
		if _, err := test.RunObserved(ctx, b, func(v *ir.Value, t *tensor.Tensor) {
			r, ok := refVals[v.Name]
			if !ok || t.DType != tensor.Float32 || dimsString(r.Shape) != dimsString(t.Shape) {
				return
			}
			a := accs[v.Name]
			if a == nil {
				a = &acc{LayerAccuracy: LayerAccuracy{Value: v.Name}}
				if p := v.Producer; p != nil {
					a.Node, a.Op = p.Name, p.OpType
				}
				accs[v.Name] = a
				order = append(order, a)
			}
			rv, tv := r.Float32s(), t.Float32s()
			for i := range rv {
				x, y := float64(rv[i]), float64(tv[i])
				d := math.Abs(x - y)
				if math.IsNaN(d) {
					d = math.Inf(1)
				}
				a.MaxAbs = max(a.MaxAbs, d)
				a.dot += x * y
				a.rr += x * x
				a.tt += y * y
			}
			a.Elements += len(rv)
		}); err != nil {
			return nil, fmt.Errorf("%w: test run, batch %d: %w", ErrCompare, bi, err)
		}
	}
	rep := &LayerReport{}
	for _, a := range order {
		a.Cosine = cosine(a.dot, a.rr, a.tt)
		rep.Layers = append(rep.Layers, a.LayerAccuracy)
	}
	return rep, nil
}

// cosine returns dot/sqrt(rr*tt): 1 when both vectors are zero, 0 when one
// is (or the sums are not finite).
func cosine(dot, rr, tt float64) float64 {
	switch {
	case rr == 0 && tt == 0:
		return 1
	case rr == 0 || tt == 0:
		return 0
	}
	c := dot / math.Sqrt(rr*tt)
	if math.IsNaN(c) {
		return 0
	}
	return c
}
