package quant

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/kilnai/kiln/tensor"
)

// fixedRunner returns preset outputs, one map per call.
type fixedRunner struct {
	outs []map[string]*tensor.Tensor
	i    int
}

func (r *fixedRunner) Run(_ context.Context, _ map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	if r.i >= len(r.outs) {
		return nil, errors.New("no more outputs")
	}
	r.i++
	return r.outs[r.i-1], nil
}

func TestCompare(t *testing.T) {
	ref := &fixedRunner{outs: []map[string]*tensor.Tensor{
		{"logits": tensor.FromFloat32([]float32{1, 5, 2, 0, 0, 3}, 2, 3), "score": tensor.FromFloat32([]float32{2}, 1, 1)},
		{"logits": tensor.FromFloat32([]float32{4, 1, 1, 1, 1, 2}, 2, 3), "score": tensor.FromFloat32([]float32{4}, 1, 1)},
	}}
	test := &fixedRunner{outs: []map[string]*tensor.Tensor{
		{"logits": tensor.FromFloat32([]float32{1, 5, 2, 0, 0, 3}, 2, 3), "score": tensor.FromFloat32([]float32{2.5}, 1, 1)},
		{"logits": tensor.FromFloat32([]float32{4, 1, 1, 1, 2.5, 2}, 2, 3), "score": tensor.FromFloat32([]float32{4}, 1, 1)},
	}}
	batches := make([]map[string]*tensor.Tensor, 2)
	rep, err := Compare(context.Background(), ref, test, batches)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Batches != 2 || len(rep.Outputs) != 2 || rep.Outputs[0].Name != "logits" || rep.Outputs[1].Name != "score" {
		t.Fatalf("report %+v", rep)
	}
	lg, sc := rep.Outputs[0], rep.Outputs[1]
	// logits: one element off by 1.5 (ref 1); the last row's argmax moves.
	if lg.Elements != 12 || lg.MaxAbs != 1.5 || lg.MaxRel != 1.5 || !lg.HasTop1 || lg.Rows != 4 || lg.Top1 != 0.75 {
		t.Errorf("logits %+v", lg)
	}
	dot, rr, tt := 0.0, 0.0, 0.0
	for b := range 2 {
		r, x := ref.outs[b]["logits"].Float32s(), test.outs[b]["logits"].Float32s()
		for i := range r {
			dot += float64(r[i] * x[i])
			rr += float64(r[i] * r[i])
			tt += float64(x[i] * x[i])
		}
	}
	if want := dot / math.Sqrt(rr*tt); math.Abs(lg.Cosine-want) > 1e-12 {
		t.Errorf("cosine %v, want %v", lg.Cosine, want)
	}
	// score: [1,1] has no top-1; 2 vs 2.5 is 25% off.
	if sc.HasTop1 || sc.MaxAbs != 0.5 || sc.MaxRel != 0.25 || sc.Cosine >= 1 {
		t.Errorf("score %+v", sc)
	}
	if rep.MinCosine() != min(lg.Cosine, sc.Cosine) {
		t.Errorf("MinCosine %v", rep.MinCosine())
	}
	s := rep.String()
	for _, want := range []string{"logits", "score", "75.00% of 4", "cosine"} {
		if !strings.Contains(s, want) {
			t.Errorf("String() lacks %q:\n%s", want, s)
		}
	}
	js, err := rep.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var back AccuracyReport
	if err := json.Unmarshal(js, &back); err != nil || back.Outputs[0].Top1 != 0.75 || back.Outputs[1].MaxRel != 0.25 {
		t.Errorf("JSON %s: %v", js, err)
	}
}

func TestCompareEdgeCases(t *testing.T) {
	zero := func() map[string]*tensor.Tensor {
		return map[string]*tensor.Tensor{"y": tensor.FromFloat32([]float32{0, 0}, 2)}
	}
	rep, err := Compare(context.Background(), &fixedRunner{outs: []map[string]*tensor.Tensor{zero()}}, &fixedRunner{outs: []map[string]*tensor.Tensor{zero()}}, make([]map[string]*tensor.Tensor, 1))
	if err != nil || rep.Outputs[0].Cosine != 1 || rep.Outputs[0].MaxAbs != 0 {
		t.Errorf("two zero outputs: %+v %v", rep, err)
	}
	nan := map[string]*tensor.Tensor{"y": tensor.FromFloat32([]float32{float32(math.NaN()), 1}, 2)}
	rep, err = Compare(context.Background(), &fixedRunner{outs: []map[string]*tensor.Tensor{zero()}}, &fixedRunner{outs: []map[string]*tensor.Tensor{nan}}, make([]map[string]*tensor.Tensor, 1))
	if err != nil || !math.IsInf(rep.Outputs[0].MaxAbs, 1) || rep.Outputs[0].Cosine != 0 {
		t.Errorf("NaN output: %+v %v", rep, err)
	}

	tests := []struct {
		name      string
		ref, test map[string]*tensor.Tensor
		want      string
	}{
		{"shape", map[string]*tensor.Tensor{"y": tensor.FromFloat32([]float32{1, 2}, 2)}, map[string]*tensor.Tensor{"y": tensor.FromFloat32([]float32{1, 2}, 1, 2)}, "reference float32[2], test float32[1,2]"},
		{"missing", map[string]*tensor.Tensor{"y": tensor.FromFloat32([]float32{1}, 1)}, map[string]*tensor.Tensor{"z": tensor.FromFloat32([]float32{1}, 1)}, `no output "y"`},
		{"count", map[string]*tensor.Tensor{"y": tensor.FromFloat32([]float32{1}, 1)}, map[string]*tensor.Tensor{}, "has 1 outputs, the test 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compare(context.Background(), &fixedRunner{outs: []map[string]*tensor.Tensor{tc.ref}}, &fixedRunner{outs: []map[string]*tensor.Tensor{tc.test}}, make([]map[string]*tensor.Tensor, 1))
			if !errors.Is(err, ErrCompare) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want ErrCompare with %q", err, tc.want)
			}
		})
	}
	if _, err := Compare(context.Background(), &fixedRunner{}, &fixedRunner{}, nil); !errors.Is(err, ErrCompare) {
		t.Errorf("no batches: %v", err)
	}
	if _, err := Compare(context.Background(), &fixedRunner{}, &fixedRunner{}, make([]map[string]*tensor.Tensor, 1)); !errors.Is(err, ErrCompare) {
		t.Errorf("failing runner: %v", err)
	}
}

// TestCompareValueShapes: an output whose shape depends on the values (a
// count of kept boxes) may differ between FP32 and reduced precision; those
// batches are counted, not compared, and the others still are.
func TestCompareValueShapes(t *testing.T) {
	boxes := func(n int) map[string]*tensor.Tensor {
		return map[string]*tensor.Tensor{"boxes": tensor.FromFloat32(make([]float32, 4*n), n, 4)}
	}
	ref := &fixedRunner{outs: []map[string]*tensor.Tensor{boxes(9), boxes(3)}}
	test := &fixedRunner{outs: []map[string]*tensor.Tensor{boxes(10), boxes(3)}}
	rep, err := Compare(context.Background(), ref, test, make([]map[string]*tensor.Tensor, 2))
	if err != nil {
		t.Fatal(err)
	}
	if o := rep.Outputs[0]; o.ShapesDiffer != 1 || o.Elements != 12 || o.Cosine != 1 {
		t.Errorf("boxes %+v, want 1 batch with another shape and 12 elements compared", o)
	}
	if s := rep.String(); !strings.Contains(s, "shape differs in 1 of 2 batches") {
		t.Errorf("String() does not say the shape differed:\n%s", s)
	}
	// Never the same shape: nothing compared, no cosine to claim.
	ref = &fixedRunner{outs: []map[string]*tensor.Tensor{boxes(9)}}
	test = &fixedRunner{outs: []map[string]*tensor.Tensor{boxes(10)}}
	rep, err = Compare(context.Background(), ref, test, make([]map[string]*tensor.Tensor, 1))
	if err != nil || !math.IsNaN(rep.Outputs[0].Cosine) || !math.IsNaN(rep.MinCosine()) {
		t.Errorf("no batch comparable: %+v %v, want cosine NaN", rep, err)
	}
	if js, err := rep.JSON(); err != nil || !strings.Contains(string(js), `"shapes_differ": 1`) {
		t.Errorf("JSON %s %v", js, err)
	}
}

func TestCompareFloatTypes(t *testing.T) {
	half := tensor.New(tensor.Float16, 3)
	for i, v := range []float64{1, 2.5, -3} {
		half.SetFloat(i, v)
	}
	ref := &fixedRunner{outs: []map[string]*tensor.Tensor{{"y": tensor.FromFloat32([]float32{1, 2.5, -3.001}, 3)}}}
	test := &fixedRunner{outs: []map[string]*tensor.Tensor{{"y": half}}}
	rep, err := Compare(context.Background(), ref, test, make([]map[string]*tensor.Tensor, 1))
	if err != nil {
		t.Fatal(err)
	}
	if o := rep.Outputs[0]; o.Cosine < 0.99999 || o.MaxAbs > 0.0011 || o.Top1 != 1 {
		t.Errorf("float32 against float16: %+v", o)
	}
	ints := &fixedRunner{outs: []map[string]*tensor.Tensor{{"y": tensor.FromInt64([]int64{1, 2, 3}, 3)}}}
	ref.i = 0
	if _, err := Compare(context.Background(), ref, ints, make([]map[string]*tensor.Tensor, 1)); !errors.Is(err, ErrCompare) {
		t.Errorf("float32 against int64: %v", err)
	}
}

// TestAccuracyJSONNonFinite: an overflowed output's errors are written as
// strings, not refused by encoding/json.
func TestAccuracyJSONNonFinite(t *testing.T) {
	r := &AccuracyReport{Batches: 1, Outputs: []OutputAccuracy{{Name: "y", MaxAbs: math.Inf(1), MaxRel: math.NaN(), Cosine: 0.5}}}
	b, err := r.JSON()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"max_abs_error": "+Inf"`, `"max_rel_error": "NaN"`, `"cosine": 0.5`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("JSON lacks %s:\n%s", want, b)
		}
	}
}
