package quant

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/kilnai/kiln/tensor"
)

// Runner runs a model on named inputs; *engine.Engine is one.
type Runner interface {
	Run(ctx context.Context, inputs map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error)
}

// OutputAccuracy compares one output of a reduced-precision model with the
// FP32 reference over all batches.
type OutputAccuracy struct {
	// Name is the output's name.
	Name string `json:"name"`
	// Elements is the number of elements compared.
	Elements int `json:"elements"`
	// MaxAbs is the largest |test - ref|.
	MaxAbs float64 `json:"max_abs_error"`
	// MaxRel is the largest |test - ref| / max(|ref|, floor), where floor is
	// RelFloor times the largest |ref| of the output in the same batch (so
	// that references near zero do not make it meaningless).
	MaxRel float64 `json:"max_rel_error"`
	// Cosine is the cosine similarity of the test and reference outputs,
	// each taken as one vector over all batches (1 when both are zero).
	Cosine float64 `json:"cosine"`
	// Top1 is the fraction of rows (the last axis) whose argmax agrees; it
	// is meaningful only when HasTop1 (float outputs with a last dimension
	// above 1).
	Top1 float64 `json:"top1_agreement"`
	// HasTop1 says whether Top1 was measured.
	HasTop1 bool `json:"has_top1"`
	// Rows is the number of rows Top1 was measured over.
	Rows int `json:"rows,omitempty"`
	// ShapesDiffer counts the batches whose test output had another shape
	// than the reference's (same rank and kind of type): an output whose
	// shape depends on the values, such as NonMaxSuppression's count of
	// kept boxes, which reduced precision may move. Those batches are not
	// compared for this output; with none compared, Cosine is NaN.
	ShapesDiffer int `json:"shapes_differ,omitempty"`
}

// RelFloor is the fraction of an output's largest |ref| (in a batch) below
// which MaxRel's denominator does not go.
const RelFloor = 1e-3

// AccuracyReport is the result of Compare, one entry per output in name
// order.
type AccuracyReport struct {
	Batches int              `json:"batches"`
	Outputs []OutputAccuracy `json:"outputs"`
	// Warnings are what CheckBatches found in the batches (copies,
	// constant inputs, values that are not finite): an accuracy measured
	// on them says little about traffic unlike them.
	Warnings []string `json:"warnings,omitempty"`
}

// MinCosine returns the smallest cosine similarity over the outputs (1
// when there are none).
func (r *AccuracyReport) MinCosine() float64 {
	m := 1.0
	for _, o := range r.Outputs {
		m = min(m, o.Cosine)
	}
	return m
}

// String formats the report as a table.
func (r *AccuracyReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "accuracy against FP32 over %d batch(es):\n", r.Batches)
	w := 6
	for _, o := range r.Outputs {
		w = max(w, len(o.Name))
	}
	fmt.Fprintf(&b, "%-*s  %12s  %12s  %10s  %s\n", w, "output", "max abs err", "max rel err", "cosine", "top-1 agree")
	for _, o := range r.Outputs {
		top := "-"
		if o.HasTop1 {
			top = fmt.Sprintf("%.2f%% of %d", 100*o.Top1, o.Rows)
		}
		if o.ShapesDiffer > 0 {
			top += fmt.Sprintf("  (shape differs in %d of %d batches: not compared there)", o.ShapesDiffer, r.Batches)
		}
		fmt.Fprintf(&b, "%-*s  %12.4g  %12.4g  %10.6f  %s\n", w, o.Name, o.MaxAbs, o.MaxRel, o.Cosine, top)
	}
	for _, msg := range r.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", msg)
	}
	return b.String()
}

// JSON returns the report as indented JSON. Errors that are not finite
// (an output that overflowed) are written as the strings "+Inf", "-Inf" or
// "NaN", which JSON numbers cannot hold.
func (r *AccuracyReport) JSON() ([]byte, error) {
	type out struct {
		Name     string `json:"name"`
		Elements int    `json:"elements"`
		MaxAbs   any    `json:"max_abs_error"`
		MaxRel   any    `json:"max_rel_error"`
		Cosine   any    `json:"cosine"`
		Top1     any    `json:"top1_agreement"`
		HasTop1  bool   `json:"has_top1"`
		Rows     int    `json:"rows,omitempty"`
		Differ   int    `json:"shapes_differ,omitempty"`
	}
	num := func(x float64) any {
		switch {
		case math.IsNaN(x):
			return "NaN"
		case math.IsInf(x, 1):
			return "+Inf"
		case math.IsInf(x, -1):
			return "-Inf"
		}
		return x
	}
	doc := struct {
		Batches  int      `json:"batches"`
		Outputs  []out    `json:"outputs"`
		Warnings []string `json:"warnings,omitempty"`
	}{Batches: r.Batches, Warnings: r.Warnings}
	for _, o := range r.Outputs {
		doc.Outputs = append(doc.Outputs, out{o.Name, o.Elements, num(o.MaxAbs), num(o.MaxRel), num(o.Cosine), num(o.Top1), o.HasTop1, o.Rows, o.ShapesDiffer})
	}
	return json.MarshalIndent(doc, "", "  ")
}

// Compare runs ref (FP32) and test (reduced precision) on every batch and
// compares their outputs: per output, max abs and max relative error,
// cosine similarity and top-1 agreement. Both must produce the same outputs
// with the same ranks and types (any two float types compare); a batch where
// an output's shape differs (the shape depends on the values) is counted in
// ShapesDiffer and not compared for that output. The report's Warnings
// are CheckBatches' about the batches (a value that is not finite is one
// of them here, not an error).
func Compare(ctx context.Context, ref, test Runner, batches []map[string]*tensor.Tensor) (*AccuracyReport, error) {
	rep, err := compare(ctx, ref, test, batches)
	if err != nil {
		return nil, err
	}
	data, err := checkBatches(batches, DataOptions{})
	rep.Warnings = data.Warnings
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), ErrData.Error()+": ")
		rep.Warnings = append(rep.Warnings, strings.TrimPrefix(msg, errNotFinite.Error()+": "))
	}
	return rep, nil
}

// compare is Compare without the check of the batches (the sensitivity
// analysis compares the same batches once per layer).
func compare(ctx context.Context, ref, test Runner, batches []map[string]*tensor.Tensor) (*AccuracyReport, error) {
	if len(batches) == 0 {
		return nil, fmt.Errorf("%w: no batches", ErrCompare)
	}
	type acc struct {
		OutputAccuracy
		dot, rr, tt float64
		agree       int
	}
	accs := map[string]*acc{}
	for bi, b := range batches {
		ro, err := ref.Run(ctx, b)
		if err != nil {
			return nil, fmt.Errorf("%w: %w: reference run, batch %d: %w", ErrCompare, ErrNotMeasurable, bi, err)
		}
		to, err := test.Run(ctx, b)
		if err != nil {
			return nil, fmt.Errorf("%w: test run, batch %d: %w", ErrCompare, bi, err)
		}
		if len(ro) != len(to) {
			return nil, fmt.Errorf("%w: batch %d: the reference has %d outputs, the test %d", ErrCompare, bi, len(ro), len(to))
		}
		for name, r := range ro {
			t, ok := to[name]
			if !ok {
				return nil, fmt.Errorf("%w: the test model has no output %q", ErrCompare, name)
			}
			sameType := r.DType == t.DType || r.DType.IsFloat() && t.DType.IsFloat()
			if !sameType || r.Rank() != t.Rank() {
				return nil, fmt.Errorf("%w: output %q: reference %v%s, test %v%s", ErrCompare, name, r.DType, dimsString(r.Shape), t.DType, dimsString(t.Shape))
			}
			if r.DType == tensor.String {
				return nil, fmt.Errorf("%w: %w: output %q holds strings", ErrCompare, ErrNotMeasurable, name)
			}
			a := accs[name]
			if a == nil {
				a = &acc{OutputAccuracy: OutputAccuracy{Name: name}}
				accs[name] = a
			}
			if dimsString(r.Shape) != dimsString(t.Shape) {
				a.ShapesDiffer++
				continue
			}
			rv, tv := r.ToFloat32(), t.ToFloat32()
			maxRef := 0.0
			for _, x := range rv {
				if ax := math.Abs(float64(x)); ax > maxRef && !math.IsInf(ax, 0) {
					maxRef = ax
				}
			}
			floor := max(maxRef*RelFloor, math.SmallestNonzeroFloat32)
			for i := range rv {
				x, y := float64(rv[i]), float64(tv[i])
				d := math.Abs(x - y)
				if math.IsNaN(d) {
					d = math.Inf(1)
				}
				a.MaxAbs = max(a.MaxAbs, d)
				a.MaxRel = max(a.MaxRel, d/max(math.Abs(x), floor))
				a.dot += x * y
				a.rr += x * x
				a.tt += y * y
			}
			a.Elements += len(rv)
			if last := r.Rank(); r.DType.IsFloat() && last > 0 && r.Shape[last-1] > 1 {
				n := r.Shape[last-1]
				for row := 0; (row+1)*n <= len(rv); row++ {
					if argmax(rv[row*n:(row+1)*n]) == argmax(tv[row*n:(row+1)*n]) {
						a.agree++
					}
					a.Rows++
				}
				a.HasTop1 = true
			}
		}
	}
	rep := &AccuracyReport{Batches: len(batches)}
	names := make([]string, 0, len(accs))
	for n := range accs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		a := accs[name]
		a.Cosine = cosine(a.dot, a.rr, a.tt)
		if a.Elements == 0 && a.ShapesDiffer > 0 {
			a.Cosine = math.NaN()
		}
		if a.Rows > 0 {
			a.Top1 = float64(a.agree) / float64(a.Rows)
		}
		rep.Outputs = append(rep.Outputs, a.OutputAccuracy)
	}
	return rep, nil
}

// argmax returns the index of the largest element (the first on ties; NaN
// never wins).
func argmax(x []float32) int {
	best := 0
	for i, v := range x {
		if v > x[best] || math.IsNaN(float64(x[best])) && !math.IsNaN(float64(v)) {
			best = i
		}
	}
	return best
}
