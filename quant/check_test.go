package quant

import (
	"context"
	"errors"
	"math"
	"math/rand"
	"strings"
	"testing"

	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/tensor"
)

// normalBatch returns {"x": a [rows, 4] standard normal tensor}.
func normalBatch(r *rand.Rand, rows int) map[string]*tensor.Tensor {
	x := tensor.New(tensor.Float32, rows, 4)
	for i, v := 0, x.Float32s(); i < len(v); i++ {
		v[i] = float32(r.NormFloat64())
	}
	return map[string]*tensor.Tensor{"x": x}
}

// plus returns a copy of b with eps times standard normal noise added.
func plus(r *rand.Rand, b map[string]*tensor.Tensor, eps float64) map[string]*tensor.Tensor {
	x := b["x"].Clone()
	for i, v := 0, x.Float32s(); i < len(v); i++ {
		v[i] += float32(eps * r.NormFloat64())
	}
	return map[string]*tensor.Tensor{"x": x}
}

func TestCheckBatches(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	a, b := normalBatch(r, 1), normalBatch(r, 1)
	var distinct, copies, twoRepeated, near, far []map[string]*tensor.Tensor
	for i := range 16 {
		distinct = append(distinct, normalBatch(r, 1))
		copies = append(copies, a)
		twoRepeated = append(twoRepeated, []map[string]*tensor.Tensor{a, b}[i%2])
	}
	for range 4 {
		near = append(near, plus(r, a, 1e-5))
		far = append(far, plus(r, a, 0.1))
	}
	rowsCopied := tensor.New(tensor.Float32, 16, 4)
	for i, v := 0, rowsCopied.Float32s(); i < len(v); i++ {
		v[i] = a["x"].Float32s()[i%4]
	}
	zeros := map[string]*tensor.Tensor{"x": tensor.New(tensor.Float32, 1, 4)}
	threes := map[string]*tensor.Tensor{"x": tensor.FromFloat32([]float32{3, 3, 3, 3}, 1, 4)}
	ones := tensor.New(tensor.Int64, 1, 4)
	for i, v := 0, ones.Int64s(); i < len(v); i++ {
		v[i] = 1
	}
	withMask := func(m map[string]*tensor.Tensor) map[string]*tensor.Tensor {
		return map[string]*tensor.Tensor{"x": m["x"], "mask": ones}
	}
	profile := []engine.Profile{{Name: "p", Inputs: []engine.Range{{Input: "x", Min: []int{1, 4}, Opt: []int{1, 4}, Max: []int{2, 4}}}}}

	tests := []struct {
		name              string
		batches           []map[string]*tensor.Tensor
		opt               DataOptions
		samples, distinct int
		want              []string // substrings of the warnings, in order; none: no warning
	}{
		{"distinct", distinct, DataOptions{}, 16, 16, nil},
		{"one sample repeated", copies, DataOptions{}, 16, 1, []string{"all 16 batches are one sample", "batches 1-15 copy batch 0"}},
		{"two samples repeated", twoRepeated, DataOptions{}, 16, 2, []string{"the 16 batches hold 2 distinct samples", "batches 2, 4, 6, 8, 10, 12, 14 copy batch 0; batches 3, 5, 7, 9, 11, 13, 15 copy batch 1"}},
		{"near copies", near, DataOptions{}, 4, 1, []string{"all 4 batches are one sample", "within 0.001"}},
		{"noise of 10%", far, DataOptions{}, 4, 4, nil},
		{"rows of one batch", []map[string]*tensor.Tensor{{"x": rowsCopied}}, DataOptions{}, 16, 1, []string{"all 16 samples are one sample", "samples 0[1], 0[2], 0[3], 0[4], 0[5], 0[6], 9 more copy sample 0[0]"}},
		{"zeros everywhere", []map[string]*tensor.Tensor{zeros, zeros}, DataOptions{}, 2, 1, []string{"all 2 batches", `input "x" is all zeros in every batch`}},
		{"constant in one batch", []map[string]*tensor.Tensor{a, threes, b}, DataOptions{}, 3, 3, []string{`input "x" is constant (every element 3) in batch 1 of 3`}},
		{"a constant mask is normal", []map[string]*tensor.Tensor{withMask(a), withMask(b)}, DataOptions{}, 2, 2, nil},
		{"outside the profile", []map[string]*tensor.Tensor{a, normalBatch(r, 4), normalBatch(r, 4)}, DataOptions{Profiles: profile}, 9, 9, []string{`batches 1-2: input "x" dimension 0 is 4, outside the range [1, 2] of profile "p"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := CheckBatches(tc.batches, tc.opt)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Batches != len(tc.batches) || rep.Samples != tc.samples || rep.Distinct != tc.distinct {
				t.Errorf("%d batches, %d samples, %d distinct; want %d, %d, %d", rep.Batches, rep.Samples, rep.Distinct, len(tc.batches), tc.samples, tc.distinct)
			}
			all := strings.Join(rep.Warnings, "\n")
			if len(tc.want) == 0 && len(rep.Warnings) > 0 {
				t.Errorf("warnings %q, want none", rep.Warnings)
			}
			at := 0
			for _, w := range tc.want {
				i := strings.Index(all[at:], w)
				if i < 0 {
					t.Errorf("warnings\n%s\nlack %q (after offset %d)", all, w, at)
					continue
				}
				at += i + len(w)
			}
		})
	}
}

func TestCheckBatchesNotFinite(t *testing.T) {
	r := rand.New(rand.NewSource(2))
	for _, tc := range []struct {
		name string
		v    float32
		want string
	}{
		{"NaN", float32(math.NaN()), `batch 1, input "x": element 2 is NaN`},
		{"+Inf", float32(math.Inf(1)), `batch 1, input "x": element 2 is +Inf`},
		{"-Inf", float32(math.Inf(-1)), `batch 1, input "x": element 2 is -Inf`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := normalBatch(r, 1)
			bad["x"].Float32s()[2] = tc.v
			batches := []map[string]*tensor.Tensor{normalBatch(r, 1), bad}
			_, err := CheckBatches(batches, DataOptions{})
			if !errors.Is(err, ErrData) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("CheckBatches: %v, want ErrData with %q", err, tc.want)
			}
			// calibration refuses it, naming the same
			eng, err := engine.New(smallGraph(t))
			if err != nil {
				t.Fatal(err)
			}
			_, err = Calibrate(context.Background(), eng, batches, MinMax, CalibOptions{})
			if !errors.Is(err, ErrCalibration) || !errors.Is(err, ErrData) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Calibrate: %v, want ErrCalibration and ErrData with %q", err, tc.want)
			}
			// the accuracy report says it
			rep, err := Compare(context.Background(), eng, eng, batches)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Warnings) != 1 || !strings.HasPrefix(rep.Warnings[0], tc.want) || !strings.Contains(rep.String(), "warning: "+tc.want) {
				t.Errorf("accuracy report warnings %q, want %q", rep.Warnings, tc.want)
			}
		})
	}
}

// TestCompareWarnings: the accuracy report carries the data check's
// warnings, in its table and its JSON (the plan's record).
func TestCompareWarnings(t *testing.T) {
	eng, err := engine.New(smallGraph(t))
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewSource(3))
	a := normalBatch(r, 1)
	for _, tc := range []struct {
		name    string
		batches []map[string]*tensor.Tensor
		want    string
	}{
		{"distinct", []map[string]*tensor.Tensor{a, normalBatch(r, 1), normalBatch(r, 1)}, ""},
		{"copies", []map[string]*tensor.Tensor{a, a, a}, "all 3 batches are one sample"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := Compare(context.Background(), eng, eng, tc.batches)
			if err != nil {
				t.Fatal(err)
			}
			js, err := rep.JSON()
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == "" {
				if len(rep.Warnings) > 0 || strings.Contains(string(js), "warnings") || strings.Contains(rep.String(), "warning") {
					t.Errorf("warnings %q in\n%s\n%s", rep.Warnings, rep, js)
				}
				return
			}
			if len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], tc.want) || !strings.Contains(rep.String(), "warning: "+tc.want) || !strings.Contains(string(js), `"warnings": [`) || !strings.Contains(string(js), tc.want) {
				t.Errorf("warnings %q, want one with %q; report\n%s\n%s", rep.Warnings, tc.want, rep, js)
			}
		})
	}
}
