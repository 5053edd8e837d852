package quant

import (
	"context"
	"errors"
	"math"
	"testing"

	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/tensor"
)

// countingRunner counts the runs of the reference.
type countingRunner struct {
	r    Runner
	runs int
}

func (c *countingRunner) Run(ctx context.Context, in map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	c.runs++
	return c.r.Run(ctx, in)
}

// TestSensitivityWith: with the caller's reference engine, the reference
// runs each batch once whatever the number of layers, progress reports
// every layer, and the cosines are those of Sensitivity, which builds its
// own reference; no batches is an error.
func TestSensitivityWith(t *testing.T) {
	needINT8Ops(t)
	ctx := context.Background()
	g := convNet(t)
	ref, err := engine.New(g)
	if err != nil {
		t.Fatal(err)
	}
	batches, err := RandomBatches(ref.Inputs(), map[string][]int{"x": {2, 3, 8, 8}}, 3, 5)
	if err != nil {
		t.Fatal(err)
	}
	tab, err := Calibrate(ctx, ref, batches, Entropy, CalibOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want, err := Sensitivity(ctx, g, tab, batches, INT8Options{})
	if err != nil {
		t.Fatal(err)
	}
	counted := &countingRunner{r: ref}
	var progress []int
	got, err := SensitivityWith(ctx, g, tab, batches, INT8Options{}, SensitivityOptions{Ref: counted, Progress: func(done, total int) {
		if total != len(want.Layers) {
			t.Errorf("progress total %d, want %d", total, len(want.Layers))
		}
		progress = append(progress, done)
	}})
	if err != nil {
		t.Fatal(err)
	}
	if counted.runs != len(batches) {
		t.Errorf("the reference ran %d times for %d layers and %d batches, want %d", counted.runs, len(got.Layers), len(batches), len(batches))
	}
	if len(progress) != len(want.Layers) || progress[len(progress)-1] != len(want.Layers) {
		t.Errorf("progress %v for %d layers", progress, len(want.Layers))
	}
	if len(got.Layers) != len(want.Layers) {
		t.Fatalf("%d layers, want %d", len(got.Layers), len(want.Layers))
	}
	for i, l := range got.Layers {
		if l != want.Layers[i] {
			t.Errorf("layer %d: %+v, want %+v", i, l, want.Layers[i])
		}
	}
	// a layer kept in FP32 by the options is not measured
	kept := got.Layers[0].Name
	fewer, err := SensitivityWith(ctx, g, tab, batches, INT8Options{Layers: map[string]Precision{kept: PrecisionFP32}}, SensitivityOptions{Ref: ref})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range fewer.Layers {
		if l.Name == kept {
			t.Errorf("%s, kept in fp32 by the options, was measured", kept)
		}
	}
	if len(fewer.Layers) != len(got.Layers)-1 {
		t.Errorf("%d layers measured with one kept, want %d", len(fewer.Layers), len(got.Layers)-1)
	}
	if _, err := SensitivityWith(ctx, g, tab, nil, INT8Options{}, SensitivityOptions{Ref: ref}); !errors.Is(err, ErrCompare) {
		t.Errorf("no batches: %v", err)
	}
}

// TestSensitivityTails: measuring each layer on only the part of the graph
// it changes (fed the reference's values before it) gives the cosines of
// whole-graph runs, and is what SensitivityWith does on a graph without
// subgraphs.
func TestSensitivityTails(t *testing.T) {
	needINT8Ops(t)
	ctx := context.Background()
	g := convNet(t)
	ref, err := engine.New(g)
	if err != nil {
		t.Fatal(err)
	}
	batches, err := RandomBatches(ref.Inputs(), map[string][]int{"x": {2, 3, 8, 8}}, 3, 7)
	if err != nil {
		t.Fatal(err)
	}
	tab, err := Calibrate(ctx, ref, batches, Entropy, CalibOptions{})
	if err != nil {
		t.Fatal(err)
	}
	whole, n, err := sensitivity(ctx, g, tab, batches, INT8Options{}, SensitivityOptions{Ref: ref}, false)
	if err != nil || n != 0 {
		t.Fatalf("whole-graph runs: %v, %d layers by tails", err, n)
	}
	tails, n, err := sensitivity(ctx, g, tab, batches, INT8Options{}, SensitivityOptions{Ref: ref}, true)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(tails.Layers) || n == 0 {
		t.Errorf("%d of %d layers measured on their tails", n, len(tails.Layers))
	}
	if len(tails.Layers) != len(whole.Layers) {
		t.Fatalf("%d layers, want %d", len(tails.Layers), len(whole.Layers))
	}
	for i, l := range tails.Layers {
		w := whole.Layers[i]
		if l.Name != w.Name || math.Abs(l.Cosine-w.Cosine) > 1e-9 {
			t.Errorf("layer %d: %s %.9f on its tail, %s %.9f on the whole graph", i, l.Name, l.Cosine, w.Name, w.Cosine)
		}
	}
}
