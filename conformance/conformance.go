package conformance

import (
	"bufio"
	"context"
	_ "embed"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/tensor"
)

// Tolerances for comparing outputs, those of the ONNX backend test runner's
// float32 defaults (fixed; never loosened per test).
const (
	RTol = 1e-3
	ATol = 1e-5
)

// Timeout bounds one test's run.
const Timeout = 2 * time.Minute

// Status is the outcome of one test.
type Status int

// Outcomes.
const (
	Passed Status = iota
	Failed
	Skipped
)

func (s Status) String() string {
	return [...]string{"passed", "failed", "skipped"}[s]
}

// Result is the outcome of one test folder.
type Result struct {
	Name   string
	Dir    string
	Status Status
	// Reason says why a test failed, or the skip category and reason.
	Reason string
	// Layers and OnDevice, in runs for a device (Options.Device): the
	// layers of the built plan, and how many of them run on the device
	// (the others fall back to the CPU).
	Layers, OnDevice int
}

// Options configure RunWith.
type Options struct {
	// Device, when not "" or "cpu", is the device each test is built for
	// as kiln build --device builds it (layers the device lacks run on
	// the CPU), instead of the model being loaded on the CPU.
	Device string
	// Devices are where Device is looked up (kiln.BuildOptions.Devices);
	// empty: kiln's.
	Devices device.Set
}

func (o Options) onDevice() bool { return o.Device != "" && o.Device != "cpu" }

//go:embed skips.txt
var skipsFile string

// Skip is one entry of skips.txt.
type Skip struct {
	Category, Reason string
}

// Skips returns the skip list: test name -> category and reason.
func Skips() map[string]Skip {
	m := map[string]Skip{}
	sc := bufio.NewScanner(strings.NewReader(skipsFile))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		m[f[0]] = Skip{Category: f[1], Reason: strings.Join(f[2:], " ")}
	}
	return m
}

// Find returns the test folders under each of dirs: a dir that holds a
// model.onnx is a test itself; otherwise its subfolders holding one are.
func Find(dirs ...string) ([]string, error) {
	var out []string
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "model.onnx")); err == nil {
			out = append(out, d)
			continue
		}
		entries, err := os.ReadDir(d)
		if err != nil {
			return nil, err
		}
		found := false
		for _, e := range entries {
			p := filepath.Join(d, e.Name())
			if _, err := os.Stat(filepath.Join(p, "model.onnx")); err == nil {
				out = append(out, p)
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("%s: no model.onnx in it or its subfolders", d)
		}
	}
	sort.Strings(out)
	return out, nil
}

// Run runs one test folder on the CPU.
func Run(ctx context.Context, dir string, skips map[string]Skip) Result {
	return RunWith(ctx, dir, skips, Options{})
}

// RunWith runs one test folder as o says.
func RunWith(ctx context.Context, dir string, skips map[string]Skip, o Options) Result {
	name := filepath.Base(dir)
	r := Result{Name: name, Dir: dir}
	if s, ok := skips[name]; ok {
		r.Status, r.Reason = Skipped, s.Category+": "+s.Reason
		return r
	}
	if err := runTest(ctx, dir, o, &r); err != nil {
		r.Status, r.Reason = Failed, err.Error()
		return r
	}
	r.Status = Passed
	return r
}

func runTest(ctx context.Context, dir string, o Options, r *Result) error {
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	var m *kiln.Model
	var err error
	if o.onDevice() {
		m, err = kiln.Build(ctx, filepath.Join(dir, "model.onnx"), kiln.BuildOptions{Device: o.Device, Devices: o.Devices})
	} else {
		m, err = kiln.Load(filepath.Join(dir, "model.onnx"))
	}
	if err != nil {
		return err
	}
	defer m.Close()
	if o.onDevice() {
		for _, l := range m.Plan().Layers {
			r.Layers++
			if l.Device != "cpu" {
				r.OnDevice++
			}
		}
	}
	sets, _ := filepath.Glob(filepath.Join(dir, "test_data_set_*"))
	if len(sets) == 0 {
		return fmt.Errorf("no test_data_set_* folder")
	}
	sort.Strings(sets)
	for _, set := range sets {
		if err := RunDataSet(ctx, m, set, RTol, ATol); err != nil {
			return fmt.Errorf("%s: %w", filepath.Base(set), err)
		}
	}
	return nil
}

// LoadDataSet reads input_N.pb and output_N.pb of a test data folder, in
// order. Inputs are matched to the model's inputs by position (or by the
// tensor's own name when it has one that the model knows).
func LoadDataSet(m *kiln.Model, set string) (inputs map[string]*tensor.Tensor, outputs []*tensor.Tensor, err error) {
	info := m.Inputs()
	inTypes, outTypes := valueTypes(m)
	ins, err := readNumbered(set, "input", inTypes)
	if err != nil {
		return nil, nil, err
	}
	outs, err := readNumbered(set, "output", outTypes)
	if err != nil {
		return nil, nil, err
	}
	known := map[string]bool{}
	for _, in := range info {
		known[in.Name] = true
	}
	inputs = map[string]*tensor.Tensor{}
	for i, nt := range ins {
		if i < len(info) && info[i].DType == tensor.BFloat16 && !nt.t.IsSequence() && !nt.t.IsNone() {
			nt.t = bf16FromUint16(nt.t)
		}
		switch {
		case nt.name != "" && known[nt.name]:
			inputs[nt.name] = nt.t
		case i < len(info):
			inputs[info[i].Name] = nt.t
		default:
			return nil, nil, fmt.Errorf("input_%d.pb: the model takes only %d inputs", i, len(info))
		}
	}
	for _, nt := range outs {
		outputs = append(outputs, nt.t)
	}
	return inputs, outputs, nil
}

type namedTensor struct {
	name string
	t    *tensor.Tensor
}

// valueTypes returns the types of m's inputs (those without a default)
// and outputs, whole on every device (a GPU plan has no CPU engine).
func valueTypes(m *kiln.Model) (ins, outs []ir.Type) {
	return m.ValueTypes()
}

// readNumbered reads prefix_0.pb, prefix_1.pb... of set; file i holds a
// value of type types[i] (a TensorProto, or a SequenceProto or an
// OptionalProto for a sequence or an optional).
func readNumbered(set, prefix string, types []ir.Type) ([]namedTensor, error) {
	var out []namedTensor
	for i := 0; ; i++ {
		p := filepath.Join(set, fmt.Sprintf("%s_%d.pb", prefix, i))
		if _, err := os.Stat(p); err != nil {
			break
		}
		var typ ir.Type
		if i < len(types) {
			typ = types[i]
		}
		t, name, err := onnx.ReadValueFile(p, typ)
		if err != nil {
			return nil, err
		}
		out = append(out, namedTensor{name, t})
	}
	return out, nil
}

// RunDataSet runs m on one test data folder and compares every output.
func RunDataSet(ctx context.Context, m *kiln.Model, set string, rtol, atol float64) error {
	inputs, want, err := LoadDataSet(m, set)
	if err != nil {
		return err
	}
	got, err := m.Run(ctx, inputs)
	if err != nil {
		return err
	}
	outs := m.Outputs()
	if len(want) > len(outs) {
		return fmt.Errorf("%d expected outputs, the model has %d", len(want), len(outs))
	}
	for i, w := range want {
		g := got[outs[i].Name]
		if g == nil {
			return fmt.Errorf("output %q missing", outs[i].Name)
		}
		if g.DType == tensor.BFloat16 && w.DType == tensor.Uint16 {
			w = bf16FromUint16(w)
		}
		if c := Compare(g, w, rtol, atol); !c.OK {
			return fmt.Errorf("output %q: %s", outs[i].Name, c.Reason)
		}
	}
	return nil
}

// Comparison is the result of comparing an output with its reference.
type Comparison struct {
	OK bool
	// MaxAbs and MaxRel are the largest absolute and relative differences.
	MaxAbs, MaxRel float64
	// Cosine is the cosine similarity of the finite elements (1 when both
	// are all zero; 1 for strings).
	Cosine float64
	Reason string
}

// Compare checks got against want: same type and shape, and every element
// within atol + rtol*|want|; NaN must meet NaN and infinities their equal.
// Sequences match when they have the same length and their elements
// match; empty optionals match only each other.
func Compare(got, want *tensor.Tensor, rtol, atol float64) Comparison {
	if got.IsSequence() || want.IsSequence() || got.IsNone() || want.IsNone() {
		return compareValues(got, want, rtol, atol)
	}
	c := Comparison{OK: true, Cosine: 1}
	if got.DType != want.DType {
		return Comparison{Reason: fmt.Sprintf("type %v, want %v", got.DType, want.DType)}
	}
	if tensor.ShapeString(got.Shape) != tensor.ShapeString(want.Shape) || len(got.Shape) != len(want.Shape) {
		return Comparison{Reason: fmt.Sprintf("shape %v, want %v", got.Shape, want.Shape)}
	}
	if want.DType == tensor.String {
		for i := range want.Strings {
			if got.Strings[i] != want.Strings[i] {
				return Comparison{Reason: fmt.Sprintf("element %d is %q, want %q", i, got.Strings[i], want.Strings[i])}
			}
		}
		return c
	}
	bad := -1
	var dot, gg, ww float64
	for i, n := 0, want.Len(); i < n; i++ {
		g, w := got.Float(i), want.Float(i)
		if math.IsNaN(w) || math.IsNaN(g) {
			if math.IsNaN(w) != math.IsNaN(g) && bad < 0 {
				bad = i
			}
			continue
		}
		if math.IsInf(w, 0) || math.IsInf(g, 0) {
			if g != w && bad < 0 {
				bad = i
			}
			continue
		}
		dot, gg, ww = dot+g*w, gg+g*g, ww+w*w
		d := math.Abs(g - w)
		c.MaxAbs = math.Max(c.MaxAbs, d)
		if w != 0 {
			c.MaxRel = math.Max(c.MaxRel, d/math.Abs(w))
		}
		if d > atol+rtol*math.Abs(w) && bad < 0 {
			bad = i
		}
	}
	switch {
	case gg == 0 && ww == 0:
	case gg == 0 || ww == 0:
		c.Cosine = 0
	default:
		c.Cosine = dot / math.Sqrt(gg*ww)
		if math.IsNaN(c.Cosine) || math.IsInf(c.Cosine, 0) {
			c.Cosine = 0
		}
	}
	if bad >= 0 {
		c.OK = false
		c.Reason = fmt.Sprintf("element %d is %g, want %g (max abs err %.3g, max rel err %.3g)", bad, got.Float(bad), want.Float(bad), c.MaxAbs, c.MaxRel)
	}
	return c
}

// compareValues compares sequence and optional values (see Compare).
func compareValues(got, want *tensor.Tensor, rtol, atol float64) Comparison {
	kind := func(t *tensor.Tensor) string {
		switch {
		case t.IsSequence():
			return fmt.Sprintf("a sequence of %d", len(t.Elems))
		case t.IsNone():
			return "an empty optional"
		}
		return "a tensor"
	}
	if got.IsSequence() != want.IsSequence() || got.IsNone() != want.IsNone() {
		return Comparison{Reason: fmt.Sprintf("%s, want %s", kind(got), kind(want))}
	}
	c := Comparison{OK: true, Cosine: 1}
	if want.IsNone() {
		return c
	}
	if len(got.Elems) != len(want.Elems) {
		return Comparison{Reason: fmt.Sprintf("%s, want %s", kind(got), kind(want))}
	}
	for i := range want.Elems {
		e := Compare(got.Elems[i], want.Elems[i], rtol, atol)
		c.MaxAbs, c.MaxRel = math.Max(c.MaxAbs, e.MaxAbs), math.Max(c.MaxRel, e.MaxRel)
		c.Cosine = math.Min(c.Cosine, e.Cosine)
		if !e.OK {
			return Comparison{MaxAbs: c.MaxAbs, MaxRel: c.MaxRel, Cosine: c.Cosine, Reason: fmt.Sprintf("sequence element %d: %s", i, e.Reason)}
		}
	}
	return c
}

// Summary counts results.
type Summary struct {
	Passed, Failed, Skipped int
	// Device, when set (a run with Options.Device), splits the passed
	// tests into those that ran entirely on it (OnDevice) and those with
	// layers on the CPU (Fallback).
	Device             string
	OnDevice, Fallback int
}

// Add counts r.
func (s *Summary) Add(r Result) {
	switch r.Status {
	case Passed:
		s.Passed++
		if r.OnDevice == r.Layers {
			s.OnDevice++
		} else {
			s.Fallback++
		}
	case Failed:
		s.Failed++
	default:
		s.Skipped++
	}
}

// String formats the summary as "N passed, N failed, N skipped".
func (s Summary) String() string {
	line := fmt.Sprintf("%d passed, %d failed, %d skipped", s.Passed, s.Failed, s.Skipped)
	if s.Device != "" && s.Device != "cpu" {
		line += fmt.Sprintf("; of the passed, %d entirely on %s, %d with layers on the CPU", s.OnDevice, s.Device, s.Fallback)
	}
	return line
}

// bf16FromUint16 reinterprets a uint16 tensor as bfloat16: ONNX 1.12's test
// data stores bfloat16 values in uint16 tensors (the raw 16-bit patterns).
func bf16FromUint16(t *tensor.Tensor) *tensor.Tensor {
	if t.DType != tensor.Uint16 {
		return t
	}
	c := *t
	c.DType = tensor.BFloat16
	return &c
}
