package main

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/kilnai/kiln/engine/plan"
	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/tensor"
)

// TestBuildCalibDataCheck is kiln build --int8 --calib-data DIR of the
// example classifier on calibration sets a user may give by mistake: the
// build log, the summary after it and the plan's accuracy report (kiln
// inspect --json: accuracy.warnings) name what is wrong with them; a NaN
// fails the build naming the file and input; entropy on fewer than 8
// distinct samples calibrates with minmax and says why.
func TestBuildCalibDataCheck(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "tinycnn.onnx")
	if err := os.WriteFile(model, examples.TinyCNNModel, 0o644); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewSource(5))
	images := func(n int) *tensor.Tensor {
		x := tensor.New(tensor.Float32, n, 3, 32, 32)
		for i, v := 0, x.Float32s(); i < len(v); i++ {
			v[i] = float32(r.NormFloat64())
		}
		return x
	}
	image := func() *tensor.Tensor { return images(1) }
	// set writes a calibration folder of one test_data_set_N per image
	set := func(name string, images []*tensor.Tensor) string {
		d := filepath.Join(dir, name)
		for i, x := range images {
			sub := filepath.Join(d, "test_data_set_"+strconv.Itoa(100+i)) // 100..: name order is number order
			if err := os.MkdirAll(sub, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := onnx.SaveTensor(filepath.Join(sub, "input_0.pb"), "image", x); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	one := image()
	var copies, distinct, zeros, fours []*tensor.Tensor
	for range 16 {
		fours = append(fours, images(4))
		copies = append(copies, one)
		distinct = append(distinct, image())
		zeros = append(zeros, tensor.New(tensor.Float32, 1, 3, 32, 32))
	}
	nan := image()
	nan.Float32s()[5] = float32(math.NaN())
	withNaN := append(append([]*tensor.Tensor{}, distinct[:3]...), nan)

	const fallback = "entropy calibration needs at least 8 distinct samples, these batches hold 1: calibrated with minmax instead"
	const allCopies = "all 16 batches are one sample (copies, or within 0.001 of one another: batches 1-15 copy batch 0)"
	tests := []struct {
		name     string
		images   []*tensor.Tensor
		args     []string
		code     int
		warnings []string // in the log, the summary and (data only) the plan's accuracy report
		planOnly []string // of those, the ones in the accuracy report
		err      string
	}{
		{name: "16 distinct samples", images: distinct, code: exitOK},
		{name: "one sample 16 times", images: copies, code: exitOK,
			warnings: []string{allCopies, fallback}, planOnly: []string{allCopies}},
		{name: "one sample 16 times, minmax", images: copies, args: []string{"--calib-method", "minmax"}, code: exitOK,
			warnings: []string{allCopies}, planOnly: []string{allCopies}},
		{name: "zeros", images: zeros, code: exitOK,
			warnings: []string{`input "image" is all zeros in every batch`, "all 16 batches are one sample", fallback},
			planOnly: []string{"all 16 batches are one sample", `input "image" is all zeros in every batch`}},
		{name: "batches above the profile", images: fours, args: []string{"--max-batch", "2"}, code: exitOK,
			warnings: []string{`batches 0-15: input "image" dimension 0 is 4, outside the range [1, 2] of profile`}},
		{name: "NaN", images: withNaN, code: exitError,
			err: `test_data_set_103/input_0.pb: input "image": element 5 is NaN`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := set(strings.ReplaceAll(tc.name, " ", "_"), tc.images)
			out := filepath.Join(t.TempDir(), "m.plan")
			var log bytes.Buffer
			old := errOut
			errOut = &log
			defer func() { errOut = old }()
			var code int
			summary := captureStdout(t, func() {
				code = buildCmd(append([]string{model, "-o", out, "--int8", "--calib-data", data}, tc.args...))
			})
			if code != tc.code {
				t.Fatalf("kiln build exited %d, want %d:\n%s%s", code, tc.code, summary, log.String())
			}
			if tc.err != "" {
				if !strings.Contains(log.String(), tc.err) {
					t.Errorf("the error does not say %q:\n%s", tc.err, log.String())
				}
				return
			}
			if testing.Verbose() {
				t.Logf("summary:\n%s\nlog:\n%s", summary, log.String())
			}
			if len(tc.warnings) == 0 && strings.Contains(log.String()+summary, "warning") {
				t.Errorf("warnings for a good set:\n%s%s", summary, log.String())
			}
			for _, w := range tc.warnings {
				if !strings.Contains(log.String(), "warning: "+w) {
					t.Errorf("the build log lacks %q:\n%s", w, log.String())
				}
				if !strings.Contains(summary, "  warning: "+w) {
					t.Errorf("the summary lacks %q:\n%s", w, summary)
				}
			}
			h, err := plan.ReadHeader(out)
			if err != nil {
				t.Fatal(err)
			}
			var acc struct{ Warnings []string }
			if err := json.Unmarshal(h.Accuracy, &acc); err != nil {
				t.Fatalf("accuracy report %s: %v", h.Accuracy, err)
			}
			if len(acc.Warnings) != len(tc.planOnly) {
				t.Errorf("the plan's accuracy report warns %q, want %d warnings", acc.Warnings, len(tc.planOnly))
			}
			for _, w := range tc.planOnly {
				if !strings.Contains(strings.Join(acc.Warnings, "\n"), w) {
					t.Errorf("the plan's accuracy report warnings %q lack %q", acc.Warnings, w)
				}
			}
		})
	}
}
