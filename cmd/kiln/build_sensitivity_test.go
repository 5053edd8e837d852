package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnai/kiln/engine/plan"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/tensor"
)

// outlierModel is three 1x1 convolutions over 8 channels: "spread" copies
// its input and adds 500 to channel 0; "outlier" reads that channel with a
// small weight (its share of the result is as large as the other seven
// channels'), so one per-tensor INT8 scale ruins it: wide enough for
// channel 0, it rounds the others to a few levels; clipped, it loses
// channel 0. "head" produces the output (FP32 by the INT8 rule). spread
// reads the graph input, which has more than 4 channels: INT8 by the rule.
func outlierModel(t *testing.T) []byte {
	t.Helper()
	const c = 8
	b := ir.NewBuilder("outlier", 17)
	x := b.Input("x", tensor.Float32, ir.D(1), ir.D(c), ir.D(6), ir.D(6))
	conv := func(name string, in *ir.Value, out int, w func(o, i int) float32, bias func(o int) float32) *ir.Value {
		wt := tensor.New(tensor.Float32, out, c, 1, 1)
		for o := range out {
			for i := range c {
				wt.Float32s()[o*c+i] = w(o, i)
			}
		}
		bt := tensor.New(tensor.Float32, out)
		for o := range out {
			bt.Float32s()[o] = bias(o)
		}
		v := b.Op("Conv", []*ir.Value{in, b.Const(name+".w", wt), b.Const(name+".b", bt)})
		v.Producer.Name = name
		return v
	}
	spread := conv("spread", x, c, func(o, i int) float32 {
		if o == i {
			return 1
		}
		return 0
	}, func(o int) float32 {
		if o == 0 {
			return 500
		}
		return 0
	})
	outlier := conv("outlier", spread, c, func(o, i int) float32 {
		if i == 0 {
			return 0.004
		}
		return float32((o+2*i)%5-2) * 0.5
	}, func(int) float32 { return 0 })
	head := conv("head", outlier, 4, func(o, i int) float32 { return float32((3*o+i)%7-3) * 0.3 }, func(o int) float32 { return 0.1 * float32(o) })
	b.Output(head, "y")
	mp, err := onnx.FromGraph(b.Graph(), "test")
	if err != nil {
		t.Fatal(err)
	}
	return mp.Marshal()
}

// TestBuildInt8Sensitivity (issue 11, "FP16 where the sensitivity analysis
// says INT8 hurts", on the CPU through the CLI): kiln build --int8 of a
// model with one layer that INT8 ruins keeps that layer in INT8 without
// --int8-min-cosine (as before) and in FP32 with it; the accuracy report
// stored in the plan improves; the log shows the sensitivity table and
// kiln inspect the decision per layer; --layer-precision beats the
// analysis; bad thresholds are refused with a clear message.
func TestBuildInt8Sensitivity(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "outlier.onnx")
	if err := os.WriteFile(model, outlierModel(t), 0o644); err != nil {
		t.Fatal(err)
	}
	build := func(t *testing.T, args ...string) (code int, log string, path string) {
		t.Helper()
		sub, err := os.MkdirTemp(dir, "plan") // kept for kiln inspect below
		if err != nil {
			t.Fatal(err)
		}
		path = filepath.Join(sub, "m.plan")
		var msg bytes.Buffer
		old := errOut
		errOut = &msg
		defer func() { errOut = old }()
		out := captureStdout(t, func() {
			code = buildCmd(append([]string{model, "-o", path}, args...))
		})
		return code, out + msg.String(), path
	}
	type result struct {
		precision map[string]string
		reason    map[string]string
		cosine    float64
		log       string
		plan      string
	}
	calib := []string{"--int8", "--calib-random", "4"}
	results := map[string]result{}
	for _, tt := range []struct {
		name string
		args []string
		// precisions of spread and outlier
		spread, outlier string
		logHas          []string
	}{
		{"no analysis", nil, "int8", "int8", []string{"INT8: 2 layers in int8, 1 in fp32"}},
		{"analysis", []string{"--int8-min-cosine", "0.99"}, "int8", "fp32", []string{
			"INT8 sensitivity analysis: 2 layers, each alone in int8 against fp32 on 4 of 4 calibration batches",
			"a layer below cosine 0.99 stays in fp32", "kept in fp32", "1 of 2 layers kept in fp32",
			"outlier  FusedConv    fp32  sensitivity: cosine"}},
		{"analysis on 2 batches", []string{"--int8-min-cosine", "0.99", "--int8-sensitivity-batches", "2"}, "int8", "fp32", []string{"on 2 of 4 calibration batches"}},
		{"layer-precision wins", []string{"--int8-min-cosine", "0.99", "--layer-precision", "outlier:int8"}, "int8", "int8", []string{"int8 (--layer-precision wins)", "0 of 2 layers kept in fp32"}},
		{"layer-precision fp32 not measured", []string{"--int8-min-cosine", "0.99", "--layer-precision", "spread:fp32"}, "fp32", "fp32", []string{"INT8 sensitivity analysis: 1 layers", "override: fp32"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, log, path := build(t, append(calib, tt.args...)...)
			if code != exitOK {
				t.Fatalf("kiln build %v exited %d:\n%s", tt.args, code, log)
			}
			for _, want := range tt.logHas {
				if !strings.Contains(log, want) {
					t.Errorf("the build log lacks %q:\n%s", want, log)
				}
			}
			if testing.Verbose() && tt.name == "analysis" {
				t.Logf("kiln build %s:\n%s", strings.Join(tt.args, " "), log)
			}
			if tt.args == nil && strings.Contains(log, "sensitivity") {
				t.Errorf("without --int8-min-cosine the build ran the analysis:\n%s", log)
			}
			p, err := plan.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			r := result{precision: map[string]string{}, reason: map[string]string{}, log: log}
			for _, l := range p.Header.Layers {
				r.precision[l.Name], r.reason[l.Name] = l.Precision, l.Reason
			}
			if r.precision["spread"] != tt.spread || r.precision["outlier"] != tt.outlier {
				t.Errorf("spread runs in %s, outlier in %s; want %s and %s", r.precision["spread"], r.precision["outlier"], tt.spread, tt.outlier)
			}
			var acc struct {
				Outputs []struct {
					Cosine float64 `json:"cosine"`
				} `json:"outputs"`
			}
			if err := json.Unmarshal(p.Header.Accuracy, &acc); err != nil || len(acc.Outputs) != 1 {
				t.Fatalf("accuracy report %s: %v", p.Header.Accuracy, err)
			}
			r.cosine = acc.Outputs[0].Cosine
			r.plan = path
			results[tt.name] = r
			t.Logf("%s: accuracy cosine %.6f", tt.name, r.cosine)
		})
	}
	before, after := results["no analysis"], results["analysis"]
	if before.plan == "" || after.plan == "" {
		t.Fatal("a build failed")
	}
	if !(after.cosine > before.cosine) || after.cosine < 0.999 {
		t.Errorf("accuracy cosine %.6f with the analysis, %.6f without: want an improvement to at least 0.999", after.cosine, before.cosine)
	}
	if !strings.HasPrefix(after.reason["outlier"], "sensitivity: cosine ") || !strings.HasPrefix(after.reason["spread"], "input scale") {
		t.Errorf("reasons in the plan: outlier %q, spread %q", after.reason["outlier"], after.reason["spread"])
	}
	if strings.Contains(before.reason["outlier"], "sensitivity") {
		t.Errorf("without the analysis outlier's reason is %q", before.reason["outlier"])
	}
	// kiln inspect shows the decision per layer
	out := captureStdout(t, func() {
		if code := inspectCmd([]string{after.plan}); code != exitOK {
			t.Errorf("kiln inspect exited %d", code)
		}
	})
	if !strings.Contains(out, "precision: sensitivity: cosine") || !strings.Contains(out, "precision: input scale") {
		t.Errorf("kiln inspect does not show the decisions:\n%s", out)
	}

	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"zero", []string{"--int8", "--calib-random", "2", "--int8-min-cosine", "0"}, "want a cosine similarity above 0 and at most 1"},
		{"above one", []string{"--int8", "--calib-random", "2", "--int8-min-cosine", "1.5"}, "want a cosine similarity above 0 and at most 1"},
		{"negative", []string{"--int8", "--calib-random", "2", "--int8-min-cosine", "-0.9"}, "want a cosine similarity above 0 and at most 1"},
		{"not a number", []string{"--int8", "--calib-random", "2", "--int8-min-cosine", "high"}, `got "high"`},
		{"NaN", []string{"--int8", "--calib-random", "2", "--int8-min-cosine", "NaN"}, "want a cosine similarity"},
		{"without int8", []string{"--int8-min-cosine", "0.99"}, "--int8-min-cosine needs --int8"},
		{"fp16", []string{"--fp16", "--int8-min-cosine", "0.99"}, "--int8-min-cosine needs --int8"},
		{"batches without threshold", []string{"--int8", "--calib-random", "2", "--int8-sensitivity-batches", "2"}, "--int8-sensitivity-batches needs --int8-min-cosine"},
		{"negative batches", []string{"--int8", "--calib-random", "2", "--int8-min-cosine", "0.99", "--int8-sensitivity-batches", "-1"}, "want at least 1"},
	} {
		t.Run("bad "+tt.name, func(t *testing.T) {
			code, log, _ := build(t, tt.args...)
			if code != exitError {
				t.Fatalf("kiln build %v exited %d, want %d:\n%s", tt.args, code, exitError, log)
			}
			if !strings.Contains(log, tt.want) {
				t.Errorf("kiln build %v says %q, want it to say %q", tt.args, log, tt.want)
			}
		})
	}
}
