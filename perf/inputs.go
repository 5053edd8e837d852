package perf

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/kilnai/kiln/api"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/tensor"
)

// InputOptions says what a run sends.
type InputOptions struct {
	// BatchSize replaces a variable first dimension (default 1).
	BatchSize int
	// Shapes gives the shape of inputs with variable dimensions.
	Shapes map[string][]int
	// Data is a folder of input_N.pb files, a folder of test_data_set_N
	// folders of them, or a JSON file (perf_analyzer's layout:
	// {"data": [{"NAME": [values...] or {"content": [...], "shape": [...]}}]}).
	// Empty: random inputs from the model's metadata.
	Data string
	// Seed makes random inputs repeatable.
	Seed uint64
}

// shapeOf is the shape an input gets: --shape, or the metadata's with the
// variable first dimension as the batch size.
func shapeOf(m inputMeta, o InputOptions) ([]int, error) {
	if s, ok := o.Shapes[m.Name]; ok {
		if len(s) != len(m.Shape) {
			return nil, fmt.Errorf("%w: --shape %s: rank %d, the model's input has rank %d (%v)", ErrConfig, m.Name, len(s), len(m.Shape), m.Shape)
		}
		for i, d := range m.Shape {
			if d >= 0 && int64(s[i]) != d {
				return nil, fmt.Errorf("%w: --shape %s: dimension %d is %d, the model's is %d", ErrConfig, m.Name, i, s[i], d)
			}
		}
		return s, nil
	}
	shape := make([]int, len(m.Shape))
	for i, d := range m.Shape {
		switch {
		case d >= 0:
			shape[i] = int(d)
		case i == 0:
			shape[i] = max(o.BatchSize, 1)
		default:
			return nil, fmt.Errorf("%w: input %s has a variable dimension %d (shape %v): give its shape with --shape %s:DIMS", ErrConfig, m.Name, i, m.Shape, m.Name)
		}
	}
	return shape, nil
}

// makeInputs returns the input sets a run cycles through.
func makeInputs(md []inputMeta, o InputOptions) ([]map[string]*tensor.Tensor, error) {
	if len(md) == 0 {
		return nil, fmt.Errorf("%w: the model's metadata lists no inputs", ErrServer)
	}
	known := map[string]inputMeta{}
	for _, m := range md {
		known[m.Name] = m
	}
	for n := range o.Shapes {
		if _, ok := known[n]; !ok {
			return nil, fmt.Errorf("%w: --shape %s: the model has no input %q", ErrConfig, n, n)
		}
	}
	var sets []map[string]*tensor.Tensor
	var err error
	switch {
	case o.Data == "":
		sets, err = randomInputs(md, o)
	case strings.EqualFold(filepath.Ext(o.Data), ".json"):
		sets, err = jsonInputs(md, o)
	default:
		sets, err = folderInputs(md, o.Data)
	}
	if err != nil {
		return nil, err
	}
	for i, set := range sets {
		for n := range set {
			if _, ok := known[n]; !ok {
				return nil, fmt.Errorf("%w: input set %d of %s has %q, which the model does not take (it takes %s)", ErrConfig, i, o.Data, n, inputNames(md))
			}
		}
		for _, m := range md {
			if set[m.Name] == nil {
				return nil, fmt.Errorf("%w: input set %d of %s lacks the model's input %q", ErrConfig, i, o.Data, m.Name)
			}
		}
	}
	return sets, nil
}

func inputNames(md []inputMeta) string {
	var n []string
	for _, m := range md {
		n = append(n, m.Name)
	}
	return strings.Join(n, ", ")
}

// randomInputs is one set of random values: floats in [0,1), integers 0
// or 1.
func randomInputs(md []inputMeta, o InputOptions) ([]map[string]*tensor.Tensor, error) {
	r := rand.New(rand.NewPCG(o.Seed, 1))
	set := map[string]*tensor.Tensor{}
	for _, m := range md {
		t, err := makeTensor(m, o)
		if err != nil {
			return nil, err
		}
		for i := range t.Len() {
			if t.DType.IsFloat() {
				t.SetFloat(i, r.Float64())
			} else {
				t.SetFloat(i, float64(r.IntN(2)))
			}
		}
		set[m.Name] = t
	}
	return []map[string]*tensor.Tensor{set}, nil
}

func makeTensor(m inputMeta, o InputOptions) (*tensor.Tensor, error) {
	dt, err := api.ParseDatatype(m.Datatype)
	if err != nil {
		return nil, fmt.Errorf("%w: input %s: %w", ErrConfig, m.Name, err)
	}
	if dt == tensor.String {
		return nil, fmt.Errorf("%w: input %s: random BYTES inputs are not supported: give --input-data", ErrConfig, m.Name)
	}
	shape, err := shapeOf(m, o)
	if err != nil {
		return nil, err
	}
	t, err := tensor.Make(dt, shape)
	if err != nil {
		return nil, fmt.Errorf("%w: input %s: %w", ErrConfig, m.Name, err)
	}
	return t, nil
}

// folderInputs reads input_N.pb files from dir, or from each of its
// test_data_set_N folders.
func folderInputs(md []inputMeta, dir string) ([]map[string]*tensor.Tensor, error) {
	if st, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("%w: --input-data: %w", ErrConfig, err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("%w: --input-data %s: want a folder or a .json file", ErrConfig, dir)
	}
	dirs, _ := filepath.Glob(filepath.Join(dir, "test_data_set_*"))
	if files, _ := filepath.Glob(filepath.Join(dir, "input_*.pb")); len(files) > 0 {
		dirs = []string{dir}
	}
	if len(dirs) == 0 {
		return nil, fmt.Errorf("%w: --input-data %s: no input_N.pb files and no test_data_set_N folders", ErrConfig, dir)
	}
	sort.Slice(dirs, func(i, j int) bool { return setNumber(dirs[i]) < setNumber(dirs[j]) })
	var sets []map[string]*tensor.Tensor
	for _, d := range dirs {
		files, _ := filepath.Glob(filepath.Join(d, "input_*.pb"))
		if len(files) == 0 {
			return nil, fmt.Errorf("%w: --input-data %s: no input_N.pb files", ErrConfig, d)
		}
		set := map[string]*tensor.Tensor{}
		for _, f := range files {
			t, name, err := onnx.ReadTensorFile(f)
			if err != nil {
				return nil, fmt.Errorf("%w: --input-data: %w", ErrConfig, err)
			}
			if name == "" { // input_N is the model's Nth input
				n := setNumber(f)
				if n < 0 || n >= len(md) {
					return nil, fmt.Errorf("%w: %s has no tensor name and the model has %d inputs", ErrConfig, f, len(md))
				}
				name = md[n].Name
			}
			set[name] = t
		}
		sets = append(sets, set)
	}
	return sets, nil
}

// setNumber is the N of test_data_set_N or input_N.pb (-1 if none).
func setNumber(path string) int {
	b := strings.TrimSuffix(filepath.Base(path), ".pb")
	i := strings.LastIndexByte(b, '_')
	n, err := strconv.Atoi(b[i+1:])
	if err != nil {
		return -1
	}
	return n
}

// jsonInputs reads perf_analyzer's JSON input layout.
func jsonInputs(md []inputMeta, o InputOptions) ([]map[string]*tensor.Tensor, error) {
	b, err := os.ReadFile(o.Data)
	if err != nil {
		return nil, fmt.Errorf("%w: --input-data: %w", ErrConfig, err)
	}
	var doc struct {
		Data []map[string]json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%w: --input-data %s: %w", ErrConfig, o.Data, err)
	}
	if len(doc.Data) == 0 {
		return nil, fmt.Errorf("%w: --input-data %s: no \"data\" entries", ErrConfig, o.Data)
	}
	byName := map[string]inputMeta{}
	for _, m := range md {
		byName[m.Name] = m
	}
	var sets []map[string]*tensor.Tensor
	for i, entry := range doc.Data {
		set := map[string]*tensor.Tensor{}
		for name, raw := range entry {
			m, ok := byName[name]
			if !ok {
				return nil, fmt.Errorf("%w: --input-data %s: entry %d: the model has no input %q (it takes %s)", ErrConfig, o.Data, i, name, inputNames(md))
			}
			var vals []float64
			var shape []int
			var obj struct {
				Content []float64 `json:"content"`
				Shape   []int     `json:"shape"`
			}
			if err := json.Unmarshal(raw, &vals); err != nil {
				if err2 := json.Unmarshal(raw, &obj); err2 != nil || obj.Content == nil {
					return nil, fmt.Errorf("%w: --input-data %s: entry %d, input %s: want an array of numbers or {\"content\": [...], \"shape\": [...]}", ErrConfig, o.Data, i, name)
				}
				vals, shape = obj.Content, obj.Shape
			}
			mo := o
			if shape != nil {
				mo.Shapes = map[string][]int{name: shape}
			}
			// the values must fill the shape: checked before allocating it
			sh, err := shapeOf(m, mo)
			if err != nil {
				return nil, fmt.Errorf("--input-data %s: entry %d: %w", o.Data, i, err)
			}
			if err := tensor.CheckShape(sh); err != nil {
				return nil, fmt.Errorf("%w: --input-data %s: entry %d, input %s: %w", ErrConfig, o.Data, i, name, err)
			}
			if n := tensor.NumElements(sh); len(vals) != n {
				return nil, fmt.Errorf("%w: --input-data %s: entry %d, input %s: %d values for shape %v (%d)", ErrConfig, o.Data, i, name, len(vals), sh, n)
			}
			t, err := makeTensor(m, mo)
			if err != nil {
				return nil, fmt.Errorf("--input-data %s: entry %d: %w", o.Data, i, err)
			}
			for j, v := range vals {
				t.SetFloat(j, v)
			}
			set[name] = t
		}
		sets = append(sets, set)
	}
	return sets, nil
}

func sortedNames(m map[string]*tensor.Tensor) []string {
	n := make([]string, 0, len(m))
	for k := range m {
		n = append(n, k)
	}
	slices.Sort(n)
	return n
}
